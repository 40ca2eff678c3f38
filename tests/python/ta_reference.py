"""Plain torch references for the tests: the Taylor function in quadratic form,
sum_j T_P(s_ij) v_j / sum_j T_P(s_ij), with the library's slicing, scale and
qk_normalize semantics, computed in fp64; and exact softmax attention."""

import math
from typing import Optional

import torch


def taylor_poly(s: torch.Tensor, P: int) -> torch.Tensor:
    out = torch.zeros_like(s)
    term = torch.ones_like(s)
    for p in range(P):
        if p > 0:
            term = term * s / p
        out = out + term
    return out


def key_keep(mask: Optional[torch.Tensor], B: int, Nk: int) -> Optional[torch.Tensor]:
    """A key-padding mask in any library form as a [B|1, 1, 1, Nk] float64 keep-mask."""
    if mask is None:
        return None
    keep = mask if mask.dtype == torch.bool else (mask.double() > -1e4)
    keep = keep.double()
    if keep.dim() == 1:
        keep = keep.view(1, 1, 1, Nk)
    elif keep.dim() == 2:
        keep = keep.view(keep.shape[0], 1, 1, Nk)
    elif keep.dim() == 3:
        keep = keep.unsqueeze(1)
    return keep[..., :1, :] if keep.shape[-2] > 1 else keep


def taylor_reference(q, k, v, mask=None, scale=None, P=4, sub_head_blocks=4, qk_normalize=False,
                     scale_mul=1.0, eps=1e-6) -> torch.Tensor:
    """q [B,H,Nq,d], k [B,H,Nk,d], v [B,H,Nk,dv] -> [B,H,Nq,dv] in float64."""
    q, k, v = q.double(), k.double(), v.double()
    B, H, Nq, d = q.shape
    dv = v.shape[-1]
    G = sub_head_blocks
    base = scale if scale else d ** -0.5
    s_slice = base * math.sqrt(G) * scale_mul
    keep = key_keep(mask, B, k.shape[2])
    outs = []
    ds, dvs = d // G, dv // G
    for g in range(G):
        qs = q[..., g * ds:(g + 1) * ds]
        ks = k[..., g * ds:(g + 1) * ds]
        vs = v[..., g * dvs:(g + 1) * dvs]
        if qk_normalize:
            qs = qs / (qs.norm(dim=-1, keepdim=True) + eps)
            ks = ks / (ks.norm(dim=-1, keepdim=True) + eps)
        w = taylor_poly(s_slice * qs @ ks.transpose(-1, -2), P)
        if keep is not None:
            w = w * keep
        outs.append((w @ vs) / w.sum(-1, keepdim=True))
    return torch.cat(outs, dim=-1)


def exact_reference(q, k, v, mask=None, scale=None) -> torch.Tensor:
    q, k, v = q.double(), k.double(), v.double()
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.double()
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


# Relative L2 tolerance of the library's output against the fp64 reference, by dtype:
# output rounding (and the CPU's fp32 accumulation for 16-bit inputs) dominates.
TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 1.5e-2, torch.float16: 2e-3}


def exact_set(text: int, grids, radius: int, text_keys: bool = True, text_queries: bool = True) -> torch.Tensor:
    """[N, N] bool: E[i, j] when query i weights key j with exp in the local-exact hybrid
    (text queries: every key or the text keys; a grid query: its own grid's keys within
    Chebyshev distance ``radius``, plus the text keys)."""
    N = text + sum(h * w for h, w in grids)
    E = torch.zeros(N, N, dtype=torch.bool)
    if text_queries:
        E[:text, :] = True
    elif text_keys:
        E[:text, :text] = True
    start = text
    for h, w in grids:
        y = torch.arange(h).repeat_interleave(w)
        x = torch.arange(w).repeat(h)
        near = ((y[:, None] - y[None, :]).abs() <= radius) & ((x[:, None] - x[None, :]).abs() <= radius)
        E[start:start + h * w, start:start + h * w] = near
        if text_keys:
            E[start:start + h * w, :text] = True
        start += h * w
    return E


def hybrid_reference(q, k, v, text: int, grids, radius: int, text_keys=True, text_queries=True,
                     mask=None, scale=None, P=4, sub_head_blocks=4, qk_normalize=False,
                     scale_mul=1.0, eps=1e-6) -> torch.Tensor:
    """The local-exact hybrid in quadratic form, fp64: per query, with
    m = max(0, largest score of its exact set), weights exp(s - m) on the exact set and
    exp(-m) T_P(s) elsewhere; masked keys weigh nothing."""
    q, k, v = q.double(), k.double(), v.double()
    B, H, Nq, d = q.shape
    dv = v.shape[-1]
    G = sub_head_blocks
    s_slice = (scale if scale else d ** -0.5) * math.sqrt(G) * scale_mul
    keep = key_keep(mask, B, k.shape[2])
    E = exact_set(text, grids, radius, text_keys, text_queries)
    ds, dvs = d // G, dv // G
    outs = []
    for g in range(G):
        qs, ks = q[..., g * ds:(g + 1) * ds], k[..., g * ds:(g + 1) * ds]
        vs = v[..., g * dvs:(g + 1) * dvs]
        if qk_normalize:
            qs = qs / (qs.norm(dim=-1, keepdim=True) + eps)
            ks = ks / (ks.norm(dim=-1, keepdim=True) + eps)
        s = s_slice * qs @ ks.transpose(-1, -2)
        live = E if keep is None else E & (keep > 0)
        m = torch.where(live, s, torch.full_like(s, -math.inf)).amax(-1, keepdim=True).clamp(min=0)
        w = torch.where(E, torch.exp(s - m), torch.exp(-m) * taylor_poly(s, P))
        if keep is not None:
            w = w * keep
        outs.append((w @ vs) / w.sum(-1, keepdim=True))
    return torch.cat(outs, dim=-1)
