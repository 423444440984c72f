"""``verifier`` and ``verifier-vote``: the candidates scored by a reward model given by path (outcome or process
reward model, see `sasc_ttrl.selection.adapters.reward_model`); a process model's step scores are aggregated
(``step_aggregation``: ``min``, ``mean``, ``last`` or ``prod``, Lightman et al.'s product).

* ``verifier`` -- best-of-N: the highest-scoring candidate is selected.
* ``verifier-vote`` -- verifier-weighted majority (Snell et al., 2024, "Scaling LLM Test-Time Compute Optimally":
  "best-of-N weighted"): the scores of the candidates of each answer class are summed and the class with the largest
  total wins ([`voting.weighted_vote`], its tie rules); the selected completion is the winner's best-scored one and
  the confidence the winner's share of the total score. A candidate without an answer does not vote.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..core.voting import weighted_vote
from .base import Selection, SelectionContext, best_of_n, vote_selection
from .candidates import Candidate
from .registry import register_method

logger = logging.getLogger(__name__)


def verifier_scores(candidates: Sequence[Candidate], context: SelectionContext) -> list[float]:
    """The verifier's score of each candidate (aggregated by ``step_aggregation`` for a process model)."""
    if context.verifier is None:
        raise ValueError("the verifier methods need a reward model: pass --verifier_model_name_or_path")
    return list(context.verifier.score(context.question, candidates, context.settings.step_aggregation))


@register_method(
    "verifier",
    needs=("verifier",),
    summary="reward model given by path: outcome score, or per-step process scores aggregated; best of N",
)
def select_verifier(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Best-of-N by the verifier's score."""
    return best_of_n(candidates, verifier_scores(candidates, context))


@register_method(
    "verifier-vote",
    needs=("verifier",),
    summary="verifier-weighted majority: the answer whose candidates' verifier scores sum highest",
)
def select_verifier_vote(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Weighted majority over the answer classes, each candidate weighted by its verifier score."""
    scores = verifier_scores(candidates, context)
    result = weighted_vote([c.answer for c in candidates], scores, classes=context.classes)
    return vote_selection(result, scores)
