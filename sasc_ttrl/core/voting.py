"""Votes over a group of rollouts: plain majority (TTRL) and the stability-aware vote (docs/method.md, steps 3-6).

Both return a [`VoteResult`] with the pseudo-label, the equivalence classes, the weights, which rollouts were
kept by the gate, and the per-rollout rewards. They are pure functions of the answers and instabilities; the
online reward, the offline selection pipeline and the evaluator all call them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .answers import DEFAULT_TIMEOUT_SECONDS, group_equivalent
from .stability import STATISTICS, group_statistic, zscore

#: Vote weight of a kept rollout from its (weight-statistic) z-score ``z``: ``exp`` = exp(-z / T), the literal reading
#: of the method, unbounded; ``clipped_exp`` = exp(-clip(z, -c, c) / T), so two voters' weights differ by at most
#: exp(2c / T) (7.4 with the default c = 1, T = 1); ``rank`` = linear in the stability rank among the kept, from 1.5
#: (most stable) to 0.5 (least), so no voter outweighs three others; ``uniform`` = 1 (the gate alone, then a plain
#: majority). The default, ``clipped_exp`` with c = 1 on the std, is the vote study's winner by its worst-case rule
#: over 9 rollout sets (docs/studies/vote_default.md; ``studies/vote_study.py``).
WEIGHTINGS = ("exp", "clipped_exp", "rank", "uniform")
DEFAULT_WEIGHTING = "clipped_exp"
DEFAULT_WEIGHT_CLIP = 1.0


@dataclass
class VoteSettings:
    """Hyper-parameters of the stability-aware vote, shared by the online reward and the offline pipeline.

    Attributes:
        filter_ratio: Share of answered rollouts dropped by the stability gate (0 turns the gate off).
        weight_temperature: Temperature ``T`` of the ``exp`` / ``clipped_exp`` weights.
        vote_weighting: One of [`WEIGHTINGS`] (``uniform`` = gate only).
        gate_statistic: Instability statistic the gate ranks by (one of [`stability.STATISTICS`]); the method's
            gate is ``std``.
        weight_statistic: Instability statistic whose within-group z-score sets the weights.
        weight_clip: ``c`` of ``clipped_exp``.
        tail_tokens: Tokens of the ``tail`` statistic.
        window_tokens: Window of the ``bottom_window`` statistic.
        answer_timeout: Seconds allowed for one math-verify check.
        min_label_share: The training reward's confidence filter: a group whose pseudo-label holds less than this
            share of the vote ([`VoteResult.label_share`]) gives every rollout reward 0, so GRPO does not train on it
            (0 turns the filter off). Votes themselves (and the offline pipeline) ignore it.
    """

    filter_ratio: float = 0.2
    weight_temperature: float = 1.0
    vote_weighting: str = DEFAULT_WEIGHTING
    gate_statistic: str = "std"
    weight_statistic: str = "std"
    weight_clip: float = DEFAULT_WEIGHT_CLIP
    tail_tokens: int = 32
    window_tokens: int = 16
    answer_timeout: float | None = DEFAULT_TIMEOUT_SECONDS
    min_label_share: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.min_label_share <= 1.0:
            raise ValueError(f"min_label_share must be in [0, 1], got {self.min_label_share}")
        if not 0.0 <= self.filter_ratio < 1.0:
            raise ValueError(f"filter_ratio must be in [0, 1), got {self.filter_ratio}")
        if self.weight_temperature <= 0:
            raise ValueError(f"weight_temperature must be > 0, got {self.weight_temperature}")
        if self.vote_weighting not in WEIGHTINGS:
            raise ValueError(f"vote_weighting must be one of {WEIGHTINGS}, got {self.vote_weighting!r}")
        for name in ("gate_statistic", "weight_statistic"):
            if getattr(self, name) not in STATISTICS:
                raise ValueError(f"{name} must be one of {STATISTICS}, got {getattr(self, name)!r}")
        if self.weight_clip <= 0:
            raise ValueError(f"weight_clip must be > 0, got {self.weight_clip}")
        if self.tail_tokens < 1 or self.window_tokens < 1:
            raise ValueError(
                f"tail_tokens and window_tokens must be >= 1, got {self.tail_tokens} and {self.window_tokens}"
            )
        if self.answer_timeout is not None and self.answer_timeout <= 0:
            raise ValueError(f"answer_timeout must be > 0 (or None), got {self.answer_timeout}")

    def statistics(
        self, entropy_seqs: Sequence[Sequence[float]], mask: Sequence[bool] | None = None
    ) -> tuple[list[float], list[float]]:
        """The gate scores and the weight scores of a group's rollouts (one [`stability.group_statistic`] each;
        ``mask`` marks the rollouts a length correction is fitted on)."""
        params = dict(mask=mask, tail_tokens=self.tail_tokens, window_tokens=self.window_tokens)
        gate = group_statistic(entropy_seqs, self.gate_statistic, **params)
        if self.weight_statistic == self.gate_statistic:
            return gate, gate
        return gate, group_statistic(entropy_seqs, self.weight_statistic, **params)


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

    @property
    def label_share(self) -> float:
        """Share of the vote held by the pseudo-label: the winning class's part of the kept rollouts' total weight
        (in a plain majority vote, where every answer weighs 1: its share of the answers); 0.0 without a label.

        Example: kept weights 1.5, 1.0, 0.5 on answers "4", "4", "5": the label "4" holds 2.5 / 3.0 = 0.83.
        """
        if self.label_class is None:
            return 0.0
        total = sum(w for w, k in zip(self.weights, self.kept) if k)
        held = sum(w for w, k, c in zip(self.weights, self.kept, self.classes) if k and c == self.label_class)
        return held / total if total > 0 else 0.0


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
    vote_weighting: str = DEFAULT_WEIGHTING,
    classes: Sequence[int | None] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
    weight_scores: Sequence[float] | None = None,
    weight_clip: float = DEFAULT_WEIGHT_CLIP,
) -> VoteResult:
    """Stability-aware vote (docs/method.md, steps 3-6).

    Over the ``m`` rollouts that gave an answer: drop the ``floor(filter_ratio * m)`` least stable (largest
    ``instabilities``; among equal instabilities the later rollout is dropped first; at least one rollout always
    stays); z-score the ``weight_scores`` (the instabilities when omitted) over the ``m`` answered rollouts; each
    kept rollout votes with the weight of ``vote_weighting`` (see [`WEIGHTINGS`]). The class with the largest total
    weight wins; ties go to the larger count, then to the class whose earliest kept rollout comes first.

    Args:
        answers: One extracted answer per rollout, ``None`` where there is none.
        instabilities: Gate score of each rollout (the std of its top-k entropy sequence, by the method).
        filter_ratio: Share of the answered rollouts dropped by the gate, in ``[0, 1)``.
        weight_temperature: Temperature ``T`` of the ``exp`` and ``clipped_exp`` weights (> 0).
        vote_weighting: One of [`WEIGHTINGS`].
        classes: Precomputed equivalence classes; computed when omitted.
        timeout: Per-check math-verify timeout.
        weight_scores: Score whose z-score sets the weights (larger = less stable); defaults to ``instabilities``.
        weight_clip: ``c`` of ``clipped_exp`` (> 0).
    """
    weight_scores = instabilities if weight_scores is None else weight_scores
    if not len(answers) == len(instabilities) == len(weight_scores):
        raise ValueError(
            f"got {len(answers)} answers, {len(instabilities)} instabilities and {len(weight_scores)} weight scores"
        )
    # The checks of VoteSettings, so that the raw-argument entry point rejects exactly what the settings reject.
    VoteSettings(
        filter_ratio=filter_ratio,
        weight_temperature=weight_temperature,
        vote_weighting=vote_weighting,
        weight_clip=weight_clip,
    )
    classes = list(classes) if classes is not None else group_equivalent(answers, timeout=timeout)
    answered = [i for i, c in enumerate(classes) if c is not None]
    for i in answered:
        if not (math.isfinite(instabilities[i]) and math.isfinite(weight_scores[i])):
            raise ValueError(f"instability of rollout {i} is not finite ({instabilities[i]}, {weight_scores[i]})")

    n = len(answers)
    weights = [0.0] * n
    kept = [False] * n
    zscores: list[float | None] = [None] * n
    if not answered:
        return _finish(answers, classes, None, weights, kept, zscores)

    for i, z in zip(answered, zscore([float(weight_scores[i]) for i in answered])):
        zscores[i] = z
    m = len(answered)
    n_drop = min(math.floor(filter_ratio * m), m - 1)
    # Most stable first; a stable sort keeps the earlier rollout ahead among equals.
    order = sorted(answered, key=lambda i: instabilities[i])
    voters = order[: m - n_drop]
    for i in voters:
        kept[i] = True
    for i, w in zip(voters, _weights(voters, zscores, weight_scores, vote_weighting, weight_temperature, weight_clip)):
        weights[i] = w
    return _finish(answers, classes, _weighted_winner(classes, weights, kept), weights, kept, zscores)


def _weights(
    voters: list[int],
    zscores: Sequence[float | None],
    scores: Sequence[float],
    vote_weighting: str,
    temperature: float,
    clip: float,
) -> list[float]:
    """Vote weight of each kept rollout (see [`WEIGHTINGS`])."""
    if vote_weighting == "uniform":
        return [1.0] * len(voters)
    if vote_weighting == "exp":
        return [math.exp(-zscores[i] / temperature) for i in voters]  # type: ignore[operator]
    if vote_weighting == "clipped_exp":
        return [math.exp(-min(max(zscores[i], -clip), clip) / temperature) for i in voters]  # type: ignore[type-var]
    # rank: average rank among equal scores (0 = most stable), mapped linearly onto [1.5, 0.5].
    if len(voters) == 1:
        return [1.0]
    values = [float(scores[i]) for i in voters]
    ordered = sorted(values)
    ranks = []
    for v in values:
        lo = ordered.index(v)
        hi = len(ordered) - 1 - ordered[::-1].index(v)
        ranks.append((lo + hi) / 2)
    return [1.5 - r / (len(voters) - 1) for r in ranks]


def stability_vote(
    answers: Sequence[str | None],
    entropy_seqs: Sequence[Sequence[float]],
    settings: VoteSettings | None = None,
    classes: Sequence[int | None] | None = None,
) -> VoteResult:
    """The stability-aware vote from each rollout's top-k entropy sequence: the gate and weight statistics of
    ``settings`` ([`VoteSettings.statistics`]) feed [`sasc_vote`]. The online reward, the offline selection, the
    evaluator's ``sasc@k`` and ``compare-votes`` all vote through this function."""
    settings = settings or VoteSettings()
    if len(answers) != len(entropy_seqs):
        raise ValueError(f"got {len(answers)} answers but {len(entropy_seqs)} entropy sequences")
    classes = list(classes) if classes is not None else group_equivalent(answers, timeout=settings.answer_timeout)
    gate, weight = settings.statistics(entropy_seqs, mask=[c is not None for c in classes])
    return vote_from_scores(answers, gate, weight, settings, classes)


def vote_from_scores(
    answers: Sequence[str | None],
    gate_scores: Sequence[float],
    weight_scores: Sequence[float],
    settings: VoteSettings,
    classes: Sequence[int | None],
) -> VoteResult:
    """[`sasc_vote`] with ``settings``' gate and weighting, from instability scores already computed (what
    [`stability_vote`] does after [`VoteSettings.statistics`]; re-votes of saved rollouts reuse the scores)."""
    return sasc_vote(
        answers,
        gate_scores,
        filter_ratio=settings.filter_ratio,
        weight_temperature=settings.weight_temperature,
        vote_weighting=settings.vote_weighting,
        classes=classes,
        weight_scores=weight_scores,
        weight_clip=settings.weight_clip,
    )


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
