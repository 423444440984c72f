"""``self-consistency``: the majority answer over the candidates (Wang et al., 2023; TTRL's vote)."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.voting import majority_vote
from .base import Selection, SelectionContext, vote_selection
from .candidates import Candidate
from .registry import register_method


@register_method("self-consistency", summary="majority answer over equivalence classes (plain vote)")
def select_self_consistency(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Plain majority vote ([`core.voting.majority_vote`]); the confidence is the majority's share of the answered
    candidates, and each candidate's score is its class's share."""
    result = majority_vote([c.answer for c in candidates], classes=context.classes)
    answered = sum(c is not None for c in result.classes)
    scores = [None if c is None else sum(x == c for x in result.classes) / answered for c in result.classes]
    return vote_selection(result, scores)
