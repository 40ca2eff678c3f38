"""install.py never fails ComfyUI-Manager: without CMake it explains and exits 0."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_install_without_cmake(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no cmake on PATH
    env.pop("TA_INSTALL_STRICT", None)
    res = subprocess.run([sys.executable, os.path.join(ROOT, "install.py")], capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode == 0
    assert "CMake (>= 3.24) was not found" in res.stdout


def test_install_without_cmake_strict(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path), TA_INSTALL_STRICT="1")
    res = subprocess.run([sys.executable, os.path.join(ROOT, "install.py")], capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode == 1
