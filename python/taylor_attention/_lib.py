"""ctypes binding of the C API in include/taylor_attention/taylor_attention.h.

The structs below mirror the header field by field; ``ta_config_defaults`` and
``ta_stats_init`` write ``struct_size`` and the library rejects a size it does not
know, and :func:`load_library` refuses a library whose ``ta_abi_version()`` differs
from :data:`ABI_VERSION`. Nothing here imports torch: the binding is usable (and
testable) on its own, and one build of the library serves any torch version.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import sys
import threading
from typing import List, Optional, Tuple

log = logging.getLogger("taylor_attention")

#: TA_ABI_VERSION this binding was written against.
ABI_VERSION = 2

#: Environment variable naming the shared library to load (a file path).
LIB_ENV = "TAYLOR_ATTENTION_LIB"

# ---------------------------------------------------------------- enums
TA_OK = 0
TA_FALLBACK = 1
TA_ERR_INVALID_ARGUMENT = 2
TA_ERR_WORKSPACE_TOO_SMALL = 3
TA_ERR_OUT_OF_MEMORY = 4
TA_ERR_UNSUPPORTED = 5
TA_ERR_DEVICE = 6
TA_ERR_INTERNAL = 7

TA_DTYPE_F16 = 0
TA_DTYPE_BF16 = 1
TA_DTYPE_F32 = 2
TA_DTYPE_F64 = 3
TA_DTYPE_BOOL = 4

TA_DEVICE_CPU = 0
TA_DEVICE_CUDA = 1

TA_BACKEND_NONE = 0
TA_BACKEND_CPU = 1
TA_BACKEND_CUDA = 2

TA_REFERENCE_EXACT_ORIGINAL = 0
TA_REFERENCE_EXACT_MODIFIED = 1
TA_REFERENCE_TAYLOR_QUADRATIC = 2
TA_REFERENCE_HYBRID_QUADRATIC = 3

TA_MAX_DIMS = 4
TA_MAX_GRIDS = 8

#: Reason codes of the header's ``ta_reason`` enum, by stable name. The names are the
#: ones ``ta_reason_name`` returns; :func:`reason_name` asks the library when loaded.
REASONS = {
    0: "none",
    1: "disabled",
    2: "below_min_tokens",
    3: "cross_attention_disabled",
    4: "head_dim_too_large",
    5: "feature_dim_too_large",
    6: "sub_head_block_mismatch",
    7: "unsupported_mask",
    8: "unsupported_dtype",
    9: "unsupported_layout",
    10: "unsupported_device",
    11: "denominator_too_small",
    12: "denominator_invalid",
    13: "non_finite_output",
    14: "out_of_memory",
    # window notes (ta_stats.window_reason): the hybrid was asked for but ran as plain Taylor
    15: "window_no_layout",
    16: "window_cross_attention",
}
REASON_COUNT = 17


# ---------------------------------------------------------------- structs
class TaTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("device", ctypes.c_int),
        ("device_id", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("shape", ctypes.c_int64 * TA_MAX_DIMS),
        ("strides", ctypes.c_int64 * TA_MAX_DIMS),
    ]


class TaTokenLayout(ctypes.Structure):
    _fields_ = [
        ("text_tokens", ctypes.c_int64),
        ("num_grids", ctypes.c_int32),
        ("grid_height", ctypes.c_int64 * TA_MAX_GRIDS),
        ("grid_width", ctypes.c_int64 * TA_MAX_GRIDS),
    ]


class TaAttentionArgs(ctypes.Structure):
    _fields_ = [
        ("q", ctypes.POINTER(TaTensor)),
        ("k", ctypes.POINTER(TaTensor)),
        ("v", ctypes.POINTER(TaTensor)),
        ("mask", ctypes.POINTER(TaTensor)),
        ("out", ctypes.POINTER(TaTensor)),
        ("layout", ctypes.POINTER(TaTokenLayout)),
    ]


class TaConfig(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("enabled", ctypes.c_int32),
        ("P", ctypes.c_int32),
        ("min_tokens", ctypes.c_int64),
        ("max_feature_dim_R", ctypes.c_int64),
        ("sub_head_blocks", ctypes.c_int32),
        ("qk_normalize", ctypes.c_int32),
        ("scale_mul", ctypes.c_double),
        ("scale", ctypes.c_double),
        ("block_size_q", ctypes.c_int32),
        ("block_size_k", ctypes.c_int32),
        ("eps", ctypes.c_double),
        ("fallback_on_negative", ctypes.c_int32),
        ("allow_cross_attention", ctypes.c_int32),
        ("max_head_dim", ctypes.c_int32),
        ("force_fp32", ctypes.c_int32),
        ("early_probe", ctypes.c_int32),
        ("probe_samples", ctypes.c_int32),
        ("denom_fp32", ctypes.c_int32),
        ("quality_check", ctypes.c_int32),
        ("quality_check_samples", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("num_threads", ctypes.c_int32),
        ("window_radius", ctypes.c_int32),
        ("window_text_keys", ctypes.c_int32),
        ("window_text_queries", ctypes.c_int32),
    ]


class TaQuality(ctypes.Structure):
    _fields_ = [
        ("samples", ctypes.c_int32),
        ("rel_l2", ctypes.c_double),
        ("mean_abs", ctypes.c_double),
        ("max_abs", ctypes.c_double),
        ("mean_rel", ctypes.c_double),
    ]


class TaStats(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("backend", ctypes.c_int),
        ("fallback_reason", ctypes.c_int),
        ("sub_head_blocks", ctypes.c_int32),
        ("slice_dim", ctypes.c_int32),
        ("slice_value_dim", ctypes.c_int32),
        ("feature_dim", ctypes.c_int64),
        ("state_bytes", ctypes.c_int64),
        ("workspace_bytes", ctypes.c_int64),
        ("denom_count", ctypes.c_int64),
        ("denom_min", ctypes.c_double),
        ("denom_max", ctypes.c_double),
        ("denom_mean", ctypes.c_double),
        ("denom_le_eps", ctypes.c_int64),
        ("denom_non_finite", ctypes.c_int64),
        ("probe_ran", ctypes.c_int32),
        ("probe_samples", ctypes.c_int32),
        ("probe_denom_min", ctypes.c_double),
        ("quality_vs_original", TaQuality),
        ("quality_truncation", TaQuality),
        ("time_probe_ms", ctypes.c_double),
        ("time_key_pass_ms", ctypes.c_double),
        ("time_query_pass_ms", ctypes.c_double),
        ("time_quality_ms", ctypes.c_double),
        ("time_total_ms", ctypes.c_double),
        ("window_active", ctypes.c_int32),
        ("window_reason", ctypes.c_int),
        ("window_exact_pairs", ctypes.c_int64),
        ("time_window_ms", ctypes.c_double),
    ]


class TaMemoryEstimate(ctypes.Structure):
    _fields_ = [
        ("feature_dim", ctypes.c_int64),
        ("state_bytes", ctypes.c_int64),
        ("workspace_bytes", ctypes.c_int64),
        ("output_bytes", ctypes.c_int64),
        ("total_bytes", ctypes.c_int64),
    ]


class TaWorkloadParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("layout", TaTokenLayout),
        ("smoothness", ctypes.c_double),
        ("gain", ctypes.c_double),
        ("alignment", ctypes.c_double),
        ("rope", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
    ]


_P = ctypes.POINTER

# name: (restype, argtypes)
_SIGNATURES = {
    "ta_version": (ctypes.c_int, []),
    "ta_version_string": (ctypes.c_char_p, []),
    "ta_abi_version": (ctypes.c_int, []),
    "ta_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "ta_last_error_message": (ctypes.c_char_p, []),
    "ta_reason_name": (ctypes.c_char_p, [ctypes.c_int]),
    "ta_dtype_name": (ctypes.c_char_p, [ctypes.c_int]),
    "ta_dtype_size": (ctypes.c_size_t, [ctypes.c_int]),
    "ta_tensor_init_contiguous": (
        ctypes.c_int,
        [_P(TaTensor), ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int32, _P(ctypes.c_int64)],
    ),
    "ta_config_defaults": (ctypes.c_int, [_P(TaConfig)]),
    "ta_config_validate": (ctypes.c_int, [_P(TaConfig)]),
    "ta_backend_name": (ctypes.c_char_p, [ctypes.c_int]),
    "ta_stats_init": (ctypes.c_int, [_P(TaStats)]),
    "ta_attention_check": (ctypes.c_int, [_P(TaAttentionArgs), _P(TaConfig), _P(ctypes.c_int)]),
    "ta_attention_workspace_size": (
        ctypes.c_int,
        [_P(TaAttentionArgs), _P(TaConfig), _P(ctypes.c_size_t)],
    ),
    "ta_attention_memory_estimate": (
        ctypes.c_int,
        [_P(TaAttentionArgs), _P(TaConfig), _P(TaMemoryEstimate)],
    ),
    "ta_attention_run": (
        ctypes.c_int,
        [_P(TaAttentionArgs), _P(TaConfig), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, _P(TaStats)],
    ),
    "ta_reference_attention": (ctypes.c_int, [_P(TaAttentionArgs), _P(TaConfig), ctypes.c_int]),
    "ta_feature_dim": (ctypes.c_int, [ctypes.c_int64, ctypes.c_int32, _P(ctypes.c_int64)]),
    "ta_backend_available": (ctypes.c_int, [ctypes.c_int]),
    "ta_workload_defaults": (ctypes.c_int, [_P(TaWorkloadParams)]),
    "ta_workload_generate": (
        ctypes.c_int,
        [_P(TaWorkloadParams), _P(TaTensor), _P(TaTensor), _P(TaTensor)],
    ),
}

# Symbols a library of this ABI may still lack while they are being written (the
# synthetic-workload generator); absent ones are set to None and their users say so.
_OPTIONAL = {"ta_workload_defaults", "ta_workload_generate"}


class LibraryUnavailable(RuntimeError):
    """The shared library could not be found, loaded or accepted (message says why
    and how to build it)."""


class TaylorAttentionError(RuntimeError):
    """The library answered an error status (not a fallback). ``status`` is the
    ta_status name, the message is ``ta_last_error_message()``."""

    def __init__(self, status: str, message: str):
        super().__init__(f"taylor_attention: {status}: {message}")
        self.status = status
        self.message = message


BUILD_HINT = (
    "build it with `python install.py` in the taylor-attention folder, or "
    "`cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release && cmake --build build/release -j`, "
    f"or point {LIB_ENV} at libtaylor_attention.so"
)


def _lib_names() -> List[str]:
    if sys.platform.startswith("win"):
        return ["taylor_attention.dll", "libtaylor_attention.dll"]
    if sys.platform == "darwin":
        return ["libtaylor_attention.dylib", "libtaylor_attention.0.dylib"]
    return ["libtaylor_attention.so", "libtaylor_attention.so.0"]


def package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def repo_root() -> str:
    """The source tree root when the package runs from python/taylor_attention."""
    return os.path.dirname(os.path.dirname(package_dir()))


def candidate_paths() -> List[str]:
    """Where the library is looked for, in order (without the environment variable):
    next to the package, then the build tree's src/ folders (presets release and
    cpu-only first, then every other build/*/src, newest first)."""
    dirs = [package_dir(), os.path.join(package_dir(), "lib")]
    build = os.path.join(repo_root(), "build")
    preset = [os.path.join(build, name, "src") for name in ("release", "cpu-only")]
    others = [d for d in glob.glob(os.path.join(build, "*", "src")) if d not in preset]
    others.sort(key=lambda d: os.path.getmtime(d), reverse=True)
    dirs += preset + others
    out = []
    for d in dirs:
        for name in _lib_names():
            out.append(os.path.join(d, name))
    # a wheel carries the one real file, e.g. libtaylor_attention.so.0.1.0
    out += sorted(glob.glob(os.path.join(package_dir(), "libtaylor_attention.so.*")))
    out += sorted(glob.glob(os.path.join(package_dir(), "libtaylor_attention.*.dylib")))
    return out


def find_library() -> Tuple[Optional[str], str]:
    """Returns (path or None, explanation)."""
    env = os.environ.get(LIB_ENV)
    if env:
        if os.path.isfile(env):
            return env, f"{LIB_ENV}={env}"
        return None, f"{LIB_ENV}={env} does not name a file"
    for path in candidate_paths():
        if os.path.isfile(path):
            return path, path
    return None, "libtaylor_attention was not found next to the package nor in build/*/src"


