"""Comparison of selection methods on one benchmark: which method picks the right answer most often, at what cost.

Built from the rows the builder wrote (so a resumed run reports exactly what an uninterrupted one would):

* ``accuracy``: share of the graded questions (those with a hidden answer) whose selected answer is equivalent to
  it -- the hidden answers are used here and nowhere else;
* ``answer_rate``: share of questions where the method selected an answer;
* ``tokens_per_question``: completion tokens the method needed per question (early stopping needs fewer samples;
  guided re-sampling adds a round);
* ``seconds``: generation time pro rata of the samples used, plus the shared feature pass when the method uses it,
  plus the method's own scoring time (judge / verifier passes included);
* ``score_auroc``: with ``--save_candidates``, how well the method's per-candidate score ranks a question's
  correct candidates above its wrong ones (AUROC over the pairs of one question, pooled over questions; ties count
  half; ``score_pairs`` such pairs). Majority-type scores tie inside an answer class, the first sample scores none;
* ``oracle (pass@N)``: share of graded questions where at least one candidate was right -- the ceiling of any
  selection.

Written as ``comparison.json`` and ``comparison.md`` through a temporary file and ``os.replace``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.metrics import within_group_auroc
from ..data.store import write_atomic

logger = logging.getLogger(__name__)

REPORT_JSON = "comparison.json"
REPORT_MARKDOWN = "comparison.md"
ORACLE = "oracle (pass@N)"


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def method_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary of one method's rows (see the module docstring for the definitions)."""
    graded = [r for r in rows if r.get("correct") is not None]
    guided = [r.get("guided_resample") for r in rows if r.get("guided_resample")]
    scored = [
        [(c["score"], bool(c["correct"])) for c in r.get("candidates") or [] if c.get("score") is not None]
        for r in graded
    ]
    score_auroc, score_pairs = within_group_auroc(
        ([s for s, _ in group], [ok for _, ok in group]) for group in scored if group
    )
    return {
        "num_questions": len(rows),
        "graded": len(graded),
        "accuracy": _mean([float(r["correct"]) for r in graded]),
        "answer_rate": _mean([float(r.get("pseudo_label") is not None) for r in rows]),
        "mean_confidence": _mean([r["confidence"] for r in rows if r.get("confidence") is not None]),
        "mean_majority_ratio": _mean([r["majority_ratio"] for r in rows]),
        "tokens_generated": int(sum(r["tokens_generated"] for r in rows)),
        "tokens_per_question": _mean([r["tokens_generated"] for r in rows]),
        "samples_per_question": _mean([r["samples_used"] for r in rows]),
        "seconds": float(sum(r["seconds"] for r in rows)),
        "guided_triggered": sum(bool(g["triggered"]) for g in guided),
        "guided_improved": sum(bool(g["improved"]) for g in guided),
        "score_auroc": score_auroc,
        "score_pairs": score_pairs,
    }


def comparison_report(rows_by_method: Mapping[str, Sequence[Mapping[str, Any]]], meta: Mapping[str, Any]) -> dict:
    """The comparison of all methods, plus the oracle, with ``meta`` (model, data set, settings) on top."""
    methods = {name: method_summary(rows) for name, rows in rows_by_method.items()}
    any_rows = next((rows for rows in rows_by_method.values() if rows), [])
    oracle = [float(r["any_correct"]) for r in any_rows if r.get("any_correct") is not None]
    return {**meta, "methods": methods, "oracle_pass_at_n": _mean(oracle)}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def comparison_markdown(report: Mapping[str, Any]) -> str:
    """A Markdown table, one row per method, best accuracy first."""
    header = [
        "method",
        "accuracy %",
        "answered %",
        "questions",
        "samples / q",
        "tokens / q",
        "seconds",
        "guided",
        "score AUROC",
    ]
    lines = [
        f"# Selection methods on {report.get('dataset_name', '?')}",
        "",
        f"Model `{report.get('model_name_or_path', '?')}`, {report.get('n_candidates', '?')} candidates per "
        f"question at temperature {report.get('temperature', '?')}. Accuracy is the share of graded questions whose "
        "selected answer matches the hidden answer; tokens and seconds are what each method needed (see "
        "`sasc_ttrl.reports.selection`).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    ordered = sorted(report["methods"].items(), key=lambda kv: -(kv[1]["accuracy"] or -1.0))
    for name, m in ordered:
        guided = f"{m['guided_improved']}/{m['guided_triggered']}" if m["guided_triggered"] else "–"
        cells = [
            name,
            _pct(m["accuracy"]),
            _pct(m["answer_rate"]),
            f"{m['num_questions']} ({m['graded']} graded)",
            _num(m["samples_per_question"], 2),
            _num(m["tokens_per_question"]),
            _num(m["seconds"], 2),
            guided,
            _num(m.get("score_auroc"), 3),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"| {ORACLE} | {_pct(report.get('oracle_pass_at_n'))} |" + " |" * (len(header) - 2))
    lines += [
        "",
        "`guided`: questions whose consensus improved / questions re-sampled with a hint. `score AUROC` (with "
        "`--save_candidates`): how well the method's candidate scores rank a question's correct candidates above its "
        "wrong ones (0.5 = chance).",
    ]
    return "\n".join(lines) + "\n"


def write_comparison(output_dir: str | os.PathLike, report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``comparison.json`` and ``comparison.md`` atomically; return their paths."""
    output_dir = Path(output_dir)
    json_path = write_atomic(output_dir / REPORT_JSON, json.dumps(report, indent=2) + "\n")
    md_path = write_atomic(output_dir / REPORT_MARKDOWN, comparison_markdown(report))
    logger.info("comparison report written to %s and %s", json_path, md_path)
    return json_path, md_path
