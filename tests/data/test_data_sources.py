"""Data loading: local files of every format, column mapping, benchmark names, hub names, prompts, errors."""

from __future__ import annotations

import json

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
    assert set(dataset.column_names) == {"id", "prompt", "answer"}
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


def test_benchmark_names_resolve_to_shared_files(shared_benchmarks, monkeypatch):
    monkeypatch.setenv("SASC_TTRL_BENCHMARKS_DIR", str(shared_benchmarks))
    assert resolve_data_source("aime24") == str(shared_benchmarks / "aime24.json")
    dataset = load_math_dataset("aime24")
    assert len(dataset) == 30 and dataset[0]["prompt"].endswith(MATH_INSTRUCTION)
    assert all(a for a in dataset["answer"])
    gsm8k = load_math_dataset("gsm8k", limit=3)
    assert len(gsm8k) == 3


def test_benchmark_name_without_folder_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SASC_TTRL_BENCHMARKS_DIR", str(tmp_path / "missing"))
    monkeypatch.setattr(data_module, "benchmarks_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match="math500"):
        resolve_data_source("math500")