class Library:
    """The loaded shared library with typed functions and a few helpers."""

    def __init__(self, path: str):
        self.path = path
        self.cdll = ctypes.CDLL(path)
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.cdll, name, None)
            if fn is None:
                if name in _OPTIONAL:
                    setattr(self, name, None)
                    continue
                raise LibraryUnavailable(f"{path} lacks the symbol {name}: rebuild it ({BUILD_HINT})")
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        abi = self.ta_abi_version()
        if abi != ABI_VERSION:
            raise LibraryUnavailable(
                f"{path} has ABI version {abi}, this Python package expects {ABI_VERSION}: "
                f"rebuild the library from the same source tree ({BUILD_HINT})"
            )
        self.version = self.ta_version_string().decode()
        self._reason_names = [self.ta_reason_name(i).decode() for i in range(REASON_COUNT)]
        cfg = self.config_defaults()
        if cfg.struct_size != ctypes.sizeof(TaConfig):
            raise LibraryUnavailable(
                f"{path}: sizeof(ta_config) is {cfg.struct_size}, the binding has "
                f"{ctypes.sizeof(TaConfig)}: binding and header disagree"
            )
        stats = self.new_stats()
        if stats.struct_size != ctypes.sizeof(TaStats):
            raise LibraryUnavailable(
                f"{path}: sizeof(ta_stats) is {stats.struct_size}, the binding has "
                f"{ctypes.sizeof(TaStats)}: binding and header disagree"
            )

    # -- helpers
    def error_message(self) -> str:
        msg = self.ta_last_error_message()
        return msg.decode(errors="replace") if msg else ""

    def status_name(self, status: int) -> str:
        return self.ta_status_string(status).decode()

    def reason_name(self, reason: int) -> str:
        if 0 <= reason < len(self._reason_names):
            return self._reason_names[reason]
        return self.ta_reason_name(reason).decode()

    def backend_name(self, backend: int) -> str:
        return self.ta_backend_name(backend).decode()

    def raise_for(self, status: int, what: str) -> None:
        if status != TA_OK:
            raise TaylorAttentionError(self.status_name(status), f"{what}: {self.error_message()}")

    def config_defaults(self) -> TaConfig:
        cfg = TaConfig()
        self.raise_for(self.ta_config_defaults(ctypes.byref(cfg)), "ta_config_defaults")
        return cfg

    def validate(self, cfg: TaConfig) -> None:
        self.raise_for(self.ta_config_validate(ctypes.byref(cfg)), "ta_config_validate")

    def new_stats(self) -> TaStats:
        stats = TaStats()
        self.raise_for(self.ta_stats_init(ctypes.byref(stats)), "ta_stats_init")
        return stats

    def feature_dim(self, d: int, P: int) -> int:
        R = ctypes.c_int64(0)
        self.raise_for(self.ta_feature_dim(d, P, ctypes.byref(R)), "ta_feature_dim")
        return int(R.value)

    def backend_available(self, device: int) -> bool:
        return bool(self.ta_backend_available(device))

    @property
    def has_workload(self) -> bool:
        """True when the library exports the synthetic-workload generator."""
        return self.ta_workload_defaults is not None and self.ta_workload_generate is not None

    def workload_defaults(self) -> TaWorkloadParams:
        if not self.has_workload:
            raise LibraryUnavailable(f"{self.path} has no ta_workload_defaults: rebuild it ({BUILD_HINT})")
        params = TaWorkloadParams()
        self.raise_for(self.ta_workload_defaults(ctypes.byref(params)), "ta_workload_defaults")
        return params


