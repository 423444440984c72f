"""What the demo shows: a training progress bar, the before/after table, training curves and pass@k plots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..data.store import save_figure_atomic
from ..reports.evaluation import plot_compare

# (panel title, metric key in the trainer's log history with {vote} = sasc / majority)
CURVES = (
    ("reward (agreement with the vote)", "rewards/{vote}_reward/mean"),
    ("pseudo-label accuracy (hidden answers)", "{vote}/label_accuracy"),
    ("kept fraction (stability gate)", "{vote}/kept_fraction"),
    ("SASC label differs from majority", "{vote}/label_differs_from_majority"),
)
LABELS = {"sasc": "SASC-TTRL", "majority": "TTRL", "sasc_exp": "SASC-TTRL (exp, T=1)"}


class TrainingProgress(TrainerCallback):
    """A tqdm bar over training steps showing the latest reward and pseudo-label accuracy."""

    def __init__(self, desc: str, total: int):
        self.desc, self.total, self.bar = desc, total, None

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, unit="step", leave=False)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        shown = {}
        for key, value in logs.items():
            if key.endswith("_reward/mean"):
                shown["reward"] = f"{value:.2f}"
            elif key.endswith("/label_accuracy") and not key.endswith("majority_label_accuracy"):
                shown["label_acc"] = f"{value:.2f}"
        self.bar.set_postfix(shown)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(1)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


def curve(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of one logged metric (entries without it are skipped)."""
    points = [(entry["step"], entry[key]) for entry in history if key in entry and "step" in entry]
    return [s for s, _ in points], [v for _, v in points]


def plot_training_curves(training: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path:
    """PNG with four panels against the training step: reward, label accuracy, kept fraction and how often the
    SASC pseudo-label differs from the plain majority, one line per run in the same colour in every panel, one
    legend below the panels (the majority run has no disagreement with itself, so it is not drawn there)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.8), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    legend: dict[str, Any] = {}
    for ax, (title, template) in zip(axes[0], CURVES):
        for i, (name, run) in enumerate(training.items()):
            vote = run.get("reward", name)  # the metrics' prefix: the reward the run trained with
            steps, values = curve(run["log_history"], template.format(vote=vote))
            if steps and not (vote == "majority" and "differs" in template):
                label = LABELS.get(name, name)
                legend[label] = ax.plot(steps, values, "o-", markersize=3, color=colours[i % len(colours)])[0]
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=max(len(legend), 1), frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path = Path(path)
    save_figure_atomic(fig, path, dpi=100)
    plt.close(fig)
    return path


def plot_pass_at_k(evaluations: dict[str, dict[str, Any]], path: str | os.PathLike, labels: dict[str, str]) -> Path:
    """pass@k, maj@k and sasc@k against k, a row for the trained-on and one for the held-out questions, a column
    per metric, one colour per model (the evaluator's comparison plot)."""
    runs = [{"benchmarks": splits} for splits in evaluations.values()]
    return plot_compare(runs, [labels.get(run, run) for run in evaluations], path)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _delta(after: float, before: float) -> str:
    diff = 100 * (after - before)
    colour = "green" if diff > 0 else "red" if diff < 0 else "white"
    return f"[{colour}]{diff:+.1f}[/{colour}]"


def before_after_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows of the table: for each split and metric (pass@1, maj@k, pass@k), base then each run and its change."""
    evaluations = result["evaluations"]
    base = evaluations["base"]
    rows = []
    for split in ("trained", "held_out"):
        n = base[split]["n"]
        k = max(base[split]["k_list"])
        for metric in ("pass@1", f"maj@{k}", f"pass@{k}"):
            row = [split.replace("_", "-"), metric, _pct(base[split][metric])]
            for method in result["methods"]:
                value = evaluations[method][split][metric]
                row += [_pct(value), _delta(value, base[split][metric])]
            rows.append(row)
        rows[-3][1] = f"pass@1 (avg@{n})"
    return rows


def print_before_after(result: dict[str, Any], console) -> None:
    """Print the before/after table (scores in %, changes against the base model)."""
    from rich.table import Table

    table = Table(title="Before / after test-time RL without answers (scores in %)")
    table.add_column("questions")
    table.add_column("metric")
    table.add_column("base", justify="right")
    for label in result["methods"].values():
        table.add_column(label, justify="right")
        table.add_column("Δ", justify="right")
    for row in before_after_rows(result):
        table.add_row(*row)
    console.print(table)
