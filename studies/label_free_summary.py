"""Tables, curves and the decision of the label-free training study (`label_free_study.py`), from its run folders.

``summarise(root, plan)`` reads ``<root>/dev_choice.json`` and the ``result.json`` of every finished run, and writes
``summary.json`` (per seed and arm: pass@1 and maj@n before and after on both question sets, the final top-answer
share, the collapse warning; the dev table and choice; the goal checked seed by seed), ``summary.md`` and
``curves.png`` (held-out pass@1 and pseudo-label accuracy against the step, per seed, with the base model's pass@1
and maj@16). Missing runs are reported as missing, never filled in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

ARM_ORDER = ("oracle", "format", "ttrl", "sasc")
NAMES = {
    "base": "base",
    "oracle": "oracle (true answers)",
    "format": "format only",
    "ttrl": "TTRL",
    "sasc": "SASC-TTRL",
}
COLOURS = {"oracle": "tab:green", "format": "tab:gray", "ttrl": "tab:orange", "sasc": "tab:blue"}
VOTES = {"ttrl": "majority", "sasc": "sasc"}
GOAL = {"held_out": 5.0, "trained": 10.0}  # points of pass@1 over the base model, in every seed


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _rows(root: Path, plan) -> tuple[dict, list[dict]]:
    base = _read(root / "report" / "base" / "result.json")
    rows = []
    for seed in plan.seeds:
        for arm in ARM_ORDER:
            result = _read(root / "report" / arm / f"seed{seed}" / "result.json")
            if arm == "format" and seed != plan.seeds[0]:
                continue
            row: dict[str, Any] = {"seed": seed, "arm": arm, "done": result is not None}
            if result is not None and base is not None:
                for part in ("trained", "held_out"):
                    after, before = result["evaluation"][part], base["evaluation"][part]
                    row[f"{part} pass@1"] = after["pass@1"]
                    row[f"{part} maj@{plan.eval_samples}"] = after[f"maj@{plan.eval_samples}"]
                    row[f"{part} change"] = 100 * (after["pass@1"] - before["pass@1"])
                    row[f"{part} top_answer_share"] = after["top_answer_share"]
                row["collapsed"] = row["held_out top_answer_share"] >= plan.collapse_share
                row["collapse_warning"] = result.get("collapse_warning")
                row["minutes"] = result["seconds"]["total"] / 60
            rows.append(row)
    return base, rows


def _goal(rows: list[dict]) -> dict[str, Any]:
    """The README's goal, seed by seed: SASC-TTRL >= +5 held-out and >= +10 trained-on, no collapse, mean >= TTRL."""
    sasc = [r for r in rows if r["arm"] == "sasc" and "held_out change" in r]
    ttrl = [r for r in rows if r["arm"] == "ttrl" and "held_out change" in r]
    per_seed = {
        r["seed"]: {
            "held_out": r["held_out change"] >= GOAL["held_out"],
            "trained": r["trained change"] >= GOAL["trained"],
            "not_collapsed": not r["collapsed"],
        }
        for r in sasc
    }
    means = {
        arm: {part: float(np.mean([r[f"{part} change"] for r in group])) if group else None for part in GOAL}
        for arm, group in (("sasc", sasc), ("ttrl", ttrl))
    }
    beats = all(means["sasc"][p] is not None and means["ttrl"][p] is not None and means["sasc"][p] >= means["ttrl"][p]
                for p in GOAL)  # fmt: skip
    met = bool(per_seed) and all(all(v.values()) for v in per_seed.values()) and beats
    return {"per_seed": per_seed, "mean_change": means, "sasc_mean_at_least_ttrl": beats, "met": met}


def _markdown(base: dict | None, rows: list[dict], dev: dict | None, goal: dict, plan) -> str:
    n = plan.eval_samples
    out = []
    if dev is not None:
        out += ["Dev sweep (SASC-TTRL; change vs base in points of pass@1):", "",
                "| learning rate | min_label_share | collapsed | worst held-out gain | mean trained-on gain |",
                "|---|---|---|---|---|"]  # fmt: skip
        for r in dev["table"]:
            out.append(f"| {r['learning_rate']:g} | {r['min_label_share']:g} | {'yes' if r['collapsed'] else 'no'} | "
                       f"{r['worst_held_out_gain']:+.1f} | {r['mean_trained_gain']:+.1f} |")  # fmt: skip
        c = dev["choice"]
        out += ["", f"Choice by the rule: learning rate {c['learning_rate']:g}, min_label_share "
                f"{c['min_label_share']:g}.", ""]  # fmt: skip
    if base is not None:
        b, m = base["evaluation"], f"maj@{plan.base_eval_samples}"
        out += [f"Base model (n = {plan.base_eval_samples}): trained-on pass@1 {100 * b['trained']['pass@1']:.1f}, "
                f"{m} {100 * b['trained'][m]:.1f}; held-out pass@1 {100 * b['held_out']['pass@1']:.1f}, "
                f"{m} {100 * b['held_out'][m]:.1f}.", ""]  # fmt: skip
    header = ["seed", "arm", "trained pass@1", "change", f"trained maj@{n}", "held-out pass@1", "change",
              f"held-out maj@{n}", "held-out top-answer share", "collapse warning", "minutes"]  # fmt: skip
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if "held_out change" not in r:
            out.append(f"| {r['seed']} | {NAMES[r['arm']]} | not run yet |" + " |" * (len(header) - 3))
            continue
        out.append(
            f"| {r['seed']} | {NAMES[r['arm']]} | {100 * r['trained pass@1']:.1f} | {r['trained change']:+.1f} | "
            f"{100 * r[f'trained maj@{n}']:.1f} | {100 * r['held_out pass@1']:.1f} | {r['held_out change']:+.1f} | "
            f"{100 * r[f'held_out maj@{n}']:.1f} | {r['held_out top_answer_share']:.2f} | "
            f"{'yes' if r['collapse_warning'] else 'no'} | {r['minutes']:.0f} |"
        )
    means = goal["mean_change"]
    if means["sasc"]["held_out"] is not None:
        out += ["", "Mean change vs base (points of pass@1): " + "; ".join(
            f"{NAMES[a]} trained {means[a]['trained']:+.1f}, held-out {means[a]['held_out']:+.1f}"
            for a in ("sasc", "ttrl") if means[a]["held_out"] is not None)]  # fmt: skip
    out += ["", f"Goal met: {'yes' if goal['met'] else 'no'} (per seed: {goal['per_seed']}; SASC-TTRL mean >= "
            f"TTRL: {goal['sasc_mean_at_least_ttrl']})."]  # fmt: skip
    return "\n".join(out) + "\n"


