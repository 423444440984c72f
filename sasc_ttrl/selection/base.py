"""What every selection method shares: its settings, its inputs ([`SelectionContext`]), its output
([`Selection`]), and the two ways of turning scores into a choice (best-of-N and a weighted vote).

A selection method is a pure function ``select(candidates, context) -> Selection``; the equivalence classes of the
candidates' answers are computed once per question and shared by all methods through the context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..core.answers import group_equivalent
from ..core.voting import VoteResult, VoteSettings

STEP_AGGREGATIONS = ("min", "mean", "last", "prod")
DEEPCONF_MODES = ("lowest", "bottom10", "tail", "mean")
CALIBRATION_CONFIDENCES = ("token", "self-eval")


@dataclass
class SelectionSettings:
    """Hyper-parameters of the selection methods (``sasc-ttrl build`` fills them from its arguments).

    Attributes:
        lambda_weight: Weight of the token-level confidence against the step-level one, in ``[0, 1]``, for methods
            that combine two (``self-certainty``, ``self-eval``): ``lambda * token + (1 - lambda) * step``.
        step_aggregation: How per-step confidences become one: ``min`` (weakest step), ``mean``, ``last``, or
            ``prod`` (the product: the probability that every step is correct, Let's Verify Step by Step's PRM
            score).
        vote: The stability-aware vote's settings (``sasc``), shared with the online reward.
        deepconf_window: Sliding-window size (tokens) of DeepConf's group confidence.
        deepconf_eta: Share of the answered traces DeepConf keeps (the most confident), in ``(0, 1]``.
        deepconf_mode: Trace confidence: ``lowest`` group, mean of the ``bottom10`` % groups, ``tail`` (last
            window), or ``mean`` of the token confidences.
        calibration_threshold: Early-stopping best-of-N stops at the first candidate whose confidence reaches this.
        calibration_confidence: Self-Calibration's per-candidate confidence: ``token`` (geometric-mean token
            probability) or ``self-eval`` (the model's P(Yes) to "Is the answer correct?").
    """

    lambda_weight: float = 0.5
    step_aggregation: str = "min"
    vote: VoteSettings = field(default_factory=VoteSettings)
    deepconf_window: int = 2048
    deepconf_eta: float = 0.9
    deepconf_mode: str = "lowest"
    calibration_threshold: float = 0.9
    calibration_confidence: str = "token"

    def __post_init__(self):
        if not 0.0 <= self.lambda_weight <= 1.0:
            raise ValueError(f"lambda_weight must be in [0, 1], got {self.lambda_weight}")
        if self.step_aggregation not in STEP_AGGREGATIONS:
            raise ValueError(f"step_aggregation must be one of {STEP_AGGREGATIONS}, got {self.step_aggregation!r}")
        if self.deepconf_window < 1:
            raise ValueError(f"deepconf_window must be >= 1, got {self.deepconf_window}")
        if not 0.0 < self.deepconf_eta <= 1.0:
            raise ValueError(f"deepconf_eta must be in (0, 1], got {self.deepconf_eta}")
        if self.deepconf_mode not in DEEPCONF_MODES:
            raise ValueError(f"deepconf_mode must be one of {DEEPCONF_MODES}, got {self.deepconf_mode!r}")
        if self.calibration_confidence not in CALIBRATION_CONFIDENCES:
            raise ValueError(
                f"calibration_confidence must be one of {CALIBRATION_CONFIDENCES}, got {self.calibration_confidence!r}"
            )


class YesNoJudge(Protocol):
    """Gives the probability that a model answers "Yes" to each of a batch of questions (see `self_eval.Judge`)."""

    def yes_probability(self, messages: Sequence[str]) -> list[float]: ...


class CandidateVerifier(Protocol):
    """Scores candidate solutions of a question with a reward model (see `verifier.RewardModelVerifier`)."""

    def score(self, question: str, candidates: Sequence[Any], step_aggregation: str) -> list[float]: ...


@dataclass
class SelectionContext:
    """Everything a method may use besides the candidates.

    Attributes:
        question: The question text (without the prompt template).
        classes: Equivalence class of each candidate's answer ([`group_equivalent`]), ``None`` without an answer.
        settings: The methods' hyper-parameters.
        judge: The model as a Yes/No judge (``self-eval``; ``self-calibration`` with ``self-eval`` confidence).
        verifier: An outcome / process reward model (``verifier``).
    """

    question: str
    classes: list[int | None]
    settings: SelectionSettings = field(default_factory=SelectionSettings)
    judge: YesNoJudge | None = None
    verifier: CandidateVerifier | None = None

    @classmethod
    def for_candidates(cls, candidates: Sequence[Any], question: str = "", **kwargs: Any) -> SelectionContext:
        """A context whose classes are computed from the candidates' answers."""
        settings = kwargs.get("settings") or SelectionSettings()
        classes = group_equivalent([c.answer for c in candidates], timeout=settings.vote.answer_timeout)
        return cls(question=question, classes=classes, **kwargs)


@dataclass
class Selection:
    """The outcome of one method on one question.

    Attributes:
        index: The selected candidate, ``None`` when there is none.
        pseudo_label: The selected answer (for a vote, the winning class's representative answer).
        confidence: The method's confidence in the selection (its scale is the method's own; ``None`` for
            ``baseline``).
        scores: The method's score of each candidate (``None`` where it scored none).
        samples_used: How many candidates, in sampling order, the method needed (early stopping uses fewer).
        details: Method-specific extras written to the output row (e.g. the vote's kept flags).
    """

    index: int | None
    pseudo_label: str | None
    confidence: float | None
    scores: list[float | None]
    samples_used: int
    details: dict[str, Any] = field(default_factory=dict)


def minmax(values: Sequence[float]) -> list[float]:
    """Scale values to ``[0, 1]`` within the group; a constant group maps to all 1.0."""
    if not len(values):
        return []
    arr = np.asarray(values, dtype=np.float64)
    low, high = float(arr.min()), float(arr.max())
    if not math.isfinite(high - low) or high - low == 0.0:
        return [1.0] * len(arr)
    return ((arr - low) / (high - low)).tolist()


def combine_confidences(token: Sequence[float], step: Sequence[float], lambda_weight: float) -> list[float]:
    """``lambda * token + (1 - lambda) * step``, each confidence min-max scaled within the group first.

    The two confidences live on different scales (a KL in nats, a probability), so each is put on ``[0, 1]``
    within the candidates of the question; only their order inside the group matters for the selection.
    """
    if len(token) != len(step):
        raise ValueError(f"got {len(token)} token confidences but {len(step)} step confidences")
    return [lambda_weight * a + (1.0 - lambda_weight) * b for a, b in zip(minmax(token), minmax(step))]


def aggregate_steps(values: Sequence[float], how: str = "min") -> float:
    """One confidence from per-step confidences: the weakest step (``min``), the ``mean``, the ``last``, or the
    ``prod``uct.

    ``prod`` is the solution score of Lightman et al. (2023): "the probability that every step is correct under the
    PRM ... the product of the correctness probabilities for each step". It favours solutions with fewer steps (each
    factor is at most 1), a bias the paper names; ``min`` does not have it. No step gives 0.0.

    >>> [round(aggregate_steps([0.9, 0.5, 0.8], how), 2) for how in ("min", "last", "prod")]
    [0.5, 0.8, 0.36]
    """
    if how not in STEP_AGGREGATIONS:
        raise ValueError(f"step aggregation must be one of {STEP_AGGREGATIONS}, got {how!r}")
    if not len(values):
        return 0.0
    if how == "min":
        return float(min(values))
    if how == "mean":
        return float(np.mean(values))
    if how == "prod":
        return float(np.prod(np.asarray(values, dtype=np.float64)))
    return float(values[-1])


def best_of_n(candidates: Sequence[Any], scores: Sequence[float], **details: Any) -> Selection:
    """Select the highest-scoring candidate that gave an answer (ties: the earliest; when none answered, the
    highest-scoring candidate overall)."""
    if len(candidates) != len(scores):
        raise ValueError(f"got {len(scores)} scores for {len(candidates)} candidates")
    if not candidates:
        return Selection(None, None, None, [], 0, dict(details))
    pool = [i for i, c in enumerate(candidates) if c.answer is not None] or list(range(len(candidates)))
    best = max(pool, key=lambda i: (scores[i], -i))
    return Selection(
        index=best,
        pseudo_label=candidates[best].answer,
        confidence=float(scores[best]),
        scores=[float(s) for s in scores],
        samples_used=len(candidates),
        details=dict(details),
    )


def vote_selection(result: VoteResult, scores: Sequence[float | None], **details: Any) -> Selection:
    """Turn a vote into a selection: the winning class's candidate with the largest vote weight (ties: the
    earliest) is the selected completion; the confidence is the winning class's share of the total vote weight."""
    n = len(result.classes)
    if result.label_class is None:
        return Selection(None, None, None, list(scores), n, dict(details))
    members = [i for i, c in enumerate(result.classes) if c == result.label_class]
    index = max(members, key=lambda i: (round(result.weights[i], 9), -i))
    total = sum(result.weights)
    share = sum(result.weights[i] for i in members) / total if total > 0 else 0.0
    return Selection(
        index=index,
        pseudo_label=result.pseudo_label,
        confidence=share,
        scores=[None if s is None else float(s) for s in scores],
        samples_used=n,
        details=dict(details),
    )
