"""Command-line fields of the stability-aware vote, shared by ``train`` (`SASCConfig`), ``eval`` and ``build``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .answers import DEFAULT_TIMEOUT_SECONDS
from .stability import STATISTICS
from .voting import DEFAULT_WEIGHT_CLIP, DEFAULT_WEIGHTING, WEIGHTINGS, VoteSettings


@dataclass
class VoteArguments:
    """The vote's hyper-parameters as command-line / recipe fields (see [`voting.VoteSettings`]).

    Args:
        filter_ratio: Share of a group's answered rollouts dropped by the stability gate (0 = no gate).
        weight_temperature: Temperature ``T`` of the ``exp`` / ``clipped_exp`` weights.
        vote_weighting: ``clipped_exp`` (the default: exp(-clip(z, -c, c) / T)), ``exp`` (exp(-z/T), the literal
            reading of the method), ``rank`` or ``uniform``
            (gate, then plain majority).
        gate_statistic: Instability statistic of the gate (``std`` is the method's gate).
        weight_statistic: Instability statistic whose z-score sets the weights.
        weight_clip: ``c`` of ``clipped_exp`` (z is clipped to ``[-c, c]``).
        tail_tokens: Tokens of the ``tail`` statistic.
        window_tokens: Window of the ``bottom_window`` statistic.
        answer_timeout: Seconds allowed per math-verify equivalence check (answers are grouped into classes).
    """

    filter_ratio: float = field(
        default=0.2, metadata={"help": "Share of answered rollouts per group dropped as least stable, in [0, 1)."}
    )
    weight_temperature: float = field(
        default=1.0, metadata={"help": "Temperature T of the exp / clipped_exp weights exp(-z / T)."}
    )
    vote_weighting: str = field(
        default=DEFAULT_WEIGHTING,
        metadata={
            "help": f"Vote weights: {', '.join(WEIGHTINGS)} (default clipped_exp, the vote study's winner; exp is the "
            "literal exp(-z / T); uniform = gate + plain majority)."
        },
    )
    gate_statistic: str = field(
        default="std", metadata={"help": f"Instability statistic of the gate: {', '.join(STATISTICS)}."}
    )
    weight_statistic: str = field(
        default="std", metadata={"help": f"Instability statistic of the weights: {', '.join(STATISTICS)}."}
    )
    weight_clip: float = field(default=DEFAULT_WEIGHT_CLIP, metadata={"help": "clipped_exp: z is clipped to [-c, c]."})
    tail_tokens: int = field(default=32, metadata={"help": "Tokens of the 'tail' statistic."})
    window_tokens: int = field(default=16, metadata={"help": "Window of the 'bottom_window' statistic."})
    answer_timeout: float = field(default=DEFAULT_TIMEOUT_SECONDS, metadata={"help": "Seconds per math-verify check."})

    @property
    def vote_settings(self) -> VoteSettings:
        """The vote hyper-parameters as the pure core takes them: every field of this class, by name (each is a
        [`voting.VoteSettings`] field; ``VoteSettings`` validates them)."""
        return VoteSettings(**{f.name: getattr(self, f.name) for f in fields(VoteArguments)})
