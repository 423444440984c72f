#!/usr/bin/env bash
# Run pytest N times with the same arguments and count the failed runs (for intermittent failures, e.g. issue 19).
#   bash scripts/repeat_tests.sh 30 tests/training/test_distributed.py -k two_process_reward
# Slow tests are selectable (-m "slow or not slow"). For each failed run, prints its log file and the first
# error lines (terminate / SIGABRT / Error / exit codes). Exits 1 when any run failed.
# SASC_TTRL_VENV names the virtualenv (default .venv).
set -uo pipefail
if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 N [PYTEST_ARGS...]" >&2
  exit 2
fi
n=$1
shift
cd "$(dirname "$0")/.."
PYTHON="${SASC_TTRL_VENV:-.venv}/bin/python"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, even when the venv installs another one
logs=$(mktemp -d "${TMPDIR:-/tmp}/repeat_tests.XXXXXX")
failed=0
for i in $(seq 1 "$n"); do
  log="$logs/run$i.log"
  if "$PYTHON" -m pytest -m "slow or not slow" -q -p no:cacheprovider "$@" >"$log" 2>&1; then
    echo "run $i/$n: passed"
    rm -f "$log"
  else
    failed=$((failed + 1))
    echo "run $i/$n: FAILED (log: $log)"
    grep -E "terminate called|SIGABRT|exitcode|Signal [0-9]|[A-Za-z]+Error|FAILED" "$log" | head -n 15 | sed 's/^/    /'
  fi
done
echo "$failed of $n runs failed (logs in $logs)"
[ "$failed" -eq 0 ]
