#!/usr/bin/env bash
# Install (if needed) and run every test: the slow multi-process / DeepSpeed / SmolLM2 ones included, then the
# vLLM tests in their own environment (.venv-vllm; SASC_TTRL_SKIP_VLLM=1 skips that part).
# Quick run without the slow tests: .venv/bin/pytest   (pytest's default excludes -m slow)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV="${SASC_TTRL_VENV:-.venv}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$HOME/.cache/sasc_ttrl/torch_extensions}"
"$VENV/bin/ruff" check sasc_ttrl tests scripts benchmarks studies
"$VENV/bin/lint-imports"  # the package's layers (pyproject.toml [tool.importlinter])
"$VENV/bin/mkdocs" build --strict --site-dir "$(mktemp -d)"  # the docs site (mkdocs.yml), zero warnings
"$VENV/bin/python" -m pytest -m "slow or not slow" "$@"
# The vLLM tests run in their own environment (vLLM's CPU build pins an older transformers than the project).
if [ "${SASC_TTRL_SKIP_VLLM:-0}" != "1" ]; then
  bash scripts/run_vllm_tests.sh
fi
