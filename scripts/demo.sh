#!/usr/bin/env bash
# Builds the library and the CLI, then runs the main job: `taylor-attn demo`, on the GPU
# when nvidia-smi finds one, else on the CPU. With a GPU the demo gets `--device auto`:
# CUDA when the build has the CUDA backend and the card answers, otherwise (nvcc missing at
# configure time, driver too old for the toolkit, ...) the CPU demo after a one-line note,
# rather than a failure. A --device given to this script wins.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake --preset release
cmake --build --preset release -j"$jobs" --target taylor-attn
device=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  device=auto
fi
for arg in "$@"; do
  case "$arg" in
    --device | --device=*) exec ./build/release/tools/taylor-attn/taylor-attn demo "$@" ;;
  esac
done
exec ./build/release/tools/taylor-attn/taylor-attn demo --device "$device" "$@"
