"""The override through a ComfyUI-style dispatch: layouts, masks, every fallback reason
reaching func, chaining, state across copied options, logging and memory reserve."""

import logging
import sys

import pytest
import torch

import comfy.model_management as fake_mm
import taylor_attention as ta
from fake_comfy import FakeModelPatcher, model_step_options
from taylor_attention import engine, override
from taylor_attention.dispatch import attention_pytorch, copy_transformer_options, wrap_attn
from ta_reference import TOL, rel_l2, taylor_reference

SDPA = attention_pytorch.__wrapped__
SENTINEL = object()


class Backend:
    """A wrap_attn-decorated backend recording the calls that reach it (the fallback)."""

    def __init__(self, compute=True):
        self.calls = []
        self.compute = compute

        @wrap_attn
        def backend(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                    skip_output_reshape=False, **kwargs):
            self.calls.append(kwargs)
            if not self.compute:
                return SENTINEL
            return SDPA(q, k, v, heads, mask=mask, attn_precision=attn_precision,
                        skip_reshape=skip_reshape, skip_output_reshape=skip_output_reshape, **kwargs)

        self.fn = backend

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def options_with(ov):
    return {override.OVERRIDE_KEY: ov}


def rand(*shape, dtype=torch.float32, seed=0, std=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(dtype)


def bhnd(B=1, H=2, N=128, d=32, Nk=None, dtype=torch.float32, std=0.7):
    Nk = N if Nk is None else Nk
    return (rand(B, H, N, d, dtype=dtype, seed=1, std=std), rand(B, H, Nk, d, dtype=dtype, seed=2, std=std),
            rand(B, H, Nk, d, dtype=dtype, seed=3))


def to_bnd(t):
    B, H, N, D = t.shape
    return t.transpose(1, 2).reshape(B, N, H * D)


# ------------------------------------------------------------------ layouts
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_layout_B_N_HD(lib, dtype):
    q, k, v = bhnd(dtype=dtype)
    backend = Backend()
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(P=3, sub_head_blocks=2))
    out = backend(to_bnd(q), to_bnd(k), to_bnd(v), 2, transformer_options=options_with(ov))
    assert not backend.calls
    assert out.shape == (1, 128, 64) and out.dtype == dtype and out.is_contiguous()
    ref = to_bnd(taylor_reference(q, k, v, P=3, sub_head_blocks=2))
    assert rel_l2(out, ref) < TOL[dtype]


@pytest.mark.parametrize("skip_output_reshape", [True, False])
def test_layout_B_H_N_D(lib, skip_output_reshape):
    q, k, v = bhnd()
    backend = Backend()
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(P=3, sub_head_blocks=2))
    out = backend(q, k, v, 2, skip_reshape=True, skip_output_reshape=skip_output_reshape,
                  transformer_options=options_with(ov))
    assert not backend.calls
    ref = taylor_reference(q, k, v, P=3, sub_head_blocks=2)
    if skip_output_reshape:
        assert out.shape == (1, 2, 128, 32)
    else:
        assert out.shape == (1, 128, 64)
        ref = to_bnd(ref)
    assert rel_l2(out, ref) < TOL[torch.float32]


def test_flux_single_block_views(lib):
    """Flux single blocks: v is a permuted view of a fused projection (last dim contiguous)."""
    B, N, H, D = 1, 150, 2, 32
    fused = rand(B, N, 3, H, D)
    q = fused[:, :, 0].permute(0, 2, 1, 3).contiguous()
    k = fused[:, :, 1].permute(0, 2, 1, 3).contiguous()
    v = fused[:, :, 2].permute(0, 2, 1, 3)
    assert not v.is_contiguous()
    backend = Backend()
    ov = ta.TaylorAttentionOverride()
    out = backend(q, k, v, H, skip_reshape=True, transformer_options=options_with(ov))
    assert not backend.calls
    ref = to_bnd(taylor_reference(q, k, v, P=4, sub_head_blocks=4))
    assert rel_l2(out, ref) < TOL[torch.float32]


