"""The label-free training study: does SASC-TTRL with the shipped defaults make SmolLM2-135M-Instruct better, in
every seed, on questions it never sees the answers of? With the controls the field reports beside it.

The rule (setting, arms, the dev sweep and how it decides, the figure that decides) is written in the README's
"Label-free training study" section; this script carries it out. Arms, trained from the same start (same LoRA init,
same first rollouts) for each seed:

* ``base``: the model as it is (the floor);
* ``oracle``: GRPO on the true answers (the ``oracle`` reward: the ceiling);
* ``format``: 1 for any boxed answer (the ``format`` reward; first seed only: how much of a gain is format);
* ``ttrl``: the plain majority vote (``majority``), same recipe;
* ``sasc``: SASC-TTRL with the shipped vote defaults.

Phases, each resumable and read back when done (a training run resumes from its last checkpoint; curve points are
appended as they are measured)::

    python studies/label_free_study.py dev       # the sweep on the dev split, then the rule -> dev_choice.json
    python studies/label_free_study.py report    # every arm and seed on the reported split, the dev choice
    python studies/label_free_study.py summary   # tables, curves, summary JSON (also run after each phase)
    python studies/label_free_study.py all       # the three in order: the whole study in one command

``--quick`` runs the same pipeline on the project's tiny model in about two minutes (the test of this script). The
run folders go to ``--output_root`` (default ``runs/label_free_study``); the summary (``summary.json``,
``summary.md``, ``curves.png``) is written there and, for the real study, copied to ``studies/label_free_study/``
with every finished run's ``result.json`` (``runs/``), the figure to ``docs/studies/label_free_curves.png``: a later
sitting, on a fresh machine too, starts from those.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import benchmarks_path  # noqa: F401 - puts benchmarks/ (record) on sys.path
import record  # sets OMP_NUM_THREADS; sorts before torch
from record import REPO

RESULTS_DIR = REPO / "studies" / "label_free_study"
FIGURE = REPO / "docs" / "studies" / "label_free_curves.png"  # shown on the study's docs page


@dataclass(frozen=True)
class Plan:
    """Everything a run depends on, fixed before any number is read (README, "Label-free training study")."""

    train_questions: int = 32
    held_out_questions: int = 64
    dev_train_questions: int = 16
    dev_held_out_questions: int = 32
    question_seed: int = 300  # the reported split
    dev_question_seed: int = 200
    seeds: tuple[int, ...] = (0, 1, 2)
    dev_seeds: tuple[int, ...] = (10, 11)
    num_generations: int = 16  # voted on
    train_generations: int = 4  # trained on (backward passes dominate a CPU step: 17 s at 4, 31 s at 8)
    questions_per_step: int = 2
    epochs: int = 3
    max_completion_length: int = 40
    temperature: float = 0.8
    lora_r: int = 16
    eval_samples: int = 8  # n of the final evaluations (pass@1 = avg@n, maj@n)
    base_eval_samples: int = 16  # the base model's maj@16
    curve_every: int = 8  # steps between held-out curve points
    curve_questions: int = 24  # held-out questions of a curve point (the first ones)
    curve_samples: int = 4
    dev_learning_rates: tuple[float, ...] = (5e-5, 2e-4)
    dev_label_shares: tuple[float, ...] = (0.0, 0.5)
    collapse_share: float = 0.5  # a final held-out top-answer share at or above this is a collapse


QUICK = Plan(
    train_questions=2, held_out_questions=2, dev_train_questions=2, dev_held_out_questions=2, seeds=(0,),
    dev_seeds=(10,), num_generations=4, train_generations=2, questions_per_step=1, epochs=1,
    max_completion_length=16, eval_samples=2, base_eval_samples=4, curve_every=1, curve_questions=2, curve_samples=2,
    dev_learning_rates=(1e-3,), dev_label_shares=(0.0, 0.5),
)  # fmt: skip
ARMS = {"oracle": "oracle", "format": "format", "ttrl": "majority", "sasc": "sasc"}


# -- questions ---------------------------------------------------------------------------------------------------
def questions(plan: Plan) -> dict[str, dict[str, list[dict]]]:
    """The four disjoint question sets: ``{"dev": {"trained", "held_out"}, "report": {...}}``, in chat form."""
    from sasc_ttrl.data.prompts import prompt_messages
    from sasc_ttrl.demo.task_world import make_questions

    def draw(n: int, seed: int, exclude: list[str], prefix: str) -> list[dict]:
        return make_questions(n, seed=seed, ops=["mul"], exclude=exclude, id_prefix=prefix)

    taken: list[str] = []
    sets: dict[str, dict[str, list[dict]]] = {}
    for split, seed, sizes in (
        ("report", plan.question_seed, (plan.train_questions, plan.held_out_questions)),
        ("dev", plan.dev_question_seed, (plan.dev_train_questions, plan.dev_held_out_questions)),
    ):
        sets[split] = {}
        for part, n, offset in (("trained", sizes[0], 0), ("held_out", sizes[1], 1)):
            drawn = draw(n, seed + offset, taken, f"{split}-{part}")
            taken += [q["prompt"] for q in drawn]
            sets[split][part] = [
                {"id": q["id"], "question": q["prompt"], "answer": q["answer"],
                 "messages": prompt_messages(q["prompt"], "word_problem_one_shot")}
                for q in drawn
            ]  # fmt: skip
    return sets


# -- evaluation --------------------------------------------------------------------------------------------------
def evaluate(model, tokenizer, qs: list[dict], n: int, plan: Plan, key_offset: int) -> dict[str, Any]:
    """pass@1 (= avg@n), maj@n, the answer rate and the top-answer share of ``qs`` (question ``i`` sampled from
    seeds ``(0, key_offset + i, j)`` whatever the model, so runs differ only by the model)."""
    from sasc_ttrl.core.answers import is_equivalent
    from sasc_ttrl.core.label_diagnostics import top_label_share
    from sasc_ttrl.core.voting import majority_vote
    from sasc_ttrl.demo.run import evaluate_model
    from sasc_ttrl.sampling.generation import SamplingSettings

    settings = SamplingSettings(n=n, temperature=plan.temperature, top_p=1.0, max_tokens=plan.max_completion_length,
                                seed=0, batch_size=8)  # fmt: skip
    was_training = model.training
    metrics, lines = evaluate_model(model, tokenizer, qs, key_offset, settings, f"eval n={n}")
    model.train(was_training)
    majority = [majority_vote([s["answer"] for s in line["samples"]]).pseudo_label for line in lines]
    return {
        "pass@1": metrics["pass@1"],
        f"maj@{n}": metrics[f"maj@{n}"],
        **({"maj@8": metrics["maj@8"]} if "maj@8" in metrics else {}),
        "answer_rate": metrics["answer_rate"],
        "top_answer_share": top_label_share(majority),
        "majority_answers": majority,
        "majority_correct": [is_equivalent(line["gold"], m) for line, m in zip(lines, majority)],
        "accuracy": [sum(s["correct"] for s in line["samples"]) / n for line in lines],
    }


def evaluate_model_sets(model, tokenizer, sets: dict[str, list[dict]], n: int, plan: Plan) -> dict[str, Any]:
    """The final evaluation on the trained-on and the held-out questions."""
    return {
        part: evaluate(model, tokenizer, qs, n, plan, key_offset=0 if part == "trained" else 1_000_000)
        for part, qs in sets.items()
    }


class Curve:
    """Held-out pass@1 every ``plan.curve_every`` steps, appended to ``path`` (one JSON line a point)."""

    def __init__(self, path: Path, tokenizer, held_out: list[dict], plan: Plan):
        from transformers import TrainerCallback

        self.path, self.tokenizer, self.held_out, self.plan = path, tokenizer, held_out, plan
        curve = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step % curve.plan.curve_every == 0:
                    curve.point(model, state.global_step)

        self.callback = Callback()

    def point(self, model, step: int) -> None:
        scores = evaluate(model, self.tokenizer, self.held_out, self.plan.curve_samples, self.plan, 1_000_000)
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": step, "held_out_pass@1": scores["pass@1"]}) + "\n")

    def points(self) -> list[dict]:
        """The measured points, one per step (a point measured again after a resume replaces the earlier one)."""
        if not self.path.exists():
            return []
        by_step = {p["step"]: p for p in map(json.loads, self.path.read_text().splitlines())}
        return [by_step[s] for s in sorted(by_step)]


# -- training ----------------------------------------------------------------------------------------------------
def train_config(plan: Plan, arm: str, seed: int, lr: float, label_share: float, steps: int, out: Path):
    from sasc_ttrl.training.configs import SASCConfig

    return SASCConfig(
        output_dir=str(out), reward_funcs=[ARMS[arm]], min_label_share=label_share,
        num_generations=plan.num_generations, train_generations=plan.train_generations,
        per_device_train_batch_size=plan.num_generations * plan.questions_per_step, gradient_accumulation_steps=1,
        steps_per_generation=1, num_iterations=1, max_completion_length=plan.max_completion_length,
        temperature=plan.temperature, top_p=1.0, top_k=0, beta=0.0, loss_type="dapo", scale_rewards="group",
        learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, max_steps=steps, seed=seed,
        use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, save_strategy="steps",
        save_steps=plan.curve_every, save_total_limit=1, logging_steps=1, report_to="none", log_completions=False,
        disable_tqdm=True, shuffle_dataset=True, model_init_kwargs={"dtype": "float32"},
    )  # fmt: skip


def run_arm(model_path: str, plan: Plan, sets: dict, arm: str, seed: int, lr: float, label_share: float,
            folder: Path, curve: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train one arm (resumed from its last checkpoint), evaluate it, and save ``result.json`` in ``folder``; with
    ``curve``, a held-out point every ``plan.curve_every`` steps."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, set_seed

    from sasc_ttrl.training.checks import last_complete_checkpoint
    from sasc_ttrl.training.trainer import SASCTrainer

    done = folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    trained = sets["trained"]
    steps = plan.epochs * len(trained) // plan.questions_per_step
    dataset = Dataset.from_list([{"prompt": q["messages"], "answer": q["answer"]} for q in trained])
    config = train_config(plan, arm, seed, lr, label_share, steps, folder / "train")
    points = Curve(folder / "curve.jsonl", tokenizer, sets["held_out"][: plan.curve_questions], plan)
    lora = LoraConfig(r=plan.lora_r, lora_alpha=2 * plan.lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SASCTrainer(model=model_path, args=config, train_dataset=dataset, processing_class=tokenizer,
                          peft_config=lora, callbacks=[points.callback] if curve else [])  # fmt: skip
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(folder / "train"))
    trained_seconds = time.monotonic() - start
    model = trainer.accelerator.unwrap_model(trainer.model)
    result = {
        "arm": arm, "seed": seed, "learning_rate": lr, "min_label_share": label_share, "steps": steps,
        "evaluation": evaluate_model_sets(model, tokenizer, sets, plan.eval_samples, plan),
        "curve": points.points(), "log_history": trainer.state.log_history,
        "collapse_warning": getattr(trainer._collapse_guard, "message", None),
        "seconds": {"train": trained_seconds, "total": time.monotonic() - start},
    }  # fmt: skip
    record_json(done, result)
    shutil.rmtree(folder / "train", ignore_errors=True)  # checkpoints: not needed once the result is saved
    del trainer, model
    gc.collect()
    return result


def base_result(model_path: str, plan: Plan, sets: dict, folder: Path) -> dict[str, Any]:
    """The base model's evaluation (n = base_eval_samples) and its curve point at step 0."""
    from sasc_ttrl.sampling.models import load_transformers_model

    done = folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    start = time.monotonic()
    model, tokenizer = load_transformers_model(model_path, dtype="float32", device="cpu")
    curve = evaluate(model, tokenizer, sets["held_out"][: plan.curve_questions], plan.curve_samples, plan, 1_000_000)
    result = {
        "arm": "base",
        "evaluation": evaluate_model_sets(model, tokenizer, sets, plan.base_eval_samples, plan),
        "curve": [{"step": 0, "held_out_pass@1": curve["pass@1"]}],
        "seconds": {"total": time.monotonic() - start},
    }
    record_json(done, result)
    return result


