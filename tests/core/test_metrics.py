"""pass@k against its closed form; maj@k, sasc@k and avg@n on hand-made samples."""

from __future__ import annotations

import math
import random

import pytest

from sasc_ttrl.core.metrics import avg_at_n, maj_at_k, mean_metrics, pass_at_k, question_metrics, vote_at_k
from sasc_ttrl.core.voting import VoteSettings


def closed_form(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_matches_closed_form_on_random_cases():
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(1, 64)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        assert pass_at_k(n, c, k) == pytest.approx(closed_form(n, c, k), abs=1e-12), (n, c, k)


@pytest.mark.parametrize("n", [1, 2, 5, 16, 64])
def test_pass_at_k_edge_cases(n):
    for k in range(1, n + 1):
        assert pass_at_k(n, 0, k) == 0.0  # c = 0
        assert pass_at_k(n, n, k) == 1.0  # c = n
        for c in range(n - k + 1, n + 1):  # n - c < k: every draw of k holds a correct sample
            assert pass_at_k(n, c, k) == 1.0
    assert pass_at_k(n, 1, 1) == pytest.approx(1 / n)


def test_pass_at_k_is_stable_for_large_n():
    # C(1000, 500) overflows a float; the product form does not need it.
    n, c, k = 1000, 3, 500
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # exact integer ratio, then one rounding
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_invalid_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_avg_at_n():
    assert avg_at_n([True, False, True, True]) == 0.75
    assert avg_at_n([None, True]) == 0.5  # an ungraded sample counts as wrong
    assert avg_at_n([]) == 0.0


# Eight samples of one question whose answer is 1.
ANSWERS = ["1", "1", "2", None, "2", "3", "3", "2"]
CORRECT = [a == "1" for a in ANSWERS]


def test_maj_at_k_over_disjoint_blocks():
    assert maj_at_k(ANSWERS, CORRECT, 1) == avg_at_n(CORRECT) == 0.25
    # Blocks of 4: [1, 1, 2, -] -> 1 (right); [2, 3, 3, 2] -> tie, the earliest class (2) wins (wrong).
    assert maj_at_k(ANSWERS, CORRECT, 4) == 0.5
    # Blocks of 3 (the last two samples unused): [1, 1, 2] -> right; [-, 2, 3] -> tie -> 2 (wrong).
    assert maj_at_k(ANSWERS, CORRECT, 3) == 0.5
    # One block of 8: 2 has three votes.
    assert maj_at_k(ANSWERS, CORRECT, 8) == 0.0
    # Blocks of 2: [1, 1] right, [2, -] wrong, [2, 3] wrong, [3, 2] wrong.
    assert maj_at_k(ANSWERS, CORRECT, 2) == 0.25


def test_maj_at_k_groups_equivalent_answers_and_scores_unanswered_blocks_zero():
    answers = ["0.5", "\\frac{1}{2}", "3", None, None, None]
    correct = [True, True, False, False, False, False]
    assert maj_at_k(answers, correct, 3) == 0.5  # [0.5, 1/2, 3] -> 1/2 wins; [-, -, -] -> no vote
    with pytest.raises(ValueError):
        maj_at_k(answers, correct, 7)


def _with_std(std: float) -> list[float]:
    """An entropy sequence whose population std is ``std``."""
    return [1.0 - std, 1.0 + std]


def test_sasc_vote_at_k_uses_the_stability_of_each_sample():
    # Two stable samples answer 1 (right); three unstable ones answer 2. Majority: 2. SASC: the gate drops the
    # least stable sample and the weights exp(-z) favour the stable pair.
    answers = ["1", "2", "1", "2", "2"]
    correct = [True, False, True, False, False]
    entropies = [_with_std(s) for s in (0.1, 0.9, 0.1, 0.95, 1.0)]
    assert vote_at_k(answers, correct, 5, method="majority") == maj_at_k(answers, correct, 5) == 0.0
    assert vote_at_k(answers, correct, 5, method="sasc", entropies=entropies) == 1.0
    # Equal weights and no gate: the stability-aware vote is the majority vote.
    uniform = vote_at_k(
        answers, correct, 5, method="sasc", entropies=entropies, settings=VoteSettings(0.0, vote_weighting="uniform")
    )
    assert uniform == 0.0
    with pytest.raises(ValueError):
        vote_at_k(answers, correct, 5, method="sasc")  # no instabilities
    with pytest.raises(ValueError):
        vote_at_k(answers, correct, 5, method="best")


def test_question_metrics_and_mean():
    entropies = [_with_std(s) for s in (0.1, 0.1, 0.5, 0.0, 0.6, 0.9, 0.9, 0.4)]
    metrics = question_metrics(ANSWERS, CORRECT, entropies, [1, 2, 4, 8])
    assert metrics["avg@8"] == metrics["pass@1"] == 0.25
    assert metrics["pass@8"] == 1.0
    assert metrics["pass@2"] == pytest.approx(closed_form(8, 2, 2))
    assert metrics["maj@4"] == 0.5
    assert set(metrics) == {"avg@8"} | {f"{m}@{k}" for m in ("pass", "maj", "sasc") for k in (1, 2, 4, 8)}
    assert mean_metrics([{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 0.5}]) == {"a": 0.5, "b": 0.25}
    assert mean_metrics([]) == {}