def test_scale_kwarg_and_unknown_kwargs(lib):
    q, k, v = bhnd()
    backend = Backend()
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(P=3, sub_head_blocks=1))
    out = backend(q, k, v, 2, skip_reshape=True, skip_output_reshape=True, scale=0.05,
                  enable_gqa=False, low_precision_attention=True, something_new=object(),
                  attn_precision=torch.float32, transformer_options=options_with(ov))
    assert not backend.calls
    assert rel_l2(out, taylor_reference(q, k, v, scale=0.05, P=3, sub_head_blocks=1)) < TOL[torch.float32]


def test_mask_positional_argument(lib):
    q, k, v = bhnd()
    keep = torch.ones(128, dtype=torch.bool)
    keep[100:] = False
    backend = Backend()
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(P=3, sub_head_blocks=1))
    out = backend(q, k, v, 2, keep.view(1, 1, 1, 128), None, True, True, transformer_options=options_with(ov))
    assert not backend.calls
    assert rel_l2(out, taylor_reference(q, k, v, keep, P=3, sub_head_blocks=1)) < TOL[torch.float32]


def test_inference_mode(lib):
    q, k, v = bhnd()
    backend = Backend()
    ov = ta.TaylorAttentionOverride()
    with torch.inference_mode():
        out = backend(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov))
    assert not backend.calls and out.shape == (1, 128, 64)


# ------------------------------------------------------------------ masks
def _keep(B, Nk):
    keep = torch.ones(B, Nk, dtype=torch.bool)
    keep[0, Nk - 20:] = False
    if B > 1:
        keep[1, :5] = False
    return keep


@pytest.mark.parametrize("form", ["bool_2d_Nq_Nk", "bool_3d_B_Nq_Nk", "bool_4d_B_1_1_Nk",
                                  "additive_2d_1_Nk", "additive_3d_B_1_Nk", "additive_4d_B_H_Nq_Nk"])
def test_comfy_mask_forms(lib, form):
    B, H, N = 2, 2, 128
    q, k, v = bhnd(B=B, H=H, N=N)
    keep = _keep(B, N)
    if form == "bool_2d_Nq_Nk":
        keep = keep[:1]
        mask = keep.expand(N, N)
    elif form == "bool_3d_B_Nq_Nk":
        mask = keep.unsqueeze(1).expand(B, N, N)
    elif form == "bool_4d_B_1_1_Nk":
        mask = keep.view(B, 1, 1, N)
    else:
        additive = torch.zeros(B, N).masked_fill(~keep, float("-inf"))
        if form == "additive_2d_1_Nk":
            keep = keep[:1]
            mask = additive[:1]
        elif form == "additive_3d_B_1_Nk":
            mask = additive.view(B, 1, N)
        else:
            mask = additive.view(B, 1, 1, N).expand(B, H, N, N)
    backend = Backend()
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(P=3, sub_head_blocks=1))
    out = backend(q, k, v, H, mask=mask, skip_reshape=True, skip_output_reshape=True,
                  transformer_options=options_with(ov))
    assert not backend.calls, ov.by_reason
    ref = taylor_reference(q, k, v, keep, P=3, sub_head_blocks=1)
    assert rel_l2(out, ref) < TOL[torch.float32]


def test_graded_mask_reaches_func(lib):
    """A Redux-style log-bias mask (graded values) is not a key mask: standard attention."""
    q, k, v = bhnd()
    mask = torch.log(torch.linspace(0.1, 1.0, 128)).view(1, 1, 1, 128)
    backend = Backend()
    ov = ta.TaylorAttentionOverride()
    out = backend(q, k, v, 2, mask=mask, skip_reshape=True, transformer_options=options_with(ov))
    assert len(backend.calls) == 1 and ov.by_reason == {"unsupported_mask": 1}
    ref = SDPA(q, k, v, 2, mask=mask, skip_reshape=True)
    assert torch.equal(out, ref)


def test_query_dependent_mask_reaches_func(lib):
    q, k, v = bhnd()
    mask = torch.ones(128, 128, dtype=torch.bool).tril()
    backend = Backend()
    ov = ta.TaylorAttentionOverride()
    backend(q, k, v, 2, mask=mask, skip_reshape=True, transformer_options=options_with(ov))
    assert len(backend.calls) == 1 and ov.by_reason == {"unsupported_mask": 1}


