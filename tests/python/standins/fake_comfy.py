"""Stand-ins for ComfyUI's ModelPatcher and its per-step copying of transformer_options,
written from the contract in COMFYUI.md (tests only)."""

import copy
from typing import Any, Dict, Optional

from taylor_attention.dispatch import attention_pytorch, copy_transformer_options


class FakeModelPatcher:
    """``clone()`` deep-copies ``model_options`` (what ComfyUI's ModelPatcher does)."""

    def __init__(self, model_options: Optional[Dict[str, Any]] = None):
        self.model_options = model_options if model_options is not None else {"transformer_options": {}}

    def clone(self) -> "FakeModelPatcher":
        return FakeModelPatcher(copy.deepcopy(self.model_options))


def model_step_options(patcher: FakeModelPatcher, **extra: Any) -> Dict[str, Any]:
    """transformer_options as one model call sees them: a fresh copy plus call-time keys."""
    options = copy_transformer_options(patcher.model_options.get("transformer_options", {}))
    options.update(extra)
    return options


def call_attention(patcher: FakeModelPatcher, q, k, v, heads, backend=attention_pytorch, **kwargs):
    """One attention call through the stand-in dispatch with this step's options."""
    options = model_step_options(patcher)
    return backend(q, k, v, heads, transformer_options=options, **kwargs)
