#!/usr/bin/env bash
# The pytest suite (Python binding, override, ComfyUI node, benchmarks) in a reusable
# virtual environment; see tests/python/ci.sh for what it installs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash tests/python/ci.sh "$@"
