"""Training data sets in the trainer's format: a ``prompt`` column (what the model sees) and, when the source has
one, an ``answer`` column (the hidden answer, used only for diagnostics).

Sources: any data set [`sources.load_raw_dataset`] reads (hub name, local file, benchmark name), or the rows of a
``sasc-ttrl build`` output ([`load_builder_output`]).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .prompts import build_prompt
from .sources import load_raw_dataset

logger = logging.getLogger(__name__)


def prepare_math_dataset(
    dataset,
    tokenizer: Any = None,
    prompt_column: str = "prompt",
    answer_column: str | None = "answer",
    source: str = "dataset",
    prompt_style: str = "math",
):
    """Map a raw data set to ``prompt`` (+ ``answer`` when present) in a prompt style (the standard math prompt).

    Args:
        dataset: A `datasets.Dataset`.
        tokenizer: Decides between a conversational and a plain-text prompt (see [`build_prompt`]).
        prompt_column: Column holding the question.
        answer_column: Column holding the hidden answer, or ``None``. A missing answer column is allowed (the
            data is unlabeled) and logged once.
        source: Name of the data set, for error messages.
        prompt_style: One of ``PROMPT_STYLES`` (see [`build_prompt`]).

    Raises:
        KeyError: naming the missing prompt column and the columns that exist.
    """
    columns = dataset.column_names
    if prompt_column not in columns:
        raise KeyError(f"{source}: prompt column {prompt_column!r} not found; columns are {columns}")
    has_answer = answer_column is not None and answer_column in columns
    if answer_column is not None and not has_answer:
        logger.info("%s: no answer column %r; diagnostics against hidden answers are off", source, answer_column)
    if prompt_column == "prompt":
        dataset = dataset.rename_column("prompt", "__question")
        prompt_column = "__question"

    def to_example(row: dict) -> dict:
        question = row[prompt_column]
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"{source}: empty or non-text question in column {prompt_column!r}: {question!r}")
        example = {"prompt": build_prompt(question, tokenizer, prompt_style)}
        if has_answer:
            example["answer"] = None if row[answer_column] is None else str(row[answer_column])
        return example

    keep = {"id"} & set(dataset.column_names)
    remove = [c for c in dataset.column_names if c not in keep]
    return dataset.map(to_example, remove_columns=remove)


def load_math_dataset(
    name_or_path: str,
    tokenizer: Any = None,
    split: str = "train",
    config: str | None = None,
    prompt_column: str = "prompt",
    answer_column: str | None = "answer",
    limit: int | None = None,
    prompt_style: str = "math",
):
    """Load and prepare a math data set in one call (see [`load_raw_dataset`] and [`prepare_math_dataset`])."""
    dataset = load_raw_dataset(name_or_path, split=split, config=config)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return prepare_math_dataset(
        dataset, tokenizer, prompt_column, answer_column, source=name_or_path, prompt_style=prompt_style
    )


BUILDER_COLUMNS = ("question", "pseudo_label")


def is_builder_output(name_or_path: str) -> bool:
    """Whether ``name_or_path`` is a rows file written by ``sasc-ttrl build``: a ``.jsonl`` file whose first row
    has the builder's ``question`` and ``pseudo_label`` columns."""
    import json

    path = Path(name_or_path)
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(row, dict) and all(c in row for c in BUILDER_COLUMNS)
    return False


def load_builder_output(
    path: str | os.PathLike,
    tokenizer: Any = None,
    min_majority_ratio: float | None = None,
    max_majority_ratio: float | None = None,
    pseudo_labels: bool = False,
    limit: int | None = None,
    prompt_style: str = "math",
):
    """Training data from a builder output: its questions, optionally banded by agreement, with fixed labels.

    Args:
        path: A ``<method>.jsonl`` file written by ``sasc-ttrl build``.
        tokenizer: Decides between a conversational and a plain-text prompt (see [`build_prompt`]).
        min_majority_ratio: Keep rows whose ``majority_ratio`` is at least this (drop questions without consensus).
        max_majority_ratio: Keep rows whose ``majority_ratio`` is at most this (``< 1`` drops all-agree questions).
        pseudo_labels: Keep the ``pseudo_label`` column for the ``fixed_label`` reward (rows without one are
            dropped). Otherwise the column is left out, so that the labels cannot leak into an online reward.
        limit: Keep only the first N rows (after the band).
        prompt_style: One of ``PROMPT_STYLES`` (see [`build_prompt`]).

    Returns:
        A `datasets.Dataset` with ``prompt``, ``id``, ``answer`` (the hidden reference answer, for diagnostics only;
        only when the builder had one) and, with ``pseudo_labels``, ``pseudo_label``. The builder's ``answer`` column
        (the selected completion) is not used.
    """
    import json

    from datasets import Dataset

    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not valid JSON ({err})") from err
    total = len(rows)
    if min_majority_ratio is not None:
        rows = [r for r in rows if r["majority_ratio"] >= min_majority_ratio]
    if max_majority_ratio is not None:
        rows = [r for r in rows if r["majority_ratio"] <= max_majority_ratio]
    if pseudo_labels:
        rows = [r for r in rows if r.get("pseudo_label") is not None]
    if limit is not None:
        rows = rows[:limit]
    logger.info(
        "%s: %d of %d builder rows kept (majority_ratio band [%s, %s]%s)",
        path,
        len(rows),
        total,
        min_majority_ratio,
        max_majority_ratio,
        ", rows with a pseudo-label" if pseudo_labels else "",
    )
    if not rows:
        raise ValueError(f"{path}: no builder row left to train on (band or pseudo-label filter too strict?)")
    has_answer = any(r.get("reference_answer") is not None for r in rows)
    columns: dict[str, list] = {
        "prompt": [build_prompt(r["question"], tokenizer, prompt_style) for r in rows],
        "id": [str(r.get("id", i)) for i, r in enumerate(rows)],
    }
    if has_answer:
        columns["answer"] = [r.get("reference_answer") for r in rows]
    if pseudo_labels:
        columns["pseudo_label"] = [str(r["pseudo_label"]) for r in rows]
    return Dataset.from_dict(columns)
