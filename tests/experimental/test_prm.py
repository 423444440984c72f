"""Monte-Carlo step labels on hand-made data, the PRM encoding, the outcome pairs, and the whole `sasc-ttrl prm`
loop on the tiny model (label -> PRM -> outcome verifier -> the builder's verifier method reranks with both)."""

from __future__ import annotations

import json
import math

import pytest

from sasc_ttrl.commands import build
from sasc_ttrl.data.prompts import render_prompt
from sasc_ttrl.data.rollouts import read_builder_rollouts
from sasc_ttrl.demo.tiny_model import build_tokenizer, write_tiny_dataset
from sasc_ttrl.experimental.prm import runner as prm
from sasc_ttrl.sampling.records import SampleRecord
from sasc_ttrl.selection.build_arguments import CONFIG_FILE, BuildArguments
from sasc_ttrl.selection.step_labels import IGNORE_INDEX, StepLabelSettings, encode_steps, label_from_hits, label_steps


def test_label_from_hits_any_and_share():
    assert [label_from_hits(h, 4, "any") for h in range(5)] == [0, 1, 1, 1, 1]
    assert [label_from_hits(h, 4, "share", 0.5) for h in range(5)] == [0, 0, 1, 1, 1]
    assert label_from_hits(3, 4, "share", 1.0) == 0
    with pytest.raises(ValueError, match="hits"):
        label_from_hits(5, 4)
    with pytest.raises(ValueError, match="rule"):
        StepLabelSettings(rule="most")


def test_label_steps_with_scripted_continuations():
    # Step 1 "2 + 3 = 5." has no answer yet: its continuations are scripted; step 2 states the answer itself.
    texts = ["2 + 3 = 5. The answer is \\boxed{5}.", "2 + 3 = 6. The answer is \\boxed{6}."]
    calls = []

    def continue_fn(question, prefixes, k):
        calls.append(list(prefixes))
        return [
            [" So \\boxed{5}."] * 3 + [" So \\boxed{4}."] if "= 5" in p else [" So \\boxed{6}."] * k for p in prefixes
        ]

    settings = StepLabelSettings(k=4, rule="share", threshold=0.5)
    out = label_steps("What is 2 + 3?", texts, "5", continue_fn, settings, timeout=None)
    assert calls == [["2 + 3 = 5.", "2 + 3 = 6."]]  # only the undecided prefixes, in one call
    assert out[0]["steps"] == ["2 + 3 = 5.", "The answer is \\boxed{5}."]
    assert out[0]["hits"] == [3, 4] and out[0]["scores"] == [0.75, 1.0] and out[0]["labels"] == [1, 1]
    assert out[0]["decided"] == [False, True]
    assert out[1]["hits"] == [0, 0] and out[1]["labels"] == [0, 0]
    # Against another target ("6", e.g. the gold answer) the second rollout's steps become the good ones.
    other = label_steps("What is 2 + 3?", texts, "6", continue_fn, settings, timeout=None)
    assert other[0]["labels"] == [0, 0] and other[1]["labels"] == [1, 1]
    # No target: nothing is good.
    assert label_steps("q", texts, None, continue_fn, settings, timeout=None)[0]["labels"] == [0, 0]


def test_label_steps_checks_the_continuation_count():
    with pytest.raises(ValueError, match="2 continuations"):
        label_steps("q", ["1 + 1 = 2."], "2", lambda q, p, k: [["x"]], StepLabelSettings(k=2), timeout=None)


def test_encode_steps_puts_labels_on_the_separators_only():
    tokenizer = build_tokenizer()
    enc = encode_steps(tokenizer, "What is 1 + 1?", ["1 + 1 = 2.", "So 2."], [1, 0], separator="\n")
    ids, labels, positions = enc["input_ids"], enc["labels"], enc["positions"]
    assert len(ids) == len(labels) and len(positions) == 2
    assert [labels[p] for p in positions] == [1, 0]
    assert all(lab == IGNORE_INDEX for i, lab in enumerate(labels) if i not in positions)
    assert tokenizer.decode([ids[p] for p in positions]) == "\n\n"
    assert tokenizer.decode(ids[positions[0] - 10 : positions[0]]) == "1 + 1 = 2."
    cut = encode_steps(tokenizer, "What is 1 + 1?", ["1 + 1 = 2.", "So 2."], [1, 0], max_length=positions[0] + 2)
    assert len(cut["positions"]) == 1  # the second step does not fit


