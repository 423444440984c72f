"""Checks that run before any model is loaded, and the one-line error with exit code 2 that reports them.

A run that is going to fail on its configuration or its data fails in seconds, says what is wrong on one line of
stderr, exits with code 2 (the argparse convention for usage errors) and writes nothing (``output_dir`` is not
created). What is checked:

* while parsing (the config dataclasses' own checks): unknown reward name, ``filter_ratio`` outside ``[0, 1)``,
  ``entropy_top_k < 1``, ``num_generations < 2`` (TRL), and every other field check;
* [`validate_train`]: the data file exists and reads, the prompt column exists, and so does the answer column when
  one other than the default ``answer`` is named (unlabeled data may lack ``answer``) -- the error lists the
  columns there are --, ``entropy_top_k`` is at most the model's vocabulary (read from its config
  only, no weights), dotted reward paths import, and ``--resume_from_checkpoint`` (a path or ``auto``) names a
  complete checkpoint;
* [`check_model_vocabulary`] and [`data_errors`] do the same for ``sasc-ttrl eval`` and ``sasc-ttrl build``.

Only [`ConfigError`] (and, while parsing, ``ValueError``) is turned into the one-line exit: an error raised once
training has started keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EXIT_CONFIG_ERROR = 2
DEFAULT_ANSWER_COLUMN = "answer"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"  # the last file the Trainer writes into a checkpoint


class ConfigError(ValueError):
    """A problem with the configuration or the data, found before any model is loaded."""


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (a ``KeyError``'s message without its quotes)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(text).split()) or type(error).__name__


@contextlib.contextmanager
def exit_on(prog: str, errors: tuple[type[BaseException], ...] = (ConfigError,)) -> Iterator[None]:
    """Turn ``errors`` raised inside the block into ``<prog>: error: <one line>`` on stderr and exit code 2."""
    try:
        yield
    except errors as err:
        sys.stderr.write(f"{prog}: error: {one_line(err)}\n")
        raise SystemExit(EXIT_CONFIG_ERROR) from None


def run_command(
    make_parser: Callable[[], Any], main: Callable[..., Any], prog: str, argv: Sequence[str] | None = None
):
    """Parse ``argv`` (``--config`` YAML + flags) and call ``main``; configuration errors exit with code 2."""
    parser = make_parser()
    parser.prog = prog
    with exit_on(prog, (ValueError, OSError)):  # the config dataclasses validate themselves while parsing
        args = parser.parse_args_and_config(args=None if argv is None else list(argv))
    with exit_on(prog):
        return main(*args)


@contextlib.contextmanager
def data_errors(source: str) -> Iterator[None]:
    """Report a data set that cannot be read, or lacks a column, as a [`ConfigError`] naming ``source``.

    ``datasets``' progress bars and log lines are off inside the block, so that stderr holds only the error line.
    """
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    verbosity = datasets.utils.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity(logging.CRITICAL)
    try:
        yield
    except ConfigError:
        raise
    except (KeyError, ValueError, OSError) as err:
        message = one_line(err)
        raise ConfigError(message if source in message else f"{source}: {message}") from err
    except Exception as err:  # noqa: BLE001 - datasets raises its own types for unreadable files
        raise ConfigError(f"cannot read data {source}: {type(err).__name__}: {one_line(err)}") from err
    finally:
        datasets.utils.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()


# -- model ------------------------------------------------------------------------------------------------------------
def model_vocab_size(model_name_or_path: str, revision: str | None = None, trust_remote_code: bool = False) -> int:
    """The vocabulary size in a model's config (the weights are not read)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the model config of {model_name_or_path!r}: {one_line(err)}") from err
    vocab = getattr(config, "vocab_size", None) or getattr(config.get_text_config(), "vocab_size", None)
    if not vocab:
        raise ConfigError(f"the config of {model_name_or_path!r} has no vocab_size")
    return int(vocab)


def check_model_vocabulary(model_name_or_path: str, entropy_top_k: int, **kwargs) -> None:
    """``entropy_top_k`` must be between 1 and the model's vocabulary size."""
    vocab = model_vocab_size(model_name_or_path, **kwargs)
    if not 1 <= entropy_top_k <= vocab:
        raise ConfigError(
            f"entropy_top_k={entropy_top_k} is outside [1, {vocab}], the vocabulary size of {model_name_or_path}"
        )


