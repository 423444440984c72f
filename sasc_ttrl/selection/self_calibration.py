"""``self-calibration`` and ``self-calibration-es``: confidence-based selection of Self-Calibration
(Huang et al., 2025, "Efficient test-time scaling via self-calibration").

Each candidate gets a confidence in ``[0, 1]`` (``calibration_confidence``): its geometric-mean token probability
(``token``, default), or the model's P(Yes) to "Is the answer correct?" about the whole solution (``self-eval``).

* ``self-calibration`` -- soft self-consistency: ``SSC(y) = sum of the confidences of the candidates answering y /
  sum of all confidences``; the answer with the largest SSC is selected ([`core.voting.weighted_vote`]).
* ``self-calibration-es`` -- early-stopping best-of-N: candidates are taken in sampling order and the first answered
  one whose confidence reaches ``calibration_threshold`` is selected; the candidates after it need not be sampled
  (``samples_used``). When none reaches it, all were needed and the most confident one is selected. Samples are
  seeded per (question, sample index), so the candidates a sequential run would have drawn are exactly the first
  ``samples_used`` ones here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..core.voting import weighted_vote
from .base import Selection, SelectionContext, best_of_n, vote_selection
from .candidates import Candidate, mean_token_probability
from .registry import register_method
from .self_eval import ANSWER_QUESTION


def candidate_confidences(candidates: Sequence[Candidate], context: SelectionContext) -> list[float]:
    """The confidence of each candidate (see the module docstring)."""
    if context.settings.calibration_confidence == "token":
        return [mean_token_probability(c) for c in candidates]
    if context.judge is None:
        raise ValueError("calibration_confidence='self-eval' needs a judge (the model itself) in the context")
    messages = [ANSWER_QUESTION.format(question=context.question, solution=c.text) for c in candidates]
    return [float(p) for p in context.judge.yes_probability(messages)] if messages else []


def early_stop(
    confidences: Iterable[float], answered: Sequence[bool], threshold: float
) -> tuple[int | None, list[float]]:
    """Early-stopping best-of-N over confidences produced one candidate at a time.

    Returns:
        The index of the first answered candidate whose confidence reaches ``threshold`` (``None`` when there is
        none) and the confidences consumed up to it -- the iterable is not read further, so a lazy one computes
        only what a sequential run would.
    """
    seen: list[float] = []
    for i, conf in enumerate(confidences):
        seen.append(float(conf))
        if answered[i] and conf >= threshold:
            return i, seen
    return None, seen


@register_method(
    "self-calibration",
    needs=("token_stats", "judge"),
    summary="soft self-consistency: answer with the largest sum of candidate confidences",
)
def select_soft_self_consistency(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Soft self-consistency; the confidence of the selection is the winning answer's SSC."""
    confidences = candidate_confidences(candidates, context)
    result = weighted_vote([c.answer for c in candidates], confidences, classes=context.classes)
    return vote_selection(result, confidences)


@register_method(
    "self-calibration-es",
    needs=("token_stats", "judge"),
    summary="early-stopping best-of-N: first candidate whose confidence passes the threshold",
)
def select_early_stopping(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Early-stopping best-of-N; ``samples_used`` says how many candidates it needed."""
    answered = [c is not None for c in context.classes]
    lazy = (candidate_confidences([c], context)[0] for c in candidates)
    index, confidences = early_stop(lazy, answered, context.settings.calibration_threshold)
    used = len(confidences)
    details = {"stopped_early": index is not None, "samples_saved": len(candidates) - used}
    if index is None:
        return best_of_n(candidates, confidences, **details)
    return Selection(
        index=index,
        pseudo_label=candidates[index].answer,
        confidence=confidences[index],
        scores=confidences + [None] * (len(candidates) - used),
        samples_used=used,
        details=details,
    )
