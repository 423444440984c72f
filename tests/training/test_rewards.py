"""Reward registry, the TRL-facing reward functions, and diagnostics (training.rewards, core.label_diagnostics)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sasc_ttrl.core.answers import extract_answer
from sasc_ttrl.core.label_diagnostics import group_diagnostics
from sasc_ttrl.core.stability import instability
from sasc_ttrl.core.voting import VoteSettings, majority_vote, sasc_vote
from sasc_ttrl.training.rewards import (
    completion_text,
    get_reward_funcs,
    make_majority_reward,
    make_sasc_reward,
    register_reward,
    registry,
)

# --------------------------------------------------------------------------------------------------------------
# Registry


def test_registered_names_resolve():
    sasc, majority = get_reward_funcs(["sasc", "majority"])
    assert sasc.__name__ == "sasc_reward"
    assert majority.__name__ == "majority_reward"


def test_dotted_path_resolves():
    (func,) = get_reward_funcs(["sasc_ttrl.core.answers.extract_answer"])
    assert func is extract_answer


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match="nonexistent") as info:
        get_reward_funcs(["nonexistent"])
    assert "'majority'" in str(info.value)
    assert "'sasc'" in str(info.value)


@pytest.mark.parametrize("name", ["no_such_module_xyz.reward", "sasc_ttrl.core.answers.no_such_function"])
def test_bad_dotted_path_raises_value_error(name):
    with pytest.raises(ValueError, match="could not import"):
        get_reward_funcs([name])


def test_register_reward_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "REWARD_FACTORIES", dict(registry.REWARD_FACTORIES))
    with pytest.raises(ValueError, match="sasc"):
        register_reward("sasc", make_majority_reward)

    def constant_factory(settings):
        def constant_reward(prompts, completions, **kwargs):
            return [0.5] * len(completions)

        return constant_reward

    register_reward("constant", constant_factory)
    (func,) = get_reward_funcs(["constant"])
    assert func(prompts=["p"], completions=["c"]) == [0.5]
    with pytest.raises(ValueError, match="constant"):
        register_reward("constant", constant_factory)

    @register_reward("decorated")
    def decorated_factory(settings):
        return lambda prompts, completions, **kwargs: [float(settings.filter_ratio)] * len(completions)

    assert registry.REWARD_FACTORIES["decorated"] is decorated_factory  # the decorator returns the factory
    (func,) = get_reward_funcs(["decorated"], VoteSettings(filter_ratio=0.3), vote_log_path="unused.jsonl")
    assert func(prompts=["p"], completions=["c"]) == [0.3]  # no vote_log_path: it does not log votes
    with pytest.raises(ValueError, match="decorated"):
        register_reward("decorated")(decorated_factory)


def test_settings_reach_the_reward():
    # filter_ratio 0 + uniform weights is the plain majority; the default gate would overturn it.
    completions = [f"\\boxed{{{a}}}" for a in ["9", "7", "7", "9", "9"]]
    entropies = [_entropies(s) for s in [1.0, 0.1, 0.1, 0.5, 0.6]]
    call = {"prompts": ["p"] * 5, "completions": completions, "token_entropies": entropies}
    (default,) = get_reward_funcs(["sasc"], VoteSettings(vote_weighting="uniform"))
    (no_gate,) = get_reward_funcs(["sasc"], VoteSettings(filter_ratio=0.0, vote_weighting="uniform"))
    assert default(**call) == [0.0, 1.0, 1.0, 0.0, 0.0]
    assert no_gate(**call) == [1.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "kwargs", [{"filter_ratio": 1.0}, {"filter_ratio": -0.2}, {"weight_temperature": 0.0}, {"vote_weighting": "soft"}]
)
def test_vote_settings_validation(kwargs):
    with pytest.raises(ValueError):
        VoteSettings(**kwargs)


def test_completion_text():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "hi"}]) == "hi"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}]) == "ab"
    with pytest.raises(TypeError):
        completion_text(42)


# --------------------------------------------------------------------------------------------------------------
# Calling the reward functions as TRL does


def _entropies(target_std: float, length: int = 6) -> list[float]:
    """An entropy sequence whose population std is exactly ``target_std`` (alternating 1 +- target_std)."""
    return [1.0 + target_std * (1 if t % 2 == 0 else -1) for t in range(length)]


class Recorder:
    def __init__(self):
        self.metrics: dict[str, float] = {}
        self.extra: dict[str, list] = {}

    def log_metric(self, name, value):
        assert name not in self.metrics
        self.metrics[name] = value

    def log_extra(self, name, values):
        self.extra[name] = values


def _trl_call(func, prompts, texts, stds, conversational=False, recorder=None, **columns):
    if conversational:
        completions = [[{"role": "assistant", "content": t}] for t in texts]
    else:
        completions = list(texts)
    recorder = recorder or Recorder()
    return func(
        prompts=prompts,
        completions=completions,
        completion_ids=[[1, 2, 3]] * len(texts),
        token_entropies=[_entropies(s) for s in stds] if stds is not None else None,
        log_metric=recorder.log_metric,
        log_extra=recorder.log_extra,
        trainer_state=None,
        **columns,
    )


# One group: the stability-aware vote picks "7", the plain majority "9" (see test_voting).
GROUP_ANSWERS = ["7", "7", "9", "9", "9"]
GROUP_STDS = [0.1, 0.1, 0.5, 0.6, 1.0]
GROUP_TEXTS = [
    "Adding up, \\boxed{7}.",
    "The answer is 7.",
    "#### 9",
    "so we get \\boxed{9}",
    "The answer is $9$.",
]


def test_entropy_helper():
    assert instability(_entropies(0.37)) == pytest.approx(0.37)


@pytest.mark.parametrize("conversational", [False, True])
def test_sasc_reward_matches_a_direct_vote(conversational):
    (func,) = get_reward_funcs(["sasc"])
    recorder = Recorder()
    got = _trl_call(
        func, ["What is x?"] * 5, GROUP_TEXTS, GROUP_STDS, conversational=conversational, recorder=recorder
    )
    direct = sasc_vote(GROUP_ANSWERS, [instability(_entropies(s)) for s in GROUP_STDS])
    assert got == direct.rewards == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert recorder.extra["extracted_answer"] == GROUP_ANSWERS
    assert recorder.extra["sasc_pseudo_label"] == ["7"] * 5


@pytest.mark.parametrize("conversational", [False, True])
def test_majority_reward_matches_a_direct_vote(conversational):
    (func,) = get_reward_funcs(["majority"])
    recorder = Recorder()
    got = _trl_call(func, ["What is x?"] * 5, GROUP_TEXTS, None, conversational=conversational, recorder=recorder)
    assert got == majority_vote(GROUP_ANSWERS).rewards == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert recorder.extra["majority_pseudo_label"] == ["9"] * 5
    # Entropies, when present, do not change the majority reward.
    assert _trl_call(func, ["What is x?"] * 5, GROUP_TEXTS, GROUP_STDS) == got


def test_conversational_prompts_and_no_answers():
    (func,) = get_reward_funcs(["sasc"])
    prompt = [{"role": "user", "content": "What is 1+1?"}]
    texts = ["\\boxed{2}", "I don't know", "\\boxed{2}", "\\boxed{3}"]
    got = _trl_call(func, [prompt] * 4, texts, [0.1, 0.2, 0.3, 0.4], conversational=True)
    # m = 3 answered: floor(0.6) = 0 dropped; "2" has the two most stable rollouts.
    assert got == [1.0, 0.0, 1.0, 0.0]


def test_two_groups_by_rollout_group():
    (func,) = get_reward_funcs(["sasc"])
    # Group A = "7"/"9" case, group B = ["4","4","4","6","6"] with the least stable "4" dropped; interleaved.
    b_answers, b_stds = ["4", "4", "4", "6", "6"], [0.9, 0.1, 0.2, 0.3, 0.4]
    texts, stds, groups = [], [], []
    for j in range(5):
        texts += [GROUP_TEXTS[j], f"\\boxed{{{b_answers[j]}}}"]
        stds += [GROUP_STDS[j], b_stds[j]]
        groups += [10, 11]
    got = _trl_call(func, ["same prompt"] * 10, texts, stds, rollout_group=groups)
    a = sasc_vote(GROUP_ANSWERS, GROUP_STDS).rewards
    b = sasc_vote(b_answers, b_stds).rewards
    assert a == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert b == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert got[0::2] == a
    assert got[1::2] == b


def test_two_groups_by_consecutive_prompts():
    (func,) = get_reward_funcs(["sasc"])
    # Both groups answer "7" and "9"; voted together the "9"s (6 vs 4) would win in the second group too.
    texts = GROUP_TEXTS + ["\\boxed{9}", "\\boxed{9}", "\\boxed{7}", "\\boxed{9}", "\\boxed{7}"]
    stds = GROUP_STDS + [0.1, 0.2, 0.3, 0.4, 0.5]
    prompts = ["p1"] * 5 + ["p2"] * 5
    got = _trl_call(func, prompts, texts, stds)
    second = sasc_vote(["9", "9", "7", "9", "7"], [0.1, 0.2, 0.3, 0.4, 0.5]).rewards
    assert second == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert got == [1.0, 1.0, 0.0, 0.0, 0.0] + second
    # Same via majority: group 1 -> "9", group 2 -> "9".
    (majority,) = get_reward_funcs(["majority"])
    assert _trl_call(majority, prompts, texts, None) == [0.0, 0.0, 1.0, 1.0, 1.0] + [1.0, 1.0, 0.0, 1.0, 0.0]


GOLD_CHOICES = ["7", "9", "4", None, "\\frac{1}{2}", 9]


@settings(max_examples=25, deadline=None)
@given(golds=st.lists(st.sampled_from(GOLD_CHOICES), min_size=10, max_size=10), seed=st.integers(0, 1000))
def test_hidden_answers_never_change_a_reward(golds, seed):
    texts = GROUP_TEXTS + ["\\boxed{4}", "\\boxed{4}", "\\boxed{4}", "\\boxed{6}", "\\boxed{6}"]
    stds = GROUP_STDS + [0.9, 0.1, 0.2, 0.3, 0.4]
    prompts = ["p1"] * 5 + ["p2"] * 5
    expected = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    shuffled = list(golds)
    random.Random(seed).shuffle(shuffled)
    for name in ("sasc", "majority"):
        (func,) = get_reward_funcs([name])
        base = _trl_call(func, prompts, texts, stds)
        if name == "sasc":
            assert base == expected
        assert _trl_call(func, prompts, texts, stds, answer=golds) == base
        assert _trl_call(func, prompts, texts, stds, answer=shuffled) == base


def test_sasc_without_token_entropies_raises():
    (func,) = get_reward_funcs(["sasc"])
    with pytest.raises(ValueError, match="token_entropies"):
        func(prompts=["p"] * 2, completions=["\\boxed{1}"] * 2, completion_ids=[[1]] * 2, trainer_state=None)


@pytest.mark.parametrize("column", ["token_entropies", "rollout_group", "answer"])
def test_wrong_column_length_raises(column):
    (func,) = get_reward_funcs(["sasc"])
    columns = {
        "prompts": ["p"] * 3,
        "completions": ["\\boxed{1}"] * 3,
        "token_entropies": [[0.1, 0.2]] * 3,
        "rollout_group": [0, 0, 0],
        "answer": ["1", "1", "1"],
    }
    columns[column] = columns[column][:2]
    with pytest.raises(ValueError, match=column):
        func(**columns)


def test_logged_metrics_with_answers():
    (func,) = get_reward_funcs(["sasc"])
    recorder = Recorder()
    texts = GROUP_TEXTS + ["\\boxed{4}", "\\boxed{4}", "\\boxed{4}", "\\boxed{6}", "no idea"]
    stds = GROUP_STDS + [0.9, 0.1, 0.2, 0.3, 0.4]
    prompts = ["p1"] * 5 + ["p2"] * 5
    # Group 1: sasc label "7", majority "9", gold "9". Group 2: both labels "4", gold "6".
    golds = ["9"] * 5 + [6] * 5
    got = _trl_call(func, prompts, texts, stds, recorder=recorder, answer=golds)
    # Group 2: m = 4 answered, floor(0.8) = 0 dropped; "4" has three votes against one.
    assert got == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    m = recorder.metrics
    for name in (
        "label_accuracy",
        "reward_accuracy",
        "majority_ratio",
        "kept_fraction",
        "no_answer_fraction",
        "mean_instability",
        "label_differs_from_majority",
        "majority_label_accuracy",
    ):
        assert f"sasc/{name}" in m
    assert m["sasc/label_accuracy"] == pytest.approx(0.0)  # "7" vs "9", "4" vs "6"
    assert m["sasc/majority_label_accuracy"] == pytest.approx(0.5)  # "9" right, "4" wrong
    assert m["sasc/label_differs_from_majority"] == pytest.approx(0.5)
    # Group 1: pseudo [1,1,0,0,0], true [0,0,1,1,1]: 0 of 5 agree. Group 2: pseudo [1,1,1,0,0], true [0,0,0,1,0]:
    # rollouts 4 (both 0) agrees. 1 of 10.
    assert m["sasc/reward_accuracy"] == pytest.approx(0.1)
    assert m["sasc/majority_ratio"] == pytest.approx((2 / 5 + 3 / 5) / 2)
    assert m["sasc/no_answer_fraction"] == pytest.approx(0.1)
    assert m["sasc/kept_fraction"] == pytest.approx(8 / 9)  # group 1 drops one of 5, group 2 none of 4
    assert m["sasc/mean_instability"] == pytest.approx(sum(stds) / 10)


def test_majority_metrics_with_answers():
    (func,) = get_reward_funcs(["majority"])
    recorder = Recorder()
    _trl_call(func, ["p"] * 5, GROUP_TEXTS, None, recorder=recorder, answer=["9"] * 5)
    m = recorder.metrics
    assert m["majority/label_accuracy"] == pytest.approx(1.0)
    assert m["majority/reward_accuracy"] == pytest.approx(1.0)
    assert m["majority/majority_ratio"] == pytest.approx(0.6)
    assert "majority/label_differs_from_majority" not in m
    assert "majority/mean_instability" not in m


def test_no_label_metrics_without_answers():
    (func,) = get_reward_funcs(["sasc"])
    recorder = Recorder()
    _trl_call(func, ["p"] * 5, GROUP_TEXTS, GROUP_STDS, recorder=recorder)
    names = set(recorder.metrics)
    assert "sasc/majority_ratio" in names
    assert not {n for n in names if "accuracy" in n}
    # All-None answers give no label metrics either.
    recorder = Recorder()
    _trl_call(func, ["p"] * 5, GROUP_TEXTS, GROUP_STDS, recorder=recorder, answer=[None] * 5)
    assert not {n for n in recorder.metrics if "accuracy" in n}


def test_reward_without_logging_hooks():
    func = make_sasc_reward(VoteSettings())
    entropies = [_entropies(s) for s in GROUP_STDS]
    assert func(prompts=["p"] * 5, completions=GROUP_TEXTS, token_entropies=entropies) == [1.0, 1.0, 0.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------------------------
# diagnostics.group_diagnostics


def test_group_diagnostics_hand_case():
    g1 = ["7", "7", "3", None]
    g2 = ["4", "4", "5"]
    votes = [majority_vote(g1), majority_vote(g2)]
    assert [v.pseudo_label for v in votes] == ["7", "4"]
    metrics = group_diagnostics(votes, [g1, g2], golds=["7", "5"])
    # label_accuracy: group 1 right, group 2 wrong.
    assert metrics["label_accuracy"] == pytest.approx(0.5)
    # reward_accuracy: g1 pseudo [1,1,0,0] = true [1,1,0,0] (4 agree); g2 pseudo [1,1,0] vs true [0,0,1] (0).
    assert metrics["reward_accuracy"] == pytest.approx(4 / 7)
    # rollout_accuracy: true rewards 1,1,0,0,0,0,1.
    assert metrics["rollout_accuracy"] == pytest.approx(3 / 7)
    # majority_ratio: 2 of 4 and 2 of 3, averaged over groups.
    assert metrics["majority_ratio"] == pytest.approx((2 / 4 + 2 / 3) / 2)
    assert metrics["no_answer_fraction"] == pytest.approx(1 / 7)
    assert metrics["kept_fraction"] == pytest.approx(1.0)
    assert metrics["no_label_fraction"] == pytest.approx(0.0)
    assert "mean_instability" not in metrics
    assert "label_differs_from_majority" not in metrics


def test_group_diagnostics_with_reference_and_instabilities():
    answers = ["7", "7", "9", "9", "9"]
    s = [0.1, 0.1, 0.5, 0.6, 1.0]
    sasc = sasc_vote(answers, s)
    majority = majority_vote(answers)
    empty = [None, None]
    metrics = group_diagnostics(
        [sasc, majority_vote(empty)],
        [answers, empty],
        instabilities=[s, [0.0, 0.0]],
        golds=["9", "1"],
        reference_votes=[majority, majority_vote(empty)],
    )
    assert metrics["label_accuracy"] == pytest.approx(0.0)  # "7" vs "9"; no label vs "1"
    assert metrics["majority_label_accuracy"] == pytest.approx(0.5)
    assert metrics["label_differs_from_majority"] == pytest.approx(0.5)  # no label vs no label: same
    assert metrics["mean_instability"] == pytest.approx(sum(s) / 7)
    assert metrics["no_label_fraction"] == pytest.approx(0.5)
    assert metrics["kept_fraction"] == pytest.approx(4 / 5)
    # sasc rewards [1,1,0,0,0] vs true [0,0,1,1,1]: 0 of 5; empty group: [0,0] vs [0,0]: 2 of 2.
    assert metrics["reward_accuracy"] == pytest.approx(2 / 7)


def test_group_diagnostics_skips_groups_without_gold():
    g1, g2 = ["1", "1"], ["2", "3"]
    votes = [majority_vote(g1), majority_vote(g2)]
    metrics = group_diagnostics(votes, [g1, g2], golds=[None, "3"])
    assert metrics["label_accuracy"] == pytest.approx(0.0)  # only group 2: label "2" vs gold "3"
    assert metrics["reward_accuracy"] == pytest.approx(0.0)  # [1,0] vs [0,1]
    assert "label_accuracy" not in group_diagnostics(votes, [g1, g2], golds=[None, None])
    assert "label_accuracy" not in group_diagnostics(votes, [g1, g2], golds=None)


def test_group_diagnostics_uses_equivalence():
    g = ["0.5", "\\frac{1}{2}", "1"]
    metrics = group_diagnostics([majority_vote(g)], [g], golds=["\\dfrac12"])
    assert metrics["label_accuracy"] == pytest.approx(1.0)
    assert metrics["reward_accuracy"] == pytest.approx(1.0)


def test_vote_log_path_writes_one_line_per_group(tmp_path):
    import json

    path = tmp_path / "logs" / "votes.jsonl"
    (func,) = get_reward_funcs(["sasc"], VoteSettings(), vote_log_path=str(path))
    texts = GROUP_TEXTS + ["\\boxed{4}", "\\boxed{4}", "\\boxed{4}", "\\boxed{6}", "\\boxed{6}"]
    stds = GROUP_STDS + [0.9, 0.1, 0.2, 0.3, 0.4]
    got = _trl_call(func, ["p"] * 10, texts, stds, rollout_group=[3] * 5 + [4] * 5)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["batch_group"] for line in lines] == [3, 4]
    # No trainer state (called outside a trainer): no step, groups numbered over every call.
    assert [(line["step"], line["group"]) for line in lines] == [(None, "0"), (None, "1")]
    assert lines[0]["answers"] == GROUP_ANSWERS
    assert lines[0]["pseudo_label"] == "7"
    assert lines[0]["kept"] == [True, True, True, True, False]
    assert lines[0]["instabilities"] == pytest.approx(GROUP_STDS)
    assert lines[1]["rewards"] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert lines[0]["rewards"] + lines[1]["rewards"] == got
    assert all(line["vote"] == "sasc" and set(line["ranks"]) == {0} for line in lines)
    # Appends on the next call.
    _trl_call(func, ["p"] * 10, texts, stds, rollout_group=[3] * 5 + [4] * 5)
    assert [json.loads(line)["group"] for line in path.read_text().splitlines()] == ["0", "1", "2", "3"]


def test_vote_log_group_ids_are_unique_across_steps_and_batches(tmp_path):
    """Group ids are "<step>-<i>", step = trainer_state.global_step + 1; two batches in one step keep counting."""
    import json
    from types import SimpleNamespace

    path = tmp_path / "votes.jsonl"
    (func,) = get_reward_funcs(["majority"], VoteSettings(), vote_log_path=str(path))
    texts = ["\\boxed{1}", "\\boxed{1}", "\\boxed{2}", "\\boxed{2}"]
    for global_step in (0, 0, 1):  # two generation batches at step 1 (accumulation), one at step 2
        func(
            prompts=["a", "a", "b", "b"], completions=texts, completion_ids=[[1]] * 4, rollout_group=[0, 0, 1, 1],
            trainer_state=SimpleNamespace(global_step=global_step),
        )  # fmt: skip
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 1, 1, 1, 2, 2]
    assert [line["group"] for line in lines] == ["1-0", "1-1", "1-2", "1-3", "2-0", "2-1"]
    assert [line["batch_group"] for line in lines] == [0, 1, 0, 1, 0, 1]
    assert len({line["group"] for line in lines}) == len(lines)


def test_registry_names_in_reward_funcs_resolve_and_the_rest_go_to_trl(tmp_path):
    import json

    from sasc_ttrl.training.rewards import is_registry_reference, resolve_reward_funcs

    def mine(completions, **kwargs):
        return [0.0] * len(completions)

    settings = VoteSettings(filter_ratio=0.5)
    sasc, own, hub, dotted = resolve_reward_funcs(
        ["sasc", mine, "org/reward-model", "tests.training.test_rewards.Recorder"],
        settings,
        str(tmp_path / "votes.jsonl"),
    )
    assert sasc.__name__ == "sasc_reward" and own is mine and hub == "org/reward-model"
    assert dotted is Recorder
    # The registry's reward carries the given vote settings: filter_ratio 0.5 gates 2 of 5 rollouts (0.2 gates 1).
    _trl_call(sasc, ["p"] * 5, GROUP_TEXTS, GROUP_STDS)
    (line,) = [json.loads(x) for x in (tmp_path / "votes.jsonl").read_text().splitlines()]
    assert line["kept"] == [True, True, True, False, False]
    (single,) = resolve_reward_funcs("majority", settings)
    assert single.__name__ == "majority_reward"
    assert not is_registry_reference("Qwen/Qwen2.5-Math-RM-72B")
    assert not is_registry_reference("./my.reward.model")
    with pytest.raises(ValueError, match="could not import reward function 'no_such_pkg.reward'"):
        resolve_reward_funcs(["no_such_pkg.reward"], settings)
