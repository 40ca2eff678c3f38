"""Torch side of the binding: turns torch tensors into ``ta_tensor`` views (no copy),
allocates the output and the workspace with torch on the tensors' device, passes
torch's current CUDA stream, and reads ``ta_stats`` back into :class:`AttentionStats`.

Everything here works on the library's layout: q [B,H,Nq,d], k [B,H,Nk,d],
v [B,H,Nk,dv], out [B,H,Nq,dv] (any strides), mask in one of the library's forms.
"""

from __future__ import annotations

import ctypes
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import torch

from . import _lib
from ._lib import Library, TaStats, TaTensor, TaConfig
from .config import TaylorConfig
from .layout import TokenLayout

# Fallback reasons decided on the Python side (the engine's names come from ta_reason_name).
REASON_LIBRARY_UNAVAILABLE = "library_unavailable"
REASON_UNSUPPORTED_INPUT = "unsupported_input"
REASON_EXCEPTION = "exception"

_TORCH_DTYPES = {
    torch.float16: _lib.TA_DTYPE_F16,
    torch.bfloat16: _lib.TA_DTYPE_BF16,
    torch.float32: _lib.TA_DTYPE_F32,
    torch.float64: _lib.TA_DTYPE_F64,
}

WORKSPACE_ALIGNMENT = 256


def _oom_types() -> Tuple[type, ...]:
    types = []
    for owner, name in ((torch, "OutOfMemoryError"), (torch.cuda, "OutOfMemoryError")):
        t = getattr(owner, name, None)
        if isinstance(t, type) and t not in types:
            types.append(t)
    return tuple(types)


OOM_ERRORS = _oom_types()


def is_allocation_failure(exc: BaseException) -> bool:
    """torch's OOM types, and the CPU allocator's failure, which torch raises as a plain
    RuntimeError ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(exc, OOM_ERRORS):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


class Declined(Exception):
    """Raised inside the binding when a call cannot be handed to the library;
    ``reason`` is the fallback reason name."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Quality:
    samples: int = 0
    rel_l2: float = 0.0
    mean_abs: float = 0.0
    max_abs: float = 0.0
    mean_rel: float = 0.0


@dataclass
class AttentionStats:
    """Statistics of one call (ta_stats plus the Python-side outcome).

    ``fallback_reason`` is ``"none"`` when the Taylor output was produced, else the
    engine's reason name (``below_min_tokens``, ``denominator_too_small``, ...) or a
    Python-side one (``library_unavailable``, ``unsupported_input``, ``exception``)."""

    status: str = "fallback"
    backend: str = "none"
    fallback_reason: str = "none"
    message: str = ""
    sub_head_blocks: int = 0
    slice_dim: int = 0
    slice_value_dim: int = 0
    feature_dim: int = 0
    state_bytes: int = 0
    workspace_bytes: int = 0
    denom_count: int = 0
    denom_min: float = 0.0
    denom_max: float = 0.0
    denom_mean: float = 0.0
    denom_le_eps: int = 0
    denom_non_finite: int = 0
    probe_ran: bool = False
    probe_samples: int = 0
    probe_denom_min: float = 0.0
    quality_vs_original: Quality = field(default_factory=Quality)
    quality_truncation: Quality = field(default_factory=Quality)
    time_probe_ms: float = 0.0
    time_key_pass_ms: float = 0.0
    time_query_pass_ms: float = 0.0
    time_quality_ms: float = 0.0
    time_total_ms: float = 0.0
    # local-exact hybrid: whether it ran, why a requested window did not (a reason name,
    # "none" otherwise), the (query, key) pairs weighted exactly, and its share of the time
    window_active: bool = False
    window_reason: str = "none"
    window_exact_pairs: int = 0
    time_window_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.fallback_reason == "none" and self.status == "ok"

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def declined(cls, reason: str, message: str = "") -> "AttentionStats":
        return cls(status="fallback", fallback_reason=reason, message=message)


