"""SASCTrainer as a drop-in for TRL's GRPOTrainer: the same constructor calls, configs and inputs work.

Each test is a way a TRL user calls GRPOTrainer today: no ``args``, a plain ``GRPOConfig``, only their own reward
functions (then no entropy is captured: TRL's behaviour, stubbed ``generate`` included), beam search in
``generation_kwargs``, and a batch that must reach ``training_step`` as the data set's rows.
"""

from __future__ import annotations

import dataclasses
import warnings
from unittest.mock import patch

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from sasc_ttrl.training import trainer as trainer_module
from sasc_ttrl.training.configs import SASCConfig
from sasc_ttrl.training.rewards import ROLLOUT_FIELDS, get_reward_funcs, rollout_fields_requested
from sasc_ttrl.training.trainer import SASCTrainer
from tests.training.test_trainer import Spy, tiny_config
from tests.training.user_rewards import alternating

QUESTIONS = [f"What is {a} + {b}?" for a, b in ((3, 2), (4, 4), (1, 6), (9, 0), (2, 2), (8, 1))]


def text_dataset(n: int = 4) -> Dataset:
    return Dataset.from_list([{"prompt": q} for q in QUESTIONS[:n]])


def position_bonus(completions, **kwargs):
    """A user's reward that varies by construction, whatever is sampled: 0, 1, 0, ... by position."""
    return alternating(len(completions))


class KwargsSpy:
    """A user's reward that only has ``**kwargs``: records the keyword names it got, returns a varying reward."""

    __name__ = "kwargs_spy"

    def __init__(self):
        self.keys: list[list[str]] = []

    def __call__(self, completions, **kwargs):
        self.keys.append(sorted(kwargs))
        return alternating(len(completions))


def grpo_config(tmp_path, **overrides) -> GRPOConfig:
    values = dict(
        output_dir=str(tmp_path / "out"),
        learning_rate=0.1,
        per_device_train_batch_size=3,
        num_generations=3,
        max_completion_length=8,
        max_steps=1,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
    )
    values.update(overrides)
    return GRPOConfig(**values)


def default(name: str):
    """The default of an SASCConfig field (building a second config would reset accelerate's state mid-test)."""
    return {f.name: f.default for f in dataclasses.fields(SASCConfig)}[name]


def changed(before: dict, model) -> list[str]:
    after = dict(model.named_parameters())
    return [n for n, p in before.items() if not torch.equal(p, after[n].detach())]


def never(*args, **kwargs):
    raise AssertionError("the entropy capture ran although no reward asked for entropies")


# -- which fields a reward asks for ---------------------------------------------------------------------------------
def test_rollout_fields_requested_reads_attributes_and_named_parameters():
    def named(completions, token_entropies, **kwargs):
        return [0.0] * len(completions)

    def grouped(completions, rollout_group=None, **kwargs):
        return [0.0] * len(completions)

    class Callable:
        def __call__(self, prompts, completions, token_entropies, **kwargs):
            return [0.0] * len(completions)

    sasc, majority, fixed = get_reward_funcs(["sasc", "majority", "fixed_label"])
    assert rollout_fields_requested([sasc]) == set(ROLLOUT_FIELDS)
    assert rollout_fields_requested([majority]) == set(ROLLOUT_FIELDS)
    assert rollout_fields_requested([fixed]) == set()
    assert rollout_fields_requested([position_bonus, KwargsSpy()]) == set()  # **kwargs alone asks for nothing
    assert rollout_fields_requested([named]) == {"token_entropies"}
    assert rollout_fields_requested([grouped]) == {"rollout_group"}
    assert rollout_fields_requested([Callable()]) == {"token_entropies"}
    assert rollout_fields_requested(["org/reward-model", len]) == set()


