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

import torch

from ..generation import encode_prompts
from .base import Selection, SelectionContext, aggregate_steps, best_of_n, combine_confidences
from .candidates import Candidate, mean_token_probability
from .registry import register_method

logger = logging.getLogger(__name__)

STEP_QUESTION = (
    "Question: {question}\n\nSolution so far:\n{previous}\n\nNext step: {step}\n\n"
    "Is this step correct? Answer Yes or No."
)
ANSWER_QUESTION = "Question: {question}\n\nProposed solution:\n{solution}\n\nIs the answer correct? Answer Yes or No."


class Judge:
    """P(Yes) of a causal LM asked a Yes/No question, batched.

    Args:
        model: A transformers causal LM in eval mode.
        tokenizer: Its tokenizer; the chat template is applied when there is one.
        batch_size: Questions per forward pass.
        yes: The affirmative answer word.
        no: The negative answer word.
    """

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8, yes: str = "Yes", no: str = "No"):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.yes_id = tokenizer.encode(yes, add_special_tokens=False)[0]
        self.no_id = tokenizer.encode(no, add_special_tokens=False)[0]
        if self.yes_id == self.no_id:
            raise ValueError(f"{yes!r} and {no!r} start with the same token; choose other answer words")
        self.num_queries = 0

    def render(self, message: str) -> str:
        """The text the model reads: the chat template with a generation prompt, else the message + "Answer: "."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
            )
        return f"{message}\nAnswer: "

    @torch.no_grad()
    def yes_probability(self, messages: Sequence[str]) -> list[float]:
        """``P(Yes) / (P(Yes) + P(No))`` of the first answer token, for each message."""
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        encoded = encode_prompts(self.tokenizer, [self.render(m) for m in messages])
        out: list[float] = []
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded[start : start + self.batch_size]
            width = max(len(ids) for ids in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, row in enumerate(batch):
                ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row) :] = 1
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(
                input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device)
            ).logits[:, -1, :]
            pair = logits[:, [self.yes_id, self.no_id]].float()
            out.extend(torch.softmax(pair, dim=-1)[:, 0].cpu().tolist())
        self.num_queries += len(messages)
        return out


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
