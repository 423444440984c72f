"""Verifiers from builder rollouts: Monte-Carlo step labels, a process reward model (PRM) and an outcome verifier.

Command::

    sasc-ttrl prm --dataset_path outputs/build/self-consistency.jsonl --model_name_or_path MODEL \\
        --k 4 --rule any --target pseudo_label --output_dir outputs/prm
    sasc-ttrl build ... --methods verifier --verifier_model_name_or_path outputs/prm/orm   # rerank with it

The input is a builder output written with ``--save_candidates``, or human step labels in PRM800K's format
(``--prm800k_data``, see below). Three stages (``--stages``), each resumable:

1. ``label``: every candidate's steps are labelled by Monte-Carlo completion ([`step_labels`]) against the
   pseudo-label (``--target pseudo_label``, default) or the reference answer (``--target gold``, only when you may
   use it). Rows go to ``step_labels.jsonl``, one per question, appended and fsynced; a rerun skips the questions
   the file holds, and a rerun with other labelling settings is refused (``--overwrite`` starts over). Every row
   records its ``target``. With ``--prm800k_data`` (PRM800K JSONL files, folders or hub names; phase 1 and phase 2
   rows) the labels are the human ratings instead, as Lightman et al. train their PRM ([`prm800k`]):
   ``--prm800k_paths chosen`` (one path per row) or ``prod`` (every combination of the alternatives, at most
   ``--prm800k_max_paths`` per row), ``--prm800k_neutral good`` (the paper's reading of a neutral step; ``bad`` or
   ``ignore``: left out of the loss); the rows are written at once (``target: prm800k``).
2. ``prm``: token classification (2 labels, ``AutoModelForTokenClassification``) at the step separators with
   transformers' ``Trainer``: labels on each separator's last token, -100 elsewhere. Saved to ``prm/``.
3. ``orm``: an outcome verifier with TRL's ``RewardTrainer`` on pairs (chosen = a candidate agreeing with the
   target, rejected = one that does not), written to ``orm_pairs.jsonl``; saved to ``orm/``.

A finished stage (its folder exists) is skipped; without ``--stages`` all three run on builder data, ``label`` and
``prm`` on PRM800K (its rows hold no sampled candidates to pair). Both models load in the builder's ``verifier`` and
``verifier-vote`` methods:
``--verifier_kind orm`` with ``orm/``, ``--verifier_kind prm`` with ``prm/`` (the token-classification head is
recognised and scored at the separators).
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from trl import TrlParser

from ...data.prompts import render_prompt
from ...data.rollouts import QuestionRollouts, agreement, read_builder_rollouts
from ...data.store import append_row, check_run_settings, field_defaults, read_samples, save_model_atomic, write_atomic
from ...sampling.generation import SamplingSettings, resolve_backend, sample_records
from ...sampling.models import load_transformers_model
from ...selection.step_labels import IGNORE_INDEX, encode_steps, label_steps
from .config import PRMArguments
from .prm800k import prm800k_rows

logger = logging.getLogger(__name__)

LABELS_FILE = "step_labels.jsonl"
PAIRS_FILE = "orm_pairs.jsonl"
CONFIG_FILE = "prm_config.json"
# Settings that determine the step labels: a resumed run must not change them.
LABEL_KEYS = (
    "dataset_path",
    "model_name_or_path",
    "k",
    "rule",
    "threshold",
    "target",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "limit",
    "prompt_style",
    "prm800k_data",
    "prm800k_split",
    "prm800k_paths",
    "prm800k_neutral",
    "prm800k_max_paths",
    "prm800k_keep_control_rows",
)


# -- stage 1: Monte-Carlo step labels ------------------------------------------------------------------------------
def label_dataset(args: PRMArguments, questions: list[QuestionRollouts], path: Path) -> list[dict[str, Any]]:
    """Write the step-label row of every question ``path`` does not hold yet; return all rows in order."""
    done = read_samples(path)
    todo = [q for q in questions if q.key not in done]
    if len(todo) < len(questions):
        logger.info("resuming: %d of %d questions already labelled", len(questions) - len(todo), len(questions))
    settings = args.label_settings()
    if todo:
        backend = resolve_backend(args.backend)
        if backend == "vllm":
            from transformers import AutoTokenizer

            from ...sampling.models import load_vllm

            model = load_vllm(args.model_name_or_path, seed=args.seed)
            tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
        else:
            model, tokenizer = load_transformers_model(args.model_name_or_path)
        with open(path, "a", encoding="utf-8") as handle:
            for q in tqdm(todo, unit="question", desc="step labels"):

                def continue_fn(question: str, prefixes, k: int, q=q) -> list[list[str]]:
                    prompt = render_prompt(question, tokenizer, args.prompt_style)
                    groups = sample_records(
                        backend,
                        model,
                        tokenizer,
                        [prompt + p for p in prefixes],
                        SamplingSettings.from_arguments(args, n=k),
                        sample_keys=[q.index * 1_000_000 + m for m in range(len(prefixes))],
                    )
                    return [[r.text for r in g] for g in groups]

                target = q.target(args.target)
                labelled = label_steps(
                    q.question,
                    [r["text"] for r in q.rollouts],
                    target,
                    continue_fn,
                    settings,
                    timeout=args.answer_timeout,
                )
                row = {
                    "id": q.key,
                    "question": q.question,
                    "target": args.target,
                    "target_answer": target,
                    "k": args.k,
                    "rule": args.rule,
                    "threshold": args.threshold,
                    "rollouts": [
                        {"text": r["text"], "answer": r.get("answer"), **lab} for r, lab in zip(q.rollouts, labelled)
                    ],
                }
                append_row(handle, row)
                done[q.key] = row
    return [done[q.key] for q in questions]


def prm800k_label_rows(args: PRMArguments, path: Path) -> list[dict[str, Any]]:
    """The step-label rows of the PRM800K data: read back from ``path``, or converted and written there."""
    if path.exists():
        logger.info("%s exists: PRM800K paths already converted", path)
        return list(read_samples(path).values())
    rows = prm800k_rows(args.prm800k_data or [], args.prm800k_settings(), args.prm800k_split, args.limit)
    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return rows


def label_statistics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of the step-label data set: questions, rollouts (paths), steps, the share of good steps among the
    supervised ones, and the steps left out of the loss (a neutral PRM800K step with ``--prm800k_neutral ignore``)."""
    labels = [lab for row in rows for r in row["rollouts"] for lab in r["labels"]]
    supervised = [lab for lab in labels if lab is not None]
    return {
        "questions": len(rows),
        "rollouts": sum(len(row["rollouts"]) for row in rows),
        "steps": len(labels),
        "good_step_share": sum(supervised) / len(supervised) if supervised else None,
        "unsupervised_steps": len(labels) - len(supervised),
    }


