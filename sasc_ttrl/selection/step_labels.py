"""Monte-Carlo step labels for a process reward model (Math-Shepherd; Let's Verify Step by Step).

A rollout is split into reasoning steps ([`selection.steps`]). For each step ``j``, ``k`` continuations are sampled
from the prompt followed by the rollout's text up to the end of step ``j``; the step's *score* is the share of
continuations whose final answer is equivalent to the target (the pseudo-label, or the gold answer when allowed),
and its hard *label* is 1 when

* ``rule="any"``: at least one continuation reaches the target (Math-Shepherd's hard estimate), or
* ``rule="share"``: the share reaches ``threshold``.

A prefix that already states a final answer (typically the last step) needs no sampling: all ``k`` "continuations"
are that answer. The PRM reads the question as the user turn, then the steps, each followed by the separator; the
label of a step sits on the separator's last token and every other token is ignored (-100) ([`encode_steps`]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.answers import DEFAULT_TIMEOUT_SECONDS, extract_answer
from ..core.steps import step_spans
from ..data.rollouts import TARGETS, agreement

RULES = ("any", "share")
IGNORE_INDEX = -100

# (question, prefixes, k) -> for each prefix, the k continuation texts.
ContinueFn = Callable[[str, Sequence[str], int], list[list[str]]]


@dataclass
class StepLabelSettings:
    """How steps are labelled.

    Args:
        k: Continuations sampled per step prefix.
        rule: ``any`` (good when at least one continuation reaches the target) or ``share``.
        threshold: With ``share``: the share of continuations that must reach the target.
        target: ``pseudo_label`` (label-free) or ``gold`` (the reference answer; only when allowed).
    """

    k: int = field(default=4, metadata={"help": "Continuations sampled per step prefix."})
    rule: str = field(default="any", metadata={"help": f"Step label rule: {' or '.join(RULES)}."})
    threshold: float = field(default=0.5, metadata={"help": "rule=share: share of continuations that must agree."})
    target: str = field(
        default="pseudo_label", metadata={"help": f"Answer continuations must reach: {' or '.join(TARGETS)}."}
    )

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")


def label_from_hits(hits: int, k: int, rule: str = "any", threshold: float = 0.5) -> int:
    """The hard label of a step whose ``k`` continuations reached the target ``hits`` times."""
    if not 0 <= hits <= k:
        raise ValueError(f"hits must be in [0, k={k}], got {hits}")
    if rule == "any":
        return int(hits > 0)
    if rule == "share":
        return int(hits / k >= threshold)
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def step_prefixes(text: str) -> tuple[list[str], list[str]]:
    """The steps of ``text`` and, for each, the text up to the end of that step (the original spacing kept)."""
    spans = step_spans(text)
    return [text[a:b] for a, b in spans], [text[:b] for _, b in spans]


def label_steps(
    question: str,
    texts: Sequence[str],
    target: str | None,
    continue_fn: ContinueFn,
    settings: StepLabelSettings,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> list[dict[str, Any]]:
    """Monte-Carlo labels of every step of every rollout of one question.

    All undecided prefixes of the question go to ``continue_fn`` in one call.

    Args:
        question: The question text.
        texts: The rollouts' completions.
        target: The answer continuations must reach; ``None`` (no pseudo-label) makes every step bad.
        continue_fn: Samples ``k`` continuations of the question's prompt followed by each prefix.
        settings: ``k``, the rule and its threshold.
        timeout: Per-check math-verify timeout.

    Returns:
        One dict per rollout: ``steps``, ``hits`` (continuations reaching the target), ``scores`` (``hits / k``),
        ``labels`` (0/1 by the rule) and ``decided`` (whether the prefix already stated its answer).
    """
    k = settings.k
    split = [step_prefixes(t) for t in texts]
    stated = [[extract_answer(p) for p in prefixes] for _, prefixes in split]
    todo = [(i, j) for i, (_, prefixes) in enumerate(split) for j in range(len(prefixes)) if stated[i][j] is None]
    sampled = continue_fn(question, [split[i][1][j] for i, j in todo], k) if todo else []
    if len(sampled) != len(todo) or any(len(c) != k for c in sampled):
        raise ValueError(f"continue_fn must return {k} continuations for each of the {len(todo)} prefixes")
    continuations = {pos: conts for pos, conts in zip(todo, sampled)}
    out = []
    for i, (steps, prefixes) in enumerate(split):
        hits, decided = [], []
        for j, prefix in enumerate(prefixes):
            if stated[i][j] is not None:
                hits.append(k if agreement([stated[i][j]], target, timeout)[0] else 0)
                decided.append(True)
            else:
                answers = [extract_answer(prefix + c) for c in continuations[(i, j)]]
                hits.append(sum(agreement(answers, target, timeout)))
                decided.append(False)
        out.append(
            {
                "steps": steps,
                "hits": hits,
                "scores": [h / k for h in hits],
                "labels": [label_from_hits(h, k, settings.rule, settings.threshold) for h in hits],
                "decided": decided,
            }
        )
    return out


def prm_prefix(tokenizer: Any, question: str) -> list[int]:
    """Token ids before the first step: the question as the user turn (chat template) or ``question + "\\n\\n"``."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(f"{question}\n\n")["input_ids"]


def encode_steps(
    tokenizer: Any,
    question: str,
    steps: Sequence[str],
    labels: Sequence[int | None] | None = None,
    separator: str = "\n",
    max_length: int | None = None,
) -> dict[str, list[int]]:
    """The PRM's input: prefix, then each step's tokens followed by the separator's tokens.

    Steps and separators are tokenized one by one, so training and scoring see the same ids. With ``labels`` the
    result has ``labels``: the step's label on its separator's last token (-100 for a ``None`` label, a step left
    out of the loss), -100 elsewhere. ``positions`` lists the
    separator positions (one per step that fits in ``max_length``; later steps are cut off).
    """
    if labels is not None and len(labels) != len(steps):
        raise ValueError(f"got {len(labels)} labels for {len(steps)} steps")
    sep_ids = tokenizer(separator, add_special_tokens=False)["input_ids"]
    if not sep_ids:
        raise ValueError(f"the separator {separator!r} has no tokens")
    ids = list(prm_prefix(tokenizer, question))
    positions: list[int] = []
    for step in steps:
        piece = tokenizer(step, add_special_tokens=False)["input_ids"] + sep_ids
        if max_length is not None and len(ids) + len(piece) > max_length:
            break
        ids.extend(piece)
        positions.append(len(ids) - 1)
    out: dict[str, list[int]] = {"input_ids": ids, "positions": positions}
    if labels is not None:
        token_labels = [IGNORE_INDEX] * len(ids)
        for pos, label in zip(positions, labels):
            token_labels[pos] = IGNORE_INDEX if label is None else int(label)
        out["labels"] = token_labels
    return out
