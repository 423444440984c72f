"""Degenerate groups through the public reward functions and votes: rewards are always finite and defined.

No answer anywhere, one rollout, identical answers, zero entropy variance, empty completions, NaN / inf entropies
(from NaN / inf logits): no error, finite rewards, and the documented outcome -- a rollout with a non-finite entropy
is maximally unstable: it does not vote, and is rewarded like any other rollout for agreeing with the label.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from sasc_ttrl.core.voting import VoteSettings, majority_vote, sasc_vote, stability_vote, weighted_vote
from sasc_ttrl.sampling.entropy import topk_entropy_from_logits
from sasc_ttrl.training.rewards import get_reward_funcs

NAN, INF = float("nan"), float("inf")


def rewards(
    vote: str, completions, entropies, vote_log_path: str | None = None, **settings
) -> tuple[list[float], dict[str, float]]:
    """Call the registered reward like TRL does (one group), with the logging hooks."""
    logged: dict[str, float] = {}
    func = get_reward_funcs([vote], VoteSettings(**settings), vote_log_path)[0]
    out = func(
        prompts=["q"] * len(completions),
        completions=completions,
        completion_ids=[[0]] * len(completions),
        token_entropies=entropies,
        rollout_group=[0] * len(completions),
        answer=["4"] * len(completions),
        log_metric=logged.__setitem__,
        log_extra=lambda column, values: None,
    )
    assert len(out) == len(completions)
    assert all(isinstance(r, float) and math.isfinite(r) for r in out), out
    assert all(math.isfinite(v) for v in logged.values()), logged
    return out, logged


STEADY = [0.5, 0.5, 0.5, 0.5]
WOBBLY = [0.1, 2.0, 0.1, 2.0]


@pytest.mark.parametrize("vote", ["sasc", "majority"])
def test_no_rollout_answers(vote):
    out, logged = rewards(vote, ["I am not sure.", "hmm", "", "\\boxed{"], [STEADY] * 4)
    assert out == [0.0] * 4
    assert logged[f"{vote}/no_answer_fraction"] == 1.0


@pytest.mark.parametrize("vote", ["sasc", "majority"])
def test_a_single_rollout(vote):
    assert rewards(vote, ["\\boxed{4}"], [WOBBLY])[0] == [1.0]
    assert rewards(vote, ["no answer"], [WOBBLY])[0] == [0.0]


@pytest.mark.parametrize("vote", ["sasc", "majority"])
def test_all_identical_answers(vote):
    out, _ = rewards(vote, ["\\boxed{4}"] * 5, [STEADY, WOBBLY, STEADY, WOBBLY, [1.0]])
    assert out == [1.0] * 5


def test_zero_entropy_variance_is_plain_majority():
    # Every rollout equally stable: the gate keeps the first ones, the weights are all exp(0) = 1.
    completions = ["\\boxed{4}", "\\boxed{5}", "\\boxed{5}", "\\boxed{4}", "\\boxed{5}"]
    constant = [[0.3] * 6] * 5
    out, _ = rewards("sasc", completions, constant, filter_ratio=0.0)
    assert out == [0.0, 1.0, 1.0, 0.0, 1.0]
    zero = [[0.0] * 6] * 5
    assert rewards("sasc", completions, zero, filter_ratio=0.0)[0] == out
    assert rewards("majority", completions, constant)[0] == out


@pytest.mark.parametrize("vote", ["sasc", "majority"])
def test_empty_completions_and_empty_entropy_sequences(vote):
    out, _ = rewards(vote, ["", "\\boxed{7}", "", "\\boxed{7}"], [[], [0.2, 0.4], [], [0.3]])
    assert out == [0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_non_finite_entropies_do_not_vote_but_are_rewarded(bad, tmp_path):
    # Three broken rollouts say 9 and would win a plain majority; they cannot vote, so the healthy 4 wins.
    completions = ["\\boxed{9}", "\\boxed{9}", "\\boxed{9}", "\\boxed{4}", "\\boxed{5}", "\\boxed{4}"]
    entropies = [[0.1, bad, 0.2], [bad], [bad, bad], [0.3, 0.3], [0.2, 1.9], [0.3, 0.4]]
    log = tmp_path / "votes.jsonl"
    out, logged = rewards("sasc", completions, entropies, filter_ratio=0.0, vote_log_path=str(log))
    assert out == [0.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    line = json.loads(log.read_text())  # strict JSON: no NaN in the audit log
    assert line["pseudo_label"] == "4"
    assert line["kept"][:3] == [False] * 3 and line["weights"][:3] == [0.0] * 3
    assert all(math.isfinite(s) for s in line["instabilities"])
    # Plain majority ignores entropies: 9 wins, with the same finite diagnostics.
    assert rewards("majority", completions, entropies)[0] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_broken_rollouts_agreeing_with_the_label_are_rewarded():
    completions = ["\\boxed{4}", "\\boxed{4}", "\\boxed{5}"]
    out, _ = rewards("sasc", completions, [[NAN, 0.1], [0.2, 0.2], [0.9, 0.1]], filter_ratio=0.0)
    assert out == [1.0, 1.0, 0.0]


def test_every_rollout_broken():
    out, _ = rewards("sasc", ["\\boxed{4}", "\\boxed{4}"], [[NAN], [INF, 0.1]])
    assert out == [0.0, 0.0]  # nobody voted, so there is no label to agree with


def test_nan_and_inf_logits_reach_the_reward_as_non_finite_entropies():
    logits = torch.randn(3, 4, 50)
    logits[0, 1, :] = float("nan")
    logits[1, 2, 7] = float("inf")
    entropies = topk_entropy_from_logits(logits, k=20).tolist()
    assert not math.isfinite(entropies[0][1]) and not math.isfinite(entropies[1][2])
    assert all(math.isfinite(v) for v in entropies[2])
    out, _ = rewards("sasc", ["\\boxed{1}", "\\boxed{1}", "\\boxed{2}"], entropies, filter_ratio=0.0)
    assert out == [0.0, 0.0, 1.0]  # only the healthy rollout voted


def test_votes_on_degenerate_groups():
    for vote in (majority_vote([]), sasc_vote([], []), weighted_vote([], []), stability_vote([], [])):
        assert (vote.pseudo_label, vote.rewards) == (None, [])
    for vote in (majority_vote([None, None]), sasc_vote([None, None], [0.0, 0.0]), weighted_vote([None], [1.0])):
        assert vote.pseudo_label is None and all(r == 0.0 for r in vote.rewards)
    single = sasc_vote(["3"], [0.7], filter_ratio=0.9)
    assert (single.pseudo_label, single.kept, single.rewards) == ("3", [True], [1.0])
    flat = sasc_vote(["1", "2", "2"], [0.4, 0.4, 0.4], filter_ratio=0.0)
    assert flat.pseudo_label == "2" and flat.rewards == [0.0, 1.0, 1.0]
    assert flat.zscores == pytest.approx([0.0] * 3, abs=1e-9) and flat.weights == pytest.approx([1.0] * 3)
    zero_weights = weighted_vote(["1", "2", "2"], [0.0, 0.0, 0.0])
    assert zero_weights.pseudo_label == "2"  # all-zero weights fall back to equal weights
    assert stability_vote(["5", None, "5"], [[], [], [0.1]]).rewards == [1.0, 0.0, 1.0]
