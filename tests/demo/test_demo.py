"""`sasc-ttrl demo`: the whole pipeline on the tiny model, every output file, the arguments and the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sasc_ttrl.cli import main as cli_main
from sasc_ttrl.demo.report import before_after_rows
from sasc_ttrl.demo.run import PRESETS, DemoArguments, make_questions

REPO = Path(__file__).resolve().parents[2]
RUNS = ("base", "sasc", "majority")
SPLITS = ("trained", "held_out")


def check_outputs(out: Path, args: DemoArguments) -> dict:
    """Every file the demo promises, with contents that match the arguments; returns metrics.json."""
    result = json.loads((out / "metrics.json").read_text())
    n, steps = args.eval_samples, args.max_steps
    assert result["settings"]["seed"] == args.seed
    assert len(result["questions"]["trained"]) == args.num_train_questions
    assert len(result["questions"]["held_out"]) == args.num_held_out_questions
    assert not set(result["questions"]["trained"]) & set(result["questions"]["held_out"])
    for run in RUNS:
        for split in SPLITS:
            metrics = result["evaluations"][run][split]
            assert metrics["n"] == n and metrics["num_questions"] == len(result["questions"][split])
            for key in ("pass@1", f"avg@{n}", f"maj@{n}", f"pass@{n}"):
                assert 0.0 <= metrics[key] <= 1.0, (run, split, key)
            assert metrics["pass@1"] == pytest.approx(metrics[f"avg@{n}"])
            assert metrics[f"pass@{n}"] >= metrics["pass@1"] - 1e-9
            lines = [json.loads(x) for x in (out / "samples" / f"{run}_{split}.jsonl").read_text().splitlines()]
            assert [line["id"] for line in lines] == result["questions"][split]
            assert all(len(line["samples"]) == n for line in lines)
            graded = [s["correct"] for line in lines for s in line["samples"]]
            assert sum(graded) / len(graded) == pytest.approx(metrics["pass@1"])
    for vote in ("sasc", "majority"):
        history = [e for e in result["training"][vote]["log_history"] if f"{vote}/label_accuracy" in e]
        assert [e["step"] for e in history] == list(range(1, steps + 1))
        assert all(0.0 <= e[f"rewards/{vote}_reward/mean"] <= 1.0 for e in history)
        assert result["training"][vote]["vote_settings"]["filter_ratio"] >= 0.0
    sasc = [e for e in result["training"]["sasc"]["log_history"] if "sasc/kept_fraction" in e]
    assert sasc and all(0.0 <= e["sasc/label_differs_from_majority"] <= 1.0 for e in sasc)
    assert all(0.0 <= e["sasc/kept_fraction"] <= 1.0 for e in sasc)
    for name, min_width in (("training_curves.png", 1200), ("pass_at_k.png", 600)):
        with Image.open(out / name) as image:
            image.verify()
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] >= min_width
    assert not list(out.rglob(".*.tmp"))
    assert set(result["seconds"]) >= {"eval_base", "train_sasc", "train_majority", "total"}
    return result


def test_demo_quick_small_writes_every_output(tiny_model_dir, tmp_path, capsys):
    """The --quick pipeline, cut down to seconds: base eval, SASC-TTRL, eval, TTRL, eval, table and files."""
    out = tmp_path / "demo"
    flags = ["--quick", "--model", str(tiny_model_dir), "--output_dir", str(out), "--seed", "3"]
    flags += ["--num_train_questions", "4", "--num_held_out_questions", "3", "--eval_samples", "4", "--max_steps", "2"]
    cli_main(["demo", *flags])
    args = DemoArguments(
        quick=True, seed=3, num_train_questions=4, num_held_out_questions=3, eval_samples=4, max_steps=2
    )
    result = check_outputs(out, args)
    assert result["model"] == str(tiny_model_dir)
    printed = capsys.readouterr().out
    assert "Before / after" in printed and "SASC-TTRL" in printed and "TTRL" in printed
    assert f"{100 * result['evaluations']['base']['held_out']['pass@1']:.1f}" in printed


def test_presets_fill_unset_fields_and_flags_win():
    default, quick = DemoArguments(), DemoArguments(quick=True, max_steps=5)
    assert default.num_generations == PRESETS["default"]["num_generations"]
    assert default.task == "word_problems" and quick.task == "sums"
    assert quick.max_steps == 5 and quick.lora_r == PRESETS["quick"]["lora_r"]
    with pytest.raises(ValueError, match="methods"):
        DemoArguments(methods=["sasc", "oracle"])
    with pytest.raises(ValueError, match="task"):
        DemoArguments(task="chess")
    with pytest.raises(ValueError, match="num_generations"):
        DemoArguments(num_generations=1)
    assert (default.micro_batches, default.gradient_checkpointing) == (6, True)  # the demo's peak-memory settings
    with pytest.raises(ValueError, match="micro_batches must divide the 12 rollouts"):
        DemoArguments(micro_batches=5)


def test_micro_batches_and_checkpointing_leave_the_update_unchanged(tiny_model_dir, tmp_path):
    """One step in 4 micro-batches with gradient checkpointing moves the weights as one micro-batch does."""
    from sasc_ttrl.demo.run import train_config, train_run

    base = DemoArguments(quick=True, seed=2, num_train_questions=2, max_steps=1, learning_rate=0.05)
    split = DemoArguments(quick=True, seed=2, num_train_questions=2, max_steps=1, learning_rate=0.05,
                          micro_batches=4, gradient_checkpointing=True)  # fmt: skip
    config = train_config(split, "sasc", tmp_path / "config")
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (4, 4)
    assert config.steps_per_generation == 4 and config.gradient_checkpointing
    questions, _ = make_questions(base)
    models = [train_run(args, "sasc", str(tiny_model_dir), questions, tmp_path / str(i))[0]
              for i, args in enumerate((base, split))]  # fmt: skip
    from transformers import AutoModelForCausalLM

    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    one, four = models[0].state_dict(), models[1].state_dict()
    moved = max((one[name] - start[name]).abs().max().item() for name in start)
    assert moved > 1e-3  # the step changed the model, so the comparison below means something
    worst = max((one[name] - four[name]).abs().max().item() for name in start)
    assert worst < 1e-3 * moved


@pytest.mark.parametrize("quick", [False, True])
def test_questions_are_disjoint_seeded_and_hide_nothing_in_the_prompt(quick):
    args = DemoArguments(quick=quick, seed=5, num_train_questions=10, num_held_out_questions=7)
    train, held_out = make_questions(args)
    assert (train, held_out) == make_questions(DemoArguments(quick=quick, seed=5, num_train_questions=10,
                                                             num_held_out_questions=7))  # fmt: skip
    assert len(train) == 10 and len(held_out) == 7
    assert not {q["question"] for q in train} & {q["question"] for q in held_out}
    for q in train + held_out:
        assert q["messages"][-1]["role"] == "user" and q["question"] in q["messages"][-1]["content"]
        assert f"boxed{{{q['answer']}}}" not in " ".join(m["content"] for m in q["messages"])


def test_before_after_rows_report_changes_against_the_base():
    def bench(p1: float) -> dict:
        return {"n": 4, "k_list": [1, 2, 4], "pass@1": p1, "maj@4": p1 + 0.1, "pass@4": p1 + 0.2}

    result = {
        "methods": {"sasc": "SASC-TTRL", "majority": "TTRL"},
        "evaluations": {
            "base": {"trained": bench(0.2), "held_out": bench(0.3)},
            "sasc": {"trained": bench(0.45), "held_out": bench(0.3)},
            "majority": {"trained": bench(0.1), "held_out": bench(0.35)},
        },
    }
    rows = before_after_rows(result)
    assert [row[:2] for row in rows] == [
        ["trained", "pass@1 (avg@4)"], ["trained", "maj@4"], ["trained", "pass@4"],
        ["held-out", "pass@1 (avg@4)"], ["held-out", "maj@4"], ["held-out", "pass@4"],
    ]  # fmt: skip
    assert rows[0][2:4] == ["20.0", "45.0"] and "+25.0" in rows[0][4] and "-10.0" in rows[0][6]
    assert rows[3][3] == "30.0" and "+0.0" in rows[3][4] and "+5.0" in rows[3][6]


@pytest.mark.slow
def test_demo_quick_command_full_size(tmp_path):
    """``sasc-ttrl demo --quick`` exactly as a user runs it (full quick preset, about a minute on 2 cores)."""
    out = tmp_path / "demo"
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run(
        [sys.executable, "-m", "sasc_ttrl.cli", "demo", "--quick", "--output_dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_outputs(out, DemoArguments(quick=True))


def test_demo_resumes_finished_phases_keeps_models_and_refuses_other_settings(tiny_model_dir, tmp_path, monkeypatch):
    """A rerun reads finished phases instead of redoing them; sasc_exp trains with the literal exp(-z), T = 1."""
    from sasc_ttrl.core.errors import ConfigError
    from sasc_ttrl.demo import run as demo_run

    out = tmp_path / "demo"
    flags = ["--quick", "--model", str(tiny_model_dir), "--output_dir", str(out), "--seed", "1", "--max_steps", "1"]
    flags += ["--num_train_questions", "2", "--num_held_out_questions", "2", "--eval_samples", "2"]
    trained = []
    real_train_run = demo_run.train_run

    def counting_train_run(args, method, *rest):
        trained.append(method)
        return real_train_run(args, method, *rest)

    monkeypatch.setattr(demo_run, "train_run", counting_train_run)
    first = demo_run.main(
        *demo_run.make_parser().parse_args_and_config(flags + ["--methods", "sasc_exp", "--save_models"])
    )
    assert trained == ["sasc_exp"]
    assert (out / "models" / "sasc_exp" / "config.json").exists()
    votes = first["training"]["sasc_exp"]["vote_settings"]
    assert (votes["vote_weighting"], votes["weight_temperature"], votes["weight_statistic"]) == ("exp", 1.0, "std")
    assert first["training"]["sasc_exp"]["reward"] == "sasc"

    again = demo_run.main(*demo_run.make_parser().parse_args_and_config(flags + ["--methods", "sasc_exp", "majority"]))
    assert trained == ["sasc_exp", "majority"]  # the finished sasc_exp phase was read, not redone
    assert again["evaluations"]["sasc_exp"] == first["evaluations"]["sasc_exp"]
    assert again["evaluations"]["base"] == first["evaluations"]["base"]
    with pytest.raises(ConfigError, match="max_steps"):
        demo_run.main(*demo_run.make_parser().parse_args_and_config([*flags[:-1], "2", "--max_steps", "2"]))


def test_smollm2_without_gguf_says_which_extra(tmp_path, monkeypatch):
    """gguf is the `demo` extra: without it, preparing SmolLM2 fails with one line naming it, before any download."""
    import importlib.util

    from sasc_ttrl.core.errors import ConfigError
    from sasc_ttrl.demo import smollm2

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    monkeypatch.setattr(smollm2, "download_gguf", lambda *a: pytest.fail("downloaded without gguf"))
    with pytest.raises(ConfigError, match=r"gguf.*sasc-ttrl\[demo\]"):
        smollm2.prepare_smollm2(tmp_path / "smollm2")
    assert not (tmp_path / "smollm2").exists()