# -- stage 2: the process reward model -----------------------------------------------------------------------------
def prm_examples(tokenizer: Any, rows: list[dict[str, Any]], separator: str, max_length: int) -> list[dict]:
    """Token-classification examples (``input_ids``, ``attention_mask``, ``labels``) of every labelled rollout."""
    examples = []
    for row in rows:
        for r in row["rollouts"]:
            if not r["steps"]:
                continue
            enc = encode_steps(tokenizer, row["question"], r["steps"], r["labels"], separator, max_length)
            if any(label != IGNORE_INDEX for label in enc["labels"]):
                examples.append(
                    {
                        "input_ids": enc["input_ids"],
                        "attention_mask": [1] * len(enc["input_ids"]),
                        "labels": enc["labels"],
                    }
                )
    return examples


def train_prm(args: PRMArguments, rows: list[dict[str, Any]], output_dir: Path) -> dict[str, float]:
    """Train the 2-label token classifier at the step separators and save it to ``output_dir``."""
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = prm_examples(tokenizer, rows, args.separator, args.max_length)
    if not examples:
        raise ValueError(f"{args.output_dir}/{LABELS_FILE} holds no labelled step to train the PRM on")
    model = AutoModelForTokenClassification.from_pretrained(
        args.model_name_or_path,
        num_labels=2,
        id2label={0: "bad", 1: "good"},
        label2id={"bad": 0, "good": 1},
        dtype="float32",
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.prm_step_separator = args.separator  # read back by the builder's verifier
    kwargs = args.trainer_kwargs(output_dir.with_name("prm-trainer"))
    kwargs.pop("gradient_checkpointing")  # TRL's configs turn it on by default; transformers' do not
    training = TrainingArguments(**kwargs)
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=Dataset.from_list(examples),
        data_collator=DataCollatorForTokenClassification(tokenizer),
    )
    result = trainer.train()
    save_model_atomic(trainer.model, tokenizer, output_dir)
    return {"examples": len(examples), **{k: float(v) for k, v in result.metrics.items()}}


