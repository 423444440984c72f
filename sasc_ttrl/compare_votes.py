"""Which stability signal wins? Re-vote saved rollouts with every vote variant, for several k, with intervals.

Reads rollouts saved with their top-k entropy sequences -- the ``samples/<benchmark>.jsonl`` files of
``sasc-ttrl eval``, or a ``sasc-ttrl build --save_candidates`` output -- and never generates anything. For each k,
every question's ``n`` rollouts are subsampled ``resamples`` times (k of them, without replacement; all of them
when k = n); every variant votes on the *same* subsets ([`voting.majority_vote`] or [`voting.stability_vote`]),
so differences between variants are paired. A vote is correct when the first rollout of the winning class is
correct. Accuracy is averaged over subsets, then over questions; the 95% intervals come from a bootstrap over
questions, for each variant and for its paired difference to majority voting.

It also reports, per instability statistic, how well it separates right from wrong rollouts of the same
question (within-question AUROC: the chance that a correct rollout is the more stable one of a correct/incorrect
pair, ties counting one half; 0.5 = no signal) and its correlation with completion length (the length confound).

Command::

    sasc-ttrl compare-votes --samples outputs/eval/samples/arith.jsonl --k_list 1 4 8 16 --output_dir outputs/votes
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from trl import TrlParser

from .answers import DEFAULT_TIMEOUT_SECONDS, group_equivalent
from .evaluate import read_samples
from .io_utils import save_figure_atomic, write_atomic
from .metrics import renumber_classes, within_group_auroc
from .stability import STATISTICS, group_statistic
from .voting import VoteSettings, majority_vote, stability_vote

logger = logging.getLogger(__name__)

MAJORITY = "majority"
DEFAULT_VARIANT = "sasc default: gate std + exp(std)"


def default_variants() -> dict[str, VoteSettings | None]:
    """The variants compared by default: majority voting, the method's default, the gate and the weight alone,
    bounded weights, and every statistic as gate + weight (``None`` = plain majority)."""
    v = VoteSettings
    variants: dict[str, VoteSettings | None] = {MAJORITY: None, DEFAULT_VARIANT: v()}
    extra = [
        v(weighting="uniform"),
        v(filter_ratio=0.0),
        v(weighting="clipped_exp"),
        v(weighting="rank"),
        v(weight_temperature=4.0),
        v(weight_statistic="mean"),
        v(weight_statistic="mean", weighting="rank"),
        v(weight_statistic="std_length_matched"),
        v(weight_statistic="std_length_matched", weighting="rank"),
    ]
    for statistic in STATISTICS[1:]:
        extra.append(v(gate_statistic=statistic, weight_statistic=statistic))
    extra.append(v(gate_statistic="mean", weighting="uniform"))
    for settings in extra:
        variants[variant_name(settings)] = settings
    return variants


def variant_name(settings: VoteSettings) -> str:
    """A readable name: ``gate std + exp(mean)``, ``no gate + rank(std)``, ``gate mean@0.3 + uniform``, ..."""
    gate = "no gate" if settings.filter_ratio == 0 else f"gate {settings.gate_statistic}"
    if settings.filter_ratio not in (0.0, 0.2):
        gate += f"@{settings.filter_ratio:g}"
    if settings.weighting == "uniform":
        weight = "uniform"
    else:
        weight = f"{settings.weighting}({settings.weight_statistic})"
        if settings.weighting in ("exp", "clipped_exp") and settings.weight_temperature != 1.0:
            weight += f" T={settings.weight_temperature:g}"
        if settings.weighting == "clipped_exp" and settings.weight_clip != VoteSettings.weight_clip:
            weight += f" c={settings.weight_clip:g}"
    return f"{gate} + {weight}"


def parse_variant(spec: str) -> VoteSettings:
    """A variant from ``"gate_statistic=mean,weighting=rank"`` (fields of [`VoteSettings`]; ``weighting`` may
    also be written ``vote_weighting``)."""
    known = {f.name: f for f in fields(VoteSettings)}
    kwargs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "=" not in part:
            raise ValueError(f"variant {spec!r}: expected key=value pairs, got {part!r}")
        key, value = (x.strip() for x in part.split("=", 1))
        key = "weighting" if key == "vote_weighting" else key
        if key not in known or key in ("answer_timeout", "vote_log_path"):
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


def subsets(n: int, k: int, resamples: int, rng: random.Random) -> list[list[int]]:
    """The index subsets voted on: all ``n`` when ``k >= n``, else ``resamples`` random k-subsets."""
    if k >= n:
        return [list(range(n))]
    return [sorted(rng.sample(range(n), k)) for _ in range(resamples)]


def vote_accuracy(question: Question, subset: list[int], settings: VoteSettings | None) -> float:
    """1.0 when the vote of ``settings`` (majority when ``None``) on ``subset`` picks a correct answer."""
    answers = [question.answers[i] for i in subset]
    classes = renumber_classes([question.classes[i] for i in subset])
    if settings is None:
        vote = majority_vote(answers, classes=classes)
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


@dataclass
class CompareVotesArguments:
    """Arguments of ``sasc-ttrl compare-votes``.

    Args:
        samples: Rollout files: ``samples/<benchmark>.jsonl`` of ``sasc-ttrl eval``, or a ``sasc-ttrl build``
            output written with ``--save_candidates``. Questions of all files are pooled.
        k_list: Votes of k rollouts; k larger than a question's n uses all of its rollouts.
        resamples: Random k-subsets per question and k (the same subsets for every variant).
        variants: Extra variants as ``key=value,...`` over the fields of ``VoteSettings`` (e.g.
            ``gate_statistic=mean,weighting=rank``); added to the default set.
        only: Compare only majority voting and the ``--variants`` (skip the default set).
        bootstrap: Bootstrap resamples of the questions for the intervals.
        seed: Seed of the subsets and the bootstrap.
        output_dir: Where ``compare_votes.json``, ``compare_votes.md`` and ``compare_votes.png`` go.
        answer_timeout: Seconds per math-verify check.
    """

    samples: list[str] = field(
        default_factory=list, metadata={"help": "Rollout files (eval samples or build output)."}
    )
    k_list: list[int] = field(default_factory=lambda: [1, 4, 8, 16], metadata={"help": "Vote sizes k."})
    resamples: int = field(default=20, metadata={"help": "Random k-subsets per question and k."})
    variants: list[str] = field(
        default_factory=list, metadata={"help": "Extra variants: key=value,... over VoteSettings fields."}
    )
    only: bool = field(default=False, metadata={"help": "Only majority and the --variants."})
    bootstrap: int = field(default=2000, metadata={"help": "Bootstrap resamples over questions."})
    seed: int = field(default=0, metadata={"help": "Seed of subsets and bootstrap."})
    output_dir: str = field(default="outputs/compare_votes", metadata={"help": "Output directory."})
    answer_timeout: float = field(default=DEFAULT_TIMEOUT_SECONDS, metadata={"help": "Seconds per math-verify check."})

    def __post_init__(self):
        if isinstance(self.samples, str):
            self.samples = [self.samples]
        if not self.samples:
            raise ValueError("--samples: give at least one rollout file")
        if not self.k_list or min(self.k_list) < 1:
            raise ValueError(f"k_list must hold values >= 1, got {self.k_list}")
        self.k_list = sorted(set(self.k_list))
        if self.resamples < 1 or self.bootstrap < 1:
            raise ValueError("resamples and bootstrap must be >= 1")
        self.variant_settings()  # parse errors surface before any file is read

    def variant_settings(self) -> dict[str, VoteSettings | None]:
        """Majority, the default set (unless ``only``) and the ``--variants``."""
        variants = {MAJORITY: None} if self.only else default_variants()
        for spec in self.variants:
            settings = parse_variant(spec)
            variants[variant_name(settings)] = settings
        return variants


def compare_votes(args: CompareVotesArguments) -> dict[str, Any]:
    """Run the comparison and write its report; returns the report."""
    variants = args.variant_settings()
    questions = [q for path in args.samples for q in load_rollouts(path, timeout=args.answer_timeout)]
    if not questions:
        raise ValueError(f"no questions in {args.samples}")
    n_values = sorted({len(q.answers) for q in questions})
    names = list(variants)
    table = accuracy_table(questions, variants, args.k_list, args.resamples, args.seed)
    report = {
        "samples": args.samples,
        "num_questions": len(questions),
        "n_per_question": n_values,
        "args": asdict(args),
        "variants": {name: None if s is None else asdict(s) for name, s in variants.items()},
        "results": {str(k): bootstrap_summary(acc, names, 0, args.bootstrap, args.seed) for k, acc in table.items()},
        "signal_quality": signal_quality(questions),
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / "compare_votes.json", json.dumps(report, indent=2))
    write_atomic(output_dir / "compare_votes.md", report_markdown(report))
    plot_report(report, output_dir / "compare_votes.png")
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one accuracy table (variants x k) with intervals, then the signal table."""
    ks = list(report["results"])
    lines = [
        f"{report['num_questions']} questions, n = {report['n_per_question']} rollouts each; "
        f"{report['args']['resamples']} paired k-subsets per question; 95% bootstrap intervals over questions "
        f"({report['args']['bootstrap']} resamples). Δ = paired difference to majority voting, in points.",
        "",
        "| variant | "
        + " | ".join(f"k={k} acc % [CI]" for k in ks)
        + " | "
        + " | ".join(f"k={k} Δ [CI]" for k in ks)
        + " |",
        "|---|" + "---|" * (2 * len(ks)),
    ]
    for v, name in enumerate(report["variants"]):
        accs, deltas = [], []
        for k in ks:
            r = report["results"][k][v]
            accs.append(f"{100 * r['accuracy']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]")
            deltas.append(f"{100 * r['delta']:+.1f} [{100 * r['delta_ci_low']:+.1f}, {100 * r['delta_ci_high']:+.1f}]")
        lines.append(f"| {name} | " + " | ".join(accs) + " | " + " | ".join(deltas) + " |")
    lines += [
        "",
        "| statistic | within-question AUROC (correct = more stable) | pairs | corr. with length |",
        "|---|---|---|---|",
    ]
    for row in report["signal_quality"]:
        lines.append(
            f"| {row['statistic']} | {row['auroc_within_question']:.3f} | {row['pairs']} | "
            f"{row['corr_with_length']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Accuracy against k for every variant, with the bootstrap intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(k) for k in report["results"]]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for v, name in enumerate(report["variants"]):
        rows = [report["results"][str(k)][v] for k in ks]
        acc = np.array([100 * r["accuracy"] for r in rows])
        err = np.array([[100 * (r["accuracy"] - r["ci_low"]), 100 * (r["ci_high"] - r["accuracy"])] for r in rows]).T
        style = dict(linewidth=2.5, color="black") if name == MAJORITY else dict(linewidth=1.2, alpha=0.8)
        ax.errorbar(ks, acc, yerr=err, label=name, capsize=2, marker="o", markersize=3, **style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k (rollouts per vote)")
    ax.set_ylabel("accuracy of the vote (%)")
    ax.set_title(f"Vote variants on {report['num_questions']} questions (95% bootstrap CI)")
    ax.legend(fontsize=6.5, loc="lower right", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def print_report(report: dict[str, Any]) -> None:
    """The accuracy table on the console (rich)."""
    from rich.console import Console
    from rich.table import Table

    ks = list(report["results"])
    table = Table(title=f"Vote variants, {report['num_questions']} questions (acc %, Δ vs majority [95% CI])")
    table.add_column("variant")
    for k in ks:
        table.add_column(f"k={k}", justify="right")
    for v, name in enumerate(report["variants"]):
        cells = []
        for k in ks:
            r = report["results"][k][v]
            cells.append(
                f"{100 * r['accuracy']:.1f}  {100 * r['delta']:+.1f} [{100 * r['delta_ci_low']:+.1f}, "
                f"{100 * r['delta_ci_high']:+.1f}]"
            )
        table.add_row(name, *cells)
    Console(width=160).print(table)


def make_parser() -> TrlParser:
    """The ``sasc-ttrl compare-votes`` parser."""
    return TrlParser((CompareVotesArguments,))


def main(args: CompareVotesArguments) -> None:
    """Entry point of ``sasc-ttrl compare-votes``."""
    report = compare_votes(args)
    print_report(report)
    logger.info("report written to %s", args.output_dir)
