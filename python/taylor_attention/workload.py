"""Synthetic Flux-like attention inputs from the library's generator
(``ta_workload_generate``): spatially smooth content on each grid, per-head projections,
RMSNorm'd q and k times a gain, Flux's 3-axis RoPE. Deterministic for a seed on every
platform, so tests and benchmarks can quote errors on it."""

from __future__ import annotations

import ctypes
from typing import Any, Optional, Tuple

import torch

from . import _lib
from .engine import to_ta_tensor
from .layout import TokenLayout


def generate_workload(batch: int = 1, heads: int = 4, layout: Any = None, head_dim: int = 128,
                      value_dim: Optional[int] = None, dtype: torch.dtype = torch.float32,
                      smoothness: Optional[float] = None, gain: Optional[float] = None,
                      alignment: Optional[float] = None, rope: Optional[bool] = None,
                      seed: int = 0, device: Any = "cpu"
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k [batch, heads, N, head_dim] and v [batch, heads, N, value_dim] for ``layout``
    (a :class:`TokenLayout` or ``(text, [(h, w), ...])``; None = the library's default,
    256 text tokens + one 64x64 grid). Parameters left None take the library's defaults
    (``ta_workload_defaults``: smoothness 3, gain 1, alignment 0.7, rope on: the score
    spread of MATH.md section 6). Generated on
    the CPU in ``dtype``, then moved to ``device``.

    Raises :class:`LibraryUnavailable` when the library (or its generator) is missing and
    :class:`TaylorAttentionError` for parameters it refuses (e.g. an odd head_dim with rope)."""
    lib = _lib.load_library()
    params = lib.workload_defaults()
    layout = TokenLayout.coerce(layout)
    if layout is not None:
        params.layout = layout.to_c()
    for name, value in (("smoothness", smoothness), ("gain", gain), ("alignment", alignment)):
        if value is not None:
            setattr(params, name, float(value))
    if rope is not None:
        params.rope = int(bool(rope))
    params.seed = int(seed)
    n = params.layout.text_tokens + sum(params.layout.grid_height[g] * params.layout.grid_width[g]
                                        for g in range(params.layout.num_grids))
    dv = head_dim if value_dim is None else value_dim
    q = torch.empty(batch, heads, n, head_dim, dtype=dtype)
    k = torch.empty(batch, heads, n, head_dim, dtype=dtype)
    v = torch.empty(batch, heads, n, dv, dtype=dtype)
    tq, tk, tv = to_ta_tensor(q, "q"), to_ta_tensor(k, "k"), to_ta_tensor(v, "v")
    status = lib.ta_workload_generate(ctypes.byref(params), ctypes.byref(tq), ctypes.byref(tk),
                                      ctypes.byref(tv))
    lib.raise_for(status, "ta_workload_generate")
    return q.to(device), k.to(device), v.to(device)


def workload_available() -> bool:
    """True when the library loads and exports the generator."""
    lib = _lib.try_load_library(log_once=False)
    return lib is not None and lib.has_workload
