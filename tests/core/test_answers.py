"""Answer extraction, normalisation and math-verify equivalence (sasc_ttrl.core.answers)."""

from __future__ import annotations

import threading
import time

import pytest

from sasc_ttrl.core import answers, math_equivalence
from sasc_ttrl.core.answers import extract_answer, group_equivalent, is_equivalent, normalize_answer

# --------------------------------------------------------------------------------------------------------------
# extract_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So x = \\boxed{42}.", "42"),
        ("First \\boxed{1}, then on reflection \\boxed{2}.", "2"),
        ("The answer is \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\sqrt{\\frac{a}{b}}} done", "\\sqrt{\\frac{a}{b}}"),
        ("\\boxed{ 5 }", "5"),
        ("\\boxed {4}", "4"),
        ("Final: \\fbox{9}", "9"),
        ("\\fbox{1} and later \\boxed{2}", "2"),
        ("\\boxed{2} and later \\fbox{1}", "1"),
        # A truncated (unbalanced) last box falls back to the latest complete one.
        ("\\boxed{3} then \\boxed{\\frac{1}{2", "3"),
        ("\\boxed{3} then \\boxed{4", "3"),
        # ... of either command: \fbox{1} is the latest complete box here.
        ("\\boxed{2} \\fbox{1} \\boxed{3", "1"),
        ("Some working\n#### 42", "42"),
        ("#### 1,234\n", "1,234"),
        ("#### 1\nmore\n#### 2", "2"),
        ("The answer is 7.", "7"),
        ("the ANSWER IS 7", "7"),
        ("The answer is: 12", "12"),
        ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        # A decimal point is not the end of the sentence.
        ("The answer is 3.5.", "3.5"),
        ("So the answer is 18, which is Sam's new total apples.", "18"),
        ("The answer is 1,250 because 1,000 + 250 = 1,250.", "1,250"),
        ("The answer is -4 since x = -4.", "-4"),
        ("The answer is 1, 2", "1, 2"),
        ("The answer is 2 x + 3", "2 x + 3"),
        ("The answer is $3.5$.", "3.5"),
        ("The answer is 0.25", "0.25"),
        ("The answer is 7.\nThen some text", "7"),
        ("The answer is 7. Wait, no: the answer is 8.", "8"),
        # \boxed beats "the answer is" and "####" regardless of position.
        ("\\boxed{5}\nThe answer is 6.", "5"),
        ("\\boxed{5}\n#### 6", "5"),
        # "####" beats "the answer is".
        ("The answer is 6.\n#### 5", "5"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "I am not sure what to do here.",
        "Let me compute 3 + 4 = 7",
        "\\boxed{5",  # only a truncated box
        "\\boxed{}",  # an empty box
        "\\boxed{   }",
        "####   ",
    ],
)
def test_extract_answer_none(text):
    assert extract_answer(text) is None


# --------------------------------------------------------------------------------------------------------------
# normalize_answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  42 ", "42"),
        ("$42$", "42"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\tfrac{1}{2}", "\\frac{1}{2}"),
        ("\\displaystyle\\frac{1}{2}", "\\frac{1}{2}"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("5\\text{ cm}", "5cm"),
        ("\\text{ yes }", "yes"),
        ("1,234", "1234"),
        ("1,234,567.5", "1234567.5"),
        ("-1,000", "-1000"),
        ("2.50", "2.5"),
        ("3.0", "3"),
        ("-2.500", "-2.5"),
        ("3.", "3"),
        ("1\\,000", "1000"),
        # Trailing zeros of integers and tuples that look like numbers are kept.
        ("10", "10"),
        ("100", "100"),
        ("1,2", "1,2"),
        ("1,23", "1,23"),
        ("x + y", "x+y"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_answer_keeps_different_numbers_apart():
    assert normalize_answer("2") != normalize_answer("3")
    assert normalize_answer("1.05") != normalize_answer("1.5")
    assert normalize_answer("10") != normalize_answer("1")


# --------------------------------------------------------------------------------------------------------------
# is_equivalent


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("\\frac{1}{2}", "\\dfrac12"),
        ("\\dfrac12", "0.5"),
        ("42", "42"),
        ("42", "42.0"),
        ("1,000", "1000"),
        ("\\frac{3}{7}", "\\frac{6}{14}"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
    ],
)
def test_is_equivalent_true(gold, pred):
    assert is_equivalent(gold, pred)


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ("2", "3"),
        ("\\frac{1}{2}", "\\frac{1}{3}"),
        ("0.5", "5"),
        ("12", "1,2"),
        ("x+1", "x-1"),
    ],
)
def test_is_equivalent_false(gold, pred):
    assert not is_equivalent(gold, pred)


@pytest.mark.parametrize(("gold", "pred"), [(None, None), (None, "1"), ("1", None), (None, "")])
def test_none_is_never_equivalent(gold, pred):
    assert is_equivalent(gold, pred) is False


def _checks_in_this_process(monkeypatch):
    """Route timed checks to the in-process math-verify call (which the tests below replace by fakes)."""
    answers.clear_caches()

    def inline(gold, pred, timeout):
        return math_equivalence._safe_verify(gold, pred)

    monkeypatch.setattr(answers.verify_process, "verify", inline)
    monkeypatch.setattr(answers, "_timed_verdict", inline)


