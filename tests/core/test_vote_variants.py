"""Instability statistics, weightings and their composition (gate / weight as separate switches), on hand-made
groups; and the settings reaching the online reward."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sasc_ttrl.core.stability import STATISTICS, group_statistic, length_matched, rollout_statistic
from sasc_ttrl.core.voting import WEIGHTINGS, VoteSettings, majority_vote, sasc_vote, stability_vote
from sasc_ttrl.training.rewards import get_reward_funcs


def test_each_statistic_on_a_hand_made_sequence():
    seq = [0.0, 2.0, 0.0, 2.0, 1.0, 1.0, 3.0, 3.0]
    assert rollout_statistic(seq, "std") == pytest.approx(float(np.std(seq)))
    assert rollout_statistic(seq, "mean") == pytest.approx(1.5)
    assert rollout_statistic(seq, "tail", tail_tokens=2) == pytest.approx(3.0)
    assert rollout_statistic(seq, "tail", tail_tokens=100) == pytest.approx(1.5)  # shorter than the tail: all
    # Windows of 2: means 1, 1, 1, 1.5, 1, 2, 3 -> the worst window is the last one.
    assert rollout_statistic(seq, "bottom_window", window_tokens=2) == pytest.approx(3.0)
    assert rollout_statistic(seq, "bottom_window", window_tokens=3) == pytest.approx((1 + 3 + 3) / 3)
    assert rollout_statistic(seq, "bottom_window", window_tokens=50) == pytest.approx(1.5)
    assert rollout_statistic(seq, "std_length_matched") == rollout_statistic(seq, "std")
    for statistic in STATISTICS:
        assert rollout_statistic([], statistic) == 0.0
        with pytest.raises(ValueError, match="NaN"):
            rollout_statistic([0.1, float("nan")], statistic)
    with pytest.raises(ValueError, match="statistic must be one of"):
        rollout_statistic(seq, "median")
    with pytest.raises(ValueError, match="tail_tokens"):
        rollout_statistic(seq, "tail", tail_tokens=0)


def test_length_matched_removes_a_pure_length_effect():
    lengths = [10, 20, 40, 80, 160]
    values = [0.1 + 0.2 * math.log(n) for n in lengths]  # instability explained entirely by length
    adjusted = length_matched(values, lengths)
    assert np.ptp(adjusted) == pytest.approx(0.0, abs=1e-12)
    assert np.mean(adjusted) == pytest.approx(np.mean(values))  # scale kept
    # One rollout above the trend stays the least stable after the correction.
    bumped = list(values)
    bumped[1] += 0.5
    adjusted = length_matched(bumped, lengths)
    assert int(np.argmax(adjusted)) == 1
    # Too few points to fit, or no spread in length: unchanged.
    assert length_matched([0.3, 0.1], [5, 50]) == [0.3, 0.1]
    assert length_matched([0.3, 0.1, 0.2], [7, 7, 7]) == [0.3, 0.1, 0.2]
    # The fit uses only the masked rollouts: an unmasked outlier does not move the line.
    with_outlier = values + [5.0]
    masked = length_matched(with_outlier, lengths + [30], mask=[True] * 5 + [False])
    assert np.ptp(masked[:5]) == pytest.approx(0.0, abs=1e-12)


def test_group_statistic_length_matched_ranks_by_residual():
    # A long rollout with a large std only because it is long, and a short one with an unusually large std.
    rng = np.random.default_rng(0)
    short_noisy = list(rng.normal(1.0, 0.8, 20).clip(0))
    seqs = [list(rng.normal(1.0, 0.05 * i, 20 * i).clip(0)) for i in (1, 2, 4, 8)] + [short_noisy]
    raw = group_statistic(seqs, "std")
    matched = group_statistic(seqs, "std_length_matched")
    assert len(matched) == len(seqs)
    assert int(np.argmax(matched)) == 4
    assert raw != matched


def _settings(**kwargs) -> VoteSettings:
    return VoteSettings(**kwargs)


def test_gate_and_weight_are_separate_switches():
    # Stable minority "1" (std small); an unstable majority "2"; one very unstable "3".
    answers = ["1", "1", "2", "2", "2", "3"]
    s = [0.1, 0.1, 0.8, 0.85, 0.9, 3.0]
    both = sasc_vote(answers, s)
    gate_only = sasc_vote(answers, s, vote_weighting="uniform")
    weight_only = sasc_vote(answers, s, filter_ratio=0.0)
    assert both.kept == [True] * 5 + [False]
    assert gate_only.kept == both.kept and set(gate_only.weights[:5]) == {1.0}
    assert gate_only.pseudo_label == "2"  # gate alone: plain majority of the kept
    assert all(weight_only.kept)
    assert weight_only.weights[5] > 0
    assert both.pseudo_label == "1"


def test_gate_statistic_and_weight_statistic_differ():
    # Rollout 0: low std but high mean; rollout 3: high std but low mean.
    seqs = [
        [2.0, 2.1, 2.0, 2.1],
        [0.5, 0.6, 0.5, 0.6],
        [0.5, 0.6, 0.5, 0.6],
        [0.0, 1.0, 0.0, 1.0],
        [0.4, 0.5, 0.4, 0.5],
    ]
    answers = ["A", "B", "B", "C", "D"]
    std_gate = stability_vote(answers, seqs, _settings(gate_statistic="std", weight_statistic="mean"))
    assert std_gate.kept == [True, True, True, False, True]  # the gate drops the largest std (rollout 3)
    # The weights follow the mean: rollout 0 (highest mean) has the smallest weight among the kept.
    kept_weights = [w for w, k in zip(std_gate.weights, std_gate.kept) if k]
    assert std_gate.weights[0] == min(kept_weights)
    mean_gate = stability_vote(answers, seqs, _settings(gate_statistic="mean", weight_statistic="mean"))
    assert mean_gate.kept == [False, True, True, True, True]  # the gate drops the largest mean (rollout 0)


def test_stability_vote_with_defaults_equals_sasc_vote_on_the_std():
    rng = np.random.default_rng(1)
    seqs = [list(rng.gamma(1.0, 0.5, size=int(rng.integers(3, 30)))) for _ in range(9)]
    answers = ["1", "2", "1", None, "3", "2", "1", "2", "2"]
    direct = sasc_vote(answers, [float(np.std(e)) for e in seqs])
    via = stability_vote(answers, seqs)
    assert via.weights == pytest.approx(direct.weights) and via.pseudo_label == direct.pseudo_label


def test_bounded_weights_stop_one_stable_rollout_outvoting_a_clear_majority():
    # One extremely stable rollout says "7"; four similar, moderately stable rollouts say "8".
    answers = ["7", "8", "8", "8", "8"]
    s = [0.0, 1.0, 1.0, 1.0, 1.0]
    exp = sasc_vote(answers, s, filter_ratio=0.0, vote_weighting="exp")
    assert exp.pseudo_label == "7"  # exp(-z): z = -2 gives weight e^2 = 7.4 against 4 x e^-0.5
    clipped = sasc_vote(answers, s, filter_ratio=0.0, vote_weighting="clipped_exp", weight_clip=0.5)
    assert max(clipped.weights) / min(clipped.weights) <= math.exp(2 * 0.5) + 1e-9  # c = 0.5
    assert clipped.pseudo_label == "8"
    default = sasc_vote(answers, s, filter_ratio=0.0)  # clipped_exp, c = 1: one voter outweighs at most e^2 = 7.4
    assert max(default.weights) / min(default.weights) <= math.exp(2 * 1.0) + 1e-9
    assert default.pseudo_label == "7"  # e = 2.72 against 4 x e^-0.5 = 2.43: c = 1 lets it win 1 against 4 ...
    assert sasc_vote([*answers, "8"], [*s, 1.0], filter_ratio=0.0).pseudo_label == "8"  # ... not 1 against 5
    rank = sasc_vote(answers, s, filter_ratio=0.0, vote_weighting="rank")
    assert rank.pseudo_label == "8"
    assert max(rank.weights) <= 1.5 and min(rank.weights) >= 0.5


def test_rank_weights_average_ties_and_span_half_to_one_and_a_half():
    answers = ["1", "2", "3", "4", "5"]
    rank = sasc_vote(answers, [0.1, 0.5, 0.5, 0.9, 0.3], filter_ratio=0.0, vote_weighting="rank")
    assert rank.weights == pytest.approx([1.5, 0.875, 0.875, 0.5, 1.25])
    assert np.mean(rank.weights) == pytest.approx(1.0)
    single = sasc_vote(["1", None], [0.3, 0.0], vote_weighting="rank")
    assert single.weights == [1.0, 0.0]


@pytest.mark.parametrize("vote_weighting", WEIGHTINGS)
def test_every_weighting_with_no_gate_and_equal_instability_is_the_majority(vote_weighting):
    answers = ["4", "5", "4", None, "5", "4"]
    result = sasc_vote(answers, [0.3] * 6, filter_ratio=0.0, vote_weighting=vote_weighting)
    assert result.pseudo_label == majority_vote(answers).pseudo_label == "4"
    assert result.rewards == majority_vote(answers).rewards


def test_clipped_exp_clip_and_temperature():
    answers = ["1", "2", "3"]
    result = sasc_vote(answers, [0.0, 0.5, 10.0], filter_ratio=0.0, vote_weighting="clipped_exp", weight_clip=0.5)
    z = result.zscores
    expected = [math.exp(-max(-0.5, min(0.5, zi))) for zi in z]  # type: ignore[arg-type]
    assert result.weights == pytest.approx(expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gate_statistic="median"), "gate_statistic"),
        (dict(weight_statistic="var"), "weight_statistic"),
        (dict(vote_weighting="softmax"), "vote_weighting"),
        (dict(weight_clip=0.0), "weight_clip"),
        (dict(tail_tokens=0), "tail_tokens"),
        (dict(window_tokens=0), "window_tokens"),
    ],
)
def test_vote_settings_reject_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VoteSettings(**kwargs)


def _entropies_with(mean: float, std: float, length: int = 6) -> list[float]:
    return [mean + (std if i % 2 else -std) for i in range(length)]


def test_reward_function_follows_the_statistic_settings():
    # "9": small std, large mean; "4": larger std, small mean. The std weight picks "9", the mean weight "4".
    completions = [r"\boxed{9}", r"\boxed{9}", r"\boxed{4}", r"\boxed{4}", r"\boxed{4}"]
    entropies = [_entropies_with(3.0, 0.01)] * 2 + [_entropies_with(0.2, 0.15)] * 3
    prompts = ["q"] * 5
    by_std = get_reward_funcs(["sasc"], VoteSettings(filter_ratio=0.0))[0]
    by_mean = get_reward_funcs(
        ["sasc"], VoteSettings(filter_ratio=0.0, gate_statistic="mean", weight_statistic="mean")
    )[0]
    assert by_std(prompts=prompts, completions=completions, token_entropies=entropies) == [1, 1, 0, 0, 0]
    assert by_mean(prompts=prompts, completions=completions, token_entropies=entropies) == [0, 0, 1, 1, 1]


def test_config_fields_reach_the_vote_settings():
    from sasc_ttrl.training.configs import SASCConfig

    config = SASCConfig(
        output_dir="unused",
        use_cpu=True,
        bf16=False,
        report_to=[],
        gate_statistic="tail",
        weight_statistic="std_length_matched",
        vote_weighting="rank",
        tail_tokens=8,
    )
    settings = config.vote_settings
    assert (settings.gate_statistic, settings.weight_statistic, settings.vote_weighting, settings.tail_tokens) == (
        "tail",
        "std_length_matched",
        "rank",
        8,
    )
    with pytest.raises(ValueError, match="weight_statistic"):
        SASCConfig(output_dir="unused", use_cpu=True, bf16=False, report_to=[], weight_statistic="nope")


def test_every_vote_argument_reaches_the_vote_settings_under_its_name():
    """Each command-line vote field, set away from its default, arrives in VoteSettings unchanged."""
    from dataclasses import fields

    from sasc_ttrl.core.vote_arguments import VoteArguments

    changed = dict(
        filter_ratio=0.35,
        weight_temperature=0.7,
        vote_weighting="rank",
        gate_statistic="tail",
        weight_statistic="mean",
        weight_clip=1.5,
        tail_tokens=9,
        window_tokens=5,
        answer_timeout=3.0,
    )
    assert set(changed) == {f.name for f in fields(VoteArguments)}
    defaults = VoteArguments()
    assert all(getattr(defaults, name) != value for name, value in changed.items())
    settings = VoteArguments(**changed).vote_settings
    assert {name: getattr(settings, name) for name in changed} == changed
    with pytest.raises(ValueError, match="filter_ratio"):
        _ = VoteArguments(filter_ratio=1.0).vote_settings


def test_cached_scores_give_the_same_votes_as_stability_vote():
    """compare-votes re-votes with per-rollout scores computed once; it must equal stability_vote on every subset."""
    import random

    from sasc_ttrl.core.vote_comparison import Question, vote_accuracy
    from sasc_ttrl.core.voting import VoteSettings, stability_vote

    rng = random.Random(3)
    for trial in range(40):
        n = rng.randint(2, 10)
        answers = [rng.choice(["1", "2", "3", None]) for _ in range(n)]
        classes = [None if a is None else int(a) - 1 for a in answers]
        entropies = [[rng.random() * rng.choice([0.1, 3.0]) for _ in range(rng.randint(1, 12))] for _ in range(n)]
        question = Question(f"q{trial}", answers, [a == "1" for a in answers], entropies, classes)
        settings = VoteSettings(
            vote_weighting=rng.choice(["exp", "clipped_exp", "rank", "uniform"]),
            gate_statistic=rng.choice(["std", "mean", "tail"]),
            weight_statistic=rng.choice(["std", "mean", "bottom_window", "std_length_matched"]),
            weight_temperature=rng.choice([1.0, 4.0]),
        )
        subset = sorted(rng.sample(range(n), rng.randint(1, n)))
        sub_classes = [classes[i] for i in subset]
        renumbered = {c: j for j, c in enumerate(dict.fromkeys(c for c in sub_classes if c is not None))}
        direct = stability_vote(
            [answers[i] for i in subset], [entropies[i] for i in subset], settings,
            classes=[None if c is None else renumbered[c] for c in sub_classes],
        )  # fmt: skip
        expected = (
            0.0
            if direct.label_class is None
            else float(
                question.correct[
                    subset[[None if c is None else renumbered[c] for c in sub_classes].index(direct.label_class)]
                ]
            )
        )
        assert vote_accuracy(question, subset, settings) == expected
