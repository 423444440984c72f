"""scripts/gpu_check.sh and scripts/gpu_check.py: the parts that run without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_check  # noqa: E402

RECIPE = "recipes/Qwen2.5-Math-1.5B/sasc/config_math500.yaml"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", "scripts/gpu_check.sh", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_help_and_argument_errors(tmp_path):
    help_ = run("--help")
    assert help_.returncode == 0 and "bash scripts/gpu_check.sh MODEL_PATH" in help_.stdout
    for args, message in [
        ((), "MODEL_PATH is required"),
        (("--bogus",), "unknown option --bogus"),
        (("a/b", "c/d"), "one MODEL_PATH only"),
        ((str(tmp_path / "nope"),), "no such folder"),
        ((str(tmp_path),), "a folder without config.json"),
        (("org/model", "--recipe", "nope.yaml"), "recipe nope.yaml: no such file"),
    ]:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1].startswith("gpu_check: error:")
        assert message in proc.stderr, (args, proc.stderr)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit; this machine has a GPU")
def test_preflight_prints_versions_then_stops_without_a_gpu(tiny_model_dir):
    proc = run(str(tiny_model_dir))
    assert proc.returncode == 3, proc.stderr
    for name in ("torch", "transformers", "trl", "sasc-ttrl"):
        assert f"ok {name} " in proc.stdout
    assert "pip check:" in proc.stdout
    assert "no CUDA GPU is visible" in proc.stderr.strip().splitlines()[-1]
    assert "2/3" not in proc.stdout  # nothing after the failed step


def test_training_arguments_are_the_recipe_with_two_updates(tiny_model_dir, tmp_path):
    from sasc_ttrl.commands.train import make_parser

    argv = gpu_check.train_argv(str(tiny_model_dir), str(ROOT / RECIPE), str(tmp_path))
    script_args, args, model_args = make_parser().parse_args_and_config(
        args=[*argv, "--bf16", "false", "--use_cpu", "true"]
    )
    assert model_args.model_name_or_path == str(tiny_model_dir) and args.max_steps == 2
    assert args.vllm_importance_sampling_correction and args.vllm_importance_sampling_mode == "sequence_mask"
    assert args.save_strategy == "no" and args.report_to in ([], ["none"])
    # Everything else is the recipe's: on one process one prompt's 64 rollouts per generation, 8 updates each.
    from sasc_ttrl.training.schedule import rollout_schedule

    schedule = rollout_schedule(args, 500, num_processes=1)
    assert (schedule.prompts_per_generation, schedule.updates_per_generation, schedule.total_updates) == (1, 8, 2)
    assert args.num_generations == 64 and args.train_generations == 32 and script_args.dataset_name == "math500"


def test_masked_share_and_topk_checks():
    ratio = torch.tensor([[0.0], [1.2], [0.0], [2.9]])
    assert gpu_check.masked_share(ratio) == 0.5
    lps, ids = [[[-0.1] * 20 + [-9.0]]], [[list(range(20)) + [33]]]
    assert gpu_check.check_topk_positions(lps, ids, [[33]]) == 1
    with pytest.raises(gpu_check.CheckError, match="sampled id 44"):
        gpu_check.check_topk_positions(lps, ids, [[44]])
    with pytest.raises(gpu_check.CheckError, match="19 logprobs"):
        gpu_check.check_topk_positions([[[-0.1] * 19]], [[list(range(19))]], [[3]])
