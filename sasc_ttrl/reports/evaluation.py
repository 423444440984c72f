"""Reports of evaluation runs: Markdown tables, pass@k / maj@k plots, a rich summary, and side-by-side comparison.

A *run* is the content of an evaluation's ``metrics.json``::

    {"run_name": ..., "model_name_or_path": ..., "settings": {...}, "maj_at_k_definition": ...,
     "benchmarks": {"math500": {"num_questions": 500, "n": 16, "k_list": [1, 2, 4, 8, 16],
                                "avg@16": ..., "pass@1": ..., "maj@1": ..., "sasc@1": ..., ...}}}

Metrics are stored as fractions and shown as percentages.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data.store import save_figure_atomic, write_atomic

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
MISSING = "–"


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _with_ci(bench: dict[str, Any], key: str) -> str:
    """``62.5 [50.0, 75.0]``: the score and its 95% bootstrap interval over questions, when recorded."""
    ci = bench.get("ci95", {}).get(key)
    return _pct(bench[key]) if ci is None else f"{_pct(bench[key])} [{_pct(ci[0])}, {_pct(ci[1])}]"


def headline(bench: dict[str, Any]) -> dict[str, float | None]:
    """The headline numbers of one benchmark: avg@n, and pass/maj/sasc at the largest k."""
    k = max(bench["k_list"])
    return {
        f"avg@{bench['n']}": bench.get(f"avg@{bench['n']}"),
        f"pass@{k}": bench.get(f"pass@{k}"),
        f"maj@{k}": bench.get(f"maj@{k}"),
        f"sasc@{k}": bench.get(f"sasc@{k}"),
    }


def run_markdown(run: dict[str, Any]) -> str:
    """Markdown report of one run: settings, a headline table, then one table per benchmark with a row per k."""
    s = run["settings"]
    temperature = f"temperature {s['temperature']}"
    if s.get("dynamic_temperature"):
        base = s["temperature"] if s.get("dt_base") is None else s["dt_base"]
        temperature = (f"the dynamic temperature T = {base} * {s['dt_n']} ** ({s['dt_theta']} / H) "
                       f"({s['dt_entropy']} entropy)")  # fmt: skip
    parts = [
        f"# Evaluation: {run['run_name']}",
        f"Model `{run['model_name_or_path']}`; n={s['n']} samples per question at {temperature}, "
        f"top_p {s['top_p']}, max_tokens {s['max_tokens']}, seed {s['seed']}, backend {s['backend']}. "
        f"Scores in %. avg@n is the mean accuracy of all samples (TTRL's pass@1); pass@k is the unbiased "
        f"estimator; {run['maj_at_k_definition']} sasc@k uses the stability-aware vote (filter_ratio "
        f"{s['filter_ratio']}, weight_temperature {s['weight_temperature']}, weighting {s['vote_weighting']}, "
        f"gate statistic {s.get('gate_statistic', 'std')}, weight statistic {s.get('weight_statistic', 'std')}).",
    ]
    rows = []
    for name, bench in run["benchmarks"].items():
        k = max(bench["k_list"])
        h = headline(bench)
        gain = None if h[f"sasc@{k}"] is None else h[f"sasc@{k}"] - h[f"maj@{k}"]
        rows.append(
            [name, str(bench["num_questions"]), _pct(h[f"avg@{bench['n']}"]), _pct(h[f"pass@{k}"])]
            + [_pct(h[f"maj@{k}"]), _pct(h[f"sasc@{k}"]), _pct(gain), _pct(bench["answer_rate"])]
        )
    parts.append(
        _markdown_table(
            ["benchmark", "questions", "avg@n", "pass@k_max", "maj@k_max", "sasc@k_max", "sasc − maj", "answered"],
            rows,
        )
    )
    for name, bench in run["benchmarks"].items():
        rows = [
            [str(k), _with_ci(bench, f"pass@{k}"), _with_ci(bench, f"maj@{k}"), _with_ci(bench, f"sasc@{k}")]
            + [_pct(bench[f"sasc@{k}"] - bench[f"maj@{k}"])]
            for k in bench["k_list"]
        ]
        parts.append(
            f"## {name}\n\n"
            + _markdown_table(["k", "pass@k [95% CI]", "maj@k [95% CI]", "sasc@k [95% CI]", "sasc − maj"], rows)
        )
    return "\n\n".join(parts) + "\n"


def _figure(rows: int, cols: int, width: float, height: float, **subplots):
    """pyplot (Agg), a figure and its ``rows x cols`` grid of axes, each panel ``width x height`` inches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, **subplots)
    return plt, fig, axes