# -- data -------------------------------------------------------------------------------------------------------------
def check_columns(columns: Sequence[str], source: str, prompt_column: str, answer_column: str | None) -> None:
    """The prompt column must exist; so must the answer column when one other than the default is named."""
    if prompt_column not in columns:
        raise ConfigError(f"{source}: prompt column {prompt_column!r} not found; columns are {list(columns)}")
    if answer_column not in (None, DEFAULT_ANSWER_COLUMN) and answer_column not in columns:
        raise ConfigError(f"{source}: answer column {answer_column!r} not found; columns are {list(columns)}")


def check_train_data(script_args, training_args) -> None:
    """The training data reads and has the columns the run needs (a builder output is read the builder's way)."""
    from .data import is_builder_output, load_builder_output, load_raw_dataset

    name = script_args.dataset_name
    if not name:
        raise ConfigError(
            "dataset_name is required: a hub name, a local json/jsonl/parquet/csv file, or math500/amc/aime24"
        )
    with data_errors(name):
        if is_builder_output(name):
            load_builder_output(
                name,
                min_majority_ratio=script_args.builder_min_majority_ratio,
                max_majority_ratio=script_args.builder_max_majority_ratio,
                pseudo_labels=script_args.use_builder_pseudo_labels,
            )
            return
        path = Path(name)
        if path.suffix.lower() in (".json", ".jsonl", ".parquet", ".csv") and not path.is_file():
            raise ConfigError(f"data file {name} does not exist")
        if path.is_file() and not os.access(path, os.R_OK):
            raise ConfigError(f"data file {name} is not readable")
        dataset = load_raw_dataset(name, split=script_args.dataset_train_split, config=script_args.dataset_config)
    check_columns(dataset.column_names, name, script_args.prompt_column, script_args.answer_column)


# -- resume -----------------------------------------------------------------------------------------------------------
def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The ``checkpoint-<step>`` folder with the highest step that holds a ``trainer_state.json``, or None.

    The Trainer writes ``trainer_state.json`` last, so a folder without it was cut short by a kill while saving; it is
    skipped (with a warning) in favour of the previous one.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
        reverse=True,
    )
    for _, path in steps:
        if (path / TRAINER_STATE).is_file():
            return str(path)
        logger.warning("%s has no %s (interrupted while saving); skipped", path, TRAINER_STATE)
    return None


def resolve_resume_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """The checkpoint to resume from: ``auto`` -> the latest complete one in ``output_dir`` (an error if there is
    none); a path -> itself, if it is a complete checkpoint; ``None`` -> the latest complete one if any (a rerun of
    an interrupted run continues it)."""
    if resume_from_checkpoint is None:
        found = last_complete_checkpoint(output_dir)
        if found is not None:
            logger.info("Checkpoint detected, resuming training at %s", found)
        return found
    if resume_from_checkpoint == "auto":
        found = last_complete_checkpoint(output_dir)
        if found is None:
            raise ConfigError(
                f"--resume_from_checkpoint auto: no complete checkpoint-<step> folder in {output_dir} (save_strategy "
                "must be 'steps' or 'epoch' for checkpoints to exist)"
            )
        return found
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise ConfigError(f"--resume_from_checkpoint {resume_from_checkpoint}: no such folder")
    if not (path / TRAINER_STATE).is_file():
        raise ConfigError(
            f"--resume_from_checkpoint {resume_from_checkpoint}: no {TRAINER_STATE} (not a Trainer checkpoint, or "
            "cut short while saving)"
        )
    return str(path)


def validate_train(script_args, training_args, model_args) -> str | None:
    """Every check of ``sasc-ttrl train`` that needs no model weights.

    Returns:
        The checkpoint to resume from (see [`resolve_resume_checkpoint`]), or None.

    Raises:
        ConfigError: naming the first problem found.
    """
    from .rewards import get_reward_funcs

    if not model_args.model_name_or_path:
        raise ConfigError("model_name_or_path is required")
    check_train_data(script_args, training_args)
    check_model_vocabulary(
        model_args.model_name_or_path,
        training_args.entropy_top_k,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    try:
        get_reward_funcs(training_args.reward_funcs, training_args.vote_settings)
    except ValueError as err:
        raise ConfigError(f"reward_funcs: {one_line(err)}") from err
    return resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
