"""Latency of one group's vote: equivalence classes + stability-aware vote over 64 MATH-style answers.

The group holds what 64 rollouts of a MATH question answer in practice: the right value in several equivalent
forms (``\\frac{1}{2}``, ``\\dfrac12``, ``0.5``, ``1/2``, ...), wrong values (some of them also in two forms),
text answers (``\\text{(B)}``, ``\\text{no solution}``), unparseable fragments, and rollouts with no answer. Timed:
``group_equivalent(answers)`` then ``sasc_vote(answers, instabilities, classes=...)`` -- what the reward does
per group.

* **cold**: answers never seen before -- what a training step meets. Each repetition respells the group with
  leading spaces (normalisation ignores them, so the classes and the vote are unchanged, but every parse and
  verdict cache, keyed by the text, misses); the math-verify process is up and warm;
* **warm**: the same call again right after (every parse and pairwise verdict cached).

Cold and warm alternate (cold, warm, cold, warm, ...); medians over the repetitions. Reported on their own: calls
right after `answers.clear_caches()`, which also re-forks the math-verify worker (its sympy warm-up is lost, as
after a check that timed out), and the first call in the process (starting the verify process).

Command (writes its figures to BENCHMARKS.md)::

    python benchmarks/vote_latency.py            # --quick for a seconds-long smoke run
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import record  # sets OMP_NUM_THREADS

from sasc_ttrl.core.answers import clear_caches, group_equivalent
from sasc_ttrl.core.voting import sasc_vote

TARGET_MS = 20.0
GROUP_SIZE = 64

# (answer, rollouts giving it): 64 in all. The majority answer 1/2 comes in ten forms.
MATH_STYLE_ANSWERS: list[tuple[str | None, int]] = [
    ("\\frac{1}{2}", 10),
    ("\\dfrac{1}{2}", 4),
    ("\\dfrac12", 3),
    ("\\frac12", 2),
    ("0.5", 3),
    ("1/2", 2),
    ("\\tfrac{1}{2}", 1),
    (".5", 1),
    ("0.50", 1),
    ("\\frac{2}{4}", 1),
    ("\\frac{1}{3}", 5),
    ("\\dfrac{1}{3}", 1),
    ("\\frac{\\sqrt{2}}{2}", 4),
    ("\\frac{1}{\\sqrt{2}}", 1),
    ("2", 3),
    ("x = \\frac{1}{2}", 2),
    ("\\frac{\\pi}{2}", 1),
    ("\\text{(B)}", 2),
    ("\\text{no solution}", 1),
    ("\\frac{1}{", 1),
    ("???", 1),
    ("\\sqrt{", 1),
    (None, 13),
]


@dataclass
class VoteLatencyArguments(record.RecordingArguments):
    """Arguments of the vote-latency benchmark."""

    repeats: int = field(default=21, metadata={"help": "Cold/warm pairs; medians are reported."})
    fresh_repeats: int = field(default=5, metadata={"help": "Calls after `clear_caches()` (a fresh verify worker)."})
    seed: int = field(default=0, metadata={"help": "Seed of the rollout order and the instabilities."})
    quick: bool = field(default=False, metadata={"help": "Few repetitions, for the smoke test."})

    def __post_init__(self):
        super().__post_init__()
        if self.quick:
            self.repeats, self.fresh_repeats = 3, 1
        if self.repeats < 1 or self.fresh_repeats < 1:
            raise ValueError(f"repeats and fresh_repeats must be >= 1, got {self.repeats}, {self.fresh_repeats}")


def math_style_group(seed: int) -> tuple[list[str | None], list[float]]:
    """64 answers in a shuffled rollout order, and one instability per rollout."""
    answers = [answer for answer, count in MATH_STYLE_ANSWERS for _ in range(count)]
    if len(answers) != GROUP_SIZE:
        raise AssertionError(f"MATH_STYLE_ANSWERS holds {len(answers)} rollouts, expected {GROUP_SIZE}")
    rng = random.Random(seed)
    rng.shuffle(answers)
    return answers, [rng.uniform(0.2, 1.5) for _ in answers]


def classes_and_vote(answers: list[str | None], instabilities: list[float]):
    """What the reward does per group: equivalence classes, then the stability-aware vote."""
    classes = group_equivalent(answers)
    return sasc_vote(answers, instabilities, classes=classes)


def timed_ms(answers, instabilities) -> tuple[float, object]:
    """Wall time of one classes + vote call, in ms, and its result."""
    start = time.perf_counter()
    result = classes_and_vote(answers, instabilities)
    return 1000 * (time.perf_counter() - start), result


def respelled(answers: list[str | None], repeat: int) -> list[str | None]:
    """The same answers as strings never seen before: ``repeat + 1`` leading spaces, which extraction would have
    stripped and normalisation ignores, so classes and vote are unchanged while every cache keyed by the answer
    text (parses, verdicts, here and in the verify process) misses."""
    return [None if a is None else " " * (repeat + 1) + a for a in answers]


def same_vote(a, b) -> bool:
    """Whether two votes agree (classes, winning class, pseudo-label up to the respelling's spaces)."""
    label_a, label_b = (None if v.pseudo_label is None else v.pseudo_label.strip() for v in (a, b))
    return a.classes == b.classes and a.label_class == b.label_class and label_a == label_b


def run(args: VoteLatencyArguments) -> dict:
    """Measure: the first call, then alternating cold (new strings) and warm (same strings again) calls, then
    calls on a fresh verifier."""
    answers, instabilities = math_style_group(args.seed)
    clear_caches()
    first_ms, result = timed_ms(answers, instabilities)
    cold, warm, fresh = [], [], []
    votes = []
    for repeat in range(args.repeats):
        group = respelled(answers, repeat)
        ms, vote = timed_ms(group, instabilities)
        cold.append(ms)
        votes.append(vote)
        ms, vote = timed_ms(group, instabilities)
        warm.append(ms)
        votes.append(vote)
    for _ in range(args.fresh_repeats):
        clear_caches()  # drops the caches and re-forks the verify worker: its warm-up is lost too
        ms, vote = timed_ms(answers, instabilities)
        fresh.append(ms)
        votes.append(vote)
    if not all(same_vote(vote, result) for vote in votes):
        raise RuntimeError("the vote changed between repetitions: caching must not change results")
    return {
        "first_ms": first_ms,
        "cold_ms": record.median(cold),
        "warm_ms": record.median(warm),
        "fresh_ms": record.median(fresh),
        "classes": len(result.class_answers),
        "answered": sum(c is not None for c in result.classes),
        "label": result.pseudo_label,
    }


def report(args: VoteLatencyArguments, result: dict) -> record.Figures:
    """The markdown figures and their headline."""

    def verdict(ms: float) -> str:
        return "met" if ms <= TARGET_MS else "MISSED"

    rows = [
        ["cold: answers never seen", f"{result['cold_ms']:.2f}", f"<= {TARGET_MS:g}", verdict(result["cold_ms"])],
        ["warm: the same answers again", f"{result['warm_ms']:.2f}", f"<= {TARGET_MS:g}", verdict(result["warm_ms"])],
        [f"fresh verify worker (median of {args.fresh_repeats})", f"{result['fresh_ms']:.2f}", "", ""],
        ["first call in the process (1 sample)", f"{result['first_ms']:.2f}", "", ""],
    ]
    both = verdict(max(result["cold_ms"], result["warm_ms"]))
    headline = {
        "setting": f"{GROUP_SIZE} rollouts, {result['classes']} equivalence classes",
        "figure": f"cold {result['cold_ms']:.2f} ms, warm {result['warm_ms']:.2f} ms",
        "target": f"<= {TARGET_MS:g} ms",
        "verdict": both,
    }
    body = "\n".join(
        [
            f"{GROUP_SIZE} rollouts: {result['answered']} answered, {result['classes']} equivalence classes, "
            f"pseudo-label `{result['label']}`; median of {args.repeats} cold/warm pairs.",
            "",
            record.markdown_table(["classes + vote", "median ms", "target", "verdict"], rows),
        ]
    )
    return record.Figures(body, headline)


def main(args: VoteLatencyArguments) -> None:
    """Run, print the figures, record them unless the machine was loaded."""
    record.measure_and_record(
        args, "vote_latency", "Vote latency: 64 MATH-style answers", lambda: report(args, run(args))
    )


if __name__ == "__main__":
    from trl import TrlParser

    main(*TrlParser((VoteLatencyArguments,)).parse_args_and_config())
