"""``prompt_style`` reaches the model: the prompts that ``eval``, ``build`` and ``self-improve`` really sample from
(the tiny model, spied on at their ``sample_records`` call) are the questions rendered in the chosen style."""

from __future__ import annotations

import pytest

from sasc_ttrl.commands import build
from sasc_ttrl.commands import eval as evaluate
from sasc_ttrl.data.prompts import render_prompt
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.experimental.self_improve import runner as self_improve
from sasc_ttrl.sampling import benchmark
from sasc_ttrl.selection import builder


@pytest.fixture
def spy(monkeypatch):
    """Record every prompt passed to ``sample_records`` in the three modules, then sample for real."""
    seen: list[str] = []

    def install(module):
        real = module.sample_records

        def recording(backend, model, tokenizer, prompts, *args, **kwargs):
            seen.extend(prompts)
            return real(backend, model, tokenizer, prompts, *args, **kwargs)

        monkeypatch.setattr(module, "sample_records", recording)

    for module in (builder, benchmark, self_improve):
        install(module)
    return seen


def _expected(tiny_model_dir, data, style):
    import json

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    questions = [row["prompt"] for row in json.loads(data.read_text())][:2]
    return [render_prompt(q, tokenizer, style) for q in questions]


@pytest.mark.parametrize("style", ["math", "word_problem_one_shot"])
def test_eval_and_build_sample_in_the_prompt_style(tiny_model_dir, tmp_path, spy, style):
    data = write_tiny_dataset(tmp_path / "sums.json", n=2, seed=3)
    expected = _expected(tiny_model_dir, data, style)
    evaluate.main(
        evaluate.EvalArguments(
            model_name_or_path=str(tiny_model_dir), benchmarks=[str(data)], n=2, max_tokens=8, dtype="float32",
            prompt_style=style, output_dir=str(tmp_path / "eval"), backend="transformers",
        )
    )  # fmt: skip
    assert spy == expected
    spy.clear()
    build.main(
        build.BuildArguments(
            model_name_or_path=str(tiny_model_dir), dataset_name=str(data), methods=["self-consistency"],
            n_candidates=2, max_tokens=8, dtype="float32", prompt_style=style, output_dir=str(tmp_path / "build"),
            backend="transformers",
        )
    )  # fmt: skip
    assert spy == expected


def test_self_improve_samples_in_the_prompt_style(tiny_model_dir, tmp_path, spy):
    data = write_tiny_dataset(tmp_path / "sums.json", n=2, seed=3)
    args = self_improve.SelfImproveArguments(
        model_name_or_path=str(tiny_model_dir), dataset_name=str(data), rounds=1, n_samples=2, max_tokens=8,
        prompt_style="word_problem_one_shot", guided=False, output_dir=str(tmp_path / "si"), stop_after_round=0,
        learning_rate=1e-3,
    )  # fmt: skip
    try:
        self_improve.main(args)
    except ValueError as err:  # nothing agreed with its target: the round stops before fine-tuning
        assert "nothing to fine-tune on" in str(err)
    assert spy[:2] == _expected(tiny_model_dir, data, "word_problem_one_shot")
