"""Checks of ``sasc-ttrl train`` that run before any model is loaded.

A run that is going to fail on its configuration or its data fails in seconds, says what is wrong on one line of
stderr (`sasc_ttrl.cli`), exits with code 2 and writes nothing (``output_dir`` is not created). What is checked:

* while parsing (the config dataclasses' own checks): unknown reward name, ``filter_ratio`` outside ``[0, 1)``,
  ``entropy_top_k < 1``, ``num_generations < 2`` (TRL), and every other field check;
* [`validate_train`]: the data file exists, reads and is not empty, the prompt column exists, and so does the answer
  column when one other than the default ``answer`` is named (unlabeled data may lack ``answer``) -- the error lists
  the columns there are --; the model folder exists (a name that can only be a path) and ``entropy_top_k`` is at most
  the model's vocabulary (read from its config only, no weights); dotted reward paths import and ``reward_weights``
  has one weight per reward; every ``report_to`` integration is installed; no ``eval_strategy`` (``train`` takes no
  eval set); ``push_to_hub`` has a hub to reach (not offline, a token); and ``--resume_from_checkpoint`` (a path or
  ``auto``) names a complete checkpoint (in a run of several processes, one with every rank's part: see
  [`missing_from_checkpoint`]).

``sasc-ttrl eval`` and ``build`` use the same data and model checks (`sasc_ttrl.data.checks`,
`sasc_ttrl.sampling.models.check_model_vocabulary`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ..core.errors import ConfigError, one_line
from ..data.checks import check_columns, data_errors
from ..sampling.models import check_model_vocabulary

logger = logging.getLogger(__name__)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"  # the last file the Trainer writes into a checkpoint


def check_train_data(script_args, training_args) -> None:
    """The training data reads and has the columns the run needs (a builder output is read the builder's way)."""
    from ..data.sources import load_raw_dataset
    from ..data.training_data import is_builder_output, load_builder_output

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
        if path.is_file() and path.suffix.lower() in (".json", ".jsonl", ".csv") and _is_blank(path):
            raise ConfigError(f"data file {name} is empty")
        try:
            dataset = load_raw_dataset(name, split=script_args.dataset_train_split, config=script_args.dataset_config)
        except ValueError as err:
            if "corresponds to no data" in str(err):  # datasets' words for a file of zero rows, e.g. `[]`
                raise ConfigError(f"data {name} has no rows") from err
            raise
    if len(dataset) == 0:
        raise ConfigError(f"data {name} has no rows")
    check_columns(dataset.column_names, name, script_args.prompt_column, script_args.answer_column)


def _is_blank(path: Path, chunk: int = 1 << 16) -> bool:
    """Whether a text file holds nothing but whitespace (read until the first other byte)."""
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            if block.strip():
                return False
    return True


# -- training arguments -----------------------------------------------------------------------------------------------
# Pip package of each `report_to` integration of transformers (`transformers.integrations.INTEGRATION_TO_CALLBACK`).
INTEGRATION_PACKAGES = {
    "azure_ml": "azureml-core",
    "clearml": "clearml",
    "codecarbon": "codecarbon",
    "comet_ml": "comet-ml",
    "dagshub": "dagshub",
    "dvclive": "dvclive",
    "flyte": "flytekit flytekitplugins-deck-standard",
    "kubeflow": "kubeflow",
    "mlflow": "mlflow",
    "neptune": "neptune",
    "swanlab": "swanlab",
    "tensorboard": "tensorboard",
    "trackio": "trackio",
    "wandb": "wandb",
}


def check_reporting(report_to) -> None:
    """Every ``report_to`` integration is known to transformers and its package imports.

    ``report_to`` is what `TrainingArguments` leaves after parsing: a list (``"all"`` already became the installed
    integrations, ``"none"`` an empty list), or a bare string.
    """
    from transformers import integrations

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [n for n in names if n not in ("none", "all")]
    for name in names:
        if name not in integrations.INTEGRATION_TO_CALLBACK:
            raise ConfigError(
                f"report_to: unknown integration {name!r}; expected one of "
                f"{sorted(integrations.INTEGRATION_TO_CALLBACK)}, 'all' or 'none'"
            )
        available = {
            "azure_ml": integrations.is_azureml_available,
            "comet_ml": integrations.is_comet_available,
            "flyte": lambda: integrations.is_flytekit_available() and integrations.is_flyte_deck_standard_available(),
        }.get(name) or getattr(integrations, f"is_{name}_available")
        if not available():
            package = INTEGRATION_PACKAGES.get(name, name)
            raise ConfigError(f"report_to: {name} is not installed; pip install {package} (or set report_to: none)")


def check_reward_weights(training_args, script_args) -> None:
    """``reward_weights``, when given, has one weight per reward function that will run."""
    weights = training_args.reward_weights
    if weights is None:
        return
    funcs = list(training_args.reward_funcs)
    if getattr(script_args, "use_builder_pseudo_labels", False) and "fixed_label" not in funcs:
        funcs = ["fixed_label"]  # what `sasc-ttrl train` trains with then (commands/train.py)
    if len(weights) != len(funcs):
        raise ConfigError(
            f"reward_weights has {len(weights)} weights but reward_funcs {funcs} has {len(funcs)}: give one weight "
            "per reward function"
        )


def check_evaluation(training_args) -> None:
    """``sasc-ttrl train`` passes no eval set to the trainer, so periodic evaluation cannot run."""
    strategy = getattr(training_args.eval_strategy, "value", training_args.eval_strategy)
    if strategy not in (None, "no"):
        raise ConfigError(
            f"eval_strategy {strategy!r} needs an eval set, and sasc-ttrl train takes none: set eval_strategy: no "
            "and evaluate the saved model with sasc-ttrl eval"
        )


def hub_offline() -> bool:
    """Whether the hub is off limits: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.is_offline_mode()) or flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


def check_push_to_hub(training_args) -> None:
    """``push_to_hub`` needs the hub: not offline, and a token (``hub_token``, ``HF_TOKEN`` or ``hf auth login``)."""
    if not training_args.push_to_hub:
        return
    if hub_offline():
        raise ConfigError(
            "push_to_hub: the hub is offline here (HF_HUB_OFFLINE is set); unset it or drop --push_to_hub"
        )
    from huggingface_hub import get_token

    if not (training_args.hub_token or get_token()):
        raise ConfigError(
            "push_to_hub: no Hugging Face token (set HF_TOKEN, run `hf auth login`, or pass --hub_token)"
        )


# -- resume -----------------------------------------------------------------------------------------------------------
def missing_from_checkpoint(path: str | os.PathLike, world_size: int = 1) -> str | None:
    """What a ``checkpoint-<step>`` folder lacks to be resumed from by ``world_size`` processes, or None if nothing.

    The Trainer writes ``trainer_state.json`` last, but only on rank 0, which does not wait for the other ranks:
    in a run of several processes, each rank writes its own ``rng_state_<rank>.pth`` (its sampling RNG), and rank 0
    can finish the folder before rank 1 has written its file. A rank killed in between leaves a folder with a
    ``trainer_state.json`` that would resume that rank with a fresh RNG. So a checkpoint that holds per-rank RNG
    states must hold one for every rank (DeepSpeed's per-rank optimizer partitions need no check: its
    ``save_checkpoint`` ends with a barrier, before any ``rng_state`` file is written).
    """
    path = Path(path)
    if not (path / TRAINER_STATE).is_file():
        return TRAINER_STATE
    if world_size > 1 and any(path.glob("rng_state_*.pth")):
        for rank in range(world_size):
            if not (path / f"rng_state_{rank}.pth").is_file():
                return f"rng_state_{rank}.pth"
    return None


def complete_checkpoints(output_dir: str | os.PathLike, world_size: int = 1) -> list[tuple[int, str]]:
    """``(step, folder)`` of every complete ``checkpoint-<step>`` folder (see [`missing_from_checkpoint`]) in
    ``output_dir``, highest step first. A folder cut short by a kill while saving is skipped, with a warning."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    steps = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
        reverse=True,
    )
    complete = []
    for step, path in steps:
        missing = missing_from_checkpoint(path, world_size)
        if missing is None:
            complete.append((step, str(path)))
        else:
            logger.warning("%s has no %s (interrupted while saving); skipped", path, missing)
    return complete


