"""Majority vote and the stability-aware vote (sasc_ttrl.core.voting), checked against docs/method.md steps 3-6."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sasc_ttrl.core.voting import majority_vote, sasc_vote


def _z(values: list[float]) -> list[float]:
    """docs/method.md step 3, written out independently of the library."""
    mean, std = statistics.fmean(values), statistics.pstdev(values)
    if std == 0:
        return [0.0] * len(values)
    return [(v - mean) / (std + 1e-6) for v in values]


# --------------------------------------------------------------------------------------------------------------
# Hand-computed cases


def test_stability_weighting_overturns_the_majority():
    answers = ["7", "7", "9", "9", "9"]
    s = [0.1, 0.1, 0.5, 0.6, 1.0]
    # m = 5, floor(0.2 * 5) = 1 dropped: rollout 4 (s = 1.0, the largest).
    # mean 0.46, population std sqrt(0.572 / 5) = 0.33823; z = [-1.0644, -1.0644, 0.1183, 0.4139, 1.5965].
    # Weights: "7": 2 * exp(1.0644) = 5.798; "9": exp(-0.1183) + exp(-0.4139) = 0.8885 + 0.6611 = 1.5496.
    result = sasc_vote(answers, s, vote_weighting="exp")
    z = _z(s)
    assert z == pytest.approx([-1.0644, -1.0644, 0.1183, 0.4139, 1.5965], abs=1e-4)
    assert result.zscores == pytest.approx(z, abs=1e-12)
    assert result.kept == [True, True, True, True, False]
    assert result.weights == pytest.approx([math.exp(-zi) for zi in z[:4]] + [0.0], abs=1e-12)
    assert result.weights[:4] == pytest.approx([2.899, 2.899, 0.8885, 0.6611], abs=1e-3)
    assert result.classes == [0, 0, 1, 1, 1]
    assert result.class_answers == ["7", "9"]
    assert result.pseudo_label == "7"
    assert result.label_class == 0
    assert result.rewards == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert result.majority_ratio == pytest.approx(2 / 5)
    # The plain majority disagrees.
    majority = majority_vote(answers)
    assert majority.pseudo_label == "9"
    assert majority.rewards == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert majority.majority_ratio == pytest.approx(3 / 5)
    # So does the gate with uniform weights (2 kept "9" vs 2 "7": a tie in weight and count, earliest kept wins).
    uniform = sasc_vote(answers, s, vote_weighting="uniform")
    assert uniform.weights == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert uniform.pseudo_label == "7"


def test_dropped_rollouts_that_agree_are_rewarded():
    answers = ["4", "4", "4", "6", "6"]
    s = [0.9, 0.1, 0.2, 0.3, 0.4]
    # Rollout 0 is the least stable and is dropped; z = [1.8667, -1.0051, -0.6462, -0.2872, 0.0718].
    # "4": exp(1.0051) + exp(0.6462) = 4.6405, "6": exp(0.2872) + exp(-0.0718) = 2.2634.
    result = sasc_vote(answers, s, vote_weighting="exp")
    assert result.kept == [False, True, True, True, True]
    assert result.weights[0] == 0.0
    assert result.zscores[0] == pytest.approx(1.8667, abs=1e-4)  # dropped rollouts still have a z-score
    assert result.weights[1:] == pytest.approx([2.7323, 1.9082, 1.3327, 0.9307], abs=1e-3)
    assert result.pseudo_label == "4"
    assert result.rewards == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_no_answer_rollouts_are_excluded_from_z_and_m():
    # n = 10 rollouts, m = 5 answered. The gate drops floor(0.2 * 5) = 1 (not floor(0.2 * 10) = 2), and the
    # huge instabilities of the silent rollouts play no part in the z-scores.
    answers = ["2", None, "3", None, "2", None, "3", None, "3", None]
    s = [0.2, 100.0, 0.4, 100.0, 0.2, 100.0, 0.5, 100.0, 0.9, 100.0]
    result = sasc_vote(answers, s)
    answered = [0, 2, 4, 6, 8]
    z = _z([s[i] for i in answered])
    assert z == pytest.approx([-0.9314, -0.1552, -0.9314, 0.2328, 1.7851], abs=1e-4)
    for i, zi in zip(answered, z):
        assert result.zscores[i] == pytest.approx(zi, abs=1e-12)
    assert all(result.zscores[i] is None for i in range(1, 10, 2))
    assert sum(result.kept) == 4
    assert result.kept == [True, False, True, False, True, False, True, False, False, False]
    assert all(result.weights[i] == 0.0 for i in range(1, 10, 2))
    # "2": 2 * exp(0.9314) = 5.076 beats "3": exp(0.1552) + exp(-0.2328) = 1.960, against the 3-2 majority.
    assert result.pseudo_label == "2"
    assert result.rewards == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert result.majority_ratio == pytest.approx(2 / 10)
    # Silent rollouts may carry any instability, even NaN.
    nan = sasc_vote(answers, [x if x != 100.0 else float("nan") for x in s])
    assert nan.rewards == result.rewards
    assert nan.weights == pytest.approx(result.weights)


def test_weight_temperature():
    answers = ["7", "7", "9", "9", "9"]
    s = [0.1, 0.1, 0.5, 0.6, 1.0]
    z = _z(s)
    result = sasc_vote(answers, s, weight_temperature=2.0, vote_weighting="exp")
    assert result.weights == pytest.approx([math.exp(-zi / 2.0) for zi in z[:4]] + [0.0], abs=1e-12)
    # A very high temperature flattens the weights towards 1 (the gate still applies).
    flat = sasc_vote(answers, s, weight_temperature=1e6, vote_weighting="exp")
    assert flat.weights == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.0], abs=1e-5)
    # A low one sharpens them: the most stable class wins by far.
    sharp = sasc_vote(answers, s, weight_temperature=0.1, vote_weighting="exp")
    assert sharp.pseudo_label == "7"
    assert sharp.weights[0] == pytest.approx(math.exp(-z[0] / 0.1))
    assert sharp.weights[0] > 1000 * sharp.weights[2]


def test_gate_without_weights_can_also_decide():
    # Plain majority "9" (3 vs 2); the gate removes the least stable "9" and the earliest kept rollout is "7".
    answers = ["9", "7", "7", "9", "9"]
    s = [1.0, 0.1, 0.1, 0.5, 0.6]
    assert majority_vote(answers).pseudo_label == "9"
    assert sasc_vote(answers, s, filter_ratio=0.0, vote_weighting="uniform").pseudo_label == "9"
    uniform = sasc_vote(answers, s, vote_weighting="uniform")
    assert uniform.kept == [False, True, True, True, True]
    assert uniform.pseudo_label == "7"
    assert uniform.rewards == [0.0, 1.0, 1.0, 0.0, 0.0]


def test_gate_ties_drop_the_later_rollout():
    answers = ["1", "2", "3", "4", "5"]
    result = sasc_vote(answers, [0.5] * 5)
    assert result.kept == [True, True, True, True, False]
    assert result.zscores == [0.0] * 5
    assert result.weights == [1.0, 1.0, 1.0, 1.0, 0.0]
    # Four single-rollout classes tie on weight and count: the earliest wins.
    assert result.pseudo_label == "1"
    assert result.rewards == [1.0, 0.0, 0.0, 0.0, 0.0]

    tied_top = sasc_vote(["1", "2", "3", "4", "5"], [0.1, 0.9, 0.2, 0.9, 0.3])
    assert tied_top.kept == [True, True, True, False, True]


def test_weight_tie_goes_to_the_larger_count():
    # One "A" rollout at s=0 and two "B" rollouts at s=t have z = [-sqrt(2), 1/sqrt(2), 1/sqrt(2)] (up to eps).
    # With T = (z_B - z_A) / ln 2, exp(-z_A / T) = 2 exp(-z_B / T): the classes tie on weight, "B" has 2 votes.
    s = [0.0, 1.0, 1.0]
    z = _z(s)
    temperature = (z[1] - z[0]) / math.log(2)
    result = sasc_vote(["A", "B", "B"], s, weight_temperature=temperature, vote_weighting="exp")
    assert all(result.kept)  # floor(0.2 * 3) = 0
    assert round(result.weights[0], 9) == round(result.weights[1] + result.weights[2], 9)
    assert result.pseudo_label == "B"
    assert result.rewards == [0.0, 1.0, 1.0]
    # Slightly colder: "A" (the most stable) wins on weight alone.
    assert (
        sasc_vote(["A", "B", "B"], s, weight_temperature=temperature * 0.9, vote_weighting="exp").pseudo_label == "A"
    )


def test_weight_and_count_tie_goes_to_the_earliest():
    s = [0.1, 0.3, 0.1, 0.3]  # z ~ [-1, 1, -1, 1]: both classes weigh e + 1/e, two votes each
    first = sasc_vote(["5", "6", "5", "6"], s, filter_ratio=0.0)
    assert first.pseudo_label == "5"
    assert first.rewards == [1.0, 0.0, 1.0, 0.0]
    second = sasc_vote(["6", "5", "5", "6"], [0.1, 0.3, 0.1, 0.3], filter_ratio=0.0)
    # "6": e + 1/e (rollouts 0, 3), "5": 1/e + e (rollouts 1, 2): a tie; "6" comes first.
    assert second.pseudo_label == "6"
    assert second.rewards == [1.0, 0.0, 0.0, 1.0]


def test_at_least_one_rollout_is_kept():
    answers = ["3", "4", "4"]
    result = sasc_vote(answers, [0.2, 0.5, 0.6], filter_ratio=0.99)  # floor(0.99 * 3) = 2 dropped
    assert result.kept == [True, False, False]
    assert result.pseudo_label == "3"
    assert result.rewards == [1.0, 0.0, 0.0]
    single = sasc_vote([None, "8", None], [0.0, 0.7, 0.0], filter_ratio=0.99)
    assert single.kept == [False, True, False]
    assert single.pseudo_label == "8"
    assert single.rewards == [0.0, 1.0, 0.0]


def test_equivalent_answers_share_a_class():
    answers = ["\\frac{1}{2}", "0.5", "3", "\\dfrac12", "3"]
    result = sasc_vote(answers, [0.1, 0.2, 0.3, 0.4, 0.5], filter_ratio=0.0, vote_weighting="uniform")
    assert result.classes == [0, 0, 1, 0, 1]
    assert result.pseudo_label == "\\frac{1}{2}"  # the class representative: its first answer
    assert result.rewards == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert majority_vote(answers).rewards == [1.0, 1.0, 0.0, 1.0, 0.0]


def test_all_answers_none():
    result = sasc_vote([None, None, None], [0.1, 0.2, 0.3])
    assert result.pseudo_label is None
    assert result.label_class is None
    assert result.rewards == [0.0, 0.0, 0.0]
    assert result.kept == [False, False, False]
    assert result.weights == [0.0, 0.0, 0.0]
    assert result.majority_ratio == 0.0
    majority = majority_vote([None, None])
    assert majority.pseudo_label is None
    assert majority.rewards == [0.0, 0.0]
    assert majority.majority_ratio == 0.0


def test_empty_group():
    assert sasc_vote([], []).rewards == []
    assert majority_vote([]).pseudo_label is None


def test_majority_vote_hand_case():
    result = majority_vote(["5", None, "6", "6", "5", None])
    # Tie 2-2: the class whose first answer comes earliest ("5") wins.
    assert result.pseudo_label == "5"
    assert result.rewards == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert result.kept == [True, False, True, True, True, False]
    assert result.weights == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    assert result.zscores == [0.0, None, 0.0, 0.0, 0.0, None]
    assert result.majority_ratio == pytest.approx(2 / 6)


def test_precomputed_classes_are_used():
    # Classes given by the caller are trusted (no math-verify call): "1" and "2" put together.
    result = sasc_vote(["1", "2", "3"], [0.1, 0.2, 0.3], classes=[0, 0, 1], filter_ratio=0.0)
    assert result.pseudo_label == "1"
    assert result.rewards == [1.0, 1.0, 0.0]
    assert majority_vote(["1", "2", "3"], classes=[0, 0, 1]).rewards == [1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"instabilities": [0.1, 0.2]}, "instabilities"),
        ({"filter_ratio": 1.0}, "filter_ratio"),
        ({"filter_ratio": -0.1}, "filter_ratio"),
        ({"weight_temperature": 0.0}, "weight_temperature"),
        ({"weight_temperature": -1.0}, "weight_temperature"),
        ({"vote_weighting": "linear"}, "vote_weighting"),
        ({"instabilities": [0.1, float("nan"), 0.3]}, "finite"),
        ({"instabilities": [0.1, float("inf"), 0.3]}, "finite"),
    ],
)
def test_invalid_arguments(kwargs, match):
    args = {"answers": ["1", "2", "3"], "instabilities": [0.1, 0.2, 0.3], **kwargs}
    with pytest.raises(ValueError, match=match):
        sasc_vote(**args)


# --------------------------------------------------------------------------------------------------------------
# Properties

ANSWER = st.one_of(st.none(), st.sampled_from(["1", "2", "3", "4"]))
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def groups(draw, min_size=1, max_size=9, distinct=False):
    n = draw(st.integers(min_size, max_size))
    answers = draw(st.lists(ANSWER, min_size=n, max_size=n))
    if distinct:
        ints = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n, unique=True))
    else:
        ints = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))
    return answers, [i / 100 for i in ints]


def _class_totals(result):
    totals = {}
    for c, w, k in zip(result.classes, result.weights, result.kept):
        if k:
            totals[c] = totals.get(c, 0.0) + w
    return sorted(totals.values(), reverse=True)


@PROPERTY_SETTINGS
@given(group=groups(distinct=True), data=st.data())
def test_permuting_a_group_permutes_the_rewards(group, data):
    answers, s = group
    perm = data.draw(st.permutations(range(len(answers))))
    result = sasc_vote(answers, s)
    totals = _class_totals(result)
    # A tie between classes is broken by position, which a permutation may change.
    assume(len(totals) < 2 or round(totals[0], 9) != round(totals[1], 9))
    permuted = sasc_vote([answers[i] for i in perm], [s[i] for i in perm])
    assert permuted.rewards == [result.rewards[i] for i in perm]
    assert permuted.kept == [result.kept[i] for i in perm]
    assert permuted.weights == pytest.approx([result.weights[i] for i in perm], abs=1e-9)
    assert permuted.pseudo_label == result.pseudo_label


@PROPERTY_SETTINGS
@given(group=groups())
def test_no_gate_uniform_weights_is_the_majority_vote(group):
    answers, s = group
    sasc = sasc_vote(answers, s, filter_ratio=0.0, vote_weighting="uniform")
    majority = majority_vote(answers)
    assert sasc.label_class == majority.label_class
    assert sasc.pseudo_label == majority.pseudo_label
    assert sasc.rewards == majority.rewards
    assert sasc.kept == [a is not None for a in answers]


@PROPERTY_SETTINGS
@given(
    group=groups(),
    filter_ratio=st.sampled_from([0.0, 0.2, 0.5, 0.9]),
    vote_weighting=st.sampled_from(["exp", "uniform"]),
    temperature=st.sampled_from([0.5, 1.0, 3.0]),
)
def test_vote_invariants(group, filter_ratio, vote_weighting, temperature):
    answers, s = group
    result = sasc_vote(
        answers, s, filter_ratio=filter_ratio, vote_weighting=vote_weighting, weight_temperature=temperature
    )
    n = len(answers)
    m = sum(a is not None for a in answers)
    assert len(result.rewards) == len(result.kept) == len(result.weights) == len(result.zscores) == n
    assert all(r in (0.0, 1.0) for r in result.rewards)
    assert not any(math.isnan(w) for w in result.weights)
    assert 0.0 <= result.majority_ratio <= 1.0
    if m == 0:
        assert result.pseudo_label is None
        assert result.rewards == [0.0] * n
        return
    assert result.pseudo_label in answers
    # The gate keeps m - floor(filter_ratio * m) answered rollouts, never fewer than one.
    assert sum(result.kept) == m - math.floor(filter_ratio * m) >= 1
    # Every kept rollout is at least as stable as every dropped answered one.
    kept_s = [x for x, k in zip(s, result.kept) if k]
    dropped_s = [x for x, k, a in zip(s, result.kept, answers) if a is not None and not k]
    assert not dropped_s or max(kept_s) <= min(dropped_s)
    for a, r, c, k, w in zip(answers, result.rewards, result.classes, result.kept, result.weights):
        if a is None:
            assert (r, c, k, w) == (0.0, None, False, 0.0)
        else:
            assert r == (1.0 if c == result.label_class else 0.0)
            assert (w > 0) == k
    assert result.majority_ratio == pytest.approx(sum(result.rewards) / n)
    # The winner has the largest total weight.
    assert _class_totals(result)[0] == pytest.approx(
        sum(w for c, w in zip(result.classes, result.weights) if c == result.label_class)
    )


def test_caller_supplied_classes_need_not_be_contiguous():
    """A subset of a question's samples keeps the question-wide class ids (e.g. 1 and 3, no 0 or 2)."""
    answers = ["7", "8", "7"]
    classes = [3, 1, 3]
    majority = majority_vote(answers, classes=classes)
    assert majority.label_class == 3 and majority.pseudo_label == "7"
    assert majority.rewards == [1.0, 0.0, 1.0]
    weighted = sasc_vote(answers, [0.1, 0.5, 0.2], filter_ratio=0.0, classes=classes)
    assert weighted.pseudo_label == "7"
