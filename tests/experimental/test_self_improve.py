"""STaR-style self-improvement: the kept rollouts, the round summary (coverage of hard questions, the tail of round
0, accuracy) on hand-made rows, the round bookkeeping, and the whole loop on the tiny model with resuming."""

from __future__ import annotations

import json
import random

import pytest

from sasc_ttrl.core.answers import extract_answer
from sasc_ttrl.core.errors import ConfigError
from sasc_ttrl.core.voting import VoteSettings, majority_vote, stability_vote
from sasc_ttrl.data.benchmarks import Question
from sasc_ttrl.data.prompts import build_prompt
from sasc_ttrl.demo.tiny_model import build_tokenizer, synthetic_problem, write_tiny_dataset
from sasc_ttrl.experimental.self_improve import SelfImproveArguments
from sasc_ttrl.experimental.self_improve import runner as self_improve
from sasc_ttrl.experimental.self_improve.runner import (
    finished_rounds,
    kept_texts,
    model_of_round,
    pseudo_label,
    round_dir,
    round_summary,
    sft_examples,
)
from sasc_ttrl.sampling.records import SampleRecord, grade_records


def test_kept_texts_are_distinct_agreeing_and_capped():
    texts = ["a", "b", "a", "c", "  ", "d"]
    agree = [True, False, True, True, True, True]
    assert kept_texts(texts, agree, limit=2) == ["a", "c"]
    assert kept_texts(texts, agree, limit=9) == ["a", "c", "d"]
    assert kept_texts(texts, [False] * 6, limit=9) == []


def row(qid, hard, kept, kept_unhinted, covered, accuracy=None, vote_correct=None, hinted_correct=None):
    any_correct = None if accuracy is None else accuracy > 0
    return {
        "any_correct": any_correct,
        "any_correct_with_hints": any_correct if hinted_correct is None else (any_correct or hinted_correct),
        "id": qid,
        "hard": hard,
        "kept": kept,
        "kept_unhinted": kept_unhinted,
        "covered_unhinted": covered,
        "rollout_accuracy": accuracy,
        "vote_correct": vote_correct,
    }


def test_round_summary_by_hand():
    rows = [
        row("a", False, ["x", "y"], 2, True, 1.0, True),
        row("b", True, ["h"], 0, False, 0.0, False),  # covered only thanks to a hint
        row("c", True, [], 0, False, 0.0, False, hinted_correct=True),  # a hinted rollout was right
        row("d", True, ["z"], 1, True, 0.5, True),
    ]
    s = round_summary(rows, initial_hard=["b", "d"])
    assert s["questions"] == 4 and s["hard_questions"] == 3
    assert s["hard_coverage_without_hints"] == pytest.approx(1 / 3)
    assert s["hard_coverage"] == pytest.approx(2 / 3)
    assert s["coverage"] == pytest.approx(3 / 4)
    assert s["kept_rollouts"] == 4 and s["hinted_kept_rollouts"] == 1
    assert s["initial_hard_questions"] == 2 and s["initial_hard_coverage_without_hints"] == 0.5
    assert s["initial_hard_vote_accuracy"] == 0.5 and s["initial_hard_pass_at_n"] == 0.5
    assert s["rollout_accuracy"] == pytest.approx((1.0 + 0.0 + 0.0 + 0.5) / 4) and s["vote_accuracy"] == 0.5
    assert s["pass_at_n"] == 0.5 and s["hard_pass_at_n"] == pytest.approx(1 / 3)
    assert s["hard_pass_at_n_with_hints"] == pytest.approx(2 / 3)
    # Without reference answers there is no accuracy; without hard questions no hard coverage.
    plain = round_summary([row("a", False, ["x"], 1, True)])
    assert "rollout_accuracy" not in plain and plain["hard_coverage"] is None and "initial_hard_questions" not in plain


