"""The collapse signals (unanimous share, label entropy, one label across questions), the one-time collapse warning,
and the no-answer warning."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from sasc_ttrl.core.label_diagnostics import RecentLabels, group_diagnostics, label_entropy, top_label_share
from sasc_ttrl.core.voting import majority_vote
from sasc_ttrl.training.collapse import CollapseGuard, NoAnswerGuard


def test_label_entropy_in_bits():
    assert label_entropy(["1", "1", "1"]) == 0.0
    assert label_entropy(["1", "2"]) == pytest.approx(1.0)
    assert label_entropy(["1", "2", "3", "4"]) == pytest.approx(2.0)
    assert label_entropy(["1", None]) == pytest.approx(1.0)  # no label is one more label
    assert label_entropy([]) == 0.0


def test_unanimous_fraction_counts_groups_without_a_competing_class():
    groups = [["7", "7", None], ["7", "8", "7"], [None, None, None], ["1/2", "0.5", "1/2"]]
    votes = [majority_vote(g) for g in groups]
    metrics = group_diagnostics(votes, groups)
    # group 1: one class (7) among the answered; 2: 7 vs 8; 3: no label; 4: 1/2 == 0.5, one class
    assert metrics["unanimous_fraction"] == pytest.approx(2 / 4)
    assert metrics["label_entropy"] == pytest.approx(-(0.5 * math.log2(0.5) + 2 * 0.25 * math.log2(0.25)))


def _log(guard: CollapseGuard, step: int, **logs):
    guard.on_log(None, SimpleNamespace(global_step=step), None, logs=logs)


def test_warns_once_after_patience_unanimous_steps_with_missing_answers():
    guard = CollapseGuard(threshold=0.9, patience=3)
    with pytest.warns(UserWarning, match="possible collapse at step 5") as caught:
        _log(guard, 1, **{"sasc/unanimous_fraction": 0.95, "sasc/no_answer_fraction": 0.1})
        _log(guard, 2, **{"sasc/unanimous_fraction": 0.5, "sasc/no_answer_fraction": 0.1})  # the streak breaks
        for step in (3, 4, 5, 6):
            _log(guard, step, **{"sasc/unanimous_fraction": 1.0, "sasc/no_answer_fraction": 0.2})
    assert len(caught) == 1 and guard.warned and "answer rate 80%" in guard.message


def test_no_warning_when_every_rollout_answers_and_no_heldout_score_falls(recwarn):
    guard = CollapseGuard(patience=2)
    for step in range(1, 6):
        _log(guard, step, **{"majority/unanimous_fraction": 1.0, "majority/no_answer_fraction": 0.0})
    assert not guard.warned and not recwarn.list


def test_a_falling_heldout_score_counts():
    guard = CollapseGuard(patience=2, heldout_metric="eval_pass@4")
    _log(guard, 1, **{"eval_pass@4": 0.5})
    _log(guard, 2, **{"sasc/unanimous_fraction": 0.92, "sasc/no_answer_fraction": 0.0})
    _log(guard, 3, **{"eval_pass@4": 0.6})
    _log(guard, 4, **{"sasc/unanimous_fraction": 0.92, "sasc/no_answer_fraction": 0.0})
    assert not guard.warned  # unanimous, every rollout answers, and the held-out score only rose
    _log(guard, 5, **{"eval_pass@4": 0.4})
    with pytest.warns(UserWarning, match="eval_pass@4 fell"):
        _log(guard, 6, **{"sasc/unanimous_fraction": 0.95, "sasc/no_answer_fraction": 0.0})


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        CollapseGuard(threshold=0.0)
    with pytest.raises(ValueError):
        CollapseGuard(patience=0)
    with pytest.raises(ValueError):
        CollapseGuard(label_share=1.5)
    with pytest.raises(ValueError):
        RecentLabels(window=4, min_questions=5)


# -- one label for most questions ------------------------------------------------------------------------------------
def test_top_label_share_counts_the_most_common_answered_label():
    assert top_label_share(["5", "5", "5", "3"]) == pytest.approx(0.75)
    assert top_label_share(["5", " 5", None, None]) == pytest.approx(0.5)  # None is never the common label
    assert top_label_share([None, None]) == 0.0
    assert top_label_share([]) == 0.0


def test_recent_labels_keep_the_last_distinct_questions():
    recent = RecentLabels(window=4, min_questions=3)
    recent.update([("q1", "5"), ("q2", "5")])
    assert recent.top_label_share() is None  # two questions: too few to call a label common
    recent.update([("q3", "7")])
    assert recent.top_label_share() == pytest.approx(2 / 3)
    recent.update([("q1", "7")])  # q1 again: its newer label replaces the older, it still counts once
    assert recent.top_label_share() == pytest.approx(2 / 3)
    recent.update([("q4", "9"), ("q5", "9"), ("q6", "9")])  # q2 and q3 leave; q1 = 7, q4-q6 = 9
    assert recent.top_label_share() == pytest.approx(3 / 4)


def test_warns_when_most_questions_get_one_label_even_if_no_group_is_unanimous():
    """The training study's seed-0 collapse: no group unanimous, every rollout answered, one answer for most."""
    guard = CollapseGuard(patience=3, label_share=0.5)
    healthy = {"sasc/unanimous_fraction": 0.0, "sasc/no_answer_fraction": 0.0}
    _log(guard, 1, **healthy)  # no share yet (fewer than 8 questions voted on)
    _log(guard, 2, **healthy, **{"sasc/recent_top_label_share": 0.6})
    _log(guard, 3, **healthy, **{"sasc/recent_top_label_share": 0.2})  # the streak breaks
    _log(guard, 4, **healthy, **{"sasc/recent_top_label_share": 0.5})
    _log(guard, 5, **healthy, **{"sasc/recent_top_label_share": 0.7})
    assert not guard.warned
    with pytest.warns(UserWarning, match="possible collapse at step 6: 80% of the last questions got the same"):
        _log(guard, 6, **healthy, **{"sasc/recent_top_label_share": 0.8})
    _log(guard, 7, **healthy, **{"sasc/recent_top_label_share": 0.9})
    assert guard.warned and "3 logged steps" in guard.message


