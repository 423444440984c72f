"""Top-k local entropy from model outputs (docs/method.md, step 1), in torch.

For each generated token, the top-k logits of the sampling distribution (logits / temperature, before top-p /
top-k truncation) are renormalised with a softmax over those k and their entropy is taken. The full-vocabulary
distribution is never kept: memory is O(tokens x k).

The same quantity comes from two forms of model output:

* logits (transformers): [`topk_entropy_from_logits`];
* top-k log-probabilities per token (vLLM's ``SamplingParams(logprobs=k)``): [`topk_entropy_from_logprobs`].
  A log-probability is a logit minus a per-token constant, so dividing by the temperature and renormalising
  over the same k tokens gives exactly the same entropy.

What a rollout's entropy sequence is reduced to (its instability) lives in `sasc_ttrl.core.stability`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..core.stability import DEFAULT_TOP_K


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
        top = topk_values(flat[start : start + chunk_size], k).float() / temperature
        out[start : start + chunk_size] = entropy_of_logits(top)
    return out.reshape(lead_shape)


def topk_values(logits: torch.Tensor, k: int, block: int = 128, rows: int = 32) -> torch.Tensor:
    """The ``k`` largest values of each row of ``(n, vocab)`` logits, sorted: the values of ``torch.topk``.

    On CPU ``torch.topk`` is slow over a whole vocabulary row (~0.5 ms for 152k) and takes a scratch copy of the row
    (~2.3 MB) per call. Here each row is cut into blocks of ``block`` logits: the k blocks with the largest maxima
    hold the k largest values (a block left out has a maximum no larger than those of k chosen blocks, whose maxima
    already beat its members), so ``topk`` runs over the ``vocab / block`` maxima, then over ``k x block``
    candidates, ``rows`` rows at a time on CPU. Small vocabularies, or ones not a multiple of ``block``, use
    ``torch.topk`` directly.
    """
    n, vocab = logits.shape
    k = min(k, vocab)
    if n == 0 or vocab % block or vocab < 4 * k * block:
        return torch.topk(logits, k, dim=-1).values
    rows = rows if logits.device.type == "cpu" else max(n, 1)
    out = []
    for start in range(0, n, rows):
        part = logits[start : start + rows]
        blocks = part.reshape(part.shape[0], vocab // block, block)
        best = blocks.amax(dim=-1).topk(k, dim=-1).indices
        candidates = blocks.gather(1, best.unsqueeze(-1).expand(-1, k, block)).reshape(part.shape[0], k * block)
        out.append(candidates.topk(k, dim=-1).values)
    return out[0] if len(out) == 1 else torch.cat(out)


def entropy_of_logits(top: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax over the last dimension of ``top`` (already the kept logits, already scaled)."""
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
    tops = []
    for position, values in enumerate(topk_logprobs):
        if len(values) == 0:
            raise ValueError(f"token {position} has no log-probabilities; request logprobs=k from the backend")
        tops.append(sorted(values, reverse=True)[:k])
    return _entropies_of_rows(tops, temperature)


def _entropies_of_rows(rows: Sequence[Sequence[float]], temperature: float) -> list[float]:
    """Entropy of the softmax of each row / temperature (float64), the rows of one length in one tensor.

    A row gets exactly the value it gets alone: the softmax and the sum run along each row with the same kernel
    whatever the number of rows (tests compare with one row at a time). One tensor per length instead of one per
    token is what makes this cheap (~2 us instead of ~40 us per token here).
    """
    by_length: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        by_length.setdefault(len(row), []).append(index)
    out = [0.0] * len(rows)
    for indices in by_length.values():
        batch = torch.from_numpy(np.array([rows[i] for i in indices], dtype=np.float64)) / temperature
        for index, value in zip(indices, entropy_of_logits(batch).tolist()):
            out[index] = value
    return out
