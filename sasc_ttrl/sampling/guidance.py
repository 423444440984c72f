"""Guided re-sampling of questions without consensus (the guided self-improvement idea).

When the plain-majority ratio of a question's candidates is below a threshold, the candidates disagree. The
question is then sampled again with a Socratic hint built from those candidates: which answers they reached and
how often, and questions that push the model to re-check its reasoning rather than a solution. The new candidates
replace the old ones only when their majority ratio is higher (consensus improved); either way the outcome is
recorded in the output row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from ..core.answers import DEFAULT_TIMEOUT_SECONDS, group_equivalent

C = TypeVar("C")

SOCRATIC_QUESTIONS = (
    "What exactly does the question ask for?",
    "Which step of these attempts could have gone wrong?",
    "Can you check the result in another way?",
)


@dataclass
class GuidedOutcome:
    """What guided re-sampling did for one question.

    Attributes:
        triggered: Whether the question was re-sampled (majority ratio below the threshold).
        ratio_before: Plain-majority ratio of the first candidates.
        ratio_after: Plain-majority ratio of the re-sampled candidates (``None`` when not triggered).
        improved: Whether the ratio went up.
        used: Whether the re-sampled candidates replaced the first ones (they do exactly when ``improved``).
        hint: The hint given to the model (``None`` when not triggered).
    """

    triggered: bool
    ratio_before: float
    ratio_after: float | None = None
    improved: bool = False
    used: bool = False
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def majority_ratio(classes: Sequence[int | None]) -> float:
    """Share of all candidates in the plain-majority class (0.0 when none answered)."""
    counts = Counter(c for c in classes if c is not None)
    return max(counts.values()) / len(classes) if counts else 0.0


def socratic_hint(answers: Sequence[str | None], classes: Sequence[int | None]) -> str:
    """A hint that lists the candidates' answers with their counts and asks Socratic questions."""
    counts = Counter(c for c in classes if c is not None)
    representative: dict[int, str] = {}
    for answer, cls in zip(answers, classes):
        if cls is not None:
            representative.setdefault(cls, answer)  # type: ignore[arg-type]
    parts = [f"{representative[c]} ({n} time{'s' if n > 1 else ''})" for c, n in counts.most_common()]
    missing = sum(c is None for c in classes)
    if parts:
        summary = f"Earlier attempts at this problem disagree: they answered {', '.join(parts)}"
        summary += f", and {missing} gave no final answer." if missing else "."
    else:
        summary = "Earlier attempts at this problem gave no final answer."
    return f"{summary} Before answering, ask yourself: {' '.join(SOCRATIC_QUESTIONS)} Then solve it again carefully."


def hinted_question(question: str, hint: str) -> str:
    """The question followed by the hint (the standard math instruction is added by the prompt builder)."""
    return f"{question}\n\nHint: {hint}"


def guided_resample(
    question: str,
    candidates: Sequence[C],
    classes: Sequence[int | None],
    resample: Callable[[str], Sequence[C]],
    threshold: float,
    answer_of: Callable[[C], str | None] = lambda c: c.answer,  # type: ignore[attr-defined]
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> tuple[list[C], list[int | None], GuidedOutcome]:
    """Re-sample a question without consensus with a Socratic hint; keep the better-agreeing candidates.

    Args:
        question: The question text.
        candidates: Its current candidates.
        classes: Their answers' equivalence classes.
        resample: Samples new candidates for a (hinted) question text.
        threshold: Re-sample when the majority ratio is below this.
        answer_of: Reads a candidate's answer.
        timeout: Per-check math-verify timeout.

    Returns:
        The candidates and classes to use, and the [`GuidedOutcome`].
    """
    before = majority_ratio(classes)
    if before >= threshold:
        return list(candidates), list(classes), GuidedOutcome(triggered=False, ratio_before=before)
    answers = [answer_of(c) for c in candidates]
    hint = socratic_hint(answers, classes)
    new = list(resample(hinted_question(question, hint)))
    new_classes = group_equivalent([answer_of(c) for c in new], timeout=timeout)
    after = majority_ratio(new_classes)
    improved = after > before
    outcome = GuidedOutcome(True, before, after, improved=improved, used=improved, hint=hint)
    if improved:
        return new, new_classes, outcome
    return list(candidates), list(classes), outcome