def test_the_label_share_condition_can_be_turned_off(recwarn):
    guard = CollapseGuard(patience=2, label_share=None)
    for step in range(1, 6):
        _log(guard, step, **{"sasc/unanimous_fraction": 0.0, "sasc/no_answer_fraction": 0.0,
                             "sasc/recent_top_label_share": 1.0})  # fmt: skip
    assert not guard.warned and not recwarn.list


def test_the_reward_logs_the_share_of_recent_questions_with_one_label():
    """A vote reward remembers labels across calls: 8 questions answered "5" give a share of 1.0, new answers lower
    it, and the first 7 questions log nothing."""
    from sasc_ttrl.training.rewards import get_reward_funcs
    from tests.training.test_rewards import Recorder

    (func,) = get_reward_funcs(["majority"])

    def step(questions, answers):
        recorder = Recorder()
        prompts = [q for q in questions for _ in range(3)]
        texts = [f"\\boxed{{{a}}}" for a in answers for _ in range(3)]
        func(prompts=prompts, completions=texts, completion_ids=[[1]] * len(texts), log_metric=recorder.log_metric,
             trainer_state=None)  # fmt: skip
        return recorder.metrics.get("majority/recent_top_label_share")

    shares = [step([f"q{2 * i}", f"q{2 * i + 1}"], ["5", "5"]) for i in range(4)]
    assert shares == [None, None, None, 1.0]
    assert step(["q8", "q9"], ["3", "4"]) == pytest.approx(8 / 10)
    assert step(["q0", "q1"], ["1", "2"]) == pytest.approx(6 / 10)  # q0 and q1 asked again: their labels change
    (other,) = get_reward_funcs(["majority"])  # each reward function has its own memory
    recorder = Recorder()
    other(prompts=["q0"] * 3, completions=["\\boxed{5}"] * 3, completion_ids=[[1]] * 3,
          log_metric=recorder.log_metric, trainer_state=None)  # fmt: skip
    assert "majority/recent_top_label_share" not in recorder.metrics


def test_the_trainer_installs_the_guard_unless_turned_off(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from sasc_ttrl.data.training_data import load_math_dataset
    from sasc_ttrl.demo.tiny_model import write_tiny_dataset
    from sasc_ttrl.training.trainer import SASCTrainer
    from tests.training.test_trainer import tiny_config

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=4)), tokenizer=tokenizer)

    def guards(**overrides):
        trainer = SASCTrainer(
            model=str(tiny_model_dir), args=tiny_config(tmp_path, **overrides), train_dataset=data,
            processing_class=tokenizer,
        )  # fmt: skip
        return [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, CollapseGuard)]

    (guard,) = guards(collapse_threshold=0.8, collapse_patience=5, collapse_heldout_metric="eval_x")
    assert (guard.threshold, guard.patience, guard.heldout_metric, guard.label_share) == (0.8, 5, "eval_x", 0.5)
    (guard,) = guards(collapse_label_share=None)
    assert guard.label_share is None
    assert guards(collapse_patience=0) == []
    with pytest.raises(ValueError, match="collapse_label_share"):
        tiny_config(tmp_path, collapse_label_share=0.0)


# -- no answers at all -----------------------------------------------------------------------------------------------
def test_no_answer_warning_after_patience_silent_steps():
    guard = NoAnswerGuard(patience=3)
    _log(guard, 1, loss=0.0)  # a log without the vote's metrics does not count
    _log(guard, 2, **{"sasc/no_answer_fraction": 1.0})
    _log(guard, 3, **{"sasc/no_answer_fraction": 1.0})
    assert not guard.warned
    with pytest.warns(
        UserWarning, match=r"no rollout gave an answer in the first 3 logged step\(s\), up to step 4"
    ) as caught:
        _log(guard, 4, **{"sasc/no_answer_fraction": 1.0})
        _log(guard, 5, **{"sasc/no_answer_fraction": 1.0})
        guard.on_train_end(None, SimpleNamespace(global_step=5), None)
    assert len(caught) == 1 and "\\boxed{}" in guard.message and "max_completion_length" in guard.message


