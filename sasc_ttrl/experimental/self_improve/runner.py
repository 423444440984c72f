"""Iterative self-improvement: a STaR-style loop that guides the hard questions (Guided Self-Improvement).

Command::

    sasc-ttrl self-improve --model_name_or_path MODEL --dataset_name questions.json --rounds 2 \\
        --n_samples 4 --target pseudo_label --guidance socratic --output_dir outputs/self_improve

Round ``r`` (``r = 0 .. rounds - 1``) with model ``M_r`` (``M_0`` the starting model, ``M_{r+1}`` fine-tuned from
``M_r``):

1. sample ``n_samples`` rollouts per question; the *target* of a question is its vote's pseudo-label (``--target
   pseudo_label``, label-free; [`core.voting.stability_vote`] with the vote fields of `VoteArguments`, by default
   ``--filter_ratio 0 --vote_weighting uniform``, a plain majority; ``--filter_ratio 0.2 --vote_weighting
   clipped_exp`` is train's stability-aware vote) or the reference answer (``--target gold``, only when you may use
   it);
2. a question is *hard* when fewer than ``hard_threshold`` of its rollouts agree with the target. Hard questions are
   sampled again with guidance (``--guidance``, the four strategies of Ding et al. 2024 plus this project's hint; see
   `sampling.guidance`): ``socratic`` (default: the answers the attempts reached and questions that make the model
   re-check; with pseudo-labels the hinted vote replaces the target when it agrees more, the builder's rule),
   ``answer`` (the target is given: the pseudo-label, or the reference answer with ``--target gold``),
   ``rationale`` (the data's reference solution, ``--solution_column``, default ``solution``), ``interactive`` (a
   teacher behind an OpenAI-compatible API, ``--teacher_api_base``, is shown a wrong attempt and the target and
   points at the first wrong step) or ``state_reset`` (sampling restarts from the longest answer-free step prefix of
   an attempt that agrees with the target; without one, from the reference solution's). Only ``socratic`` may move
   the target: every other strategy is conditioned on it;
3. rollouts agreeing with the target (guided ones included) are kept, at most ``max_kept_per_question`` distinct
   ones per question, and ``M_r`` is fine-tuned on them with TRL's ``SFTTrainer`` -- the prompt is always the
   *original* question, without the hint (STaR's rationalization; a state-reset rollout is its prefix followed by
   the continuation);

then a last pass samples with ``M_rounds`` and only measures. Logged per round (``rounds.json``): the number of hard
questions and how many were guided, their *coverage* (share with at least one kept rollout) without and with
guidance, the coverage of the questions that were hard in round 0 (the "tail narrowing"), and, when the data has
reference answers, the rollout accuracy (avg@n) and the vote's accuracy (maj@n) of ``M_r``. Every round lives in
``round_<r>/`` (``rollouts.jsonl``, ``sft_data.jsonl``, ``model/``, ``round.json`` last); a rerun skips finished
rounds and finished steps.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoTokenizer
from trl import TrlParser

from ...core.answers import extract_answer, group_equivalent
from ...core.errors import ConfigError
from ...core.voting import VoteSettings, stability_vote
from ...data.benchmarks import Question, load_questions
from ...data.prompts import build_prompt, render_prompt
from ...data.rollouts import agreement
from ...data.store import check_run_settings, field_defaults, write_atomic
from ...sampling.generation import SamplingSettings, sample_records
from ...sampling.guidance import GuidancePlan, hinted_question, majority_ratio, plan_guidance
from ...sampling.models import load_transformers_model
from ...sampling.records import SampleRecord, grade_records
from ...training.sft import sft_finetune
from .config import SelfImproveArguments

logger = logging.getLogger(__name__)

HINT_SEED_OFFSET = 1_000_003
CONFIG_FILE = "self_improve_config.json"
FREE_KEYS = (
    "output_dir",
    "batch_size",
    "report_to",
    "answer_timeout",
    "stop_after_round",
    "teacher_api_key_env",
    "teacher_max_retries",
    "teacher_timeout",
)


# -- the bookkeeping of one question and one round (pure) ----------------------------------------------------------
def pseudo_label(records: Sequence[SampleRecord], settings: VoteSettings) -> tuple[str | None, list]:
    """The pseudo-label of [`stability_vote`] with ``settings`` over a group of rollouts (their top-k entropy
    sequences), and the equivalence classes of their answers.

    With ``filter_ratio=0`` and ``vote_weighting="uniform"`` (self-improve's defaults) every answered rollout votes
    with weight 1: the answer of the largest class wins, a tie goes to the class whose first answer comes first,
    which is `core.voting.majority_vote`'s label.
    """
    answers = [r.answer for r in records]
    classes = group_equivalent(answers, timeout=settings.answer_timeout)
    result = stability_vote(answers, [r.entropies for r in records], settings, classes=classes)
    return result.pseudo_label, classes


def kept_texts(texts: Sequence[str], agree: Sequence[bool], limit: int) -> list[str]:
    """The first ``limit`` distinct texts of the rollouts that agree with the target, in order."""
    out: list[str] = []
    for text, ok in zip(texts, agree):
        if ok and text.strip() and text not in out and len(out) < limit:
            out.append(text)
    return out


def round_summary(rows: Sequence[dict[str, Any]], initial_hard: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-round statistics from the question rows of a round.

    Each row has ``id``, ``hard``, ``kept`` (texts), ``kept_unhinted`` (how many kept texts came without a hint),
    ``covered_unhinted`` (at least one unhinted rollout agrees with the target), and, with reference answers,
    ``rollout_accuracy`` (share of the unhinted rollouts that are correct), ``vote_correct``, ``any_correct`` (an
    unhinted rollout is correct) and ``any_correct_with_hints`` (a rollout, hinted or not, is correct). The
    ``*pass_at_n*`` fields are the coverage of the questions by correct rollouts, the measure of tail narrowing
    that does not take the pseudo-label's word for it.

    Args:
        rows: The round's question rows.
        initial_hard: The ids of the questions that were hard in round 0 (their coverage is the tail measure).
    """
    hard = [r for r in rows if r["hard"]]
    summary: dict[str, Any] = {
        "questions": len(rows),
        "hard_questions": len(hard),
        "guided_questions": sum(bool(r.get("guided", r.get("hint") is not None)) for r in hard),
        "hard_coverage_without_hints": _share([r["kept_unhinted"] > 0 for r in hard]),
        "hard_coverage": _share([len(r["kept"]) > 0 for r in hard]),
        "coverage": _share([len(r["kept"]) > 0 for r in rows]),
        "kept_rollouts": sum(len(r["kept"]) for r in rows),
        "hinted_kept_rollouts": sum(len(r["kept"]) - r["kept_unhinted"] for r in rows),
    }
    if initial_hard is not None:
        tail = [r for r in rows if r["id"] in set(initial_hard)]
        summary["initial_hard_questions"] = len(tail)
        summary["initial_hard_coverage_without_hints"] = _share([r["covered_unhinted"] for r in tail])
        if tail and all(r.get("vote_correct") is not None for r in tail):
            summary["initial_hard_vote_accuracy"] = _share([r["vote_correct"] for r in tail])
            summary["initial_hard_pass_at_n"] = _share([r["any_correct"] for r in tail])
    graded = [r for r in rows if r.get("rollout_accuracy") is not None]
    if graded:
        summary["rollout_accuracy"] = float(np.mean([r["rollout_accuracy"] for r in graded]))
        summary["vote_accuracy"] = _share([bool(r["vote_correct"]) for r in graded])
        summary["pass_at_n"] = _share([r["any_correct"] for r in graded])
        hard_graded = [r for r in graded if r["hard"]]
        summary["hard_pass_at_n"] = _share([r["any_correct"] for r in hard_graded])
        summary["hard_pass_at_n_with_hints"] = _share([r["any_correct_with_hints"] for r in hard_graded])
    return summary


def _share(flags: Sequence[bool]) -> float | None:
    return sum(map(bool, flags)) / len(flags) if flags else None


def round_dir(output_dir: Path, r: int) -> Path:
    """The folder of round ``r``."""
    return output_dir / f"round_{r}"


def finished_rounds(output_dir: Path, rounds: int) -> list[int]:
    """The rounds (0 .. ``rounds``, the last one measuring only) whose ``round.json`` exists."""
    return [r for r in range(rounds + 1) if (round_dir(output_dir, r) / "round.json").exists()]


def model_of_round(args: SelfImproveArguments, output_dir: Path, r: int) -> str:
    """The model that samples round ``r``: the starting model, or the one fine-tuned in round ``r - 1``."""
    if r == 0:
        return str(args.model_name_or_path)
    path = round_dir(output_dir, r - 1) / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} does not exist: round {r - 1} did not finish its fine-tuning")
    return str(path)


