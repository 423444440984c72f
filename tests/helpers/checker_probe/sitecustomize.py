"""Instrumentation for `tests/training/test_dying_checker.py`, in every Python process started with this folder on
``PYTHONPATH`` and ``SASC_TTRL_CHECKER_PROBE`` set (Python imports ``sitecustomize`` at start-up).

The tiny model answers with integers, which never reach the math-verify worker (identical strings and plain
numbers are decided in the rank), so a kill could never hit a check. Here, in every process:

* no answer is "identical" to another (each normalisation is unique) and the plain-number fast path is off, so every
  pair of answers, equal ones included, is checked by the worker;
* a check of two equal answers -- one whose verdict is "equivalent", the verdict a lost check would turn into "not
  equivalent" -- takes ``SLEEP_SECONDS`` longer, with a marker file ``busy-<pid>`` in ``$SASC_TTRL_CHECKER_PROBE``
  while it runs: a worker with a marker is in the middle of such a check.

Both the reference run and the killed run carry the same instrumentation, so their votes are comparable.
"""

import itertools
import os
import time
import warnings

PROBE_DIR = os.environ.get("SASC_TTRL_CHECKER_PROBE")
SLEEP_SECONDS = 0.5

if PROBE_DIR:
    # The verify server runs as `python -m sasc_ttrl.core.verify_process`, a module imported here first.
    warnings.filterwarnings("ignore", message=".*found in sys.modules after import", category=RuntimeWarning)
    from sasc_ttrl.core import answers, math_equivalence

    _count = itertools.count()
    _safe_verify = math_equivalence._safe_verify

    def _unique_normalisation(answer: str) -> str:
        return f"{answer}\x00{next(_count)}"

    def _probed_verify(gold: str, pred: str) -> bool:
        if gold != pred:
            return _safe_verify(gold, pred)
        marker = os.path.join(PROBE_DIR, f"busy-{os.getpid()}")
        open(marker, "w").close()
        time.sleep(SLEEP_SECONDS)
        verdict = _safe_verify(gold, pred)
        os.remove(marker)  # left in place when the worker is killed first
        return verdict

    answers.normalize_answer = _unique_normalisation
    answers._rational_verdict = lambda gold, pred: None
    math_equivalence._safe_verify = _probed_verify
