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
        assert differing <= {"reward_funcs", "min_label_share", "output_dir"}, (sasc.name, differing)
        assert a["reward_funcs"] == ["sasc"] and b["reward_funcs"] == ["majority"]
        assert b["min_label_share"] == 0.0  # TTRL trains on every group


GPU_RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("Qwen2.5-Math-*/*/*.yaml"))
# TTRL's scripts (PRIME-RL/TTRL verl/examples/ttrl/aime.sh, amc.sh): DATA_TRAIN_BATCH_SIZE=8 prompts per step,
# N_VOTES_PER_PROMPT=64, N_SAMPLES_PER_PROMPT=32, MINI_BATCH_SIZE=1 prompt per update (x 32 samples), EPISODE=80 / 30,
# lr_warmup_steps_ratio=0.03 of the steps; verl's loader drops the last partial batch. No MATH-500 script (10 is ours).
TTRL_EPISODES = {"aime24": 80, "amc": 30, "math500": 10}
TTRL_PROMPTS_PER_STEP, TTRL_VOTES, TTRL_SAMPLES, TTRL_MINI_BATCH_PROMPTS = 8, 64, 32, 1


def ttrl_schedule(questions: int, episodes: int) -> dict:
    """TTRL's numbers by its own formula (verl's ray_trainer and dp_actor)."""
    steps_per_epoch = questions // TTRL_PROMPTS_PER_STEP
    updates_per_step = TTRL_PROMPTS_PER_STEP * TTRL_SAMPLES // (TTRL_MINI_BATCH_PROMPTS * TTRL_SAMPLES)
    return {
        "prompts_per_generation": TTRL_PROMPTS_PER_STEP,
        "rollouts_voted": TTRL_VOTES,
        "rollouts_trained": TTRL_SAMPLES,
        "rollouts_per_update": TTRL_MINI_BATCH_PROMPTS * TTRL_SAMPLES,
        "updates_per_epoch": steps_per_epoch * updates_per_step,
        "total_updates": steps_per_epoch * updates_per_step * episodes,
        "warmup_steps": int(0.03 * steps_per_epoch * episodes),  # in rollout steps: verl steps its schedule per step
    }


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_gpu_recipe_runs_ttrls_schedule_on_8_processes(recipe, tmp_path):
    from sasc_ttrl.data.benchmarks import load_benchmark
    from sasc_ttrl.training.schedule import rollout_schedule

    args = ["--config", str(recipe), "--output_dir", str(tmp_path), "--bf16", "false", "--use_cpu", "true"]
    script_args, training_args, _ = make_parser().parse_args_and_config(args=args)
    questions = len(load_benchmark(script_args.dataset_name))
    assert questions == {"aime24": 30, "amc": 83, "math500": 500}[script_args.dataset_name]
    ours = rollout_schedule(training_args, questions, num_processes=8)
    ttrl = ttrl_schedule(questions, TTRL_EPISODES[script_args.dataset_name])
    counts = {k: v for k, v in ttrl.items() if k != "warmup_steps"}
    assert {k: getattr(ours, k) for k in counts} == counts
    assert ours.updates_per_generation == 8
    # TRL steps the schedule per update, verl per rollout step: the same warmup to within one step.
    assert abs(ours.warmup_updates / ours.updates_per_generation - ttrl["warmup_steps"]) <= 1
    assert training_args.lr_scheduler_type == "cosine" and training_args.beta == 0.001
    assert training_args.loss_type == "bnpo" and training_args.advantage_group == "trained"
    expected = {"aime24": (24, 1920), "amc": (80, 2400), "math500": (496, 4960)}[script_args.dataset_name]
    assert (ours.updates_per_epoch, ours.total_updates) == expected  # the numbers, written out


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_gpu_recipe_wastes_nothing_and_states_the_is_mask(recipe):
    raw = yaml.safe_load(recipe.read_text())
    text = recipe.read_text()
    # Completions: a few printed, not all 512 of up to 3,072 tokens.
    assert not raw.get("log_completions") or 0 < raw.get("num_completions_to_print", 0) <= 8
    # Checkpoints: never every epoch; at most one kept.
    assert raw["save_strategy"] != "epoch" and raw["save_total_limit"] == 1
    assert raw["save_strategy"] == "no" or 0 < raw["save_steps"] <= 0.25 or raw["save_steps"] >= 100
    # The importance-sampling choice is written out, with its reason in a comment.
    assert "vllm_importance_sampling_correction" in raw
    assert "sequence_mask" in text and "../shared" not in text


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


def test_gpu_requirements_agree_with_setup_and_satisfy_every_pin():
    """requirements/gpu.in is setup.py's install_requires plus the deepspeed, vllm and demo extras, and the resolved
    requirements/gpu.txt satisfies each of those pins (one vLLM release, TRL's range, the project's transformers)."""
    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[1]
    wanted = [Requirement(line) for line in (root / "requirements" / "gpu.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")]  # fmt: skip
    import ast

    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(SETUP).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) in ("install_requires", "extras")
    }
    specs = values["install_requires"] + [s for name in ("deepspeed", "vllm", "demo") for s in values["extras"][name]]
    declared = {Requirement(spec).name: str(Requirement(spec).specifier) for spec in specs}
    assert {r.name: str(r.specifier) for r in wanted} == declared
    locked = {}
    for line in (root / "requirements" / "gpu.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            locked[name.lower()] = version
    for requirement in wanted:
        assert requirement.specifier.contains(locked[requirement.name.lower()]), requirement
    assert locked["vllm"] == "0.30.0" and "vllm==0.30.0" in SETUP
