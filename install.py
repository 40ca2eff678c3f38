"""Builds the taylor-attention library for the ComfyUI node.

ComfyUI-Manager runs ``python install.py`` in the node folder after installing or
updating it; run it by hand the same way. It configures and builds with CMake into
build/release (where the node finds the library) and prints what to do when that fails.
It never raises: a failed build leaves ComfyUI working, with standard attention.

Options: --build-dir DIR, --cpu-only (no CUDA backend), --jobs N, --debug.
"""

import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _say(msg: str) -> None:
    print(f"[taylor-attention] {msg}", flush=True)


def _run(cmd) -> bool:
    _say("$ " + " ".join(cmd))
    try:
        return subprocess.run(cmd, cwd=HERE).returncode == 0
    except OSError as exc:
        _say(f"could not run {cmd[0]}: {exc}")
        return False


def _cmake() -> str:
    found = shutil.which("cmake")
    if found:
        return found
    try:  # the PyPI cmake package, if the user installed it into this Python
        import cmake  # type: ignore

        path = os.path.join(cmake.CMAKE_BIN_DIR, "cmake")
        if os.path.exists(path) or os.path.exists(path + ".exe"):
            return path
    except Exception:  # noqa: BLE001
        pass
    return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default=os.path.join("build", "release"))
    parser.add_argument("--cpu-only", action="store_true", help="do not build the CUDA backend")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    cmake = _cmake()
    if not cmake:
        _say("CMake (>= 3.24) was not found. Install it (e.g. `pip install cmake`, or your "
             "system's package) plus a C++20 compiler, then run `python install.py` again. "
             "Until then the node falls back to standard attention.")
        return 1
    configure = [cmake, "-S", ".", "-B", args.build_dir,
                 f"-DCMAKE_BUILD_TYPE={'Debug' if args.debug else 'Release'}",
                 "-DTA_BUILD_TESTS=OFF", "-DTA_BUILD_TOOLS=OFF"]
    if args.cpu_only:
        configure.append("-DTA_ENABLE_CUDA=OFF")
    if not _run(configure):
        _say("CMake configure failed (see above). A C++20 compiler is required; the CUDA "
             "backend is built only when nvcc is found (use --cpu-only to skip it). The node "
             "keeps working with standard attention.")
        return 1
    if not _run([cmake, "--build", args.build_dir, "-j", str(args.jobs)]):
        _say("The build failed (see above). Please report the output. The node keeps "
             "working with standard attention.")
        return 1
    sys.path.insert(0, os.path.join(HERE, "python"))
    try:
        from taylor_attention import _lib

        src = os.path.join(HERE, args.build_dir, "src")
        paths = [os.path.join(src, name) for name in _lib._lib_names()]
        path = next((p for p in paths if os.path.isfile(p)), None)
        if path is None:
            _say(f"the build finished but no library is in {src}")
            return 1
        lib = _lib.Library(path)
        cuda = "with" if lib.backend_available(_lib.TA_DEVICE_CUDA) else "without"
        _say(f"built {lib.path} (version {lib.version}, {cuda} the CUDA backend). Restart ComfyUI.")
        if os.path.normpath(args.build_dir) not in (os.path.join("build", "release"), os.path.join("build", "cpu-only")):
            _say(f"note: the node looks in build/release/src and build/cpu-only/src first; "
                 f"set {_lib.LIB_ENV}={lib.path} to be sure this one is used.")
    except Exception as exc:  # noqa: BLE001
        _say(f"the library was built but could not be loaded: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except Exception as exc:  # noqa: BLE001 - never crash ComfyUI-Manager
        _say(f"unexpected error: {exc!r}")
        code = 1
    # ComfyUI-Manager treats a non-zero exit as a failed install; report, do not fail it.
    sys.exit(0 if os.environ.get("TA_INSTALL_STRICT", "") in ("", "0") else code)
