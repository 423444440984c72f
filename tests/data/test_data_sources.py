"""Data loading: local files of every format, column mapping, benchmark names, hub names, prompts, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sasc_ttrl.data import sources as data_module
from sasc_ttrl.data.prompts import (
    MATH_INSTRUCTION,
    WORD_PROBLEM_EXAMPLE,
    WORD_PROBLEM_INSTRUCTION,
    build_prompt,
    render_prompt,
)
from sasc_ttrl.data.sources import load_raw_dataset, resolve_data_source
from sasc_ttrl.data.training_data import load_math_dataset
from sasc_ttrl.demo.tiny_model import build_tokenizer

ROWS = [
    {"problem": "What is 1 + 1?", "final": "2", "id": "a"},
    {"problem": "What is 2 + 5?", "final": "7", "id": "b"},
]


@pytest.fixture(params=["json", "jsonl", "parquet", "csv"])
def data_file(request, tmp_path):
    path = tmp_path / f"data.{request.param}"
    if request.param == "json":
        path.write_text(json.dumps(ROWS))
    elif request.param == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ROWS))
    elif request.param == "parquet":
        pd.DataFrame(ROWS).to_parquet(path)
    else:
        pd.DataFrame(ROWS).to_csv(path, index=False)
    return path


def test_local_files_with_column_mapping(data_file):
    dataset = load_math_dataset(str(data_file), prompt_column="problem", answer_column="final")
    assert set(dataset.column_names) == {"id", "prompt", "answer", "problem", "final"}  # every column stays
    assert dataset[0]["prompt"] == f"What is 1 + 1?\n{MATH_INSTRUCTION}"
    assert [str(a) for a in dataset["answer"]] == ["2", "7"]
    assert dataset["id"] == ["a", "b"]


def test_conversational_prompt_when_tokenizer_has_chat_template(data_file):
    tokenizer = build_tokenizer()
    dataset = load_math_dataset(str(data_file), tokenizer=tokenizer, prompt_column="problem", answer_column="final")
    assert dataset[1]["prompt"] == [{"role": "user", "content": f"What is 2 + 5?\n{MATH_INSTRUCTION}"}]
    text = render_prompt("What is 2 + 5?", tokenizer)
    assert text.startswith("<|user|>What is 2 + 5?") and text.endswith("<|assistant|>")


def test_plain_prompt_without_chat_template():
    assert build_prompt("Q?") == f"Q?\n{MATH_INSTRUCTION}"


def test_one_shot_prompt_style_puts_the_worked_example_first():
    example_q, example_a = WORD_PROBLEM_EXAMPLE
    messages = build_prompt("Bo has 4 cats and gets 1 more. How many?", build_tokenizer(), "word_problem_one_shot")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == f"{example_q}\n{WORD_PROBLEM_INSTRUCTION}"
    assert messages[1]["content"] == example_a
    assert messages[2]["content"] == f"Bo has 4 cats and gets 1 more. How many?\n{WORD_PROBLEM_INSTRUCTION}"
    plain = build_prompt("Q?", None, "word_problem_one_shot")
    assert plain.startswith(example_q) and plain.endswith(f"Q?\n{WORD_PROBLEM_INSTRUCTION}")
    text = render_prompt("Q?", build_tokenizer(), "word_problem_one_shot")
    assert text.index(example_a) < text.index("Q?") and text.endswith("<|assistant|>")


def test_unknown_prompt_style_is_named(data_file):
    with pytest.raises(ValueError, match="prompt_style must be one of .*'socratic'"):
        build_prompt("Q?", None, "socratic")
    with pytest.raises(ValueError, match="'socratic'"):
        load_math_dataset(str(data_file), prompt_column="problem", prompt_style="socratic")


def test_datasets_take_the_prompt_style(data_file):
    dataset = load_math_dataset(str(data_file), prompt_column="problem", prompt_style="word_problem_one_shot")
    assert dataset[0]["prompt"] == build_prompt("What is 1 + 1?", None, "word_problem_one_shot")


def test_missing_prompt_column_names_it(data_file):
    with pytest.raises(KeyError, match="question.*problem"):
        load_math_dataset(str(data_file), prompt_column="question")


def test_missing_answer_column_is_allowed(data_file):
    dataset = load_math_dataset(str(data_file), prompt_column="problem", answer_column="solution")
    assert "answer" not in dataset.column_names and len(dataset) == 2


def test_empty_question_is_an_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"prompt": "  ", "answer": "1"}]))
    with pytest.raises(ValueError, match="empty or non-text question"):
        load_math_dataset(str(path))


def test_limit_keeps_first_rows(data_file):
    dataset = load_math_dataset(str(data_file), prompt_column="problem", answer_column="final", limit=1)
    assert dataset["id"] == ["a"]


def test_unsupported_suffix_and_missing_file(tmp_path):
    bad = tmp_path / "data.txt"
    bad.write_text("x")
    with pytest.raises(ValueError, match="unsupported data file"):
        load_raw_dataset(str(bad))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_raw_dataset(str(tmp_path / "nope" / "data.json"))


def test_hub_names_go_to_load_dataset(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return "dataset"

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_raw_dataset("HuggingFaceH4/MATH-500", split="test", config="default") == "dataset"
    assert calls == [("HuggingFaceH4/MATH-500", "default", "test")]


def test_benchmark_names_resolve_to_the_shipped_files(monkeypatch):
    monkeypatch.delenv("SASC_TTRL_BENCHMARKS_DIR", raising=False)
    shipped = Path(data_module.__file__).parent / "benchmark_files"
    assert resolve_data_source("aime24") == str(shipped / "aime24.json")
    dataset = load_math_dataset("aime24")
    assert len(dataset) == 30 and dataset[0]["prompt"].endswith(MATH_INSTRUCTION)
    assert all(a for a in dataset["answer"])
    assert len(load_math_dataset("gsm8k", limit=3)) == 3
    assert {"math500.json", "amc.json", "aime24.json", "gsm8k.json", "PROVENANCE.md"} <= {
        p.name for p in shipped.iterdir()
    }


def test_shipped_benchmarks_equal_the_shared_files(shared_benchmarks):
    shipped = Path(data_module.__file__).parent / "benchmark_files"
    for name in ("math500", "amc", "aime24", "gsm8k"):
        assert json.loads((shipped / f"{name}.json").read_text()) == json.loads(
            (shared_benchmarks / f"{name}.json").read_text()
        ), name


def test_benchmarks_dir_override_and_its_error(monkeypatch, tmp_path, shared_benchmarks):
    monkeypatch.setenv("SASC_TTRL_BENCHMARKS_DIR", str(shared_benchmarks))
    assert resolve_data_source("amc") == str(shared_benchmarks / "amc.json")
    monkeypatch.setenv("SASC_TTRL_BENCHMARKS_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="math500.*unset it"):
        resolve_data_source("math500")


def test_conversational_prompts_pass_through_and_every_column_stays(tmp_path):
    rows = [
        {"prompt": [{"role": "user", "content": "What is 3 + 4?"}], "answer": 7, "solution": "3 + 4 = 7", "n": 1},
        {"prompt": [{"role": "user", "content": "What is 1 + 1?"}], "answer": None, "solution": "2", "n": 2},
    ]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_math_dataset(str(path), tokenizer=build_tokenizer())
    assert dataset["prompt"] == [r["prompt"] for r in rows]  # unchanged: TRL applies the chat template once
    assert dataset["answer"] == ["7", None]
    assert dataset["solution"] == ["3 + 4 = 7", "2"] and dataset["n"] == [1, 2]
    with_system = load_math_dataset(str(path), system_prompt="You are terse.")
    assert with_system[0]["prompt"][0] == {"role": "system", "content": "You are terse."}
    assert with_system[0]["prompt"][1:] == rows[0]["prompt"]
    rows[0]["prompt"] = [{"role": "system", "content": "x"}, *rows[0]["prompt"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="row 0 of 'prompt' already has a system message"):
        load_math_dataset(str(path), system_prompt="You are terse.")


def test_raw_style_and_system_prompt_on_text_questions(data_file):
    raw = load_math_dataset(str(data_file), prompt_column="problem", answer_column="final", prompt_style="raw")
    assert raw[0]["prompt"] == "What is 1 + 1?"
    chat = load_math_dataset(
        str(data_file), tokenizer=build_tokenizer(), prompt_column="problem", prompt_style="raw", system_prompt="Hi."
    )
    assert chat[0]["prompt"] == [{"role": "system", "content": "Hi."}, {"role": "user", "content": "What is 1 + 1?"}]
    text = load_math_dataset(str(data_file), prompt_column="problem", system_prompt="Hi.")
    assert text[0]["prompt"] == f"Hi.\n\nWhat is 1 + 1?\n{MATH_INSTRUCTION}"


def test_an_empty_question_names_its_row(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"prompt": "ok?"}) + "\n" + json.dumps({"prompt": "  "}) + "\n")
    with pytest.raises(ValueError, match="row 1: empty or non-text question"):
        load_math_dataset(str(path))
