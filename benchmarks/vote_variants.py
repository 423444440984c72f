"""Which vote picks the right answer more often? Majority vs stability-aware variants, on stored samples.

Reads the samples file of a `sasc-ttrl eval` run (each sample's answer, correctness and top-k entropy sequence)
and scores every vote variant on the same random subsets of k samples per question (R resamplings without
replacement, the same subsets for every variant, so differences are paired). Uses the project's vote functions.

Command (writes the table that BENCHMARKS.md quotes)::

    python benchmarks/vote_variants.py outputs/eval/tiny/samples/sums.jsonl --k 8 --resamples 200
"""

from __future__ import annotations

import argparse
import json
import random

from sasc_ttrl.answers import group_equivalent
from sasc_ttrl.stability import instability
from sasc_ttrl.voting import majority_vote, sasc_vote

VARIANTS = {
    "majority (TTRL)": None,
    "sasc: gate 0.2 + exp(-z), T=1 (default)": dict(filter_ratio=0.2, weight_temperature=1.0, weighting="exp"),
    "sasc: gate 0.2 + exp(-z), T=2": dict(filter_ratio=0.2, weight_temperature=2.0, weighting="exp"),
    "sasc: gate 0.2 + exp(-z), T=4": dict(filter_ratio=0.2, weight_temperature=4.0, weighting="exp"),
    "sasc: gate 0.2 + uniform": dict(filter_ratio=0.2, weight_temperature=1.0, weighting="uniform"),
    "sasc: no gate + exp(-z), T=1": dict(filter_ratio=0.0, weight_temperature=1.0, weighting="exp"),
}


def load(path: str) -> list[dict]:
    questions = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                item = json.loads(line)
                samples = item["samples"]
                questions.append(
                    {
                        "answers": [s["answer"] for s in samples],
                        "correct": [bool(s["correct"]) for s in samples],
                        "instabilities": [instability(s["entropies"]) for s in samples],
                    }
                )
    return questions


def run(args: argparse.Namespace) -> None:
    questions = load(args.samples)
    rng = random.Random(args.seed)
    hits = {name: 0 for name in VARIANTS}
    differs = sasc_right = majority_right = 0
    total = 0
    for q in questions:
        classes = group_equivalent(q["answers"])
        n = len(q["answers"])
        k = min(args.k, n)
        for _ in range(args.resamples):
            idx = sorted(rng.sample(range(n), k))
            answers = [q["answers"][i] for i in idx]
            sub_classes = [classes[i] for i in idx]
            inst = [q["instabilities"][i] for i in idx]
            labels = {}
            for name, settings in VARIANTS.items():
                if settings is None:
                    vote = majority_vote(answers, classes=sub_classes)
                else:
                    vote = sasc_vote(answers, inst, classes=sub_classes, **settings)
                ok = False
                if vote.label_class is not None:
                    winner = next(j for j, c in enumerate(sub_classes) if c == vote.label_class)
                    ok = q["correct"][idx[winner]]
                hits[name] += ok
                labels[name] = (vote.label_class, ok)
            total += 1
            default = "sasc: gate 0.2 + exp(-z), T=1 (default)"
            if labels[default][0] != labels["majority (TTRL)"][0]:
                differs += 1
                sasc_right += labels[default][1]
                majority_right += labels["majority (TTRL)"][1]
    print(f"samples={args.samples} questions={len(questions)} k={args.k} resamples={args.resamples}")
    print("| vote | accuracy % |")
    print("|---|---|")
    for name, count in hits.items():
        print(f"| {name} | {100 * count / total:.1f} |")
    print(
        f"default SASC label differs from majority on {differs} of {total} votes "
        f"({100 * differs / max(total, 1):.1f}%); "
        f"there SASC is right {sasc_right} times, majority {majority_right} times"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", help="samples/<benchmark>.jsonl of a sasc-ttrl eval run")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    run(parser.parse_args())
