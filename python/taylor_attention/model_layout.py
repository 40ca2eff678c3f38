"""Finding the token layout of each attention call inside ComfyUI.

ComfyUI's attention override gets q, k, v and nothing about where the tokens come from.
Flux / Flux2 joint attention runs over ``[text | latent grid | reference grids]``, and the
model call that contains those attention calls knows the sizes: the latent
``x [B, C, H, W]``, the text conditioning ``c_crossattn [B, L, ctx]`` and, for Kontext /
Flux2 edits, the reference latents ``ref_latents`` (a list of ``[B, C, h, w]``). So the
node wraps the model call (:func:`install_recorder`), records what it sees in a
:class:`LayoutTracker` owned by the override's state object (never in
``transformer_options``, which ComfyUI re-copies), and each attention call asks the
tracker for a layout whose token count matches its own N (:meth:`LayoutTracker.layout_for`).

Tokens per grid: the model patchifies with ``patch_size`` p after padding to a multiple
of p, so an ``H x W`` latent gives ``ceil(H/p) x ceil(W/p)`` tokens (Flux: p = 2 over the
/8 latent, i.e. H/16 x W/16 pixels; Flux2: already-patchified latents, p = 1). p is read
from the model (``diffusion_model.patch_size``); when the model does not say, p = 2 and
then p = 1 are tried and the one whose count matches N wins.

Two ways to wrap the model call, newest first (both written from the documented contract,
see the shared COMFYUI.md and docs/comfyui.md):

* the wrapper registry (``ModelPatcher.add_wrapper_with_key`` with the ``apply_model``
  wrapper type): ``wrapper(executor, x, t, c_concat, c_crossattn, control,
  transformer_options, **kwargs)``; ``executor(...)`` runs the rest of the chain and
  ``executor.class_obj`` is the model;
* the classic unet function wrapper (``model_options["model_function_wrapper"]``, set by
  ``set_model_unet_function_wrapper``): ``fn(apply_model, {"input", "timestep", "c",
  "cond_or_uncond"})``; only one exists per model, so ours calls the one it found instead
  of ``apply_model``.

Nothing here raises into ComfyUI: a model call it cannot read is recorded as such and the
attention calls inside it run plain Taylor attention.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .layout import MAX_GRIDS, TokenLayout

#: Key of our wrapper in the registry (one per model; replaced, never stacked).
WRAPPER_KEY = "taylor_attention.layout"
#: model_options key of the classic wrapper.
MODEL_FUNCTION_WRAPPER = "model_function_wrapper"
#: Patch sizes tried, in order, when the model does not name its own.
FALLBACK_PATCH_SIZES = (2, 1)

# Why a call has no layout (short codes for counting; the log line explains them).
NO_MODEL_CALL = "no_model_call"
MODEL_CALL_UNREADABLE = "model_call_unreadable"
LAYOUT_MISMATCH = "layout_mismatch"
CROSS_ATTENTION = "cross_attention"


def apply_model_wrapper_type() -> str:
    """``comfy.patcher_extension.WrappersMP.APPLY_MODEL`` when importable, else its value."""
    try:
        from comfy.patcher_extension import WrappersMP  # type: ignore

        return str(WrappersMP.APPLY_MODEL)
    except Exception:  # noqa: BLE001 - old ComfyUI or none: the documented value
        return "apply_model"


@dataclass(frozen=True)
class ModelCall:
    """What one diffusion-model call says about its tokens, and the layouts it allows
    (one per patch size tried)."""

    text_tokens: int
    latent: Tuple[int, int]
    references: Tuple[Tuple[int, int], ...]
    patch_sizes: Tuple[int, ...]
    candidates: Tuple[TokenLayout, ...]

    def describe(self) -> str:
        refs = "".join(f" + reference {h}x{w}" for h, w in self.references)
        patch = "/".join(str(p) for p in self.patch_sizes)
        options = ", ".join(f"{c.describe()} = {c.tokens}" for c in self.candidates)
        return (f"text {self.text_tokens}, latent {self.latent[0]}x{self.latent[1]}{refs}, "
                f"patch {patch} -> {options}")


def patch_size_of(model: Any) -> Optional[int]:
    """The patch size a model declares (``patch_size`` on it or on its diffusion_model)."""
    for obj in (model, getattr(model, "diffusion_model", None)):
        p = getattr(obj, "patch_size", None)
        if isinstance(p, int) and not isinstance(p, bool) and p >= 1:
            return p
    return None


def _grid(h: int, w: int, p: int) -> Tuple[int, int]:
    return -(-h // p), -(-w // p)


def _shape_text(obj: Any) -> str:
    shape = getattr(obj, "shape", None)
    return str(list(shape)) if shape is not None else type(obj).__name__


def describe_model_call(x: Any, context: Any, ref_latents: Any,
                        model: Any = None) -> Tuple[Optional[ModelCall], str]:
    """(ModelCall, "") from a model call's latent, text conditioning and reference
    latents, or (None, why) when they do not describe a Flux-like image call."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        return None, f"the latent has shape {_shape_text(x)}, not [B, C, H, W]"
    text = 0
    if context is not None:
        cshape = getattr(context, "shape", None)
        if cshape is None or len(cshape) != 3:
            return None, f"the text conditioning has shape {_shape_text(context)}, not [B, L, C]"
        text = int(cshape[1])
    refs: List[Tuple[int, int]] = []
    for i, ref in enumerate(ref_latents or ()):
        rshape = getattr(ref, "shape", None)
        if rshape is None or len(rshape) != 4:
            return None, f"reference latent {i} has shape {_shape_text(ref)}, not [B, C, H, W]"
        refs.append((int(rshape[-2]), int(rshape[-1])))
    if 1 + len(refs) > MAX_GRIDS:
        return None, f"{len(refs)} reference latents: at most {MAX_GRIDS - 1} are supported"
    declared = patch_size_of(model)
    patches = (declared,) if declared is not None else FALLBACK_PATCH_SIZES
    H, W = int(shape[-2]), int(shape[-1])
    candidates: List[TokenLayout] = []
    for p in patches:
        layout = TokenLayout(text, (_grid(H, W, p),) + tuple(_grid(h, w, p) for h, w in refs))
        if layout not in candidates:
            candidates.append(layout)
    return ModelCall(text, (H, W), tuple(refs), tuple(patches), tuple(candidates)), ""


