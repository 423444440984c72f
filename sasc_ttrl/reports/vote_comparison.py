"""The report of ``sasc-ttrl compare-votes``: Markdown table, PNG plot and console table of a vote comparison."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..core.vote_comparison import MAJORITY
from ..data.store import save_figure_atomic

logger = logging.getLogger(__name__)


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
    """Two panels: the vote's accuracy against k for every variant (majority in black, the others thin, no error
    bars), and each variant's change against majority at the largest k with its 95% bootstrap interval, sorted;
    the variants are named on the second panel's y axis, so no legend covers the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(k) for k in report["results"]]
    variants = list(report["variants"])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {name: "black" if name == MAJORITY else colours[v % len(colours)] for v, name in enumerate(variants)}
    fig, (curves, deltas) = plt.subplots(
        1, 2, figsize=(13, max(4.5, 0.28 * len(variants) + 1.5)), gridspec_kw={"width_ratios": [1, 1.1]}
    )
    for v, name in enumerate(variants):
        acc = [100 * report["results"][str(k)][v]["accuracy"] for k in ks]
        style = {"linewidth": 2.5} if name == MAJORITY else {"linewidth": 1.0, "alpha": 0.8}
        curves.plot(ks, acc, marker="o", markersize=3, color=colour[name], **style)
    curves.set_xscale("log", base=2)
    curves.set_xticks(ks, [str(k) for k in ks])
    curves.set_xlabel("k (rollouts per vote)")
    curves.set_ylabel("accuracy of the vote (%)")
    curves.set_title(f"Vote accuracy on {report['num_questions']} questions (majority in black)", fontsize=10)
    curves.grid(alpha=0.3)

    k_max = str(max(ks))
    rows = sorted(
        (row for row in report["results"][k_max] if row["variant"] != MAJORITY), key=lambda row: row["delta"]
    )
    for y, row in enumerate(rows):
        low, high = 100 * (row["delta"] - row["delta_ci_low"]), 100 * (row["delta_ci_high"] - row["delta"])
        deltas.errorbar(
            100 * row["delta"], y, xerr=[[low], [high]], fmt="o", markersize=4, capsize=2, color=colour[row["variant"]]
        )
    deltas.axvline(0, color="black", linewidth=1)
    deltas.set_yticks(range(len(rows)), [row["variant"] for row in rows], fontsize=7)
    deltas.set_xlabel(f"change vs majority at k = {k_max} (points, 95% bootstrap CI)")
    deltas.set_title(f"Each variant against majority at k = {k_max}", fontsize=10)
    deltas.grid(alpha=0.3, axis="x")
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