def _quality(q: _lib.TaQuality) -> Quality:
    return Quality(int(q.samples), float(q.rel_l2), float(q.mean_abs), float(q.max_abs),
                   float(q.mean_rel))


def stats_from_c(lib: Library, status: int, s: TaStats) -> AttentionStats:
    return AttentionStats(
        status=lib.status_name(status),
        backend=lib.backend_name(s.backend),
        fallback_reason=lib.reason_name(s.fallback_reason),
        sub_head_blocks=int(s.sub_head_blocks),
        slice_dim=int(s.slice_dim),
        slice_value_dim=int(s.slice_value_dim),
        feature_dim=int(s.feature_dim),
        state_bytes=int(s.state_bytes),
        workspace_bytes=int(s.workspace_bytes),
        denom_count=int(s.denom_count),
        denom_min=float(s.denom_min),
        denom_max=float(s.denom_max),
        denom_mean=float(s.denom_mean),
        denom_le_eps=int(s.denom_le_eps),
        denom_non_finite=int(s.denom_non_finite),
        probe_ran=bool(s.probe_ran),
        probe_samples=int(s.probe_samples),
        probe_denom_min=float(s.probe_denom_min),
        quality_vs_original=_quality(s.quality_vs_original),
        quality_truncation=_quality(s.quality_truncation),
        time_probe_ms=float(s.time_probe_ms),
        time_key_pass_ms=float(s.time_key_pass_ms),
        time_query_pass_ms=float(s.time_query_pass_ms),
        time_quality_ms=float(s.time_quality_ms),
        time_total_ms=float(s.time_total_ms),
        window_active=bool(s.window_active),
        window_reason=lib.reason_name(s.window_reason),
        window_exact_pairs=int(s.window_exact_pairs),
        time_window_ms=float(s.time_window_ms),
    )


def device_of(t: torch.Tensor) -> Tuple[int, int]:
    """(ta_device_type, device_id) of a tensor; Declined(unsupported_device) otherwise."""
    if t.device.type == "cpu":
        return _lib.TA_DEVICE_CPU, 0
    if t.device.type == "cuda":
        index = t.device.index if t.device.index is not None else torch.cuda.current_device()
        return _lib.TA_DEVICE_CUDA, int(index)
    raise Declined("unsupported_device", f"device {t.device} has no Taylor backend")


def to_ta_tensor(t: torch.Tensor, what: str, mask: bool = False) -> TaTensor:
    """A ``ta_tensor`` describing ``t`` in place (data_ptr, shape, element strides)."""
    if mask and t.dtype == torch.bool:
        dtype = _lib.TA_DTYPE_BOOL
    elif t.dtype in _TORCH_DTYPES:
        dtype = _TORCH_DTYPES[t.dtype]
    else:
        raise Declined("unsupported_mask" if mask else "unsupported_dtype",
                       f"{what} has dtype {t.dtype}")
    if t.dim() < 1 or t.dim() > _lib.TA_MAX_DIMS:
        raise Declined("unsupported_mask" if mask else "unsupported_layout",
                       f"{what} has {t.dim()} dims")
    if t.is_complex() or t.layout != torch.strided:
        raise Declined("unsupported_layout", f"{what} is not a strided tensor")
    device, device_id = device_of(t)
    tt = TaTensor()
    tt.data = t.data_ptr() if t.numel() > 0 else None
    tt.dtype = dtype
    tt.device = device
    tt.device_id = device_id
    tt.ndim = t.dim()
    for i, (n, s) in enumerate(zip(t.shape, t.stride())):
        tt.shape[i] = int(n)
        tt.strides[i] = int(s)
    return tt


