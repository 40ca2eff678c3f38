"""Stand-ins for ComfyUI's ModelPatcher, its model call and its per-step copying of
transformer_options, written from the contract in COMFYUI.md (tests only). The classes
live in ``taylor_attention.dispatch`` (the benchmarks drive the node through them too)."""

from typing import Any, Dict, Optional

from taylor_attention.dispatch import (BaseModelStandIn, ModelPatcherStandIn,
                                       RegistryModelPatcherStandIn, attention_pytorch,
                                       copy_transformer_options, run_model)

__all__ = ["FakeModelPatcher", "BaseModelStandIn", "run_model", "model_step_options",
           "call_attention"]


def FakeModelPatcher(model_options: Optional[Dict[str, Any]] = None, model: Any = None,
                     registry: bool = True) -> ModelPatcherStandIn:
    """A ModelPatcher stand-in: ``clone()`` deep-copies ``model_options`` (what ComfyUI's
    ModelPatcher does). ``registry=False`` gives one without the wrapper registry (an
    older ComfyUI: only ``set_model_unet_function_wrapper``)."""
    cls = RegistryModelPatcherStandIn if registry else ModelPatcherStandIn
    return cls(model, model_options)


def model_step_options(patcher: ModelPatcherStandIn, **extra: Any) -> Dict[str, Any]:
    """transformer_options as one model call sees them: a fresh copy plus call-time keys."""
    options = copy_transformer_options(patcher.model_options.get("transformer_options", {}))
    options.update(extra)
    return options


def call_attention(patcher: ModelPatcherStandIn, q, k, v, heads, backend=attention_pytorch, **kwargs):
    """One attention call through the stand-in dispatch with this step's options."""
    options = model_step_options(patcher)
    return backend(q, k, v, heads, transformer_options=options, **kwargs)
