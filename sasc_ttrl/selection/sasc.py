"""``sasc``: the trainer's stability gate and weighted vote ([`core.voting.stability_vote`]) with its settings."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.voting import stability_vote
from .base import Selection, SelectionContext, vote_selection
from .candidates import Candidate
from .registry import register_method


@register_method("sasc", summary="drop the least stable 20% (top-k entropy std), weighted vote (clipped exp(-z))")
def select_sasc(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """The stability-aware vote of the online reward on the candidates' sampling-time top-k entropies; each
    candidate's score is its vote weight (0 when gated out), the confidence the winner's share of the weight."""
    settings = context.settings.vote
    instabilities = [c.instability for c in candidates]
    result = stability_vote(
        [c.answer for c in candidates], [c.record.entropies for c in candidates], settings, classes=context.classes
    )
    return vote_selection(
        result,
        result.weights,
        kept=result.kept,
        instabilities=[round(s, 6) for s in instabilities],
    )