def record_json(path: Path, value: Any) -> None:
    from sasc_ttrl.data.store import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(value, indent=1))


# -- the dev rule ------------------------------------------------------------------------------------------------
def change(result: dict, base: dict, part: str) -> float:
    """A run's pass@1 change against the base model on ``part``, in points."""
    return 100 * (result["evaluation"][part]["pass@1"] - base["evaluation"][part]["pass@1"])


def decide(dev: dict[tuple[float, float], list[dict]], base: dict, plan: Plan) -> dict[str, Any]:
    """The README's rule: drop a configuration that collapsed in any dev seed; then the largest worst-case held-out
    gain over the dev seeds; ties (equal to 0.1 point) by the larger mean trained-on gain, then the simpler one
    (filter off before on, the lower learning rate first)."""
    rows = []
    for (lr, share), results in dev.items():
        collapsed = any(r["evaluation"]["held_out"]["top_answer_share"] >= plan.collapse_share for r in results)
        worst = min(change(r, base, "held_out") for r in results)
        mean_trained = sum(change(r, base, "trained") for r in results) / len(results)
        rows.append({"learning_rate": lr, "min_label_share": share, "collapsed": collapsed,
                     "worst_held_out_gain": worst, "mean_trained_gain": mean_trained})  # fmt: skip
    eligible = [r for r in rows if not r["collapsed"]] or rows
    eligible.sort(key=lambda r: (-round(r["worst_held_out_gain"], 1), -r["mean_trained_gain"],
                                 r["min_label_share"], r["learning_rate"]))  # fmt: skip
    return {"choice": eligible[0], "table": rows, "all_collapsed": not any(not r["collapsed"] for r in rows)}