def test_no_warning_once_any_rollout_answered(recwarn):
    guard = NoAnswerGuard(patience=2)
    _log(guard, 1, **{"majority/no_answer_fraction": 1.0})
    _log(guard, 2, **{"majority/no_answer_fraction": 0.9})  # one answer: the data and prompt can work
    for step in (3, 4, 5):
        _log(guard, step, **{"majority/no_answer_fraction": 1.0})
    guard.on_train_end(None, SimpleNamespace(global_step=5), None)
    assert not guard.warned and not recwarn.list


def test_a_short_silent_run_warns_at_its_end():
    guard = NoAnswerGuard(patience=3)
    _log(guard, 1, **{"sasc/no_answer_fraction": 1.0})
    with pytest.warns(UserWarning, match=r"in the first 1 logged step\(s\), up to step 1"):
        guard.on_train_end(None, SimpleNamespace(global_step=1), None)
    with pytest.raises(ValueError):
        NoAnswerGuard(patience=0)


def test_a_run_without_answers_warns(tiny_model_dir, tmp_path):
    """8 completion tokens never reach "The answer is \\boxed{..}" (the tiny model's answers are ~30 characters in):
    every reward is 0, and the trainer says so once."""
    from transformers import AutoTokenizer

    from sasc_ttrl.data.training_data import load_math_dataset
    from sasc_ttrl.demo.tiny_model import write_tiny_dataset
    from sasc_ttrl.training.trainer import SASCTrainer
    from tests.training.test_trainer import tiny_config

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=4)), tokenizer=tokenizer)
    args = tiny_config(tmp_path, max_completion_length=8, max_steps=2, no_answer_patience=2, collapse_patience=0)
    trainer = SASCTrainer(model=str(tiny_model_dir), args=args, train_dataset=data, processing_class=tokenizer)
    (guard,) = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, NoAnswerGuard)]
    with pytest.warns(UserWarning, match=r"no rollout gave an answer in the first 2 logged step\(s\), up to step 2"):
        trainer.train()
    logged = [e["sasc/no_answer_fraction"] for e in trainer.state.log_history if "sasc/no_answer_fraction" in e]
    assert logged == [1.0, 1.0]
    assert all(e["reward"] == 0.0 for e in trainer.state.log_history if "reward" in e)
    assert guard.warned
    no_guard = SASCTrainer(
        model=str(tiny_model_dir), args=tiny_config(tmp_path, no_answer_patience=0), train_dataset=data,
        processing_class=tokenizer,
    )  # fmt: skip
    assert not [cb for cb in no_guard.callback_handler.callbacks if isinstance(cb, NoAnswerGuard)]


def test_a_training_run_logs_the_label_share_and_the_guard_reads_it(tiny_model_dir, tmp_path):
    """Through the trainer: after 8 questions the reward logs ``recent_top_label_share``, equal to the share
    recomputed from the vote log, and a guard whose bar every share clears warns once after ``patience`` steps."""
    import json

    from transformers import AutoTokenizer

    from sasc_ttrl.data.training_data import load_math_dataset
    from sasc_ttrl.demo.tiny_model import write_tiny_dataset
    from sasc_ttrl.training.trainer import SASCTrainer
    from tests.training.test_trainer import tiny_config

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=12)), tokenizer=tokenizer)
    log = tmp_path / "votes.jsonl"
    args = tiny_config(
        tmp_path, max_steps=6, collapse_patience=2, collapse_label_share=1e-6, vote_log_path=str(log),
        no_answer_patience=0,
    )  # fmt: skip
    trainer = SASCTrainer(model=str(tiny_model_dir), args=args, train_dataset=data, processing_class=tokenizer)
    with pytest.warns(UserWarning, match="possible collapse at step 5: .* of the last questions got the same"):
        trainer.train()
    logged = {e["step"]: e.get("sasc/recent_top_label_share") for e in trainer.state.log_history if "loss" in e}
    assert [logged[s] is None for s in range(1, 7)] == [True] * 3 + [False] * 3  # 2 questions a step, 8 needed

    groups = [json.loads(line) for line in log.read_text().splitlines()]
    assert [g["step"] for g in groups] == [s for s in range(1, 7) for _ in range(2)]
    for step in (4, 5, 6):
        # 12 questions, 2 a step: none is asked twice in 6 steps, so the window is every label so far
        labels = [g["pseudo_label"] for g in groups if g["step"] <= step]
        assert logged[step] == pytest.approx(top_label_share(labels))
