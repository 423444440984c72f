"""Diagnostics of pseudo-labels against hidden answers (TTRL's definitions), never used in a reward.

* ``label_accuracy``: share of groups whose pseudo-label is equivalent to the hidden answer.
* ``reward_accuracy``: share of rollouts whose pseudo-reward equals the reward the hidden answer would give.
* ``majority_ratio``: share of a group that answered the pseudo-label, averaged over groups.

Collapse signals (label-free, what TTRL users watch for): ``unanimous_fraction``, the share of groups whose every
answered rollout is in one class (the pseudo-label had no competitor), and ``label_entropy``, the entropy in bits of
the pseudo-labels across the batch's groups (0 when every question gets the same label; no label counts as one
more label). A batch holds few groups, so the batch's entropy says little about a run that answers *every* question
alike; [`RecentLabels`] keeps the pseudo-labels of the last questions voted on, across batches, and
``top_label_share`` of that window is the share of those questions that got the most common label (about
``1 / (number of distinct answers)`` on a healthy run, 1.0 on a run that answers "5" to everything). A vote that has
become unanimous everywhere while answers go missing or a held-out score falls, or one label for most questions, is
the collapse `sasc_ttrl.training.collapse.CollapseGuard` warns about.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from .answers import DEFAULT_TIMEOUT_SECONDS, is_equivalent
from .voting import VoteResult


def group_diagnostics(
    votes: Sequence[VoteResult],
    answers: Sequence[Sequence[str | None]],
    instabilities: Sequence[Sequence[float]] | None = None,
    golds: Sequence[str | None] | None = None,
    reference_votes: Sequence[VoteResult] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, float]:
    """Summarise the votes of a batch of groups.

    Args:
        votes: The vote of each group (the one that produced the rewards).
        answers: The extracted answers of each group.
        instabilities: The instabilities of each group, when known.
        golds: The hidden answer of each group, or ``None`` when the data set has none.
        reference_votes: A second vote of the same groups (the plain majority) to compare labels with.
        timeout: Per-check math-verify timeout.

    Returns:
        A flat dict of scalar metrics.
    """
    n_rollouts = sum(len(v.classes) for v in votes)
    answered = sum(c is not None for v in votes for c in v.classes)
    metrics = {
        "majority_ratio": float(np.mean([v.majority_ratio for v in votes])),
        "kept_fraction": sum(sum(v.kept) for v in votes) / max(answered, 1),
        "no_answer_fraction": 1.0 - answered / max(n_rollouts, 1),
        "no_label_fraction": float(np.mean([v.pseudo_label is None for v in votes])),
        "unanimous_fraction": float(np.mean([_unanimous(v) for v in votes])),
        "label_entropy": label_entropy([v.pseudo_label for v in votes]),
    }
    if instabilities is not None:
        flat = [s for group in instabilities for s in group]
        metrics["mean_instability"] = float(np.mean(flat)) if flat else 0.0
    if reference_votes is not None:
        differs = [not _same_label(v.pseudo_label, r.pseudo_label, timeout) for v, r in zip(votes, reference_votes)]
        metrics["label_differs_from_majority"] = float(np.mean(differs))
    if golds is not None and any(g is not None for g in golds):
        label_ok, reward_ok, true_rewards = [], [], []
        ref_ok = []
        for i, (vote, group_answers, gold) in enumerate(zip(votes, answers, golds)):
            if gold is None:
                continue
            label_ok.append(is_equivalent(str(gold), vote.pseudo_label, timeout=timeout))
            truth = [float(is_equivalent(str(gold), a, timeout=timeout)) for a in group_answers]
            true_rewards.extend(truth)
            reward_ok.extend(float(t == r) for t, r in zip(truth, vote.rewards))
            if reference_votes is not None:
                ref_ok.append(is_equivalent(str(gold), reference_votes[i].pseudo_label, timeout=timeout))
        metrics["label_accuracy"] = float(np.mean(label_ok))
        metrics["reward_accuracy"] = float(np.mean(reward_ok))
        metrics["rollout_accuracy"] = float(np.mean(true_rewards))
        if reference_votes is not None:
            metrics["majority_label_accuracy"] = float(np.mean(ref_ok))
    return metrics


def _unanimous(vote: VoteResult) -> bool:
    """Whether the group's answered rollouts all fall in one class (and there is a label)."""
    answered = {c for c in vote.classes if c is not None}
    return vote.pseudo_label is not None and len(answered) == 1


def label_entropy(labels: Sequence[str | None]) -> float:
    """Shannon entropy in bits of the labels' empirical distribution (``None`` is one more label); 0 for none."""
    if not labels:
        return 0.0
    _, counts = np.unique(np.array([repr(x) for x in labels]), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() + 0.0)


def top_label_share(labels: Sequence[str | None]) -> float:
    """Share of ``labels`` equal to the most common label that is not ``None`` (0.0 when every label is ``None``).

    Labels are compared as strings: a collapsed run repeats one answer verbatim, and a string count costs nothing,
    unlike a math-verify check of every pair.
    """
    counts = Counter(str(x).strip() for x in labels if x is not None)
    return max(counts.values()) / len(labels) if counts else 0.0


class RecentLabels:
    """The pseudo-labels of the last ``window`` distinct questions voted on, across batches.

    A question voted on again (a second epoch, ``num_iterations``) replaces its older label and counts once.

    Args:
        window: Distinct questions kept (the oldest leaves first).
        min_questions: Fewer questions than this give no share (too few to call a label common).
    """

    def __init__(self, window: int = 16, min_questions: int = 8):
        if not 1 <= min_questions <= window:
            raise ValueError(f"need 1 <= min_questions <= window, got {min_questions}, {window}")
        self.window = window
        self.min_questions = min_questions
        self._labels: OrderedDict[Hashable, str | None] = OrderedDict()

    def update(self, items: Iterable[tuple[Hashable, str | None]]) -> None:
        """Record ``(question key, pseudo-label)`` pairs in the order they were voted on."""
        for key, label in items:
            self._labels.pop(key, None)
            self._labels[key] = label
            while len(self._labels) > self.window:
                self._labels.popitem(last=False)

    def top_label_share(self) -> float | None:
        """``top_label_share`` of the window, or ``None`` while it holds fewer than ``min_questions`` questions."""
        if len(self._labels) < self.min_questions:
            return None
        return top_label_share(list(self._labels.values()))


def _same_label(a: str | None, b: str | None, timeout: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return is_equivalent(a, b, timeout=timeout)
