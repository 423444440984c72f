"""What a GRPO configuration trains per epoch: prompts per generation, optimizer updates, rollouts per update.

The numbers follow TRL's `RepeatSampler` (whole generation batches only: a partial one is dropped each epoch) and
transformers' epoch arithmetic, for a given number of processes; `SASCTrainer` logs them when training starts, and
the recipe tests compare them with TTRL's scripts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from trl import GRPOConfig


@dataclass(frozen=True)
class RolloutSchedule:
    """One run's schedule (all counts global, over every process).

    Attributes:
        num_processes: Training processes.
        prompts_per_generation: Distinct prompts sampled together (one generation batch).
        rollouts_voted: Rollouts per prompt the rewards see (``num_generations``).
        rollouts_trained: Rollouts per prompt in the loss (``train_generations``, or all).
        generations_per_epoch: Generation batches per epoch (questions left over are not trained that epoch).
        questions_per_epoch: Questions trained on per epoch.
        updates_per_generation: Optimizer updates per generation batch (fractional when an update spans two).
        rollouts_per_update: Trained rollouts in one optimizer update.
        updates_per_epoch: Optimizer updates per epoch.
        total_updates: Optimizer updates of the run (``max_steps`` when set).
        warmup_updates: Updates of learning-rate warmup.
    """

    num_processes: int
    prompts_per_generation: int
    rollouts_voted: int
    rollouts_trained: int
    generations_per_epoch: int
    questions_per_epoch: int
    updates_per_generation: float
    rollouts_per_update: int
    updates_per_epoch: int
    total_updates: int
    warmup_updates: int

    def as_dict(self) -> dict:
        """The fields as a plain dict (for logs and JSON)."""
        return asdict(self)

    def describe(self) -> str:
        """One line for the training log."""
        return (
            f"{self.num_processes} process(es): {self.prompts_per_generation} prompts x {self.rollouts_voted} "
            f"rollouts voted, {self.rollouts_trained} trained, per generation; "
            f"{self.updates_per_generation:g} updates of {self.rollouts_per_update} rollouts per generation; "
            f"{self.generations_per_epoch} generations ({self.questions_per_epoch} questions) and "
            f"{self.updates_per_epoch} updates per epoch; {self.total_updates} updates in all, "
            f"{self.warmup_updates} of warmup"
        )


def rollout_schedule(args: GRPOConfig, num_prompts: int, num_processes: int) -> RolloutSchedule:
    """The schedule ``args`` gives ``num_prompts`` training questions on ``num_processes`` processes.

    ``args.generation_batch_size`` was derived for the process count the config was built under, so it is derived
    again here from ``per_device_train_batch_size x steps_per_generation`` per process.

    Raises:
        ValueError: when one generation batch needs more questions than the data set has.
    """
    n = args.num_generations
    m = getattr(args, "train_generations", None) or n
    per_process = args.per_device_train_batch_size * args.steps_per_generation
    prompts_per_generation = per_process * num_processes // n
    if prompts_per_generation > num_prompts:
        raise ValueError(
            f"one generation batch takes {prompts_per_generation} prompts on {num_processes} process(es), but the "
            f"data set has {num_prompts}: no step would run"
        )
    generations = num_prompts // prompts_per_generation
    micro_steps = args.steps_per_generation * args.num_iterations  # per generation, per process
    ga = args.gradient_accumulation_steps
    # transformers: an epoch is len(dataloader) micro-batches, ceil(len / GA) updates (set_initial_training_values)
    updates_per_epoch = max(math.ceil(generations * micro_steps / ga), 1)
    if args.max_steps > 0:
        total = args.max_steps
    else:
        total = math.ceil(args.num_train_epochs * updates_per_epoch)
    rows_per_micro_batch = args.per_device_train_batch_size * m // n
    return RolloutSchedule(
        num_processes=num_processes,
        prompts_per_generation=prompts_per_generation,
        rollouts_voted=n,
        rollouts_trained=m,
        generations_per_epoch=generations,
        questions_per_epoch=generations * prompts_per_generation,
        updates_per_generation=micro_steps / ga,
        rollouts_per_update=rows_per_micro_batch * ga * num_processes,
        updates_per_epoch=updates_per_epoch,
        total_updates=total,
        warmup_updates=args.get_warmup_steps(total),
    )