# -- one round -----------------------------------------------------------------------------------------------------
class RoundRunner:
    """Samples, judges and selects the rollouts of one round with one model."""

    def __init__(self, args: SelfImproveArguments, model_path: str, seed: int):
        self.args = args
        self.seed = seed
        self.model, self.tokenizer = load_transformers_model(model_path)
        self.teacher = args.teacher()

    def sample(self, questions: Sequence[Question], prompts: Sequence[str], seed: int) -> list[list[SampleRecord]]:
        """``n_samples`` graded rollouts of each rendered prompt (seeded by question index)."""
        a = self.args
        groups = sample_records(
            "transformers",
            self.model,
            self.tokenizer,
            list(prompts),
            SamplingSettings.from_arguments(a, n=a.n_samples, seed=seed),
            sample_keys=[q.index for q in questions],
        )
        for q, group in zip(questions, groups):
            grade_records(group, q.gold, timeout=a.answer_timeout)
        return groups

    def prompt(self, question: str, plan: GuidancePlan | None = None) -> str:
        """The rendered prompt of a question: plain, with the plan's hint, or continued from its prefix."""
        if plan is not None and plan.hint is not None:
            question = hinted_question(question, plan.hint)
        text = render_prompt(question, self.tokenizer, self.args.prompt_style)
        return text + plan.prefix if plan is not None and plan.prefix is not None else text

    def run(self, questions: Sequence[Question], guided: bool) -> list[dict[str, Any]]:
        """One row per question (see [`round_summary`]), with the kept rollouts."""
        a = self.args
        groups = self.sample(questions, [self.prompt(q.question) for q in questions], self.seed)
        rows = []
        for q, records in zip(questions, groups):
            label, classes = pseudo_label(records, a.vote_settings)
            target = q.gold if a.target == "gold" else label
            agree = agreement([r.answer for r in records], target, a.answer_timeout)
            rows.append(
                {
                    "id": q.key,
                    "question": q.question,
                    "target": a.target,
                    "target_answer": target,
                    "pseudo_label": label,
                    "answers": [r.answer for r in records],
                    "agree": agree,
                    "hard": sum(agree) / len(agree) < a.hard_threshold,
                    "covered_unhinted": any(agree),
                    "rollout_accuracy": None if q.gold is None else float(np.mean([bool(r.correct) for r in records])),
                    "vote_correct": None if q.gold is None else bool(agreement([label], q.gold, a.answer_timeout)[0]),
                    "any_correct": None if q.gold is None else any(bool(r.correct) for r in records),
                    "any_correct_with_hints": None if q.gold is None else any(bool(r.correct) for r in records),
                    "guidance": a.guidance if guided else None,
                    "guided": False,
                    "hint": None,
                    "_texts": [r.text for r in records],
                    "_classes": classes,
                }
            )
        hard = [i for i, row in enumerate(rows) if row["hard"]]
        if guided and hard:
            self._guide([questions[i] for i in hard], [rows[i] for i in hard])
        for row in rows:
            texts, agree = row.pop("_texts"), row["agree"]
            row.pop("_classes")
            unhinted = kept_texts(texts, agree, a.max_kept_per_question)
            extra = row.pop("_hinted", ([], []))
            row["kept"] = kept_texts(unhinted + extra[0], [True] * len(unhinted) + extra[1], a.max_kept_per_question)
            row["kept_unhinted"] = len(unhinted)
        return rows

    def _guide(self, questions: Sequence[Question], rows: Sequence[dict[str, Any]]) -> None:
        """Plan the guidance of each hard question ([`plan_guidance`]), sample the guided ones again, judge them."""
        a = self.args
        teacher = self.teacher.chat if self.teacher is not None else None
        plans = []
        for q, row in zip(questions, rows):
            plan = plan_guidance(
                a.guidance,
                q.question,
                row["_texts"],
                row["answers"],
                row["_classes"],
                row["agree"],
                row["target_answer"],
                rationale=q.solution,
                teacher=teacher,
            )
            row.update(guided=plan.guided, hint=plan.hint)
            if plan.prefix is not None:
                row["reset_prefix"] = plan.prefix
            if plan.note is not None:
                row["guidance_note"] = plan.note
            plans.append(plan)
        todo = [i for i, plan in enumerate(plans) if plan.guided]
        if not todo:
            return
        groups = self.sample(
            [questions[i] for i in todo],
            [self.prompt(questions[i].question, plans[i]) for i in todo],
            self.seed + HINT_SEED_OFFSET,
        )
        for i, records in zip(todo, groups):
            prefix = plans[i].prefix
            if prefix is not None:  # a state-reset rollout is the prefix followed by the continuation
                for r in records:
                    r.text = prefix + r.text
                    r.answer = extract_answer(r.text)
                grade_records(records, questions[i].gold, timeout=a.answer_timeout)
            self._use_hinted(rows[i], records, may_move_target=a.guidance == "socratic")

    def _use_hinted(self, row: dict[str, Any], records: list[SampleRecord], may_move_target: bool) -> None:
        a = self.args
        row["hinted_answers"] = [r.answer for r in records]
        if row["any_correct"] is not None:
            row["any_correct_with_hints"] = row["any_correct"] or any(bool(r.correct) for r in records)
        if a.target == "pseudo_label" and may_move_target:
            label, classes = pseudo_label(records, a.vote_settings)
            if majority_ratio(classes) > majority_ratio(row["_classes"]):  # consensus improved: trust the new vote
                row["target_answer"] = label
                row["agree"] = agreement(row["answers"], label, a.answer_timeout)
        hinted_agree = agreement(row["hinted_answers"], row["target_answer"], a.answer_timeout)
        row["hinted_agree"] = hinted_agree
        row["_hinted"] = ([r.text for r in records], hinted_agree)


