#!/usr/bin/env bash
# Runs the Python suite the way CI does: a reusable venv (TA_VENV, default
# ~/.cache/taylor-attention/venv) with tests/python/requirements.txt, the library from the
# build tree (building a CPU-only one into build/py when none exists), then pytest.
# Extra arguments go to pytest; RUN_LONG_TESTS=1 adds the long tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${TA_VENV:-$HOME/.cache/taylor-attention/venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
if [ -z "${TAYLOR_ATTENTION_LIB:-}" ] && ! ls build/*/src/libtaylor_attention.so >/dev/null 2>&1; then
  echo "test-python: no library in build/*/src: building a CPU-only one in build/py"
  cmake -S . -B build/py -DCMAKE_BUILD_TYPE=Release -DTA_ENABLE_CUDA=OFF -DTA_BUILD_TESTS=OFF -DTA_BUILD_TOOLS=OFF
  cmake --build build/py -j"$(nproc 2>/dev/null || echo 2)"
fi
exec "$venv/bin/python" -m pytest -q tests/python "$@"
