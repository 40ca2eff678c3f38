#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang (preset `fuzz`: ASan + UBSan, library
# coverage-instrumented, into build/fuzz) and runs each for a bounded time:
#
#   scripts/fuzz.sh [seconds_per_target]     (default 60)
#
# Each target starts from a working copy of its committed seed corpus and regression inputs
# (fuzz/corpus/<target> and fuzz/regressions/<target> -> build/fuzz/corpus/<target>), so
# every seed and every input that once crashed is replayed first, and new inputs never
# touch the repository. Crash inputs land in
# build/fuzz/artifacts/<target>/, logs in build/fuzz/logs/. At the end it prints the
# executions per target; the exit status is non-zero when any target crashed, leaked,
# timed out or failed one of its oracles.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [seconds_per_target]" >&2; exit 2 ;; esac
jobs=$(nproc 2>/dev/null || echo 2)

# clang with the libFuzzer runtime (Debian 12: clang + libclang-rt-dev, i.e. clang 14).
have_libfuzzer() {
  command -v clang++ >/dev/null || return 1
  local probe
  probe=$(mktemp -d)
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char *, unsigned long) { return 0; }\n' >"$probe/p.cpp"
  clang++ -fsanitize=fuzzer "$probe/p.cpp" -o "$probe/p" >/dev/null 2>&1
  local rc=$?
  rm -rf "$probe"
  return $rc
}
if ! have_libfuzzer; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "fuzz.sh: apt-get install clang libclang-rt-dev"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-dev >/dev/null
  fi
  if ! have_libfuzzer; then
    echo "fuzz.sh: needs clang++ with libFuzzer (Debian: apt-get install clang libclang-rt-dev)" >&2
    exit 1
  fi
fi

gen=()
if [ ! -f build/fuzz/CMakeCache.txt ] && command -v ninja >/dev/null; then gen=(-G Ninja); fi
cmake --preset fuzz "${gen[@]}" >/dev/null
cmake --build --preset fuzz -j"$jobs" >/dev/null

targets=(fuzz_npy fuzz_api_args fuzz_config fuzz_workload)
# Sanitizer findings are fatal; leaks are checked per input by libFuzzer itself.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

mkdir -p build/fuzz/logs
failed=0
summary=()
for t in "${targets[@]}"; do
  work="build/fuzz/corpus/$t"
  art="build/fuzz/artifacts/$t/"
  log="build/fuzz/logs/$t.log"
  mkdir -p "$work" "$art"
  cp -n fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
  cp -n fuzz/regressions/"$t"/* "$work"/ 2>/dev/null || true
  extra=()
  [ -f "fuzz/$t.dict" ] && extra+=("-dict=fuzz/$t.dict")
  before=$(find "$art" -type f | wc -l)
  echo "fuzz.sh: $t for ${secs}s ..."
  rc=0
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: the default, stated.
  "build/fuzz/fuzz/$t" "$work" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$art" "${extra[@]}" >"$log" 2>&1 || rc=$?
  # (A target that crashes while loading its corpus prints neither line.)
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}' || true)
  units=$(find "$work" -type f | wc -l)
  after=$(find "$art" -type f | wc -l)
  status=ok
  if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
    status="FAILED (exit $rc, see $log; inputs in $art)"
    failed=1
  fi
  summary+=("$(printf '%-14s %12s executions  %6s edges  %6s corpus units  %s' "$t" "${execs:-?}" "${cov:-?}" "$units" "$status")")
done

echo
echo "fuzz.sh: ${secs}s per target"
printf '%s\n' "${summary[@]}"
exit "$failed"
