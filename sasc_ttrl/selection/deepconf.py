"""``deepconf``: DeepConf's confidence filter and confidence-weighted vote (Fu et al., 2025).

Token confidence ``C_t = -mean`` of the ``k`` largest log-probabilities at position ``t`` (k = 20): large when the
distribution is peaked. Group confidence: the mean of ``C_t`` over a sliding window of ``window`` tokens (the whole
trace when it is shorter). A trace's confidence (``deepconf_mode``): its ``lowest`` group confidence (default), the
mean of its ``bottom10`` % groups, its ``tail`` (last window), or the ``mean`` token confidence. Of the ``m``
answered traces, those whose confidence is at least the ``(1 - eta)`` percentile of theirs are kept, and they vote
with their confidence as weight ([`core.voting.weighted_vote`]).

The keep rule and the bottom-10% count are the authors' (facebookresearch/deepconf, ``deepconf/utils.py``:
``filter_top_confidence`` keeps ``conf >= np.percentile(confs, (1 - top_percent) * 100)``, linear interpolation, so
eta = 0.9 keeps 3 of 4, 7 of 8, 14 of 16 and 57 of 64 distinct confidences, and every trace tied with the threshold;
``calculate_bottom_window_confidence`` averages the ``max(1, int(0.1 x G))`` lowest of ``G`` windows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.voting import weighted_vote
from .base import Selection, SelectionContext, vote_selection
from .candidates import Candidate
from .registry import register_method


def token_confidence(topk_logprobs: Sequence[Sequence[float]]) -> list[float]:
    """``C_t = -mean(top-k log-probabilities at t)`` for every position."""
    return [-float(np.mean(row)) if len(row) else 0.0 for row in topk_logprobs]


def group_confidences(confidences: Sequence[float], window: int) -> list[float]:
    """Mean token confidence of every window of ``window`` consecutive tokens (one group when shorter)."""
    if not len(confidences):
        return []
    values = np.asarray(confidences, dtype=np.float64)
    if len(values) <= window:
        return [float(values.mean())]
    sums = np.convolve(values, np.ones(window), mode="valid")
    return (sums / window).tolist()


def trace_confidence(confidences: Sequence[float], window: int, mode: str = "lowest") -> float:
    """One confidence per trace from its token confidences (see the module docstring); 0.0 for an empty trace."""
    groups = group_confidences(confidences, window)
    if not groups:
        return 0.0
    if mode == "lowest":
        return float(min(groups))
    if mode == "bottom10":
        ordered = sorted(groups)
        return float(np.mean(ordered[: max(1, int(0.1 * len(ordered)))]))
    if mode == "tail":
        return float(groups[-1])
    if mode == "mean":
        return float(np.mean(confidences))
    raise ValueError(f"unknown DeepConf mode {mode!r}")


def keep_most_confident(confidences: Sequence[float], answered: Sequence[bool], eta: float) -> list[bool]:
    """Keep the answered traces whose confidence is at least the ``(1 - eta) x 100`` percentile of the answered
    traces' confidences (numpy's linear interpolation, as the authors' code); unanswered traces are never kept."""
    pool = [i for i, a in enumerate(answered) if a]
    if not pool:
        return [False] * len(confidences)
    threshold = np.percentile([confidences[i] for i in pool], (1.0 - eta) * 100.0)
    kept = {i for i in pool if confidences[i] >= threshold}
    return [i in kept for i in range(len(confidences))]


@register_method(
    "deepconf",
    needs=("token_stats",),
    summary="lowest sliding-window mean of -mean(top-20 logprobs); keep top eta%, confidence-weighted vote",
)
def select_deepconf(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Filter by trace confidence, then vote with the confidences of the kept traces as weights."""
    settings = context.settings
    for c in candidates:
        c.require("topk_logprobs")
    confidences = [
        trace_confidence(token_confidence(c.topk_logprobs), settings.deepconf_window, settings.deepconf_mode)
        for c in candidates
    ]
    kept = keep_most_confident(confidences, [c is not None for c in context.classes], settings.deepconf_eta)
    weights = [conf if keep else 0.0 for conf, keep in zip(confidences, kept)]
    result = weighted_vote([c.answer for c in candidates], weights, classes=context.classes)
    return vote_selection(result, confidences, kept=kept)
