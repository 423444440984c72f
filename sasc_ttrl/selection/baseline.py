"""``baseline``: the first sampled candidate, unscored -- what a single sample gives."""

from __future__ import annotations

from collections.abc import Sequence

from .base import Selection, SelectionContext
from .candidates import Candidate
from .registry import register_method


@register_method("baseline", summary="the first sampled candidate, no scoring (one sample)")
def select_baseline(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Select candidate 0; it needs only that one sample (``samples_used=1``)."""
    if not candidates:
        return Selection(None, None, None, [], 0)
    return Selection(
        index=0,
        pseudo_label=candidates[0].answer,
        confidence=None,
        scores=[None] * len(candidates),
        samples_used=1,
    )
