"""End to end: evaluate the tiny model, resume after an interruption, compare runs, resolve benchmark names."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from sasc_ttrl.commands.eval import EvalArguments, main, make_parser
from sasc_ttrl.data import benchmarks
from sasc_ttrl.data.benchmarks import load_benchmark, load_questions, reference_answer
from sasc_ttrl.data.store import read_samples
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.sampling import benchmark

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "sums.json", n=6, seed=1)


def eval_args(model_dir, dataset, output_dir, **overrides) -> EvalArguments:
    settings = dict(
        model_name_or_path=str(model_dir),
        benchmarks=[str(dataset)],
        n=4,
        k_list=[1, 2, 4],
        temperature=0.8,
        max_tokens=48,
        seed=3,
        batch_size=2,
        limit=4,
        output_dir=str(output_dir),
        dtype="float32",
    )
    return EvalArguments(**{**settings, **overrides})


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def clean_run(tiny_model_dir, dataset, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("clean")
    run = main(eval_args(tiny_model_dir, dataset, output_dir, run_name="clean"))
    return output_dir, run


def test_end_to_end_writes_consistent_outputs(clean_run):
    output_dir, run = clean_run
    for name in ("metrics.json", "metrics.md", "pass_at_k.png", "eval_config.json", "samples/sums.jsonl"):
        assert (output_dir / name).is_file(), name
    assert (output_dir / "pass_at_k.png").read_bytes()[:8] == PNG_MAGIC

    lines = read_lines(output_dir / "samples" / "sums.jsonl")
    assert [line["id"] for line in lines] == ["tiny-0", "tiny-1", "tiny-2", "tiny-3"]
    for line in lines:
        assert len(line["samples"]) == 4
        for sample in line["samples"]:
            assert len(sample["entropies"]) == len(sample["token_ids"]) > 0
            assert sample["correct"] in (True, False)

    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(run))
    bench = metrics["benchmarks"]["sums"]
    assert (bench["num_questions"], bench["n"], bench["k_list"]) == (4, 4, [1, 2, 4])
    assert metrics["settings"]["backend"] == "transformers"
    counts = [sum(s["correct"] for s in line["samples"]) for line in lines]
    assert bench["avg@4"] == pytest.approx(sum(counts) / 16)
    assert bench["pass@1"] == pytest.approx(bench["avg@4"])
    assert bench["pass@2"] == pytest.approx(sum(1 - math.comb(4 - c, 2) / math.comb(4, 2) for c in counts) / 4)
    assert bench["pass@4"] == pytest.approx(sum(c > 0 for c in counts) / 4)
    for k in (1, 2, 4):
        assert 0.0 <= bench[f"maj@{k}"] <= bench[f"pass@{k}"] + 1e-12
        assert 0.0 <= bench[f"sasc@{k}"] <= bench[f"pass@{k}"] + 1e-12
    assert bench["maj@1"] == pytest.approx(bench["avg@4"])  # a one-sample vote is the sample itself

    report = (output_dir / "metrics.md").read_text()
    assert "# Evaluation: clean" in report and "| sums | 4 |" in report
    assert f"| 4 | {100 * bench['pass@4']:.1f} [" in report


def test_resume_after_interruption_gives_the_same_samples_and_metrics(
    clean_run, tiny_model_dir, dataset, tmp_path, monkeypatch
):
    clean_dir, clean = clean_run
    sampled = []
    real_sample = benchmark.sample_records

    def counting_sample(backend, model, tokenizer, prompts, settings, **kwargs):
        sampled.append(list(kwargs["sample_keys"]))
        return real_sample(backend, model, tokenizer, prompts, settings, **kwargs)

    monkeypatch.setattr(benchmark, "sample_records", counting_sample)
    # First run stops after 3 questions (other batching); then the process dies while writing the 3rd line.
    main(eval_args(tiny_model_dir, dataset, tmp_path, limit=3, batch_size=3, run_name="resumed"))
    samples_file = tmp_path / "samples" / "sums.jsonl"
    text = samples_file.read_text()
    samples_file.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 40])  # a cut-off last line
    assert read_lines_safe(samples_file) == 2

    sampled.clear()
    resumed = main(eval_args(tiny_model_dir, dataset, tmp_path, run_name="resumed"))
    assert sampled == [[2, 3]]  # only the cut-off question and the new one were sampled
    lines = read_lines(samples_file)
    assert [line["id"] for line in lines] == ["tiny-0", "tiny-1", "tiny-2", "tiny-3"]
    assert_same_samples(lines, read_lines(clean_dir / "samples" / "sums.jsonl"))
    assert resumed["benchmarks"] == clean["benchmarks"]

    # A finished run is not sampled again (the model is not even loaded): the metrics are recomputed.
    monkeypatch.setattr(benchmark, "load_transformers_model", lambda *a, **k: pytest.fail("model loaded"))
    again = main(eval_args(tiny_model_dir, dataset, tmp_path, run_name="resumed"))
    assert again["benchmarks"] == resumed["benchmarks"]


def read_lines_safe(path: Path) -> int:
    return len(read_samples(path))


def assert_same_samples(lines: list[dict], expected: list[dict]) -> None:
    """Same questions and tokens; entropies equal up to the float noise of a different batch padding."""
    assert len(lines) == len(expected)
    for line, other in zip(lines, expected):
        assert {k: v for k, v in line.items() if k != "samples"} == {k: v for k, v in other.items() if k != "samples"}
        for sample, other_sample in zip(line["samples"], other["samples"], strict=True):
            assert {k: v for k, v in sample.items() if k != "entropies"} == {
                k: v for k, v in other_sample.items() if k != "entropies"
            }
            assert sample["entropies"] == pytest.approx(other_sample["entropies"], abs=1e-4)


def test_rerun_with_other_sampling_settings_is_refused(clean_run, tiny_model_dir, dataset):
    output_dir, _ = clean_run
    with pytest.raises(ValueError, match="other settings"):
        main(eval_args(tiny_model_dir, dataset, output_dir, temperature=0.5))
    with pytest.raises(ValueError, match="prompt_style"):  # another prompt is another sample
        main(eval_args(tiny_model_dir, dataset, output_dir, prompt_style="word_problem_one_shot"))


def test_read_samples_drops_only_a_truncated_last_line(tmp_path):
    path = tmp_path / "s.jsonl"
    good = [json.dumps({"id": str(i), "samples": []}) for i in range(3)]
    path.write_text("\n".join(good) + "\n" + '{"id": "3", "sam')
    assert list(read_samples(path)) == ["0", "1", "2"]
    assert path.read_text() == "\n".join(good) + "\n"  # repaired, so appending is safe
    path.write_text(good[0] + "\n{broken\n" + good[1] + "\n")
    with pytest.raises(ValueError, match=":2 is not valid JSON"):
        read_samples(path)
    assert read_samples(tmp_path / "missing.jsonl") == {}


def test_compare_mode(clean_run, tmp_path):
    clean_dir, clean = clean_run
    other = {**clean, "run_name": "other", "benchmarks": {"sums": {**clean["benchmarks"]["sums"], "pass@4": 1.0}}}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text(json.dumps(other))
    out = tmp_path / "cmp"
    result = main(EvalArguments(compare=[str(clean_dir), str(tmp_path / "other")], output_dir=str(out)))
    assert list(result) == ["clean", "other"]
    assert (out / "compare.png").read_bytes()[:8] == PNG_MAGIC
    table = (out / "compare.md").read_text()
    assert "| clean | 4 | 4 |" in table and "| other | 4 | 4 |" in table and "100.0" in table
    assert json.loads((out / "compare.json").read_text())["other"]["benchmarks"]["sums"]["pass@4"] == 1.0
    with pytest.raises(ValueError, match="two or more"):
        main(EvalArguments(compare=[str(clean_dir)], output_dir=str(out)))


def test_parser_reads_a_config_file_and_cli_overrides(tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": "m", "benchmarks": ["amc", "aime24"], "n": 4}))
    (args,) = make_parser().parse_args_and_config(args=["--config", str(config), "--n", "8", "--limit", "3"])
    assert (args.model_name_or_path, args.benchmarks, args.n, args.limit) == ("m", ["amc", "aime24"], 8, 3)
    assert args.k_list == [1, 2, 4, 8]  # default: powers of two up to n
    assert (args.temperature, args.top_p) == (0.6, 0.95)
    assert EvalArguments(model_name_or_path="m", n=6).k_list == [1, 2, 4, 6]
    with pytest.raises(ValueError, match="k must be"):
        EvalArguments(model_name_or_path="m", n=4, k_list=[8])


def test_benchmark_names_resolve_to_the_shipped_files(monkeypatch):
    monkeypatch.delenv("SASC_TTRL_BENCHMARKS_DIR", raising=False)
    aime = load_benchmark("aime24", limit=3)
    assert [q.key for q in aime] == ["0", "1", "2"] and aime[0].gold == "204"
    assert "Aya" in aime[0].question
    assert len(load_benchmark("amc", limit=2)) == 2
    math500 = load_benchmark("math500", limit=2)
    assert math500[0].key == "test/precalculus/807.json"


def test_benchmark_columns_and_answers(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"problem": "1+1?", "solution": "so \\boxed{2}"}) + "\n")
    (question,) = load_benchmark(str(path))
    assert (question.key, question.question, question.gold) == ("0", "1+1?", "2")
    with pytest.raises(KeyError, match="'text'.*columns are"):
        load_benchmark(str(path), prompt_column="text")
    path.write_text(json.dumps({"problem": "1+1?", "hint": "2"}) + "\n")
    with pytest.raises(KeyError, match="no answer column"):
        load_benchmark(str(path))
    with pytest.raises(FileNotFoundError):
        load_benchmark(str(tmp_path / "absent.json"))
    assert reference_answer("Janet ... #### 18") == "18"
    assert reference_answer(204) == "204"


def test_questions_carry_a_worked_solution_when_the_data_has_one(tmp_path, monkeypatch):
    monkeypatch.delenv("SASC_TTRL_BENCHMARKS_DIR", raising=False)
    gsm8k = load_questions("gsm8k", limit=2)
    assert all("####" in q.solution and q.solution.endswith(q.gold) for q in gsm8k)  # GSM8K's worked answers
    path = tmp_path / "q.jsonl"
    rows = [{"question": "1+1?", "answer": "2", "rationale": "1 + 1 = 2."}, {"question": "2+2?", "answer": "4"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [q.solution for q in load_questions(str(path))] == ["1 + 1 = 2.", None]  # a missing one is None
    assert [q.solution for q in load_questions(str(path), solution_column="answer")] == ["2", "4"]
    with pytest.raises(KeyError, match="solution column 'worked'"):
        load_questions(str(path), solution_column="worked")
    path.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    assert load_questions(str(path))[0].solution is None  # no solution column at all: fine


def test_hub_names_go_to_the_hub_loader(monkeypatch):
    from datasets import Dataset

    calls = []

    def fake_load(source, split="train", config=None):
        calls.append((source, split))
        return Dataset.from_list([{"problem": "2+2?", "answer": "4", "unique_id": "a"}])

    monkeypatch.setattr(benchmarks, "load_raw_dataset", fake_load)
    (question,) = load_benchmark(benchmarks.HUB_BENCHMARKS["math500"][0])
    assert calls == [("HuggingFaceH4/MATH-500", "test")]
    assert (question.key, question.question, question.gold) == ("a", "2+2?", "4")
    load_benchmark("HuggingFaceH4/aime_2024", split="validation")
    assert calls[-1] == ("HuggingFaceH4/aime_2024", "validation")


def test_eval_of_a_named_benchmark_from_another_folder(tiny_model_dir, tmp_path, monkeypatch):
    """`sasc-ttrl eval --benchmarks gsm8k --limit 2` in a folder with nothing beside it: the shipped file is used."""
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SASC_TTRL_")}
    cmd = [
        sys.executable, "-m", "sasc_ttrl.cli", "eval", "--model_name_or_path", str(tiny_model_dir),
        "--benchmarks", "gsm8k", "--limit", "2", "--n", "2", "--max_tokens", "8", "--backend", "transformers",
        "--dtype", "float32", "--output_dir", "out",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in (tmp_path / "out" / "samples" / "gsm8k.jsonl").read_text().splitlines()]
    assert [line["gold"] for line in lines] == ["18", "3"]  # GSM8K test's first two answers
    assert "Janet" in lines[0]["question"]


def test_metrics_carry_bootstrap_intervals_and_plots_come_as_png_and_pdf(clean_run):
    from PIL import Image

    output_dir, run = clean_run
    bench = run["benchmarks"]["sums"]
    for k in bench["k_list"]:
        for metric in ("pass", "maj", "sasc"):
            low, high = bench["ci95"][f"{metric}@{k}"]
            assert 0.0 <= low <= bench[f"{metric}@{k}"] <= high <= 1.0
    assert (output_dir / "pass_at_k.pdf").read_bytes()[:4] == b"%PDF"
    with Image.open(output_dir / "pass_at_k.png") as image:
        assert image.size[0] >= 800  # one 4.2-inch panel at 200 dpi
    assert "[95% CI]" in (output_dir / "metrics.md").read_text()


def test_bootstrap_ci_by_hand():
    from sasc_ttrl.core.metrics import bootstrap_ci

    assert bootstrap_ci([{"a": 1.0}] * 5) == {"a": [1.0, 1.0]}
    low, high = bootstrap_ci([{"a": 0.0}, {"a": 1.0}] * 50, samples=2000)["a"]
    assert 0.35 < low < 0.45 and 0.55 < high < 0.65  # mean 0.5, standard error 0.05
    assert bootstrap_ci([{"a": 0.0}, {"a": 1.0}] * 5) == bootstrap_ci([{"a": 0.0}, {"a": 1.0}] * 5)  # seeded


def test_plots_never_go_below_zero_and_compare_shows_sasc(monkeypatch, tmp_path):
    from sasc_ttrl.reports import evaluation

    figures = []
    monkeypatch.setattr(evaluation, "save_figure_atomic", lambda fig, path, **kw: figures.append((fig, Path(path))))
    bench = {"k_list": [1, 2], "num_questions": 2, "n": 2, "pass@1": 0.0, "pass@2": 0.01, "maj@1": 0.0}
    bench.update({"maj@2": 0.0, "sasc@1": 0.0, "sasc@2": 0.0, "ci95": {"pass@1": [0.0, 0.0], "pass@2": [0.0, 0.02]}})
    evaluation.plot_compare([{"benchmarks": {"b": bench}}] * 2, ["x", "y"], tmp_path / "compare.png")
    fig = figures[0][0]
    assert [p.suffix for _, p in figures] == [".png", ".pdf"]
    assert all(ax.get_ylim()[0] == 0.0 for ax in fig.axes)
    # A column per metric, a colour per run, and one legend, below every panel rather than over the curves.
    assert [ax.get_title() for ax in fig.axes] == ["b: pass@k", "b: maj@k", "b: sasc@k"]
    assert all(ax.get_legend_handles_labels()[1] == ["x", "y"] for ax in fig.axes)
    (legend,) = fig.legends
    assert [text.get_text() for text in legend.get_texts()] == ["x", "y"]
    fig.canvas.draw()
    legend_top = legend.get_window_extent().y1
    assert all(legend_top <= ax.get_window_extent().y0 for ax in fig.axes)
