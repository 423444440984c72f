"""What Self-Calibration's entropy-based dynamic temperature changes in the data, against a fixed temperature, on
the same questions and seed.

For each sampler (``fixed``: T = 0.8; ``dynamic``: T = 0.8 * 0.8 ** (1 / H), the paper's entropy), ``sasc-ttrl
build --methods self-calibration --save_candidates`` samples the same products questions (one-shot prompt), then
``sasc-ttrl calibrate`` fine-tunes on that output (the first half of the questions trains, the second half
measures): distinct answers per question, answer rate, rollout accuracy, and the calibration SFT's ECE / AUROC on
the held-out half before and after. What it costs is ``benchmarks/dynamic_temperature.py``'s measurement.

The table goes to ``docs/dynamic_temperature.md`` (between its markers) and the raw numbers to
``studies/dynamic_temperature/result.json``. Finished builds and calibrations in ``--output_root`` are reused
(each command resumes). Command::

    python studies/dynamic_temperature_study.py --threads 2   # SmolLM2-135M-Instruct
    python studies/dynamic_temperature_study.py --quick       # the tiny model, seconds (the smoke test)
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import benchmarks_path  # noqa: F401 - puts benchmarks/ (record) on sys.path
import record  # sets OMP_NUM_THREADS; sorts before torch
from record import REPO
from trl import TrlParser

from sasc_ttrl.core.answers import group_equivalent, is_equivalent

RESULTS_DIR = REPO / "studies" / "dynamic_temperature"
DOCS_PAGE = REPO / "docs" / "dynamic_temperature.md"
ARMS = ("fixed", "dynamic")


@dataclass
class DynamicTemperatureStudyArguments:
    """Arguments of the dynamic-temperature study."""

    model: str | None = field(default=None, metadata={"help": "Model (default: SmolLM2-135M-Instruct)."})
    questions: int = field(default=48, metadata={"help": "Questions (first half trains the calibration)."})
    n_candidates: int = field(default=8, metadata={"help": "Candidates per question."})
    max_tokens: int = field(default=48, metadata={"help": "Maximum completion length."})
    temperature: float = field(default=0.8, metadata={"help": "The fixed temperature, and T0 of the dynamic one."})
    seed: int = field(default=0, metadata={"help": "Sampling seed (the same for both samplers)."})
    prompt_style: str = field(default="word_problem_one_shot", metadata={"help": "How the questions are asked."})
    question_seed: int = field(default=500, metadata={"help": "Seed of the products questions."})
    resolution: int = field(default=4, metadata={"help": "Calibration SFT copies per example."})
    epochs: float = field(default=1.0, metadata={"help": "Calibration SFT epochs."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Calibration SFT learning rate."})
    threads: int = field(default=1, metadata={"help": "Torch threads (2 only when nothing else runs)."})
    output_root: str = field(default=str(REPO / "runs" / "dynamic_temperature"), metadata={"help": "Run folders."})
    quick: bool = field(default=False, metadata={"help": "The tiny model and a few questions (seconds)."})

    def __post_init__(self):
        if self.quick:
            self.questions, self.n_candidates, self.max_tokens, self.prompt_style = 6, 4, 40, "math"
        if self.questions < 2:
            raise ValueError(f"questions must be >= 2, got {self.questions}")


# -- quality -------------------------------------------------------------------------------------------------------
def write_dataset(args: DynamicTemperatureStudyArguments, path: Path) -> Path:
    """The products questions (one multiplication word problem each) as a prompt/answer JSON file; with ``--quick``
    the tiny model's sums, which it answers."""
    from sasc_ttrl.demo.task_world import make_questions, write_questions
    from sasc_ttrl.demo.tiny_model import write_tiny_dataset

    if args.quick:
        return write_tiny_dataset(path, n=args.questions, seed=args.question_seed)
    return write_questions(path, make_questions(args.questions, seed=args.question_seed, ops=["mul"]))


