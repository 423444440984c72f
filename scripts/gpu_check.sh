#!/usr/bin/env bash
# A GPU user's first ten minutes: is this machine ready to run the recipes? One GPU is enough.
#
#   bash scripts/gpu_check.sh MODEL_PATH [--recipe RECIPE] [--skip-train]
#
# MODEL_PATH: a local model folder (no hub access is then needed) or a hub id, e.g. Qwen/Qwen2.5-Math-1.5B.
# --recipe:   the training recipe of step 3 (default: recipes/Qwen2.5-Math-1.5B/sasc/config_math500.yaml).
# Steps (scripts/gpu_check.py): 1. versions, `pip check`, the model path, a CUDA GPU; 2. one vLLM generation with
# 20 logprobs per token (20-21 entries, the sampled id among them), then sleep and wake; 3. two optimizer updates
# of the recipe on one process with DeepSpeed ZeRO-3 and colocated vLLM: peak memory, where the time went,
# completions/clipped_ratio, and the share of sequences TRL's importance-sampling mask would drop.
# Each check prints `ok ...`; a failure prints one `gpu_check: error: ...` line (exit 2: arguments, 3: no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

MODEL=""
RECIPE="recipes/Qwen2.5-Math-1.5B/sasc/config_math500.yaml"
SKIP_TRAIN=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --recipe) [ $# -ge 2 ] || { echo "gpu_check: error: --recipe needs a file" >&2; exit 2; }; RECIPE="$2"; shift 2 ;;
    --skip-train) SKIP_TRAIN=1; shift ;;
    -*) echo "gpu_check: error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$MODEL" ] || { echo "gpu_check: error: one MODEL_PATH only, got '$MODEL' and '$1'" >&2; exit 2; }
       MODEL="$1"; shift ;;
  esac
done
[ -n "$MODEL" ] || { echo "gpu_check: error: MODEL_PATH is required (see --help)" >&2; exit 2; }

echo "== 1/3 versions, pip check, model, GPU"
"$PY" scripts/gpu_check.py preflight "$MODEL" "$RECIPE"
echo "== 2/3 vLLM: 20 logprobs per token, sleep and wake"
"$PY" scripts/gpu_check.py vllm "$MODEL"
if [ "$SKIP_TRAIN" = 1 ]; then echo "== 3/3 skipped (--skip-train)"; exit 0; fi
echo "== 3/3 two updates of $RECIPE (one process, ZeRO-3, colocated vLLM)"
"$PY" -m accelerate.commands.launch --num_processes 1 --config_file accelerate_configs/zero3.yaml \
  scripts/gpu_check.py train "$MODEL" "$RECIPE"
echo "gpu_check: all checks passed"