# -- the loop ------------------------------------------------------------------------------------------------------
def _check_config(args: SelfImproveArguments, output_dir: Path) -> None:
    settings = {k: v for k, v in asdict(args).items() if k not in FREE_KEYS + ("overwrite", "rounds")}
    check_run_settings(
        output_dir, CONFIG_FILE, settings, args.overwrite, field_defaults(SelfImproveArguments), what="rounds"
    )


def sft_examples(rows: Sequence[dict[str, Any]], tokenizer: Any, prompt_style: str = "math") -> list[dict[str, Any]]:
    """Prompt-completion rows of the kept rollouts; the prompt is the original question (never the hint)."""
    examples = []
    for row in rows:
        prompt = build_prompt(row["question"], tokenizer, prompt_style)
        for text in row["kept"]:
            completion = [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text
            examples.append({"prompt": prompt, "completion": completion})
    return examples


def _jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def run_round(
    args: SelfImproveArguments, output_dir: Path, questions: list[Question], r: int, initial_hard: Sequence[str]
) -> dict[str, Any]:
    """Round ``r``: sample (or reuse saved rollouts), fine-tune unless it is the measuring pass, then write
    ``round.json``."""
    folder = round_dir(output_dir, r)
    folder.mkdir(parents=True, exist_ok=True)
    trains = r < args.rounds
    rollouts_file = folder / "rollouts.jsonl"
    model_path = model_of_round(args, output_dir, r)
    if rollouts_file.exists():
        rows = [json.loads(line) for line in rollouts_file.read_text().splitlines() if line.strip()]
    else:
        runner = RoundRunner(args, model_path, seed=args.seed + r)
        rows = runner.run(questions, guided=args.guided and trains)
        del runner
        write_atomic(rollouts_file, _jsonl(rows))
    summary = {"round": r, "model": model_path, "trained": trains, "target": args.target}
    summary.update(round_summary(rows, initial_hard if r > 0 else None))
    if trains:
        examples = sft_examples(rows, AutoTokenizer.from_pretrained(model_path), args.prompt_style)
        write_atomic(folder / "sft_data.jsonl", _jsonl(examples))
        summary["sft_examples"] = len(examples)
        if not (folder / "model" / "config.json").exists():
            if not examples:
                raise ValueError(f"round {r}: no rollout agrees with its target; nothing to fine-tune on")
            summary["training"] = sft_finetune(model_path, examples, folder / "model", args)
    write_atomic(folder / "round.json", json.dumps(summary, indent=2) + "\n")
    return summary


def main(args: SelfImproveArguments) -> list[dict[str, Any]]:
    """Run the missing rounds and the measuring pass; return (and write to ``rounds.json``) every round's summary."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    output_dir = Path(args.output_dir)
    _check_config(args, output_dir)
    questions = load_questions(
        args.dataset_name, args.dataset_split, args.limit, args.prompt_column, args.answer_column, args.solution_column
    )
    if args.target == "gold" and any(q.gold is None for q in questions):
        raise ValueError(f"{args.dataset_name}: target='gold' needs a reference answer for every question")
    if args.guided and args.guidance == "rationale" and not any(q.solution for q in questions):
        raise ConfigError(
            f"{args.dataset_name}: guidance='rationale' needs reference solutions; none found (name the column "
            "with --solution_column)"
        )
    done = finished_rounds(output_dir, args.rounds)
    if done:
        logger.info("resuming: rounds %s already finished", done)
    summaries = []
    initial_hard: list[str] = []
    for r in range(args.rounds + 1):
        if args.stop_after_round is not None and r > args.stop_after_round:
            logger.info("stopping after round %d (--stop_after_round); rerun to go on", args.stop_after_round)
            break
        path = round_dir(output_dir, r) / "round.json"
        summary = json.loads(path.read_text()) if r in done else None
        if summary is not None and not summary["trained"] and r < args.rounds:
            # The measuring pass of a shorter run becomes a training round: sample it again, with hints.
            logger.info("round %d was the measuring pass of a %d-round run: sampled again to train", r, r)
            path.unlink()
            (round_dir(output_dir, r) / "rollouts.jsonl").unlink(missing_ok=True)
            summary = None
        if summary is None:
            summary = run_round(args, output_dir, questions, r, initial_hard)
        if r == 0:
            rows = (round_dir(output_dir, 0) / "rollouts.jsonl").read_text().splitlines()
            initial_hard = [row["id"] for row in map(json.loads, rows) if row["hard"]]
        summaries.append(summary)
        logger.info("round %d: %s", r, {k: v for k, v in summary.items() if k != "training"})
    write_atomic(output_dir / "rounds.json", json.dumps(summaries, indent=2) + "\n")
    return summaries


def make_parser() -> TrlParser:
    """The argument parser of ``sasc-ttrl self-improve`` (supports ``--config self_improve.yaml``)."""
    return TrlParser((SelfImproveArguments,))