# ------------------------------------------------------------------ cross attention
def test_cross_attention(lib):
    q, k, v = bhnd(N=100, Nk=160)
    backend = Backend()
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(P=3, sub_head_blocks=2))
    out = backend(q, k, v, 2, skip_reshape=True, skip_output_reshape=True, transformer_options=options_with(ov))
    assert not backend.calls and out.shape == (1, 2, 100, 32)
    assert rel_l2(out, taylor_reference(q, k, v, P=3, sub_head_blocks=2)) < TOL[torch.float32]


# ------------------------------------------------------------------ every fallback reason
def _nan_k(q, k, v):
    k = k.clone()
    k[0, 0, 3, 0] = float("nan")
    return q, k, v


def _nan_v(q, k, v):
    v = v.clone()
    v[0, 1, 7, 2] = float("nan")
    return q, k, v


def _negative_scores(q, k, v):
    u = torch.ones_like(q) * 3.0
    return u, -torch.ones_like(k) * 3.0, v


FALLBACKS = {
    "disabled": (dict(enabled=False), {}, None),
    "below_min_tokens": ({}, dict(N=50), None),
    "cross_attention_disabled": (dict(allow_cross_attention=False), dict(N=120, Nk=140), None),
    "head_dim_too_large": (dict(sub_head_blocks=1, max_head_dim=16), {}, None),
    "feature_dim_too_large": (dict(sub_head_blocks=1, max_feature_dim_R=1000), {}, None),
    "sub_head_block_mismatch": (dict(sub_head_blocks=4), dict(d=30), None),
    "unsupported_dtype": ({}, dict(dtype=torch.int32), None),
    "denominator_too_small": (dict(P=2, sub_head_blocks=1), {}, _negative_scores),
    "denominator_invalid": ({}, {}, _nan_k),
    "non_finite_output": ({}, {}, _nan_v),
}


@pytest.mark.parametrize("reason", list(FALLBACKS))
def test_engine_reason_reaches_func(lib, reason, caplog):
    params, shape, transform = FALLBACKS[reason]
    dtype = shape.pop("dtype", torch.float32)
    if dtype == torch.int32:
        q, k, v = (torch.ones(1, 2, 128, 32, dtype=torch.int32) for _ in range(3))
    else:
        q, k, v = bhnd(**shape)
    if transform is not None:
        q, k, v = transform(q, k, v)
    backend = Backend(compute=False)
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(**params))
    with caplog.at_level(logging.INFO, logger="taylor_attention"):
        out = backend(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov))
    assert out is SENTINEL and len(backend.calls) == 1
    assert ov.by_reason == {reason: 1}, ov.by_reason
    assert ov.by_backend == {"standard": 1}
    # the fallback call got the original kwargs, marker included (no second dispatch)
    assert backend.calls[0]["_inside_attn_wrapper"] is True
    assert any(reason in r.getMessage() and "fallback" in r.getMessage() for r in caplog.records)


def test_unsupported_mask_reason_reaches_func(lib):
    q, k, v = bhnd()
    backend = Backend(compute=False)
    ov = ta.TaylorAttentionOverride()
    mask = torch.rand(1, 1, 1, 128)  # graded additive values
    assert backend(q, k, v, 2, mask=mask, skip_reshape=True, transformer_options=options_with(ov)) is SENTINEL
    assert ov.by_reason == {"unsupported_mask": 1}


def test_cuda_device_without_cuda_backend(lib, monkeypatch):
    """The engine answers unsupported_device for CUDA tensors while the build has no CUDA
    backend (simulated here by describing CPU tensors as CUDA ones)."""
    if lib.backend_available(ta._lib.TA_DEVICE_CUDA):
        pytest.skip("this build has a CUDA backend")
    monkeypatch.setattr(engine, "device_of", lambda t: (ta._lib.TA_DEVICE_CUDA, 0))
    q, k, v = bhnd()
    backend = Backend(compute=False)
    ov = ta.TaylorAttentionOverride()
    assert backend(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov)) is SENTINEL
    assert ov.by_reason == {"unsupported_device": 1}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_real_cuda_tensors(lib):
    q, k, v = (t.cuda() for t in bhnd(dtype=torch.float16))
    backend = Backend()
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(P=3, sub_head_blocks=2))
    out = backend(q, k, v, 2, skip_reshape=True, skip_output_reshape=True, transformer_options=options_with(ov))
    assert out.device == q.device and out.dtype == q.dtype and out.shape == q.shape
    if lib.backend_available(ta._lib.TA_DEVICE_CUDA):
        assert not backend.calls
        ref = taylor_reference(q.cpu(), k.cpu(), v.cpu(), P=3, sub_head_blocks=2)
        assert rel_l2(out.cpu(), ref) < 5e-3
    else:
        assert len(backend.calls) == 1 and ov.by_reason == {"unsupported_device": 1}