def test_preference_pairs_follow_the_target():
    rows = [
        {
            "id": "a",
            "question": "q",
            "target": "gold",
            "target_answer": "5",
            "rollouts": [{"text": "t5", "answer": "5"}, {"text": "t4", "answer": "4"}, {"text": "t6", "answer": "6"}],
        },
        {
            "id": "b",
            "question": "q",
            "target": "gold",
            "target_answer": "1",
            "rollouts": [{"text": "x", "answer": "1"}],
        },
    ]
    pairs = prm.preference_pairs(rows, max_pairs=4, timeout=None)
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [("t5", "t4"), ("t5", "t6")]
    assert all(p["target"] == "gold" and p["prompt"][0]["content"] == "q" for p in pairs)
    assert len(prm.preference_pairs(rows, max_pairs=1, timeout=None)) == 1


def test_read_builder_rollouts_names_what_is_missing(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"id": "0", "question": "q", "pseudo_label": "1"}) + "\n")
    with pytest.raises(ValueError, match="--save_candidates"):
        read_builder_rollouts(path)
    path.write_text(json.dumps({"id": "0", "question": "q", "pseudo_label": "1", "candidates": []}) + "\n")
    with pytest.raises(ValueError, match="reference_answer"):
        read_builder_rollouts(path, target="gold")
    assert read_builder_rollouts(path)[0].target("pseudo_label") == "1"


def _builder_rows(folder, prompt_style=None):
    """A one-question builder output (a candidate with two steps), with a build_config.json when a style is given."""
    folder.mkdir(parents=True, exist_ok=True)
    row = {
        "id": "q0",
        "question": "Sam has 2 apples and buys 3. How many?",
        "pseudo_label": "5",
        "candidates": [{"text": "2 + 3 = 5. The answer is \\boxed{5}.", "answer": "5"}],
    }
    (folder / "self-consistency.jsonl").write_text(json.dumps(row) + "\n")
    if prompt_style is not None:
        (folder / CONFIG_FILE).write_text(json.dumps({"prompt_style": prompt_style}))
    return folder / "self-consistency.jsonl"


def test_continuations_are_sampled_in_the_builders_prompt_style(tmp_path, monkeypatch):
    from sasc_ttrl.sampling.records import SampleRecord

    tokenizer = build_tokenizer()
    prompts = []

    def fake_sample(backend, model, tok, texts, settings, **kwargs):
        prompts.extend(texts)
        return [
            [SampleRecord(" The answer is \\boxed{5}.", [1], "5", [0.0]) for _ in range(settings.n)] for _ in texts
        ]

    monkeypatch.setattr(prm, "load_transformers_model", lambda path: (None, tokenizer))
    monkeypatch.setattr(prm, "sample_records", fake_sample)
    rows = _builder_rows(tmp_path / "one_shot", "word_problem_one_shot")
    args = prm_args("m", rows, tmp_path / "out", backend="transformers")
    assert args.prompt_style == "word_problem_one_shot"  # read from the builder's build_config.json
    [labelled] = prm.label_dataset(args, read_builder_rollouts(rows), tmp_path / "labels.jsonl")
    expected = render_prompt("Sam has 2 apples and buys 3. How many?", tokenizer, "word_problem_one_shot")
    assert prompts == [expected + "2 + 3 = 5."]  # only the undecided first step is continued
    assert labelled["rollouts"][0]["labels"] == [1, 1]
    # no build_config.json: the builder's default; an explicit style wins over the builder's
    assert prm_args("m", _builder_rows(tmp_path / "bare"), tmp_path / "o2").prompt_style == "math"
    assert prm_args("m", rows, tmp_path / "o3", prompt_style="math").prompt_style == "math"
    with pytest.raises(ValueError, match="prompt_style.*'chatty'"):
        prm_args("m", rows, tmp_path / "o4", prompt_style="chatty")


def test_step_labels_made_before_prompt_style_existed_resume_as_math(tmp_path):
    rows = _builder_rows(tmp_path / "b")
    args = prm_args("m", rows, tmp_path / "out")
    prm._check_config(args, tmp_path / "out")
    recorded = json.loads((tmp_path / "out" / prm.CONFIG_FILE).read_text())
    recorded.pop("prompt_style")
    (tmp_path / "out" / prm.CONFIG_FILE).write_text(json.dumps(recorded))
    prm._check_config(args, tmp_path / "out")  # "math" then, "math" now
    with pytest.raises(ValueError, match="step labels made with other settings.*prompt_style"):
        one_shot = prm_args("m", rows, tmp_path / "out", prompt_style="word_problem_one_shot")
        prm._check_config(one_shot, tmp_path / "out")


def tiny_build_args(model_dir, data, output_dir, **overrides) -> BuildArguments:
    """The builder's settings of these tests: 4 candidates per question (saved), the same seed whatever the method,
    so a rerank sees the very candidates the PRM's data came from."""
    values = dict(
        model_name_or_path=str(model_dir),
        dataset_name=str(data),
        methods=["self-consistency"],
        n_candidates=4,
        temperature=1.0,
        max_tokens=40,
        seed=1,
        dtype="float32",
        save_candidates=True,
        output_dir=str(output_dir),
    )
    values.update(overrides)
    return BuildArguments(**values)


