"""The data-builder link: the trainer trains on a builder output, banded by agreement, with fixed pseudo-labels."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM
from trl import ModelConfig

from sasc_ttrl.commands import build, train
from sasc_ttrl.data.training_data import is_builder_output, load_builder_output
from sasc_ttrl.demo.tiny_model import build_tokenizer, write_tiny_dataset
from sasc_ttrl.selection.build_arguments import BuildArguments
from sasc_ttrl.training.configs import SASCConfig, SASCScriptArguments
from sasc_ttrl.training.rewards import get_reward_funcs
from tests.training.test_trainer import tiny_config


def builder_row(i, ratio, label, gold="5"):
    return {
        "id": f"q{i}",
        "method": "sasc",
        "question": f"What is {i} + 1?",
        "answer": f"The answer is \\boxed{{{label}}}.",
        "gpt_response": "",
        "pseudo_label": label,
        "confidence": 0.5,
        "majority_ratio": ratio,
        "reference_answer": gold,
    }


@pytest.fixture
def rows_file(tmp_path):
    rows = [
        builder_row(0, 1.0, "1"),  # all agree
        builder_row(1, 0.75, "2"),
        builder_row(2, 0.5, "3"),
        builder_row(3, 0.25, "4"),  # no consensus
        builder_row(4, 0.0, None),  # no answer at all
    ]
    path = tmp_path / "sasc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_builder_output_is_recognised(rows_file, tmp_path):
    assert is_builder_output(str(rows_file))
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"prompt": "What is 1 + 1?", "answer": "2"}) + "\n")
    assert not is_builder_output(str(plain))
    assert not is_builder_output(str(write_tiny_dataset(tmp_path / "sums.json", n=2)))
    assert not is_builder_output("math500")


def test_load_builder_output_bands_and_labels(rows_file):
    tokenizer = build_tokenizer()
    everything = load_builder_output(rows_file, tokenizer)
    assert len(everything) == 5 and set(everything.column_names) == {"prompt", "id", "answer"}
    assert everything[0]["prompt"][0]["content"].startswith("What is 0 + 1?\nPlease reason step by step")
    banded = load_builder_output(rows_file, tokenizer, min_majority_ratio=0.5, max_majority_ratio=0.99)
    assert banded["id"] == ["q1", "q2"]
    labelled = load_builder_output(rows_file, pseudo_labels=True)
    assert labelled["id"] == ["q0", "q1", "q2", "q3"] and labelled["pseudo_label"] == ["1", "2", "3", "4"]
    assert isinstance(labelled[0]["prompt"], str)  # no tokenizer: plain-text prompt
    with pytest.raises(ValueError, match="no builder row left"):
        load_builder_output(rows_file, min_majority_ratio=0.9, max_majority_ratio=0.95)


def test_fixed_label_reward():
    (reward,) = get_reward_funcs(["fixed_label"])
    logged = {}
    completions = ["so \\boxed{0.5}", "\\boxed{3}", "no answer", "\\boxed{7}"]
    rewards = reward(
        prompts=["p"] * 4,
        completions=completions,
        pseudo_label=["1/2", "3", "3", None],
        answer=["1/2", "4", "4", "7"],
        log_metric=lambda name, value: logged.setdefault(name, value),
    )
    assert rewards == [1.0, 1.0, 0.0, 0.0]
    assert logged == {"fixed_label/label_accuracy": 1 / 4}  # a missing label counts as a wrong one
    with pytest.raises(ValueError, match="pseudo_label"):
        reward(prompts=["p"], completions=["\\boxed{1}"])


def test_script_arguments_validate_the_band():
    with pytest.raises(ValueError, match="builder_min_majority_ratio"):
        SASCScriptArguments(dataset_name="x", builder_min_majority_ratio=1.5)
    with pytest.raises(ValueError, match="above"):
        SASCScriptArguments(dataset_name="x", builder_min_majority_ratio=0.8, builder_max_majority_ratio=0.5)


def tiny_training_config(tmp_path, **overrides) -> SASCConfig:
    values = dict(
        output_dir=str(tmp_path / "train"), num_generations=4, per_device_train_batch_size=8, temperature=0.8
    )
    values.update(overrides)
    return tiny_config(tmp_path, **values)


def test_trainer_trains_on_a_builder_output(tiny_model_dir, tmp_path):
    """Build rows with the tiny model, then ``sasc-ttrl train`` on them with fixed pseudo-labels for 2 steps.

    Whatever the model samples: the reward of every rollout is its agreement with its row's builder label (checked
    against the completions a recording reward saw), and the weights move exactly when some group's rewards differ
    (GRPO's advantages are otherwise all zero).
    """
    from sasc_ttrl.core.answers import extract_answer, is_equivalent
    from sasc_ttrl.training.rewards import completion_text
    from tests.training import user_rewards

    sums = write_tiny_dataset(tmp_path / "sums.json", n=4, seed=2)
    build.main(
        BuildArguments(
            model_name_or_path=str(tiny_model_dir),
            dataset_name=str(sums),
            methods=["self-consistency"],
            n_candidates=4,
            temperature=0.8,
            max_tokens=48,
            dtype="float32",
            output_dir=str(tmp_path / "build"),
        )
    )
    rows_path = tmp_path / "build" / "self-consistency.jsonl"
    rows = [json.loads(x) for x in rows_path.read_text().splitlines()]
    assert len(rows) == 4 and is_builder_output(str(rows_path))
    if all(r["pseudo_label"] is None for r in rows):  # a model that never answers: the loader says so
        with pytest.raises(ValueError, match="no builder row left"):
            load_builder_output(rows_path, pseudo_labels=True)
        return

    user_rewards.RECORDED.clear()
    script_args = SASCScriptArguments(dataset_name=str(rows_path), use_builder_pseudo_labels=True)
    training_args = tiny_training_config(
        tmp_path, reward_funcs=["fixed_label", "tests.training.user_rewards.recording_reward"], reward_weights=[1, 0]
    )
    model_args = ModelConfig(model_name_or_path=str(tiny_model_dir), dtype="float32")
    trainer = train.main(script_args, training_args, model_args)

    assert trainer.reward_func_names == ["fixed_label_reward", "recording_reward"]
    assert len(trainer.train_dataset) == sum(r["pseudo_label"] is not None for r in rows)
    assert "pseudo_label" in trainer.train_dataset.column_names
    labels = {r["pseudo_label"] for r in rows if r["pseudo_label"] is not None}
    history = trainer.state.log_history
    logged = [e for e in history if "rewards/fixed_label_reward/mean" in e]
    assert trainer.state.global_step == 2 and len(logged) == 2 and len(user_rewards.RECORDED) == 2
    any_signal = False
    for call, entry in zip(user_rewards.RECORDED, logged):
        assert set(call["pseudo_label"]) <= labels
        rewards = [
            float(is_equivalent(label, extract_answer(completion_text(c))))
            for c, label in zip(call["completions"], call["pseudo_label"])
        ]
        assert entry["rewards/fixed_label_reward/mean"] == pytest.approx(sum(rewards) / len(rewards))
        assert "fixed_label/label_accuracy" in entry
        groups = [rewards[i : i + 4] for i in range(0, len(rewards), 4)]
        any_signal |= any(len(set(g)) > 1 for g in groups)
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trained = dict(trainer.model.named_parameters())
    moved = any(not torch.equal(p, trained[n].detach()) for n, p in original.named_parameters())
    assert moved == any_signal


def test_train_refuses_builder_options_on_other_data(tmp_path):
    sums = write_tiny_dataset(tmp_path / "sums.json", n=2)
    script_args = SASCScriptArguments(dataset_name=str(sums), builder_max_majority_ratio=0.99)
    with pytest.raises(ValueError, match="builder output"):
        train.load_train_dataset(script_args, tiny_training_config(tmp_path), build_tokenizer())
