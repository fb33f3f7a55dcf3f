#!/usr/bin/env bash
# Creates .venv and installs the project with its test extra. Idempotent; safe to re-run.
# torch is pinned first: a bare `torch` requirement would pull a multi-GB CUDA build on a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
