"""1024- and 4096-token tests (RUN_LONG_TESTS=1): agreement with the torch reference
and the override path at Flux-like sizes."""

import pytest
import torch

import taylor_attention as ta
from taylor_attention import override
from taylor_attention.dispatch import attention_pytorch
from ta_reference import TOL, rel_l2, taylor_reference

pytestmark = pytest.mark.long


def inputs(N, H=2, d=128, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, H, N, d, generator=g, dtype=torch.float64) for _ in range(3))
    # QK-RMSNorm'd like Flux, then a 1/4 gain to keep the score spread moderate
    q, k = (t / t.pow(2).mean(-1, keepdim=True).sqrt() * 0.25 for t in (q, k))
    return q.to(dtype), k.to(dtype), v.to(dtype)


@pytest.mark.parametrize("N", [1024, 4096])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_long_matches_reference(lib, N, dtype):
    q, k, v = inputs(N, dtype=dtype)
    out, stats = ta.taylor_attention(q, k, v, P=4, sub_head_blocks=4)
    assert stats.ok, stats
    ref = taylor_reference(q, k, v, P=4, sub_head_blocks=4)
    assert rel_l2(out, ref) < TOL[dtype]


@pytest.mark.parametrize("N", [1024, 4096])
def test_long_override_flux_layout(lib, N):
    q, k, v = inputs(N, H=2, d=128)
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(P=3, sub_head_blocks=1))
    out = attention_pytorch(q, k, v, 2, skip_reshape=True,
                            transformer_options={override.OVERRIDE_KEY: ov})
    assert ov.by_backend == {"taylor": 1}
    assert out.shape == (1, N, 256)
    ref = taylor_reference(q, k, v, P=3, sub_head_blocks=1).transpose(1, 2).reshape(1, N, 256)
    assert rel_l2(out, ref) < TOL[torch.float32]
    q_check = ov.last_stats.quality_vs_original
    assert q_check.samples == 16 and 0 <= q_check.rel_l2 < 1


def test_long_hybrid_on_flux_workload_T256_64x64_d128(lib):
    """The numbers the window_radius tooltip quotes (library generator, default settings,
    4 heads, full heads, P=3, float32): plain Taylor 0.75, the hybrid at r=4 0.040."""
    if not lib.has_workload:
        pytest.skip("needs ta_workload_generate")
    layout = ta.TokenLayout(256, ((64, 64),))
    q, k, v = ta.generate_workload(heads=4, layout=layout, head_dim=128, dtype=torch.float64)
    exact = torch.cat([torch.nn.functional.scaled_dot_product_attention(q[:, h:h + 1], k[:, h:h + 1], v[:, h:h + 1])
                       for h in range(4)], dim=1)
    qf, kf, vf = (t.float() for t in (q, k, v))
    common = dict(P=3, sub_head_blocks=1, quality_check=False)
    plain, s0 = ta.taylor_attention(qf, kf, vf, window_radius=0, **common)
    hybrid, s4 = ta.taylor_attention(qf, kf, vf, layout=layout, window_radius=4, **common)
    assert s0.ok and s4.ok and s4.window_active
    assert 0.68 < rel_l2(plain, exact) < 0.82
    assert 0.030 < rel_l2(hybrid, exact) < 0.050