@pytest.fixture(scope="module")
def tiny_build(tiny_model_dir, tmp_path_factory):
    """A builder output with candidates on 6 tiny sums."""
    root = tmp_path_factory.mktemp("prm")
    data = write_tiny_dataset(root / "sums.json", n=6, seed=5)
    build.main(tiny_build_args(tiny_model_dir, data, root / "build"))
    plant_a_disagreement(root / "build" / "self-consistency.jsonl")
    return root, data


def plant_a_disagreement(rows_file) -> None:
    """Make the first question's first two candidates a right and a wrong solution, so that the verifiers have a
    chosen / rejected pair whatever the model sampled (the other candidates stay the model's own)."""
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    gold = rows[0]["reference_answer"]
    wrong = str(int(gold) + 1)
    first, second = rows[0]["candidates"][:2]
    first.update(text=f"The sum is {gold}. The answer is \\boxed{{{gold}}}.", answer=gold)
    second.update(text=f"The sum is {wrong}. The answer is \\boxed{{{wrong}}}.", answer=wrong)
    rows_file.write_text("".join(json.dumps(r) + "\n" for r in rows))


def prm_args(model_dir, rows, output_dir, **overrides) -> prm.PRMArguments:
    values = dict(
        dataset_path=str(rows),
        model_name_or_path=str(model_dir),
        output_dir=str(output_dir),
        k=2,
        max_tokens=24,
        temperature=1.0,
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        max_length=256,
        seed=0,
    )
    values.update(overrides)
    return prm.PRMArguments(**values)


@pytest.mark.slow
def test_prm_loop_end_to_end_and_the_builder_reranks_with_it(tiny_model_dir, tiny_build):
    root, data = tiny_build
    rows_file = root / "build" / "self-consistency.jsonl"
    out = root / "prm"
    report = prm.main(prm_args(tiny_model_dir, rows_file, out, target="gold"))
    labelled = [json.loads(line) for line in (out / "step_labels.jsonl").read_text().splitlines()]
    assert len(labelled) == 6 and all(row["target"] == "gold" for row in labelled)
    assert report["target"] == "gold" and report["labels"]["steps"] > 0
    for row in labelled:
        for r in row["rollouts"]:
            assert len(r["steps"]) == len(r["labels"]) == len(r["hits"])
            if r["steps"] and r["decided"][-1]:  # the answer step is labelled by the rollout's own answer
                assert r["labels"][-1] == int(r["answer"] is not None and r["answer"] == row["target_answer"])
    assert report["prm"]["examples"] > 0 and (out / "prm" / "config.json").exists()
    assert (out / "orm" / "config.json").exists()
    pairs = (out / "orm_pairs.jsonl").read_text().splitlines()
    assert report["orm"]["pairs"] == len(pairs) > 0
    # A rerun skips every stage (nothing is relabelled or retrained) ...
    before = (out / "step_labels.jsonl").read_text()
    prm.main(prm_args(tiny_model_dir, rows_file, out, target="gold"))
    assert (out / "step_labels.jsonl").read_text() == before
    # ... and refuses other labelling settings.
    with pytest.raises(ValueError, match="other settings"):
        prm.main(prm_args(tiny_model_dir, rows_file, out, target="pseudo_label"))
    # The builder's verifier method loads both models and reranks the candidates.
    for kind, folder in (("orm", "orm"), ("prm", "prm")):
        args = tiny_build_args(
            tiny_model_dir, data, root / f"rerank-{kind}", methods=["verifier"],
            verifier_model_name_or_path=str(out / folder), verifier_kind=kind,
        )  # fmt: skip
        build.main(args)
        rows = [json.loads(line) for line in (root / f"rerank-{kind}" / "verifier.jsonl").read_text().splitlines()]
        assert len(rows) == 6
        for row in rows:
            scores = [c["score"] for c in row["candidates"]]
            assert all(0.0 <= s <= 1.0 for s in scores)
            answered = [i for i, c in enumerate(row["candidates"]) if c["answer"] is not None]
            if answered:
                assert row["selected_index"] == max(answered, key=lambda i: (scores[i], -i))


# -- human step labels in PRM800K's format -----------------------------------------------------------------------
def prm800k_file(tmp_path):
    """A PRM800K-format file (phase 1, phase 2 and a quality-control row; see tests/experimental/test_prm800k.py)."""
    from tests.experimental.test_prm800k import PHASE1, PHASE2, QUALITY_CONTROL

    path = tmp_path / "prm800k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (PHASE1, PHASE2, QUALITY_CONTROL)))
    return path


