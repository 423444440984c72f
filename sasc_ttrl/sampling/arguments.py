"""The command-line fields of sampling, shared by the commands that sample (``eval``, ``build``, ``prm``,
``self-improve``); `sasc_ttrl.sampling.generation.SamplingSettings.from_arguments` reads them by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.answers import DEFAULT_TIMEOUT_SECONDS
from ..data.prompts import PROMPT_STYLES


@dataclass
class SamplingArguments:
    """How completions are drawn, asked for and graded, as command-line / recipe fields.

    A command keeps its own defaults by declaring a field again with [`sampling_field`], which keeps the help text:
    ``temperature: float = sampling_field("temperature", 0.6)``. Every field has a default, so a subclass may add
    fields with or without one after them (dataclass field order).

    Args:
        temperature: Sampling temperature (> 0); default 0.8.
        top_p: Nucleus sampling mass, in ``(0, 1]``; default 1.0.
        max_tokens: Maximum completion length in tokens; default 256.
        answer_timeout: Seconds allowed per math-verify check (grading, equivalence classes); default
            ``DEFAULT_TIMEOUT_SECONDS`` (5.0).
        prompt_style: How questions are asked, one of `sasc_ttrl.data.prompts.PROMPT_STYLES`; default ``math``.
    """

    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature (> 0)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass, in (0, 1]."})
    max_tokens: int = field(default=256, metadata={"help": "Maximum completion length in tokens."})
    answer_timeout: float = field(default=DEFAULT_TIMEOUT_SECONDS, metadata={"help": "Seconds per math-verify check."})
    prompt_style: str = field(
        default="math", metadata={"help": f"How questions are asked: {', '.join(PROMPT_STYLES)}."}
    )


def sampling_field(name: str, default: Any) -> Any:
    """The field ``name`` of [`SamplingArguments`] with another ``default`` and the same help text.

    Example: ``top_p: float = sampling_field("top_p", 0.95)`` in a subclass gives ``--top_p`` the default 0.95.

    Raises:
        KeyError: when ``name`` is not a field of [`SamplingArguments`].
    """
    return field(default=default, metadata=SamplingArguments.__dataclass_fields__[name].metadata)
