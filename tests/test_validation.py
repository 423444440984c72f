"""Configuration and data errors through the real CLI: one line on stderr, exit code 2, nothing written.

Each case runs ``sasc-ttrl <command> ...`` in-process (`sasc_ttrl.cli.main`), with weights loading made to fail the
test, so the error must come before any model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers

from sasc_ttrl import cli
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.training.checks import last_complete_checkpoint, resolve_resume_checkpoint

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "recipes" / "tiny" / "sasc_cpu.yaml")


@pytest.fixture
def data(tmp_path) -> Path:
    return write_tiny_dataset(tmp_path / "sums.json", n=4)


@pytest.fixture(autouse=True)
def no_weights(monkeypatch):
    """Reading model weights fails the test: validation must need the model config only."""

    def refuse(*args, **kwargs):
        pytest.fail("model weights were loaded before the configuration was validated")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", refuse)


def run_cli(capsys, *argv: str) -> str:
    """Run the CLI, expect exit code 2, return the error line."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, f"not one line: {err!r}"
    return err


def train(capsys, tiny_model_dir, data, output_dir, *extra: str) -> str:
    return run_cli(
        capsys,
        "train", "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(data),
        "--output_dir", str(output_dir), *extra,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reward_funcs", "best_of_n"], "unknown reward 'best_of_n'"),
        (["--reward_funcs", "no_such_module.reward"], "could not import reward function 'no_such_module.reward'"),
        (["--filter_ratio", "1.0"], "filter_ratio must be in [0, 1), got 1.0"),
        (["--filter_ratio", "-0.1"], "filter_ratio must be in [0, 1), got -0.1"),
        (["--entropy_top_k", "0"], "entropy_top_k must be >= 1, got 0"),
        (["--entropy_top_k", "100000"], "entropy_top_k=100000 is outside [1, "),
        (["--num_generations", "1", "--per_device_train_batch_size", "2"], "at least 2 generations"),
        (
            ["--prompt_column", "problem"],
            "prompt column 'problem' not found; columns are ['prompt', 'answer', 'source', 'id']",
        ),
        (
            ["--answer_column", "solution"],
            "answer column 'solution' not found; columns are ['prompt', 'answer', 'source', 'id']",
        ),
        (["--resume_from_checkpoint", "auto"], "--resume_from_checkpoint auto: no complete checkpoint-<step> folder"),
        (["--resume_from_checkpoint", "/no/such/checkpoint-3"], "/no/such/checkpoint-3: no such folder"),
    ],
)
def test_train_config_errors(capsys, tiny_model_dir, data, tmp_path, extra, message):
    out = tmp_path / "out"
    err = train(capsys, tiny_model_dir, data, out, *extra)
    assert err.startswith("sasc-ttrl train: error: ")
    assert message in err
    assert not out.exists()


def test_vocabulary_bound_is_the_model_config(capsys, tiny_model_dir, data, tmp_path):
    vocab = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    err = train(capsys, tiny_model_dir, data, tmp_path / "out", "--entropy_top_k", str(vocab + 1))
    assert f"entropy_top_k={vocab + 1} is outside [1, {vocab}]" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("problem", ["missing", "not json", "empty", "directory"])
def test_train_data_file_errors(capsys, tiny_model_dir, tmp_path, problem):
    path = tmp_path / "data.json"
    if problem == "not json":
        path.write_bytes(b"\x00\xff{ not json")
    elif problem == "empty":
        path.write_text("")
    elif problem == "directory":
        path.mkdir()
    err = train(capsys, tiny_model_dir, path, tmp_path / "out")
    assert str(path) in err
    assert not (tmp_path / "out").exists()


def test_missing_model_config(capsys, data, tmp_path):
    err = train(capsys, tmp_path / "no-model", data, tmp_path / "out")
    assert f"cannot read the model config of '{tmp_path / 'no-model'}'" in err
    assert not (tmp_path / "out").exists()