def test_meta_device_reaches_func(lib):
    q = torch.empty(1, 2, 128, 32, device="meta")
    backend = Backend(compute=False)
    ov = ta.TaylorAttentionOverride()
    assert backend(q, q, q, 2, skip_reshape=True, transformer_options=options_with(ov)) is SENTINEL
    assert ov.by_reason == {"unsupported_device": 1}


def test_library_missing_reaches_func(no_library, caplog):
    q, k, v = bhnd()
    backend = Backend(compute=False)
    ov = ta.TaylorAttentionOverride()
    with caplog.at_level(logging.WARNING, logger="taylor_attention"):
        for _ in range(3):
            assert backend(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov)) is SENTINEL
    assert ov.by_reason == {"library_unavailable": 3}
    unavailable = [r for r in caplog.records if "library unavailable" in r.getMessage()]
    assert len(unavailable) == 1 and "cmake" in unavailable[0].getMessage()


@pytest.mark.parametrize("exc,reason", [
    (lambda: torch.cuda.OutOfMemoryError("CUDA out of memory"), "out_of_memory"),
    (lambda: ValueError("boom"), "exception"),
    (lambda: ta.TaylorAttentionError("internal", "bug"), "error"),
])
def test_exceptions_reach_func(lib, monkeypatch, exc, reason, caplog):
    def raise_(*a, **k):
        raise exc()

    monkeypatch.setattr(engine.Call, "run", raise_)
    q, k, v = bhnd()
    backend = Backend(compute=False)
    ov = ta.TaylorAttentionOverride()
    with caplog.at_level(logging.INFO, logger="taylor_attention"):
        assert backend(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov)) is SENTINEL
    assert ov.by_reason == {reason: 1}


def test_oom_allocating_output(lib, monkeypatch):
    real_empty = torch.empty

    def empty(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine.torch, "empty", empty)
    q, k, v = bhnd()
    backend = Backend(compute=False)
    ov = ta.TaylorAttentionOverride()
    result = backend(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov))
    monkeypatch.setattr(engine.torch, "empty", real_empty)
    assert result is SENTINEL and ov.by_reason == {"out_of_memory": 1}


@pytest.mark.parametrize("case", ["gqa_heads", "not_tensor", "bad_ndim", "heads_not_dividing"])
def test_unusable_inputs_reach_func(lib, case):
    q, k, v = bhnd()
    kwargs = dict(skip_reshape=True)
    heads = 2
    if case == "gqa_heads":
        k, v = k[:, :1], v[:, :1]
    elif case == "not_tensor":
        q = [q]
    elif case == "bad_ndim":
        q, k, v = q[0], k[0], v[0]
    else:
        q, k, v = to_bnd(q), to_bnd(k), to_bnd(v)
        kwargs = {}
        heads = 5
    backend = Backend(compute=False)
    ov = ta.TaylorAttentionOverride()
    assert backend(q, k, v, heads, transformer_options=options_with(ov), **kwargs) is SENTINEL
    assert sum(ov.by_reason.values()) == 1