# -- constructor calls ----------------------------------------------------------------------------------------------
def test_no_args_builds_a_default_config_and_trains(tiny_model_dir, tmp_path, monkeypatch):
    """``SASCTrainer(model, reward_funcs, train_dataset)``, as GRPOTrainer's minimal call, on SASCConfig's defaults."""
    monkeypatch.chdir(tmp_path)
    trainer = SASCTrainer(model=str(tiny_model_dir), reward_funcs="sasc", train_dataset=text_dataset(1))
    assert isinstance(trainer.args, SASCConfig)
    assert trainer.args.output_dir.endswith(f"{tiny_model_dir.name}-SASC")
    assert (trainer.args.num_generations, trainer.args.filter_ratio) == (default("num_generations"), 0.2)
    assert trainer.args.use_cpu and not trainer.args.bf16  # no GPU here: GRPOConfig's default bf16 is refused
    trainer.args.max_steps = 1  # TRL's defaults run 3 epochs of 256-token completions: one step shows it trains
    trainer.args.max_completion_length = 16
    trainer.max_completion_length = 16
    trainer.train()
    assert trainer.state.global_step == 1
    assert "rewards/sasc_reward/mean" in {k for entry in trainer.state.log_history for k in entry}


def test_a_grpo_config_is_converted_with_one_warning(tiny_model_dir, tmp_path):
    args = grpo_config(tmp_path, steps_per_generation=2, gradient_accumulation_steps=2, temperature=0.9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = SASCTrainer(model=str(tiny_model_dir), reward_funcs=position_bonus, args=args,
                              train_dataset=text_dataset())  # fmt: skip
    ours = [w for w in caught if "converted to an SASCConfig" in str(w.message)]
    assert len(ours) == 1
    assert isinstance(trainer.args, SASCConfig)
    for f in dataclasses.fields(GRPOConfig):
        assert getattr(trainer.args, f.name) == getattr(args, f.name), f.name
    assert trainer.args.vote_weighting == default("vote_weighting")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 1 and changed(before, trainer.model)


def test_other_args_are_refused(tiny_model_dir):
    with pytest.raises(TypeError, match="SASCConfig or a GRPOConfig"):
        SASCTrainer(model=str(tiny_model_dir), reward_funcs=position_bonus, args={"lr": 1})


# -- user rewards only: GRPOTrainer's behaviour ---------------------------------------------------------------------
def test_user_rewards_only_never_touch_the_entropy_capture(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "capture_topk_entropies", never)
    monkeypatch.setattr(trainer_module, "forward_topk_entropies", never)
    spy = KwargsSpy()
    trainer = SASCTrainer(model=str(tiny_model_dir), reward_funcs=[spy], args=grpo_config(tmp_path),
                          train_dataset=text_dataset())  # fmt: skip
    assert trainer.entropy_path == "none"
    trainer.train()
    assert spy.keys and all(not set(ROLLOUT_FIELDS) & set(keys) for keys in spy.keys)


@patch("transformers.generation.utils.GenerationMixin.generate")
def test_a_stubbed_generate_trains_as_with_grpo_trainer(mock_generate, tiny_model_dir, tmp_path):
    """TRL's own pattern (``mask_truncated_completions``): ``generate`` replaced by fixed completions."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ids = [tokenizer.convert_tokens_to_ids(ch) for ch in "abcdefghijklmn"]

    def fake_generate(input_ids, **kwargs):
        completions = torch.tensor(
            [
                ids[:8],  # truncated
                [*ids[8:11], eos, pad, pad, pad, pad],  # ends early
                [*ids[:7], eos],  # ends exactly at the limit
            ],
            device=input_ids.device,
        )
        return torch.cat([input_ids, completions], dim=1)

    mock_generate.side_effect = fake_generate
    results = {}
    for cls in (GRPOTrainer, SASCTrainer):
        torch.manual_seed(0)
        args = grpo_config(tmp_path / cls.__name__, mask_truncated_completions=True, loss_type="dapo")
        trainer = cls(model=str(tiny_model_dir), reward_funcs=position_bonus, args=args,
                      train_dataset=text_dataset(), processing_class=tokenizer)  # fmt: skip
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        assert trainer.state.log_history[-1]["train_loss"] is not None
        assert changed(before, trainer.model)
        results[cls.__name__] = {n: p.detach() for n, p in trainer.model.named_parameters()}
    for name, value in results["GRPOTrainer"].items():  # same rollouts, same reward: the same update
        assert torch.allclose(value, results["SASCTrainer"][name], atol=1e-6), name


# -- beam search ----------------------------------------------------------------------------------------------------
def test_beam_search_trains_with_per_sequence_entropies(tiny_model_dir, tmp_path):
    """``num_beams: 2`` rows hold every beam at each step: the entropies come from a forward pass instead."""
    spy = Spy()
    args = tiny_config(tmp_path, num_generations=3, per_device_train_batch_size=3, max_completion_length=8,
                       max_steps=1, generation_kwargs={"do_sample": True, "top_k": 50, "num_beams": 2})  # fmt: skip
    trainer = SASCTrainer(model=str(tiny_model_dir), reward_funcs=["sasc", spy], args=args,
                          train_dataset=text_dataset())  # fmt: skip
    assert trainer.entropy_path == "forward"
    trainer.train()
    (call,) = spy.calls
    assert [len(e) for e in call["token_entropies"]] == [len(c) for c in call["completion_ids"]]
    assert trainer.state.global_step == 1


# -- the caller's rows ------------------------------------------------------------------------------------------------
def test_the_batch_reaches_training_step_as_the_data_set_rows(tiny_model_dir, tmp_path):
    """The per-rollout fields go to the rewards only: the rows TRL hands to training_step stay the data set's."""
    dataset = Dataset.from_list([{"prompt": q, "note": f"n{i}"} for i, q in enumerate(QUESTIONS)])
    spy = Spy()
    args = tiny_config(tmp_path, num_generations=3, per_device_train_batch_size=3, steps_per_generation=2,
                       gradient_accumulation_steps=2, max_completion_length=8, max_steps=2, num_iterations=2,
                       shuffle_dataset=False)  # fmt: skip
    trainer = SASCTrainer(model=str(tiny_model_dir), reward_funcs=["sasc", spy], args=args, train_dataset=dataset)
    with patch.object(SASCTrainer, "training_step", wraps=trainer.training_step) as step:
        trainer.train()
    batches = [call.args[1] for call in step.call_args_list]
    assert len(batches) == 4  # 2 steps x 2 accumulation steps; the generation batch is reused
    expected = [{"prompt": QUESTIONS[i], "note": f"n{i}"} for i in (0, 0, 0, 1, 1, 1)]
    assert all(batch == expected for batch in batches)
    assert spy.calls and all(call["token_entropies"] is not None for call in spy.calls)


def test_a_data_set_column_named_like_a_rollout_field(tiny_model_dir, tmp_path):
    clash = Dataset.from_list([{"prompt": q, "rollout_group": "mine"} for q in QUESTIONS[:3]])
    args = tiny_config(tmp_path, num_generations=3, per_device_train_batch_size=3, max_steps=1)
    with pytest.raises(ValueError, match="column 'rollout_group'.*rename the column"):
        SASCTrainer(model=str(tiny_model_dir), reward_funcs=["sasc"], args=args, train_dataset=clash)

    seen = []

    def mine(completions, rollout_group, **kwargs):
        seen.append(list(rollout_group))
        return [0.0] * len(completions)

    mine.rollout_fields = ()  # a user's own column of that name: the trainer adds nothing, the column arrives intact
    trainer = SASCTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), reward_funcs=[mine],
                          args=args, train_dataset=clash,
                          processing_class=AutoTokenizer.from_pretrained(tiny_model_dir))  # fmt: skip
    trainer.train()
    assert seen == [["mine"] * 3]