def test_prm800k_labels_replace_monte_carlo_ones(tmp_path):
    data = prm800k_file(tmp_path)
    args = prm.PRMArguments(model_name_or_path="m", prm800k_data=[str(data)], output_dir=str(tmp_path / "out"))
    assert args.stages == ["label", "prm"] and args.dataset_path is None  # no builder output, no orm pairs
    with pytest.raises(ValueError, match="orm stage"):
        prm.PRMArguments(model_name_or_path="m", prm800k_data=[str(data)], stages=["label", "orm"])
    with pytest.raises(ValueError, match="dataset_path.*prm800k_data"):
        prm.PRMArguments(model_name_or_path="m")
    with pytest.raises(ValueError, match="neutral"):
        prm.PRMArguments(model_name_or_path="m", prm800k_data=[str(data)], prm800k_neutral="maybe")
    path = tmp_path / "out" / prm.LABELS_FILE
    path.parent.mkdir()
    rows = prm.prm800k_label_rows(args, path)
    assert [len(r["rollouts"]) for r in rows] == [1, 1]  # the quality-control row is dropped
    assert prm.prm800k_label_rows(args, path) == rows  # read back, not converted again
    stats = prm.label_statistics(rows)
    assert stats == {"questions": 2, "rollouts": 2, "steps": 6, "good_step_share": 5 / 6, "unsupervised_steps": 0}
    # The neutral step left out of the loss: -100 on its separator, the other labels where they were.
    ignore = prm.PRMArguments(
        model_name_or_path="m", prm800k_data=[str(data)], prm800k_neutral="ignore", prm800k_paths="prod"
    )
    rows = prm.prm800k_label_rows(ignore, tmp_path / "ignore.jsonl")
    assert prm.label_statistics(rows)["unsupervised_steps"] == 6  # one neutral step in each of the 6 phase-1 paths
    tokenizer = build_tokenizer()
    examples = prm.prm_examples(tokenizer, rows, "\n", 4096)
    assert len(examples) == 6 + 2
    first = rows[0]["rollouts"][0]
    enc = encode_steps(tokenizer, rows[0]["question"], first["steps"], first["labels"], "\n", 4096)
    assert [examples[0]["labels"][p] for p in enc["positions"]] == [1, 0, IGNORE_INDEX, 0]
    # Other conversion settings are refused on a rerun of the same output_dir.
    prm._check_config(args, tmp_path / "out")
    with pytest.raises(ValueError, match="other settings.*prm800k_paths"):
        prm._check_config(
            prm.PRMArguments(model_name_or_path="m", prm800k_data=[str(data)], prm800k_paths="prod"), tmp_path / "out"
        )


@pytest.mark.slow
def test_prm_trained_on_prm800k_reranks_with_prod_and_verifier_vote(tiny_model_dir, tiny_build, tmp_path):
    from sasc_ttrl.core.voting import weighted_vote
    from sasc_ttrl.selection.adapters.reward_model import RewardModelVerifier
    from sasc_ttrl.selection.candidates import Candidate

    root, sums = tiny_build
    out = tmp_path / "prm800k"
    args = prm.PRMArguments(
        model_name_or_path=str(tiny_model_dir),
        prm800k_data=[str(prm800k_file(tmp_path))],
        prm800k_paths="prod",
        output_dir=str(out),
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        max_length=512,
        seed=0,
    )
    report = prm.main(args)
    assert report["target"] == "prm800k" and report["labels"]["rollouts"] == 8
    assert report["prm"]["examples"] == 8 and (out / "prm" / "config.json").exists() and not (out / "orm").exists()
    build_out = tmp_path / "rerank"
    build.main(
        tiny_build_args(
            tiny_model_dir,
            sums,
            build_out,
            methods=["verifier", "verifier-vote"],
            verifier_model_name_or_path=str(out / "prm"),
            verifier_kind="prm",
            step_aggregation="prod",
        )
    )
    report = json.loads((build_out / "comparison.json").read_text())
    assert set(report["methods"]) == {"verifier", "verifier-vote"}  # side by side in one comparison
    best = [json.loads(line) for line in (build_out / "verifier.jsonl").read_text().splitlines()]
    votes = [json.loads(line) for line in (build_out / "verifier-vote.jsonl").read_text().splitlines()]
    verifier = RewardModelVerifier(str(out / "prm"), kind="prm")
    for row, vote in zip(best, votes):
        scores = [c["score"] for c in row["candidates"]]
        assert [c["score"] for c in vote["candidates"]] == pytest.approx(scores)  # the same verifier scores
        # prod: the product of the step probabilities at the separators
        candidates = [Candidate.from_record(SampleRecord(c["text"], [], c["answer"], [])) for c in row["candidates"]]
        steps = verifier.step_scores(row["question"], candidates)
        assert scores == pytest.approx([math.prod(s) if s else 0.0 for s in steps], rel=1e-4)
        result = weighted_vote([c["answer"] for c in row["candidates"]], scores, timeout=None)
        assert vote["pseudo_label"] == result.pseudo_label
