#!/usr/bin/env bash
# The sanitizer and fuzzing runs of issue 5, for CI (docs/reliability.md has the results):
#
#   scripts/test-sanitizers.sh [fuzz_seconds_per_target]     (default 20)
#
#   1. preset asan: build, then the whole C++ suite (ctest) under AddressSanitizer +
#      UndefinedBehaviorSanitizer + LeakSanitizer;
#   2. preset tsan: build, then the C++ suite under ThreadSanitizer (the concurrency,
#      determinism and thread-safety tests included; the CLI is not built there);
#   3. scripts/fuzz.sh: each libFuzzer target for the given seconds (clang, ASan + UBSan),
#      starting from the committed seeds and every input that once crashed.
#
# CPU only: the CUDA backend is off in these builds (GPU code is checked with
# compute-sanitizer on a GPU machine). Prints the time of each step; stops at the first
# failure. About 9 minutes from clean build dirs on 2 cores with the default 20 s.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

fuzz_secs=${1:-20}
case "$fuzz_secs" in '' | *[!0-9]*) echo "usage: $0 [fuzz_seconds_per_target]" >&2; exit 2 ;; esac
jobs=$(nproc 2>/dev/null || echo 2)

# A fresh build dir gets Ninja when it is there (faster no-op rebuilds); an existing one
# keeps whatever generator configured it.
configure() {
  local preset=$1
  local gen=()
  if [ ! -f "build/$preset/CMakeCache.txt" ] && command -v ninja >/dev/null; then gen=(-G Ninja); fi
  cmake --preset "$preset" "${gen[@]}" >/dev/null
}

start=$(date +%s)
timings=()
step() {
  local name=$1
  shift
  local t0
  t0=$(date +%s)
  echo "== test-sanitizers: $name"
  "$@"
  timings+=("$(printf '%-22s %5d s' "$name" $(($(date +%s) - t0)))")
}

step "asan build" bash -c "$(declare -f configure); configure asan && cmake --build --preset asan -j$jobs >/dev/null"
step "asan ctest" ctest --preset asan -j"$jobs" --output-on-failure -Q
step "tsan build" bash -c "$(declare -f configure); configure tsan && cmake --build --preset tsan -j$jobs >/dev/null"
step "tsan ctest" ctest --preset tsan -j"$jobs" --output-on-failure -Q
step "fuzz (${fuzz_secs}s/target)" bash scripts/fuzz.sh "$fuzz_secs"

echo
echo "test-sanitizers: all passed in $(($(date +%s) - start)) s"
printf '  %s\n' "${timings[@]}"
