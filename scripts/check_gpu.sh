#!/usr/bin/env bash
# The GPU check in one call: set up .venv (on a CUDA machine pip's torch is a CUDA build), then
# headcoop's stages on CUDA and on the CPU side by side (scripts/check_gpu.py; its flags pass).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory setup >/dev/null
exec .venv/bin/python scripts/check_gpu.py "$@"
