#!/usr/bin/env bash
# Issue 57's GPU check on a lent GPU (benchmarks/gpu_check.py's docstring): prepare here once with
#   .venv/bin/python benchmarks/gpu_check.py prepare
# then on the device: run with carry [".gpu-check"] and the command `bash benchmarks/gpu_check.sh` (≤ 8 minutes).
# The wheels of what the GPU image lacks are installed into /tmp/site; the JSON goes to $OUT (or the current folder).
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".gpu-check/whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .gpu-check/whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec timeout 480 python3 benchmarks/gpu_check.py run --output "${OUT:-.}/gpu-check.json" "$@"
