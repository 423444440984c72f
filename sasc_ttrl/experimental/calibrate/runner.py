"""Calibration SFT (Self-Calibration, Huang et al. 2025): teach the model a P(Yes) that means something.

Command::

    sasc-ttrl calibrate --dataset_path outputs/build/self-calibration.jsonl --model_name_or_path MODEL \\
        --eval_fraction 0.5 --output_dir outputs/calibrate

From a builder output written with ``--save_candidates``, every answered candidate of a training question becomes
the question "Is the answer correct? Answer Yes or No." about (question, candidate) (the prompt of the builder's
``self-eval`` judge) with a *target confidence*: the soft self-consistency score of its answer,
``SSC(y) = sum of the confidences of the candidates answering y / sum of all`` ([`ssc_targets`]); the candidate
confidences are the builder's geometric-mean token probabilities (``--confidence token``, needs a build with a
method that computes token statistics, e.g. ``self-calibration``) or all equal (``uniform``: SSC is the majority
share). No reference answer is used for training.

TRL's ``SFTTrainer`` fits the target with plain SFT data: each example appears ``resolution`` times, ``round(c x
resolution)`` of them answered "Yes" and the rest "No", so the cross-entropy is minimised exactly when the model's
P(Yes) : P(No) is c : 1 - c (up to ``1 / resolution``).

Calibration is measured on held-out questions that have reference answers (``--eval_dataset_path``, or the last
``--eval_fraction`` of the questions): the model's ``P(Yes) / (P(Yes) + P(No))`` for each answered candidate against
whether the candidate is correct -- expected calibration error ([`expected_calibration_error`], equal-width bins),
Brier score, and AUROC (ranking, which a shift of every P(Yes) towards the base rate does not improve) -- before
(the starting model) and after (the fine-tuned one). The command samples nothing: its data's sampling (a fixed
temperature, or Self-Calibration's dynamic temperature with ``sasc-ttrl build --dynamic_temperature``) is the
builder's, and the report records it (``data_sampling``, from the builder's ``build_config.json``). Outputs in
``output_dir``: ``calibration_examples.jsonl``, ``model/``, ``calibration_report.json``; a finished part is not
redone, and a rerun with other settings is refused (``calibrate_config.json``; ``--overwrite`` starts over).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from trl import TrlParser

from ...core.answers import DEFAULT_TIMEOUT_SECONDS, group_equivalent
from ...core.metrics import auroc, brier_score, expected_calibration_error
from ...core.voting import weighted_vote
from ...data.rollouts import QuestionRollouts, read_builder_rollouts
from ...data.store import check_run_settings, field_defaults, write_atomic
from ...sampling.dynamic_temperature import DynamicTemperatureArguments
from ...selection.adapters.judge import Judge
from ...selection.build_arguments import CONFIG_FILE as BUILD_CONFIG_FILE
from ...selection.self_eval import ANSWER_QUESTION
from ...training.sft import sft_finetune
from .config import CalibrationArguments

logger = logging.getLogger(__name__)

TOKEN_CONFIDENCE_FIELD = "mean_token_probability"
CONFIG_FILE = "calibrate_config.json"
# Settings that change neither the examples, the model nor the measures.
FREE_KEYS = ("overwrite", "judge_batch_size", "report_to")
# How the builder sampled the data (read from its build_config.json into the report).
DATA_SAMPLING_KEYS = ("n_candidates", "temperature", "top_p", "dynamic_temperature", "dt_base", "dt_n", "dt_theta",
                      "dt_entropy")  # fmt: skip


# -- the target and the measures (pure) -----------------------------------------------------------------------------
def ssc_targets(
    answers: Sequence[str | None],
    confidences: Sequence[float],
    classes: Sequence[int | None] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> list[float | None]:
    """The soft self-consistency score of each candidate's answer: the summed confidence of the candidates giving an
    equivalent answer over the summed confidence of all answered candidates (``None`` for a candidate without an
    answer). The weighted tally is [`core.voting.weighted_vote`]'s."""
    if len(answers) != len(confidences):
        raise ValueError(f"got {len(confidences)} confidences for {len(answers)} answers")
    if any(c < 0 for c in confidences):
        raise ValueError("candidate confidences must be >= 0")
    classes = list(classes) if classes is not None else group_equivalent(answers, timeout=timeout)
    result = weighted_vote(list(answers), list(confidences), classes=classes)
    total = sum(result.weights)
    per_class: dict[int, float] = {}
    for cls, w in zip(result.classes, result.weights):
        if cls is not None:
            per_class[cls] = per_class.get(cls, 0.0) + w
    return [None if cls is None else (per_class[cls] / total if total > 0 else 0.0) for cls in result.classes]


