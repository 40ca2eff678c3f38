"""generate_workload: the library's synthetic Flux-like inputs through the binding
(skipped while the library lacks ta_workload_generate)."""

import pytest
import torch

import taylor_attention as ta
from ta_reference import exact_reference, hybrid_reference, rel_l2, taylor_reference


@pytest.fixture
def gen(lib):
    if not lib.has_workload:
        pytest.skip(f"{lib.path} has no ta_workload_generate yet")
    return ta.generate_workload


def test_defaults_match_the_header(lib, gen):
    p = lib.workload_defaults()
    assert (p.layout.text_tokens, p.layout.num_grids, p.layout.grid_height[0], p.layout.grid_width[0]) == (256, 1, 64, 64)
    assert (p.smoothness, p.gain, p.alignment, p.rope, p.seed) == (3.0, 1.0, 0.7, 1, 0)


def test_shapes_dtypes_and_norms_B2_H3_T5_6x7_d16_dv12(gen):
    layout = ta.TokenLayout(5, ((6, 7),))
    q, k, v = gen(batch=2, heads=3, layout=layout, head_dim=16, value_dim=12, dtype=torch.float64,
                  gain=1.5, seed=3)
    assert q.shape == (2, 3, 47, 16) and k.shape == (2, 3, 47, 16) and v.shape == (2, 3, 47, 12)
    assert q.dtype == torch.float64 and torch.isfinite(q).all() and torch.isfinite(v).all()
    # RMSNorm (eps 1e-6 under the root) then gain; RoPE rotates pairs, keeping the norm:
    # |q| = |k| = gain * sqrt(d) up to the epsilon
    for t in (q, k):
        assert torch.allclose(t.norm(dim=-1), torch.full(t.shape[:-1], 1.5 * 16 ** 0.5, dtype=torch.float64),
                              rtol=1e-4)
    # each (batch, head) gets its own projections
    assert not torch.allclose(q[0, 0], q[0, 1]) and not torch.allclose(q[0, 0], q[1, 0])


def test_deterministic_per_seed(gen):
    a = gen(heads=2, layout=(4, [(5, 5)]), head_dim=8, seed=7)
    b = gen(heads=2, layout=(4, [(5, 5)]), head_dim=8, seed=7)
    c = gen(heads=2, layout=(4, [(5, 5)]), head_dim=8, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float16, 1e-3), (torch.bfloat16, 8e-3)],
                         ids=["float32", "float16", "bfloat16"])
def test_low_precision_is_the_same_workload_rounded(gen, dtype, tol):
    ref = gen(heads=1, layout=(3, [(4, 4)]), head_dim=8, dtype=torch.float64, seed=1)
    low = gen(heads=1, layout=(3, [(4, 4)]), head_dim=8, dtype=dtype, seed=1)
    for r, x in zip(ref, low):
        assert x.dtype == dtype
        assert rel_l2(x, r) < tol


def test_hybrid_beats_plain_taylor_on_smooth_content_T16_24x24_d64(gen):
    """MATH.md section 6 in miniature: on image-like inputs the window cuts the error of
    plain Taylor against exact attention (0.75 -> 0.040 at r=4 for 256 + 64x64, d=128;
    measured 0.49 -> 0.099 at r=2 here, uniform average 1.0)."""
    text, grids = 16, [(24, 24)]
    q, k, v = gen(heads=2, layout=(text, grids), head_dim=64, dtype=torch.float64, seed=0)
    exact = exact_reference(q, k, v)
    plain = rel_l2(taylor_reference(q, k, v, P=3, sub_head_blocks=1), exact)
    hybrid = rel_l2(hybrid_reference(q, k, v, text, grids, 2, P=3, sub_head_blocks=1), exact)
    out, stats = ta.taylor_attention(q, k, v, layout=(text, grids), P=3, sub_head_blocks=1, min_tokens=0,
                                     window_radius=2)
    assert stats.window_active and abs(rel_l2(out, exact) - hybrid) < 1e-9
    uniform = rel_l2(v.mean(dim=2, keepdim=True).expand_as(exact), exact)
    assert hybrid < 0.3 * plain and plain < 0.7 * uniform, (hybrid, plain, uniform)


def test_rope_needs_even_head_dim(gen):
    with pytest.raises(ta.TaylorAttentionError):
        gen(heads=1, layout=(2, [(3, 3)]), head_dim=7, rope=True)