# -- phases ------------------------------------------------------------------------------------------------------
def phase_dev(model_path: str, plan: Plan, root: Path) -> dict[str, Any]:
    sets = questions(plan)["dev"]
    base = base_result(model_path, plan, sets, root / "dev" / "base")
    dev: dict[tuple[float, float], list[dict]] = {}
    for lr in plan.dev_learning_rates:
        for share in plan.dev_label_shares:
            folder = root / "dev" / f"lr{lr:g}-tau{share:g}"
            dev[(lr, share)] = [
                run_arm(model_path, plan, sets, "sasc", seed, lr, share, folder / f"seed{seed}", curve=False)
                for seed in plan.dev_seeds
            ]
    choice = decide(dev, base, plan)
    record_json(root / "dev_choice.json", choice)
    return choice


def phase_report(model_path: str, plan: Plan, root: Path) -> None:
    """Every arm and seed on the reported split with the dev choice (decided first from the dev runs, restored or
    trained, when ``dev_choice.json`` is missing: a fresh machine)."""
    choice_file = root / "dev_choice.json"
    choice = (
        json.loads(choice_file.read_text())["choice"]
        if choice_file.exists()
        else phase_dev(model_path, plan, root)["choice"]
    )
    sets = questions(plan)["report"]
    base_result(model_path, plan, sets, root / "report" / "base")
    for seed in plan.seeds:
        for arm in ARMS:
            if arm == "format" and seed != plan.seeds[0]:
                continue
            run_arm(model_path, plan, sets, arm, seed, choice["learning_rate"], choice["min_label_share"],
                    root / "report" / arm / f"seed{seed}")  # fmt: skip