def yes_no_copies(target: float, resolution: int) -> tuple[int, int]:
    """How many of ``resolution`` copies of an example answer "Yes" and "No" for a target confidence."""
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target confidence must be in [0, 1], got {target}")
    yes = int(round(target * resolution))
    return yes, resolution - yes


# -- data ----------------------------------------------------------------------------------------------------------
def judge_message(question: str, solution: str) -> str:
    """The Yes/No question about one solution (the builder's ``self-eval`` prompt)."""
    return ANSWER_QUESTION.format(question=question, solution=solution)


def candidate_confidences(q: QuestionRollouts, confidence: str) -> list[float]:
    """The confidence of each candidate of a question for the SSC target."""
    if confidence == "uniform":
        return [1.0] * len(q.rollouts)
    missing = [i for i, r in enumerate(q.rollouts) if TOKEN_CONFIDENCE_FIELD not in r]
    if missing:
        raise ValueError(
            f"question {q.key!r}: candidate {missing[0]} has no '{TOKEN_CONFIDENCE_FIELD}' (build with a method that "
            "computes token statistics, e.g. --methods self-calibration, or use --confidence uniform)"
        )
    return [float(r[TOKEN_CONFIDENCE_FIELD]) for r in q.rollouts]


def calibration_examples(
    questions: Sequence[QuestionRollouts], confidence: str, timeout: float | None = DEFAULT_TIMEOUT_SECONDS
) -> list[dict[str, Any]]:
    """One (question, candidate) -> target-confidence example per answered candidate (no reference answer used)."""
    out = []
    for q in questions:
        answers = [r.get("answer") for r in q.rollouts]
        targets = ssc_targets(answers, candidate_confidences(q, confidence), timeout=timeout)
        for r, target in zip(q.rollouts, targets):
            if target is not None:
                out.append({"id": q.key, "message": judge_message(q.question, r["text"]), "target": round(target, 6)})
    return out


def sft_rows(examples: Sequence[dict[str, Any]], resolution: int) -> list[dict[str, Any]]:
    """Prompt-completion SFT rows: each example ``resolution`` times, answered Yes / No in the target's ratio."""
    rows = []
    for e in examples:
        yes, no = yes_no_copies(e["target"], resolution)
        prompt = [{"role": "user", "content": e["message"]}]
        rows.extend({"prompt": prompt, "completion": [{"role": "assistant", "content": "Yes"}]} for _ in range(yes))
        rows.extend({"prompt": prompt, "completion": [{"role": "assistant", "content": "No"}]} for _ in range(no))
    return rows


def eval_items(questions: Sequence[QuestionRollouts]) -> list[tuple[str, bool]]:
    """(judge message, correct) of every answered, graded candidate of held-out questions."""
    items = []
    for q in questions:
        for r in q.rollouts:
            if r.get("answer") is not None and r.get("correct") is not None:
                items.append((judge_message(q.question, r["text"]), bool(r["correct"])))
    if not items:
        raise ValueError("no held-out candidate with an answer and a grade: held-out rows need reference answers")
    return items


def measure(model_name_or_path: str, items: Sequence[tuple[str, bool]], num_bins: int, batch_size: int) -> dict:
    """ECE, Brier score, mean P(Yes) and accuracy of a model's P(Yes) on held-out (message, correct) items."""
    from ...sampling.models import load_transformers_model

    model, tokenizer = load_transformers_model(model_name_or_path, dtype="float32")
    probabilities = Judge(model, tokenizer, batch_size=batch_size).yes_probability([m for m, _ in items])
    correct = [c for _, c in items]
    return {
        "ece": expected_calibration_error(probabilities, correct, num_bins),
        "brier": brier_score(probabilities, correct),
        "auroc": auroc(probabilities, correct),
        "mean_p_yes": float(np.mean(probabilities)),
        "accuracy": float(np.mean(correct)),
        "items": len(items),
    }