def test_is_equivalent_passes_gold_first(monkeypatch):
    _checks_in_this_process(monkeypatch)
    calls = []

    def fake_verify(gold, pred):
        calls.append((gold, pred))
        return False

    monkeypatch.setattr(math_equivalence, "_verify_uncached_timeout_free", fake_verify)
    assert is_equivalent("GOLD_1", "PRED_2") is False
    assert calls == [("GOLD_1", "PRED_2")]
    # group_equivalent: the class representative (first occurrence) is the gold side.
    calls.clear()
    assert group_equivalent(["first", "second"]) == [0, 1]
    assert calls == [("first", "second")]


def test_is_equivalent_swallows_verify_errors(monkeypatch):
    def broken(gold, pred):
        raise RuntimeError("malformed")

    _checks_in_this_process(monkeypatch)
    monkeypatch.setattr(math_equivalence, "_verify_uncached_timeout_free", broken)
    assert is_equivalent("1", "2") is False
    assert is_equivalent("1", "2", timeout=None) is False


# --------------------------------------------------------------------------------------------------------------
# group_equivalent


def test_group_equivalent_classes():
    got = group_equivalent(["\\frac{1}{2}", "3", None, "0.5", "\\dfrac12", "3", "4", None, "3.0"])
    assert got == [0, 1, None, 0, 0, 1, 2, None, 1]


def test_group_equivalent_numbers_classes_by_first_appearance():
    assert group_equivalent(["9", "8", "9", "7", "8"]) == [0, 1, 0, 2, 1]
    assert group_equivalent([None, "8", None]) == [None, 0, None]


def test_group_equivalent_empty_and_all_none():
    assert group_equivalent([]) == []
    assert group_equivalent([None, None]) == [None, None]


# --------------------------------------------------------------------------------------------------------------
# caching


def _counting_verify(monkeypatch, verdict=False):
    _checks_in_this_process(monkeypatch)
    calls = []

    def fake_verify(gold, pred):
        calls.append((gold, pred))
        return verdict

    monkeypatch.setattr(math_equivalence, "_verify_uncached_timeout_free", fake_verify)
    return calls


def test_identical_normalised_strings_skip_math_verify(monkeypatch):
    calls = _counting_verify(monkeypatch, verdict=False)
    assert is_equivalent("1/2", " 1/2 ")
    assert is_equivalent("\\dfrac{1}{2}", "\\frac{1}{2}")
    assert is_equivalent("$3$", "3.0")
    assert group_equivalent(["3", "3", "3.0", "\\text{3}", "$3$", " 3 "]) == [0] * 6
    assert calls == []


def test_grouping_calls_math_verify_once_per_distinct_pair(monkeypatch):
    calls = _counting_verify(monkeypatch, verdict=False)
    assert group_equivalent(["1", "2", "1", "2", "1", "2.0"]) == [0, 1, 0, 1, 0, 1]
    assert calls == [("1", "2")]


def test_verify_verdicts_are_cached():
    # A pair that normalises differently, so math-verify is really consulted.
    gold, pred = "\\frac{7}{8}", "0.875"
    assert is_equivalent(gold, pred)
    before = answers._timed_verdict.cache_info()
    assert is_equivalent(gold, pred)
    after = answers._timed_verdict.cache_info()
    assert after.hits == before.hits + 1
    assert after.misses == before.misses


# --------------------------------------------------------------------------------------------------------------
# timeout and threads


def test_timeout_counts_as_not_equivalent_and_recovers():
    answers.clear_caches()
    assert is_equivalent("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", timeout=30.0) is True  # process is up
    # sympy multiplies a 370-million-digit integer in one C call that holds the GIL: only a process can stop it.
    start = time.perf_counter()
    assert is_equivalent("5", "9^{9^{9}}", timeout=0.3) is False
    assert time.perf_counter() - start < 2.0

    # The next checks are not queued behind the stuck computation, and math-verify still works.
    start = time.perf_counter()
    assert is_equivalent("\\sqrt{2}", "1.5", timeout=5.0) is False
    assert is_equivalent("2\\sqrt{2}", "\\sqrt{8}", timeout=5.0) is True
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("timeout", [5.0, None])
def test_works_off_the_main_thread(timeout):
    results, errors = [], []

    def work():
        try:
            results.append(
                (
                    is_equivalent("\\frac{2}{5}", "0.4", timeout=timeout),
                    is_equivalent("\\frac{2}{5}", "0.5", timeout=timeout),
                    group_equivalent(["\\frac{3}{5}", "0.6", "7"], timeout=timeout),
                    extract_answer("so \\boxed{0.6}"),
                )
            )
        except Exception as err:  # noqa: BLE001 - re-raised in the main thread
            errors.append(err)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    assert results == [(True, False, [0, 0, 1], "0.6")]


@pytest.mark.parametrize(
    "text",
    [
        "The answer is $\\boxed{}$.",
        "The answer is \\boxed{}",
        "So \\boxed{ }",
        "\\fbox{}",
        "The answer is \\boxed{ }.",
    ],
)
def test_an_empty_box_states_no_answer(text):
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so $\\boxed 7$", "7"),
        ("so \\boxed 42.", "42"),
        ("first $\\boxed 1$, then $\\boxed 12$", "12"),
        ("\\boxed{3} beats a later \\boxed 5", "3"),  # a braced box is preferred
    ],
)
def test_a_braceless_box_is_an_answer(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize(("gold", "pred"), [("\\$18.90", "18.90"), ("\\$36", "36"), ("\\$1,000", "1000")])
def test_an_escaped_dollar_in_the_gold_is_a_currency_sign(gold, pred):
    assert is_equivalent(gold, pred) and is_equivalent(pred, gold)
    assert not is_equivalent(gold, "37")
