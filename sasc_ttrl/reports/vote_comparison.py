"""The report of ``sasc-ttrl compare-votes``: Markdown table, PNG plot and console table of a vote comparison."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

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
