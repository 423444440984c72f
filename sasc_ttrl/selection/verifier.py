"""``verifier``: rerank the candidates with a reward model given by path (outcome or process reward model, see
`sasc_ttrl.selection.adapters.reward_model`); a process model's step scores are aggregated (``step_aggregation``,
default the weakest step). The highest-scoring candidate is selected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .base import Selection, SelectionContext, best_of_n
from .candidates import Candidate
from .registry import register_method

logger = logging.getLogger(__name__)


@register_method(
    "verifier",
    needs=("verifier",),
    summary="reward model given by path: outcome score, or per-step process scores aggregated; best of N",
)
def select_verifier(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Best-of-N by the verifier's score."""
    if context.verifier is None:
        raise ValueError("the verifier method needs a reward model: pass --verifier_model_name_or_path")
    scores = context.verifier.score(context.question, candidates, context.settings.step_aggregation)
    return best_of_n(candidates, scores)
