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

from .prompts import build_prompt, is_conversation
from .sources import load_raw_dataset

logger = logging.getLogger(__name__)


def prepare_math_dataset(
    dataset,
    tokenizer: Any = None,
    prompt_column: str = "prompt",
    answer_column: str | None = "answer",
    source: str = "dataset",
    prompt_style: str = "math",
    system_prompt: str | None = None,
):
    """Map a raw data set to the trainer's ``prompt`` (+ ``answer`` when present), keeping every other column.

    A question given as text is asked in ``prompt_style`` (see [`build_prompt`]); a prompt already in TRL's
    conversational format (a list of ``{role, content}`` messages) passes through unchanged, so the chat template
    is applied once, by TRL. ``system_prompt`` adds a system message in front of either. Every column other than
    the prompt column stays (TRL hands them to the reward functions); ``answer`` is the answer column as text.

    Args:
        dataset: A `datasets.Dataset`, or a `DatasetDict` (every split is prepared).
        tokenizer: Decides between a conversational and a plain-text prompt for text questions.
        prompt_column: Column holding the question (text) or the conversational prompt.
        answer_column: Column holding the hidden answer, or ``None``. A missing answer column is allowed (the
            data is unlabeled) and logged once.
        source: Name of the data set, for error messages.
        prompt_style: One of ``PROMPT_STYLES`` (see [`build_prompt`]); not applied to conversational prompts.
        system_prompt: A system message put in front of every prompt.

    Raises:
        KeyError: naming the missing prompt column and the columns that exist.
        ValueError: naming the row of an empty or non-text question, or a conversational prompt that already has a
            system message when ``system_prompt`` is given.
    """
    from datasets import DatasetDict

    if isinstance(dataset, DatasetDict):
        return DatasetDict(
            {
                split: prepare_math_dataset(
                    part, tokenizer, prompt_column, answer_column, f"{source}[{split}]", prompt_style, system_prompt
                )
                for split, part in dataset.items()
            }
        )
    columns = dataset.column_names
    if prompt_column not in columns:
        raise KeyError(f"{source}: prompt column {prompt_column!r} not found; columns are {columns}")
    has_answer = answer_column is not None and answer_column in columns
    if answer_column is not None and not has_answer:
        logger.info("%s: no answer column %r; diagnostics against hidden answers are off", source, answer_column)
    prompts = [
        _prompt(value, i, tokenizer, prompt_column, source, prompt_style, system_prompt)
        for i, value in enumerate(dataset[prompt_column])
    ]
    answers = [None if v is None else str(v) for v in dataset[answer_column]] if has_answer else None
    new_columns: dict[str, list] = {"prompt": prompts}
    if answers is not None:
        new_columns["answer"] = answers
    return replace_columns(dataset, new_columns)


def replace_columns(dataset, columns: dict[str, list]):
    """``dataset`` with ``columns`` put in (replacing any column of the same name), every other column kept.

    Works whatever is left besides them -- nothing at all (a data set of only ``prompt`` and ``answer``), or a
    selection whose rows are an indices mapping over a larger table -- and whatever the new columns' types
    (a text question replaced by a conversational prompt).
    """
    from datasets import Dataset, concatenate_datasets

    new = Dataset.from_dict(columns)
    kept = dataset.remove_columns([c for c in columns if c in dataset.column_names])
    if not kept.column_names:
        return new
    if len(kept) != len(new):
        raise ValueError(f"{len(new)} new values for a data set of {len(kept)} rows")
    return concatenate_datasets([kept, new], axis=1)


def _prompt(value: Any, row: int, tokenizer, column: str, source: str, style: str, system_prompt: str | None):
    if is_conversation(value):
        messages = [dict(m) for m in value]
        if system_prompt:
            if messages[0]["role"] == "system":
                raise ValueError(
                    f"{source}: row {row} of {column!r} already has a system message; drop system_prompt or the "
                    "message"
                )
            messages.insert(0, {"role": "system", "content": system_prompt})
        return messages
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{source}: row {row}: empty or non-text question in column {column!r}: {value!r}")
    return build_prompt(value, tokenizer, style, system_prompt)


def load_math_dataset(
    name_or_path: str,
    tokenizer: Any = None,
    split: str = "train",
    config: str | None = None,
    prompt_column: str = "prompt",
    answer_column: str | None = "answer",
    limit: int | None = None,
    prompt_style: str = "math",
    system_prompt: str | None = None,
):
    """Load and prepare a math data set in one call (see [`load_raw_dataset`] and [`prepare_math_dataset`])."""
    dataset = load_raw_dataset(name_or_path, split=split, config=config)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return prepare_math_dataset(
        dataset,
        tokenizer,
        prompt_column,
        answer_column,
        source=name_or_path,
        prompt_style=prompt_style,
        system_prompt=system_prompt,
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
    system_prompt: str | None = None,
    curriculum_fraction: float | None = None,
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
        system_prompt: A system message put in front of every prompt.
        curriculum_fraction: Order the rows by ``majority_ratio``, highest first (ties keep the file's order), and
            keep this share of them (at least one row): the curriculum by agreement. Applied after the band and
            before ``limit``.

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
    if curriculum_fraction is not None and rows:
        rows = sorted(rows, key=lambda r: -r["majority_ratio"])  # stable: ties keep the file's order
        rows = rows[: max(1, round(curriculum_fraction * len(rows)))]
    if limit is not None:
        rows = rows[:limit]
    logger.info(
        "%s: %d of %d builder rows kept (majority_ratio band [%s, %s]%s%s)",
        path,
        len(rows),
        total,
        min_majority_ratio,
        max_majority_ratio,
        ", rows with a pseudo-label" if pseudo_labels else "",
        f", the most agreed {curriculum_fraction:.0%} first" if curriculum_fraction is not None else "",
    )
    if not rows:
        raise ValueError(f"{path}: no builder row left to train on (band or pseudo-label filter too strict?)")
    has_answer = any(r.get("reference_answer") is not None for r in rows)
    columns: dict[str, list] = {
        "prompt": [build_prompt(r["question"], tokenizer, prompt_style, system_prompt) for r in rows],
        "id": [str(r.get("id", i)) for i, r in enumerate(rows)],
    }
    if has_answer:
        columns["answer"] = [r.get("reference_answer") for r in rows]
    if pseudo_labels:
        columns["pseudo_label"] = [str(r["pseudo_label"]) for r in rows]
    return Dataset.from_dict(columns)
