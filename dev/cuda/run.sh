#!/usr/bin/env bash
# Builds the prefix x block ladder (sm_90a, -lineinfo, ptxas -v into a log) and runs it at the
# Flux sizes N = 4608, 16896, 66048 (1024^2, 2048^2, 4096^2) with H = 24, printing the ptxas
# register/spill summary and one table. Every version is validated before it is timed; exits
# non-zero if the build or any validation fails. Extra arguments go to the harness
# (e.g. --version 1, --iters 15). Outputs: $BUILD_DIR (default build/dev-cuda).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${BUILD_DIR:-$root/build/dev-cuda}"
mkdir -p "$out"
bin="$out/prefix_block"
ptxas_log="$out/ptxas.log"

if ! nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -lineinfo -Xptxas -v -o "$bin" "$here/prefix_block.cu" >"$ptxas_log" 2>&1; then
  cat "$ptxas_log"
  echo "build failed (log: $ptxas_log)" >&2
  exit 1
fi

echo "## ptxas (sm_90)"
# "Compiling entry function 'X'" is followed by the spill line, then "Used N registers".
awk '
  /Compiling entry function/ { match($0, /\047[^\047]+\047/); name = substr($0, RSTART + 1, RLENGTH - 2) }
  /spill stores/ { spills = $0; sub(/^[ \t]+/, "", spills) }
  /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); print name "\t" substr($0, RSTART, RLENGTH) "\t" spills }
' "$ptxas_log" | c++filt | sed -e 's/(anonymous namespace):://g' -e 's/(__nv_bfloat16 const\*.*)\t/\t/'
echo

status=0
for n in 4608 16896 66048; do
  log="$out/run-$n.log"
  rc=0
  "$bin" --tokens "$n" --heads 24 "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "N=$n: ok"
  else
    status=1
    echo "N=$n: FAILED (exit $rc)"
  fi
  grep -v '^| [0-9]' "$log" | sed 's/^/  /'
done

echo
echo "| N | H | version | key ms | query ms | total ms | useful TFLOP/s | key TFLOP/s | query TFLOP/s | max rel L2 err | compute floor ms | memory floor ms |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in 4608 16896 66048; do
  grep -h '^| [0-9]' "$out/run-$n.log" || true
done
exit "$status"
