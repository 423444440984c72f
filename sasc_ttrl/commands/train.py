"""Train a model on unlabeled math prompts with SASC-TTRL (or the TTRL baseline: ``--reward_funcs majority``).

Command (one process, CPU or one GPU)::

    sasc-ttrl train --config recipes/tiny/sasc_cpu.yaml

On the questions of a builder output (``sasc-ttrl build``), optionally with its pseudo-labels as fixed labels::

    sasc-ttrl train --config recipes/tiny/sasc_cpu.yaml --dataset_name outputs/build/sasc.jsonl \\
        --use_builder_pseudo_labels true --builder_max_majority_ratio 0.99

Several processes / DeepSpeed::

    accelerate launch --config_file accelerate_configs/zero2.yaml scripts/train.py --config recipe.yaml

CLI flags override the YAML, which overrides the defaults. ``output_dir`` receives the model -- with
``use_peft: true`` only the LoRA adapter (and, with ``save_merged_model: true``, the merged model in ``merged/``);
``sasc-ttrl eval`` loads either -- and a model card, ``README.md``.

Resume an interrupted run from its latest checkpoint
(``save_strategy: steps``) with ``--resume_from_checkpoint auto`` (or a checkpoint folder); a rerun into the same
``output_dir`` without the flag also continues from there. Configuration and data errors stop the run before any
model is loaded (one line on stderr, exit code 2; see `validation`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import datasets
import transformers
from accelerate.utils import is_peft_model
from transformers import AutoTokenizer, set_seed
from trl import ModelConfig, TrlParser, get_peft_config

from ..data.training_data import is_builder_output, load_builder_output, load_math_dataset
from ..training.checks import validate_train
from ..training.configs import SASCConfig, SASCScriptArguments

logger = logging.getLogger(__name__)


def _setup_logging(training_args: SASCConfig) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logging.getLogger("sasc_ttrl").setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


def load_train_dataset(
    script_args: SASCScriptArguments, training_args: SASCConfig, tokenizer, model_args: ModelConfig | None = None
):
    """The training questions: a builder output (``sasc-ttrl build`` rows) or any math data set.

    With a builder output, the questions can be banded by ``majority_ratio`` and, with
    ``use_builder_pseudo_labels``, its pseudo-labels become fixed labels: the reward is then ``fixed_label``
    (unless ``reward_funcs`` already names it). With ``curriculum_fraction``, the most agreed questions come first
    and alone (a data set that is not a builder output is sampled by the builder first, see
    [`build_curriculum`], which needs ``model_args``).
    """
    builder_options = (
        script_args.builder_min_majority_ratio is not None
        or script_args.builder_max_majority_ratio is not None
        or script_args.use_builder_pseudo_labels
    )
    dataset_name = script_args.dataset_name
    if script_args.curriculum_fraction is not None:
        if training_args.shuffle_dataset:
            logger.info("curriculum_fraction: shuffle_dataset -> False (the most agreed questions are trained first)")
            training_args.shuffle_dataset = False
        if not is_builder_output(dataset_name):
            if model_args is None:
                raise ValueError("curriculum_fraction on a data set that is not a builder output needs the model")
            if builder_options:
                raise ValueError(
                    "builder_* options and use_builder_pseudo_labels need a builder output as dataset_name"
                )
            dataset_name = build_curriculum(script_args, training_args, model_args)
    if not is_builder_output(dataset_name):
        if builder_options:
            raise ValueError(
                "builder_* options and use_builder_pseudo_labels need a builder output (a <method>.jsonl file "
                f"written by sasc-ttrl build) as dataset_name, got {script_args.dataset_name!r}"
            )
        return load_math_dataset(
            script_args.dataset_name,
            tokenizer=tokenizer,
            split=script_args.dataset_train_split,
            config=script_args.dataset_config,
            prompt_column=script_args.prompt_column,
            answer_column=script_args.answer_column,
            limit=script_args.max_train_samples,
            prompt_style=script_args.prompt_style,
            system_prompt=script_args.system_prompt,
        )
    if script_args.use_builder_pseudo_labels and "fixed_label" not in training_args.reward_funcs:
        logger.info("use_builder_pseudo_labels: reward_funcs %s -> ['fixed_label']", training_args.reward_funcs)
        training_args.reward_funcs = ["fixed_label"]
    return load_builder_output(
        dataset_name,
        tokenizer=tokenizer,
        min_majority_ratio=script_args.builder_min_majority_ratio,
        max_majority_ratio=script_args.builder_max_majority_ratio,
        pseudo_labels=script_args.use_builder_pseudo_labels,
        limit=None if dataset_name != script_args.dataset_name else script_args.max_train_samples,
        prompt_style=script_args.prompt_style,
        system_prompt=script_args.system_prompt,
        curriculum_fraction=script_args.curriculum_fraction,
    )


def build_curriculum(script_args: SASCScriptArguments, training_args: SASCConfig, model_args: ModelConfig) -> str:
    """Sample the base model ``curriculum_samples`` times per training question with the builder (self-consistency)
    and return the rows file, ``<output_dir>/curriculum/self-consistency.jsonl``.

    The samples are drawn as the run's rollouts are (``temperature``, ``top_p``, ``max_completion_length``,
    ``prompt_style``, ``seed``); the builder resumes an interrupted file and refuses one sampled with other settings.
    With several processes the main process samples and the others wait for its file.
    """
    from accelerate import PartialState

    from ..selection.build_arguments import BuildArguments, build_settings, check_build_settings
    from ..selection.builder import SelectionBuilder
    from ..selection.registry import resolve_methods

    folder = Path(training_args.output_dir) / "curriculum"
    rows_file = folder / "self-consistency.jsonl"
    args = BuildArguments(
        model_name_or_path=model_args.model_name_or_path,
        dataset_name=script_args.dataset_name,
        dataset_split=script_args.dataset_train_split,
        prompt_column=script_args.prompt_column,
        answer_column=script_args.answer_column,
        prompt_style=script_args.prompt_style,
        limit=script_args.max_train_samples,
        methods=["self-consistency"],
        n_candidates=script_args.curriculum_samples,
        temperature=training_args.temperature,
        top_p=training_args.top_p,
        max_tokens=training_args.max_completion_length,
        seed=training_args.seed,
        backend="transformers",
        dtype=str(model_args.dtype or "auto"),
        output_dir=str(folder),
    )
    state = PartialState()
    with state.main_process_first():
        if state.is_main_process:
            from ..data.benchmarks import load_questions

            questions = load_questions(
                args.dataset_name, args.dataset_split, args.limit, args.prompt_column, args.answer_column
            )
            check_build_settings(folder, build_settings(args, args.backend), overwrite=False)
            logger.info(
                "curriculum: %d questions x %d samples of the base model -> %s",
                len(questions),
                args.n_candidates,
                rows_file,
            )
            SelectionBuilder(args, resolve_methods(args.methods), args.backend).run(questions, folder)
    return str(rows_file)


def main(script_args: SASCScriptArguments, training_args: SASCConfig, model_args: ModelConfig):
    """Load data, tokenizer and model, then train with [`SASCTrainer`] and save the result."""
    from ..training.trainer import SASCTrainer

    set_seed(training_args.seed)
    _setup_logging(training_args)
    logger.info("Model arguments %s", model_args)
    logger.info("Script arguments %s", script_args)

    # Data, columns, vocabulary, rewards and the checkpoint to resume from, before any weights are read.
    checkpoint = validate_train(script_args, training_args, model_args)
    local_model = Path(model_args.model_name_or_path).expanduser()
    if local_model.is_dir():
        # Recorded in the saved config / adapter_config.json: absolute, so the output loads from any directory.
        model_args.model_name_or_path = str(local_model.resolve())
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_dataset = load_train_dataset(script_args, training_args, tokenizer, model_args)

    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    if training_args.model_init_kwargs is not None:
        model_init_kwargs.update(training_args.model_init_kwargs)
    training_args.model_init_kwargs = model_init_kwargs

    trainer = SASCTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
    )
    trainer.card_dataset_name = script_args.dataset_name  # also in the cards written with checkpoints
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = train_result.metrics
    metrics["train_samples"] = len(train_dataset)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    trainer.save_model(training_args.output_dir)
    logger.info("Model saved to %s", training_args.output_dir)
    if training_args.save_merged_model:
        save_merged_model(trainer, os.path.join(training_args.output_dir, "merged"))
    if trainer.accelerator.is_main_process:
        trainer.create_model_card(dataset_name=script_args.dataset_name, tags=["sasc-ttrl"])
        if not is_peft_model(trainer.model):
            # Restore the KV cache for inference. Never next to an adapter: a base config.json there makes loaders
            # look for full weights (model.safetensors) in the adapter folder.
            trainer.model.config.use_cache = True
            trainer.model.config.save_pretrained(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    trainer.end() if hasattr(trainer, "end") else None
    return trainer


def save_merged_model(trainer, path: str) -> None:
    """Merge a trained LoRA adapter into its base model and save model + tokenizer to ``path``.

    Raises:
        ValueError: when the trained model is not a PEFT model.
    """
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    if not isinstance(model, PeftModel):
        raise ValueError("save_merged_model needs a PEFT adapter (use_peft: true)")
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3:
        raise ValueError("save_merged_model is not supported under ZeRO-3: merge the saved adapter after training")
    if trainer.accelerator.is_main_process:
        import copy

        merged = copy.deepcopy(model).merge_and_unload()
        merged.config.use_cache = True  # training may have turned the KV cache off (gradient checkpointing)
        merged.save_pretrained(path)
        trainer.processing_class.save_pretrained(path)
        logger.info("Merged model saved to %s", path)
    trainer.accelerator.wait_for_everyone()


def make_parser() -> TrlParser:
    """The argument parser of ``sasc-ttrl train``: script, training and model arguments, with ``--config``."""
    return TrlParser((SASCScriptArguments, SASCConfig, ModelConfig))
