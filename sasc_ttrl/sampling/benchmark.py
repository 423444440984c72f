"""Sample a benchmark into a resumable samples file: one JSON line per question holding its ``n`` records.

This is the evaluator's loop (`sasc-ttrl eval`), also used by the demo and the vote study. A question's line is
appended and fsynced as soon as the question is done; a rerun skips the questions already in the file (a torn last
line is dropped, see [`read_samples`]). Every question is seeded by ``(seed, its index)``, so a resumed run gives
the same samples as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..core.answers import DEFAULT_TIMEOUT_SECONDS
from ..data.benchmarks import Question
from ..data.prompts import render_prompt
from ..data.store import append_row, read_samples
from .generation import SamplingSettings, sample_records
from .models import load_tokenizer, load_transformers_model, load_vllm
from .records import SampleRecord, grade_records

logger = logging.getLogger(__name__)
ENTROPY_DECIMALS = 6


class BenchmarkSampler:
    """Samples questions in a prompt style; loads the model on first use (a finished run only recomputes metrics).

    Args:
        model_name_or_path: Checkpoint (local folder or hub name).
        backend: ``"vllm"`` or ``"transformers"``.
        settings: How to sample.
        prompt_style: How a question is asked (`sasc_ttrl.data.prompts.PROMPT_STYLES`).
        system_prompt: A system message in front of every prompt.
        dtype: Model dtype (``auto``, ``float32``, ``bfloat16``, ...).
        vllm_kwargs: Extra ``vllm.LLM`` arguments (``gpu_memory_utilization``, ``tensor_parallel_size``, ...).
    """

    def __init__(
        self,
        model_name_or_path: str,
        backend: str,
        settings: SamplingSettings,
        prompt_style: str = "math",
        system_prompt: str | None = None,
        dtype: str = "auto",
        vllm_kwargs: dict[str, Any] | None = None,
    ):
        self.model_name_or_path = model_name_or_path
        self.backend = backend
        self.settings = settings
        self.prompt_style = prompt_style
        self.system_prompt = system_prompt
        self.dtype = dtype
        self.vllm_kwargs = vllm_kwargs or {}
        self.model: Any = None
        self.tokenizer: Any = None

    def _load(self) -> None:
        logger.info("loading %s with the %s backend", self.model_name_or_path, self.backend)
        if self.backend == "vllm":
            self.model = load_vllm(
                self.model_name_or_path,
                seed=self.settings.seed,
                entropy_top_k=self.settings.entropy_top_k,
                dtype=self.dtype,
                **self.vllm_kwargs,
            )
            self.tokenizer = load_tokenizer(self.model_name_or_path)
        else:
            self.model, self.tokenizer = load_transformers_model(self.model_name_or_path, dtype=self.dtype)

    def __call__(self, questions: Sequence[Question]) -> list[list[SampleRecord]]:
        if self.model is None:
            self._load()
        prompts = [render_prompt(q.question, self.tokenizer, self.prompt_style, self.system_prompt) for q in questions]
        return sample_records(
            self.backend, self.model, self.tokenizer, prompts, self.settings, sample_keys=[q.index for q in questions]
        )


def question_line(question: Question, records: Sequence[SampleRecord]) -> dict[str, Any]:
    """The samples-file line of one question: its id, index, text, reference answer and graded records."""
    return {
        "id": question.key,
        "index": question.index,
        "question": question.question,
        "gold": question.gold,
        "samples": [r.to_dict(entropy_decimals=ENTROPY_DECIMALS) for r in records],
    }


def sample_benchmark(
    name: str,
    questions: Sequence[Question],
    path: Path,
    sampler: Callable[[list[Question]], list[list[SampleRecord]]],
    batch_size: int,
    answer_timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> list[dict[str, Any]]:
    """Sample every question not yet in ``path``, ``batch_size`` questions per ``sampler`` call, appending one line
    per question; return every question's line (as the file holds it).

    Raises:
        ValueError: ``path`` holds another question under one of the ids.
    """
    done = read_samples(path)
    for q in questions:
        if q.key in done and done[q.key]["question"] != q.question:
            raise ValueError(f"{path} holds another question under id {q.key!r}; use another output_dir")
    todo = [q for q in questions if q.key not in done]
    if len(todo) < len(questions):
        logger.info("%s: %d of %d questions already sampled", name, len(questions) - len(todo), len(questions))
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "a", encoding="utf-8") as file,
        tqdm(total=len(questions), initial=len(questions) - len(todo), desc=name, unit="question") as progress,
    ):
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for q, records in zip(chunk, sampler(chunk)):
                grade_records(records, q.gold, timeout=answer_timeout)
                line = question_line(q, records)
                append_row(file, line)
                # The metrics read what the file holds, so a resumed run computes them from identical data.
                done[q.key] = json.loads(json.dumps(line))
                progress.update(1)
    return [done[q.key] for q in questions]
