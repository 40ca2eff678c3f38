"""ComfyUI's ``optimized_attention_override`` for Taylor attention.

An instance of :class:`TaylorAttentionOverride` holds the state; the node installs a
plain function delegating to it (:func:`make_override_function`) as
``transformer_options["optimized_attention_override"]`` and the instance itself as
``transformer_options["taylor_attention"]``. ComfyUI calls the override as
``override(func, q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
skip_output_reshape=False, **kwargs)`` where ``func`` is the default backend. All
state (counters, quality-check cadence, memory-reserve decisions, logged shapes,
summary) lives on the instance: ComfyUI copies the ``transformer_options`` dicts on
every step but shares the instance, and ``copy.deepcopy`` (ModelPatcher.clone) returns
the instance itself.

With ``window_radius`` > 0 each call also needs its token layout: the node wraps the model
call (:mod:`taylor_attention.model_layout`) and the state's :class:`LayoutTracker`
(``state.layouts``) answers, per attention call, the layout whose token count matches.
Without one the call runs plain Taylor attention (never the fallback), logged once per
shape and reason ("window off: ...").

Every call that Taylor does not answer goes to the previous override (when ours
replaced one) or to ``func(*args, **kwargs)``, whatever the reason: a guard or run-time
reason of the engine, the library missing, an unsupported device or dtype, CUDA OOM,
non-finite output or any exception. Nothing is raised into ComfyUI except what the
fallback itself raises.
"""

from __future__ import annotations

import collections
import importlib
import logging
import traceback
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from . import _lib, ops
from ._lib import TaylorAttentionError
from .config import TaylorConfig, feature_dim
from .engine import (OOM_ERRORS, REASON_EXCEPTION, REASON_LIBRARY_UNAVAILABLE,
                     REASON_UNSUPPORTED_INPUT, AttentionStats, Call, Declined, make_ta_config,
                     normalize_mask)
from .layout import TokenLayout
from .model_layout import LayoutTracker

log = logging.getLogger("taylor_attention")

OVERRIDE_KEY = "optimized_attention_override"
CONFIG_KEY = "taylor_attention"
REASON_ERROR = "error"

_MISSING = object()
_model_management_cache: Dict[str, Any] = {}


def model_management() -> Optional[Any]:
    """``comfy.model_management`` when importable (cached), else None. On a CPU-only
    torch its import fails unless ComfyUI was started with --cpu: the failure only
    disables memory_reserve."""
    mm = _model_management_cache.get("mm", _MISSING)
    if mm is _MISSING:
        try:
            mm = importlib.import_module("comfy.model_management")
        except Exception as exc:  # noqa: BLE001 - any import failure disables the feature
            log.debug("comfy.model_management unavailable (%s): memory_reserve is inactive", exc)
            mm = None
        _model_management_cache["mm"] = mm
    return mm


def reset_model_management_cache() -> None:
    _model_management_cache.clear()


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    fn = getattr(compiler, "is_compiling", None)
    if fn is not None:
        return bool(fn())
    dynamo = getattr(torch, "_dynamo", None)
    fn = getattr(dynamo, "is_compiling", None)
    return bool(fn()) if fn is not None else False


def _bind(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
          skip_output_reshape=False, **kwargs):
    return q, k, v, heads, mask, attn_precision, skip_reshape, skip_output_reshape, kwargs


