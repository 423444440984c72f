"""The candidate record every selection method scores.

A [`Candidate`] wraps the [`SampleRecord`] of one sampled completion (text, token ids, answer, top-k entropies at
the sampling temperature) and adds what only some methods need:

* per-token statistics of the model's raw distribution (temperature 1, full vocabulary), [`TokenFeatures`], filled
  in by one forward pass (`sasc_ttrl.selection.adapters.token_features`);
* the chain of embeddings: for each hidden layer (the embedding output included), the mean hidden state over the
  completion's tokens -- only when a method asks for it;
* the reasoning steps of the text and the step of every token (`sasc_ttrl.core.steps`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.steps import split_steps, token_pieces, token_step_index
from ..sampling.records import SampleRecord

FEATURE_DECIMALS = 5


@dataclass
class TokenFeatures:
    """Per-token statistics of one completion under the model's raw distribution (see the module docstring)."""

    token_logprobs: list[float]
    topk_logprobs: list[list[float]]
    self_certainty: list[float]
    hidden_chain: np.ndarray | None = None


@dataclass
class Candidate:
    """One candidate completion and the per-token data selection methods score.

    Attributes:
        record: The sampled completion ([`SampleRecord`]).
        token_logprobs: Log-probability of each completion token under the raw model distribution.
        topk_logprobs: The ``top_k`` largest log-probabilities at each completion position.
        self_certainty: ``KL(uniform || p)`` at each completion position.
        hidden_chain: Array ``(num_layers + 1, hidden_size)``: mean hidden state of the completion tokens per layer.
        steps: The reasoning steps of the text.
        token_steps: The step index of each completion token (``None`` when unknown).
    """

    record: SampleRecord
    token_logprobs: list[float] | None = None
    topk_logprobs: list[list[float]] | None = None
    self_certainty: list[float] | None = None
    hidden_chain: np.ndarray | None = None
    steps: list[str] = field(default_factory=list)
    token_steps: list[int] | None = None

    def __post_init__(self):
        if not self.steps:
            self.steps = split_steps(self.record.text)

    @property
    def text(self) -> str:
        return self.record.text

    @property
    def answer(self) -> str | None:
        return self.record.answer

    @property
    def token_ids(self) -> list[int]:
        return self.record.token_ids

    @property
    def num_tokens(self) -> int:
        return len(self.record.token_ids)

    @property
    def instability(self) -> float:
        """Std of the top-k entropy sequence recorded while sampling (the SASC gate's quantity)."""
        return self.record.instability

    @classmethod
    def from_record(
        cls, record: SampleRecord, features: TokenFeatures | None = None, tokenizer: Any = None
    ) -> Candidate:
        """Wrap a record, with its token features and (given the tokenizer) the step of every token."""
        steps: list[str] = []
        token_steps = None
        if tokenizer is not None:
            steps, token_steps = token_step_index(token_pieces(tokenizer, record.token_ids))
        if features is None:
            return cls(record=record, steps=steps, token_steps=token_steps)
        return cls(
            record=record,
            token_logprobs=features.token_logprobs,
            topk_logprobs=features.topk_logprobs,
            self_certainty=features.self_certainty,
            hidden_chain=features.hidden_chain,
            steps=steps,
            token_steps=token_steps,
        )

    def require(self, *names: str) -> None:
        """Raise a clear error when a per-token field a method needs was not computed."""
        for name in names:
            if getattr(self, name) is None:
                raise ValueError(
                    f"candidate has no `{name}`: the selection method needs token features "
                    "(compute_token_features) that were not computed for it"
                )

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready summary (text, answer, length, and the scalar statistics of the token data)."""
        out: dict[str, Any] = {
            "text": self.text,
            "answer": self.answer,
            "num_tokens": self.num_tokens,
            "instability": round(self.instability, FEATURE_DECIMALS),
            # The whole sequence, so that `sasc-ttrl compare-votes` can re-vote saved candidates.
            "entropies": [round(e, FEATURE_DECIMALS) for e in self.record.entropies],
        }
        if self.token_logprobs is not None:
            out["mean_token_probability"] = round(mean_token_probability(self), FEATURE_DECIMALS)
        if self.self_certainty is not None:
            out["self_certainty"] = round(
                float(np.mean(self.self_certainty)) if self.self_certainty else 0.0, FEATURE_DECIMALS
            )
        if self.record.correct is not None:
            out["correct"] = self.record.correct
        return out


def mean_token_probability(candidate: Candidate) -> float:
    """Geometric-mean probability of the completion's tokens, ``exp(mean log p)`` (1.0 for an empty completion)."""
    candidate.require("token_logprobs")
    values = candidate.token_logprobs
    return math.exp(float(np.mean(values))) if values else 1.0


def step_values(candidate: Candidate, per_token: Sequence[float]) -> list[list[float]]:
    """Group a per-token sequence by reasoning step (a candidate without a token->step map is one step)."""
    if candidate.token_steps is None:
        return [list(per_token)] if len(per_token) else []
    if len(candidate.token_steps) != len(per_token):
        raise ValueError(f"{len(per_token)} token values for {len(candidate.token_steps)} token steps")
    groups: dict[int, list[float]] = {}
    for step, value in zip(candidate.token_steps, per_token):
        groups.setdefault(step, []).append(float(value))
    return [groups[s] for s in sorted(groups)]