# -- the command ---------------------------------------------------------------------------------------------------
def split_questions(args: CalibrationArguments) -> tuple[list[QuestionRollouts], list[QuestionRollouts]]:
    """Training and held-out questions (held out: ``eval_dataset_path``, else the last ``eval_fraction``)."""
    questions = read_builder_rollouts(args.dataset_path)[: args.limit]
    if args.eval_dataset_path is not None:
        return questions, read_builder_rollouts(args.eval_dataset_path, target="gold")
    cut = len(questions) - max(1, int(round(args.eval_fraction * len(questions))))
    if cut < 1:
        raise ValueError(f"{args.dataset_path}: {len(questions)} questions are too few to hold some out")
    return questions[:cut], questions[cut:]


def builder_sampling(dataset_path: str) -> dict[str, Any] | None:
    """How the builder output ``dataset_path`` was sampled (temperature or dynamic temperature, ...), read from the
    ``build_config.json`` the builder writes beside it; ``None`` when there is none."""
    config = Path(dataset_path).parent / BUILD_CONFIG_FILE
    if not config.exists():
        return None
    recorded = json.loads(config.read_text())
    defaults = field_defaults(DynamicTemperatureArguments)  # a build made before these fields sampled without
    return {k: recorded.get(k, defaults.get(k)) for k in DATA_SAMPLING_KEYS}


def main(args: CalibrationArguments) -> dict[str, Any]:
    """Build the examples, fine-tune, and measure calibration before and after; return the report."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    output_dir = Path(args.output_dir)
    # A finished part (the report's "before", the model, "after") is reused only with the settings it was made with.
    settings = {k: v for k, v in asdict(args).items() if k not in FREE_KEYS}
    check_run_settings(output_dir, CONFIG_FILE, settings, args.overwrite, field_defaults(CalibrationArguments))
    report_path = output_dir / "calibration_report.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.exists() else {}
    train, held_out = split_questions(args)
    examples = calibration_examples(train, args.confidence, args.answer_timeout)
    write_atomic(output_dir / "calibration_examples.jsonl", "".join(json.dumps(e) + "\n" for e in examples))
    items = eval_items(held_out)
    # The pseudo-label target itself, judged on the held-out questions: how calibrated the teacher is.
    teacher = [e["target"] for e in calibration_examples(held_out, args.confidence, args.answer_timeout)]
    report.update(
        model=args.model_name_or_path,
        confidence=args.confidence,
        train_questions=len(train),
        train_examples=len(examples),
        held_out_questions=len(held_out),
        data_sampling=builder_sampling(args.dataset_path),
        target_mean=float(np.mean([e["target"] for e in examples])) if examples else None,
    )
    if len(teacher) == len(items):
        report["ssc_on_held_out"] = {
            "ece": expected_calibration_error(teacher, [c for _, c in items], args.num_bins),
            "brier": brier_score(teacher, [c for _, c in items]),
        }
    if "before" not in report:
        report["before"] = measure(args.model_name_or_path, items, args.num_bins, args.judge_batch_size)
        write_atomic(report_path, json.dumps(report, indent=2) + "\n")
    model_dir = output_dir / "model"
    if not model_dir.exists():
        report["training"] = sft_finetune(
            args.model_name_or_path, sft_rows(examples, args.resolution), model_dir, args
        )
    if "after" not in report:
        report["after"] = measure(str(model_dir), items, args.num_bins, args.judge_batch_size)
    write_atomic(report_path, json.dumps(report, indent=2) + "\n")
    logger.info("ECE %.4f -> %.4f, Brier %.4f -> %.4f", report["before"]["ece"], report["after"]["ece"],
                report["before"]["brier"], report["after"]["brier"])  # fmt: skip
    return report


def make_parser() -> TrlParser:
    """The argument parser of ``sasc-ttrl calibrate`` (supports ``--config calibrate.yaml``)."""
    return TrlParser((CalibrationArguments,))
