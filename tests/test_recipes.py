"""Every recipe parses with the training parser, and the SASC / TTRL recipes differ only in the vote."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sasc_ttrl.commands.train import make_parser
from sasc_ttrl.training.checks import INTEGRATION_PACKAGES, check_reporting

ALL_RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))
# Recipes of the offline commands live in recipes/<Model>/<folder>/ and parse with that folder's command.
OFFLINE_COMMANDS = {"builder": "build", "prm": "prm", "calibrate": "calibrate", "self-improve": "self-improve"}
RECIPES = [p for p in ALL_RECIPES if p.parent.name not in OFFLINE_COMMANDS]
SETUP = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
INSTALL_REQUIRES = SETUP.split("install_requires = [", 1)[1].split("]", 1)[0]
OFFLINE_RECIPES = [p for p in ALL_RECIPES if p.parent.name in OFFLINE_COMMANDS]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_recipe_parses(recipe, tmp_path):
    # bf16 recipes target GPUs; parse them with the CPU override so TrainingArguments accepts them here.
    args = ["--config", str(recipe), "--output_dir", str(tmp_path)]
    raw = yaml.safe_load(recipe.read_text())
    if raw.get("bf16"):
        args += ["--bf16", "false", "--use_cpu", "true"]
    script_args, training_args, model_args = make_parser().parse_args_and_config(args=args)
    assert model_args.model_name_or_path == raw["model_name_or_path"]
    assert script_args.dataset_name == raw["dataset_name"]
    assert training_args.reward_funcs == raw["reward_funcs"]
    # Drifting TRL defaults must be explicit in every recipe.
    for key in ("beta", "loss_type", "num_generations", "temperature", "gradient_checkpointing", "bf16"):
        assert key in raw, f"{recipe}: {key} must be written out"
    # Its report_to integrations are installed, and come with the package (install_requires), not by luck.
    check_reporting(training_args.report_to)
    for name in training_args.report_to:
        assert f'"{INTEGRATION_PACKAGES[name]}"' in INSTALL_REQUIRES, f"{recipe}: {name} is not a dependency"


@pytest.mark.parametrize("model", ["Qwen2.5-Math-1.5B", "Qwen2.5-Math-7B"])
def test_sasc_and_ttrl_recipes_differ_only_in_the_vote(model):
    root = Path(__file__).resolve().parents[1] / "recipes" / model
    assert len(list((root / "sasc").glob("*.yaml"))) >= 3
    for sasc in sorted((root / "sasc").glob("*.yaml")):
        ttrl = root / "ttrl" / sasc.name
        a, b = yaml.safe_load(sasc.read_text()), yaml.safe_load(ttrl.read_text())
        differing = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        assert differing == {"reward_funcs", "output_dir"}, (sasc.name, differing)
        assert a["reward_funcs"] == ["sasc"] and b["reward_funcs"] == ["majority"]


@pytest.mark.parametrize("recipe", OFFLINE_RECIPES, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_offline_recipe_parses_with_its_command(recipe):
    import importlib

    from sasc_ttrl.cli import COMMANDS

    module = importlib.import_module(COMMANDS[OFFLINE_COMMANDS[recipe.parent.name]][0])
    (args,) = module.make_parser().parse_args_and_config(args=["--config", str(recipe)])
    raw = yaml.safe_load(recipe.read_text())
    assert {k: getattr(args, k) for k in raw} == raw


@pytest.mark.parametrize("model", ["Qwen2.5-Math-1.5B", "Qwen2.5-Math-7B"])
def test_gpu_recipe_gets_past_its_data_from_a_bare_folder(model, tmp_path):
    """A user's machine: nothing beside the clone, no hub. The recipe's benchmark data and reporting integration
    resolve; the run stops only at the model, which must come from the hub (one line, exit 2, nothing written)."""
    import os
    import subprocess
    import sys

    recipe = Path(__file__).resolve().parents[1] / "recipes" / model / "sasc" / "config_math500.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SASC_TTRL_")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = [
        sys.executable, "-m", "sasc_ttrl.cli", "train", "--config", str(recipe), "--bf16", "false",
        "--use_cpu", "true", "--use_vllm", "false", "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("sasc-ttrl train: error:") and f"Qwen/{model}" in error, error
    assert "math500" not in error and "tensorboard" not in error
    assert not (tmp_path / "out").exists()
