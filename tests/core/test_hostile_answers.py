"""Hostile completions: every one is extracted, checked and grouped in bounded time, and nothing in them runs.

Each completion goes through `extract_answer`, `is_equivalent` (raw text and extracted answer against real answers)
and `group_equivalent`, with a 0.3 s check timeout, and must be done within 2 s, from the main thread and from
another thread. Payloads that would create a file if anything evaluated them (``eval``, ``exec``, ``sympify``) must
leave no file behind; a control check proves the payloads are live.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sasc_ttrl.core import answers
from sasc_ttrl.core.answers import extract_answer, group_equivalent, is_equivalent

CHECK_TIMEOUT = 0.3
BOUND_SECONDS = 2.0
MB = 1_000_000

HOSTILE = {
    # numbers that no computer can hold
    "power tower": "\\boxed{9^{9^{9^{9}}}}",
    "power tower, plain": "The answer is 9^9^9^9.",
    "three-level tower": "\\boxed{9^{9^{9}}}",
    "exponent of a huge literal": "\\boxed{2^{" + "9" * 1500 + "}}",
    "factorial tower": "\\boxed{((100!)!)!}",
    "factorial of a power": "\\boxed{(10^{10})!}",
    "binomial of powers": "\\boxed{\\binom{10^{12}}{10^{6}}}",
    "huge sum": "\\boxed{\\sum_{k=1}^{10^{12}} k^{k}}",
    "huge product": "\\boxed{\\prod_{k=1}^{10^{9}} k}",
    "nested exponential integral": "\\boxed{\\int_0^1 e^{x^{x^{x}}}\\,dx}",
    "exp of exp": "\\boxed{e^{e^{e^{e^{10}}}}}",
    "100k-digit literal": "\\boxed{" + "7" * 100_000 + "}",
    # size and nesting
    "1 MB of text": "x" * MB,
    "1 MB boxed": "\\boxed{" + "1+" * (MB // 2) + "1}",
    "1 MB of boxes": "\\boxed{1}" * (MB // 9),
    "deeply nested braces": "\\boxed{" + "{" * 50_000 + "1" + "}" * 50_000 + "}",
    "deeply nested fractions": "\\boxed{" + "\\frac{1}{" * 400 + "2" + "}" * 400 + "}",
    "deeply nested parentheses": "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}",
    "unbalanced boxes": "\\boxed{" * 100_000,
    "unbalanced box after a good one": "\\boxed{3} then \\boxed{" + "{" * 100_000,
    "100k closing braces": "\\boxed{1}" + "}" * 100_000,
    "backslashes": "\\boxed{" + "\\" * 100_000 + "}",
    "answer-is spaces": "The answer is 1" + " " * 200_000 + "2",
    "answer-is repeated": "the answer is " * 100_000 + "$x",
    "gsm8k markers": "#### " * 200_000,
    "text with spaces": "\\boxed{\\text{" + " " * 100_000 + "}",
    "trailing zeros": "\\boxed{1." + "0" * 200_000 + "x}",
    "thousands separators": "\\boxed{1" + ",000" * 100_000 + "x}",
    # bytes and look-alikes
    "null bytes": "\\boxed{5\x00}\x00\x00",
    "control characters": "\\boxed{\x01\x02\x1b[31m5\x7f}",
    "lone surrogate": "\\boxed{\ud8005}",
    "fullwidth digit": "\\boxed{\uff15}",
    "math bold digit": "\\boxed{\U0001d7d3}",
    "arabic-indic digit": "\\boxed{\u0665}",
    "cyrillic x": "\\boxed{\u0445 = 5}",
    "zero-width and bidi": "\\boxed{\u202e5\u200b\u2066}",
    "combining marks": "\\boxed{5" + "\u0301" * 10_000 + "}",
    # values that break arithmetic
    "division by zero": "\\boxed{\\frac{1}{0}}",
    "infinity minus infinity": "\\boxed{\\infty - \\infty}",
    "nan": "\\boxed{\\mathrm{NaN}}",
}


def code_payloads(folder: Path) -> dict[str, str]:
    """Python that creates a file in ``folder`` when evaluated (``eval``), with the file it creates."""
    return {
        "os_system": f"__import__('os').system('touch {folder}/os_system')",
        "open": f"open('{folder}/open', 'w')",
        "pathlib": f"__import__('pathlib').Path('{folder}/pathlib').touch()",
        "exec": f"exec(\"open('{folder}/exec', 'w')\")",
        "getattr": f"getattr(__import__('os'), 'system')('touch {folder}/getattr')",
        "lambda": f"(lambda: open('{folder}/lambda', 'w'))()",
    }


def wrapped(code: str) -> list[str]:
    """The ways a payload can reach the answer checker: boxed, in math mode, as a plain final answer."""
    return [
        f"\\boxed{{{code}}}",
        f"${code}$",
        f"The answer is {code}",
        f"#### {code}",
        f"\\boxed{{\\text{{{code}}}}}",
        f"\\boxed{{2+{code}}}",
        code,
    ]


@pytest.fixture(scope="module", autouse=True)
def warm_verify_process():
    """Start the verify process outside the timed cases; leave no quarantined answers behind."""
    answers.clear_caches()
    assert is_equivalent("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", timeout=30.0)  # irrational: a real check
    yield
    answers.clear_caches()


def process_completion(text: str) -> tuple[str | None, list[int | None]]:
    """Everything the reward does with a completion's text: extract, check, group."""
    answer = extract_answer(text)
    is_equivalent("5", text, timeout=CHECK_TIMEOUT)
    classes = group_equivalent([answer, "5", answer, None, "\\frac{1}{2}"], timeout=CHECK_TIMEOUT)
    return answer, classes