_lock = threading.Lock()
_cached: Optional[Library] = None
_cached_error: Optional[str] = None
_logged_unavailable = False


def load_library() -> Library:
    """Loads (once) and returns the library; raises :class:`LibraryUnavailable`
    with the reason and the build command otherwise. The answer is cached:
    call :func:`reset_library_cache` after building or changing the variable."""
    global _cached, _cached_error
    with _lock:
        if _cached is not None:
            return _cached
        if _cached_error is not None:
            raise LibraryUnavailable(_cached_error)
        path, why = find_library()
        try:
            if path is None:
                raise LibraryUnavailable(f"taylor-attention library unavailable: {why}; {BUILD_HINT}")
            try:
                lib = Library(path)
            except OSError as exc:
                raise LibraryUnavailable(
                    f"taylor-attention library {path} failed to load ({exc}); {BUILD_HINT}"
                ) from exc
        except LibraryUnavailable as exc:
            _cached_error = str(exc)
            raise
        _cached = lib
        return lib


def try_load_library(log_once: bool = True) -> Optional[Library]:
    """The library, or None (logging once, at WARNING, why and how to build it)."""
    global _logged_unavailable
    try:
        return load_library()
    except LibraryUnavailable as exc:
        if log_once and not _logged_unavailable:
            _logged_unavailable = True
            log.warning("%s. Standard attention is used instead.", exc)
        return None


def library_status() -> Tuple[bool, str]:
    """(available, path or reason)."""
    try:
        lib = load_library()
        return True, lib.path
    except LibraryUnavailable as exc:
        return False, str(exc)


def reset_library_cache() -> None:
    """Forget the loaded library (or the failure) so the next call searches again."""
    global _cached, _cached_error, _logged_unavailable
    with _lock:
        _cached = None
        _cached_error = None
        _logged_unavailable = False
