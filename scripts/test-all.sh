#!/usr/bin/env bash
# Builds everything and runs every test suite: the C++ suite (CTest), the pytest suite,
# and the hardening runs (the C++ suite under ASan+UBSan and TSan, each libFuzzer target
# for 20 s; docs/reliability.md). The README's test command. TA_SKIP_SANITIZERS=1 skips
# the hardening runs for a quick local check.
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
if [ "${TA_SKIP_SANITIZERS:-0}" != 1 ]; then
  bash scripts/test-sanitizers.sh
fi