# ------------------------------------------------------------------ chaining
def test_chaining_previous_override(lib):
    seen = []

    def previous(func, *args, **kwargs):
        seen.append(kwargs.get("skip_reshape"))
        return func(*args, **kwargs)

    backend = Backend()
    opts = {override.OVERRIDE_KEY: previous}
    ov = override.install({"transformer_options": opts})
    assert ov.previous is previous and opts[override.OVERRIDE_KEY].taylor_state is ov
    assert opts[override.CONFIG_KEY] is ov
    q, k, v = bhnd()
    backend(q, k, v, 2, skip_reshape=True, transformer_options=opts)
    assert seen == [] and not backend.calls  # handled by Taylor
    backend(q[:, :, :20], k[:, :, :20], v[:, :, :20], 2, skip_reshape=True, transformer_options=opts)
    assert seen == [True] and len(backend.calls) == 1  # previous, then func
    # a second Taylor override replaces ours rather than chaining Taylor into Taylor
    ov2 = override.install({"transformer_options": opts})
    assert ov2.previous is previous


def test_uninstall_restores_previous():
    def previous(func, *a, **k):
        return func(*a, **k)

    mo = {"transformer_options": {override.OVERRIDE_KEY: previous}}
    override.install(mo)
    override.uninstall(mo)
    assert mo["transformer_options"][override.OVERRIDE_KEY] is previous
    assert override.CONFIG_KEY not in mo["transformer_options"]
    mo = {"transformer_options": {}}
    override.install(mo)
    override.uninstall(mo)
    assert override.OVERRIDE_KEY not in mo["transformer_options"]


# ------------------------------------------------------------------ state across steps
def test_state_survives_copied_options(lib, caplog):
    patcher = FakeModelPatcher()
    override.install(patcher.model_options, ta.TaylorConfig(quality_check_log_every=3))
    clone = patcher.clone()  # ModelPatcher.clone deep-copies model_options
    ov = clone.model_options["transformer_options"][override.CONFIG_KEY]
    assert ov is patcher.model_options["transformer_options"][override.CONFIG_KEY]
    assert clone.model_options["transformer_options"][override.OVERRIDE_KEY].taylor_state is ov
    q, k, v = bhnd()
    with caplog.at_level(logging.INFO, logger="taylor_attention"):
        for step in range(7):
            opts = model_step_options(clone, block_type="double", block_index=0)
            opts["scratch"] = step  # written into the copy: gone next step
            out = attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=opts)
            assert out.shape == (1, 128, 64)
            assert "scratch" not in clone.model_options["transformer_options"]
    assert ov.calls == 7 and ov.by_backend == {"taylor": 7}
    quality = [r for r in caplog.records if "quality check" in r.getMessage()]
    assert len(quality) == 3  # Taylor calls 1, 4, 7 with quality_check_log_every=3
    assert "[double block 0]" in quality[0].getMessage()
    assert "truncation only" in quality[0].getMessage()


def test_quality_check_only_on_logged_calls(lib, monkeypatch):
    flags = []
    real_run = engine.Call.run

    def run(self, quality_check=None):
        flags.append(quality_check)
        return real_run(self, quality_check)

    monkeypatch.setattr(engine.Call, "run", run)
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(quality_check_log_every=2))
    q, k, v = bhnd()
    for _ in range(5):
        attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov))
    assert flags == [True, False, True, False, True]
    assert ov.last_stats.quality_vs_original.samples == 16
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(quality_check=False))
    flags.clear()
    attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov))
    assert flags == [False]


# ------------------------------------------------------------------ logging
def test_logging(lib, caplog):
    ov = ta.TaylorAttentionOverride(summary_every=4)
    q, k, v = bhnd()
    opts = options_with(ov)
    with caplog.at_level(logging.DEBUG, logger="taylor_attention"):
        attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=opts)
        attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=opts)
        attention_pytorch(q[:, :, :20], k[:, :, :20], v[:, :, :20], 2, skip_reshape=True, transformer_options=opts)
        attention_pytorch(q[:, :, :20], k[:, :, :20], v[:, :, :20], 2, skip_reshape=True, transformer_options=opts)
    msgs = [(r.levelno, r.getMessage()) for r in caplog.records]
    shapes = [m for _, m in msgs if "new shape" in m]
    assert len(shapes) == 2
    assert "-> taylor" in shapes[0] and "R=165" in shapes[0]  # d=32, G=4: slices of 8, P=4
    assert "fallback (below_min_tokens)" in shapes[1]
    denoms = [m for lvl, m in msgs if "denominators min" in m and lvl == logging.DEBUG]
    assert len(denoms) == 2
    falls = [(lvl, m) for lvl, m in msgs if "fallback to standard attention" in m]
    assert [lvl for lvl, _ in falls] == [logging.INFO, logging.DEBUG]
    assert all("below_min_tokens" in m for _, m in falls)
    summary = [m for _, m in msgs if "summary after 4 calls" in m]
    assert len(summary) == 1 and "taylor 2, standard 2" in summary[0] and "below_min_tokens=2" in summary[0]
    assert any("memory" in m for _, m in msgs)
    assert ov.summary()["by_reason"] == {"below_min_tokens": 2}


