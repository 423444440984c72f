"""The safeguards of label-free training: the vote-confidence filter, the curriculum by agreement, stop on collapse,
and the two controls (the oracle reward on the true answers, the format-only reward).

Each is tested on hand-made groups or logs, then once end to end on the tiny model, with assertions that hold for
whatever the model samples (they compare what the run did with what its own logs say it should have done).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, TrainerControl

from sasc_ttrl.commands.train import main as train_main
from sasc_ttrl.commands.train import make_parser
from sasc_ttrl.core.voting import VoteSettings, majority_vote, stability_vote
from sasc_ttrl.data.training_data import load_builder_output, load_math_dataset
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.training.collapse import CollapseGuard
from sasc_ttrl.training.rewards import get_reward_funcs, vote_and_reward
from sasc_ttrl.training.trainer import SASCTrainer
from tests.training.test_trainer import tiny_config

RECIPE = "recipes/tiny/sasc_cpu.yaml"


# -- the vote's label share -----------------------------------------------------------------------------------------
def test_label_share_of_a_majority_vote_counts_answers():
    vote = majority_vote(["4", "4", "5", None])
    assert vote.pseudo_label == "4" and vote.label_share == pytest.approx(2 / 3)  # of the 3 answers
    assert vote.majority_ratio == pytest.approx(2 / 4)  # TTRL's ratio counts the unanswered rollout too
    assert majority_vote([None, None]).label_share == 0.0


def test_label_share_of_a_stability_vote_is_the_kept_weight():
    entropies = [[0.1, 0.1], [0.1, 0.9], [0.1, 0.5], [0.5, 0.5]]
    vote = stability_vote(["4", "4", "5", "5"], entropies, VoteSettings(filter_ratio=0.25))
    kept = [w for w, k in zip(vote.weights, vote.kept) if k]
    held = sum(w for w, k, c in zip(vote.weights, vote.kept, vote.classes) if k and c == vote.label_class)
    assert vote.label_share == pytest.approx(held / sum(kept)) and 0.5 < vote.label_share < 1.0


# -- the confidence filter on hand-made groups ----------------------------------------------------------------------
GROUPS = {  # answers of two groups of 4 rollouts: one confident (3 of 4), one split (2 of 4)
    "confident": ["\\boxed{6}", "\\boxed{6}", "\\boxed{6}", "\\boxed{7}"],
    "split": ["\\boxed{8}", "\\boxed{8}", "\\boxed{9}", "\\boxed{9}"],
}


def _vote(vote: str, tau: float, log_path=None):
    completions = GROUPS["confident"] + GROUPS["split"]
    logged: dict[str, float] = {}
    rewards = vote_and_reward(
        vote,
        prompts=["a"] * 4 + ["b"] * 4,
        completions=completions,
        settings=VoteSettings(filter_ratio=0.0, min_label_share=tau),
        vote_log_path=log_path,
        token_entropies=[[0.2, 0.3]] * 8,
        rollout_group=[0] * 4 + [1] * 4,
        answer=["6"] * 4 + ["9"] * 4,
        log_metric=logged.__setitem__,
    )
    return rewards, logged


@pytest.mark.parametrize("vote", ["sasc", "majority"])
def test_a_group_below_the_share_gives_every_rollout_zero(vote, tmp_path):
    log = tmp_path / "votes.jsonl"
    rewards, logged = _vote(vote, tau=0.6, log_path=str(log))
    assert rewards[:4] == [1.0, 1.0, 1.0, 0.0]  # 0.75 of the vote: trains
    assert rewards[4:] == [0.0] * 4  # 0.5 < 0.6: the same reward for all, no advantage
    assert logged[f"{vote}/filtered_fraction"] == 0.5
    assert logged[f"{vote}/label_share"] == pytest.approx((0.75 + 0.5) / 2)
    assert logged[f"{vote}/trained_label_accuracy"] == 1.0  # the trained group's label is right
    assert logged[f"{vote}/label_accuracy"] == 0.5  # the split group's label "8" is wrong (gold 9)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [line["filtered"] for line in lines] == [False, True]
    assert lines[1]["rewards"] == [0.0] * 4 and lines[1]["label_share"] == 0.5


@pytest.mark.parametrize("vote", ["sasc", "majority"])
def test_the_filter_is_off_at_zero(vote):
    rewards, logged = _vote(vote, tau=0.0)
    assert rewards[4:] == [1.0, 1.0, 0.0, 0.0]  # the first class wins a tie
    assert logged[f"{vote}/filtered_fraction"] == 0.0 and f"{vote}/trained_label_accuracy" not in logged


def test_min_label_share_is_validated():
    from sasc_ttrl.training.configs import SASCConfig

    with pytest.raises(ValueError, match="min_label_share must be in"):
        VoteSettings(min_label_share=1.5)
    with pytest.raises(ValueError, match="min_label_share must be in"):
        SASCConfig(output_dir="x", use_cpu=True, report_to="none", min_label_share=-0.1)
    assert (
        SASCConfig(output_dir="x", use_cpu=True, report_to="none", min_label_share=0.6).vote_settings.min_label_share
        == 0.6
    )


def test_the_filter_in_a_training_run(tiny_model_dir, tmp_path):
    """Tiny model, ``min_label_share: 0.7``: every group below it got reward 0, the logged filtered_fraction is the
    vote log's, and the weights move exactly when a trained group's rewards differ."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=8)), tokenizer=tokenizer)
    log = tmp_path / "votes.jsonl"
    args = tiny_config(tmp_path, max_steps=3, min_label_share=0.7, vote_log_path=str(log), num_generations=4,
                       per_device_train_batch_size=8, temperature=1.0)  # fmt: skip
    trainer = SASCTrainer(model=str(tiny_model_dir), args=args, train_dataset=data, processing_class=tokenizer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    groups = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(groups) == 6
    for g in groups:
        assert g["filtered"] == (g["label_share"] < 0.7)
        if g["filtered"]:
            assert g["rewards"] == [0.0] * 4
    logged = {
        e["step"]: e["sasc/filtered_fraction"] for e in trainer.state.log_history if "sasc/filtered_fraction" in e
    }
    for step in (1, 2, 3):
        mine = [g["filtered"] for g in groups if g["step"] == step]
        assert logged[step] == pytest.approx(sum(mine) / len(mine))
    signal = any(len(set(g["rewards"])) > 1 for g in groups)
    moved = any(not torch.equal(p, dict(trainer.model.named_parameters())[n].detach()) for n, p in before.items())
    assert moved == signal


# -- the curriculum by agreement ------------------------------------------------------------------------------------
def _builder_rows(path, ratios):
    rows = [
        {"id": f"q{i}", "question": f"What is {i} + 1?", "pseudo_label": str(i + 1), "majority_ratio": r,
         "reference_answer": str(i + 1)}
        for i, r in enumerate(ratios)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_curriculum_orders_by_agreement_and_keeps_the_most_agreed(tmp_path):
    path = _builder_rows(tmp_path / "sc.jsonl", [0.25, 1.0, 0.5, 0.75, 0.5, 0.0])
    kept = load_builder_output(path, curriculum_fraction=0.5)
    assert kept["id"] == ["q1", "q3", "q2"]  # 1.0, 0.75, then the first 0.5 (ties keep the file's order)
    assert load_builder_output(path, curriculum_fraction=1.0)["id"] == ["q1", "q3", "q2", "q4", "q0", "q5"]
    assert load_builder_output(path, curriculum_fraction=0.01)["id"] == ["q1"]  # at least one question


def test_curriculum_in_one_train_command(tiny_model_dir, tmp_path):
    """``sasc-ttrl train --curriculum_fraction 0.5``: the base model samples each question, the most agreed half is
    trained on, in that order; a rerun reads the samples back."""
    from tests.training import user_rewards

    data = write_tiny_dataset(tmp_path / "sums.json", n=6, seed=4)
    args = [
        "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(data),
        "--output_dir", str(tmp_path / "out"), "--max_steps", "3", "--num_generations", "4",
        "--per_device_train_batch_size", "4", "--max_completion_length", "24",
        "--curriculum_fraction", "0.5", "--curriculum_samples", "4",
        "--reward_funcs", "sasc", "tests.training.user_rewards.recording_reward",
    ]  # fmt: skip
    user_rewards.RECORDED.clear()
    trainer = train_main(*make_parser().parse_args_and_config(args=args))
    rows_file = tmp_path / "out" / "curriculum" / "self-consistency.jsonl"
    rows = [json.loads(x) for x in rows_file.read_text().splitlines()]
    assert len(rows) == 6 and all(r["samples_used"] == 4 for r in rows)
    order = sorted(range(6), key=lambda i: -rows[i]["majority_ratio"])[:3]
    assert trainer.train_dataset["id"] == [rows[i]["id"] for i in order]
    assert trainer.args.shuffle_dataset is False
    # One question a step (4 rollouts of one prompt), in the curriculum's order.
    assert len(user_rewards.RECORDED) == 3
    for call, i in zip(user_rewards.RECORDED, order):
        assert {p[-1]["content"].split("\n")[0] for p in call["prompts"]} == {rows[i]["question"]}
    stamp = rows_file.stat().st_mtime_ns
    train_main(*make_parser().parse_args_and_config(args=args))
    assert rows_file.stat().st_mtime_ns == stamp  # resumed: nothing sampled again


# -- stop on collapse -----------------------------------------------------------------------------------------------
def _log(guard: CollapseGuard, step: int, control=None, **logs):
    control = control or TrainerControl()
    guard.on_log(None, SimpleNamespace(global_step=step), control, logs=logs)
    return control


def test_the_stop_action_asks_the_trainer_to_stop_and_records_the_streak():
    guard = CollapseGuard(patience=2, label_share=0.5, action="stop")
    share = "sasc/recent_top_label_share"
    for step, value in ((4, 0.2), (5, 0.6), (6, 0.3), (7, 0.7)):
        assert not _log(guard, step, **{share: value, "sasc/unanimous_fraction": 0.0}).should_training_stop
    control = _log(guard, 8, **{share: 0.9, "sasc/unanimous_fraction": 0.0})
    assert control.should_training_stop and guard.stopped
    assert (guard.fired_at, guard.fired_streak_start) == (8, 7)
    assert "training stops here" in guard.message
    warn_only = CollapseGuard(patience=1, label_share=0.5)
    assert not _log(warn_only, 4, **{share: 0.9, "sasc/unanimous_fraction": 0.0}).should_training_stop
    assert warn_only.warned and not warn_only.stopped


def probe_share(completions, trainer_state=None, log_metric=None, **kwargs):
    """A reward that logs a collapse signal on a fixed schedule (``recent_top_label_share`` 1.0 from step 4 on), so
    the guard fires at a known step whatever the model samples; its rewards alternate so every step trains."""
    step = trainer_state.global_step + 1
    if log_metric is not None:
        log_metric("probe/unanimous_fraction", 0.0)
        log_metric("probe/recent_top_label_share", 1.0 if step >= 4 else 0.0)
    return [float(i % 2) for i in range(len(completions))]


@pytest.mark.parametrize("checkpoints", [True, False])
def test_stop_on_collapse_keeps_the_weights_from_before_it(tiny_model_dir, tmp_path, checkpoints):
    """The probe makes steps 4 and 5 a streak (patience 2): training stops at step 5 and the saved model is
    checkpoint-2 (the weights of step 3 sampled the batch of step 4), or without checkpoints the starting weights."""
    data = write_tiny_dataset(tmp_path / "sums.json", n=16)
    out = tmp_path / "out"
    args = [
        "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(data),
        "--output_dir", str(out), "--max_steps", "8", "--num_generations", "4",
        "--per_device_train_batch_size", "8", "--max_completion_length", "16", "--learning_rate", "1e-2",
        "--reward_funcs", "tests.training.test_safeguards.probe_share",
        "--collapse_action", "stop", "--collapse_patience", "2", "--collapse_label_share", "0.5",
        "--save_strategy", "steps" if checkpoints else "no", "--save_steps", "1",
    ]  # fmt: skip
    with pytest.warns(UserWarning, match="possible collapse at step 5"):
        trainer = train_main(*make_parser().parse_args_and_config(args=args))
    assert trainer.state.global_step == 5
    saved = load_file(out / "model.safetensors")
    if checkpoints:
        expected = load_file(out / "checkpoint-2" / "model.safetensors")
        assert trainer.collapse_stop["restored_step"] == 2
        assert not all(torch.equal(saved[k], load_file(out / "checkpoint-5" / "model.safetensors")[k]) for k in saved)
    else:
        expected = load_file(tiny_model_dir / "model.safetensors")
        assert trainer.collapse_stop["restored_step"] == 0
    assert all(torch.equal(saved[k], expected[k]) for k in expected)
    card = (out / "README.md").read_text()
    assert "## Stopped on collapse" in card and "training at step 5" in card
    assert f"those of step {trainer.collapse_stop['restored_step']}" in card


def test_stop_needs_the_guard():
    from sasc_ttrl.training.configs import SASCConfig

    with pytest.raises(ValueError, match="collapse_patience must be >= 1"):
        SASCConfig(output_dir="x", use_cpu=True, report_to="none", collapse_action="stop", collapse_patience=0)
    with pytest.raises(ValueError, match="collapse_action must be one of"):
        SASCConfig(output_dir="x", use_cpu=True, report_to="none", collapse_action="halt")


# -- the controls -----------------------------------------------------------------------------------------------------
def test_oracle_and_format_rewards():
    oracle, fmt = get_reward_funcs(["oracle", "format"])
    completions = ["so \\boxed{12}", "\\boxed{13}", "the answer is 12", "\\boxed{}"]
    assert oracle(prompts=["p"] * 4, completions=completions, answer=["12"] * 4) == [1.0, 0.0, 1.0, 0.0]
    assert fmt(prompts=["p"] * 4, completions=completions) == [1.0, 1.0, 0.0, 0.0]
    chat = [[{"role": "assistant", "content": "\\boxed{3}"}]]
    assert oracle(prompts=["p"], completions=chat, answer=["3"]) == [1.0] and fmt(prompts=["p"], completions=chat) == [
        1.0
    ]
    with pytest.raises(ValueError, match="needs the true answers"):
        oracle(prompts=["p"], completions=["\\boxed{1}"])