def _plot(root: Path, base: dict | None, plan, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = list(plan.seeds)
    fig, axes = plt.subplots(2, len(seeds), figsize=(4.2 * len(seeds), 6.8), squeeze=False, sharey="row")
    for col, seed in enumerate(seeds):
        top, bottom = axes[0][col], axes[1][col]
        for arm in ARM_ORDER:
            result = _read(root / "report" / arm / f"seed{seed}" / "result.json")
            if result is None:
                continue
            points = (base["curve"] if base else []) + result["curve"]
            top.plot([p["step"] for p in points], [100 * p["held_out_pass@1"] for p in points], marker="o",
                     color=COLOURS[arm], label=NAMES[arm])  # fmt: skip
            if arm in VOTES:
                key = f"{VOTES[arm]}/label_accuracy"
                hist = [(e["step"], e[key]) for e in result["log_history"] if key in e]
                if hist:
                    steps, values = zip(*hist)
                    smooth = np.convolve(values, np.ones(4) / 4, mode="valid") if len(values) >= 4 else values
                    bottom.plot(steps[len(steps) - len(smooth):], 100 * np.asarray(smooth), color=COLOURS[arm],
                                label=NAMES[arm])  # fmt: skip
        if base is not None:
            subset = base["evaluation"]["held_out"]["majority_correct"][: plan.curve_questions]
            top.axhline(100 * float(np.mean(subset)), color="black", ls="--", lw=1,
                        label=f"base maj@{plan.base_eval_samples}")  # fmt: skip
        top.set_title(f"seed {seed}: held-out pass@1")
        bottom.set_title(f"seed {seed}: pseudo-label accuracy (4-step mean)")
        bottom.set_xlabel("GRPO step")
        for ax in (top, bottom):
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
    legend: dict[str, Any] = {}  # one legend for every panel (an arm has one colour throughout), below them
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarise(root: Path, plan) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md`` and ``curves.png`` into ``root``; return the summary."""
    base, rows = _rows(root, plan)
    dev = _read(root / "dev_choice.json")
    goal = _goal(rows)
    text = _markdown(base, rows, dev, goal, plan)
    slim_base = None
    if base is not None:
        slim_base = {part: {k: v for k, v in scores.items() if not isinstance(v, list)}
                     for part, scores in base["evaluation"].items()}  # fmt: skip
    summary = {"plan": {k: getattr(plan, k) for k in plan.__dataclass_fields__}, "dev": dev, "base": slim_base,
               "rows": rows, "goal": goal}  # fmt: skip
    (root / "summary.json").write_text(json.dumps(summary, indent=1))
    (root / "summary.md").write_text(text)
    _plot(root, base, plan, root / "curves.png")
    return {**summary, "markdown": text}


def publish(root: Path, target: Path, figure: Path | None = None) -> None:
    """Copy the summary files and every finished run's ``result.json`` (small, committed; no checkpoint) from the run
    folder to ``target``, and ``curves.png`` to ``figure`` (default ``target/curves.png``; the real study publishes it
    beside its docs page); the results go to ``target/runs/`` in the run folder's layout, so that a study spanning
    several sittings (or machines) resumes from them (``label_free_study.restore``)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "summary.md", "plan.json", "dev_choice.json"):
        if (root / name).exists():
            shutil.copy2(root / name, target / name)
    if (root / "curves.png").exists():
        figure = figure or target / "curves.png"
        figure.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / "curves.png", figure)
    for result in sorted(root.glob("*/**/result.json")):
        copy = target / "runs" / result.relative_to(root)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(result, copy)
    if (root / "plan.json").exists():
        shutil.copy2(root / "plan.json", target / "runs" / "plan.json")
