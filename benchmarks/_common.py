"""Shared helpers of the benchmarks: importing the source package, timing, environment."""

import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def import_package():
    """Imports taylor_attention, preferring the source tree's python/ folder."""
    path = os.path.join(ROOT, "python")
    if path not in sys.path:
        sys.path.insert(0, path)
    import taylor_attention

    return taylor_attention


def parse_dtype(name: str):
    import torch

    table = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float32": torch.float32, "fp32": torch.float32, "float64": torch.float64}
    if name not in table:
        raise SystemExit(f"unknown dtype {name!r}: use one of {', '.join(table)}")
    return table[name]


def pick_device(name: Optional[str]):
    import torch

    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device (use --device cpu)")
    return torch.device(name)


def time_fn(fn: Callable[[], object], device, iters: int, warmup: int) -> Dict[str, float]:
    """Median / min milliseconds of fn() after warm-up: CUDA events on the GPU,
    perf_counter on the CPU."""
    import torch

    for _ in range(warmup):
        fn()
    times: List[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(iters):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "iters": len(times)}


def peak_memory(fn: Callable[[], object], device) -> Optional[int]:
    """Peak bytes allocated by torch above what was allocated before fn() (CUDA only)."""
    import torch

    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


def environment(device) -> Dict[str, object]:
    import torch

    ta = import_package()
    ok, lib = ta.library_status()
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "library": lib if ok else None,
        "library_version": ta.load_library().version if ok else None,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["driver"] = _nvidia_driver()
        if ok:
            env["library_cuda_backend"] = ta.load_library().backend_available(1)
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       capture_output=True, text=True, timeout=10).stdout.strip() or None
    except Exception:  # noqa: BLE001
        env["commit"] = None
    return env


def _nvidia_driver() -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        return out.splitlines()[0] if out else None
    except Exception:  # noqa: BLE001
        return None


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