def test_round_bookkeeping(tmp_path):
    args = SelfImproveArguments(model_name_or_path="base", dataset_name="q.json", rounds=2, output_dir=str(tmp_path))
    assert finished_rounds(tmp_path, 2) == []
    assert model_of_round(args, tmp_path, 0) == "base"
    with pytest.raises(FileNotFoundError, match="round 0 did not finish"):
        model_of_round(args, tmp_path, 1)
    (round_dir(tmp_path, 0) / "model").mkdir(parents=True)
    (round_dir(tmp_path, 0) / "model" / "config.json").write_text("{}")
    (round_dir(tmp_path, 0) / "round.json").write_text("{}")
    assert finished_rounds(tmp_path, 2) == [0]
    assert model_of_round(args, tmp_path, 1) == str(round_dir(tmp_path, 0) / "model")
    with pytest.raises(ValueError, match="target"):
        SelfImproveArguments(model_name_or_path="m", dataset_name="q", target="oracle")


def test_sft_examples_use_the_question_without_the_hint():
    rows = [{"question": "What is 1 + 1?", "kept": ["1 + 1 = 2. \\boxed{2}"], "hint": "Earlier attempts disagree"}]
    examples = sft_examples(rows, build_tokenizer())
    assert len(examples) == 1
    prompt = examples[0]["prompt"][0]["content"]
    assert prompt.startswith("What is 1 + 1?") and "Hint" not in prompt
    assert examples[0]["completion"] == [{"role": "assistant", "content": "1 + 1 = 2. \\boxed{2}"}]
    one_shot = sft_examples(rows, build_tokenizer(), "word_problem_one_shot")[0]["prompt"]
    assert one_shot == build_prompt("What is 1 + 1?", build_tokenizer(), "word_problem_one_shot")


@pytest.mark.slow
def test_self_improve_end_to_end_on_the_tiny_model_with_resume(tiny_model_dir, tmp_path):
    data = write_tiny_dataset(tmp_path / "sums.json", n=6, seed=11)

    def args(rounds, **overrides):
        values = dict(
            model_name_or_path=str(tiny_model_dir),
            dataset_name=str(data),
            rounds=rounds,
            n_samples=4,
            temperature=1.0,
            max_tokens=40,
            hard_threshold=0.75,
            learning_rate=1e-5,  # round 1 samples like round 0, whatever training did on this CPU
            per_device_train_batch_size=8,
            max_length=256,
            seed=0,
            output_dir=str(tmp_path / "si"),
        )
        values.update(overrides)
        return SelfImproveArguments(**values)

    assert [s["round"] for s in self_improve.main(args(1, stop_after_round=0))] == [0]
    assert not (tmp_path / "si" / "round_1").exists()
    summaries = self_improve.main(args(1))  # goes on with the measuring pass
    assert [s["round"] for s in summaries] == [0, 1] and [s["trained"] for s in summaries] == [True, False]
    first = summaries[0]
    assert first["questions"] == 6 and 0.0 <= first["rollout_accuracy"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "si" / "round_0" / "rollouts.jsonl").read_text().splitlines()]
    hard = [r for r in rows if r["hard"]]
    assert first["hard_questions"] == len(hard)
    assert all(r["hint"] is not None and len(r["hinted_answers"]) == 4 for r in hard)  # hard ones were re-sampled
    assert all(r["hint"] is None for r in rows if not r["hard"])
    sft = (tmp_path / "si" / "round_0" / "sft_data.jsonl").read_text().splitlines()
    assert first["sft_examples"] == len(sft) == sum(len(r["kept"]) for r in rows) > 0
    assert (tmp_path / "si" / "round_0" / "model" / "config.json").exists()
    assert summaries[1]["model"] == str(tmp_path / "si" / "round_0" / "model")
    assert summaries[1]["initial_hard_questions"] == len(hard)
    logged = json.loads((tmp_path / "si" / "rounds.json").read_text())
    assert [s["round"] for s in logged] == [0, 1]
    # Extending to 2 rounds: round 0 is skipped, the old measuring pass becomes a training round, round 2 measures.
    stamp = (tmp_path / "si" / "round_0" / "round.json").stat().st_mtime_ns
    summaries = self_improve.main(args(2))
    assert (tmp_path / "si" / "round_0" / "round.json").stat().st_mtime_ns == stamp
    assert [s["trained"] for s in summaries] == [True, True, False]
    assert (tmp_path / "si" / "round_1" / "model" / "config.json").exists()
    # Other settings are refused.
    with pytest.raises(ValueError, match="other settings"):
        self_improve.main(args(2, n_samples=3))


