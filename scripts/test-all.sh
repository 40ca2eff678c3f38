#!/usr/bin/env bash
# Builds everything and runs every test suite: the C++ suite (CTest) and, when the
# Python layer is present, the pytest suite. The README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake --preset release -DTA_BUILD_TESTS=ON -DTA_BUILD_TOOLS=ON
cmake --build --preset release -j"$jobs"
ctest --preset release -j"$jobs"
if [ -x scripts/test-python.sh ]; then
  bash scripts/test-python.sh
fi