def test_there_are_at_least_thirty_cases():
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize("name", list(HOSTILE))
def test_each_hostile_completion_is_handled_in_bounded_time(name):
    start = time.perf_counter()
    answer, classes = process_completion(HOSTILE[name])
    elapsed = time.perf_counter() - start
    assert elapsed <= BOUND_SECONDS, f"{name}: {elapsed:.2f}s"
    assert len(classes) == 5 and classes[3] is None
    if answer is not None:
        assert classes[0] == classes[2] == 0  # an answer is always equivalent to itself
    # Nothing is poisoned: the checker still gives real verdicts.
    assert is_equivalent("\\sqrt{12}", "2\\sqrt{3}", timeout=5.0) is True


def test_hostile_completions_off_the_main_thread():
    """The same timeouts hold when the reward is computed in another thread (no signals involved)."""
    names = ["power tower", "three-level tower", "factorial tower", "1 MB boxed", "unbalanced boxes", "null bytes"]
    answers.clear_caches()
    timings: dict[str, float] = {}
    errors: list[BaseException] = []

    def work():
        try:
            for name in names:
                start = time.perf_counter()
                process_completion(HOSTILE[name])
                timings[name] = time.perf_counter() - start
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
            errors.append(err)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=len(names) * BOUND_SECONDS + 10)
    assert not thread.is_alive()
    assert errors == []
    assert set(timings) == set(names)
    assert all(t <= BOUND_SECONDS for t in timings.values()), timings


def test_huge_numbers_are_never_built():
    """Towers are recognised from the unevaluated expression: even the unbounded in-thread check returns at once."""
    for tower in ("9^{9^{9^{9}}}", "9^{9^{9}}", "((100!)!)!", "(10^{10})!", "e^{e^{e^{e^{10}}}}", "10^{10001}"):
        start = time.perf_counter()
        assert is_equivalent("5", tower, timeout=None) is False
        assert is_equivalent(tower, "5", timeout=None) is False
        assert time.perf_counter() - start < BOUND_SECONDS, tower
    # Big numbers that are still numbers keep their verdicts.
    assert is_equivalent("2^{2^{3}}", "256", timeout=None) is True
    assert is_equivalent("10^{100}", "10^{100}+1", timeout=None) is False


def test_a_runaway_check_is_stopped_not_left_running():
    """A check that overruns is killed: right after its timeout, a normal check answers at once."""
    answers.clear_caches()
    start = time.perf_counter()
    assert is_equivalent("5", "\\sum_{k=1}^{10^{12}} k^{k}", timeout=CHECK_TIMEOUT) is False
    timed_out = time.perf_counter() - start
    start = time.perf_counter()
    assert is_equivalent("\\sqrt{8}", "2\\sqrt{2}", timeout=5.0) is True
    assert time.perf_counter() - start < 1.0
    assert CHECK_TIMEOUT <= timed_out < BOUND_SECONDS


def test_payloads_are_live_when_evaluated(tmp_path):
    """Control: each payload really does create its file when Python evaluates it."""
    for name, code in code_payloads(tmp_path).items():
        eval(code)  # noqa: S307 - the point of the control
        assert (tmp_path / name).exists(), name


def test_nothing_in_a_completion_is_ever_executed(tmp_path):
    payloads = code_payloads(tmp_path)
    texts = [text for code in payloads.values() for text in wrapped(code)]
    for text in texts:
        answer, _ = process_completion(text)
        for other in ("0", "x", text):
            is_equivalent(other, answer, timeout=CHECK_TIMEOUT)
            is_equivalent(answer, other, timeout=None)  # even the unbounded in-thread path
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_dead_verify_process_is_replaced():
    """A server that died (killed, out of memory) is restarted on the next check."""
    from sasc_ttrl.core import verify_process

    assert is_equivalent("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", timeout=5.0)
    server = verify_process._client.process
    server.kill()
    server.wait()
    answers.clear_caches()
    assert is_equivalent("2\\sqrt{2}", "\\sqrt{8}", timeout=30.0) is True
    assert verify_process._client.process is not server
