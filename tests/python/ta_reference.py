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