# -- guidance strategies -------------------------------------------------------------------------------------------
def test_guidance_arguments_and_data_checks(tmp_path):
    assert SelfImproveArguments(model_name_or_path="m", dataset_name="q").guidance == "socratic"  # the default
    with pytest.raises(ValueError, match="guidance must be one of"):
        SelfImproveArguments(model_name_or_path="m", dataset_name="q", guidance="hints")
    with pytest.raises(ValueError, match="teacher_api_base"):
        SelfImproveArguments(model_name_or_path="m", dataset_name="q", guidance="interactive")
    assert SelfImproveArguments(model_name_or_path="m", dataset_name="q", guidance="interactive", guided=False)
    # rationale guidance on data without a solution column: refused before any model loads
    data = write_tiny_dataset(tmp_path / "sums.json", n=3, seed=1)
    args = SelfImproveArguments(
        model_name_or_path=str(tmp_path / "no-model"),
        dataset_name=str(data),
        guidance="rationale",
        output_dir=str(tmp_path / "si"),
    )
    with pytest.raises(ConfigError, match="reference solutions"):
        self_improve.main(args)
    summary = round_summary([{**row("a", True, ["x"], 0, False), "guided": True}, row("b", True, [], 0, False)])
    assert summary["hard_questions"] == 2 and summary["guided_questions"] == 1


class ScriptedRunner(self_improve.RoundRunner):
    """A [`RoundRunner`] without a model: ``sample`` answers each prompt with scripted completions (``plain`` for
    the question as asked, ``guided`` for a prompt carrying a hint or a reset prefix) and records the prompts."""

    def __init__(self, args, plain, guided, teacher=None):
        self.args, self.seed, self.tokenizer, self.teacher = args, 0, build_tokenizer(), teacher
        self.plain, self.guided, self.prompts = plain, guided, []

    def sample(self, questions, prompts, seed):
        self.prompts.append(list(prompts))
        plain = [self.prompt(q.question) for q in questions]
        groups = []
        for q, prompt, bare in zip(questions, prompts, plain):
            texts = self.plain if prompt == bare else self.guided
            group = [SampleRecord(t, [], extract_answer(t), []) for t in texts]
            grade_records(group, q.gold)
            groups.append(group)
        return groups


PENS = Question(key="pens", index=0, question="Ann has 7 pens and gives away 2. How many are left?", gold="5")


def scripted_args(guidance, target="pseudo_label"):
    return SelfImproveArguments(
        model_name_or_path="m",
        dataset_name="q",
        guidance=guidance,
        target=target,
        n_samples=4,
        hard_threshold=0.5,
        teacher_api_base="http://127.0.0.1:9/v1",  # never called: the scripted runner brings its own teacher
    )


# Five rollouts: three unsteady ones answer 4, two steady ones answer 5. The majority says 4; the stability-aware
# vote drops the least stable 4 (filter_ratio 0.2 of 5) and weighs each remaining 4 exp(-1), each 5 exp(+1): 5.
SPLIT_TEXTS = ["7 - 2 = 4. \\boxed{4}"] * 3 + ["7 - 2 = 5. \\boxed{5}"] * 2
SPLIT_ENTROPIES = [[0.1, 2.0, 0.1, 2.0], [0.2, 1.8, 0.2, 1.8], [0.3, 1.9, 0.1, 2.1], [0.5, 0.5, 0.5], [0.4, 0.4]]


class EntropyRunner(ScriptedRunner):
    """A [`ScriptedRunner`] whose plain rollouts carry the top-k entropy sequences of ``SPLIT_ENTROPIES``."""

    def sample(self, questions, prompts, seed):
        groups = super().sample(questions, prompts, seed)
        for group in groups:
            for record, entropies in zip(group, SPLIT_ENTROPIES):
                record.entropies = list(entropies)
        return groups


