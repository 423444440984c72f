"""The data a user has trains: every shape and file format the loader takes, one GRPO step each on the tiny model.

The shapes are the simplest ones (only ``prompt``; ``prompt`` and ``answer``), the same with an extra column, TRL's
conversational prompts, a `Dataset` after ``select`` (an indices mapping over a larger table), a hub-style folder and
a ``save_to_disk`` `DatasetDict`, and each local file format (JSON, JSONL, Parquet, CSV).
"""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer

from sasc_ttrl.commands.train import main as train_main
from sasc_ttrl.commands.train import make_parser
from sasc_ttrl.data.training_data import prepare_math_dataset
from sasc_ttrl.training.trainer import SASCTrainer
from tests.training.test_trainer import tiny_config

RECIPE = "recipes/tiny/sasc_cpu.yaml"
QUESTIONS = [("What is 3 + 2?", "5"), ("What is 4 + 4?", "8"), ("What is 1 + 6?", "7"), ("What is 9 + 0?", "9")]


def rows(shape: str) -> list[dict]:
    """The questions in one of the shapes a user has."""
    out = []
    for i, (question, answer) in enumerate(QUESTIONS):
        prompt = [{"role": "user", "content": question}] if shape.startswith("chat") else question
        row = {"prompt": prompt}
        if shape != "prompt_only" and shape != "chat_prompt_only":
            row["answer"] = answer
        if shape == "extra":
            row["id"] = f"q{i}"
        out.append(row)
    return out


def write(shape: str, fmt: str, folder) -> str:
    """The rows of ``shape`` written as a user would: a file of format ``fmt``, or a data set folder."""
    data = rows(shape)
    if fmt == "jsonl":
        path = folder / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
    elif fmt == "json":
        path = folder / "data.json"
        path.write_text(json.dumps(data))
    elif fmt == "parquet":
        path = folder / "data.parquet"
        Dataset.from_list(data).to_parquet(str(path))
    elif fmt == "csv":
        path = folder / "data.csv"
        Dataset.from_list(data).to_csv(str(path), index=False)
    elif fmt == "hub_folder":  # a hub repository's layout: one file per split
        path = folder / "hub-style"
        path.mkdir()
        (path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
        (path / "test.jsonl").write_text(json.dumps(data[0]) + "\n")
    elif fmt == "saved_dict":  # DatasetDict.save_to_disk
        path = folder / "saved"
        DatasetDict({"train": Dataset.from_list(data), "test": Dataset.from_list(data[:1])}).save_to_disk(str(path))
    else:
        raise AssertionError(fmt)
    return str(path)


CLI_CASES = [
    ("prompt_only", "jsonl", []),
    ("prompt_answer", "jsonl", []),
    ("prompt_answer", "jsonl", ["--max_train_samples", "2"]),
    ("chat", "jsonl", []),
    ("chat", "jsonl", ["--max_train_samples", "2"]),
    ("chat_prompt_only", "jsonl", []),
    ("extra", "jsonl", []),
    ("prompt_answer", "json", []),
    ("prompt_answer", "parquet", []),
    ("prompt_answer", "csv", []),
    ("chat", "parquet", []),
    ("prompt_answer", "hub_folder", []),
    ("prompt_answer", "saved_dict", []),
]


@pytest.mark.parametrize(
    ("shape", "fmt", "flags"), CLI_CASES, ids=[f"{s}-{f}{'-limit' if x else ''}" for s, f, x in CLI_CASES]
)
def test_sasc_ttrl_train_takes_the_data(tiny_model_dir, tmp_path, shape, fmt, flags):
    """``sasc-ttrl train --config recipes/tiny/sasc_cpu.yaml --dataset_name <data>`` trains one step."""
    data = write(shape, fmt, tmp_path)
    args = [
        "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_name", data,
        "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--num_generations", "4",
        "--per_device_train_batch_size", "8", "--max_completion_length", "16", *flags,
    ]  # fmt: skip
    trainer = train_main(*make_parser().parse_args_and_config(args=args))
    assert trainer.state.global_step == 1
    expected = int(flags[1]) if flags else len(QUESTIONS)
    dataset = trainer.train_dataset
    assert len(dataset) == expected
    has_answer = "answer" in rows(shape)[0]
    assert ("answer" in dataset.column_names) == has_answer
    if has_answer:
        assert dataset["answer"] == [a for _, a in QUESTIONS[:expected]]
    if shape == "extra":
        assert dataset["id"] == [f"q{i}" for i in range(expected)]
    first = dataset[0]["prompt"]
    if shape.startswith("chat"):
        assert first == [{"role": "user", "content": QUESTIONS[0][0]}]  # the user's messages, untouched
    else:
        assert QUESTIONS[0][0] in first[-1]["content"] and "\\boxed{}" in first[-1]["content"]  # asked in style
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert "rewards/sasc_reward/mean" in logged
    assert ("sasc/label_accuracy" in logged) == has_answer
    assert (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.parametrize("shape", ["prompt_only", "prompt_answer", "chat"])
def test_a_selected_dataset_trains(tiny_model_dir, tmp_path, shape):
    """A `Dataset` after ``select`` (rows are an indices mapping over a larger table), prepared, then trained."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    bigger = Dataset.from_list(rows(shape) * 3)
    chosen = bigger.select([5, 2, 7, 0])
    dataset = prepare_math_dataset(chosen, tokenizer)
    assert len(dataset) == 4
    if "answer" in chosen.column_names:
        assert dataset["answer"] == chosen["answer"]
    args = tiny_config(tmp_path, num_generations=4, per_device_train_batch_size=8, max_completion_length=16,
                       max_steps=1)  # fmt: skip
    trainer = SASCTrainer(model=str(tiny_model_dir), args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 1


def test_prepare_math_dataset_takes_a_dataset_dict(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    splits = DatasetDict({"train": Dataset.from_list(rows("prompt_answer")), "test": Dataset.from_list(rows("chat"))})
    prepared = prepare_math_dataset(splits, tokenizer)
    assert isinstance(prepared, DatasetDict) and sorted(prepared) == ["test", "train"]
    assert prepared["train"]["answer"] == [a for _, a in QUESTIONS]
    assert prepared["test"][0]["prompt"] == [{"role": "user", "content": QUESTIONS[0][0]}]


def test_a_saved_dataset_dict_without_the_split_names_it(tmp_path):
    from sasc_ttrl.data.sources import load_raw_dataset

    path = write("prompt_answer", "saved_dict", tmp_path)
    assert len(load_raw_dataset(path, split="test")) == 1
    with pytest.raises(ValueError, match=r"no split 'validation'; its splits are \['test', 'train'\]"):
        load_raw_dataset(path, split="validation")