def make_ta_config(lib: Library, config: TaylorConfig, scale: Optional[float] = None,
                   quality_check: Optional[bool] = None,
                   force_fp32: Optional[bool] = None) -> TaConfig:
    """ta_config_defaults() with the config's fields set. ``scale`` (the caller's base
    scale) overrides ``config.scale``; ``quality_check`` overrides the config's flag."""
    cfg = lib.config_defaults()
    for name, value in config.engine_fields().items():
        if isinstance(value, bool):
            value = int(value)
        setattr(cfg, name, value)
    if scale is not None:
        cfg.scale = float(scale)
    if quality_check is not None:
        cfg.quality_check = int(bool(quality_check))
    if force_fp32:
        cfg.force_fp32 = 1
    return cfg


def normalize_mask(mask: Optional[torch.Tensor], nq: int, nk: int) -> Optional[torch.Tensor]:
    """A ComfyUI mask as a view in one of the library's forms: [Nk] and 4-D pass as they
    are; 2-D [Nq|1, Nk] becomes [1,1,Nq|1,Nk]; 3-D [B|1, Nq|1, Nk] becomes [B|1,1,Nq|1,Nk]
    (what ComfyUI's own backend does). Declined(unsupported_mask) for other shapes."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise Declined("unsupported_mask", f"mask of type {type(mask).__name__}")
    if mask.dim() == 0 or mask.dim() > 4 or mask.shape[-1] != nk:
        raise Declined("unsupported_mask", f"mask shape {list(mask.shape)} for Nk={nk}")
    if mask.dim() == 2:
        if mask.shape[0] not in (1, nq):
            raise Declined("unsupported_mask", f"2-D mask shape {list(mask.shape)} for Nq={nq}")
        return mask.unsqueeze(0).unsqueeze(0)
    if mask.dim() == 3:
        if mask.shape[1] not in (1, nq):
            raise Declined("unsupported_mask", f"3-D mask shape {list(mask.shape)} for Nq={nq}")
        return mask.unsqueeze(1)
    return mask


def current_stream(t: torch.Tensor) -> Optional[int]:
    if t.device.type != "cuda":
        return None
    return int(torch.cuda.current_stream(t.device).cuda_stream)


class Call:
    """One prepared call: descriptors of q, k, v, mask and a freshly allocated output.

    ``out_layout`` "bhnd" allocates out contiguous as [B,H,Nq,dv]; "bnhd" allocates
    [B,Nq,H,dv] contiguous and hands the library its [B,H,Nq,dv] transpose, so that the
    result reshapes to ComfyUI's [B,Nq,H*dv] without a copy. ``layout`` (a
    :class:`TokenLayout`, optional) is the token layout for the local-exact hybrid; for
    self-attention its token count must equal N (ValueError otherwise: the library would
    refuse it as a malformed call)."""

    def __init__(self, lib: Library, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 mask: Optional[torch.Tensor], cfg: TaConfig, out_layout: str = "bhnd",
                 out: Optional[torch.Tensor] = None, layout: Optional[TokenLayout] = None):
        self.lib = lib
        self.cfg = cfg
        if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
            raise Declined("unsupported_layout",
                           f"q, k, v must be 4-D [B,H,N,d], got {q.dim()}, {k.dim()}, {v.dim()} dims")
        self.q, self.k, self.v, self.mask = q, k, v, mask
        self._tq = to_ta_tensor(q, "q")
        self._tk = to_ta_tensor(k, "k")
        self._tv = to_ta_tensor(v, "v")
        self._tmask = to_ta_tensor(mask, "mask", mask=True) if mask is not None else None
        B, H, Nq, _ = q.shape
        dv = v.shape[3]
        if out is None:
            if out_layout == "bnhd":
                out = torch.empty((B, Nq, H, dv), dtype=q.dtype, device=q.device).transpose(1, 2)
            else:
                out = torch.empty((B, H, Nq, dv), dtype=q.dtype, device=q.device)
        self.out = out
        self._tout = to_ta_tensor(out, "out")
        self.args = _lib.TaAttentionArgs()
        self.args.q = ctypes.pointer(self._tq)
        self.args.k = ctypes.pointer(self._tk)
        self.args.v = ctypes.pointer(self._tv)
        self.args.mask = ctypes.pointer(self._tmask) if self._tmask is not None else None
        self.args.out = ctypes.pointer(self._tout)
        self.layout = layout
        self._tlayout = None
        if layout is not None:
            if q.shape[2] == k.shape[2]:
                layout.check(q.shape[2])
            self._tlayout = layout.to_c()
            self.args.layout = ctypes.pointer(self._tlayout)

    def check(self) -> str:
        """The guard decision: "none" or a fallback reason name."""
        reason = ctypes.c_int(0)
        status = self.lib.ta_attention_check(ctypes.byref(self.args), ctypes.byref(self.cfg),
                                             ctypes.byref(reason))
        self.lib.raise_for(status, "ta_attention_check")
        return self.lib.reason_name(reason.value)

    def memory_estimate(self) -> _lib.TaMemoryEstimate:
        est = _lib.TaMemoryEstimate()
        status = self.lib.ta_attention_memory_estimate(ctypes.byref(self.args),
                                                       ctypes.byref(self.cfg), ctypes.byref(est))
        self.lib.raise_for(status, "ta_attention_memory_estimate")
        return est

    def workspace_size(self) -> int:
        size = ctypes.c_size_t(0)
        status = self.lib.ta_attention_workspace_size(ctypes.byref(self.args),
                                                      ctypes.byref(self.cfg), ctypes.byref(size))
        self.lib.raise_for(status, "ta_attention_workspace_size")
        return int(size.value)

    def run(self, quality_check: Optional[bool] = None) -> AttentionStats:
        """Runs the call; out holds the Taylor result when the returned stats are ``ok``.
        Raises TaylorAttentionError for an error status; torch's OOM while allocating the
        workspace becomes the fallback reason out_of_memory."""
        if quality_check is not None:
            self.cfg.quality_check = int(bool(quality_check))
        nbytes = self.workspace_size()
        workspace_ptr = None
        workspace = None
        if nbytes > 0:
            try:
                workspace = torch.empty(nbytes + WORKSPACE_ALIGNMENT, dtype=torch.uint8,
                                        device=self.q.device)
            except RuntimeError as exc:  # OOM_ERRORS derive from RuntimeError
                if not is_allocation_failure(exc):
                    raise
                return AttentionStats.declined("out_of_memory", f"workspace of {nbytes} bytes: {exc}")
            base = workspace.data_ptr()
            workspace_ptr = (base + WORKSPACE_ALIGNMENT - 1) // WORKSPACE_ALIGNMENT * WORKSPACE_ALIGNMENT
        stream = current_stream(self.q)
        cstats = self.lib.new_stats()
        status = self.lib.ta_attention_run(ctypes.byref(self.args), ctypes.byref(self.cfg),
                                           workspace_ptr, nbytes, stream, ctypes.byref(cstats))
        if status not in (_lib.TA_OK, _lib.TA_FALLBACK):
            self.lib.raise_for(status, "ta_attention_run")
        stats = stats_from_c(self.lib, status, cstats)
        if status == _lib.TA_FALLBACK and stats.fallback_reason == "none":
            stats.fallback_reason = "unknown"
        del workspace  # kept alive until here: the library has finished with it (stream-ordered on CUDA)
        return stats


def exact_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    mask: Optional[torch.Tensor] = None, scale: Optional[float] = None) -> torch.Tensor:
    """Exact softmax attention in the library's layout with a library-form mask
    (torch SDPA): the original attention the Taylor call approximates."""
    attn_mask = mask
    if mask is not None:
        if mask.dim() == 1:
            attn_mask = mask.view(1, 1, 1, -1)
        elif mask.dim() == 2:
            attn_mask = mask.view(mask.shape[0], 1, 1, mask.shape[1])
        if attn_mask.dtype != torch.bool and attn_mask.dtype != q.dtype:
            attn_mask = attn_mask.to(q.dtype)
    kwargs = {} if scale is None or scale == 0 else {"scale": float(scale)}
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, **kwargs)
