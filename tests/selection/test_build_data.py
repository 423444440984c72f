"""The offline selection pipeline end to end on the tiny model: every method, the output rows, resuming after a crash
or a kill, key-step extraction against a real HTTP server on 127.0.0.1, and the comparison report."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sasc_ttrl.commands import build
from sasc_ttrl.core.voting import majority_vote
from sasc_ttrl.data.benchmarks import load_questions
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.sampling.openai_client import KeyStepClient, KeyStepError, chat_completions_url
from sasc_ttrl.selection import builder
from sasc_ttrl.selection.adapters.token_features import compute_token_features
from sasc_ttrl.selection.build_arguments import CONFIG_FILE, BuildArguments, build_settings
from sasc_ttrl.selection.registry import SELECTION_METHODS
from tests.helpers.loopback_chat import LoopbackChatServer

REPO = Path(__file__).resolve().parents[2]
REQUIRED_COLUMNS = {
    "id",
    "method",
    "question",
    "answer",
    "gpt_response",
    "pseudo_label",
    "confidence",
    "majority_ratio",
    "reference_answer",
    "correct",
    "samples_used",
    "tokens_generated",
    "seconds",
    "key_step_status",
}
KEY_STEPS = "1. Add the two numbers.\n2. Box the sum."


def build_args(model_dir, data, output_dir, **overrides) -> BuildArguments:
    values = dict(
        model_name_or_path=str(model_dir),
        dataset_name=str(data),
        methods=["self-consistency"],
        n_candidates=4,
        temperature=0.8,
        max_tokens=48,
        seed=3,
        batch_size=3,
        dtype="float32",
        output_dir=str(output_dir),
    )
    values.update(overrides)
    return BuildArguments(**values)


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture
def chat_server():
    server = LoopbackChatServer(KEY_STEPS)
    yield server
    server.close()


@pytest.fixture(scope="module")
def sums(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "sums.json", n=6, seed=1)


@pytest.fixture(scope="module")
def tiny_verifier(tiny_model_dir, tmp_path_factory):
    """A randomly initialised one-label LlamaForSequenceClassification with the tiny tokenizer."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.num_labels = 1
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    path = tmp_path_factory.mktemp("verifier")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


# -- every method, end to end ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_build(tiny_model_dir, sums, tiny_verifier, tmp_path_factory):
    """All methods (verifier included) on 3 questions, with guided re-sampling and key steps from a local server."""
    server = LoopbackChatServer(KEY_STEPS)
    os.environ["SASC_TEST_KEY"] = "test-key"
    try:
        out = tmp_path_factory.mktemp("build")
        args = build_args(
            tiny_model_dir,
            sums,
            out,
            methods=["all"],
            limit=3,
            verifier_model_name_or_path=str(tiny_verifier),
            guided_resample=True,
            consensus_threshold=0.6,
            save_candidates=True,
            key_step_api_base=server.api_base,
            key_step_api_key_env="SASC_TEST_KEY",
            key_step_backoff=0.01,
        )
        report = build.main(args)
    finally:
        os.environ.pop("SASC_TEST_KEY", None)
        server.close()
    return {"out": out, "report": report, "server": server}


def test_every_method_writes_one_row_per_question(full_build):
    out = full_build["out"]
    assert {p.stem for p in out.glob("*.jsonl")} == set(SELECTION_METHODS)
    for method in SELECTION_METHODS:
        rows = read_rows(out / f"{method}.jsonl")
        assert [r["id"] for r in rows] == ["tiny-0", "tiny-1", "tiny-2"]
        for row in rows:
            assert REQUIRED_COLUMNS <= set(row), method
            assert row["method"] == method
            candidates = row["candidates"]
            assert len(candidates) == 4 and len(row["candidates"]) == row["num_candidates"]
            texts = [c["text"] for c in candidates]
            assert row["answer"] == texts[row["selected_index"]]
            assert 0.0 <= row["majority_ratio"] <= 1.0
            agree = sum(c["answer"] == row["pseudo_label"] for c in candidates) / 4
            assert row["majority_ratio"] == pytest.approx(agree)  # the tiny model's answers are plain integers
            assert row["guided_resample"]["ratio_before"] is not None
            assert row["gpt_response"] == KEY_STEPS and row["key_step_status"] == "ok"
            if method == "self-consistency":
                assert row["pseudo_label"] == majority_vote([c["answer"] for c in candidates]).pseudo_label
            if method == "baseline":
                assert (row["selected_index"], row["samples_used"], row["confidence"]) == (0, 1, None)
            if method == "self-calibration-es":
                assert row["samples_used"] == 4 - row["details"]["samples_saved"]
            if method == "self-eval":
                assert all(0.0 < p < 1.0 for steps in row["details"]["step_yes_probability"] for p in steps)
            if method in ("verifier", "coe-r", "coe-c", "self-certainty"):
                assert row["confidence"] == max(c["score"] for c in candidates if c["answer"] is not None)