def test_the_pseudo_label_is_the_stability_vote_of_the_vote_fields():
    records = [SampleRecord(t, [], extract_answer(t), e) for t, e in zip(SPLIT_TEXTS, SPLIT_ENTROPIES)]
    answers = [r.answer for r in records]
    assert majority_vote(answers).pseudo_label == "4"
    sasc = SelfImproveArguments(
        model_name_or_path="m", dataset_name="q", filter_ratio=0.2, vote_weighting="clipped_exp"
    )
    assert sasc.vote_settings == VoteSettings()  # train's stability-aware vote
    label, classes = pseudo_label(records, sasc.vote_settings)
    assert label == stability_vote(answers, SPLIT_ENTROPIES, VoteSettings()).pseudo_label == "5"
    assert classes == [0, 0, 0, 1, 1]
    # The defaults (no gate, equal weights) give the plain majority's label on the same group.
    default = SelfImproveArguments(model_name_or_path="m", dataset_name="q").vote_settings
    assert (default.filter_ratio, default.vote_weighting) == (0.0, "uniform")
    assert pseudo_label(records, default)[0] == stability_vote(answers, SPLIT_ENTROPIES, default).pseudo_label == "4"
    # The majority's tie rule too: a 2-2 tie goes to the answer that comes first, whatever the entropies say.
    tie = [records[3], records[0], records[1], records[4]]
    assert pseudo_label(tie, default)[0] == majority_vote([r.answer for r in tie]).pseudo_label == "5"
    # The round's target is that label.
    [row] = EntropyRunner(scripted_args("socratic"), SPLIT_TEXTS, []).run([PENS], guided=False)
    assert row["pseudo_label"] == row["target_answer"] == "4"
    [row] = EntropyRunner(sasc, SPLIT_TEXTS, []).run([PENS], guided=False)
    assert row["pseudo_label"] == row["target_answer"] == "5" and row["agree"] == [False] * 3 + [True] * 2


def test_answer_guidance_gives_the_gold_answer_with_target_gold():
    wrong = ["7 - 2 = 4. The answer is \\boxed{4}."] * 3 + ["I am not sure."]
    right = ["7 - 2 = 5. The answer is \\boxed{5}.", "7 - 2 = 5. \\boxed{5}", "7 - 2 = 6. \\boxed{6}", "No."]
    runner = ScriptedRunner(scripted_args("answer", target="gold"), wrong, right)
    [row] = runner.run([PENS], guided=True)
    assert row["pseudo_label"] == "4" and row["target_answer"] == "5" and row["hard"] and row["guided"]
    assert "final answer is 5" in row["hint"] and "4" not in row["hint"]  # the reference answer, not the vote
    guided_prompt = runner.prompts[1][0]
    assert "Hint: " in guided_prompt and "final answer is 5" in guided_prompt
    assert row["hinted_agree"] == [True, True, False, False] and row["kept"] == right[:2]
    assert row["kept_unhinted"] == 0 and row["any_correct_with_hints"] and not row["any_correct"]
    # With the pseudo-label as target the same attempts are unanimous on 4: nothing is hard, nothing guided.
    [plain] = ScriptedRunner(scripted_args("answer"), wrong, right).run([PENS], guided=True)
    assert plain["target_answer"] == "4" and not plain["hard"] and not plain["guided"]


def test_state_reset_rollouts_are_the_prefix_and_its_continuation():
    attempts = [
        "Ann starts with 7.\n7 - 2 = 5. The answer is \\boxed{5}.",
        "7 - 2 = 4. The answer is \\boxed{4}.",
        "7 - 2 = 4. \\boxed{4}",
        "7 + 2 = 9. \\boxed{9}",
    ]
    continuations = [" The answer is \\boxed{5}.", " So \\boxed{5}.", " The answer is \\boxed{3}.", " Hmm."]
    runner = ScriptedRunner(scripted_args("state_reset", target="gold"), attempts, continuations)
    [row] = runner.run([PENS], guided=True)
    prefix = "Ann starts with 7.\n7 - 2 = 5."
    assert row["agree"] == [True, False, False, False] and row["hard"] and row["guided"]
    assert row["reset_prefix"] == prefix and row["hint"] is None
    guided_prompt = runner.prompts[1][0]
    assert guided_prompt == runner.prompt(PENS.question) + prefix and "Hint" not in guided_prompt
    assert row["hinted_answers"] == ["5", "5", "3", None] and row["hinted_agree"] == [True, True, False, False]
    assert row["kept"] == [attempts[0], prefix + continuations[1]]  # distinct texts, capped at 2 (the default)
    # The guided rollouts are trained on under the plain question.
    example = sft_examples([row], runner.tokenizer)[1]
    assert "Hint" not in json.dumps(example["prompt"]) and example["completion"][0]["content"].startswith(prefix)


