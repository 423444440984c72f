"""What the trainers built on builder data share: their training settings, one TRL ``SFTTrainer`` run, and
saving a model so that a reader (or a resumed run) never sees half of it.

[`TrainSettings`] is mixed into the arguments of ``sasc-ttrl prm``, ``calibrate`` and ``self-improve``; it fills
TRL's ``SFTConfig`` / ``RewardConfig`` and transformers' ``TrainingArguments`` with every field that matters written
explicitly (TRL's defaults -- bf16, gradient checkpointing, reports to every installed tracker -- are not ours).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.store import save_model_atomic

logger = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Optimisation settings of one fine-tuning run.

    Args:
        learning_rate: Peak learning rate (linear decay, no warm-up).
        num_train_epochs: Passes over the data.
        per_device_train_batch_size: Examples per step and device.
        gradient_accumulation_steps: Steps whose gradients are summed before an update.
        max_length: Longest tokenized example (longer ones are truncated by SFT, dropped by the reward trainer).
        seed: Seed of the data order and of any newly initialised head.
        bf16: Mixed precision (GPUs with bfloat16 only).
        report_to: Trackers (``none``, ``wandb``, ``tensorboard``, ...).
    """

    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (linear decay)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the training data."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Examples per step and device."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Steps per optimizer update."})
    max_length: int = field(default=1024, metadata={"help": "Longest tokenized example."})
    seed: int = field(default=42, metadata={"help": "Seed of sampling, data order and new heads."})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision (GPU only)."})
    report_to: str = field(default="none", metadata={"help": "Trackers: none, wandb, tensorboard, ..."})

    def check_training(self) -> None:
        """Raise a ``ValueError`` naming the first training setting out of range."""
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.num_train_epochs <= 0:
            raise ValueError(f"num_train_epochs must be > 0, got {self.num_train_epochs}")
        if self.per_device_train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("per_device_train_batch_size and gradient_accumulation_steps must be >= 1")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")

    def trainer_kwargs(self, output_dir: str | os.PathLike) -> dict[str, Any]:
        """Keyword arguments for ``TrainingArguments`` and TRL's configs (no checkpoints: the caller saves)."""
        return dict(
            output_dir=str(output_dir),
            learning_rate=self.learning_rate,
            num_train_epochs=self.num_train_epochs,
            per_device_train_batch_size=self.per_device_train_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            lr_scheduler_type="linear",
            warmup_steps=0,
            seed=self.seed,
            bf16=self.bf16,
            gradient_checkpointing=False,
            save_strategy="no",
            logging_steps=1,
            report_to=self.report_to,
            disable_tqdm=True,
        )


def sft_finetune(
    model_name_or_path: str,
    examples: Sequence[dict[str, Any]],
    output_dir: str | os.PathLike,
    settings: TrainSettings,
) -> dict[str, float]:
    """Fine-tune a causal LM on prompt-completion examples with TRL's ``SFTTrainer`` and save it atomically.

    Args:
        model_name_or_path: The model to start from.
        examples: ``{"prompt": [messages], "completion": [messages]}`` rows (conversational; the loss is on the
            completion only, TRL's default for prompt-completion data).
        output_dir: Where the fine-tuned model and tokenizer go (a ``trainer`` subfolder holds TRL's logs).
        settings: Optimisation settings.

    Returns:
        The training metrics TRL reports (``train_loss``, ``train_runtime``, ...).
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    if not examples:
        raise ValueError(f"no training example for {output_dir}: nothing to fine-tune on")
    output_dir = Path(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype="float32")
    config = SFTConfig(
        **settings.trainer_kwargs(output_dir.with_name(output_dir.name + "-trainer")),
        max_length=settings.max_length,
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
    )
    dataset = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    result = trainer.train()
    tokenizer.padding_side = "left"
    save_model_atomic(trainer.model, tokenizer, output_dir)
    logger.info("fine-tuned on %d examples -> %s (loss %.4f)", len(examples), output_dir, result.training_loss)
    return {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}
