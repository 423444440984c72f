"""Selection methods on hand-made candidates with expected results (no model), and their shared pieces."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sasc_ttrl.core.stability import instability
from sasc_ttrl.core.steps import split_steps, token_step_index
from sasc_ttrl.core.voting import sasc_vote, weighted_vote
from sasc_ttrl.reports.selection import comparison_markdown, comparison_report
from sasc_ttrl.sampling.guidance import guided_resample, majority_ratio, socratic_hint
from sasc_ttrl.sampling.records import SampleRecord
from sasc_ttrl.selection.adapters.token_features import compute_token_features
from sasc_ttrl.selection.base import (
    SelectionContext,
    SelectionSettings,
    aggregate_steps,
    best_of_n,
    combine_confidences,
    minmax,
)
from sasc_ttrl.selection.candidates import Candidate
from sasc_ttrl.selection.coe import coe_c, coe_r, coe_trajectory
from sasc_ttrl.selection.deepconf import group_confidences, keep_most_confident, token_confidence, trace_confidence
from sasc_ttrl.selection.registry import SELECTION_METHODS, get_method, register_method, resolve_methods
from sasc_ttrl.selection.self_calibration import early_stop
from sasc_ttrl.selection.self_certainty import step_probability, token_self_certainty
from sasc_ttrl.selection.self_eval import step_messages

EXPECTED_METHODS = {
    "baseline",
    "self-consistency",
    "self-certainty",
    "self-eval",
    "coe-r",
    "coe-c",
    "sasc",
    "deepconf",
    "self-calibration",
    "self-calibration-es",
    "verifier",
    "verifier-vote",
}


def cand(answer, n_tokens=4, text=None, **fields) -> Candidate:
    """A hand-made candidate: ``n_tokens`` dummy tokens, entropies 0 unless given."""
    entropies = fields.pop("entropies", [0.0] * n_tokens)
    text = text if text is not None else f"Step one. The answer is \\boxed{{{answer}}}." if answer else "no answer"
    record = SampleRecord(text=text, token_ids=list(range(len(entropies))), answer=answer, entropies=entropies)
    return Candidate(record=record, **fields)


def select(name, candidates, question="q", **kwargs):
    context = SelectionContext.for_candidates(candidates, question=question, **kwargs)
    return get_method(name).select(candidates, context)


def const_logprobs(p: float, n: int) -> list[float]:
    return [math.log(p)] * n


# -- registry ------------------------------------------------------------------------------------------------------
def test_registry_holds_every_method_and_refuses_duplicates():
    assert set(SELECTION_METHODS) == EXPECTED_METHODS
    with pytest.raises(ValueError, match="already registered"):
        register_method("sasc")(lambda candidates, context: None)
    with pytest.raises(ValueError, match="unknown needs"):
        register_method("new-method", needs=("gpu",))
    with pytest.raises(ValueError, match="reserved"):
        register_method("all")
    with pytest.raises(ValueError, match="expected one of .*baseline"):
        get_method("best-guess")


def test_resolve_methods_expands_all_and_drops_repeats():
    names = [s.name for s in resolve_methods(["sasc", "all", "sasc"], has_verifier=False)]
    assert names[0] == "sasc" and len(names) == len(set(names)) == len(EXPECTED_METHODS) - 2
    assert "verifier" not in names and "verifier-vote" not in names
    assert {"verifier", "verifier-vote"} <= {s.name for s in resolve_methods(["all"], has_verifier=True)}
    with pytest.raises(ValueError, match="no selection method"):
        resolve_methods([])


# -- steps -----------------------------------------------------------------------------------------------------------
def test_split_steps_sentences_and_lines():
    assert split_steps("7 + 5 = 12. The answer is \\boxed{12}.") == ["7 + 5 = 12.", "The answer is \\boxed{12}."]
    assert split_steps("Take 3.5 apples.\n\nAdd 2!  Done") == ["Take 3.5 apples.", "Add 2!", "Done"]
    assert split_steps("   \n ") == []


def test_token_step_index_assigns_each_token_to_its_step():
    pieces = ["7", " +", " 5", " =", " 12", ".", " The", " answer", ".", ""]
    steps, token_steps = token_step_index(pieces)
    assert steps == ["7 + 5 = 12.", "The answer."]
    assert token_steps == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]  # the empty end-of-sequence piece joins the last step
    assert token_step_index(["  ", ""]) == (["  "], [0, 0])


# -- shared scoring helpers -------------------------------------------------------------------------------------------
def test_minmax_combine_and_aggregate():
    assert minmax([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    assert minmax([7.0, 7.0]) == [1.0, 1.0]
    assert combine_confidences([1.0, 3.0], [0.5, 0.1], 0.25) == pytest.approx([0.75, 0.25])
    assert aggregate_steps([0.9, 0.2, 0.7], "min") == 0.2
    assert aggregate_steps([0.9, 0.2, 0.7], "mean") == pytest.approx(0.6)
    assert aggregate_steps([0.9, 0.2, 0.7], "last") == 0.7
    assert aggregate_steps([], "min") == 0.0
    # prod: the probability that every step is correct (Let's Verify Step by Step): 0.9 * 0.2 * 0.7
    assert aggregate_steps([0.9, 0.2, 0.7], "prod") == pytest.approx(0.126)
    assert aggregate_steps([0.5], "prod") == 0.5 and aggregate_steps([], "prod") == 0.0
    # prod ranks a short solution above a longer one with the same weakest step; min ties them
    short, long = [0.6, 0.9], [0.6, 0.9, 0.9, 0.9]
    assert aggregate_steps(short, "prod") > aggregate_steps(long, "prod")
    assert aggregate_steps(short, "min") == aggregate_steps(long, "min")
    with pytest.raises(ValueError, match="prod"):
        aggregate_steps([0.5], "product")


def test_best_of_n_prefers_answered_candidates_and_earliest_ties():
    candidates = [cand("1"), cand(None), cand("2"), cand("3")]
    selection = best_of_n(candidates, [0.5, 0.9, 0.7, 0.7])
    assert (selection.index, selection.pseudo_label, selection.confidence) == (2, "2", 0.7)
    assert best_of_n([cand(None), cand(None)], [0.1, 0.2]).index == 1


def test_weighted_vote_ties_zero_weights_and_errors():
    # Class "1" has 0.5 from one voter (the zero-weight rollout does not vote), class "2" has 0.5 from two voters:
    # the larger count wins the tie.
    result = weighted_vote(["1", "2", "2", "1"], [0.5, 0.2, 0.3, 0.0])
    assert result.pseudo_label == "2" and result.kept == [True, True, True, False]
    assert weighted_vote(["1", "2"], [0.6, 0.4]).pseudo_label == "1"
    assert weighted_vote(["1", "2"], [0.5, 0.5]).pseudo_label == "1"  # full tie: the earliest
    assert weighted_vote(["1", "2"], [0.0, 0.0]).pseudo_label == "1"  # all-zero weights: equal weights
    assert weighted_vote([None, None], [1.0, 1.0]).pseudo_label is None
    with pytest.raises(ValueError, match="finite"):
        weighted_vote(["1"], [-1.0])


# -- methods ---------------------------------------------------------------------------------------------------------
def test_baseline_takes_the_first_sample():
    selection = select("baseline", [cand("4"), cand("5"), cand("5")])
    assert (selection.index, selection.pseudo_label, selection.samples_used, selection.confidence) == (0, "4", 1, None)


def test_self_consistency_votes_over_equivalent_answers():
    selection = select("self-consistency", [cand("3"), cand("1/2"), cand(None), cand("0.5")])
    assert selection.pseudo_label == "1/2" and selection.index == 1
    assert selection.confidence == pytest.approx(2 / 3)
    assert selection.scores == pytest.approx([1 / 3, 2 / 3, None, 2 / 3])


def test_sasc_is_the_trainers_vote_and_can_overrule_the_majority():
    # Two steady rollouts answer 7; three unsteady ones answer 9. The gate drops the least stable (1.2).
    entropies = [[0.0, 0.0], [0.0, 0.02], [0.0, 2.0], [0.0, 2.2], [0.0, 2.4]]
    candidates = [cand(a, entropies=e) for a, e in zip(["7", "7", "9", "9", "9"], entropies)]
    selection = select("sasc", candidates)
    expected = sasc_vote([c.answer for c in candidates], [instability(e) for e in entropies])
    assert selection.pseudo_label == expected.pseudo_label == "7"
    assert select("self-consistency", candidates).pseudo_label == "9"
    assert selection.index == 0  # the most stable member of the winning class
    assert selection.details["kept"] == [True, True, True, True, False]
    assert selection.confidence == pytest.approx(sum(expected.weights[:2]) / sum(expected.weights))


def test_self_certainty_balances_token_and_step_confidence_with_lambda():
    # A: high self-certainty, one weak step. B: lower self-certainty, steady steps.
    a = cand("1", self_certainty=[3.0, 3.0, 3.0, 3.0], token_logprobs=const_logprobs(0.9, 2) + const_logprobs(0.2, 2))
    b = cand("2", self_certainty=[1.0, 1.0, 1.0, 1.0], token_logprobs=const_logprobs(0.6, 4))
    for c in (a, b):
        c.token_steps = [0, 0, 1, 1]
    assert token_self_certainty(a) == 3.0
    assert step_probability(a, "min") == pytest.approx(0.2)
    assert step_probability(a, "mean") == pytest.approx(0.55)
    assert step_probability(b, "min") == pytest.approx(0.6)
    token_only = select("self-certainty", [a, b], settings=SelectionSettings(lambda_weight=1.0))
    step_only = select("self-certainty", [a, b], settings=SelectionSettings(lambda_weight=0.0))
    assert (token_only.pseudo_label, step_only.pseudo_label) == ("1", "2")
    # lambda 0.7: A = 0.7 * 1 + 0.3 * 0 = 0.7, B = 0.7 * 0 + 0.3 * 1 = 0.3.
    mixed = select("self-certainty", [a, b], settings=SelectionSettings(lambda_weight=0.7))
    assert mixed.pseudo_label == "1" and mixed.scores == pytest.approx([0.7, 0.3])


def test_self_certainty_needs_the_feature_pass():
    with pytest.raises(ValueError, match="self_certainty"):
        select("self-certainty", [cand("1")])


class FakeJudge:
    """P(Yes) looked up by the step (or solution) text the message ends with."""

    def __init__(self, table):
        self.table = table
        self.messages = []

    def yes_probability(self, messages):
        self.messages.extend(messages)
        out = []
        for m in messages:
            out.append(next(p for key, p in self.table.items() if key in m))
        return out


def test_self_eval_judges_every_step_and_combines_with_token_probability():
    a = cand("2", text="1 + 1 = 2. The answer is 2.", token_logprobs=const_logprobs(0.5, 4))
    b = cand("3", text="1 + 1 = 3. The answer is 3.", token_logprobs=const_logprobs(0.9, 4))
    judge = FakeJudge({"1 + 1 = 2.\n\nIs": 0.9, "The answer is 2.": 0.8, "1 + 1 = 3.\n\nIs": 0.3, "is 3.": 0.9})
    step_only = select(
        "self-eval", [a, b], question="What is 1 + 1?", judge=judge, settings=SelectionSettings(lambda_weight=0.0)
    )
    assert step_only.pseudo_label == "2"
    assert step_only.details["step_yes_probability"] == [[0.9, 0.8], [0.3, 0.9]]
    assert len(judge.messages) == 4 and all("What is 1 + 1?" in m for m in judge.messages)
    assert "Solution so far:\n1 + 1 = 2." in judge.messages[1]  # the second step sees the first
    token_only = select("self-eval", [a, b], judge=judge, settings=SelectionSettings(lambda_weight=1.0))
    assert token_only.pseudo_label == "3"
    assert step_messages("Q", ["s1"])[0].endswith("Is this step correct? Answer Yes or No.")
    with pytest.raises(ValueError, match="judge"):
        select("self-eval", [a, b])


def test_coe_scores_on_hand_made_chains():
    bent = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    magnitudes, angles = coe_trajectory(bent)
    assert magnitudes == pytest.approx([1 / math.sqrt(5), math.sqrt(2) / math.sqrt(5)])
    assert angles == pytest.approx([0.5, 0.5])  # 45 degrees per layer out of 90 in total
    mean_m = (1 + math.sqrt(2)) / (2 * math.sqrt(5))
    assert coe_r(bent) == pytest.approx(mean_m - 0.5)
    assert coe_c(bent) == pytest.approx(mean_m)  # equal angles: |mean M e^{iA}| = mean M
    straight = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    assert coe_r(straight) == pytest.approx(0.5) and coe_c(straight) == pytest.approx(0.5)
    candidates = [cand("1", hidden_chain=bent), cand("2", hidden_chain=straight)]
    assert select("coe-r", candidates).pseudo_label == "2"  # 0.5 > 0.04
    assert select("coe-c", candidates).pseudo_label == "1"  # 0.540 > 0.5
    with pytest.raises(ValueError, match="shape"):
        coe_r(np.zeros((1, 4)))


def test_deepconf_confidences_window_and_modes():
    assert token_confidence([[-1.0, -3.0], [-0.5, -0.5]]) == [2.0, 0.5]
    conf = [1.0, 1.0, 5.0, 5.0, 1.0]
    assert group_confidences(conf, 2) == [1.0, 3.0, 5.0, 3.0]
    assert group_confidences(conf, 10) == [pytest.approx(2.6)]
    assert trace_confidence(conf, 2, "lowest") == 1.0
    assert trace_confidence(conf, 2, "tail") == 3.0
    assert trace_confidence(conf, 2, "mean") == pytest.approx(2.6)
    assert trace_confidence(conf, 2, "bottom10") == 1.0
    assert keep_most_confident([5.0, 1.0, 1.0, 4.0], [True] * 4, 0.5) == [True, False, False, True]
    assert keep_most_confident([5.0, 1.0, 9.0], [True, True, False], 0.5) == [True, False, False]


def test_deepconf_confident_minority_beats_the_majority():
    def trace(answer, confidence):
        return cand(answer, topk_logprobs=[[-confidence, -confidence]] * 4)

    candidates = [trace("1", 5.0), trace("2", 1.0), trace("2", 1.0), trace("3", 4.0)]
    kept_half = select("deepconf", candidates, settings=SelectionSettings(deepconf_eta=0.5))
    assert kept_half.pseudo_label == "1" and kept_half.details["kept"] == [True, False, False, True]
    assert kept_half.confidence == pytest.approx(5 / 9)
    keep_all = select("deepconf", candidates, settings=SelectionSettings(deepconf_eta=1.0))
    assert keep_all.pseudo_label == "1"  # 5 vs 2 vs 4
    low = [trace("1", 1.0), trace("2", 1.5), trace("2", 1.5), trace("3", 2.0)]
    assert select("deepconf", low, settings=SelectionSettings(deepconf_eta=1.0)).pseudo_label == "2"  # 3 > 2


def test_self_calibration_soft_self_consistency():
    candidates = [
        cand("1", token_logprobs=const_logprobs(0.9, 3)),
        cand("2", token_logprobs=const_logprobs(0.3, 3)),
        cand("2", token_logprobs=const_logprobs(0.3, 3)),
    ]
    selection = select("self-calibration", candidates)
    assert selection.pseudo_label == "1" and selection.confidence == pytest.approx(0.6)
    assert selection.scores == pytest.approx([0.9, 0.3, 0.3])
    judge = FakeJudge({"boxed{1}": 0.1, "boxed{2}": 0.8})
    by_judge = select(
        "self-calibration", candidates, judge=judge, settings=SelectionSettings(calibration_confidence="self-eval")
    )
    assert by_judge.pseudo_label == "2" and by_judge.confidence == pytest.approx(1.6 / 1.7)


def test_self_calibration_early_stopping_counts_the_samples_saved():
    probabilities = [0.5, 0.95, 0.99, 0.2]
    candidates = [cand(str(i), token_logprobs=const_logprobs(p, 2)) for i, p in enumerate(probabilities)]
    selection = select("self-calibration-es", candidates, settings=SelectionSettings(calibration_threshold=0.9))
    assert (selection.index, selection.samples_used) == (1, 2)
    assert selection.details == {"stopped_early": True, "samples_saved": 2}
    assert selection.scores[2:] == [None, None]
    never = select("self-calibration-es", candidates, settings=SelectionSettings(calibration_threshold=0.999))
    assert (never.index, never.samples_used, never.details["samples_saved"]) == (2, 4, 0)  # the most confident
    # A lazy iterable is read only up to the stop.
    consumed = []

    def lazy():
        for p in [0.1, 0.95, 0.99]:
            consumed.append(p)
            yield p

    assert early_stop(lazy(), [True, True, True], 0.9) == (1, [0.1, 0.95])
    assert consumed == [0.1, 0.95]
    assert early_stop([0.99, 0.2], [False, True], 0.9) == (None, [0.99, 0.2])  # no answer: no stop


class FakeVerifier:
    def __init__(self, scores):
        self.scores = scores
        self.calls = []

    def score(self, question, candidates, step_aggregation):
        self.calls.append((question, len(candidates), step_aggregation))
        return self.scores


def test_verifier_reranks_by_reward_model_score():
    verifier = FakeVerifier([0.2, 0.9, 0.4])
    selection = select("verifier", [cand("1"), cand("2"), cand("1")], question="Q?", verifier=verifier)
    assert (selection.index, selection.pseudo_label, selection.confidence) == (1, "2", 0.9)
    assert verifier.calls == [("Q?", 3, "min")]
    with pytest.raises(ValueError, match="reward model"):
        select("verifier", [cand("1")])


def test_verifier_vote_sums_scores_per_answer_class():
    # Best-of-N picks the single best-scored "2" (0.9); summed per class "1" wins: 0.5 + 0.6 = 1.1 > 0.9 + 0.0.
    candidates = [cand("1"), cand("2"), cand("1.0"), cand(None), cand("3")]
    scores = [0.5, 0.9, 0.6, 0.95, 0.1]
    assert select("verifier", candidates, verifier=FakeVerifier(scores)).pseudo_label == "2"
    verifier = FakeVerifier(scores)
    settings = SelectionSettings(step_aggregation="prod")
    vote = select("verifier-vote", candidates, question="Q?", verifier=verifier, settings=settings)
    assert vote.pseudo_label == "1" and vote.index == 2  # the winning class's best-scored candidate
    assert vote.confidence == pytest.approx(1.1 / (1.1 + 0.9 + 0.1))  # an unanswered candidate does not vote
    assert vote.scores == scores and verifier.calls == [("Q?", 5, "prod")]
    # Equal totals: the larger class wins (weighted_vote's tie rule), then the earliest.
    tie = select("verifier-vote", [cand("7"), cand("8"), cand("8")], verifier=FakeVerifier([0.8, 0.4, 0.4]))
    assert tie.pseudo_label == "8"
    with pytest.raises(ValueError, match="reward model"):
        select("verifier-vote", [cand("1")])


# -- the feature pass ------------------------------------------------------------------------------------------------
class FixedLogitsLM(torch.nn.Module):
    """A fake causal LM: logits depend only on the token id, hidden states are the embedding times the layer."""

    def __init__(self, vocab=6, hidden=3, layers=2):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=generator))
        self.embed = torch.nn.Parameter(torch.randn(vocab, hidden, generator=generator))
        self.layers = layers

    def forward(self, input_ids, attention_mask=None, position_ids=None, output_hidden_states=False):
        logits = self.table[input_ids]
        hidden = tuple(self.embed[input_ids] * (layer + 1) for layer in range(self.layers + 1))
        return SimpleNamespace(logits=logits, hidden_states=hidden if output_hidden_states else None)


def test_compute_token_features_matches_hand_computation():
    model = FixedLogitsLM()
    prompts, completions = [[1, 2], [3]], [[4, 5, 0], [2]]
    features = compute_token_features(model, prompts, completions, pad_token_id=0, top_k=3, hidden_states=True)
    for prompt, completion, feat in zip(prompts, completions, features):
        previous = [prompt[-1], *completion[:-1]]  # the token before each completion token predicts it
        logits = model.table[previous].detach().double()
        logp = torch.log_softmax(logits, dim=-1)
        expected_certainty = (torch.logsumexp(logits, -1) - logits.mean(-1) - math.log(6)).tolist()
        assert feat.self_certainty == pytest.approx(expected_certainty, abs=1e-5)
        assert feat.token_logprobs == pytest.approx(logp[range(len(completion)), completion].tolist(), abs=1e-5)
        assert np.asarray(feat.topk_logprobs) == pytest.approx(torch.topk(logp, 3).values.numpy(), abs=1e-5)
        chain = np.stack([(model.embed[completion] * (layer + 1)).mean(0).detach().numpy() for layer in range(3)])
        assert feat.hidden_chain == pytest.approx(chain, abs=1e-5)
    chunked = compute_token_features(model, prompts, completions, pad_token_id=0, top_k=3, chunk_size=2)
    for a, b in zip(features, chunked):
        assert a.token_logprobs == pytest.approx(b.token_logprobs) and a.self_certainty == pytest.approx(
            b.self_certainty
        )
    assert compute_token_features(model, [[1]], [[2]], pad_token_id=0)[0].hidden_chain is None


# -- guided re-sampling and the report --------------------------------------------------------------------------------
def test_guided_resample_uses_hinted_candidates_only_when_consensus_improves():
    first = [cand("1"), cand("2"), cand("3"), cand(None)]
    classes = [0, 1, 2, None]
    assert majority_ratio(classes) == 0.25
    hint = socratic_hint([c.answer for c in first], classes)
    assert "1 (1 time), 2 (1 time), 3 (1 time), and 1 gave no final answer" in hint and "ask yourself" in hint
    asked = []

    def agreeing(text):
        asked.append(text)
        return [cand("2"), cand("2"), cand("2"), cand("1")]

    candidates, new_classes, outcome = guided_resample("What is 1 + 1?", first, classes, agreeing, threshold=0.5)
    assert outcome.triggered and outcome.improved and outcome.used
    assert (outcome.ratio_before, outcome.ratio_after) == (0.25, 0.75)
    assert [c.answer for c in candidates] == ["2", "2", "2", "1"] and new_classes == [0, 0, 0, 1]
    assert asked[0].startswith("What is 1 + 1?\n\nHint: Earlier attempts")
    _, _, worse = guided_resample("q", first, classes, lambda text: [cand(None)] * 4, threshold=0.5)
    assert worse.triggered and not worse.improved and not worse.used and worse.ratio_after == 0.0
    _, _, skipped = guided_resample("q", first, [0, 0, 0, 1], agreeing, threshold=0.5)
    assert not skipped.triggered and len(asked) == 1


def test_comparison_report_on_hand_made_rows():
    def row(correct, tokens, samples=4, label="1"):
        return {
            "correct": correct,
            "any_correct": True,
            "pseudo_label": label,
            "confidence": 0.5,
            "majority_ratio": 0.5,
            "tokens_generated": tokens,
            "samples_used": samples,
            "seconds": 1.0,
            "guided_resample": None,
        }

    report = comparison_report(
        {"baseline": [row(False, 10, 1), row(True, 12, 1)], "sasc": [row(True, 40), row(True, 44)]},
        {"dataset_name": "sums", "n_candidates": 4},
    )
    assert report["methods"]["sasc"]["accuracy"] == 1.0 and report["methods"]["baseline"]["accuracy"] == 0.5
    assert report["methods"]["baseline"]["tokens_per_question"] == 11 and report["oracle_pass_at_n"] == 1.0
    table = comparison_markdown(report)
    assert table.index("| sasc | 100.0") < table.index("| baseline | 50.0") and "oracle (pass@N) | 100.0" in table
    assert report["methods"]["sasc"]["score_auroc"] is None  # no candidates saved


def test_score_auroc_ranks_within_questions_only():
    def row(scores, correct):
        cands = [{"score": s, "correct": c} for s, c in zip(scores, correct)]
        return {"correct": True, "any_correct": True, "pseudo_label": "1", "confidence": 0.5, "majority_ratio": 0.5,
                "tokens_generated": 1, "samples_used": 1, "seconds": 0.0, "candidates": cands}  # fmt: skip

    # q1: right 0.9 vs wrong 0.5, 0.9 (1 + 0.5); q2: right 0.1 vs wrong 0.05 (1). Pooled across questions the 0.1
    # would lose to 0.5 and 0.9; within questions it wins: (1 + 0.5 + 1) / 3.
    rows = [row([0.9, 0.5, 0.9], [True, False, False]), row([0.1, 0.05, None], [True, False, False])]
    summary = comparison_report({"m": rows}, {})["methods"]["m"]
    assert summary["score_auroc"] == pytest.approx(2.5 / 3) and summary["score_pairs"] == 3
    [line] = [x for x in comparison_markdown(comparison_report({"m": rows}, {})).splitlines() if x.startswith("| m |")]
    assert line.endswith("| 0.833 |")


@pytest.mark.parametrize(("m", "kept"), [(4, 3), (8, 7), (16, 14), (64, 57), (10, 9)])
def test_deepconf_keeps_what_the_authors_percentile_rule_keeps(m, kept):
    """np.percentile(conf, 10) with linear interpolation over m distinct values lies between the k-th and (k+1)-th
    smallest, k = floor(0.1 (m - 1)) (4: 0.3, 8: 0.7, 16: 1.5, 64: 6.3, 10: 0.9): m - k - 1 traces are kept."""
    confidences = [float(v) for v in np.random.default_rng(m).permutation(m)]
    mask = keep_most_confident(confidences, [True] * m, 0.9)
    assert sum(mask) == kept
    assert min(c for c, k in zip(confidences, mask) if k) > max(c for c, k in zip(confidences, mask) if not k)


def test_deepconf_keeps_ties_and_never_the_unanswered():
    assert keep_most_confident([2.0, 2.0, 2.0, 1.0], [True] * 4, 0.5) == [True, True, True, False]
    assert keep_most_confident([9.0, 1.0, 2.0], [False, True, True], 1.0) == [False, True, True]
    assert keep_most_confident([1.0, 2.0], [False, False], 0.9) == [False, False]


def test_deepconf_bottom10_averages_int_of_a_tenth_of_the_windows():
    # 25 windows of 1 token: int(2.5) = 2 lowest (1.0 and 2.0) are averaged, not ceil(2.5) = 3.
    conf = [1.0, 2.0, 3.0] + [10.0] * 22
    assert trace_confidence(conf, 1, "bottom10") == pytest.approx(1.5)
    # 9 windows: int(0.9) = 0 -> at least 1, the lowest.
    assert trace_confidence([4.0, 1.0] + [5.0] * 7, 1, "bottom10") == 1.0
