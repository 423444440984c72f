"""Votes over a group of rollouts: plain majority (TTRL) and the stability-aware vote (DESIGN.md steps 3-6).

Both return a [`VoteResult`] with the pseudo-label, the equivalence classes, the weights, which rollouts were
kept by the gate, and the per-rollout rewards. They are pure functions of the answers and instabilities; the
online reward, the offline selection pipeline and the evaluator all call them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .answers import DEFAULT_TIMEOUT_SECONDS, group_equivalent
from .stability import zscore

WEIGHTINGS = ("exp", "uniform")


@dataclass
class VoteResult:
    """Outcome of a vote over one group of rollouts.

    Attributes:
        pseudo_label: The winning answer (its class representative), or ``None`` when no rollout answered.
        label_class: Index of the winning class, or ``None``.
        classes: Class index of each rollout's answer (``None`` for no answer).
        class_answers: Representative answer of each class (its first occurrence).
        weights: Vote weight of each rollout (0.0 when dropped by the gate or without an answer).
        kept: Whether each rollout voted.
        rewards: 1.0 for every rollout (kept or dropped) whose answer is equivalent to the pseudo-label, else 0.0.
        zscores: Within-group z-score of each answered rollout's instability (``None`` without an answer; all 0.0
            in a majority vote).
    """

    pseudo_label: str | None
    label_class: int | None
    classes: list[int | None]
    class_answers: list[str]
    weights: list[float]
    kept: list[bool]
    rewards: list[float]
    zscores: list[float | None]

    @property
    def majority_ratio(self) -> float:
        """Share of the whole group that answered the pseudo-label (TTRL's ``majority_ratio``)."""
        if not self.classes or self.label_class is None:
            return 0.0
        return sum(c == self.label_class for c in self.classes) / len(self.classes)


def _class_answers(answers: Sequence[str | None], classes: Sequence[int | None]) -> list[str]:
    reps: dict[int, str] = {}
    for answer, cls in zip(answers, classes):
        if cls is not None and cls not in reps:
            reps[cls] = answer  # type: ignore[assignment]
    return [reps[c] for c in sorted(reps)]


def _finish(
    answers: Sequence[str | None],
    classes: list[int | None],
    label_class: int | None,
    weights: list[float],
    kept: list[bool],
    zscores: list[float | None],
) -> VoteResult:
    class_answers = _class_answers(answers, classes)
    rewards = [1.0 if (label_class is not None and c == label_class) else 0.0 for c in classes]
    return VoteResult(
        # The first answer of the winning class (class ids need not be contiguous when supplied by the caller).
        pseudo_label=None if label_class is None else answers[classes.index(label_class)],
        label_class=label_class,
        classes=classes,
        class_answers=class_answers,
        weights=weights,
        kept=kept,
        rewards=rewards,
        zscores=zscores,
    )


def _weighted_winner(classes: Sequence[int | None], weights: Sequence[float], kept: Sequence[bool]) -> int | None:
    """The class with the largest total weight among kept rollouts; ties go to the larger count of voters, then
    to the class whose earliest voter comes first. ``None`` when nobody voted."""
    total: dict[int, float] = {}
    count: dict[int, int] = {}
    first: dict[int, int] = {}
    for i, c in enumerate(classes):
        if c is None or not kept[i]:
            continue
        total[c] = total.get(c, 0.0) + weights[i]
        count[c] = count.get(c, 0) + 1
        first.setdefault(c, i)
    # Weights are rounded for the comparison so that float noise cannot break a genuine tie.
    return max(total, key=lambda c: (round(total[c], 9), count[c], -first[c])) if total else None


def majority_vote(
    answers: Sequence[str | None],
    classes: Sequence[int | None] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> VoteResult:
    """Plain majority vote over equivalence classes (the TTRL baseline).

    The class with the most answers wins; a tie goes to the class whose first answer comes earliest.

    Args:
        answers: One extracted answer per rollout, ``None`` where there is none.
        classes: Precomputed equivalence classes (from [`group_equivalent`]); computed when omitted.
        timeout: Per-check math-verify timeout.
    """
    classes = list(classes) if classes is not None else group_equivalent(answers, timeout=timeout)
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for i, c in enumerate(classes):
        if c is None:
            continue
        counts[c] = counts.get(c, 0) + 1
        first.setdefault(c, i)
    label_class = max(counts, key=lambda c: (counts[c], -first[c])) if counts else None
    answered = [c is not None for c in classes]
    weights = [1.0 if a else 0.0 for a in answered]
    zscores: list[float | None] = [0.0 if a else None for a in answered]
    return _finish(answers, classes, label_class, weights, answered, zscores)


def sasc_vote(
    answers: Sequence[str | None],
    instabilities: Sequence[float],
    filter_ratio: float = 0.2,
    weight_temperature: float = 1.0,
    weighting: str = "exp",
    classes: Sequence[int | None] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> VoteResult:
    """Stability-aware vote (DESIGN.md steps 3-6).

    Over the ``m`` rollouts that gave an answer: z-score the instabilities; drop the ``floor(filter_ratio * m)``
    least stable (largest instability; among equal instabilities the later rollout is dropped first; at least one
    rollout always stays); each kept rollout votes with weight ``exp(-z / weight_temperature)`` (``weighting="exp"``)
    or 1 (``weighting="uniform"``: gate + plain majority). The class with the largest total weight wins; ties go
    to the larger count, then to the class whose earliest kept rollout comes first.

    Args:
        answers: One extracted answer per rollout, ``None`` where there is none.
        instabilities: One instability (std of the top-k entropy sequence) per rollout.
        filter_ratio: Share of the answered rollouts dropped by the gate, in ``[0, 1)``.
        weight_temperature: Temperature of the exponential weight (> 0).
        weighting: ``"exp"`` or ``"uniform"``.
        classes: Precomputed equivalence classes; computed when omitted.
        timeout: Per-check math-verify timeout.
    """
    if len(answers) != len(instabilities):
        raise ValueError(f"got {len(answers)} answers but {len(instabilities)} instabilities")
    if not 0.0 <= filter_ratio < 1.0:
        raise ValueError(f"filter_ratio must be in [0, 1), got {filter_ratio}")
    if weight_temperature <= 0:
        raise ValueError(f"weight_temperature must be > 0, got {weight_temperature}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    classes = list(classes) if classes is not None else group_equivalent(answers, timeout=timeout)
    answered = [i for i, c in enumerate(classes) if c is not None]
    for i in answered:
        if not math.isfinite(instabilities[i]):
            raise ValueError(f"instability of rollout {i} is {instabilities[i]}; it must be finite")

    n = len(answers)
    weights = [0.0] * n
    kept = [False] * n
    zscores: list[float | None] = [None] * n
    if not answered:
        return _finish(answers, classes, None, weights, kept, zscores)

    s = [float(instabilities[i]) for i in answered]
    for i, z in zip(answered, zscore(s)):
        zscores[i] = z
    m = len(answered)
    n_drop = min(math.floor(filter_ratio * m), m - 1)
    # Most stable first; a stable sort keeps the earlier rollout ahead among equals.
    order = sorted(answered, key=lambda i: instabilities[i])
    for i in order[: m - n_drop]:
        kept[i] = True
        weights[i] = math.exp(-zscores[i] / weight_temperature) if weighting == "exp" else 1.0  # type: ignore[operator]

    return _finish(answers, classes, _weighted_winner(classes, weights, kept), weights, kept, zscores)


def weighted_vote(
    answers: Sequence[str | None],
    weights: Sequence[float],
    classes: Sequence[int | None] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> VoteResult:
    """Vote with given non-negative weights (DeepConf's confidence-weighted vote, Self-Calibration's soft
    self-consistency). A rollout with weight 0 does not vote.

    The class with the largest total weight wins; ties go to the larger count of voters, then to the class whose
    earliest voter comes first (the tie rules of [`sasc_vote`]). When every answered rollout has weight 0, the
    vote falls back to equal weights.

    Args:
        answers: One extracted answer per rollout, ``None`` where there is none.
        weights: One weight per rollout (>= 0, finite).
        classes: Precomputed equivalence classes; computed when omitted.
        timeout: Per-check math-verify timeout.
    """
    if len(answers) != len(weights):
        raise ValueError(f"got {len(answers)} answers but {len(weights)} weights")
    for i, w in enumerate(weights):
        if not (math.isfinite(w) and w >= 0.0):
            raise ValueError(f"weight of rollout {i} is {w}; weights must be finite and >= 0")
    classes = list(classes) if classes is not None else group_equivalent(answers, timeout=timeout)
    answered = [i for i, c in enumerate(classes) if c is not None]
    votes = [float(weights[i]) if classes[i] is not None else 0.0 for i in range(len(answers))]
    if answered and not any(votes[i] > 0 for i in answered):
        votes = [1.0 if c is not None else 0.0 for c in classes]
    kept = [v > 0 for v in votes]
    zscores: list[float | None] = [0.0 if c is not None else None for c in classes]
    return _finish(answers, classes, _weighted_winner(classes, votes, kept), votes, kept, zscores)
