"""A minimal stand-in for ComfyUI's attention dispatch, written from the documented
contract (shared COMFYUI.md), not from ComfyUI's code. The benchmarks and tests use it to
drive the override exactly as ComfyUI would outside ComfyUI:

* :func:`wrap_attn` marks kwargs with ``_inside_attn_wrapper`` (when absent) and, when
  ``transformer_options`` has the key ``optimized_attention_override`` (key presence, not
  truthiness), returns ``override(func, *args, **kwargs)`` with the undecorated ``func``.
* :func:`attention_pytorch` is a default backend with ComfyUI's signature (torch SDPA).
* :func:`copy_transformer_options` copies the options dict and its nested dicts, as
  ComfyUI does on every model call.

and of the model call around them, so that the node's layout recorder runs as it would in
ComfyUI:

* :class:`WrapperExecutor`: runs a list of wrappers around a function; each wrapper is
  called as ``wrapper(executor, *args, **kwargs)`` and continues with ``executor(...)``;
  ``executor.class_obj`` is the object the wrapped method belongs to.
* :class:`BaseModelStandIn`: ``apply_model(x, t, c_concat, c_crossattn, control,
  transformer_options, **kwargs)`` runs the ``apply_model`` wrappers found in
  ``transformer_options["wrappers"]``, then the diffusion model as
  ``diffusion_model(x, t, context=c_crossattn, control=..., transformer_options=...,
  **kwargs)``.
* :class:`ModelPatcherStandIn` (``clone``, ``model_options``,
  ``set_model_unet_function_wrapper``) and :class:`RegistryModelPatcherStandIn` (adds the
  wrapper registry: ``wrappers``, ``add_wrapper_with_key``, ``remove_wrappers_with_key``).
* :func:`run_model`: one model call the way the sampler makes it (the classic
  ``model_function_wrapper`` when set, the patcher's wrappers copied into the options).
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

OVERRIDE_KEY = "optimized_attention_override"
MARKER = "_inside_attn_wrapper"
APPLY_MODEL = "apply_model"
MODEL_FUNCTION_WRAPPER = "model_function_wrapper"


def wrap_attn(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if MARKER not in kwargs:
            kwargs[MARKER] = True
            options = kwargs.get("transformer_options")
            if isinstance(options, dict) and OVERRIDE_KEY in options:
                return options[OVERRIDE_KEY](func, *args, **kwargs)
        return func(*args, **kwargs)

    wrapper.__wrapped_attention__ = func
    return wrapper


@wrap_attn
def attention_pytorch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask=None,
                      attn_precision=None, skip_reshape=False, skip_output_reshape=False,
                      **kwargs: Any) -> torch.Tensor:
    """Exact attention with ComfyUI's backend signature and layouts."""
    if skip_reshape:
        b = q.shape[0]
        qh, kh, vh = q, k, v
    else:
        b = q.shape[0]
        qh, kh, vh = (t.view(b, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k, v))
    if mask is not None:
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        if mask.ndim == 3:
            mask = mask.unsqueeze(1)
    extra = {}
    if kwargs.get("scale") is not None:
        extra["scale"] = kwargs["scale"]
    out = torch.nn.functional.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, **extra)
    if skip_output_reshape:
        return out
    return out.transpose(1, 2).reshape(b, -1, heads * out.shape[-1])


def copy_transformer_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """A fresh dict with fresh nested dicts (instances inside are shared)."""
    out = {}
    for key, value in options.items():
        out[key] = copy_transformer_options(value) if isinstance(value, dict) else value
    return out


# ---------------------------------------------------------------- the model call
class WrapperExecutor:
    """Calls ``wrappers[idx](self, *args, **kwargs)``, or ``original`` after the last one."""

    def __init__(self, original: Callable, class_obj: Any, wrappers: Sequence[Callable], idx: int = 0):
        self.original = original
        self.class_obj = class_obj
        self.wrappers = list(wrappers)
        self.idx = idx

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return WrapperExecutor(self.original, self.class_obj, self.wrappers, self.idx + 1).execute(*args, **kwargs)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        if self.idx >= len(self.wrappers):
            return self.original(*args, **kwargs)
        return self.wrappers[self.idx](self, *args, **kwargs)