def build_and_calibrate(args: DynamicTemperatureStudyArguments, model: str, data: Path, arm: str) -> dict[str, Any]:
    """The builder's candidates and the calibration report of one sampler."""
    from sasc_ttrl.commands import build
    from sasc_ttrl.data.rollouts import read_builder_rollouts
    from sasc_ttrl.experimental import calibrate
    from sasc_ttrl.experimental.calibrate import CalibrationArguments
    from sasc_ttrl.selection.build_arguments import BuildArguments

    folder = Path(args.output_root) / arm
    start = time.monotonic()
    build.main(
        BuildArguments(
            model_name_or_path=model, dataset_name=str(data), methods=["self-calibration"],
            n_candidates=args.n_candidates, temperature=args.temperature, max_tokens=args.max_tokens,
            seed=args.seed, dtype="float32", backend="transformers", prompt_style=args.prompt_style,
            save_candidates=True, dynamic_temperature=arm == "dynamic", output_dir=str(folder / "build"),
        )
    )  # fmt: skip
    build_seconds = time.monotonic() - start
    rows = folder / "build" / "self-calibration.jsonl"
    questions = read_builder_rollouts(rows)
    report = calibrate.main(
        CalibrationArguments(
            dataset_path=str(rows), model_name_or_path=model, eval_fraction=0.5, resolution=args.resolution,
            num_train_epochs=args.epochs, learning_rate=args.learning_rate, per_device_train_batch_size=8,
            max_length=512, output_dir=str(folder / "calibrate"),
        )
    )  # fmt: skip
    return {"candidates": candidate_statistics(questions), "calibration": report, "build_seconds": build_seconds}


def candidate_statistics(questions: list[Any]) -> dict[str, float]:
    """Mean distinct answers per question, answer rate and rollout accuracy of a builder output."""
    distinct, answered, correct, total = [], 0, 0, 0
    for q in questions:
        answers = [r.get("answer") for r in q.rollouts]
        classes = group_equivalent(answers)
        distinct.append(len({c for c in classes if c is not None}))
        answered += sum(a is not None for a in answers)
        correct += sum(a is not None and is_equivalent(q.gold, a) for a in answers)
        total += len(answers)
    return {
        "distinct_answers": statistics.mean(distinct),
        "answer_rate": answered / total,
        "rollout_accuracy": correct / total,
        "questions": len(questions),
        "candidates": total,
    }


# -- tables --------------------------------------------------------------------------------------------------------
def quality_table(results: dict[str, Any]) -> str:
    rows = []
    for arm in ARMS:
        c, cal = results[arm]["candidates"], results[arm]["calibration"]
        rows.append([
            "T = 0.8" if arm == "fixed" else "dynamic (T0 0.8, N 0.8, theta 1, paper's H)",
            f"{c['distinct_answers']:.2f}", f"{100 * c['answer_rate']:.1f}%", f"{100 * c['rollout_accuracy']:.1f}%",
            f"{cal['before']['ece']:.3f} -> {cal['after']['ece']:.3f}",
            f"{cal['before']['auroc']:.3f} -> {cal['after']['auroc']:.3f}", str(cal["after"]["items"]),
        ])  # fmt: skip
    header = ["sampler", "distinct answers / question", "answer rate", "rollout accuracy",
              "held-out ECE before -> after", "held-out AUROC before -> after", "held-out items"]  # fmt: skip
    return record.markdown_table(header, rows)


def main(args: DynamicTemperatureStudyArguments) -> dict[str, Any]:
    """Both samplers' builds and calibrations; the table printed and, for the real run, recorded."""
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.output_root)
    root.mkdir(parents=True, exist_ok=True)
    model = args.model or str(record.tiny_model_dir() if args.quick else record.smollm2_dir())
    data = write_dataset(args, root / "products.json")
    results: dict[str, Any] = {"settings": asdict(args)}
    for arm in ARMS:
        results[arm] = build_and_calibrate(args, model, data, arm)
    quality = quality_table(results)
    print(quality, flush=True)
    if not args.quick:
        from sasc_ttrl.data.store import write_atomic

        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        write_atomic(RESULTS_DIR / "result.json", json.dumps(results, indent=1) + "\n")
        body = (f"SmolLM2-135M-Instruct, {args.questions} products questions (one-shot prompt), "
                f"{args.n_candidates} candidates each, up to {args.max_tokens} tokens, seed {args.seed}, "
                f"{args.threads} torch threads; calibration "
                f"SFT ({args.epochs:g} epoch, learning rate {args.learning_rate:g}, resolution {args.resolution}) on "
                f"the first half, measured on the second.\n\n{quality}\n")  # fmt: skip
        record.record_figures("dynamic_temperature_quality", "Measured on SmolLM2", body, DOCS_PAGE)
    return results


if __name__ == "__main__":
    main(TrlParser((DynamicTemperatureStudyArguments,)).parse_args_and_config()[0])
