"""install.py never fails ComfyUI-Manager: without CMake it explains and exits 0."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _without_cmake(tmp_path, **extra):
    """An environment with no cmake on PATH and the PyPI `cmake` module hidden (a stub
    that fails to import shadows it), as on a machine without CMake."""
    (tmp_path / "cmake.py").write_text("raise ImportError('hidden by the test')\n")
    env = dict(os.environ, PATH=str(tmp_path), PYTHONPATH=str(tmp_path), **extra)
    return env


def test_install_without_cmake(tmp_path):
    env = _without_cmake(tmp_path)
    env.pop("TA_INSTALL_STRICT", None)
    res = subprocess.run([sys.executable, os.path.join(ROOT, "install.py")], capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode == 0
    assert "CMake (>= 3.24) was not found" in res.stdout


def test_install_without_cmake_strict(tmp_path):
    env = _without_cmake(tmp_path, TA_INSTALL_STRICT="1")
    res = subprocess.run([sys.executable, os.path.join(ROOT, "install.py")], capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode == 1