def wrappers_of(kind: str, transformer_options: Dict[str, Any]) -> List[Callable]:
    """Every wrapper of one kind in ``transformer_options["wrappers"]``, keys in order."""
    out: List[Callable] = []
    for fns in (transformer_options.get("wrappers", {}) or {}).get(kind, {}).values():
        out.extend(fns)
    return out


class BaseModelStandIn:
    """The model object a ModelPatcher holds: owns ``diffusion_model``."""

    def __init__(self, diffusion_model: Callable):
        self.diffusion_model = diffusion_model

    def apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                    **kwargs):
        options = transformer_options if transformer_options is not None else {}
        executor = WrapperExecutor(self._apply_model, self, wrappers_of(APPLY_MODEL, options))
        return executor.execute(x, t, c_concat, c_crossattn, control, options, **kwargs)

    def _apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                     **kwargs):
        options = dict(transformer_options or {})
        return self.diffusion_model(x, t, context=c_crossattn, control=control,
                                    transformer_options=options, **kwargs)


class ModelPatcherStandIn:
    """A ModelPatcher without the wrapper registry (older ComfyUI): ``clone()`` deep-copies
    ``model_options`` and shares the model."""

    def __init__(self, model: Any = None, model_options: Optional[Dict[str, Any]] = None):
        self.model = model
        self.model_options = model_options if model_options is not None else {"transformer_options": {}}

    def clone(self) -> "ModelPatcherStandIn":
        n = copy.copy(self)
        n.model_options = copy.deepcopy(self.model_options)
        return n

    def set_model_unet_function_wrapper(self, fn: Callable) -> None:
        self.model_options[MODEL_FUNCTION_WRAPPER] = fn


class RegistryModelPatcherStandIn(ModelPatcherStandIn):
    """A ModelPatcher with the wrapper registry: ``wrappers[kind][key] = [fn, ...]``,
    copied (lists too) on clone."""

    def __init__(self, model: Any = None, model_options: Optional[Dict[str, Any]] = None):
        super().__init__(model, model_options)
        self.wrappers: Dict[str, Dict[Any, List[Callable]]] = {}

    def clone(self) -> "RegistryModelPatcherStandIn":
        n = super().clone()
        n.wrappers = {kind: {key: list(fns) for key, fns in keyed.items()} for kind, keyed in self.wrappers.items()}
        return n

    def add_wrapper_with_key(self, kind: str, key: Any, fn: Callable) -> None:
        self.wrappers.setdefault(kind, {}).setdefault(key, []).append(fn)

    def remove_wrappers_with_key(self, kind: str, key: Any) -> None:
        self.wrappers.get(kind, {}).pop(key, None)


def run_model(patcher: ModelPatcherStandIn, x, timestep, cond_or_uncond: Sequence[int] = (0,), **c: Any):
    """One model call as the sampler makes it: fresh copies of the transformer_options
    (with the patcher's wrappers), then the classic wrapper if one is set, else
    ``model.apply_model(x, timestep, **c)``. ``c`` holds ``c_crossattn`` and extra
    conditioning such as ``ref_latents``."""
    options = copy_transformer_options(patcher.model_options.get("transformer_options", {}))
    registry = getattr(patcher, "wrappers", None)
    if registry is not None:
        options["wrappers"] = {kind: {key: list(fns) for key, fns in keyed.items()}
                               for kind, keyed in registry.items()}
    options["cond_or_uncond"] = list(cond_or_uncond)
    c = dict(c, transformer_options=options)
    wrapper = patcher.model_options.get(MODEL_FUNCTION_WRAPPER)
    if wrapper is not None:
        return wrapper(patcher.model.apply_model, {"input": x, "timestep": timestep, "c": c,
                                                    "cond_or_uncond": list(cond_or_uncond)})
    return patcher.model.apply_model(x, timestep, **c)
