"""torch.compile traces the custom op (and the override) without a graph break."""

import pytest
import torch

import taylor_attention as ta
from taylor_attention import ops, override
from taylor_attention.dispatch import attention_pytorch
from ta_reference import TOL, rel_l2, taylor_reference

pytestmark = pytest.mark.skipif(not hasattr(torch, "compile") or not ta.op_available(),
                                reason="torch.compile or torch.library.custom_op unavailable")


def qkv(N=128):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(1, 2, N, 32, generator=g) * 0.7 for _ in range(3))


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_op_registered(lib):
    assert hasattr(torch.ops.taylor_attention, "attention")


def test_op_fake_tensor_shapes(lib):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(2, 3, 40, 16)
        v = torch.empty(2, 3, 50, 8)
        k = torch.empty(2, 3, 50, 16)
        out = ta.attention_op(q, k, v, out_bnhd=True)
        assert out.shape == (2, 3, 40, 8)
        assert out.stride() == (40 * 3 * 8, 8, 3 * 8, 1)


def test_opcheck(lib):
    q, k, v = qkv()
    torch.library.opcheck(torch.ops.taylor_attention.attention,
                          (q, k, v, None, 0.0, ops.pack_config(ta.TaylorConfig(P=3)), False, 0, []),
                          test_utils=("test_schema", "test_faketensor"))


def test_opcheck_with_layout(lib):
    """The op's int[] layout argument: a 128-token call as 16 text + 8x14 grid."""
    q, k, v = qkv()
    layout = ta.TokenLayout(16, ((8, 14),)).pack()
    torch.library.opcheck(torch.ops.taylor_attention.attention,
                          (q, k, v, None, 0.0, ops.pack_config(ta.TaylorConfig(P=3, window_radius=2)),
                           False, 0, layout),
                          test_utils=("test_schema", "test_faketensor"))


def test_compile_op_with_layout_fullgraph(lib):
    """The layout travels through a compiled graph: the hybrid runs and matches the
    torch reference."""
    from ta_reference import hybrid_reference

    q, k, v = qkv()
    cfg = ta.TaylorConfig(P=3, sub_head_blocks=2, window_radius=1)
    layout = ta.TokenLayout(16, ((8, 14),))

    def f(q, k, v):
        return ta.attention_op(q, k, v, config=cfg, layout=layout) * 2.0

    out = torch.compile(f, backend="aot_eager", fullgraph=True)(q, k, v)
    stats = ta.last_stats()
    assert stats.ok and stats.window_active, stats
    ref = hybrid_reference(q, k, v, 16, [(8, 14)], 1, P=3, sub_head_blocks=2) * 2.0
    assert rel_l2(out, ref) < TOL[torch.float32]


def test_compile_op_fullgraph(lib):
    q, k, v = qkv()
    cfg = ta.TaylorConfig(P=3, sub_head_blocks=2)

    def f(q, k, v):
        return ta.attention_op(q * 1.0, k, v, config=cfg) + 1.0

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    out = compiled(q, k, v)
    assert ta.last_stats().ok
    assert rel_l2(out - 1.0, taylor_reference(q, k, v, P=3, sub_head_blocks=2)) < TOL[torch.float32]


def test_compile_override_through_dispatch_fullgraph(lib):
    """The override as ComfyUI calls it, inside a compiled model: no graph break, and the
    override's state still counts the calls (the op calls back at run time)."""
    model_options = {"transformer_options": {}}
    ov = override.install(model_options, ta.TaylorConfig(P=3, sub_head_blocks=2))
    opts = model_options["transformer_options"]  # the installed plain function, as the node does
    q, k, v = qkv()

    def block(q, k, v):
        return attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=opts) * 2.0

    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    out = compiled(q, k, v)
    ref = taylor_reference(q, k, v, P=3, sub_head_blocks=2).transpose(1, 2).reshape(1, 128, 64) * 2.0
    assert rel_l2(out, ref) < TOL[torch.float32]
    assert ov.by_backend == {"taylor": 1}
    # a declined call inside the compiled graph is answered by exact attention
    small = tuple(t[:, :, :20].contiguous() for t in (q, k, v))
    out = compiled(*small)
    exact = torch.nn.functional.scaled_dot_product_attention(*small).transpose(1, 2).reshape(1, 20, 64) * 2.0
    assert torch.allclose(out, exact, atol=1e-5)
    assert ov.by_reason == {"below_min_tokens": 1}


def test_compile_inductor(lib):
    """The default backend (inductor, which needs a C++ compiler on the CPU)."""
    q, k, v = qkv()
    cfg = ta.TaylorConfig(P=3, sub_head_blocks=2)

    def f(q, k, v):
        return torch.nn.functional.gelu(ta.attention_op(q, k, v, config=cfg))

    try:
        compiled = torch.compile(f, fullgraph=True)
        out = compiled(q, k, v)
    except Exception as exc:  # noqa: BLE001
        if "compiler" in str(exc).lower() or "cpp" in str(exc).lower():
            pytest.skip(f"inductor cannot compile here: {exc}")
        raise
    ref = torch.nn.functional.gelu(taylor_reference(q, k, v, P=3, sub_head_blocks=2))
    assert rel_l2(out, ref) < TOL[torch.float32]
