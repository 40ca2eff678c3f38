"""The torch custom op ``taylor_attention::attention`` and the plain function
:func:`taylor_attention`.

The op returns only the output tensor so that ``torch.compile`` can trace it without a
graph break (its fake implementation gives the output's shape, dtype and strides). A
call the engine declines is answered inside the op by exact softmax attention (torch
SDPA with the call's scale and mask), so a compiled graph always gets a valid result;
the stats of the last op call on this thread are kept in a side channel,
:func:`last_stats`. On torch without ``torch.library.custom_op`` (< 2.4) the op is not
registered and :func:`attention_op` runs eagerly.
"""

import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from . import _lib
from .config import TaylorConfig
from .layout import TokenLayout, pack_layout
from .engine import (REASON_LIBRARY_UNAVAILABLE, AttentionStats, Call, Declined,
                     OOM_ERRORS, exact_attention, make_ta_config)

OP_NAME = "taylor_attention::attention"

#: Order of the fields packed into the op's ``float[] config`` argument.
PACKED_FIELDS = [
    "enabled", "P", "min_tokens", "max_feature_dim_R", "sub_head_blocks", "qk_normalize",
    "scale_mul", "scale", "block_size_q", "block_size_k", "eps", "fallback_on_negative",
    "allow_cross_attention", "max_head_dim", "force_fp32", "early_probe", "probe_samples",
    "denom_fp32", "quality_check", "quality_check_samples", "seed", "num_threads",
    "window_radius", "window_text_keys", "window_text_queries",
]
_FLOAT_FIELDS = {"scale_mul", "scale", "eps"}


def pack_config(config: TaylorConfig, quality_check: Optional[bool] = None) -> List[float]:
    values = []
    for name in PACKED_FIELDS:
        value = getattr(config, name)
        if name == "quality_check" and quality_check is not None:
            value = quality_check
        values.append(float(value))
    return values


def unpack_config(values: Sequence[float]) -> TaylorConfig:
    kwargs: Dict[str, Any] = {}
    for name, value in zip(PACKED_FIELDS, values):
        kwargs[name] = float(value) if name in _FLOAT_FIELDS else int(value)
    cfg = TaylorConfig()
    for name, value in kwargs.items():
        default = getattr(cfg, name)
        setattr(cfg, name, bool(value) if isinstance(default, bool) else value)
    return cfg


class TaylorAttentionFallback(RuntimeError):
    """Raised by :func:`taylor_attention` with ``on_fallback="raise"`` when the engine
    declines; ``stats.fallback_reason`` says why."""

    def __init__(self, stats: AttentionStats):
        super().__init__(f"Taylor attention fell back: {stats.fallback_reason}"
                         + (f" ({stats.message})" if stats.message else ""))
        self.stats = stats


_local = threading.local()


def last_stats() -> Optional[AttentionStats]:
    """Stats of the last op call (eager or compiled) on this thread."""
    return getattr(_local, "stats", None)


def _set_last_stats(stats: AttentionStats) -> None:
    _local.stats = stats


# Listeners for op calls made by an override object (state_id -> object with
# on_op_result(stats)); weak so an override that is gone is forgotten.
_listeners = weakref.WeakValueDictionary()
_next_id = [1]
_id_lock = threading.Lock()


def register_listener(obj: Any) -> int:
    with _id_lock:
        ident = _next_id[0]
        _next_id[0] += 1
        _listeners[ident] = obj
    return ident


def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
        config: TaylorConfig, scale: Optional[float] = None, quality_check: Optional[bool] = None,
        out_layout: str = "bhnd", force_fp32: bool = False,
        layout: Optional[TokenLayout] = None) -> Tuple[Optional[torch.Tensor], AttentionStats]:
    """One engine call in the library's layout. Returns (out, stats) when Taylor produced
    the output and (None, stats) when it declined for any reason, including the library
    being unavailable, an unsupported dtype/device and CUDA OOM. Raises
    ``TaylorAttentionError`` for a malformed call (e.g. mismatched shapes) and ValueError
    for a ``layout`` whose token count differs from N."""
    lib = _lib.try_load_library()
    if lib is None:
        _, why = _lib.library_status()
        return None, AttentionStats.declined(REASON_LIBRARY_UNAVAILABLE, why)
    try:
        cfg = make_ta_config(lib, config, scale=scale, quality_check=quality_check,
                             force_fp32=force_fp32)
        call = Call(lib, q, k, v, mask, cfg, out_layout=out_layout, layout=layout)
        reason = call.check()
        if reason != "none":
            return None, AttentionStats.declined(reason)
        stats = call.run()
    except Declined as exc:
        return None, AttentionStats.declined(exc.reason, exc.detail)
    except OOM_ERRORS as exc:
        return None, AttentionStats.declined("out_of_memory", str(exc))
    return (call.out if stats.ok else None), stats


