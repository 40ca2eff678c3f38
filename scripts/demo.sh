#!/usr/bin/env bash
# Builds the library and the CLI, then runs the main job: `taylor-attn demo`, on the
# GPU when one is present and the CUDA backend is built, else on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake --preset release
cmake --build --preset release -j"$jobs" --target taylor-attn
device=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  device=cuda
fi
exec ./build/release/tools/taylor-attn/taylor-attn demo --device "$device" "$@"
