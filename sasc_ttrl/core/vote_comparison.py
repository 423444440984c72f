"""Re-voting saved rollouts with vote variants, paired, with bootstrap intervals (pure: lists in, numbers out).

For each k, every question's ``n`` rollouts are subsampled ``resamples`` times (k of them, without replacement; all
of them when k = n); every variant votes on the *same* subsets ([`voting.majority_vote`] or
[`voting.stability_vote`]), so differences between variants are paired. A vote is correct when the first rollout
of the winning class is correct. Accuracy is averaged over subsets, then over questions; the 95% intervals come
from a bootstrap over questions, for each variant and for its paired difference to majority voting.

[`signal_quality`] reports, per instability statistic, how well it separates right from wrong rollouts of the
same question (within-question AUROC: the chance that a correct rollout is the more stable one of a
correct/incorrect pair, ties counting one half; 0.5 = no signal) and its correlation with completion length (the
length confound). The command is ``sasc-ttrl compare-votes`` (`sasc_ttrl.commands.compare_votes`).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .metrics import renumber_classes, within_group_auroc
from .stability import STATISTICS, group_statistic
from .voting import VoteSettings, majority_vote, stability_vote, vote_from_scores

logger = logging.getLogger(__name__)

MAJORITY = "majority"
DEFAULT_VARIANT = "sasc default: gate std + clipped_exp(std), c=1"


def default_variants() -> dict[str, VoteSettings | None]:
    """The variants compared by default: majority voting, the default vote, the literal exp(-z), the gate and the
    weight alone, other bounded weights, and every statistic as gate + weight (``None`` = plain majority)."""
    v = VoteSettings
    variants: dict[str, VoteSettings | None] = {MAJORITY: None, DEFAULT_VARIANT: v()}
    extra = [
        v(vote_weighting="exp"),
        v(vote_weighting="uniform"),
        v(filter_ratio=0.0),
        v(vote_weighting="clipped_exp", weight_clip=0.5),
        v(vote_weighting="rank"),
        v(vote_weighting="exp", weight_temperature=4.0),
        v(weight_statistic="mean"),
        v(weight_statistic="mean", vote_weighting="rank"),
        v(weight_statistic="std_length_matched"),
        v(weight_statistic="std_length_matched", vote_weighting="rank"),
    ]
    for statistic in STATISTICS[1:]:
        extra.append(v(gate_statistic=statistic, weight_statistic=statistic))
    extra.append(v(gate_statistic="mean", vote_weighting="uniform"))
    for settings in extra:
        variants[variant_name(settings)] = settings
    return variants


def variant_name(settings: VoteSettings) -> str:
    """A readable name: ``gate std + exp(mean)``, ``no gate + rank(std)``, ``gate mean@0.3 + uniform``, ..."""
    gate = "no gate" if settings.filter_ratio == 0 else f"gate {settings.gate_statistic}"
    if settings.filter_ratio not in (0.0, 0.2):
        gate += f"@{settings.filter_ratio:g}"
    if settings.vote_weighting == "uniform":
        weight = "uniform"
    else:
        weight = f"{settings.vote_weighting}({settings.weight_statistic})"
        if settings.vote_weighting in ("exp", "clipped_exp") and settings.weight_temperature != 1.0:
            weight += f" T={settings.weight_temperature:g}"
        if settings.vote_weighting == "clipped_exp" and settings.weight_clip != VoteSettings.weight_clip:
            weight += f" c={settings.weight_clip:g}"
    return f"{gate} + {weight}"


def parse_variant(spec: str) -> VoteSettings:
    """A variant from ``"gate_statistic=mean,vote_weighting=rank"`` (fields of [`VoteSettings`])."""
    known = {f.name: f for f in fields(VoteSettings)}
    kwargs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "=" not in part:
            raise ValueError(f"variant {spec!r}: expected key=value pairs, got {part!r}")
        key, value = (x.strip() for x in part.split("=", 1))
        if key not in known or key == "answer_timeout":
            raise ValueError(f"variant {spec!r}: unknown field {key!r}")
        kind = type(getattr(VoteSettings(), key))
        kwargs[key] = kind(value)
    return VoteSettings(**kwargs)


@dataclass
class Question:
    """The saved rollouts of one question."""

    key: str
    answers: list[str | None]
    correct: list[bool]
    entropies: list[list[float]]
    classes: list[int | None] = field(default_factory=list)
    _scores: dict[tuple, list[float]] = field(default_factory=dict, repr=False, compare=False)

    def scores(self, statistic: str, settings: VoteSettings) -> list[float] | None:
        """Every rollout's instability under ``statistic``, computed once; ``None`` for a statistic that depends on
        the group voting (``std_length_matched``), which each subset computes itself."""
        if statistic == "std_length_matched":
            return None
        key = (statistic, settings.tail_tokens, settings.window_tokens)
        if key not in self._scores:
            self._scores[key] = group_statistic(
                self.entropies, statistic, tail_tokens=settings.tail_tokens, window_tokens=settings.window_tokens
            )
        return self._scores[key]


def subsets(n: int, k: int, resamples: int, rng: random.Random) -> list[list[int]]:
    """The index subsets voted on: all ``n`` when ``k >= n``, else ``resamples`` random k-subsets."""
    if k >= n:
        return [list(range(n))]
    return [sorted(rng.sample(range(n), k)) for _ in range(resamples)]


def vote_accuracy(question: Question, subset: list[int], settings: VoteSettings | None) -> float:
    """1.0 when the vote of ``settings`` (majority when ``None``) on ``subset`` picks a correct answer."""
    answers = [question.answers[i] for i in subset]
    classes = renumber_classes([question.classes[i] for i in subset])
    gate, weight = (
        (None, None)
        if settings is None
        else (
            question.scores(settings.gate_statistic, settings),
            question.scores(settings.weight_statistic, settings),
        )
    )
    if settings is None:
        vote = majority_vote(answers, classes=classes)
    elif gate is not None and weight is not None:  # per-rollout statistics: the same whatever the subset
        vote = vote_from_scores(answers, [gate[i] for i in subset], [weight[i] for i in subset], settings, classes)
    else:
        vote = stability_vote(answers, [question.entropies[i] for i in subset], settings, classes=classes)
    if vote.label_class is None:
        return 0.0
    winner = classes.index(vote.label_class)
    return float(question.correct[subset[winner]])


def accuracy_table(
    questions: list[Question],
    variants: dict[str, VoteSettings | None],
    k_list: list[int],
    resamples: int = 20,
    seed: int = 0,
) -> dict[int, np.ndarray]:
    """Per-question accuracy of every variant: ``{k: array (questions, variants)}``, paired subsets."""
    settings = list(variants.values())
    table = {}
    for k in k_list:
        acc = np.zeros((len(questions), len(settings)))
        for q, question in enumerate(questions):
            rng = random.Random(f"{seed}/{k}/{question.key}")
            chosen = subsets(len(question.answers), k, resamples, rng)
            for v, s in enumerate(settings):
                acc[q, v] = np.mean([vote_accuracy(question, subset, s) for subset in chosen])
        table[k] = acc
    return table


def bootstrap_summary(
    acc: np.ndarray, names: list[str], reference: int = 0, samples: int = 2000, seed: int = 0
) -> list[dict[str, float | str]]:
    """Mean accuracy of each variant (column) with a 95% bootstrap interval over questions (rows), and the paired
    difference to column ``reference`` with its interval."""
    rng = np.random.default_rng(seed)
    n = acc.shape[0]
    idx = rng.integers(0, n, size=(samples, n))
    means = acc[idx].mean(axis=1)  # (samples, variants)
    diffs = means - means[:, [reference]]
    rows = []
    for v, name in enumerate(names):
        rows.append(
            {
                "variant": name,
                "accuracy": float(acc[:, v].mean()),
                "ci_low": float(np.percentile(means[:, v], 2.5)),
                "ci_high": float(np.percentile(means[:, v], 97.5)),
                "delta": float(acc[:, v].mean() - acc[:, reference].mean()),
                "delta_ci_low": float(np.percentile(diffs[:, v], 2.5)),
                "delta_ci_high": float(np.percentile(diffs[:, v], 97.5)),
            }
        )
    return rows


def signal_quality(questions: list[Question], settings: VoteSettings | None = None) -> list[dict[str, float | str]]:
    """For each instability statistic: within-question AUROC for correctness (larger = the statistic ranks right
    rollouts as more stable) and the Pearson correlation with completion length over all rollouts."""
    settings = settings or VoteSettings()
    rows = []
    lengths = np.array([len(e) for q in questions for e in q.entropies], dtype=float)
    for statistic in STATISTICS:
        values, groups = [], []
        for q in questions:
            scores = group_statistic(
                q.entropies, statistic, tail_tokens=settings.tail_tokens, window_tokens=settings.window_tokens
            )
            values.extend(scores)
            groups.append(([-s for s in scores], [bool(c) for c in q.correct]))  # correct = the more stable
        area, pairs = within_group_auroc(groups)
        spread = len(values) > 1 and np.std(values) > 0 and np.std(lengths) > 0
        corr = float(np.corrcoef(values, lengths)[0, 1]) if spread else float("nan")
        rows.append(
            {
                "statistic": statistic,
                "auroc_within_question": float("nan") if area is None else area,
                "pairs": pairs,
                "corr_with_length": corr,
            }
        )
    return rows
