"""Evaluation metrics over the ``n`` samples of one question: pass@k, maj@k, vote@k, avg@n.

All functions are pure: they take plain lists (answers, correctness flags, instabilities) and return floats. A
benchmark's score is the mean of its questions' scores ([`mean_metrics`], [`benchmark_metrics`] for a samples
file's lines). Calibration of confidences: [`expected_calibration_error`], [`brier_score`], [`auroc`].

* **pass@k** is the unbiased estimator of Chen et al. (2021), ``1 - C(n-c, k) / C(n, k)``, computed in the
  numerically stable product form ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``.
* **avg@n** is the mean correctness of the ``n`` samples (TTRL's "pass@1", e.g. avg@16 at temperature 0.6). It
  equals pass@1.
* **maj@k** and **vote@k** are estimated over **disjoint blocks**: the ``n`` samples are cut, in sampling order,
  into ``n // k`` blocks of ``k`` consecutive samples (the last ``n mod k`` samples are left out); each block votes
  and the score is the share of blocks whose winning answer is correct. Samples are i.i.d., so every block is an
  independent draw of ``k`` samples and the block mean is an unbiased estimate of the accuracy of a ``k``-sample
  vote; it is deterministic, and the majority and the stability-aware vote are compared on *the same* blocks, so
  their difference is a paired one. ``maj@k`` is the plain majority vote of [`voting.majority_vote`] (TTRL's
  baseline), ``sasc@k`` the vote of [`voting.stability_vote`] -- the very functions the trainer's reward calls.

Equivalence classes are computed once per question over all ``n`` answers (``answers.group_equivalent``) and
renumbered inside each block, so math-verify runs once per distinct pair of answers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .answers import DEFAULT_TIMEOUT_SECONDS, group_equivalent
from .voting import VoteSettings, majority_vote, stability_vote

logger = logging.getLogger(__name__)


VOTE_METHODS = ("majority", "sasc")
MAJ_AT_K_DEFINITION = (
    "maj@k and sasc@k: the n samples are split in sampling order into n // k disjoint blocks of k samples (the last "
    "n mod k are unused); each block votes; the score is the share of blocks whose winning answer is correct."
)


def default_k_list(n: int) -> list[int]:
    """The k of pass@k / maj@k reported by default: the powers of two up to ``n``, and ``n``."""
    return sorted({2**i for i in range(n.bit_length()) if 2**i <= n} | {n})


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one question: the probability that at least one of ``k`` samples drawn without
    replacement from the ``n`` generated ones is correct, ``1 - C(n-c, k) / C(n, k)``.

    Args:
        n: Number of samples generated.
        c: Number of correct samples, ``0 <= c <= n``.
        k: Number of samples drawn, ``1 <= k <= n``.

    Returns:
        The estimate, in ``[0, 1]``; exactly ``1.0`` when ``n - c < k`` and exactly ``0.0`` when ``c == 0``.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def auroc(confidences: Sequence[float], correct: Sequence[bool]) -> float | None:
    """Probability that a random correct item gets a higher confidence than a random incorrect one (ties count
    half): how well the confidence *ranks*, which calibration alone does not measure. ``None`` without both kinds."""
    p = np.asarray(confidences, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    if p.shape != y.shape:
        raise ValueError(f"need as many confidences as outcomes (got {p.size} and {y.size})")
    pos, neg = p[y], p[~y]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def within_group_auroc(groups: Iterable[tuple[Sequence[float], Sequence[bool]]]) -> tuple[float | None, int]:
    """AUROC over the (correct, incorrect) pairs *of the same group* (question), pooled over groups, and the number
    of such pairs: how well a score ranks the candidates of one question, whatever its scale across questions.
    ``(None, 0)`` when no group has both kinds."""
    wins = pairs = 0.0
    for scores, correct in groups:
        a = auroc(scores, correct)
        if a is not None:
            n_right = int(np.sum(np.asarray(correct, dtype=bool)))
            n = n_right * (len(correct) - n_right)
            wins += a * n
            pairs += n
    return (wins / pairs if pairs else None), int(pairs)


def avg_at_n(correct: Sequence[bool | None]) -> float:
    """Mean correctness of the samples (``None``, an unchecked sample, counts as wrong); 0.0 for no samples."""
    if len(correct) == 0:
        return 0.0
    return sum(bool(c) for c in correct) / len(correct)


def _blocks(n: int, k: int) -> list[range]:
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    return [range(start, start + k) for start in range(0, n - k + 1, k)]


def renumber_classes(classes: Sequence[int | None]) -> list[int | None]:
    """Renumber class ids in order of first appearance (the votes index their classes that way)."""
    mapping: dict[int, int] = {}
    return [None if c is None else mapping.setdefault(c, len(mapping)) for c in classes]


def vote_at_k(
    answers: Sequence[str | None],
    correct: Sequence[bool | None],
    k: int,
    method: str = "sasc",
    entropies: Sequence[Sequence[float]] | None = None,
    settings: VoteSettings | None = None,
    classes: Sequence[int | None] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> float:
    """Accuracy of a ``k``-sample vote, averaged over the disjoint blocks of ``k`` samples (see the module doc).

    A block's vote is correct when its pseudo-label (the first answer of the winning class in the block) is a
    correct sample; a block where no sample answered scores 0.

    Args:
        answers: Extracted answer of each sample (``None`` when there is none), in sampling order.
        correct: Whether each sample is correct (``None`` counts as wrong).
        k: Number of samples per vote.
        method: ``"majority"`` ([`voting.majority_vote`]) or ``"sasc"`` ([`voting.stability_vote`]).
        entropies: Top-k entropy sequence of each sample; required by ``"sasc"``.
        settings: The stability-aware vote's settings (``"sasc"``; defaults to [`voting.VoteSettings`]()).
        classes: Equivalence classes of all ``n`` answers; computed when omitted.
        timeout: Per-check math-verify timeout.

    Returns:
        The share of blocks whose vote is correct.
    """
    if method not in VOTE_METHODS:
        raise ValueError(f"method must be one of {VOTE_METHODS}, got {method!r}")
    if len(correct) != len(answers):
        raise ValueError(f"got {len(answers)} answers but {len(correct)} correctness flags")
    if method == "sasc" and (entropies is None or len(entropies) != len(answers)):
        raise ValueError("the sasc vote needs one entropy sequence per answer")
    classes = list(classes) if classes is not None else group_equivalent(answers, timeout=timeout)
    hits = []
    for block in _blocks(len(answers), k):
        block_answers = [answers[i] for i in block]
        block_classes = renumber_classes([classes[i] for i in block])
        if method == "majority":
            vote = majority_vote(block_answers, classes=block_classes)
        else:
            vote = stability_vote(
                block_answers,
                [entropies[i] for i in block],  # type: ignore[index]
                settings,
                classes=block_classes,
            )
        if vote.label_class is None:
            hits.append(False)
            continue
        winner = next(j for j, c in enumerate(block_classes) if c == vote.label_class)
        hits.append(bool(correct[block[winner]]))
    return sum(hits) / len(hits)


def maj_at_k(
    answers: Sequence[str | None],
    correct: Sequence[bool | None],
    k: int,
    classes: Sequence[int | None] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> float:
    """maj@k: accuracy of a plain majority vote over ``k`` samples, averaged over disjoint blocks.

    The same as ``vote_at_k(..., method="majority")``; see the module doc for the block definition.
    """
    return vote_at_k(answers, correct, k, method="majority", classes=classes, timeout=timeout)


def question_metrics(
    answers: Sequence[str | None],
    correct: Sequence[bool | None],
    entropies: Sequence[Sequence[float]],
    k_list: Iterable[int],
    settings: VoteSettings | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, float]:
    """Every metric of one question: ``avg@n``, and ``pass@k``, ``maj@k``, ``sasc@k`` for each ``k``.

    Returns:
        A flat dict, e.g. ``{"avg@4": 0.5, "pass@1": 0.5, "maj@1": 0.5, "sasc@1": 0.5, "pass@4": 1.0, ...}``.
    """
    n = len(answers)
    classes = group_equivalent(answers, timeout=timeout)
    c = sum(bool(x) for x in correct)
    result = {f"avg@{n}": avg_at_n(correct)}
    for k in k_list:
        result[f"pass@{k}"] = pass_at_k(n, c, k)
        result[f"maj@{k}"] = maj_at_k(answers, correct, k, classes=classes)
        result[f"sasc@{k}"] = vote_at_k(
            answers,
            correct,
            k,
            method="sasc",
            entropies=entropies,
            settings=settings,
            classes=classes,
        )
    return result


def bootstrap_ci(
    per_question: Sequence[Mapping[str, float]], samples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, list[float]]:
    """A percentile bootstrap interval over questions for the mean of every metric: ``{metric: [low, high]}``.

    Questions are resampled with replacement ``samples`` times (seeded: the same lines give the same interval).
    """
    if not per_question:
        return {}
    keys = list(per_question[0])
    table = np.array([[q[k] for k in keys] for q in per_question], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_question), size=(samples, len(per_question)))
    means = table[idx].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)
    return {k: [float(lo), float(hi)] for k, lo, hi in zip(keys, low, high)}


def mean_metrics(per_question: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over questions (keys of the first question; every question must have them)."""
    if not per_question:
        return {}
    return {key: math.fsum(q[key] for q in per_question) / len(per_question) for key in per_question[0]}


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], num_bins: int = 10) -> float:
    """ECE: over ``num_bins`` equal-width confidence bins (the last one closed), the sample-weighted mean of
    |accuracy - mean confidence|."""
    p = np.asarray(confidences, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if p.shape != y.shape or p.size == 0:
        raise ValueError(f"need as many confidences as outcomes (got {p.size} and {y.size}), at least one")
    bins = np.minimum((p * num_bins).astype(int), num_bins - 1)
    ece = 0.0
    for b in range(num_bins):
        members = bins == b
        if members.any():
            ece += members.mean() * abs(y[members].mean() - p[members].mean())
    return float(ece)


def brier_score(confidences: Sequence[float], correct: Sequence[bool]) -> float:
    """Mean squared difference between confidence and outcome (1 correct, 0 not)."""
    p = np.asarray(confidences, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    if p.shape != y.shape or p.size == 0:
        raise ValueError(f"need as many confidences as outcomes (got {p.size} and {y.size}), at least one")
    return float(np.mean((p - y) ** 2))


def benchmark_metrics(
    lines: Sequence[Mapping[str, Any]], n: int, k_list: Sequence[int], settings: VoteSettings | None = None
) -> dict[str, Any]:
    """Mean over questions of [`question_metrics`], plus the answer rate, mean completion length, and a 95% bootstrap
    interval over questions for every metric (``ci95``, see [`bootstrap_ci`]).

    Args:
        lines: The lines of a samples file (one per question; ``samples`` holds dicts with ``answer``,
            ``correct``, ``entropies`` and ``token_ids``).
        n: Samples per question.
        k_list: The k of pass@k / maj@k / sasc@k.
        settings: The stability-aware vote of sasc@k (default: ``VoteSettings()``).
    """
    per_question = []
    answered = tokens = count = 0
    for line in lines:
        samples = line["samples"]
        per_question.append(
            question_metrics(
                [s["answer"] for s in samples],
                [s["correct"] for s in samples],
                [s["entropies"] for s in samples],
                k_list,
                settings=settings,
            )
        )
        answered += sum(s["answer"] is not None for s in samples)
        tokens += sum(len(s["token_ids"]) for s in samples)
        count += len(samples)
    return {
        "num_questions": len(lines),
        "n": n,
        "k_list": list(k_list),
        "answer_rate": answered / max(count, 1),
        "mean_completion_tokens": tokens / max(count, 1),
        **mean_metrics(per_question),
        "ci95": bootstrap_ci(per_question),
    }