def _style_axis(ax, ks: Sequence[int], title: str) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ks))
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


METRIC_STYLES = (("pass", "o-"), ("maj", "s--"), ("sasc", "^:"))
DPI = 200


def _curve(
    ax, bench: dict[str, Any], metric: str, style: str, label: str, colour: str | None = None, band_alpha: float = 0.12
) -> None:
    """One metric against k, with its 95% bootstrap band over questions when the run recorded one."""
    ks = bench["k_list"]
    values = [100 * bench[f"{metric}@{k}"] for k in ks]
    line = ax.plot(ks, values, style, color=colour, label=label, markersize=4, clip_on=False)[0]
    ci = bench.get("ci95", {})
    if all(f"{metric}@{k}" in ci for k in ks):
        low = [100 * ci[f"{metric}@{k}"][0] for k in ks]
        high = [100 * ci[f"{metric}@{k}"][1] for k in ks]
        ax.fill_between(ks, low, high, color=line.get_color(), alpha=band_alpha, linewidth=0)


def _save(plt, fig, path: str | os.PathLike, rect: tuple[float, float, float, float] | None = None) -> Path:
    """The figure as a 200 dpi PNG at ``path`` and a PDF beside it (for papers); y never below 0; ``rect`` is the
    part of the figure the panels fill (the rest holds a figure legend)."""
    for ax in fig.axes:
        ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1.0))
    fig.tight_layout(rect=rect)
    path = Path(path)
    save_figure_atomic(fig, path, dpi=DPI)
    save_figure_atomic(fig, path.with_suffix(".pdf"))
    plt.close(fig)
    return path


def plot_run(run: dict[str, Any], path: str | os.PathLike) -> Path:
    """PNG (200 dpi) and PDF with one panel per benchmark: pass@k, maj@k and sasc@k against k, with 95% bootstrap
    bands over questions."""
    plt, fig, axes = _figure(1, len(run["benchmarks"]), 4.2, 3.4)
    for ax, (name, bench) in zip(axes[0], run["benchmarks"].items()):
        for metric, style in METRIC_STYLES:
            _curve(ax, bench, metric, style, f"{metric}@k")
        _style_axis(ax, bench["k_list"], f"{name} ({bench['num_questions']} q, n={bench['n']})")
        ax.legend(fontsize=8)
    fig.suptitle(run["run_name"], fontsize=11)
    return _save(plt, fig, path)


def load_run(path: str | os.PathLike) -> dict[str, Any]:
    """A run's metrics from its output directory or its ``metrics.json``."""
    path = Path(path)
    file = path / METRICS_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} at {path}; evaluate the run first")
    run = json.loads(file.read_text())
    run.setdefault("run_name", file.parent.name)
    return run


def _labels(runs: Sequence[dict[str, Any]], paths: Sequence[str | os.PathLike]) -> list[str]:
    labels = [r["run_name"] for r in runs]
    if len(set(labels)) < len(labels):  # two runs of the same name: say which directory each comes from
        labels = [f"{label} ({Path(p).resolve().name})" for label, p in zip(labels, paths)]
    return labels