class LayoutTracker:
    """The model calls in progress (a per-thread stack: calls nest when wrappers call the
    model more than once) and the lookup the attention calls make."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.model_calls = 0

    def _stack(self) -> List[Tuple[Optional[ModelCall], str]]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    @contextlib.contextmanager
    def model_call(self, call: Optional[ModelCall], why: str = "") -> Iterator[None]:
        """Marks the duration of one model call (``call`` None: unreadable, ``why`` says why)."""
        stack = self._stack()
        stack.append((call, why))
        self.model_calls += 1
        try:
            yield
        finally:
            stack.pop()

    def current(self) -> Optional[Tuple[Optional[ModelCall], str]]:
        stack = self._stack()
        return stack[-1] if stack else None

    def layout_for(self, nq: int, nk: int) -> Tuple[Optional[TokenLayout], str, str]:
        """(layout, "", "") when the model call in progress allows a layout of exactly
        ``nq`` tokens, else (None, code, explanation)."""
        if nq != nk:
            return None, CROSS_ATTENTION, (f"cross attention (Nq={nq}, Nk={nk}): the window needs "
                                           "queries and keys of one layout")
        entry = self.current()
        if entry is None:
            return None, NO_MODEL_CALL, (f"layout unknown for N={nq}: no diffusion-model call was "
                                         "recorded around this attention call (the node's layout "
                                         "wrapper did not run)")
        call, why = entry
        if call is None:
            return None, MODEL_CALL_UNREADABLE, f"layout unknown for N={nq}: {why}"
        for layout in call.candidates:
            if layout.tokens == nq:
                return layout, "", ""
        return None, LAYOUT_MISMATCH, (f"layout unknown for N={nq}: the model call has "
                                       f"{call.describe()} tokens (another model family, or "
                                       "tokens added or removed inside the model)")


def _describe_safely(x: Any, context: Any, refs: Any, model: Any) -> Tuple[Optional[ModelCall], str]:
    try:
        return describe_model_call(x, context, refs, model)
    except Exception as exc:  # noqa: BLE001 - never break the model call
        return None, f"the model call could not be read ({type(exc).__name__}: {exc})"


def make_apply_model_wrapper(tracker: LayoutTracker) -> Callable[..., Any]:
    """The registry wrapper: records the call, then runs the rest of the chain."""

    def taylor_attention_layout_wrapper(executor, *args, **kwargs):
        x = args[0] if args else kwargs.get("x")
        context = args[3] if len(args) > 3 else kwargs.get("c_crossattn")
        call, why = _describe_safely(x, context, kwargs.get("ref_latents"),
                                     getattr(executor, "class_obj", None))
        with tracker.model_call(call, why):
            return executor(*args, **kwargs)

    taylor_attention_layout_wrapper.taylor_tracker = tracker
    return taylor_attention_layout_wrapper


def make_unet_function_wrapper(tracker: LayoutTracker, previous: Optional[Callable] = None) -> Callable:
    """The classic wrapper: records the call, then calls ``previous`` (a wrapper that was
    already installed) or the model itself."""

    def taylor_attention_model_function_wrapper(apply_model, args):
        c = args.get("c") or {}
        model = getattr(apply_model, "__self__", None)
        call, why = _describe_safely(args.get("input"), c.get("c_crossattn"), c.get("ref_latents"), model)
        with tracker.model_call(call, why):
            if previous is not None:
                return previous(apply_model, args)
            return apply_model(args["input"], args["timestep"], **c)

    taylor_attention_model_function_wrapper.taylor_tracker = tracker
    taylor_attention_model_function_wrapper.taylor_previous = previous
    return taylor_attention_model_function_wrapper


def _has_registry(model: Any) -> bool:
    return callable(getattr(model, "add_wrapper_with_key", None)) and \
        callable(getattr(model, "remove_wrappers_with_key", None))


def _is_ours(fn: Any) -> bool:
    return isinstance(getattr(fn, "taylor_tracker", None), LayoutTracker)


def install_recorder(model: Any, tracker: LayoutTracker) -> str:
    """Wraps the model call of a (cloned) ModelPatcher so that ``tracker`` sees every call.
    Replaces a recorder of ours; keeps any other wrapper. Returns how it was installed:
    "apply_model wrapper", "model_function_wrapper" or "" (the model offers neither)."""
    remove_recorder(model)
    if _has_registry(model):
        model.add_wrapper_with_key(apply_model_wrapper_type(), WRAPPER_KEY, make_apply_model_wrapper(tracker))
        return "apply_model wrapper"
    options = getattr(model, "model_options", None)
    if not isinstance(options, dict):
        return ""
    fn = make_unet_function_wrapper(tracker, options.get(MODEL_FUNCTION_WRAPPER))
    setter = getattr(model, "set_model_unet_function_wrapper", None)
    if callable(setter):
        setter(fn)
    else:
        options[MODEL_FUNCTION_WRAPPER] = fn
    return MODEL_FUNCTION_WRAPPER


def remove_recorder(model: Any) -> None:
    """Removes our recorder (registry entry and/or classic wrapper, restoring the wrapper
    it called); leaves other wrappers alone."""
    if _has_registry(model):
        model.remove_wrappers_with_key(apply_model_wrapper_type(), WRAPPER_KEY)
    options = getattr(model, "model_options", None)
    if isinstance(options, dict):
        fn = options.get(MODEL_FUNCTION_WRAPPER)
        if _is_ours(fn):
            previous = getattr(fn, "taylor_previous", None)
            if previous is None:
                options.pop(MODEL_FUNCTION_WRAPPER)
            else:
                options[MODEL_FUNCTION_WRAPPER] = previous


def recorder_of(model: Any) -> Optional[Callable]:
    """Our installed recorder function, if any (registry first)."""
    wrappers: Dict[str, Dict[Any, Sequence[Callable]]] = getattr(model, "wrappers", None) or {}
    for fn in (wrappers.get(apply_model_wrapper_type(), {}) or {}).get(WRAPPER_KEY, []):
        if _is_ours(fn):
            return fn
    options = getattr(model, "model_options", None)
    if isinstance(options, dict) and _is_ours(options.get(MODEL_FUNCTION_WRAPPER)):
        return options[MODEL_FUNCTION_WRAPPER]
    return None
