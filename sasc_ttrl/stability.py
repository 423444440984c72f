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
        top = topk_values(flat[start : start + chunk_size], k).float() / temperature
        out[start : start + chunk_size] = _entropy_of_logits(top)
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
    return rollout_statistic(entropies, "std")


def zscore(values: Sequence[float], eps: float = 1e-6) -> list[float]:
    """Z-score within a group: ``(v - mean) / (std + eps)`` with the population std; all zeros when std is 0."""
    if len(values) == 0:
        return []
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std())
    # Equal values can give a std of ~1e-17 in floating point; they are one value, not a spread.
    if std == 0.0 or not math.isfinite(std) or np.ptp(arr) == 0.0:
        return [0.0] * len(arr)
    return ((arr - arr.mean()) / (std + eps)).tolist()


# --- Instability statistics ------------------------------------------------------------------------------------
# Every statistic maps a rollout's top-k entropy sequence to one number where LARGER means LESS stable, so the gate
# and the weights read all of them the same way.
STATISTICS = ("std", "mean", "tail", "bottom_window", "std_length_matched")


def _check_finite(values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError("entropy sequence contains NaN or inf")


def rollout_statistic(
    entropies: Sequence[float], statistic: str = "std", tail_tokens: int = 32, window_tokens: int = 16
) -> float:
    """One rollout's instability under ``statistic`` (larger = less stable).

    * ``std`` (the method's definition): population std of the sequence ([`instability`]).
    * ``mean``: mean entropy.
    * ``tail``: mean entropy over the last ``tail_tokens`` tokens (DeepConf's tail confidence, in entropy form).
    * ``bottom_window``: the largest mean entropy over sliding windows of ``window_tokens`` tokens -- DeepConf's
      lowest group confidence, with the top-k entropy in place of DeepConf's mean negative top-k log-probability
      (both fall as the distribution sharpens; saved rollouts keep the entropies). A sequence shorter than the
      window uses its mean.
    * ``std_length_matched``: the std here; the length correction needs the whole group ([`group_statistic`]).

    An empty sequence gives 0.0 (it has no answer and therefore no vote).
    """
    if statistic not in STATISTICS:
        raise ValueError(f"instability statistic must be one of {STATISTICS}, got {statistic!r}")
    if tail_tokens < 1 or window_tokens < 1:
        raise ValueError(f"tail_tokens and window_tokens must be >= 1, got {tail_tokens} and {window_tokens}")
    if len(entropies) == 0:
        return 0.0
    values = np.asarray(entropies, dtype=np.float64)
    _check_finite(values)
    if statistic in ("std", "std_length_matched"):
        return float(values.std())
    if statistic == "mean":
        return float(values.mean())
    if statistic == "tail":
        return float(values[-tail_tokens:].mean())
    if len(values) <= window_tokens:
        return float(values.mean())
    sums = np.convolve(values, np.ones(window_tokens), mode="valid")
    return float(sums.max() / window_tokens)


def length_matched(values: Sequence[float], lengths: Sequence[int], mask: Sequence[bool] | None = None) -> list[float]:
    """Remove the part of ``values`` explained by completion length, within one group.

    Fits ``value ~ a + b * log(length)`` by least squares over the rollouts in ``mask`` (all when omitted) and
    returns every rollout's residual plus the fitted mean, so the scale stays that of ``values``. With fewer
    than 3 fitted rollouts or no spread in length the values are returned unchanged.
    """
    if len(values) != len(lengths):
        raise ValueError(f"got {len(values)} values but {len(lengths)} lengths")
    mask = [True] * len(values) if mask is None else list(mask)
    y = np.asarray(values, dtype=np.float64)
    x = np.log(np.maximum(np.asarray(lengths, dtype=np.float64), 1.0))
    fit = np.asarray(mask, dtype=bool)
    if fit.sum() < 3 or np.ptp(x[fit]) == 0.0:
        return y.tolist()
    slope, intercept = np.polyfit(x[fit], y[fit], 1)
    return (y - (intercept + slope * x) + y[fit].mean()).tolist()


def group_statistic(
    entropy_seqs: Sequence[Sequence[float]],
    statistic: str = "std",
    mask: Sequence[bool] | None = None,
    tail_tokens: int = 32,
    window_tokens: int = 16,
) -> list[float]:
    """[`rollout_statistic`] of every rollout of a group; ``std_length_matched`` then applies [`length_matched`]
    fitted on the rollouts in ``mask`` (the ones that answered, in a vote)."""
    raw = [rollout_statistic(e, statistic, tail_tokens, window_tokens) for e in entropy_seqs]
    if statistic == "std_length_matched":
        return length_matched(raw, [len(e) for e in entropy_seqs], mask)
    return raw
