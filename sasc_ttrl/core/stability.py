"""Rollout instability (docs/method.md, steps 2-3): what a per-token entropy sequence is reduced to, and z-scores.

The per-token top-k entropies come from `sasc_ttrl.sampling.entropy` (torch); this module is pure (lists and
numpy). ``std`` is the method's statistic; ``mean``, ``tail``, ``bottom_window`` and ``std_length_matched`` are the
alternatives the vote study compares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEFAULT_TOP_K = 20


def instability(entropies: Sequence[float]) -> float:
    """Population standard deviation of a rollout's per-token entropy sequence (docs/method.md, step 2).

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
