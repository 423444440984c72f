"""The marks of the tests that need vLLM: ``vllm`` and ``slow``, skipped with a reason where vLLM is not installed.

The main environment has no vLLM; ``bash scripts/run_vllm_tests.sh`` runs these tests in ``.venv-vllm`` with
``SASC_TTRL_REQUIRE_VLLM=1``, where a missing vLLM is an error instead of a silent skip.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

VLLM_MISSING = importlib.util.find_spec("vllm") is None
if VLLM_MISSING and os.environ.get("SASC_TTRL_REQUIRE_VLLM") == "1":
    raise RuntimeError("SASC_TTRL_REQUIRE_VLLM=1 but vLLM is not installed in this environment")

VLLM_MARKS = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(
        VLLM_MISSING,
        reason="vLLM is not installed in this environment; run the vLLM tests with `bash scripts/run_vllm_tests.sh` "
        "(it builds the separate .venv-vllm)",
    ),
]


def needs_vllm(test):
    """Decorate one test with ``VLLM_MARKS`` (a module of vLLM tests sets ``pytestmark = VLLM_MARKS`` instead)."""
    for mark in VLLM_MARKS:
        test = mark(test)
    return test
