"""The local-exact hybrid through the Python API: TokenLayout, the layout reaching the
engine (checked against the torch reference of window.h's semantics), the stats, the
custom op, and the cases where the window does not apply."""

import ctypes

import pytest
import torch

import taylor_attention as ta
from taylor_attention import _lib
from taylor_attention.engine import Call, make_ta_config
from ta_reference import TOL, exact_set, hybrid_reference, rel_l2, taylor_reference


def qkv(N, B=1, H=2, d=16, dv=None, dtype=torch.float64, seed=0, std=0.6):
    g = torch.Generator().manual_seed(seed)
    dv = d if dv is None else dv
    q = torch.randn(B, H, N, d, generator=g, dtype=torch.float64) * std
    k = torch.randn(B, H, N, d, generator=g, dtype=torch.float64) * std
    v = torch.randn(B, H, N, dv, generator=g, dtype=torch.float64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


# ------------------------------------------------------------------ TokenLayout
def test_token_layout_value():
    layout = ta.TokenLayout(256, [(64, 64), [32, 16]])
    assert layout.grids == ((64, 64), (32, 16)) and layout.tokens == 256 + 4096 + 512
    assert layout.describe() == "text 256 + 64x64 + 32x16"
    assert layout.pack() == [256, 64, 64, 32, 16]
    assert ta.TokenLayout.unpack(layout.pack()) == layout
    assert ta.TokenLayout.unpack([]) is None
    assert ta.TokenLayout.coerce((3, [(2, 2)])) == ta.TokenLayout(3, ((2, 2),))
    c = layout.to_c()
    assert (c.text_tokens, c.num_grids, c.grid_height[1], c.grid_width[1]) == (256, 2, 32, 16)
    assert hash(layout) == hash(ta.TokenLayout(256, ((64, 64), (32, 16))))


@pytest.mark.parametrize("args,match", [
    ((-1, ()), "text_tokens must be >= 0"),
    ((4, ((0, 3),)), "grid 0 is 0x3"),
    ((4, ((2, 2), (3, -1))), "grid 1 is 3x-1"),
    ((4, ((2,),)), r"grid 0 must be \(height, width\)"),
    ((4, ((2.5, 2),)), "must be an integer"),
    ((4, ((1, 1),) * 9), "at most 8 grids"),
])
def test_token_layout_rejects(args, match):
    with pytest.raises(ValueError, match=match):
        ta.TokenLayout(*args)


def test_token_layout_check_names_both_counts():
    with pytest.raises(ValueError, match=r"text 5 \+ 3x4 has 17 tokens, but the call has N = 18"):
        ta.TokenLayout(5, ((3, 4),)).check(18)
    with pytest.raises(ValueError, match="odd length"):
        ta.TokenLayout.unpack([1, 2])
    with pytest.raises(TypeError, match="layout must be"):
        ta.TokenLayout.coerce("256+64x64")


# ------------------------------------------------------------------ the hybrid vs the reference
CASES = {
    # name: (text, grids, radius, text_keys, text_queries, P, G, dtype)
    "T5_7x9_r1_P3_G1_f64": (5, [(7, 9)], 1, True, True, 3, 1, torch.float64),
    "T0_10x10_r2_P4_G2_f64": (0, [(10, 10)], 2, True, True, 4, 2, torch.float64),
    "T6_6x5+3x4_r1_P3_G1_f64": (6, [(6, 5), (3, 4)], 1, True, True, 3, 1, torch.float64),
    "T8_9x7_r3_textkeys_off_P3_G1": (8, [(9, 7)], 3, False, True, 3, 1, torch.float64),
    "T8_9x7_r2_textqueries_off_P3_G2": (8, [(9, 7)], 2, True, False, 3, 2, torch.float64),
    "T8_9x7_r2_both_off_P4_G1": (8, [(9, 7)], 2, False, False, 4, 1, torch.float64),
    "T7_11x13_r4_P4_G4_f32": (7, [(11, 13)], 4, True, True, 4, 4, torch.float32),
    "T7_11x13_r4_P4_G4_bf16": (7, [(11, 13)], 4, True, True, 4, 4, torch.bfloat16),
    "T3_5x5_r64_P3_G1_f64": (3, [(5, 5)], 64, True, True, 3, 1, torch.float64),  # window covers the grid
}


@pytest.mark.parametrize("case", list(CASES))
def test_hybrid_matches_reference(lib, case):
    text, grids, r, tk, tq, P, G, dtype = CASES[case]
    N = text + sum(h * w for h, w in grids)
    # G=4 slices are 8 wide: a larger spread keeps the scores where T_P and exp differ
    q, k, v = qkv(N, dtype=dtype, d=32 if G == 4 else 16, std=1.2 if G == 4 else 0.6)
    out, stats = ta.taylor_attention(q, k, v, layout=(text, grids), P=P, sub_head_blocks=G, min_tokens=0,
                                     window_radius=r, window_text_keys=tk, window_text_queries=tq,
                                     fallback_on_negative=False)
    assert stats.ok and stats.window_active and stats.window_reason == "none", stats
    ref = hybrid_reference(q, k, v, text, grids, r, tk, tq, P=P, sub_head_blocks=G)
    tol = 1e-9 if dtype == torch.float64 else TOL[dtype]
    assert rel_l2(out, ref) < tol
    # not plain Taylor: the exact set made a difference
    plain = taylor_reference(q, k, v, P=P, sub_head_blocks=G)
    assert rel_l2(plain, ref) > 20 * tol
    pairs = int(exact_set(text, grids, r, tk, tq).sum())
    assert stats.window_exact_pairs == pairs * q.shape[0] * q.shape[1] * G
    assert stats.time_window_ms >= 0


def test_hybrid_with_key_padding_mask(lib):
    text, grids = 4, [(6, 6)]
    N = 40
    q, k, v = qkv(N, B=2)
    keep = torch.ones(2, N, dtype=torch.bool)
    keep[0, 1:3] = False   # two text keys
    keep[1, 20:26] = False  # a grid row
    out, stats = ta.taylor_attention(q, k, v, keep, layout=(text, grids), P=3, sub_head_blocks=1,
                                     min_tokens=0, window_radius=1)
    assert stats.ok and stats.window_active
    assert rel_l2(out, hybrid_reference(q, k, v, text, grids, 1, mask=keep, P=3, sub_head_blocks=1)) < 1e-9


def test_library_hybrid_reference_agrees(lib):
    """ta_reference_attention(HYBRID_QUADRATIC) and the torch reference check each other."""
    text, grids = 5, [(4, 6), (3, 3)]
    q, k, v = qkv(38)
    cfg = make_ta_config(lib, ta.TaylorConfig(P=4, sub_head_blocks=2, window_radius=2))
    call = Call(lib, q, k, v, None, cfg, layout=ta.TokenLayout(text, grids))
    status = lib.ta_reference_attention(ctypes.byref(call.args), ctypes.byref(cfg),
                                        _lib.TA_REFERENCE_HYBRID_QUADRATIC)
    assert status == _lib.TA_OK, lib.error_message()
    assert rel_l2(call.out, hybrid_reference(q, k, v, text, grids, 2, P=4, sub_head_blocks=2)) < 1e-12


def test_window_radius_zero_is_plain_taylor(lib):
    q, k, v = qkv(5 + 49)
    out, stats = ta.taylor_attention(q, k, v, layout=(5, [(7, 7)]), P=3, sub_head_blocks=1, min_tokens=0,
                                     window_radius=0)
    assert stats.ok and not stats.window_active and stats.window_reason == "none"
    assert stats.window_exact_pairs == 0
    assert rel_l2(out, taylor_reference(q, k, v, P=3, sub_head_blocks=1)) < 1e-9


def test_no_layout_runs_plain_taylor_with_reason(lib):
    q, k, v = qkv(54)
    out, stats = ta.taylor_attention(q, k, v, P=3, sub_head_blocks=1, min_tokens=0, window_radius=4)
    assert stats.ok and not stats.window_active and stats.window_reason == "window_no_layout"
    assert rel_l2(out, taylor_reference(q, k, v, P=3, sub_head_blocks=1)) < 1e-9


def test_cross_attention_runs_plain_taylor_with_reason(lib):
    q, _, _ = qkv(30)
    _, k, v = qkv(54, seed=1)
    out, stats = ta.taylor_attention(q, k, v, layout=(5, [(7, 7)]), P=3, sub_head_blocks=1, min_tokens=0)
    assert stats.ok and not stats.window_active and stats.window_reason == "window_cross_attention"
    assert rel_l2(out, taylor_reference(q, k, v, P=3, sub_head_blocks=1)) < 1e-9


def test_mismatched_layout_raises_before_the_library(lib):
    q, k, v = qkv(54)
    with pytest.raises(ValueError, match="has 50 tokens, but the call has N = 54"):
        ta.taylor_attention(q, k, v, layout=(1, [(7, 7)]), min_tokens=0)


def test_op_carries_the_layout(lib):
    text, grids = 6, [(6, 5), (3, 4)]
    q, k, v = qkv(48, dtype=torch.float32)
    cfg = ta.TaylorConfig(P=3, sub_head_blocks=1, min_tokens=0, window_radius=1)
    out = ta.attention_op(q, k, v, config=cfg, layout=ta.TokenLayout(text, grids), out_bnhd=True)
    stats = ta.last_stats()
    assert stats.ok and stats.window_active
    assert rel_l2(out, hybrid_reference(q, k, v, text, grids, 1, P=3, sub_head_blocks=1)) < TOL[torch.float32]
    out = ta.attention_op(q, k, v, config=cfg)  # no layout: plain Taylor
    assert ta.last_stats().window_reason == "window_no_layout"
    # a wrong layout inside the op is answered, not raised: exact attention and the reason
    out = ta.attention_op(q, k, v, config=cfg, layout=(1, [(2, 2)]))
    assert ta.last_stats().fallback_reason == "exception" and "tokens" in ta.last_stats().message
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(out, exact, atol=1e-5)


def test_stats_dict_has_window_fields(lib):
    q, k, v = qkv(54)
    _, stats = ta.taylor_attention(q, k, v, layout=(5, [(7, 7)]), min_tokens=0, P=3, sub_head_blocks=1)
    d = stats.as_dict()
    for key in ("window_active", "window_reason", "window_exact_pairs", "time_window_ms"):
        assert key in d
    assert d["window_active"] is True and d["window_exact_pairs"] > 0
