"""The Yes/No judge: P(Yes) of a causal LM asked a Yes/No question, batched (``self-eval``, ``self-calibration``,
``sasc-ttrl calibrate``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from ...sampling.generation import encode_prompts

logger = logging.getLogger(__name__)


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
