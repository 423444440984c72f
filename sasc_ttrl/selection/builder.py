"""The data builder's engine: sample N candidates per question, score them with the selection methods, append one
row per question and method, optionally guided re-sampling and key steps (the ``sasc-ttrl build`` command).

Every method scores the same candidates (one generation per question, seeded by ``(seed, question index, sample
index)``). Rows are appended and fsynced one by one; a rerun skips the questions a file already holds and
regenerates the same candidates for the rest, so each question appears exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..core.answers import group_equivalent, is_equivalent
from ..data.benchmarks import Question
from ..data.prompts import render_prompt
from ..data.store import append_row, read_samples
from ..sampling.generation import encode_prompts, sample_records
from ..sampling.guidance import GuidedOutcome, guided_resample
from ..sampling.models import load_transformers_model
from ..sampling.openai_client import KeyStepClient, KeyStepError, api_key_from_env
from ..sampling.records import SampleRecord, grade_records
from .adapters.judge import Judge
from .adapters.reward_model import RewardModelVerifier
from .adapters.token_features import compute_token_features
from .base import SelectionContext
from .build_arguments import GUIDED_SEED_OFFSET, BuildArguments
from .candidates import Candidate
from .registry import MethodSpec

logger = logging.getLogger(__name__)


@dataclass
class _Round:
    """The candidates of one question and what they cost."""

    candidates: list[Candidate]
    generation_seconds: float
    feature_seconds: float = 0.0


class SelectionBuilder:
    """Samples, scores and selects; loads the model, the verifier and the key-step client once."""

    def __init__(self, args: BuildArguments, specs: Sequence[MethodSpec], backend: str):
        self.args = args
        self.specs = list(specs)
        self.backend = backend
        self.settings = args.selection_settings()
        self.model: Any = None
        self.tokenizer: Any = None
        self.llm: Any = None
        self.judge: Judge | None = None
        self.verifier: RewardModelVerifier | None = None
        self.key_steps: KeyStepClient | None = None
        if args.key_step_api_base:
            self.key_steps = KeyStepClient(
                api_base=args.key_step_api_base,
                model=args.key_step_api_model,
                temperature=args.key_step_temperature,
                api_key=api_key_from_env(args.key_step_api_key_env, "key-step"),
                max_retries=args.key_step_max_retries,
                backoff=args.key_step_backoff,
                timeout=args.key_step_timeout,
            )
        else:
            logger.warning("no --key_step_api_base: key-step extraction is off and gpt_response is left empty")

    # -- models --------------------------------------------------------------------------------------------------
    def _load(self) -> None:
        a = self.args
        needs = set().union(*(s.needs for s in self.specs))
        if self.backend == "vllm":
            from ..sampling.models import load_tokenizer, load_vllm

            self.llm = load_vllm(a.model_name_or_path, seed=a.seed, entropy_top_k=a.entropy_top_k, dtype=a.dtype)
            self.tokenizer = load_tokenizer(a.model_name_or_path)
            if needs & {"token_stats", "hidden_states", "judge"}:
                # The per-token features and the judge need the logits / hidden states of a transformers model.
                self.model, _ = load_transformers_model(a.model_name_or_path, dtype=a.dtype)
        else:
            self.model, self.tokenizer = load_transformers_model(a.model_name_or_path, dtype=a.dtype)
        if "judge" in needs:
            self.judge = Judge(self.model, self.tokenizer, batch_size=a.feature_batch_size)
        if "verifier" in needs:
            self.verifier = RewardModelVerifier(
                a.verifier_model_name_or_path, kind=a.verifier_kind, batch_size=a.feature_batch_size, dtype=a.dtype
            )

    # -- sampling and features -----------------------------------------------------------------------------------
    def sample(
        self, texts: Sequence[str], keys: Sequence[int], seed: int
    ) -> tuple[list[str], list[list[SampleRecord]]]:
        """Render the questions as prompts and sample ``n_candidates`` records for each."""
        if self.tokenizer is None:
            self._load()
        a = self.args
        prompts = [render_prompt(t, self.tokenizer, self.args.prompt_style) for t in texts]
        groups = sample_records(
            self.backend,
            self.llm if self.backend == "vllm" else self.model,
            self.tokenizer,
            prompts,
            replace(a.sampling_settings, seed=seed),
            sample_keys=keys,
        )
        return prompts, groups

    def candidates(self, prompt: str, records: list[SampleRecord], needs: set[str]) -> tuple[list[Candidate], float]:
        """Wrap records as candidates, with the forward-pass features when a method needs them."""
        start = time.perf_counter()
        features = None
        if needs & {"token_stats", "hidden_states"}:
            prompt_ids = encode_prompts(self.tokenizer, [prompt])[0]
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            features = compute_token_features(
                self.model,
                [prompt_ids] * len(records),
                [r.token_ids for r in records],
                pad_token_id=pad,
                top_k=self.args.entropy_top_k,
                hidden_states="hidden_states" in needs,
                batch_size=self.args.feature_batch_size,
            )
        # Token -> step maps (for step-level token statistics) only when there are token statistics.
        tokenizer = self.tokenizer if features is not None else None
        out = [
            Candidate.from_record(r, None if features is None else features[i], tokenizer)
            for i, r in enumerate(records)
        ]
        return out, (time.perf_counter() - start) if features is not None else 0.0

    # -- one question ----------------------------------------------------------------------------------------------
    def question_rows(
        self,
        question: Question,
        prompt: str,
        records: list[SampleRecord],
        generation_seconds: float,
        specs: Sequence[MethodSpec],
    ) -> list[dict[str, Any]]:
        """Score and select one question's candidates with every method in ``specs``; one row per method."""
        a = self.args
        needs = set().union(*(s.needs for s in specs))
        grade_records(records, question.gold, timeout=a.answer_timeout)
        candidates, feature_seconds = self.candidates(prompt, records, needs)
        classes = group_equivalent([c.answer for c in candidates], timeout=a.answer_timeout)
        guided: GuidedOutcome | None = None
        extra_tokens, extra_seconds = 0, 0.0
        if a.guided_resample:
            spent: dict[str, Any] = {}

            def resample(text: str) -> list[Candidate]:
                start = time.perf_counter()
                hinted_prompts, groups = self.sample([text], [question.index], a.seed + GUIDED_SEED_OFFSET)
                grade_records(groups[0], question.gold, timeout=a.answer_timeout)
                new, _ = self.candidates(hinted_prompts[0], groups[0], needs)
                spent["seconds"] = time.perf_counter() - start
                spent["tokens"] = sum(c.num_tokens for c in new)
                return new

            first_tokens = sum(c.num_tokens for c in candidates)
            candidates, classes, guided = guided_resample(
                question.question, candidates, classes, resample, a.consensus_threshold, timeout=a.answer_timeout
            )
            if guided.triggered:
                # The round that was not kept still cost its tokens and time.
                extra_tokens = spent["tokens"] if not guided.used else first_tokens
                extra_seconds = spent["seconds"]
        context = SelectionContext(
            question=question.question,
            classes=classes,
            settings=self.settings,
            judge=self.judge,
            verifier=self.verifier,
        )
        any_correct = None if question.gold is None else any(bool(c.record.correct) for c in candidates)
        n = len(candidates)
        rows = []
        key_step_cache: dict[str, tuple[str, str | None]] = {}
        for spec in specs:
            start = time.perf_counter()
            selection = spec.select(candidates, context)
            method_seconds = time.perf_counter() - start
            chosen = candidates[selection.index] if selection.index is not None else None
            label_class = classes[selection.index] if selection.index is not None else None
            agree = sum(c == label_class for c in classes) / n if label_class is not None and n else 0.0
            uses_features = bool(spec.needs & {"token_stats", "hidden_states"})
            # Sampling (and the feature pass, when the method uses it) are charged pro rata of the samples used.
            shared = generation_seconds + (feature_seconds if uses_features else 0.0)
            seconds = shared * selection.samples_used / max(n, 1) + extra_seconds + method_seconds
            row: dict[str, Any] = {
                "id": question.key,
                "index": question.index,
                "method": spec.name,
                "question": question.question,
                "answer": chosen.text if chosen is not None else "",
                "gpt_response": "",
                "pseudo_label": selection.pseudo_label,
                "confidence": selection.confidence,
                "majority_ratio": agree,
                "selected_index": selection.index,
                "reference_answer": question.gold,
                "correct": None
                if question.gold is None
                else is_equivalent(question.gold, selection.pseudo_label, timeout=a.answer_timeout),
                "any_correct": any_correct,
                "num_candidates": n,
                "samples_used": selection.samples_used,
                "tokens_generated": sum(c.num_tokens for c in candidates[: selection.samples_used]) + extra_tokens,
                "seconds": round(seconds, 4),
                "guided_resample": guided.to_dict() if guided is not None else None,
                "details": selection.details,
            }
            row.update(self._key_steps(question.question, row["answer"], key_step_cache))
            if a.save_candidates:
                row["candidates"] = [{**c.to_dict(), "score": score} for c, score in zip(candidates, selection.scores)]
            rows.append(row)
        return rows

    def _key_steps(self, question: str, solution: str, cache: dict[str, tuple[str, str | None]]) -> dict[str, Any]:
        if self.key_steps is None:
            return {"gpt_response": "", "key_step_status": "off"}
        if not solution:
            return {"gpt_response": "", "key_step_status": "skipped"}
        if solution not in cache:
            try:
                cache[solution] = (self.key_steps.extract(question, solution), None)
            except KeyStepError as err:
                logger.warning("key-step extraction failed (row marked, run goes on): %s", err)
                cache[solution] = ("", str(err))
        text, error = cache[solution]
        if error is not None:
            return {"gpt_response": "", "key_step_status": "failed", "key_step_error": error}
        return {"gpt_response": text, "key_step_status": "ok"}

    # -- the run ---------------------------------------------------------------------------------------------------
    def run(self, questions: Sequence[Question], output_dir: Path) -> dict[str, list[dict[str, Any]]]:
        """Write every missing (question, method) row; return each method's rows in question order."""
        paths = {s.name: output_dir / f"{s.name}.jsonl" for s in self.specs}
        done = {name: read_samples(path) for name, path in paths.items()}
        for name, rows in done.items():
            for q in questions:
                if q.key in rows and rows[q.key]["question"] != q.question:
                    raise ValueError(
                        f"{paths[name]} holds another question under id {q.key!r}; use another output_dir"
                    )
        todo = [q for q in questions if any(q.key not in rows for rows in done.values())]
        if len(todo) < len(questions):
            logger.info("resuming: %d of %d questions already done", len(questions) - len(todo), len(questions))
        if todo and self.tokenizer is None:
            self._load()  # before the clock starts: loading is not a cost of the first question
        handles = {name: open(path, "a", encoding="utf-8") for name, path in paths.items()}
        try:
            with tqdm(total=len(questions), initial=len(questions) - len(todo), unit="question") as progress:
                for start in range(0, len(todo), self.args.batch_size):
                    chunk = todo[start : start + self.args.batch_size]
                    began = time.perf_counter()
                    prompts, groups = self.sample(
                        [q.question for q in chunk], [q.index for q in chunk], self.args.seed
                    )
                    per_question = (time.perf_counter() - began) / len(chunk)
                    for q, prompt, records in zip(chunk, prompts, groups):
                        missing = [s for s in self.specs if q.key not in done[s.name]]
                        for row in self.question_rows(q, prompt, records, per_question, missing):
                            append_row(handles[row["method"]], row)
                            done[row["method"]][q.key] = row
                        progress.update(1)
        finally:
            for handle in handles.values():
                handle.close()
        return {name: [rows[q.key] for q in questions if q.key in rows] for name, rows in done.items()}