def restore(source: Path, root: Path, plan: Plan) -> list[Path]:
    """Copy the finished runs' ``result.json`` published in ``source`` (``label_free_summary.publish``) into the run
    folder ``root`` where it has none, so that the study resumes there instead of training them again; only when
    ``source``'s plan is this plan (results of another plan are never mixed in). Returns the copied files."""
    published = source / "plan.json"
    if not published.exists():
        return []
    if json.loads(published.read_text()) != json.loads(json.dumps(asdict(plan))):
        print(f"not restoring {source}: its plan.json differs from this plan", flush=True)
        return []
    copied = []
    for result in sorted(source.glob("*/**/result.json")):
        target = root / result.relative_to(source)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(result, target)
            copied.append(target)
    return copied


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["dev", "report", "summary", "all"])
    parser.add_argument("--output_root", default=str(REPO / "runs" / "label_free_study"))
    parser.add_argument("--model", default=None, help="Model (default: SmolLM2-135M-Instruct; --quick: tiny).")
    parser.add_argument("--quick", action="store_true", help="The pipeline on the tiny model, in about 2 minutes.")
    parser.add_argument("--lock", default=None, help="Heavy-job lock file held while a phase runs.")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads (2 only when nothing else runs).")
    args = parser.parse_args(argv)
    import label_free_summary
    import torch

    torch.set_num_threads(args.threads)

    plan = QUICK if args.quick else Plan()
    root = Path(args.output_root)
    root.mkdir(parents=True, exist_ok=True)
    record_json(root / "plan.json", asdict(plan))
    if not args.quick:
        restored = restore(RESULTS_DIR / "runs", root, plan)
        print(f"{len(restored)} finished runs restored from {RESULTS_DIR / 'runs'}", flush=True)
    model_path = args.model or str(record.tiny_model_dir() if args.quick else record.smollm2_dir())
    with record.heavy_lock(args.lock):
        if args.phase in ("dev", "all"):
            print("dev choice:", json.dumps(phase_dev(model_path, plan, root)["choice"]), flush=True)
        if args.phase in ("report", "all"):
            phase_report(model_path, plan, root)
    summary = label_free_summary.summarise(root, plan)
    if not args.quick:
        label_free_summary.publish(root, RESULTS_DIR, FIGURE)
    print(summary["markdown"])


if __name__ == "__main__":
    sys.exit(main())
