"""The candidate record every selection method scores, and the forward pass that fills in its per-token data.

A [`Candidate`] wraps the [`SampleRecord`] of one sampled completion (text, token ids, answer, top-k entropies at
the sampling temperature) and adds what only some methods need:

* per-token statistics of the model's raw distribution (temperature 1, full vocabulary), from one no-grad forward
  pass over prompt + completion ([`compute_token_features`]): the log-probability of the sampled token, the
  ``top_k`` largest log-probabilities (DeepConf), and the self-certainty ``KL(U || p) = -log V - mean_j log p_j``;
* the chain of embeddings: for each hidden layer (the embedding output included), the mean hidden state over the
  completion's tokens -- only when a method asks for it (``output_hidden_states`` costs memory);
* the reasoning steps of the text and the step of every token ([`steps`]).

The full-vocabulary distribution is never kept: O(tokens x top_k) floats per candidate.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..entropy_capture import pack_prompt_completion
from ..generation import SampleRecord
from .steps import split_steps, token_pieces, token_step_index

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


def _supports_logits_to_keep(model: torch.nn.Module) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def compute_token_features(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    top_k: int = 20,
    hidden_states: bool = False,
    batch_size: int = 4,
    chunk_size: int = 512,
) -> list[TokenFeatures]:
    """Per-token statistics of each completion from one no-grad forward pass over prompt + completion.

    Sequences are left-padded per batch (the layout of generation). The logits at position ``t`` predict token
    ``t + 1``, so completion token ``j`` is scored by the logits at ``len(prompt) - 1 + j``.

    Args:
        model: A causal LM in eval mode.
        prompt_ids: Token ids of each completion's prompt (one entry per completion).
        completion_ids: The completions' token ids.
        pad_token_id: Padding id.
        top_k: Number of top log-probabilities kept per position (DeepConf uses 20).
        hidden_states: Also return the chain of embeddings (mean hidden state of the completion tokens per layer).
        batch_size: Sequences per forward pass.
        chunk_size: Positions whose full-vocabulary log-probabilities are materialised at once.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"got {len(prompt_ids)} prompts for {len(completion_ids)} completions")
    device = next(model.parameters()).device
    keep_kw = _supports_logits_to_keep(model)
    out: list[TokenFeatures] = []
    for start in range(0, len(prompt_ids), batch_size):
        prompts = prompt_ids[start : start + batch_size]
        completions = completion_ids[start : start + batch_size]
        ids, mask, position_ids, p_len, c_len = pack_prompt_completion(prompts, completions, pad_token_id)
        kwargs: dict[str, Any] = {"output_hidden_states": hidden_states}
        if keep_kw:
            kwargs["logits_to_keep"] = c_len + 1
        output = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device), **kwargs
        )
        logits = output.logits
        # With logits_to_keep the logits cover the last c_len + 1 positions: index 0 is position p_len - 1.
        first = 0 if keep_kw else p_len - 1
        for i, c in enumerate(completions):
            n = len(c)
            if n == 0:
                chain = None
                if hidden_states:
                    chain = np.zeros((len(output.hidden_states), output.hidden_states[0].shape[-1]), dtype=np.float32)
                out.append(TokenFeatures([], [], [], chain))
                continue
            targets = torch.tensor(list(c), dtype=torch.long, device=logits.device)
            token_logprobs, topk, certainty = [], [], []
            # Chunks bound the float32 copy of the logits to chunk_size x vocab.
            for a in range(0, n, chunk_size):
                logp = torch.log_softmax(logits[i, first + a : first + min(n, a + chunk_size)].float(), dim=-1)
                token_logprobs.append(logp.gather(-1, targets[a : a + chunk_size, None]).squeeze(-1))
                topk.append(torch.topk(logp, min(top_k, logp.shape[-1]), dim=-1).values)
                certainty.append(-logp.mean(dim=-1) - math.log(logp.shape[-1]))
            token_logprobs, topk, certainty = torch.cat(token_logprobs), torch.cat(topk), torch.cat(certainty)
            chain = None
            if hidden_states:
                chain = (
                    torch.stack([h[i, p_len : p_len + n].float().mean(dim=0) for h in output.hidden_states])
                    .cpu()
                    .numpy()
                )
            out.append(
                TokenFeatures(
                    token_logprobs=token_logprobs.cpu().tolist(),
                    topk_logprobs=topk.cpu().tolist(),
                    self_certainty=certainty.cpu().tolist(),
                    hidden_chain=chain,
                )
            )
    return out
