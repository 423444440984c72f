"""Which stability signal wins? ``sasc-ttrl compare-votes`` re-votes saved rollouts with every vote variant, for
several k, with paired bootstrap intervals (`sasc_ttrl.core.vote_comparison`), and never generates anything.

Reads rollouts saved with their top-k entropy sequences -- the ``samples/<benchmark>.jsonl`` files of
``sasc-ttrl eval``, or a ``sasc-ttrl build --save_candidates`` output.

Command::

    sasc-ttrl compare-votes --samples outputs/eval/samples/arith.jsonl --k_list 1 4 8 16 --output_dir outputs/votes
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

from ..core.answers import DEFAULT_TIMEOUT_SECONDS
from ..core.vote_comparison import (
    MAJORITY,
    accuracy_table,
    bootstrap_summary,
    default_variants,
    parse_variant,
    signal_quality,
    variant_name,
)
from ..core.voting import VoteSettings
from ..data.rollouts import load_rollouts
from ..data.store import write_atomic
from ..reports.vote_comparison import plot_report, print_report, report_markdown

logger = logging.getLogger(__name__)


@dataclass
class CompareVotesArguments:
    """Arguments of ``sasc-ttrl compare-votes``.

    Args:
        samples: Rollout files: ``samples/<benchmark>.jsonl`` of ``sasc-ttrl eval``, or a ``sasc-ttrl build``
            output written with ``--save_candidates``. Questions of all files are pooled.
        k_list: Votes of k rollouts; k larger than a question's n uses all of its rollouts.
        resamples: Random k-subsets per question and k (the same subsets for every variant).
        variants: Extra variants as ``key=value,...`` over the fields of ``VoteSettings`` (e.g.
            ``gate_statistic=mean,vote_weighting=rank``); added to the default set.
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


def make_parser() -> TrlParser:
    """The ``sasc-ttrl compare-votes`` parser."""
    return TrlParser((CompareVotesArguments,))


def main(args: CompareVotesArguments) -> None:
    """Entry point of ``sasc-ttrl compare-votes``."""
    report = compare_votes(args)
    print_report(report)
    logger.info("report written to %s", args.output_dir)
