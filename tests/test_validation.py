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
from sasc_ttrl.core.errors import ConfigError
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.training.checks import check_reporting, last_complete_checkpoint, resolve_resume_checkpoint

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "recipes" / "tiny" / "sasc_cpu.yaml")


@pytest.fixture
def data(tmp_path) -> Path:
    return write_tiny_dataset(tmp_path / "sums.json", n=4)


def refuse_weights(monkeypatch) -> None:
    """Make reading model weights fail the test."""

    def refuse(*args, **kwargs):
        pytest.fail("model weights were loaded before the configuration was validated")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", refuse)


@pytest.fixture(autouse=True)
def no_weights(monkeypatch):
    """Reading model weights fails the test: validation must need the model config only."""
    refuse_weights(monkeypatch)


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
        (
            ["--reward_weights", "1.0", "0.5"],
            "reward_weights has 2 weights but reward_funcs ['sasc'] has 1: give one weight per reward function",
        ),
        (["--reward_funcs", "sasc", "majority", "--reward_weights", "1.0"], "reward_weights has 1 weights"),
        (
            ["--eval_strategy", "steps", "--eval_steps", "1"],
            "eval_strategy 'steps' needs an eval set, and sasc-ttrl train takes none: set eval_strategy: no",
        ),
        (["--eval_strategy", "epoch"], "eval_strategy 'epoch' needs an eval set"),
        (["--report_to", "nosuch"], "report_to: unknown integration 'nosuch'; expected one of ['azure_ml'"),
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


def test_reward_weights_follow_the_builder_labels(capsys, tiny_model_dir, tmp_path):
    """With --use_builder_pseudo_labels the run trains on fixed_label alone: one weight, not one per named reward."""
    rows = [{"id": "q0", "question": "What is 1 + 1?", "pseudo_label": "2", "majority_ratio": 0.75, "method": "sasc"}]
    builder = tmp_path / "sasc.jsonl"
    builder.write_text("".join(json.dumps(r) + "\n" for r in rows))
    err = train(
        capsys, tiny_model_dir, builder, tmp_path / "out", "--use_builder_pseudo_labels", "true",
        "--reward_funcs", "sasc", "majority", "--reward_weights", "1.0", "1.0",
    )  # fmt: skip
    assert "reward_weights has 2 weights but reward_funcs ['fixed_label'] has 1" in err


