"""taylor-attention: attention with a truncated Taylor expansion of exp over symmetric
polynomial features (linear in the number of tokens), bound from the C library through
ctypes, plus the ComfyUI override and node.

Main entry points:

* :func:`taylor_attention` - ``(q, k, v, mask=None, scale=None, **params) -> (out, stats)``
* :func:`attention_op` / ``torch.ops.taylor_attention.attention`` - the custom op
* :class:`TaylorAttentionOverride` - ComfyUI's ``optimized_attention_override``
* :class:`TokenLayout` - ``[text | grids]`` token layout for the local-exact hybrid
* :func:`generate_workload` - synthetic Flux-like q, k, v from the library's generator
* :func:`load_library`, :func:`library_status` - the shared library
"""

from ._lib import (ABI_VERSION, LIB_ENV, Library, LibraryUnavailable, TaylorAttentionError,
                   library_status, load_library, reset_library_cache, try_load_library)
from .config import DEFAULTS, PARAM_NAMES, PARAMS, TaylorConfig, feature_dim
from .engine import AttentionStats, Quality, exact_attention
from .layout import TokenLayout
from .ops import (TaylorAttentionFallback, attention_op, last_stats, op_available,
                  taylor_attention)
from .override import (CONFIG_KEY, OVERRIDE_KEY, TaylorAttentionOverride, install,
                       make_override_function, taylor_state_of, uninstall)
from .workload import generate_workload, workload_available

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION", "LIB_ENV", "Library", "LibraryUnavailable", "TaylorAttentionError",
    "library_status", "load_library", "reset_library_cache", "try_load_library",
    "DEFAULTS", "PARAM_NAMES", "PARAMS", "TaylorConfig", "feature_dim",
    "AttentionStats", "Quality", "exact_attention",
    "TaylorAttentionFallback", "attention_op", "last_stats", "op_available", "taylor_attention",
    "CONFIG_KEY", "OVERRIDE_KEY", "TaylorAttentionOverride", "install", "make_override_function",
    "taylor_state_of", "uninstall", "TokenLayout", "generate_workload", "workload_available",
]