def taylor_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: Optional[torch.Tensor] = None, scale: Optional[float] = None, *,
                     on_fallback: str = "none", layout: Any = None,
                     **params: Any) -> Tuple[Optional[torch.Tensor], AttentionStats]:
    """Taylor attention for users outside ComfyUI.

    q [B,H,Nq,d], k [B,H,Nk,d], v [B,H,Nk,dv] (any strides, f16/bf16/f32, f64 on the
    CPU; CPU or CUDA); mask optional, bool (True = attend) or additive float, shaped
    [Nk], [B,Nk] or [B|1,1|H,1|Nq,Nk] (a key-padding mask). ``scale`` defaults to
    d^-1/2. ``params`` are the node's parameters (P, sub_head_blocks, qk_normalize, ...,
    see :data:`taylor_attention.config.PARAMS`; note the default sub_head_blocks=4).

    ``layout``: the token layout for the local-exact hybrid (``window_radius`` > 0, default
    4): a :class:`TokenLayout` or ``(text_tokens, [(h, w), ...])`` whose token count equals
    N (ValueError otherwise). Without it the call runs plain Taylor attention and
    ``stats.window_reason`` is ``window_no_layout``; ``stats.window_active`` says whether
    the hybrid ran.

    Returns ``(out, stats)`` with out [B,H,Nq,dv] in q's dtype. When the engine declines
    (``stats.fallback_reason`` names why), ``on_fallback`` decides: ``"none"`` (default)
    returns ``(None, stats)``, ``"raise"`` raises :class:`TaylorAttentionFallback`,
    ``"exact"`` returns exact softmax attention (torch SDPA) with those stats.
    """
    if on_fallback not in ("none", "raise", "exact"):
        raise ValueError(f"on_fallback must be none, raise or exact, not {on_fallback!r}")
    config = TaylorConfig.from_kwargs(**params)
    out, stats = run(q, k, v, mask, config, scale=scale, layout=TokenLayout.coerce(layout))
    if out is None:
        if on_fallback == "raise":
            raise TaylorAttentionFallback(stats)
        if on_fallback == "exact":
            out = exact_attention(q, k, v, mask, scale)
    return out, stats


# ---------------------------------------------------------------- custom op
def _op_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
             scale: float, config: List[float], out_bnhd: bool, state_id: int,
             layout: List[int]) -> torch.Tensor:
    cfg = unpack_config(config)
    out_layout = "bnhd" if out_bnhd else "bhnd"
    listener = _listeners.get(int(state_id)) if state_id else None
    try:
        tokens = TokenLayout.unpack(layout)
        if listener is not None:
            out, stats = listener.run_for_op(q, k, v, mask, cfg, scale if scale > 0 else None,
                                             out_layout, tokens)
        else:
            out, stats = run(q, k, v, mask, cfg, scale=scale if scale > 0 else None,
                             out_layout=out_layout, layout=tokens)
    except Exception as exc:  # the op must always answer: exact attention below
        out, stats = None, AttentionStats.declined("exception", repr(exc))
    _set_last_stats(stats)
    if out is None:
        ref = exact_attention(q, k, v, mask, scale if scale > 0 else None)
        out = _empty_out(q, v, out_bnhd)
        out.copy_(ref)
    return out


def _empty_out(q: torch.Tensor, v: torch.Tensor, out_bnhd: bool) -> torch.Tensor:
    B, H, Nq, _ = q.shape
    dv = v.shape[3]
    if out_bnhd:
        return q.new_empty((B, Nq, H, dv)).transpose(1, 2)
    return q.new_empty((B, H, Nq, dv))


def _op_fake(q, k, v, mask, scale, config, out_bnhd, state_id, layout):
    return _empty_out(q, v, out_bnhd)


_op: Optional[Callable[..., torch.Tensor]] = None


def _register_op() -> Optional[Callable[..., torch.Tensor]]:
    library = getattr(torch, "library", None)
    if library is None or not hasattr(library, "custom_op"):
        return None
    namespace = getattr(torch.ops, "taylor_attention", None)
    existing = getattr(namespace, "attention", None) if namespace is not None else None
    if existing is not None:  # registered by another copy of this package
        return existing
    try:
        op = library.custom_op(OP_NAME, mutates_args=())(_op_impl_typed)
        op.register_fake(_op_fake)
        return torch.ops.taylor_attention.attention
    except Exception:  # noqa: BLE001 - an old or unusual torch: run eagerly instead
        return None


def _op_impl_typed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
                   scale: float, config: List[float], out_bnhd: bool, state_id: int,
                   layout: List[int]) -> torch.Tensor:
    return _op_impl(q, k, v, mask, scale, config, out_bnhd, state_id, layout)


_op = _register_op()


def op_available() -> bool:
    """True when ``torch.ops.taylor_attention.attention`` is registered."""
    return _op is not None


def attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 mask: Optional[torch.Tensor] = None, scale: Optional[float] = None,
                 config: Optional[TaylorConfig] = None, out_bnhd: bool = False,
                 state_id: int = 0, quality_check: Optional[bool] = None,
                 layout: Any = None) -> torch.Tensor:
    """Calls the custom op (or its implementation eagerly on old torch). Always returns a
    [B,H,Nq,dv] tensor: Taylor attention, or exact attention when the engine declined
    (see :func:`last_stats`). ``layout`` (optional) is the token layout of the hybrid; it
    travels as the op's ``int[] layout`` (``[text, h0, w0, ...]``, empty = none)."""
    config = config or TaylorConfig()
    packed = pack_config(config, quality_check)
    packed_layout = pack_layout(TokenLayout.coerce(layout))
    s = float(scale) if scale else 0.0
    if _op is not None:
        return _op(q, k, v, mask, s, packed, out_bnhd, state_id, packed_layout)
    return _op_impl(q, k, v, mask, s, packed, out_bnhd, state_id, packed_layout)
