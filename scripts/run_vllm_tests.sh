#!/usr/bin/env bash
# The vLLM job: build (if needed) the optional vLLM environment and run the vLLM tests in it.
#   bash scripts/run_vllm_tests.sh [extra pytest args]
# The tests are marked `vllm` (and `slow`); pyproject's addopts say `-m 'not slow'`, and the `-m vllm` given here
# replaces it (pytest keeps the last -m). This job must run tests: pytest's exit code 5 (no test collected) is a
# failure here, and SASC_TTRL_REQUIRE_VLLM=1 turns "vLLM not installed" into an error instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_vllm_env.sh
VENV="${SASC_TTRL_VLLM_VENV:-.venv-vllm}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"  # GiB of KV cache (the default would take 4+)
export VLLM_ENABLE_V1_MULTIPROCESSING=0                        # engine in the test process (no vLLM re-import)
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1    # no network: only PyPI is reachable
export SASC_TTRL_REQUIRE_VLLM=1
status=0
"$VENV/bin/python" -m pytest -m vllm tests/sampling/test_vllm.py tests/sampling/test_vllm_cpu_prefill.py tests/training/test_vllm_trainer.py tests/sampling/test_generation.py \
  tests/test_benchmarks.py -rs "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "run_vllm_tests.sh: no vLLM test was collected (pytest exit 5); failing the vLLM job" >&2
  exit 1
fi
exit "$status"