def test_logging_switches_off(lib, caplog):
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(log_shapes=False, log_fallbacks=False,
                                                    memory_reserve_log=False, quality_check=False))
    q, k, v = bhnd()
    with caplog.at_level(logging.INFO, logger="taylor_attention"):
        attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov))
        attention_pytorch(q[:, :, :20], k[:, :, :20], v[:, :, :20], 2, skip_reshape=True,
                          transformer_options=options_with(ov))
    assert [r.getMessage() for r in caplog.records] == []


# ------------------------------------------------------------------ memory reserve
def test_memory_reserve_frees_once_per_shape(lib, caplog):
    fake_mm.reset(free_bytes=1000)
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(memory_reserve_factor=2.0))
    q, k, v = bhnd()
    with caplog.at_level(logging.INFO, logger="taylor_attention"):
        for _ in range(3):
            attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov))
        attention_pytorch(q[:, :, :110], k[:, :, :110], v[:, :, :110], 2, skip_reshape=True,
                          transformer_options=options_with(ov))
    frees = [c for c in fake_mm.calls if c[0] == "free_memory"]
    assert len(frees) == 2
    decision = next(iter(ov.reserve_decisions.values()))
    assert decision["needed"] == int(decision["estimate"] * 2.0) and decision["estimate"] > 0
    assert frees[0][1] == decision["needed"] and frees[0][2] == q.device
    assert sum("asked ComfyUI to free memory" in r.getMessage() for r in caplog.records) == 2


def test_memory_reserve_enough_free(lib):
    fake_mm.reset(free_bytes=1 << 40)
    ov = ta.TaylorAttentionOverride()
    q, k, v = bhnd()
    attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov))
    assert [c[0] for c in fake_mm.calls] == ["get_free_memory"]


def test_memory_reserve_off(lib):
    fake_mm.reset(free_bytes=0)
    ov = ta.TaylorAttentionOverride(ta.TaylorConfig(memory_reserve=False))
    q, k, v = bhnd()
    attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov))
    assert fake_mm.calls == []


def test_memory_reserve_without_model_management(lib, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "comfy.model_management", None)  # import fails
    override.reset_model_management_cache()
    ov = ta.TaylorAttentionOverride()
    q, k, v = bhnd()
    with caplog.at_level(logging.INFO, logger="taylor_attention"):
        out = attention_pytorch(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov))
    assert out.shape == (1, 128, 64) and ov.by_backend == {"taylor": 1}
    assert any("model_management unavailable" in r.getMessage() for r in caplog.records)
    assert fake_mm.calls == []


def test_copy_transformer_options_shares_instances():
    ov = ta.TaylorAttentionOverride()
    opts = {"a": {"b": 1}, override.OVERRIDE_KEY: ov}
    copied = copy_transformer_options(opts)
    assert copied["a"] is not opts["a"] and copied[override.OVERRIDE_KEY] is ov


def test_library_out_of_memory_reaches_func(lib):
    # The library itself answers out_of_memory (a workspace no machine can hold: P=16 on
    # 64-dim heads, R = 3.7e17 features, with the R guard lifted): the override falls back
    # to the original attention with that reason and never raises.
    q, k, v = bhnd(d=64)
    backend = Backend(compute=False)
    cfg = ta.TaylorConfig(P=16, sub_head_blocks=1, max_feature_dim_R=2**62, min_tokens=0)
    ov = ta.TaylorAttentionOverride(cfg)
    assert backend(q, k, v, 2, skip_reshape=True, transformer_options=options_with(ov)) is SENTINEL
    assert ov.by_reason == {"out_of_memory": 1}
