"""``self-eval``: the model judges each reasoning step of each candidate (Xie et al., 2023, self-evaluation).

For step ``j`` of a candidate, the model reads the question, the steps before ``j`` and step ``j``, and is asked
"Is this step correct? Answer Yes or No."; the step's confidence is ``P(Yes) / (P(Yes) + P(No))`` from the logits
of the first token of "Yes" and "No" after the prompt. Step confidences are aggregated (``step_aggregation``,
default the weakest step) and combined with the token-level confidence (geometric-mean token probability) as
``lambda * token + (1 - lambda) * step`` ([`combine_confidences`]); the best candidate is selected.

[`Judge`] is the Yes/No judge on a transformers causal LM; it is also used by ``self-calibration``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .base import Selection, SelectionContext, aggregate_steps, best_of_n, combine_confidences
from .candidates import Candidate, mean_token_probability
from .registry import register_method

logger = logging.getLogger(__name__)

STEP_QUESTION = (
    "Question: {question}\n\nSolution so far:\n{previous}\n\nNext step: {step}\n\n"
    "Is this step correct? Answer Yes or No."
)
ANSWER_QUESTION = "Question: {question}\n\nProposed solution:\n{solution}\n\nIs the answer correct? Answer Yes or No."


def step_messages(question: str, steps: Sequence[str]) -> list[str]:
    """One judge question per step: the question, the earlier steps, and the step to check."""
    return [
        STEP_QUESTION.format(question=question, previous="\n".join(steps[:j]) or "(none)", step=step)
        for j, step in enumerate(steps)
    ]


def step_judgments(candidates: Sequence[Candidate], question: str, judge: Any) -> list[list[float]]:
    """P(Yes) of every step of every candidate, in one batched call to the judge."""
    messages, owners = [], []
    for i, c in enumerate(candidates):
        for message in step_messages(question, c.steps):
            messages.append(message)
            owners.append(i)
    probabilities = judge.yes_probability(messages) if messages else []
    per_candidate: list[list[float]] = [[] for _ in candidates]
    for owner, p in zip(owners, probabilities):
        per_candidate[owner].append(float(p))
    return per_candidate


@register_method(
    "self-eval",
    needs=("token_stats", "judge"),
    summary="the model's P(Yes) to 'Is this step correct?' per step, combined with token probability via lambda",
)
def select_self_eval(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Best-of-N by the combined step-judgment / token-probability confidence."""
    if context.judge is None:
        raise ValueError("self-eval needs a judge (the model itself) in the selection context")
    settings = context.settings
    judgments = step_judgments(candidates, context.question, context.judge)
    step = [aggregate_steps(j, settings.step_aggregation) for j in judgments]
    token = [mean_token_probability(c) for c in candidates]
    scores = combine_confidences(token, step, settings.lambda_weight)
    return best_of_n(
        candidates,
        scores,
        step_yes_probability=[[round(p, 6) for p in j] for j in judgments],
        token_probability=[round(t, 6) for t in token],
    )
