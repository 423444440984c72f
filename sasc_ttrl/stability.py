"""Top-k local entropy and rollout instability (DESIGN.md steps 1-3).

For each generated token, the top-k logits of the sampling distribution (logits / temperature, before top-p /
top-k truncation) are renormalised with a softmax over those k and their entropy is taken. The full-vocabulary
distribution is never kept: memory is O(tokens x k).

The same quantity comes from two forms of model output:

* logits (transformers): [`topk_entropy_from_logits`];
* top-k log-probabilities per token (vLLM's ``SamplingParams(logprobs=k)``): [`topk_entropy_from_logprobs`].
  A log-probability is a logit minus a per-token constant, so dividing by the temperature and renormalising
  over the same k tokens gives exactly the same entropy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

DEFAULT_TOP_K = 20


def topk_entropy_from_logits(
    logits: torch.Tensor, k: int = DEFAULT_TOP_K, temperature: float = 1.0, chunk_size: int = 1024
) -> torch.Tensor:
    """Entropy of the softmax over the top-k of ``logits / temperature``, for every position.

    Args:
        logits: Tensor of shape ``(..., vocab)``, any float dtype.
        k: Number of top logits kept; clipped to the vocabulary size.
        temperature: Sampling temperature (> 0).
        chunk_size: Rows processed at once, bounding the float32 copy to ``chunk_size x vocab``.

    Returns:
        Float32 tensor of shape ``logits.shape[:-1]``, on the device of ``logits``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    lead_shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])
    k = min(k, flat.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    for start in range(0, flat.shape[0], chunk_size):
        # top-k before the float cast and the division: both are monotone, so the selected set is the same.
        top = torch.topk(flat[start : start + chunk_size], k, dim=-1).values.float() / temperature
        out[start : start + chunk_size] = _entropy_of_logits(top)
    return out.reshape(lead_shape)


def _entropy_of_logits(top: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(top, dim=-1)
    # exp(-inf) * -inf would be NaN; a -inf logit contributes 0 to the entropy.
    return -(torch.exp(logp) * torch.nan_to_num(logp, neginf=0.0)).sum(dim=-1)


def topk_entropy_from_logprobs(
    topk_logprobs: Sequence[Sequence[float]], k: int = DEFAULT_TOP_K, temperature: float = 1.0
) -> list[float]:
    """Top-k entropy per token from per-token top-k log-probabilities (the vLLM form).

    Args:
        topk_logprobs: For each generated token, the log-probabilities of the most likely tokens (any order; vLLM
            returns k or k+1 of them, the extra one being the sampled token when it is outside the top k). Only
            the ``k`` largest are used. Must be raw model log-probabilities (vLLM's default ``raw_logprobs``),
            not already temperature-scaled.
        k: Number of top entries used.
        temperature: Sampling temperature (> 0).

    Returns:
        One entropy per token.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    result = []
    for position, values in enumerate(topk_logprobs):
        if len(values) == 0:
            raise ValueError(f"token {position} has no log-probabilities; request logprobs=k from the backend")
        top = torch.tensor(sorted(values, reverse=True)[:k], dtype=torch.float64) / temperature
        result.append(float(_entropy_of_logits(top)))
    return result


def instability(entropies: Sequence[float]) -> float:
    """Population standard deviation of a rollout's per-token entropy sequence (DESIGN.md step 2).

    An empty sequence has instability 0.0 (a rollout with no completion token has nothing to be unsteady about;
    it also has no answer and therefore no vote).
    """
    if len(entropies) == 0:
        return 0.0
    values = np.asarray(entropies, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("entropy sequence contains NaN or inf")
    return float(values.std())


def zscore(values: Sequence[float], eps: float = 1e-6) -> list[float]:
    """Z-score within a group: ``(v - mean) / (std + eps)`` with the population std; all zeros when std is 0."""
    if len(values) == 0:
        return []
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std())
    if std == 0.0 or not math.isfinite(std):
        return [0.0] * len(arr)
    return ((arr - arr.mean()) / (std + eps)).tolist()
