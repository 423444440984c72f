"""The numeric fast path of `sasc_ttrl.core.answers` never changes a verdict; `clear_caches` empties the caches.

Reference: math-verify's own ``verify`` on the same parses, with no fast path and no cache.
"""

from __future__ import annotations

import itertools

import pytest

from sasc_ttrl.core import answers, math_equivalence
from sasc_ttrl.core.answers import clear_caches, group_equivalent, is_equivalent

# Numbers in the forms MATH answers take, with near-misses around math-verify's 6-decimal float rounding,
# irrationals, percentages (math-verify: 9% = 9), big integers, complex numbers, infinity.
NUMBERS = [
    "\\frac{1}{2}",
    "0.5",
    "\\frac{1}{3}",
    "0.333333",
    "\\frac{\\sqrt{2}}{2}",
    "\\frac{1}{\\sqrt{2}}",
    "0.707107",
    "\\frac{\\pi}{2}",
    "2",
    "2.0000001",
    "50\\%",
    "50",
    "10^{6}",
    "2\\sqrt{2}",
    "\\sqrt{8}",
    "1+i",
    "\\infty",
]


def reference_verdict(gold: str, pred: str) -> bool:
    """math-verify alone: parse both, verify, no shortcut."""
    from math_verify import verify

    gold_parsed, pred_parsed = math_equivalence._parse(gold), math_equivalence._parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    try:
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
    except Exception:  # noqa: BLE001 - counted as not equivalent, as in math_equivalence._safe_verify
        return False


@pytest.fixture(autouse=True)
def fresh_caches():
    clear_caches()
    yield
    clear_caches()


# Plain rationals (decided in the caller without math-verify) and look-alikes that must be left to math-verify.
RATIONALS = [
    "\\frac{1}{2}",
    "\\dfrac12",
    "\\tfrac{1}{2}",
    ".5",
    "0.50",
    "1/2",
    "\\frac{2}{4}",
    "-\\frac{1}{2}",
    "\\frac{-1}{2}",
    "-0.5",
    "3/8",
    "0.375",
    "\\frac{1}{3}",
    "0.333333",
    "0.3333334",
    "7",
    "7.",
    "$7$",
    "-7",
    "1,000",
    "1000",
    "\\frac{2000}{2}",
    "\\text{5}",
    "5",
    "\\frac{1}{0}",
    "50\\%",
    "\\frac{1}{2}x",
]


def test_rational_fast_path_agrees_with_math_verify_on_every_pair():
    decided = 0
    for gold, pred in itertools.permutations(RATIONALS, 2):
        expected = reference_verdict(gold, pred)
        verdict = answers._rational_verdict(gold, pred)
        if verdict is not None:
            decided += 1
            assert verdict is expected, f"fast path says {verdict} on {gold!r} vs {pred!r}, math-verify {expected}"
            assert is_equivalent(gold, pred) is expected  # the timed path, where the fast path runs
        assert is_equivalent(gold, pred, timeout=None) is expected, (gold, pred)
    assert decided > len(RATIONALS) * 4  # the fast path really decides most pairs of plain rationals
    assert answers._rational_verdict("\\frac{1}{3}", "0.333333") is None  # within math-verify's rounding
    assert answers._plain_rational("1,000") is None and answers._plain_rational("\\text{5}") is None


def test_rational_fast_path_skips_the_verify_process(monkeypatch):
    def no_process(*args):
        raise AssertionError("a plain-rational pair went to the verify process")

    monkeypatch.setattr(answers.verify_process, "verify", no_process)
    assert is_equivalent("\\dfrac12", "0.5") is True
    assert is_equivalent("\\frac{1}{3}", "2") is False
    assert group_equivalent(["1/2", "0.5", "3", "\\frac{6}{2}", None, "-3"]) == [0, 0, 1, 1, None, 2]


def test_numeric_fast_path_agrees_with_math_verify_on_every_pair():
    shortcuts = 0
    for gold, pred in itertools.permutations(NUMBERS, 2):
        expected = reference_verdict(gold, pred)
        if math_equivalence._numbers_clearly_differ(math_equivalence._parse(gold), math_equivalence._parse(pred)):
            shortcuts += 1
            assert expected is False, f"fast path says {gold!r} != {pred!r}, math-verify says equal"
        assert is_equivalent(gold, pred, timeout=None) is expected, (gold, pred)
    # The fast path must actually fire on this corpus, or the test proves nothing.
    assert shortcuts > len(NUMBERS)


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ("\\frac{1}{3}", "0.333333"),  # math-verify's float rounding: equal
        ("9\\%", "9"),  # percentages compare by value
        ("x = \\frac{1}{2}", "0.5"),  # relations are never short-cut
        ("\\{1, 2\\}", "\\{2, 1\\}"),  # sets
    ],
)
def test_fast_path_leaves_lenient_cases_to_math_verify(gold, pred):
    assert not math_equivalence._numbers_clearly_differ(math_equivalence._parse(gold), math_equivalence._parse(pred))
    assert is_equivalent(gold, pred, timeout=None) is reference_verdict(gold, pred)


def test_clear_caches_gives_the_same_classes_cold_and_warm():
    group = [
        "\\frac{1}{2}",
        "0.5",
        "\\frac{\\sqrt{2}}{2}",
        "\\frac{1}{\\sqrt{2}}",
        "\\text{(B)}",
        None,
        "\\frac{1}{",
        "2",
    ]
    cold = group_equivalent(group)
    assert answers._timed_verdict.cache_info().currsize > 0  # timed checks run in the verify process
    warm = group_equivalent(group)
    clear_caches()
    assert answers._timed_verdict.cache_info().currsize == 0
    assert math_equivalence._verify_uncached_timeout_free.cache_info().currsize == 0
    assert math_equivalence._parse.cache_info().currsize == 0
    assert cold == warm == group_equivalent(group) == [0, 0, 1, 1, 2, None, 3, 4]
