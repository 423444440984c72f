#!/usr/bin/env bash
# Create .venv (if missing) and install sasc-ttrl with its test, DeepSpeed and docs extras, CPU-only torch.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SASC_TTRL_VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 resolves to the CPU wheel here
# (on a GPU machine, install the CUDA build of torch 2.13 before running this script).
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -e ".[dev,deepspeed,docs]"
echo "environment ready: $VENV"