def compare_markdown(runs: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """Markdown with one table per benchmark and a row per run: avg@n, pass@k for every k, maj and sasc at k_max."""
    benchmarks = list(dict.fromkeys(name for run in runs for name in run["benchmarks"]))
    parts = [
        "# Comparison",
        "Scores in %. Columns at k_max use each run's largest k. " + runs[0]["maj_at_k_definition"],
    ]
    for name in benchmarks:
        present = [(label, run["benchmarks"][name]) for label, run in zip(labels, runs) if name in run["benchmarks"]]
        ks = sorted({k for _, bench in present for k in bench["k_list"]})
        rows = []
        for label, bench in present:
            k = max(bench["k_list"])
            rows.append(
                [label, str(bench["num_questions"]), str(bench["n"]), _pct(bench[f"avg@{bench['n']}"])]
                + [_pct(bench.get(f"pass@{kk}")) for kk in ks]
                + [_pct(bench[f"maj@{k}"]), _pct(bench[f"sasc@{k}"])]
            )
        header = ["run", "questions", "n", "avg@n"] + [f"pass@{k}" for k in ks] + ["maj@k_max", "sasc@k_max"]
        parts.append(f"## {name}\n\n" + _markdown_table(header, rows))
    return "\n\n".join(parts) + "\n"


def plot_compare(runs: Sequence[dict[str, Any]], labels: Sequence[str], path: str | os.PathLike) -> Path:
    """PNG (200 dpi) and PDF comparing runs: a row per benchmark and a column per metric (pass@k, maj@k, sasc@k,
    those the runs recorded), one colour per run, light 95% bootstrap bands over questions, one legend below the
    panels. A row shares its y axis, so the metrics of one benchmark read on one scale."""
    benchmarks = list(dict.fromkeys(name for run in runs for name in run["benchmarks"]))
    metrics = [
        (metric, style)
        for metric, style in METRIC_STYLES
        if any(all(f"{metric}@{k}" in b for k in b["k_list"]) for run in runs for b in run["benchmarks"].values())
    ]
    legend_height = 0.35  # inches below the panels
    plt, fig, axes = _figure(len(benchmarks), len(metrics), 3.6, 2.9, sharey="row")
    fig.set_figheight(fig.get_figheight() + legend_height)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, name in zip(axes, benchmarks):
        all_ks = sorted({k for run in runs if name in run["benchmarks"] for k in run["benchmarks"][name]["k_list"]})
        for ax, (metric, style) in zip(row, metrics):
            for i, (label, run) in enumerate(zip(labels, runs)):
                bench = run["benchmarks"].get(name)
                if bench is not None and all(f"{metric}@{k}" in bench for k in bench["k_list"]):
                    _curve(ax, bench, metric, style, label, colours[i % len(colours)], band_alpha=0.08)
            _style_axis(ax, all_ks, f"{name}: {metric}@k")
            if ax is not row[0]:
                ax.set_ylabel("")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize=8, frameon=False)
    return _save(plt, fig, path, rect=(0, legend_height / fig.get_figheight(), 1, 1))


def compare_runs(paths: Sequence[str | os.PathLike], output_dir: str | os.PathLike) -> dict[str, Any]:
    """Put the metrics of two or more runs side by side.

    Writes ``compare.json`` (the runs' metrics by label), ``compare.md`` and ``compare.png`` to ``output_dir``.

    Args:
        paths: Output directories (or ``metrics.json`` files) of evaluation runs.
        output_dir: Where the comparison goes.

    Returns:
        The runs' metrics by label.
    """
    if len(paths) < 2:
        raise ValueError(f"compare needs two or more runs, got {len(paths)}")
    runs = [load_run(p) for p in paths]
    labels = _labels(runs, paths)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    by_label = dict(zip(labels, runs))
    write_atomic(output_dir / "compare.json", json.dumps(by_label, indent=2))
    write_atomic(output_dir / "compare.md", compare_markdown(runs, labels))
    plot_compare(runs, labels, output_dir / "compare.png")
    print_summary(runs, labels, title="Comparison")
    logger.info("comparison written to %s (compare.md, compare.png, compare.json)", output_dir)
    return by_label


def print_summary(runs: Sequence[dict[str, Any]], labels: Sequence[str] | None = None, title: str = "") -> None:
    """Print a rich table: one row per (run, benchmark) with avg@n and pass / maj / sasc at k_max."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None)
    columns = ["run", "benchmark", "questions", "avg@n", "pass@k_max", "maj@k_max", "sasc@k_max", "sasc − maj"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("run", "benchmark") else "right")
    labels = labels or [run["run_name"] for run in runs]
    for label, run in zip(labels, runs):
        for name, bench in run["benchmarks"].items():
            k, n = max(bench["k_list"]), bench["n"]
            h = headline(bench)
            table.add_row(
                label,
                name,
                str(bench["num_questions"]),
                f"{_pct(h[f'avg@{n}'])} (n={n})",
                f"{_pct(h[f'pass@{k}'])} (k={k})",
                _pct(h[f"maj@{k}"]),
                _pct(h[f"sasc@{k}"]),
                _pct(h[f"sasc@{k}"] - h[f"maj@{k}"]),
            )
    console = Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze the table into 80 columns
        console.width = max(console.width, 120)
    console.print(table)