def last_complete_checkpoint(output_dir: str | os.PathLike, world_size: int = 1) -> str | None:
    """The ``checkpoint-<step>`` folder with the highest step that is complete (see [`complete_checkpoints`]), or
    None. A folder cut short by a kill while saving is skipped (with a warning) in favour of the previous one."""
    found = complete_checkpoints(output_dir, world_size)
    return found[0][1] if found else None


def resolve_resume_checkpoint(resume_from_checkpoint: str | None, output_dir: str, world_size: int = 1) -> str | None:
    """The checkpoint to resume from: ``auto`` -> the latest complete one in ``output_dir`` (an error if there is
    none); a path -> itself, if it is a complete checkpoint; ``None`` -> the latest complete one if any (a rerun of
    an interrupted run continues it). ``world_size``: the number of processes that will resume."""
    if resume_from_checkpoint is None:
        found = last_complete_checkpoint(output_dir, world_size)
        if found is not None:
            logger.info("Checkpoint detected, resuming training at %s", found)
        return found
    if resume_from_checkpoint == "auto":
        found = last_complete_checkpoint(output_dir, world_size)
        if found is None:
            raise ConfigError(
                f"--resume_from_checkpoint auto: no complete checkpoint-<step> folder in {output_dir} (save_strategy "
                "must be 'steps' or 'epoch' for checkpoints to exist)"
            )
        return found
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise ConfigError(f"--resume_from_checkpoint {resume_from_checkpoint}: no such folder")
    missing = missing_from_checkpoint(path, world_size)
    if missing == TRAINER_STATE:
        raise ConfigError(
            f"--resume_from_checkpoint {resume_from_checkpoint}: no {TRAINER_STATE} (not a Trainer checkpoint, or "
            "cut short while saving)"
        )
    if missing is not None:
        raise ConfigError(
            f"--resume_from_checkpoint {resume_from_checkpoint}: no {missing} (cut short while saving: a rank died "
            "before writing its part)"
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
    check_reporting(training_args.report_to)
    check_evaluation(training_args)
    check_push_to_hub(training_args)
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
    check_reward_weights(training_args, script_args)
    return resolve_resume_checkpoint(
        training_args.resume_from_checkpoint, training_args.output_dir, world_size=training_args.world_size
    )
