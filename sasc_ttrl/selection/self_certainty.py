"""``self-certainty``: token-level self-certainty combined with step-level probability (Kang et al., 2025).

Token level: the mean over the completion's tokens of ``KL(uniform || p) = -log V - mean_j log p_j``, which grows
as the model's next-token distribution moves away from uniform. Step level: each reasoning step's geometric-mean
token probability ``exp(mean log p(token))``, aggregated over steps (``step_aggregation``, default the weakest
step). The two are combined as ``lambda * token + (1 - lambda) * step`` after min-max scaling within the question
([`combine_confidences`]), and the best candidate is selected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .base import Selection, SelectionContext, aggregate_steps, best_of_n, combine_confidences
from .candidates import Candidate, step_values
from .registry import register_method


def token_self_certainty(candidate: Candidate) -> float:
    """Mean per-token ``KL(uniform || p)`` of a candidate (0.0 for an empty completion)."""
    candidate.require("self_certainty")
    return float(np.mean(candidate.self_certainty)) if candidate.self_certainty else 0.0


def step_probability(candidate: Candidate, aggregation: str = "min") -> float:
    """Per-step geometric-mean token probability, aggregated over the candidate's steps."""
    candidate.require("token_logprobs")
    per_step = [math.exp(float(np.mean(v))) for v in step_values(candidate, candidate.token_logprobs) if v]
    return aggregate_steps(per_step, aggregation)


def self_certainty_scores(candidates: Sequence[Candidate], lambda_weight: float, aggregation: str) -> list[float]:
    """The combined confidence of every candidate (see the module docstring)."""
    token = [token_self_certainty(c) for c in candidates]
    step = [step_probability(c, aggregation) for c in candidates]
    return combine_confidences(token, step, lambda_weight)


@register_method(
    "self-certainty",
    needs=("token_stats",),
    summary="mean KL(uniform || p) over tokens, combined with step probability via lambda; best of N",
)
def select_self_certainty(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Best-of-N by the combined self-certainty / step-probability confidence."""
    settings = context.settings
    scores = self_certainty_scores(candidates, settings.lambda_weight, settings.step_aggregation)
    return best_of_n(
        candidates,
        scores,
        token_self_certainty=[round(token_self_certainty(c), 6) for c in candidates],
        step_probability=[round(step_probability(c, settings.step_aggregation), 6) for c in candidates],
    )
