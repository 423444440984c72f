"""Training study (issue 17): SASC-TTRL with the default vote vs the literal exp(-z), T = 1 vote vs TTRL, on SmolLM2.

Each seed is one ``sasc-ttrl demo`` run that trains the three variants from the same start (same LoRA init, same
first rollouts) on questions it never sees the answers of, and evaluates the base model and each trained model on
those questions and on held-out ones (pass@1 = avg@n, maj@n; every evaluation samples question ``i`` from the
same seeds). Runs are resumable: a rerun reads every finished phase (evaluation or training run) of a seed from its
folder, and a finished seed is only summarised.

Command (each seed holds the heavy-job lock while it runs)::

    python studies/training_study.py --seeds 0 1 2 --lock /tmp/sasc_heavy.lock

Writes ``<output_root>/seed<S>/`` (the demo's outputs) and ``<output_root>/summary.json`` / ``summary.md``: one row
per seed and question set, then the mean and the spread (sample standard deviation) over seeds of every score and
of every variant's change against the base model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import benchmarks_path  # noqa: F401 - puts benchmarks/ (record, demo_wall_time) on sys.path
import numpy as np
from demo_wall_time import heavy_lock
from record import REPO

VARIANTS = {"sasc": "SASC-TTRL (default vote)", "sasc_exp": "SASC-TTRL (exp, T=1)", "majority": "TTRL"}
SPLITS = ("trained", "held_out")
SIZES = dict(num_train_questions=32, num_held_out_questions=32, max_steps=15)
QUICK = dict(num_train_questions=2, num_held_out_questions=2, max_steps=1, eval_samples=2)


def run_seed(seed: int, output_dir: Path, args: argparse.Namespace) -> tuple[float, dict]:
    """One ``sasc-ttrl demo`` run of the three variants (resumed when its folder holds finished phases)."""
    sizes = {**SIZES, **(QUICK if args.quick else {})}
    # More questions per generate call than the demo's 2: faster on a CPU, same samples (each row is seeded).
    flags = ["--seed", str(seed), "--methods", *VARIANTS, "--output_dir", str(output_dir), "--eval_batch_size", "8"]
    for name, value in sizes.items():
        flags += [f"--{name}", str(value)]
    if args.quick:
        flags += ["--quick"] + (["--model", args.model] if args.model else [])
    elif args.model:
        flags += ["--model", args.model]
    cmd = [sys.executable, "-m", "sasc_ttrl.cli", "demo", *flags]
    env = dict(os.environ, OMP_NUM_THREADS=args.threads, MKL_NUM_THREADS=args.threads, TOKENIZERS_PARALLELISM="false")
    with heavy_lock(args.lock):
        print("running:", " ".join(cmd[1:]), flush=True)
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"seed {seed} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, json.loads((output_dir / "metrics.json").read_text())


def rows_of(seed: int, result: dict) -> list[dict]:
    """pass@1 and maj@n of the base model and each variant on both question sets of one seed."""
    rows = []
    for split in SPLITS:
        base = result["evaluations"]["base"][split]
        n = base["n"]
        row = {"seed": seed, "split": split, "n": n, "questions": base["num_questions"]}
        for run in ("base", *VARIANTS):
            scores = result["evaluations"][run][split]
            row[f"{run} pass@1"] = scores["pass@1"]
            row[f"{run} maj@{n}"] = scores[f"maj@{n}"]
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Mean and sample std over seeds, per question set, of every score and of every variant's change vs base."""
    out = {}
    for split in SPLITS:
        group = [r for r in rows if r["split"] == split]
        n = group[0]["n"]
        stats = {}
        for metric in ("pass@1", f"maj@{n}"):
            for run in ("base", *VARIANTS):
                values = np.array([r[f"{run} {metric}"] for r in group])
                stats[f"{run} {metric}"] = (
                    float(values.mean()),
                    float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                )
                if run != "base":
                    delta = values - np.array([r[f"base {metric}"] for r in group])
                    spread = float(delta.std(ddof=1)) if len(delta) > 1 else 0.0
                    stats[f"{run} {metric} change"] = (float(delta.mean()), spread)
        out[split] = stats
    return out


def markdown(rows: list[dict], summary: dict, seconds: dict[int, float]) -> str:
    n = rows[0]["n"]
    runs = ("base", *VARIANTS)
    names = {"base": "base", **VARIANTS}
    header = ["seed", "questions"] + [f"{names[r]} pass@1" for r in runs] + [f"{names[r]} maj@{n}" for r in runs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [str(r["seed"]), r["split"].replace("_", "-")]
        cells += [f"{100 * r[f'{run} pass@1']:.1f}" for run in runs] + [
            f"{100 * r[f'{run} maj@{n}']:.1f}" for run in runs
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for split in SPLITS:
        stats = summary[split]
        cells = ["mean ± sd", split.replace("_", "-")]
        for metric in ("pass@1", f"maj@{n}"):
            cells += [
                f"{100 * stats[f'{run} {metric}'][0]:.1f} ± {100 * stats[f'{run} {metric}'][1]:.1f}" for run in runs
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Change against the base model, mean ± sd over seeds (points):", ""]
    lines += ["| variant | trained pass@1 | held-out pass@1 | trained maj | held-out maj |", "|---|---|---|---|---|"]
    for run in VARIANTS:
        cells = [names[run]]
        for metric in ("pass@1", f"maj@{n}"):
            for split in SPLITS:
                mean, sd = summary[split][f"{run} {metric} change"]
                cells.append(f"{100 * mean:+.1f} ± {100 * sd:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    total = sum(seconds.values())
    lines += [
        "",
        f"Wall time: {', '.join(f'seed {s} {t / 60:.1f} min' for s, t in seconds.items())} ({total / 60:.0f} min).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output_root", default=str(REPO / "runs" / "training_study"))
    parser.add_argument("--model", default=None, help="Model (default: the demo's SmolLM2; --quick: the tiny model).")
    parser.add_argument("--lock", default=None, help="Heavy-job lock file held while a seed runs.")
    parser.add_argument("--threads", default="1", help="OMP threads of each run (2 only on an idle machine).")
    parser.add_argument("--quick", action="store_true", help="Smoke test: the tiny model, 2 + 2 questions, 1 step.")
    args = parser.parse_args(argv)
    root = Path(args.output_root)
    rows, seconds = [], {}
    for seed in args.seeds:
        _, result = run_seed(seed, root / f"seed{seed}", args)
        # The runs' own phase times (a resumed seed reports the time its phases took when they ran).
        seconds[seed] = sum(v for k, v in result["seconds"].items() if k.startswith(("eval_", "train_")))
        rows += rows_of(seed, result)
    summary = summarise(rows)
    text = markdown(rows, summary, seconds)
    root.mkdir(parents=True, exist_ok=True)
    (root / "summary.json").write_text(json.dumps({"rows": rows, "summary": summary, "seconds": seconds}, indent=2))
    (root / "summary.md").write_text(text)
    print(text)
    return summary


if __name__ == "__main__":
    main()