class ParsedCall:
    """A backend call in the library's layout (views of the caller's tensors)."""

    __slots__ = ("q", "k", "v", "mask", "heads", "skip_output_reshape", "scale", "fp32",
                 "key", "where")

    def __init__(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]):
        try:
            q, k, v, heads, mask, attn_precision, skip_reshape, skip_output_reshape, rest = _bind(
                *args, **kwargs)
        except TypeError as exc:
            raise Declined(REASON_UNSUPPORTED_INPUT, str(exc)) from None
        if not (isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor)
                and isinstance(v, torch.Tensor)):
            raise Declined(REASON_UNSUPPORTED_INPUT, f"q of type {type(q).__name__}")
        if skip_reshape:
            if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
                raise Declined("unsupported_layout", "skip_reshape needs [B,H,N,D] tensors")
            q4, k4, v4 = q, k, v
        else:
            if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
                raise Declined("unsupported_layout", "expected [B,N,H*D] tensors")
            heads = int(heads)
            if heads <= 0 or q.shape[-1] % heads or k.shape[-1] % heads or v.shape[-1] % heads:
                raise Declined("unsupported_layout", f"last dims not divisible by heads={heads}")
            q4 = q.unflatten(-1, (heads, q.shape[-1] // heads)).transpose(1, 2)
            k4 = k.unflatten(-1, (heads, k.shape[-1] // heads)).transpose(1, 2)
            v4 = v.unflatten(-1, (heads, v.shape[-1] // heads)).transpose(1, 2)
        if k4.shape[1] != q4.shape[1] or v4.shape[1] != q4.shape[1]:
            raise Declined("unsupported_layout",
                           f"head counts differ (q {q4.shape[1]}, k {k4.shape[1]}, v {v4.shape[1]})")
        self.q, self.k, self.v = q4, k4, v4
        self.mask = normalize_mask(mask, q4.shape[2], k4.shape[2])
        self.heads = q4.shape[1]
        self.skip_output_reshape = bool(skip_output_reshape)
        scale = rest.get("scale")
        self.scale = float(scale) if scale is not None else None
        self.fp32 = attn_precision is torch.float32
        mask_key = None if self.mask is None else (tuple(self.mask.shape), str(self.mask.dtype))
        self.key = (tuple(q4.shape), tuple(k4.shape), tuple(v4.shape), str(q4.dtype),
                    str(q4.device), mask_key)
        options = rest.get("transformer_options")
        where = ""
        if isinstance(options, dict) and "block_type" in options:
            where = f" [{options.get('block_type')} block {options.get('block_index')}]"
        self.where = where

    @property
    def out_layout(self) -> str:
        return "bhnd" if self.skip_output_reshape else "bnhd"

    def shape_output(self, out: torch.Tensor) -> torch.Tensor:
        if self.skip_output_reshape:
            return out
        B, H, Nq, dv = out.shape
        return out.transpose(1, 2).reshape(B, Nq, H * dv)


def _mib(n: float) -> str:
    """Bytes in a readable unit (name kept short for the log lines)."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _shape_text(key: Tuple[Any, ...]) -> str:
    q, k, v, dtype, device, mask = key
    text = f"q{list(q)} k{list(k)} v{list(v)} {dtype.replace('torch.', '')} {device}"
    if mask is not None:
        text += f" mask{list(mask[0])} {mask[1].replace('torch.', '')}"
    return text


class TaylorAttentionOverride:
    """The override ComfyUI calls; also the node's state object.

    ``config``: a :class:`TaylorConfig`. ``previous``: the override this one replaced
    (called as the fallback); a previous Taylor override is unwrapped to its own previous.
    ``summary_every``: log a summary every that many calls (0 = never)."""

    def __init__(self, config: Optional[TaylorConfig] = None, previous: Optional[Callable] = None,
                 summary_every: int = 500):
        ours = taylor_state_of(previous)
        if ours is not None:
            previous = ours.previous
        self.config = config if config is not None else TaylorConfig()
        self.previous = previous
        self.summary_every = int(summary_every)
        self.calls = 0
        self.taylor_attempts = 0  # calls that passed the guards: quality-check cadence
        self.by_backend: collections.Counter = collections.Counter()
        self.by_reason: collections.Counter = collections.Counter()
        self.quality_checks = 0
        self.quality_rel_l2_sum = 0.0
        self.taylor_time_ms = 0.0
        self.last_stats: Optional[AttentionStats] = None
        self.reserve_decisions: Dict[Any, Dict[str, Any]] = {}
        self.layouts = LayoutTracker()  # fed by the node's model-call wrapper
        self.window_calls = 0  # Taylor calls that ran the local-exact hybrid
        self.window_off: collections.Counter = collections.Counter()  # why it did not, by code
        self._shapes_seen: set = set()
        self._fallbacks_logged: set = set()
        self._window_logged: set = set()
        self._op_id = ops.register_listener(self)

    # ComfyUI deep-copies model_options in ModelPatcher.clone(): keep one shared state.
    def __deepcopy__(self, memo: Dict[int, Any]) -> "TaylorAttentionOverride":
        return self

    def __copy__(self) -> "TaylorAttentionOverride":
        return self

    def __repr__(self) -> str:
        return f"TaylorAttentionOverride(P={self.config.P}, G={self.config.sub_head_blocks}, calls={self.calls})"

    # ------------------------------------------------------------ entry point
    def __call__(self, func: Callable, *args: Any, **kwargs: Any) -> Any:
        if _is_compiling():
            return self._compiled_call(func, args, kwargs)
        out = None
        try:
            out = self._eager(args, kwargs)
        except Exception as exc:  # noqa: BLE001 - never raise into ComfyUI
            try:
                self._record_fallback(REASON_EXCEPTION, None, repr(exc), tb=traceback.format_exc())
            except Exception:  # noqa: BLE001 - not even from logging
                pass
        if out is not None:
            return out
        return self.fallback(func, args, kwargs)

    def fallback(self, func: Callable, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    def _eager(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[torch.Tensor]:
        self.calls += 1
        try:
            call = ParsedCall(args, kwargs)
        except Declined as exc:
            self._record_fallback(exc.reason, None, exc.detail)
            return None
        window = self._window_lookup(call.q.shape[2], call.k.shape[2])
        out, _ = self._engine(call.q, call.k, call.v, call.mask, call.scale, call.fp32,
                              call.out_layout, call.key, call.where, window)
        return None if out is None else call.shape_output(out)

    def _compiled_call(self, func: Callable, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        """Under torch.compile: the custom op (traced without a graph break); the op's
        implementation calls back into run_for_op at run time, so logging and state still
        work, and answers a declined call with exact attention. The layout is looked up
        there too, at run time: the model-call wrapper runs outside the compiled region."""
        try:
            call = ParsedCall(args, kwargs)
        except Declined:
            return self.fallback(func, args, kwargs)
        out = ops.attention_op(call.q, call.k, call.v, call.mask, call.scale, self.config,
                               out_bnhd=not call.skip_output_reshape, state_id=self._op_id)
        return call.shape_output(out)

    def run_for_op(self, q, k, v, mask, cfg, scale, out_layout, layout: Optional[TokenLayout] = None):
        """Called by the custom op's implementation for calls made through this override;
        without a ``layout`` in the op's arguments the tracker is asked."""
        self.calls += 1
        mask_key = None if mask is None else (tuple(mask.shape), str(mask.dtype))
        key = (tuple(q.shape), tuple(k.shape), tuple(v.shape), str(q.dtype), str(q.device), mask_key)
        window = (layout, "", "") if layout is not None else self._window_lookup(q.shape[2], k.shape[2])
        return self._engine(q, k, v, mask, scale, False, out_layout, key, " [compiled]", window)

    # ------------------------------------------------------------ the window's layout
    def _window_lookup(self, nq: int, nk: int) -> Optional[Tuple[Optional[TokenLayout], str, str]]:
        """None when the window is off; else (layout, "", "") or (None, code, why)."""
        if int(self.config.window_radius) <= 0:
            return None
        return self.layouts.layout_for(int(nq), int(nk))

    def _note_window_off(self, key, code: str, detail: str, where: str) -> None:
        self.window_off[code] += 1
        if (key, code) in self._window_logged:
            return
        self._window_logged.add((key, code))
        if self.config.log_fallbacks:
            shape = f" for {_shape_text(key)}" if key is not None else ""
            log.info("taylor_attention: window off%s%s: %s; running plain Taylor attention",
                     shape, where, detail)

    # ------------------------------------------------------------ the engine call
    def _engine(self, q, k, v, mask, scale, fp32, out_layout, key, where,
                window: Optional[Tuple[Optional[TokenLayout], str, str]] = None
                ) -> Tuple[Optional[torch.Tensor], Optional[AttentionStats]]:
        """One engine call. ``window`` is _window_lookup's answer: a missing layout is
        logged only for calls that pass the guards (a call that falls back anyway says so)."""
        layout = window[0] if window is not None else None
        lib = _lib.try_load_library()
        if lib is None:
            self._record_fallback(REASON_LIBRARY_UNAVAILABLE, key, "")
            return None, AttentionStats.declined(REASON_LIBRARY_UNAVAILABLE)
        try:
            cfg = make_ta_config(lib, self.config, scale=scale, quality_check=False, force_fp32=fp32)
            call = Call(lib, q, k, v, mask, cfg, out_layout=out_layout, layout=layout)
            reason = call.check()
            self._log_shape(key, reason, q, v, layout)
            if reason != "none":
                self._record_fallback(reason, key, "")
                return None, AttentionStats.declined(reason)
            if window is not None and layout is None:
                self._note_window_off(key, window[1], window[2], where)
            if self.config.memory_reserve:
                self._reserve(key, call, q.device)
            every = max(1, int(self.config.quality_check_log_every))
            quality = bool(self.config.quality_check) and self.taylor_attempts % every == 0
            self.taylor_attempts += 1
            stats = call.run(quality_check=quality)
        except Declined as exc:
            self._log_shape(key, exc.reason, q, v, layout)
            self._record_fallback(exc.reason, key, exc.detail)
            return None, AttentionStats.declined(exc.reason, exc.detail)
        except OOM_ERRORS as exc:
            self._record_fallback("out_of_memory", key, str(exc))
            return None, AttentionStats.declined("out_of_memory", str(exc))
        except TaylorAttentionError as exc:
            self._record_fallback(REASON_ERROR, key, str(exc))
            return None, AttentionStats.declined(REASON_ERROR, str(exc))
        self.last_stats = stats
        if not stats.ok:
            self._record_fallback(stats.fallback_reason, key, stats.message, stats=stats)
            return None, stats
        if stats.window_active:
            self.window_calls += 1
        elif layout is not None:  # the engine did not apply a layout we gave it
            self._note_window_off(key, stats.window_reason,
                                  f"the {stats.backend} engine did not apply the layout "
                                  f"{layout.describe()} (window_reason {stats.window_reason})", where)
        self._record_taylor(stats, quality, where)
        return call.out, stats

    # ------------------------------------------------------------ bookkeeping and logs
    def _log_shape(self, key, reason: str, q: torch.Tensor, v: torch.Tensor,
                   layout: Optional[TokenLayout] = None) -> None:
        if key is None or key in self._shapes_seen:
            return
        self._shapes_seen.add(key)
        if not self.config.log_shapes:
            return
        cfg = self.config
        G = cfg.sub_head_blocks
        d = q.shape[-1]
        detail = ""
        if G > 0 and d % G == 0:
            R = feature_dim(d // G, cfg.P)
            state = R * (v.shape[-1] // max(G, 1) + 1) * 4
            detail = f"P={cfg.P}, G={G}, slice d={d // G}, R={R:,} per slice, state {_mib(state)} per head and slice"
        if layout is not None:
            detail += (f"; window r={cfg.window_radius} over {layout.describe()}"
                       f" (text keys {'exact' if cfg.window_text_keys else 'Taylor'},"
                       f" text queries {'exact' if cfg.window_text_queries else 'Taylor'})")
        decision = "taylor" if reason == "none" else f"fallback ({reason})"
        log.info("taylor_attention: new shape %s -> %s%s", _shape_text(key), decision,
                 f"; {detail}" if detail else "")

    def _reserve(self, key, call: Call, device: torch.device) -> None:
        if key in self.reserve_decisions:
            return
        decision: Dict[str, Any] = {"estimate": 0, "needed": 0, "free": None, "freed": False}
        self.reserve_decisions[key] = decision
        est = call.memory_estimate()
        needed = int(est.total_bytes * float(self.config.memory_reserve_factor))
        decision.update(estimate=int(est.total_bytes), needed=needed)
        mm = model_management()
        if mm is None:
            if self.config.memory_reserve_log:
                log.info("taylor_attention: memory estimate for %s: %s x %.2f = %s (ComfyUI "
                         "model_management unavailable: nothing reserved)", _shape_text(key),
                         _mib(est.total_bytes), self.config.memory_reserve_factor, _mib(needed))
            return
        free = int(mm.get_free_memory(device))
        decision["free"] = free
        if free < needed:
            mm.free_memory(needed, device)
            decision["freed"] = True
        if self.config.memory_reserve_log:
            log.info("taylor_attention: memory reserve for %s: estimate %s x %.2f = %s, free %s%s",
                     _shape_text(key), _mib(est.total_bytes), self.config.memory_reserve_factor,
                     _mib(needed), _mib(free),
                     ": asked ComfyUI to free memory" if decision["freed"] else ": enough")

    def _record_taylor(self, stats: AttentionStats, quality: bool, where: str) -> None:
        self.by_backend["taylor"] += 1
        self.taylor_time_ms += stats.time_total_ms
        log.debug("taylor_attention: call %d%s: %s backend, R=%d, denominators min %.4g max %.4g "
                  "mean %.4g (%d <= eps, %d non-finite of %d), %.2f ms", self.calls, where,
                  stats.backend, stats.feature_dim, stats.denom_min, stats.denom_max,
                  stats.denom_mean, stats.denom_le_eps, stats.denom_non_finite, stats.denom_count,
                  stats.time_total_ms)
        if quality and stats.quality_vs_original.samples > 0:
            self.quality_checks += 1
            qo, qt = stats.quality_vs_original, stats.quality_truncation
            self.quality_rel_l2_sum += qo.rel_l2
            log.info("taylor_attention: quality check, call %d%s (%d sampled queries per head): "
                     "vs original attention rel_l2 %.4g mean_rel %.4g max_abs %.4g; "
                     "truncation only rel_l2 %.4g mean_rel %.4g max_abs %.4g", self.calls, where,
                     qo.samples, qo.rel_l2, qo.mean_rel, qo.max_abs, qt.rel_l2, qt.mean_rel,
                     qt.max_abs)
        self._maybe_summary()

    def _record_fallback(self, reason: str, key, detail: str, stats: Optional[AttentionStats] = None,
                         tb: Optional[str] = None) -> None:
        self.by_backend["standard"] += 1
        self.by_reason[reason] += 1
        if self.config.log_fallbacks:
            first = (reason, key) not in self._fallbacks_logged
            self._fallbacks_logged.add((reason, key))
            level = logging.INFO if first else logging.DEBUG
            if reason in (REASON_EXCEPTION, REASON_ERROR) and first:
                level = logging.WARNING
            extra = ""
            if stats is not None and stats.denom_count:
                extra = (f" (denominators min {stats.denom_min:.4g}, {stats.denom_le_eps} <= eps, "
                         f"{stats.denom_non_finite} non-finite)")
            shape = f" for {_shape_text(key)}" if key is not None else ""
            log.log(level, "taylor_attention: fallback to standard attention%s: %s%s%s", shape,
                    reason, f": {detail}" if detail else "", extra)
            if tb and first:
                log.debug("%s", tb)
        self._maybe_summary()

    def _maybe_summary(self) -> None:
        if self.summary_every > 0 and self.calls > 0 and self.calls % self.summary_every == 0:
            self.log_summary()

    def summary(self) -> Dict[str, Any]:
        """Counts so far: calls, by backend, by fallback reason, mean quality and time."""
        taylor = self.by_backend.get("taylor", 0)
        return {
            "calls": self.calls,
            "by_backend": dict(self.by_backend),
            "by_reason": dict(self.by_reason),
            "quality_checks": self.quality_checks,
            "mean_quality_rel_l2": (self.quality_rel_l2_sum / self.quality_checks
                                    if self.quality_checks else None),
            "mean_taylor_ms": self.taylor_time_ms / taylor if taylor else None,
            "window_calls": self.window_calls,
            "window_off": dict(self.window_off),
        }

    def log_summary(self) -> None:
        s = self.summary()
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(s["by_reason"].items())) or "none"
        quality = (f", mean quality rel_l2 {s['mean_quality_rel_l2']:.4g}"
                   if s["mean_quality_rel_l2"] is not None else "")
        timing = f", mean Taylor call {s['mean_taylor_ms']:.2f} ms" if s["mean_taylor_ms"] else ""
        window = ""
        if self.config.window_radius > 0:
            off = ", ".join(f"{k}={v}" for k, v in sorted(s["window_off"].items())) or "none"
            window = f", window on {s['window_calls']} calls (off: {off})"
        log.info("taylor_attention: summary after %d calls: taylor %d, standard %d (fallbacks: %s)%s%s%s",
                 s["calls"], s["by_backend"].get("taylor", 0), s["by_backend"].get("standard", 0),
                 reasons, quality, timing, window)


# ---------------------------------------------------------------- installing on a model
def make_override_function(state: TaylorAttentionOverride) -> Callable:
    """The plain function installed as ``optimized_attention_override``: it delegates to
    ``state`` (kept as ``fn.taylor_state``). ComfyUI hands plain-function overrides plain
    tensors; ``copy.deepcopy`` keeps functions as they are, so clones share the state."""

    def taylor_attention_override(func, *args, **kwargs):
        return state(func, *args, **kwargs)

    taylor_attention_override.taylor_state = state
    return taylor_attention_override


def taylor_state_of(fn: Any) -> Optional[TaylorAttentionOverride]:
    """The state object behind an installed override of ours, else None."""
    if isinstance(fn, TaylorAttentionOverride):
        return fn
    state = getattr(fn, "taylor_state", None)
    return state if isinstance(state, TaylorAttentionOverride) else None


def install(model_options: Dict[str, Any], config: Optional[TaylorConfig] = None,
            summary_every: int = 500) -> TaylorAttentionOverride:
    """Installs a Taylor override into ``model_options["transformer_options"]`` (of a
    cloned model): a plain function under ``optimized_attention_override`` and its state
    object under ``taylor_attention``. An override already there becomes the fallback
    (one of ours is replaced, keeping what it had replaced). Returns the state object."""
    options = model_options.setdefault("transformer_options", {})
    previous = options.get(OVERRIDE_KEY)
    ours = taylor_state_of(previous)
    if ours is not None:
        previous = ours.previous
    state = TaylorAttentionOverride(config, previous=previous, summary_every=summary_every)
    options[OVERRIDE_KEY] = make_override_function(state)
    options[CONFIG_KEY] = state
    return state


def uninstall(model_options: Dict[str, Any]) -> None:
    """Removes our override (popping the key, never setting None) and restores the one it
    displaced, if any. Leaves a foreign override alone."""
    options = model_options.get("transformer_options")
    if not isinstance(options, dict):
        return
    state = taylor_state_of(options.get(OVERRIDE_KEY))
    if state is not None:
        options.pop(OVERRIDE_KEY)
        if state.previous is not None:
            options[OVERRIDE_KEY] = state.previous
    options.pop(CONFIG_KEY, None)
