"""`rollout_schedule` against what TRL actually trains (tiny model, one process), and its arithmetic."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer, TrainerCallback

from sasc_ttrl.data.training_data import load_math_dataset
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.training.schedule import rollout_schedule
from sasc_ttrl.training.trainer import SASCTrainer
from tests.training.test_trainer import tiny_config
from tests.training.user_rewards import alternating


def reward(prompts, completions, **kwargs):
    return alternating(len(completions))


class Rows(TrainerCallback):
    """Counts the optimizer updates TRL makes."""

    def __init__(self):
        self.updates = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.updates += 1


class CountingTrainer(SASCTrainer):
    """Records the rows and the prompts of every micro-batch the loss sees."""

    def compute_loss(self, model, inputs, *args, **kwargs):
        self.micro_batches.append(inputs["completion_ids"].size(0))
        self.prompts_seen.update(tuple(row.tolist()) for row in inputs["prompt_ids"])
        return super().compute_loss(model, inputs, *args, **kwargs)


@pytest.mark.parametrize(
    ("overrides", "questions"),
    [
        # vote 4, train 2; 4 prompts per generation, 2 updates each; 7 questions: one generation per epoch
        ({"num_generations": 4, "train_generations": 2, "per_device_train_batch_size": 4, "steps_per_generation": 4,
          "gradient_accumulation_steps": 2, "num_train_epochs": 2}, 7),
        # an update that spans two generations (3 micro-batches per generation, 2 per update)
        ({"num_generations": 2, "per_device_train_batch_size": 2, "steps_per_generation": 3,
          "gradient_accumulation_steps": 2, "num_train_epochs": 1, "warmup_steps": 0.5}, 7),
    ],
)  # fmt: skip
def test_schedule_matches_what_trl_trains(tiny_model_dir, tmp_path, overrides, questions):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=questions)), tokenizer=tokenizer)
    args = tiny_config(tmp_path, max_steps=-1, max_completion_length=8, **overrides)
    schedule = rollout_schedule(args, len(dataset), num_processes=1)
    counter = Rows()
    trainer = CountingTrainer(
        model=str(tiny_model_dir), reward_funcs=[reward], args=args, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[counter],
    )  # fmt: skip
    trainer.micro_batches, trainer.prompts_seen = [], set()
    assert trainer.rollout_schedule() == schedule
    trainer.train()
    assert counter.updates == trainer.state.global_step == schedule.total_updates
    ga = args.gradient_accumulation_steps
    micro = trainer.micro_batches
    assert sum(micro[:ga]) == schedule.rollouts_per_update
    # every micro-batch of every epoch ran: generations x micro-batches per generation
    assert len(micro) == schedule.generations_per_epoch * args.steps_per_generation * args.num_train_epochs
    assert set(micro) == {schedule.rollouts_per_update // ga}
    assert sum(micro) == schedule.questions_per_epoch * schedule.rollouts_trained * args.num_train_epochs
    assert len(trainer.prompts_seen) <= questions
    assert trainer.lr_scheduler.lr_lambdas[0](0) == (0.0 if schedule.warmup_updates else 1.0)
    assert args.get_warmup_steps(schedule.total_updates) == schedule.warmup_updates


def test_schedule_needs_one_full_generation(tmp_path):
    args = tiny_config(tmp_path, num_generations=4, per_device_train_batch_size=8)
    with pytest.raises(ValueError, match="2 prompts on 1 process.*has 1"):
        rollout_schedule(args, num_prompts=1, num_processes=1)