# -- stage 3: the outcome verifier ---------------------------------------------------------------------------------
def preference_pairs(rows: list[dict[str, Any]], max_pairs: int, timeout: float | None) -> list[dict[str, Any]]:
    """Chosen / rejected pairs per question: candidates agreeing with the row's target vs the others.

    The i-th pair takes the i-th agreeing and the i-th other candidate, cycling through the shorter list, up to
    ``max_pairs`` pairs (a question where all or none agree gives none).
    """
    pairs = []
    for row in rows:
        agree = agreement([r.get("answer") for r in row["rollouts"]], row["target_answer"], timeout)
        chosen = [r["text"] for r, a in zip(row["rollouts"], agree) if a]
        rejected = [r["text"] for r, a in zip(row["rollouts"], agree) if not a]
        if not chosen or not rejected:
            continue
        count = min(max_pairs, max(len(chosen), len(rejected)))
        for c, r in itertools.islice(zip(itertools.cycle(chosen), itertools.cycle(rejected)), count):
            pairs.append(
                {
                    "id": row["id"],
                    "target": row["target"],
                    "prompt": [{"role": "user", "content": row["question"]}],
                    "chosen": [{"role": "assistant", "content": c}],
                    "rejected": [{"role": "assistant", "content": r}],
                }
            )
    return pairs


def train_orm(args: PRMArguments, pairs: list[dict[str, Any]], output_dir: Path) -> dict[str, float]:
    """Train the outcome verifier with TRL's ``RewardTrainer`` and save it to ``output_dir``."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    if not pairs:
        raise ValueError("no chosen/rejected pair: every question's candidates all agree (or all disagree)")
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = RewardConfig(
        **args.trainer_kwargs(output_dir.with_name("orm-trainer")),
        max_length=args.max_length,
        model_init_kwargs={"dtype": "float32"},
        dataset_num_proc=None,
    )
    dataset = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    trainer = RewardTrainer(
        model=args.model_name_or_path, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    if trainer.model.config.pad_token_id is None:
        trainer.model.config.pad_token_id = tokenizer.pad_token_id
    result = trainer.train()
    save_model_atomic(trainer.model, tokenizer, output_dir)
    return {"pairs": len(pairs), **{k: float(v) for k, v in result.metrics.items()}}


# -- the command ---------------------------------------------------------------------------------------------------
def _check_config(args: PRMArguments, output_dir: Path) -> None:
    settings = {k: v for k, v in asdict(args).items() if k in LABEL_KEYS}
    defaults = {**field_defaults(PRMArguments), "prompt_style": "math"}  # labels made before the field existed
    check_run_settings(output_dir, CONFIG_FILE, settings, args.overwrite, defaults, what="step labels")


def main(args: PRMArguments) -> dict[str, Any]:
    """Run the requested stages; return (and write to ``prm_report.json``) what each produced."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    output_dir = Path(args.output_dir)
    _check_config(args, output_dir)
    labels_path = output_dir / LABELS_FILE
    report_path = output_dir / "prm_report.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.exists() else {}
    report["target"] = "prm800k" if args.prm800k_data else args.target
    if "label" in args.stages and args.prm800k_data:
        rows = prm800k_label_rows(args, labels_path)
    elif "label" in args.stages:
        questions = read_builder_rollouts(args.dataset_path, args.target)[: args.limit]
        rows = label_dataset(args, questions, labels_path)
    else:
        if not labels_path.exists():
            raise FileNotFoundError(f"{labels_path} does not exist: run the 'label' stage first")
        rows = list(read_samples(labels_path).values())
    report["labels"] = label_statistics(rows)
    logger.info("step labels: %s", report["labels"])
    if "prm" in args.stages:
        if (output_dir / "prm").exists():
            logger.info("%s exists: PRM already trained, skipped", output_dir / "prm")
        else:
            report["prm"] = train_prm(args, rows, output_dir / "prm")
    if "orm" in args.stages:
        if (output_dir / "orm").exists():
            logger.info("%s exists: outcome verifier already trained, skipped", output_dir / "orm")
        else:
            pairs = preference_pairs(rows, args.max_pairs_per_question, args.answer_timeout)
            write_atomic(output_dir / PAIRS_FILE, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
            report["orm"] = train_orm(args, pairs, output_dir / "orm")
    write_atomic(report_path, json.dumps(report, indent=2) + "\n")
    return report


def make_parser() -> TrlParser:
    """The argument parser of ``sasc-ttrl prm`` (supports ``--config prm.yaml``)."""
    return TrlParser((PRMArguments,))