def test_key_steps_went_to_the_server_with_the_key(full_build):
    requests = full_build["server"].requests
    assert requests and all(r["path"] == "/v1/chat/completions" for r in requests)
    assert all(r["auth"] == "Bearer test-key" for r in requests)
    body = requests[0]["body"]
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.0
    assert "What is" in body["messages"][1]["content"]
    # One call per distinct selected completion of a question, not one per method.
    distinct = {(r["id"], r["answer"]) for m in SELECTION_METHODS for r in read_rows(full_build["out"] / f"{m}.jsonl")}
    assert len(requests) == len(distinct)


def test_comparison_report(full_build):
    out, report = full_build["out"], full_build["report"]
    on_disk = json.loads((out / "comparison.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert set(report["methods"]) == set(SELECTION_METHODS)
    baseline, sc = report["methods"]["baseline"], report["methods"]["self-consistency"]
    assert baseline["num_questions"] == sc["num_questions"] == 3 and sc["graded"] == 3
    assert baseline["samples_per_question"] == 1.0 and sc["samples_per_question"] == 4.0
    assert baseline["tokens_per_question"] < sc["tokens_per_question"]
    for summary in report["methods"].values():
        assert 0.0 <= summary["accuracy"] <= report["oracle_pass_at_n"] or summary["accuracy"] == 0.0
        assert summary["seconds"] > 0
    markdown = (out / "comparison.md").read_text()
    assert all(f"| {name} |" in markdown for name in SELECTION_METHODS) and "oracle (pass@N)" in markdown
    assert not list(out.glob(".*.tmp"))


def test_token_features_on_the_tiny_model_match_a_full_forward_pass(tiny_model_dir):
    from sasc_ttrl.sampling.models import load_transformers_model

    model, tokenizer = load_transformers_model(str(tiny_model_dir), dtype="float32", device="cpu")
    prompts = [tokenizer.encode("<|user|>What is 1 + 2?<|end|><|assistant|>"), tokenizer.encode("<|user|>Hi<|end|>")]
    completions = [tokenizer.encode("1 + 2 = 3."), tokenizer.encode("\\boxed{4}")]
    features = compute_token_features(model, prompts, completions, pad_token_id=0, top_k=5, hidden_states=True)
    for prompt, completion, feat in zip(prompts, completions, features):
        with torch.no_grad():
            out = model(torch.tensor([prompt + completion]), output_hidden_states=True)
        logp = torch.log_softmax(out.logits[0, len(prompt) - 1 : -1].float(), -1)
        assert feat.token_logprobs == pytest.approx(logp[range(len(completion)), completion].tolist(), abs=1e-4)
        assert feat.hidden_chain.shape == (3, 128)  # embeddings + 2 layers
        last = out.hidden_states[-1][0, len(prompt) :].mean(0).numpy()
        assert feat.hidden_chain[-1] == pytest.approx(last, abs=1e-4)


# -- key-step client -------------------------------------------------------------------------------------------------
def test_key_step_client_success_retry_and_failure(chat_server):
    client = KeyStepClient(api_base=chat_server.api_base, model="m", backoff=0.01, max_retries=2)
    assert client.extract("What is 1 + 1?", "1 + 1 = 2.") == KEY_STEPS
    assert len(chat_server.requests) == 1 and chat_server.requests[0]["auth"] is None
    chat_server.failures = 1
    assert client.extract("q", "s") == KEY_STEPS  # one 500, then success
    assert len(chat_server.requests) == 3
    chat_server.always_fail = True
    with pytest.raises(KeyStepError, match="3 attempts: HTTP 500"):
        client.extract("q", "s")
    assert len(chat_server.requests) == 6
    assert chat_completions_url("http://h/v1/") == "http://h/v1/chat/completions"
    assert chat_completions_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"
    unreachable = KeyStepClient(api_base="http://127.0.0.1:9/v1", model="m", backoff=0.0, max_retries=1, timeout=2)
    with pytest.raises(KeyStepError, match="2 attempts"):
        unreachable.extract("q", "s")


def test_key_step_failure_marks_the_row_and_the_run_goes_on(tiny_model_dir, sums, tmp_path, chat_server):
    chat_server.always_fail = True
    args = build_args(
        tiny_model_dir,
        sums,
        tmp_path,
        limit=2,
        key_step_api_base=chat_server.api_base,
        key_step_backoff=0.0,
        key_step_max_retries=1,
    )
    build.main(args)
    rows = read_rows(tmp_path / "self-consistency.jsonl")
    assert len(rows) == 2
    for row in rows:
        assert row["key_step_status"] == "failed" and "HTTP 500" in row["key_step_error"]
        assert row["gpt_response"] == ""


def test_without_api_base_the_field_is_empty_and_the_run_says_so_once(tiny_model_dir, sums, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sasc_ttrl.selection.builder"):
        build.main(build_args(tiny_model_dir, sums, tmp_path, limit=2, methods=["baseline", "sasc"]))
    said = [r for r in caplog.records if "key-step extraction is off" in r.getMessage()]
    assert len(said) == 1
    for method in ("baseline", "sasc"):
        assert {(r["gpt_response"], r["key_step_status"]) for r in read_rows(tmp_path / f"{method}.jsonl")} == {
            ("", "off")
        }


# -- resuming ---------------------------------------------------------------------------------------------------------
def rounded(value):
    """Floats to 4 decimals, recursively: other batching changes scores by float noise (~1e-7), nothing else."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def comparable(rows):
    return [rounded({k: v for k, v in r.items() if k != "seconds"}) for r in rows]


def test_crash_mid_question_then_rerun_gives_each_question_once(tiny_model_dir, sums, tmp_path, monkeypatch):
    methods = ["self-consistency", "sasc"]
    reference = tmp_path / "reference"
    build.main(build_args(tiny_model_dir, sums, reference, limit=3, methods=methods))

    crashed = tmp_path / "crashed"
    real_append = builder.append_row
    written = []

    def crash_after_three(handle, row):
        if len(written) == 3:  # question 0 fully written, question 1 only for the first method
            raise RuntimeError("simulated crash")
        written.append(row["id"])
        real_append(handle, row)

    monkeypatch.setattr(builder, "append_row", crash_after_three)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build.main(build_args(tiny_model_dir, sums, crashed, limit=3, methods=methods, batch_size=1))
    assert [len(read_rows(crashed / f"{m}.jsonl")) for m in methods] == [2, 1]
    monkeypatch.setattr(builder, "append_row", real_append)
    build.main(build_args(tiny_model_dir, sums, crashed, limit=3, methods=methods, batch_size=2))
    for method in methods:
        rows = read_rows(crashed / f"{method}.jsonl")
        assert sorted(r["id"] for r in rows) == ["tiny-0", "tiny-1", "tiny-2"]
        expected = {r["id"]: r for r in comparable(read_rows(reference / f"{method}.jsonl"))}
        assert {r["id"]: r for r in comparable(rows)} == expected  # same candidates, same selections


def test_truncated_last_line_is_dropped_and_redone(tiny_model_dir, sums, tmp_path):
    args = build_args(tiny_model_dir, sums, tmp_path, limit=2)
    build.main(args)
    path = tmp_path / "self-consistency.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed in the middle of the second line
    build.main(args)
    assert [r["id"] for r in read_rows(path)] == ["tiny-0", "tiny-1"]
    assert comparable(read_rows(path)) == comparable([json.loads(x) for x in lines])


def test_kill_the_builder_and_rerun(tiny_model_dir, sums, tmp_path):
    """SIGKILL a real ``sasc-ttrl build`` process once its first row is on disk; the rerun completes the set."""
    out = tmp_path / "killed"
    path = out / "self-consistency.jsonl"
    command = [
        sys.executable,
        "-m",
        "sasc_ttrl.cli",
        "build",
        "--model_name_or_path",
        str(tiny_model_dir),
        "--dataset_name",
        str(sums),
        "--methods",
        "self-consistency",
        "--n_candidates",
        "4",
        "--temperature",
        "0.8",
        "--max_tokens",
        "48",
        "--seed",
        "3",
        "--batch_size",
        "1",
        "--dtype",
        "float32",
        "--output_dir",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            if path.exists() and path.read_text().count("\n") >= 1:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    before = read_rows(path)
    assert 1 <= len(before) < 6
    build.main(build_args(tiny_model_dir, sums, out, batch_size=1))
    ids = [r["id"] for r in read_rows(path)]
    assert sorted(ids) == [f"tiny-{i}" for i in range(6)] and len(ids) == len(set(ids))
    assert comparable(read_rows(path)[: len(before)]) == comparable(before)


# -- arguments and settings -------------------------------------------------------------------------------------------
def test_arguments_are_validated(tiny_model_dir, sums, tmp_path):
    with pytest.raises(ValueError, match="unknown selection method 'best'"):
        build_args(tiny_model_dir, sums, tmp_path, methods=["best"])
    with pytest.raises(ValueError, match="verifier_model_name_or_path"):
        build_args(tiny_model_dir, sums, tmp_path, methods=["verifier"])
    with pytest.raises(ValueError, match="lambda_weight"):
        build_args(tiny_model_dir, sums, tmp_path, lambda_weight=1.5)
    assert build_args(tiny_model_dir, sums, tmp_path, methods="baseline,sasc").methods == ["baseline", "sasc"]


def test_a_rerun_with_other_settings_is_refused(tmp_path):
    build._check_config(tmp_path, {"temperature": 0.1, "n_candidates": 4}, overwrite=False)
    build._check_config(tmp_path, {"temperature": 0.1, "n_candidates": 4}, overwrite=False)
    (tmp_path / "sasc.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="temperature"):
        build._check_config(tmp_path, {"temperature": 0.7, "n_candidates": 4}, overwrite=False)
    build._check_config(tmp_path, {"temperature": 0.7, "n_candidates": 4}, overwrite=True)
    assert not (tmp_path / "sasc.jsonl").exists()


def test_a_setting_added_later_counts_as_its_default_in_an_older_build(tmp_path):
    settings = build_settings(build_args_plain(tmp_path), "transformers")
    older = {k: v for k, v in settings.items() if k != "prompt_style"}  # a build_config.json from before the field
    (tmp_path / CONFIG_FILE).write_text(json.dumps(older))
    build._check_config(tmp_path, settings, overwrite=False)  # resumes: "math" was the only style then
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["prompt_style"] == "math"
    other = {**settings, "prompt_style": "word_problem_one_shot"}
    with pytest.raises(ValueError, match="prompt_style.*'math', 'word_problem_one_shot'"):
        build._check_config(tmp_path, other, overwrite=False)


def build_args_plain(tmp_path, **overrides):
    return BuildArguments(model_name_or_path="m", dataset_name="d.json", output_dir=str(tmp_path), **overrides)


def test_build_arguments_name_an_unknown_prompt_style(tmp_path):
    with pytest.raises(ValueError, match="prompt_style.*'chatty'"):
        build_args_plain(tmp_path, prompt_style="chatty")


def test_load_questions_without_hidden_answers(tmp_path):
    path = tmp_path / "unlabeled.jsonl"
    path.write_text("\n".join(json.dumps({"problem": f"What is {i} + 1?"}) for i in range(3)) + "\n")
    questions = load_questions(str(path), limit=2)
    assert [(q.key, q.question, q.gold) for q in questions] == [
        ("0", "What is 0 + 1?", None),
        ("1", "What is 1 + 1?", None),
    ]


def test_reward_model_verifier_outcome_and_process_scores(tiny_verifier):
    from sasc_ttrl.sampling.records import SampleRecord
    from sasc_ttrl.selection.adapters.reward_model import RewardModelVerifier
    from sasc_ttrl.selection.candidates import Candidate

    texts = ["1 + 1 = 2. The answer is \\boxed{2}.", "1 + 1 = 3. So it is 3. The answer is \\boxed{3}."]
    candidates = [Candidate(SampleRecord(t, [1], t[-3], [0.0])) for t in texts]
    question = "What is 1 + 1?"
    orm = RewardModelVerifier(str(tiny_verifier), kind="orm", device="cpu", dtype="float32")
    scores = orm.score(question, candidates)
    alone = [orm.score_texts([orm.render(question, t)])[0] for t in texts]
    assert scores == pytest.approx(alone, abs=1e-5)  # batching (padding) does not change a score
    assert all(0.0 < s < 1.0 for s in scores)
    prm = RewardModelVerifier(str(tiny_verifier), kind="prm", device="cpu", dtype="float32")
    prefixes = ["1 + 1 = 3.", "1 + 1 = 3.\nSo it is 3.", "1 + 1 = 3.\nSo it is 3.\nThe answer is \\boxed{3}."]
    step_scores = prm.score_texts([prm.render(question, p) for p in prefixes])
    assert prm.score(question, candidates[1:], "min") == pytest.approx([min(step_scores)], abs=1e-5)
    assert prm.score(question, candidates[1:], "last") == pytest.approx([step_scores[-1]], abs=1e-5)
    with pytest.raises(ValueError, match="orm"):
        RewardModelVerifier(str(tiny_verifier), kind="judge")


def test_api_key_from_env_warns_when_the_variable_is_unset(monkeypatch, caplog):
    from sasc_ttrl.sampling.openai_client import api_key_from_env

    monkeypatch.setenv("SASC_TEST_API_KEY", "sk-test")
    assert api_key_from_env("SASC_TEST_API_KEY", "key-step") == "sk-test"
    assert not caplog.records
    monkeypatch.delenv("SASC_TEST_API_KEY")
    with caplog.at_level(logging.WARNING):
        assert api_key_from_env("SASC_TEST_API_KEY", "teacher") is None
    assert "$SASC_TEST_API_KEY is not set: teacher requests carry no API key" in caplog.text
