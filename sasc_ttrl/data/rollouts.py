"""Rollouts of a builder output, grouped by question, and the answer they are judged against.

The trainers built on ``sasc-ttrl build`` (the verifier / PRM, calibration SFT) read its ``<method>.jsonl`` rows
written with ``--save_candidates``: every row holds the question, the selection's ``pseudo_label``, the hidden
``reference_answer`` when the data set has one, and every candidate (``text``, ``answer``, token statistics).

A rollout is judged against a *target*: ``pseudo_label`` (label-free, the default) or ``gold`` (the reference
answer, only when the user allows it). Every output these trainers write records which one was used.

[`load_rollouts`] reads saved rollouts of any kind (an eval samples file or a builder output with candidates) for
re-voting (`sasc-ttrl compare-votes`, the vote study).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.answers import DEFAULT_TIMEOUT_SECONDS, group_equivalent, is_equivalent
from ..core.vote_comparison import Question
from .store import read_samples

logger = logging.getLogger(__name__)


TARGETS = ("pseudo_label", "gold")


@dataclass
class QuestionRollouts:
    """One question of a builder output and its candidates.

    Attributes:
        key: The question's id.
        question: The question text (without the prompt template).
        pseudo_label: The builder's selected answer (``None`` when no candidate answered).
        gold: The hidden reference answer, or ``None``.
        rollouts: The candidates as the builder wrote them (``text``, ``answer``, and optional statistics such as
            ``mean_token_probability``).
        index: Position of the question in the file.
    """

    key: str
    question: str
    pseudo_label: str | None
    gold: str | None
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    index: int = 0

    def target(self, target: str) -> str | None:
        """The answer rollouts are judged against: the pseudo-label or, for ``gold``, the reference answer."""
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        return self.pseudo_label if target == "pseudo_label" else self.gold


def read_builder_rollouts(path: str | Path, target: str = "pseudo_label") -> list[QuestionRollouts]:
    """The questions of a builder ``<method>.jsonl`` file with their candidates.

    Args:
        path: A rows file of ``sasc-ttrl build --save_candidates``.
        target: ``pseudo_label`` or ``gold``; with ``gold``, every row must carry a ``reference_answer``.

    Raises:
        ValueError: naming the file and line of a row that is not JSON, lacks the ``question`` or ``candidates``
            column (the build was run without ``--save_candidates``), or lacks the reference answer ``gold`` needs.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"builder output {path} does not exist")
    out: list[QuestionRollouts] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON ({err})") from err
        if "question" not in row:
            raise ValueError(f"{path}:{number} has no 'question' column: not a sasc-ttrl build output")
        if not isinstance(row.get("candidates"), list):
            raise ValueError(f"{path}:{number} has no 'candidates' column: run sasc-ttrl build with --save_candidates")
        gold = row.get("reference_answer")
        if target == "gold" and gold is None:
            raise ValueError(f"{path}:{number} has no 'reference_answer', which target='gold' needs")
        out.append(
            QuestionRollouts(
                key=str(row.get("id", len(out))),
                question=row["question"],
                pseudo_label=row.get("pseudo_label"),
                gold=None if gold is None else str(gold),
                rollouts=list(row["candidates"]),
                index=len(out),
            )
        )
    if not out:
        raise ValueError(f"{path} holds no rows")
    return out


def builder_prompt_style(path: str | Path) -> str:
    """The prompt style the builder output ``path`` was sampled with: ``prompt_style`` of the ``build_config.json``
    beside it, or ``math`` (the builder's default) when that file or field is absent."""
    config = Path(path).parent / "build_config.json"
    if not config.is_file():
        return "math"
    try:
        return json.loads(config.read_text()).get("prompt_style", "math")
    except json.JSONDecodeError as err:
        raise ValueError(f"{config} is not valid JSON ({err})") from err


def agreement(
    answers: Sequence[str | None], target: str | None, timeout: float | None = DEFAULT_TIMEOUT_SECONDS
) -> list[bool]:
    """Whether each answer is equivalent to ``target`` (all ``False`` without a target; no answer is ``False``)."""
    verdicts: dict[str | None, bool] = {}
    out = []
    for answer in answers:
        if answer not in verdicts:
            verdicts[answer] = target is not None and answer is not None and is_equivalent(target, answer, timeout)
        out.append(verdicts[answer])
    return out


def load_rollouts(path: str | Path, timeout: float | None = DEFAULT_TIMEOUT_SECONDS) -> list[Question]:
    """Questions of an eval samples file (``samples``) or a builder output saved with candidates (``candidates``).

    Raises:
        ValueError: naming the file and question when a rollout lacks its answer, correctness or entropies.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no rollouts file at {path}")
    questions = []
    for key, line in read_samples(path).items():
        rollouts = line.get("samples", line.get("candidates"))
        if not rollouts:
            raise ValueError(
                f"{path}: question {key} has no 'samples' (eval) or 'candidates' (build --save_candidates)"
            )
        for i, r in enumerate(rollouts):
            missing = [name for name in ("answer", "correct", "entropies") if name not in r]
            if missing:
                raise ValueError(f"{path}: question {key}, rollout {i} lacks {missing} (needs graded rollouts)")
        answers = [r["answer"] for r in rollouts]
        questions.append(
            Question(
                key=f"{path.stem}/{key}",
                answers=answers,
                correct=[bool(r["correct"]) for r in rollouts],
                entropies=[list(map(float, r["entropies"])) for r in rollouts],
                classes=group_equivalent(answers, timeout=timeout),
            )
        )
    return questions
