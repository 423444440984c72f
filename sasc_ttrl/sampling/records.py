"""The record of one sampled completion (text, token ids, answer, per-token top-k entropies) and its grading.

Every backend of `sasc_ttrl.sampling.generation` returns it, every samples file stores it (`to_dict`), and the
selection methods wrap it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..core.answers import DEFAULT_TIMEOUT_SECONDS, extract_answer, is_equivalent
from ..core.stability import instability as rollout_instability


@dataclass
class SampleRecord:
    """One sampled completion.

    Attributes:
        text: The decoded completion (special tokens skipped).
        token_ids: The completion's token ids, up to and including the first end-of-sequence token.
        answer: The answer extracted from ``text`` ([`extract_answer`]), or ``None``.
        entropies: The top-k entropy of each completion token (one per entry of ``token_ids``).
        correct: Whether ``answer`` is equivalent to the reference answer; ``None`` until graded.
    """

    text: str
    token_ids: list[int]
    answer: str | None
    entropies: list[float]
    correct: bool | None = None

    @property
    def instability(self) -> float:
        """Population std of the entropy sequence ([`core.stability.instability`])."""
        return rollout_instability(self.entropies)

    def to_dict(self, entropy_decimals: int | None = None) -> dict[str, Any]:
        """A JSON-ready dict; ``entropy_decimals`` rounds the entropies to keep files small."""
        record = asdict(self)
        if entropy_decimals is not None:
            record["entropies"] = [round(e, entropy_decimals) for e in self.entropies]
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> SampleRecord:
        return cls(
            text=record["text"],
            token_ids=list(record["token_ids"]),
            answer=record["answer"],
            entropies=[float(e) for e in record["entropies"]],
            correct=record.get("correct"),
        )


def grade_records(
    records: Iterable[SampleRecord], gold: str | None, timeout: float | None = DEFAULT_TIMEOUT_SECONDS
) -> None:
    """Set ``correct`` on each record: its answer is equivalent to ``gold`` (``None`` when ``gold`` is ``None``)."""
    verdicts: dict[str | None, bool] = {}
    for record in records:
        if gold is None:
            record.correct = None
            continue
        if record.answer not in verdicts:
            verdicts[record.answer] = is_equivalent(gold, record.answer, timeout=timeout)
        record.correct = verdicts[record.answer]


def make_record(text: str, token_ids: list[int], entropies: list[float]) -> SampleRecord:
    """A record of a decoded completion, with its answer extracted ([`extract_answer`]); not graded yet."""
    return SampleRecord(text=text, token_ids=token_ids, answer=extract_answer(text), entropies=entropies)
