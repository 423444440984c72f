"""Guidance for hard questions (Guided Self-Improvement) and guided re-sampling of questions without consensus.

Ding et al., "Mitigating Tail Narrowing in LLM Self-Improvement via Socratic-Guided Sampling" (2024; code:
Yiwen-Ding/Guided-Self-Improvement, ``src/utils.py``) re-sample the queries a model rarely solves with one of four
guidance signals. Here each is a pure function of what a self-improvement round knows about a question
([`GUIDANCE_STRATEGIES`]):

* ``socratic`` (this project's label-free hint, the default): the answers the attempts reached and how often, and
  questions that make the model re-check its steps ([`socratic_hint`]);
* ``answer`` (answer-driven): the target answer is given with the question ([`answer_hint`]);
* ``rationale`` (rationale-driven): a reference rationale is given as a guide ([`rationale_hint`]);
* ``interactive`` (interactive sampling): a teacher model is shown a wrong attempt and the target answer and asked
  for the first wrong step ([`teacher_messages`]); its feedback becomes the hint ([`interactive_hint`]);
* ``state_reset``: sampling restarts from a step prefix of an attempt that reached the target
  ([`state_reset_prefix`]); the paper restarts from a prefix of the reference rationale, which is the fallback here
  when no attempt reached the target (its [`answer_free_prefix`]).

[`guided_resample`] is the builder's consensus rule: when the plain-majority ratio of a question's candidates is
below a threshold, the question is sampled again with a Socratic hint, and the new candidates replace the old ones
only when their majority ratio is higher (consensus improved); either way the outcome is recorded in the output row.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from ..core.answers import DEFAULT_TIMEOUT_SECONDS, extract_answer, group_equivalent
from ..core.steps import step_spans

logger = logging.getLogger(__name__)
C = TypeVar("C")
# (chat messages) -> the teacher's reply; raises RuntimeError (e.g. `KeyStepError`) when it cannot answer.
Teacher = Callable[[list[dict[str, str]]], str]
_CALCULATOR = re.compile(r"<<[^<>]*>>")

GUIDANCE_STRATEGIES = ("socratic", "answer", "rationale", "interactive", "state_reset")
TEACHER_SYSTEM_PROMPT = (
    "You are a patient teacher who corrects mistakes and guides students to find the correct answer on their own. "
    "The student's solution to the following math problem is wrong. Identify the first incorrect step and explain "
    "briefly why it is wrong. Do not write the full solution."
)
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


def answer_hint(target: str) -> str:
    """The answer-driven hint: the target answer is given (the paper appends it to the question)."""
    return f"The final answer is {target}. Show the step-by-step reasoning that reaches it."


def rationale_hint(rationale: str) -> str:
    """The rationale-driven hint: a reference rationale to use as a guide while writing one's own solution (GSM8K's
    calculator annotations ``<<16-3=13>>`` are dropped)."""
    text = _CALCULATOR.sub("", rationale).strip()
    return f"Here is a reference solution; use it as a guide and write your own solution.\n{text}"


def teacher_messages(question: str, attempt: str, target: str | None) -> list[dict[str, str]]:
    """The chat messages asking a teacher for the first wrong step of ``attempt`` (told the target answer when
    there is one, as in the paper's teacher prompt)."""
    parts = [f"Question:\n{question}", f"Student's wrong solution:\n{attempt.strip()}"]
    if target is not None:
        parts.append(f"Correct final answer:\n{target}")
    parts.append("Your correction:")
    return [
        {"role": "system", "content": TEACHER_SYSTEM_PROMPT},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def interactive_hint(attempt: str, feedback: str) -> str:
    """The student's hint of interactive sampling: its own wrong attempt and the teacher's correction."""
    return (
        f"An earlier attempt was:\n{attempt.strip()}\nA teacher's correction of it:\n{feedback.strip()}\n"
        "Write a revised, complete solution."
    )


def answer_free_prefix(text: str) -> str:
    """The longest prefix of ``text`` that ends at a step boundary and states no final answer yet ("" if none)."""
    best = ""
    for _, end in step_spans(text):
        prefix = text[:end]
        if extract_answer(prefix) is not None:
            break
        best = prefix
    return best


def state_reset_prefix(texts: Sequence[str], agree: Sequence[bool]) -> str | None:
    """The state to restart from: the longest answer-free step prefix ([`answer_free_prefix`]) among the attempts
    that agree with the target (ties: the earliest); ``None`` when no agreeing attempt has one.

    >>> state_reset_prefix(["2 + 2 = 5. So \\\\boxed{5}.", "2 + 2 = 4. So \\\\boxed{4}."], [False, True])
    '2 + 2 = 4.'
    """
    if len(texts) != len(agree):
        raise ValueError(f"got {len(agree)} agreement flags for {len(texts)} attempts")
    prefixes = [answer_free_prefix(t) for t, ok in zip(texts, agree) if ok]
    best = max(prefixes, key=len, default="")
    return best or None


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


@dataclass
class GuidancePlan:
    """How one hard question is sampled again.

    Attributes:
        hint: Text added to the question ([`hinted_question`]); ``None`` for ``state_reset``.
        prefix: Assistant text sampling restarts from (``state_reset``); the rollout is ``prefix`` + continuation.
        note: Why the question is not guided (no target answer, no reference rationale, no prefix, teacher error).
    """

    hint: str | None = None
    prefix: str | None = None
    note: str | None = None

    @property
    def guided(self) -> bool:
        """Whether the question is sampled again."""
        return self.hint is not None or self.prefix is not None


def plan_guidance(
    strategy: str,
    question: str,
    texts: Sequence[str],
    answers: Sequence[str | None],
    classes: Sequence[int | None],
    agree: Sequence[bool],
    target: str | None,
    rationale: str | None = None,
    teacher: Teacher | None = None,
) -> GuidancePlan:
    """The guidance of one hard question under ``strategy`` (see the module docstring).

    Args:
        strategy: One of [`GUIDANCE_STRATEGIES`].
        question: The question text.
        texts: The round's attempts.
        answers: Their answers.
        classes: Their answers' equivalence classes.
        agree: Whether each attempt agrees with the target.
        target: The target answer (pseudo-label or reference answer), ``None`` when there is none.
        rationale: The reference rationale, when the data has one (``rationale``; ``state_reset``'s fallback).
        teacher: Answers chat messages (``interactive``).
    """
    if strategy == "socratic":
        return GuidancePlan(hint=socratic_hint(answers, classes))
    if strategy == "answer":
        return GuidancePlan(hint=answer_hint(target)) if target is not None else GuidancePlan(note="no target answer")
    if strategy == "rationale":
        if not rationale or not rationale.strip():
            return GuidancePlan(note="no reference rationale")
        return GuidancePlan(hint=rationale_hint(rationale))
    if strategy == "state_reset":
        prefix = state_reset_prefix(texts, agree) or (answer_free_prefix(rationale) if rationale else "")
        return GuidancePlan(prefix=prefix) if prefix else GuidancePlan(note="no answer-free step prefix")
    if strategy == "interactive":
        if teacher is None:
            raise ValueError("interactive guidance needs a teacher")
        wrong = next((t for t, ok in zip(texts, agree) if not ok and t.strip()), None)
        if wrong is None:
            return GuidancePlan(note="no wrong attempt to correct")
        try:
            feedback = teacher(teacher_messages(question, wrong, target))
        except RuntimeError as err:
            logger.warning("teacher failed (question not guided, run goes on): %s", err)
            return GuidancePlan(note=f"teacher failed: {err}")
        return GuidancePlan(hint=interactive_hint(wrong, feedback))
    raise ValueError(f"guidance must be one of {GUIDANCE_STRATEGIES}, got {strategy!r}")
