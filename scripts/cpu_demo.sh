#!/usr/bin/env bash
# CPU demo: install (if needed), build the tiny model and its data, run a short SASC-TTRL training.
# Extra arguments go to the trainer, e.g.  bash scripts/cpu_demo.sh --reward_funcs majority
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV="${SASC_TTRL_VENV:-.venv}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" TOKENIZERS_PARALLELISM=false
"$VENV/bin/sasc-ttrl" make-tiny-model --output_dir runs/tiny-model
"$VENV/bin/sasc-ttrl" train --config recipes/tiny/sasc_cpu.yaml "$@"
