"""Benchmark questions and their reference answers, from the files shipped with the package, a local file or the hub.

`load_benchmark` is the one loader of the evaluator (`sasc-ttrl eval`), the data builder (`sasc-ttrl build`) and
the builder-data trainers: it finds the question / answer / id columns, names the columns that exist when one is
missing, and keys each question by its id (or its index when ids are absent or repeated).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.answers import extract_answer
from .sources import BENCHMARK_FILES, load_raw_dataset

logger = logging.getLogger(__name__)

# The hub data sets the named benchmarks come from (``--benchmarks HuggingFaceH4/MATH-500`` loads the hub copy).
HUB_BENCHMARKS = {
    "math500": ("HuggingFaceH4/MATH-500", "test"),
    "amc": ("AI-MO/aimo-validation-amc", "train"),
    "aime24": ("HuggingFaceH4/aime_2024", "train"),
}
PROMPT_COLUMNS = ("prompt", "problem", "question")
ANSWER_COLUMNS = ("answer", "final_answer", "solution")
ID_COLUMNS = ("id", "unique_id", "problem_id")
SOLUTION_COLUMNS = ("solution", "rationale", "ground_truth_solution")


@dataclass
class Question:
    """One benchmark question: a stable ``key`` (its id), its ``index``, the question text and reference answer, and
    a worked reference ``solution`` when the data has one (GSM8K's ``solution``; ``self-improve --guidance
    rationale`` reads it)."""

    key: str
    index: int
    question: str
    gold: str | None
    solution: str | None = None


def benchmark_slug(name: str) -> str:
    """File-system name of a benchmark: the name itself, a local file's stem, or the hub id with ``/`` -> ``_``."""
    path = Path(name)
    if path.suffix.lower() in (".json", ".jsonl", ".parquet", ".csv"):
        name = path.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "benchmark"


def reference_answer(value: Any) -> str | None:
    """A data set's answer as a string; the boxed / ``####`` part of a worked solution."""
    if value is None:
        return None
    text = str(value).strip()
    if "\\boxed" in text or "####" in text:
        return extract_answer(text) or text
    return text


def _pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], role: str, source: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise KeyError(f"{source}: {role} column {wanted!r} not found; columns are {columns}")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise KeyError(
        f"{source}: no {role} column (looked for {list(candidates)}); columns are {columns}. "
        f"Name it with --{role}_column"
    )


def load_benchmark(
    name: str,
    split: str | None = None,
    limit: int | None = None,
    prompt_column: str | None = None,
    answer_column: str | None = None,
    require_answer: bool = True,
    solution_column: str | None = None,
) -> list[Question]:
    """Load a benchmark's questions and reference answers.

    With ``require_answer=False`` (the offline builder, which also runs on unlabeled test sets) a data set without
    an answer column gives questions with ``gold=None`` instead of an error. A worked solution is read from
    ``solution_column`` (default: the first of [`SOLUTION_COLUMNS`] that exists; none is fine).

    ``math500``, ``amc``, ``aime24`` and ``gsm8k`` are the copies shipped with the package (or
    ``$SASC_TTRL_BENCHMARKS_DIR``; see `data.sources.benchmarks_dir`). Other names are local files or hub data sets
    (see `data.sources.load_raw_dataset`); the hub versions of the named ones are in ``HUB_BENCHMARKS``.

    Raises:
        KeyError: naming the missing column and the columns that exist.
    """
    if Path(name).suffix.lower() in (".json", ".jsonl", ".parquet", ".csv") and not Path(name).is_file():
        raise FileNotFoundError(f"benchmark file {name} does not exist")
    # A named benchmark is a local file (split "train" of the json loader); hub data sets default to "test".
    default_split = "train" if name in BENCHMARK_FILES else "test"
    dataset = load_raw_dataset(name, split=split or default_split)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    columns = dataset.column_names
    q_col = _pick_column(columns, prompt_column, PROMPT_COLUMNS, "prompt", name)
    if require_answer or answer_column is not None:
        a_col = _pick_column(columns, answer_column, ANSWER_COLUMNS, "answer", name)
    else:
        a_col = next((c for c in ANSWER_COLUMNS if c in columns), None)
        if a_col is None:
            logger.info("%s: no hidden answers; nothing will be graded", name)
    if solution_column is not None:
        s_col = _pick_column(columns, solution_column, SOLUTION_COLUMNS, "solution", name)
    else:
        s_col = next((c for c in SOLUTION_COLUMNS if c in columns), None)
    id_col = next((c for c in ID_COLUMNS if c in columns), None)
    ids = [str(v) for v in dataset[id_col]] if id_col else []
    if id_col and len(set(ids)) < len(ids):
        logger.warning("%s: column %r has duplicate ids; questions are keyed by their index", name, id_col)
        id_col = None
    return [
        Question(
            key=ids[i] if id_col else str(i),
            index=i,
            question=str(row[q_col]),
            gold=reference_answer(row[a_col]) if a_col else None,
            solution=None if s_col is None or row[s_col] is None else str(row[s_col]),
        )
        for i, row in enumerate(dataset)
    ]


def load_questions(
    name: str,
    split: str | None = None,
    limit: int | None = None,
    prompt_column: str | None = None,
    answer_column: str | None = None,
    solution_column: str | None = None,
) -> list[Question]:
    """Questions of a benchmark or data set, with their hidden answers when it has some (``gold=None`` otherwise)
    and worked solutions when it has a solution column.

    [`load_benchmark`] without its requirement of an answer column: the loader of the builder and of self-improve,
    which also run on unlabeled data sets.
    """
    return load_benchmark(
        name, split, limit, prompt_column, answer_column, require_answer=False, solution_column=solution_column
    )