def test_eval_errors(capsys, tiny_model_dir, data, tmp_path):
    out = tmp_path / "eval"
    base = ["eval", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out), "--n", "2"]
    err = run_cli(capsys, *base, "--benchmarks", str(tmp_path / "missing.json"))
    assert err == f"sasc-ttrl eval: error: benchmark file {tmp_path / 'missing.json'} does not exist"
    err = run_cli(capsys, *base, "--benchmarks", str(data), "--prompt_column", "problem")
    assert "prompt column 'problem' not found; columns are ['prompt', 'answer', 'source', 'id']" in err
    err = run_cli(capsys, *base, "--benchmarks", str(data), "--entropy_top_k", "100000")
    assert "entropy_top_k=100000 is outside" in err
    err = run_cli(capsys, *base, "--benchmarks", str(data), "--filter_ratio", "1.5")
    assert "filter_ratio must be in [0, 1)" in err
    assert not out.exists()


def test_build_errors(capsys, tiny_model_dir, data, tmp_path):
    out = tmp_path / "build"
    base = ["build", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    err = run_cli(capsys, *base, "--dataset_name", str(tmp_path / "missing.jsonl"))
    assert "missing.jsonl does not exist" in err
    err = run_cli(capsys, *base, "--dataset_name", str(data), "--methods", "best-of-everything")
    assert "unknown selection method 'best-of-everything'" in err
    err = run_cli(capsys, *base, "--dataset_name", str(data), "--prompt_column", "problem")
    assert "prompt column 'problem' not found" in err
    assert not out.exists()


# -- resume resolution ------------------------------------------------------------------------------------------------
def make_checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_auto_resume_picks_the_latest_complete_checkpoint(tmp_path):
    assert last_complete_checkpoint(tmp_path / "nothing") is None
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 10)
    make_checkpoint(tmp_path, 9)
    (tmp_path / "checkpoint-notes").mkdir()
    assert resolve_resume_checkpoint("auto", str(tmp_path)) == str(tmp_path / "checkpoint-10")
    # A checkpoint cut short while saving (no trainer_state.json) is skipped, not resumed from.
    make_checkpoint(tmp_path, 12, complete=False)
    assert resolve_resume_checkpoint("auto", str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert resolve_resume_checkpoint(None, str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert resolve_resume_checkpoint(str(tmp_path / "checkpoint-2"), str(tmp_path)) == str(tmp_path / "checkpoint-2")
    with pytest.raises(ValueError, match="no trainer_state.json"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-12"), str(tmp_path))


def test_a_checkpoint_needs_every_ranks_rng_state_in_a_multi_process_run(tmp_path):
    """Rank 0 writes trainer_state.json without waiting for rank 1's rng_state_1.pth (issue 19): a rank killed in
    between leaves a folder that looks complete but would resume that rank with a fresh sampling RNG."""
    for step in (2, 4):
        path = make_checkpoint(tmp_path, step)
        (path / "rng_state_0.pth").write_bytes(b"")
    (tmp_path / "checkpoint-2" / "rng_state_1.pth").write_bytes(b"")
    assert resolve_resume_checkpoint("auto", str(tmp_path), world_size=2) == str(tmp_path / "checkpoint-2")
    assert resolve_resume_checkpoint(None, str(tmp_path), world_size=2) == str(tmp_path / "checkpoint-2")
    with pytest.raises(ValueError, match="no rng_state_1.pth"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-4"), str(tmp_path), world_size=2)
    (tmp_path / "checkpoint-4" / "rng_state_1.pth").write_bytes(b"")
    assert resolve_resume_checkpoint("auto", str(tmp_path), world_size=2) == str(tmp_path / "checkpoint-4")
    # One process reads rng_state.pth (absent here: the Trainer then goes on with a warning), as before.
    assert resolve_resume_checkpoint("auto", str(tmp_path)) == str(tmp_path / "checkpoint-4")
    # A checkpoint saved without RNG states (save_only_model) is complete for any number of processes.
    make_checkpoint(tmp_path, 6)
    assert resolve_resume_checkpoint("auto", str(tmp_path), world_size=2) == str(tmp_path / "checkpoint-6")


@pytest.mark.slow
def test_real_process_exit_code_and_message(tiny_model_dir, data, tmp_path):
    """The same through a real ``python -m sasc_ttrl.cli`` process: exit status 2, the error as the last line."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "sasc_ttrl.cli", "train", "--config", RECIPE,
        "--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(data), "--output_dir", str(out),
        "--answer_column", "solution",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"sasc-ttrl train: error: {data}: answer column 'solution' not found; columns are "
        "['prompt', 'answer', 'source', 'id']"
    )
    assert "Traceback" not in result.stderr
    assert not out.exists()