def test_interactive_guidance_puts_the_teachers_reply_in_the_hint():
    class Teacher:
        messages = []

        def chat(self, messages):
            self.messages.append(messages)
            return "7 - 2 is 5, not 4."

    wrong = ["7 - 2 = 4. The answer is \\boxed{4}."] * 4
    runner = ScriptedRunner(
        scripted_args("interactive", target="gold"), wrong, ["7 - 2 = 5. \\boxed{5}"] * 4, Teacher()
    )
    [row] = runner.run([PENS], guided=True)
    [messages] = runner.teacher.messages
    assert wrong[0] in messages[-1]["content"] and "5" in messages[-1]["content"]  # the attempt and the target
    assert "7 - 2 is 5, not 4." in row["hint"] and row["kept"] == ["7 - 2 = 5. \\boxed{5}"]


def sums_with_solutions(path, n, seed):
    """Tiny sums with a worked ``solution`` column (the reference rationale)."""
    rng = random.Random(seed)
    rows = [{**synthetic_problem(rng), "id": f"s{i}"} for i in range(n)]
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("guidance", ["answer", "rationale", "interactive", "state_reset"])
def test_guided_round_on_the_tiny_model(guidance, tiny_model_dir, tmp_path):
    from tests.helpers.loopback_chat import LoopbackChatServer
    from tests.sampling.test_guidance import TEACHER_REPLY

    data = sums_with_solutions(tmp_path / "sums.json", n=6, seed=11)
    teacher = LoopbackChatServer(TEACHER_REPLY)
    try:
        args = SelfImproveArguments(
            model_name_or_path=str(tiny_model_dir),
            dataset_name=str(data),
            rounds=1,
            n_samples=4,
            temperature=1.0,
            max_tokens=40,
            hard_threshold=0.75,
            guidance=guidance,
            teacher_api_base=teacher.api_base,
            teacher_max_retries=0,
            learning_rate=1e-3,
            per_device_train_batch_size=8,
            max_length=256,
            seed=0,
            stop_after_round=0,
            output_dir=str(tmp_path / "si"),
        )
        [summary] = self_improve.main(args)
    finally:
        teacher.close()
    rows = [json.loads(line) for line in (tmp_path / "si" / "round_0" / "rollouts.jsonl").read_text().splitlines()]
    questions = {q["id"]: q for q in json.loads(data.read_text())}
    hard = [r for r in rows if r["hard"]]
    assert (
        hard
        and summary["hard_questions"] == len(hard)
        and summary["guided_questions"] == sum(r["guided"] for r in hard)
    )
    assert all(r["guidance"] == guidance for r in rows) and not any(r["guided"] for r in rows if not r["hard"])
    for r in hard:
        q = questions[r["id"]]
        assert r["target_answer"] == r["pseudo_label"]  # only socratic guidance may move a pseudo-label target
        if not r["guided"]:
            assert r["guidance_note"] and "hinted_answers" not in r
            continue
        assert len(r["hinted_answers"]) == 4 and len(r["hinted_agree"]) == 4
        if guidance == "answer":
            assert f"final answer is {r['pseudo_label']}" in r["hint"]
        elif guidance == "rationale":
            assert q["solution"] in r["hint"]
        elif guidance == "interactive":
            assert TEACHER_REPLY in r["hint"]
        else:  # state reset: the prefix of an agreeing attempt, or the solution's "a + b = c." when none agrees
            assert r["hint"] is None and r["reset_prefix"]
            assert r["reset_prefix"] == q["solution"].split(" The answer")[0] or any(r["agree"])
    if guidance == "interactive":
        assert len(teacher.requests) == sum(r["guided"] for r in hard) > 0
    # every kept rollout agrees with the target; a guided one is kept under the original question (sft_data)
    sft = [json.loads(line) for line in (tmp_path / "si" / "round_0" / "sft_data.jsonl").read_text().splitlines()]
    assert summary["sft_examples"] == len(sft) == sum(len(r["kept"]) for r in rows)
    assert all("Hint" not in json.dumps(e["prompt"]) for e in sft)
    assert summary["hard_coverage"] >= summary["hard_coverage_without_hints"]
