"""taylor_attention(q, k, v, ...) against the torch reference, strided views, dtypes,
masks, stats and fallbacks."""

import pytest
import torch

import taylor_attention as ta
from taylor_attention import _lib
from ta_reference import TOL, exact_reference, rel_l2, taylor_reference


def make_qkv(B=1, H=2, Nq=97, Nk=None, d=32, dv=None, dtype=torch.float32, seed=0, std=1.0):
    g = torch.Generator().manual_seed(seed)
    Nk = Nq if Nk is None else Nk
    dv = d if dv is None else dv
    q = torch.randn(B, H, Nq, d, generator=g, dtype=torch.float64) * std
    k = torch.randn(B, H, Nk, d, generator=g, dtype=torch.float64) * std
    v = torch.randn(B, H, Nk, dv, generator=g, dtype=torch.float64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


SMALL = dict(min_tokens=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16],
                         ids=lambda t: str(t).replace("torch.", ""))
@pytest.mark.parametrize("P,G", [(1, 1), (2, 1), (3, 1), (4, 2), (4, 4), (5, 4)])
def test_matches_reference_B1_H2_N97_d32(lib, dtype, P, G):
    q, k, v = make_qkv(dtype=dtype, std=0.7)
    out, stats = ta.taylor_attention(q, k, v, P=P, sub_head_blocks=G, fallback_on_negative=False, **SMALL)
    assert stats.ok, stats
    assert out.dtype == dtype and out.shape == (1, 2, 97, 32)
    assert torch.isfinite(out).all()
    ref = taylor_reference(q, k, v, P=P, sub_head_blocks=G)
    assert rel_l2(out, ref) < TOL[dtype]
    assert stats.backend == "cpu"
    assert stats.sub_head_blocks == G and stats.slice_dim == 32 // G
    assert stats.feature_dim == ta.feature_dim(32 // G, P)


@pytest.mark.parametrize("case", ["qk_normalize", "scale_mul", "scale", "dv_ne_d", "cross_Nq63_Nk130",
                                  "batch3"])
def test_variants_match_reference(lib, case):
    params = dict(P=3, sub_head_blocks=2, **SMALL)
    kw = {}
    shape = dict(B=1, H=2, Nq=64, d=16)
    if case == "qk_normalize":
        params["qk_normalize"] = True
    elif case == "scale_mul":
        params["scale_mul"] = 0.5
    elif case == "scale":
        kw["scale"] = 0.3
    elif case == "dv_ne_d":
        shape["dv"] = 24
    elif case == "cross_Nq63_Nk130":
        shape.update(Nq=63, Nk=130)
    elif case == "batch3":
        shape.update(B=3, H=3)
    q, k, v = make_qkv(**shape, dtype=torch.float64)
    out, stats = ta.taylor_attention(q, k, v, **kw, **params)
    assert stats.ok, stats
    ref = taylor_reference(q, k, v, scale=kw.get("scale"), P=3, sub_head_blocks=2,
                           qk_normalize=params.get("qk_normalize", False),
                           scale_mul=params.get("scale_mul", 1.0))
    assert rel_l2(out, ref) < 1e-9


def test_library_quadratic_reference_agrees_with_torch_reference(lib):
    """The library's own quadratic-form reference and the torch one check each other."""
    import ctypes

    from taylor_attention.engine import Call, make_ta_config

    q, k, v = make_qkv(Nq=40, d=16, dtype=torch.float64)
    cfg = make_ta_config(lib, ta.TaylorConfig(P=4, sub_head_blocks=2, qk_normalize=True, scale_mul=0.8))
    call = Call(lib, q, k, v, None, cfg)
    status = lib.ta_reference_attention(ctypes.byref(call.args), ctypes.byref(cfg),
                                        _lib.TA_REFERENCE_TAYLOR_QUADRATIC)
    assert status == _lib.TA_OK
    ref = taylor_reference(q, k, v, P=4, sub_head_blocks=2, qk_normalize=True, scale_mul=0.8)
    assert rel_l2(call.out, ref) < 1e-12


def test_strided_views_are_not_copied(lib):
    """Permuted / sliced views go to the library as they are (the result proves the strides
    were honoured; data_ptr identity proves no copy was made by the binding)."""
    from taylor_attention.engine import to_ta_tensor

    base = torch.randn(1, 80, 3, 2, 16, dtype=torch.float32)  # [B, N, (q,k,v), H, D]
    q, k, v = (base[:, :, i].transpose(1, 2) for i in range(3))
    assert not q.is_contiguous()
    t = to_ta_tensor(q, "q")
    assert t.data == q.data_ptr() and list(t.strides) == list(q.stride())
    v = v[..., ::2]  # dv = 8, stride 2 in the last dim
    out, stats = ta.taylor_attention(q, k, v, P=3, sub_head_blocks=2, **SMALL)
    assert stats.ok
    ref = taylor_reference(q, k, v, P=3, sub_head_blocks=2)
    assert rel_l2(out, ref) < TOL[torch.float32]


def test_broadcast_stride_zero_inputs(lib):
    q, k, v = make_qkv(B=1, H=1, Nq=50, d=8, dtype=torch.float64)
    k = k.expand(1, 3, 50, 8)
    v = v.expand(1, 3, 50, 8)
    q = q.expand(1, 3, 50, 8)
    out, stats = ta.taylor_attention(q, k, v, P=3, sub_head_blocks=1, **SMALL)
    assert stats.ok
    assert rel_l2(out, taylor_reference(q, k, v, P=3, sub_head_blocks=1)) < 1e-9


@pytest.mark.parametrize("form", ["bool_Nk", "bool_BNk", "bool_4d", "additive_neg_inf_4d",
                                  "additive_big_negative_BNk", "float32_mask_bf16_inputs"])
def test_key_padding_masks(lib, form):
    B, H, N, d = 2, 2, 60, 16
    dtype = torch.bfloat16 if form == "float32_mask_bf16_inputs" else torch.float64
    q, k, v = make_qkv(B=B, H=H, Nq=N, d=d, dtype=dtype)
    keep = torch.ones(B, N, dtype=torch.bool)
    keep[0, 45:] = False
    keep[1, :7] = False
    if form == "bool_Nk":
        keep = keep[0]
        mask = keep
    elif form == "bool_BNk":
        mask = keep
    elif form == "bool_4d":
        mask = keep.view(B, 1, 1, N)
    elif form == "additive_neg_inf_4d":
        mask = torch.zeros(B, 1, 1, N, dtype=torch.float64).masked_fill(~keep.view(B, 1, 1, N), float("-inf"))
    elif form == "additive_big_negative_BNk":
        mask = torch.zeros(B, N, dtype=torch.float64).masked_fill(~keep, -1e9)
    else:
        mask = torch.zeros(B, 1, 1, N, dtype=torch.float32).masked_fill(~keep.view(B, 1, 1, N), float("-inf"))
    out, stats = ta.taylor_attention(q, k, v, mask, P=3, sub_head_blocks=1, **SMALL)
    assert stats.ok, stats
    ref = taylor_reference(q, k, v, mask, P=3, sub_head_blocks=1)
    assert rel_l2(out, ref) < TOL[dtype]
    # the blocked keys really are excluded
    unmasked = taylor_reference(q, k, v, None, P=3, sub_head_blocks=1)
    assert rel_l2(unmasked, ref) > 10 * TOL[dtype]


def test_graded_float_mask_declines(lib):
    q, k, v = make_qkv(Nq=50, d=16, dtype=torch.float32)
    mask = torch.linspace(-2, 0, 50).view(1, 1, 1, 50)
    out, stats = ta.taylor_attention(q, k, v, mask, **SMALL)
    assert out is None and stats.fallback_reason == "unsupported_mask"


def test_fallback_modes(lib):
    q, k, v = make_qkv(Nq=20, d=16)
    out, stats = ta.taylor_attention(q, k, v)  # min_tokens 100 > 20
    assert out is None and stats.fallback_reason == "below_min_tokens" and not stats.ok
    with pytest.raises(ta.TaylorAttentionFallback) as info:
        ta.taylor_attention(q, k, v, on_fallback="raise")
    assert info.value.stats.fallback_reason == "below_min_tokens"
    out, stats = ta.taylor_attention(q, k, v, on_fallback="exact")
    assert stats.fallback_reason == "below_min_tokens"
    assert rel_l2(out, exact_reference(q, k, v)) < 1e-5


@pytest.mark.parametrize("dtype", [torch.int32, torch.complex64], ids=str)
def test_unsupported_dtype(lib, dtype):
    q = torch.ones(1, 1, 120, 8, dtype=dtype)
    out, stats = ta.taylor_attention(q, q, q)
    assert out is None and stats.fallback_reason == "unsupported_dtype"


def test_mixed_dtypes_decline(lib):
    q, k, v = make_qkv(Nq=120, d=8)
    out, stats = ta.taylor_attention(q, k.half(), v)
    assert out is None and stats.fallback_reason == "unsupported_dtype"


def test_meta_device_declines(lib):
    q = torch.empty(1, 1, 120, 8, device="meta")
    out, stats = ta.taylor_attention(q, q, q)
    assert out is None and stats.fallback_reason == "unsupported_device"


def test_malformed_call_raises(lib):
    q, k, v = make_qkv(Nq=120, d=8)
    with pytest.raises(ta.TaylorAttentionError, match="head dims"):
        ta.taylor_attention(q, k[..., :4], v)


def test_unknown_parameter_raises():
    q, k, v = make_qkv(Nq=10, d=8)
    with pytest.raises(TypeError, match="Q_terms"):
        ta.taylor_attention(q, k, v, Q_terms=3)


def test_stats_fields(lib):
    q, k, v = make_qkv(Nq=128, d=32, std=0.5)
    out, stats = ta.taylor_attention(q, k, v, quality_check_samples=8)
    assert stats.ok
    d = stats.as_dict()
    for key in ("backend", "fallback_reason", "feature_dim", "state_bytes", "denom_min", "denom_mean",
                "quality_vs_original", "quality_truncation", "time_total_ms"):
        assert key in d
    assert stats.feature_dim == 165  # d=32, G=4 -> slices of 8, P=4: C(11,3)
    assert stats.denom_count == 1 * 2 * 128 * 4
    assert stats.denom_min > 0 and stats.denom_le_eps == 0
    assert stats.quality_vs_original.samples == 8
    assert 0 < stats.quality_truncation.rel_l2 < 1
    assert stats.state_bytes > 0 and stats.time_total_ms > 0


def test_quality_check_off(lib):
    q, k, v = make_qkv(Nq=128, d=32)
    _, stats = ta.taylor_attention(q, k, v, quality_check=False)
    assert stats.ok and stats.quality_vs_original.samples == 0


def test_missing_library_returns_reason(no_library):
    q, k, v = make_qkv(Nq=128, d=32)
    out, stats = ta.taylor_attention(q, k, v)
    assert out is None and stats.fallback_reason == "library_unavailable"
    assert "cmake" in stats.message


def test_custom_op_eager(lib):
    q, k, v = make_qkv(Nq=128, d=32)
    out = ta.attention_op(q, k, v, config=ta.TaylorConfig(P=3, sub_head_blocks=2))
    assert ta.last_stats().ok
    assert rel_l2(out, taylor_reference(q, k, v, P=3, sub_head_blocks=2)) < TOL[torch.float32]
    # declined inside the op: exact attention comes back, the side channel says why
    out = ta.attention_op(q[:, :, :10], k[:, :, :10], v[:, :, :10])
    assert ta.last_stats().fallback_reason == "below_min_tokens"
    assert rel_l2(out, exact_reference(q[:, :, :10], k[:, :, :10], v[:, :, :10])) < 1e-5


def test_custom_op_bnhd_layout(lib):
    q, k, v = make_qkv(Nq=128, d=32)
    out = ta.attention_op(q, k, v, out_bnhd=True)
    assert out.shape == (1, 2, 128, 32)
    assert out.transpose(1, 2).is_contiguous()