def test_missing_reporting_package(capsys, tiny_model_dir, data, tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    err = train(capsys, tiny_model_dir, data, tmp_path / "out", "--report_to", "wandb")
    assert (
        err == "sasc-ttrl train: error: report_to: wandb is not installed; pip install wandb (or set report_to: none)"
    )
    assert not (tmp_path / "out").exists()
    # A list (as YAML gives it) is checked item by item; "all" and "none" never fail.
    with pytest.raises(ConfigError, match="report_to: wandb is not installed"):
        check_reporting(["tensorboard", "wandb"])
    check_reporting("none")
    check_reporting(["all"])
    check_reporting([])


def test_every_recipe_integration_is_installed(tiny_model_dir, data, tmp_path, capsys):
    """tensorboard (the Qwen recipes' report_to) is a dependency: the check passes and the run gets past it."""
    from transformers.integrations import is_tensorboard_available

    assert is_tensorboard_available()
    # The run now fails on the next check (an unknown reward), not on report_to.
    err = train(capsys, tiny_model_dir, data, tmp_path / "out", "--report_to", "tensorboard", "--reward_funcs", "x")
    assert "unknown reward 'x'" in err


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The hub's offline flag and token as this process sees them, set per test (no token file, no HF_TOKEN)."""
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"))
    return monkeypatch


def test_push_to_hub_offline(capsys, hub, tiny_model_dir, data, tmp_path):
    hub.setenv("HF_HUB_OFFLINE", "1")
    hub.setenv("HF_TOKEN", "hf_not_a_real_token")
    err = train(capsys, tiny_model_dir, data, tmp_path / "out", "--push_to_hub", "true")
    assert err == (
        "sasc-ttrl train: error: push_to_hub: the hub is offline here (HF_HUB_OFFLINE is set); unset it or drop "
        "--push_to_hub"
    )
    assert not (tmp_path / "out").exists()


def test_push_to_hub_without_a_token(capsys, hub, tiny_model_dir, data, tmp_path):
    from huggingface_hub import get_token

    assert get_token() is None
    err = train(capsys, tiny_model_dir, data, tmp_path / "out", "--push_to_hub", "true")
    assert err == (
        "sasc-ttrl train: error: push_to_hub: no Hugging Face token (set HF_TOKEN, run `hf auth login`, or pass "
        "--hub_token)"
    )
    # With a token the check passes: the run stops at the next problem instead.
    err = train(
        capsys, tiny_model_dir, data, tmp_path / "out", "--push_to_hub", "true", "--hub_token", "hf_x",
        "--reward_funcs", "x",
    )  # fmt: skip
    assert "unknown reward 'x'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_jsonl(capsys, tiny_model_dir, tmp_path, content):
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    err = train(capsys, tiny_model_dir, path, tmp_path / "out")
    assert err == f"sasc-ttrl train: error: data file {path} is empty"
    assert not (tmp_path / "out").exists()


def test_data_without_rows(capsys, tiny_model_dir, tmp_path):
    path = tmp_path / "data.json"
    path.write_text("[]")
    err = train(capsys, tiny_model_dir, path, tmp_path / "out")
    assert err == f"sasc-ttrl train: error: data {path} has no rows"


def test_missing_model_folder(capsys, data, tmp_path, monkeypatch):
    err = train(capsys, tmp_path / "no-model", data, tmp_path / "out")
    assert err == f"sasc-ttrl train: error: model folder {tmp_path / 'no-model'} does not exist"
    assert not (tmp_path / "out").exists()
    # Relative names that can only be folders: ./x, ../x, a/b/c, and org/name when ./org exists.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("./no-model", "../no-model", "a/b/c", "runs/no-model", "~/no-such-sasc-model"):
        err = train(capsys, name, data, tmp_path / "out")
        assert err == f"sasc-ttrl train: error: model folder {name} does not exist", name
    # A folder that holds no model at all.
    err = train(capsys, tmp_path / "runs", data, tmp_path / "out")
    assert f"model folder {tmp_path / 'runs'} holds neither config.json (a model) nor adapter_config.json" in err
    assert not (tmp_path / "out").exists()


def test_missing_model_folder_in_eval_and_build(capsys, data, tmp_path):
    missing = str(tmp_path / "runs" / "no-model")
    err = run_cli(capsys, "eval", "--model_name_or_path", missing, "--benchmarks", str(data),
                  "--output_dir", str(tmp_path / "eval"), "--n", "2")  # fmt: skip
    assert err == f"sasc-ttrl eval: error: model folder {missing} does not exist"
    err = run_cli(capsys, "build", "--model_name_or_path", missing, "--dataset_name", str(data),
                  "--output_dir", str(tmp_path / "build"))  # fmt: skip
    assert err == f"sasc-ttrl build: error: model folder {missing} does not exist"
    assert not (tmp_path / "eval").exists() and not (tmp_path / "build").exists()


def test_adapter_with_a_missing_base_model(capsys, data, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone")}))
    err = train(capsys, adapter, data, tmp_path / "out")
    assert err == f"sasc-ttrl train: error: LoRA adapter {adapter}: model folder {tmp_path / 'gone'} does not exist"


def test_eval_rerun_with_other_settings(capsys, monkeypatch, tiny_model_dir, data, tmp_path):
    """A finished eval, rerun into the same folder with another temperature: one line, exit 2, samples untouched."""
    out = tmp_path / "eval"
    base = [
        "eval", "--model_name_or_path", str(tiny_model_dir), "--benchmarks", str(data), "--output_dir", str(out),
        "--n", "2", "--limit", "2", "--max_tokens", "8", "--backend", "transformers", "--batch_size", "2",
    ]  # fmt: skip
    monkeypatch.undo()  # the first run samples for real
    cli.main(base)
    capsys.readouterr()  # the first run's progress bars
    samples = {p.name: p.read_bytes() for p in (out / "samples").iterdir()}
    assert samples and (out / "eval_config.json").is_file()
    refuse_weights(monkeypatch)  # the rerun must fail before loading the model
    err = run_cli(capsys, *base, "--temperature", "0.9")
    assert err.startswith(f"sasc-ttrl eval: error: {out} holds samples drawn made with other settings")
    assert "'temperature': (0.6, 0.9)" in err and err.endswith("use another output_dir or --overwrite")
    assert {p.name: p.read_bytes() for p in (out / "samples").iterdir()} == samples


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
    """Rank 0 writes trainer_state.json without waiting for rank 1's rng_state_1.pth: a rank killed in
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
    """The same through a real ``python -m sasc_ttrl.cli`` process, where no pytest captures warnings: exit status 2,
    and the error is all of stderr (no library warning before it)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    base = [sys.executable, "-m", "sasc_ttrl.cli", "train", "--config", RECIPE, "--output_dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    runs = {
        f"sasc-ttrl train: error: {data}: answer column 'solution' not found; columns are "
        "['prompt', 'answer', 'source', 'id']": [
            "--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(data), "--answer_column", "solution"
        ],
        f"sasc-ttrl train: error: model folder {tmp_path / 'gone'} does not exist": [
            "--model_name_or_path", str(tmp_path / "gone"), "--dataset_name", str(data)
        ],
    }  # fmt: skip
    for message, extra in runs.items():
        result = subprocess.run(base + extra, capture_output=True, text=True, env=env)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [message]
        assert not out.exists()
