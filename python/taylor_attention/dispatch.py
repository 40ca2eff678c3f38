"""A minimal stand-in for ComfyUI's attention dispatch, written from the documented
contract (shared COMFYUI.md), not from ComfyUI's code. The benchmarks and tests use it to
drive the override exactly as ComfyUI would outside ComfyUI:

* :func:`wrap_attn` marks kwargs with ``_inside_attn_wrapper`` (when absent) and, when
  ``transformer_options`` has the key ``optimized_attention_override`` (key presence, not
  truthiness), returns ``override(func, *args, **kwargs)`` with the undecorated ``func``.
* :func:`attention_pytorch` is a default backend with ComfyUI's signature (torch SDPA).
* :func:`copy_transformer_options` copies the options dict and its nested dicts, as
  ComfyUI does on every model call.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict

import torch

OVERRIDE_KEY = "optimized_attention_override"
MARKER = "_inside_attn_wrapper"


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
