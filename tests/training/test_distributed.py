"""Groups split across processes: the reward gathers them, votes, and returns the local slice."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sasc_ttrl.core.voting import sasc_vote
from sasc_ttrl.training.rewards import get_reward_funcs

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_for_children() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    # DeepSpeed JIT-compiles a communication op on first use (~1 min); keep it in a cache across runs.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "sasc_ttrl" / "torch_extensions"))
    return env


def make_batch(num_groups: int = 3, group_size: int = 6, seed: int = 0) -> dict:
    rng = random.Random(seed)
    data = {k: [] for k in ("prompts", "completions", "token_entropies", "rollout_group", "answer")}
    for g in range(num_groups):
        for _ in range(group_size):
            answer = rng.choice(["1", "2", "3", None])
            text = f"so \\boxed{{{answer}}}" if answer else "no idea"
            data["prompts"].append(f"question {g}")
            data["completions"].append(text)
            data["token_entropies"].append([rng.random() * rng.choice([0.2, 2.0]) for _ in range(rng.randint(3, 9))])
            data["rollout_group"].append(g)
            data["answer"].append(str(g + 1))
    return data


def test_two_process_reward_equals_one_process(tmp_path):
    """torchrun, 2 ranks x 9 completions, groups of 6: group 1 is split across the ranks."""
    data = make_batch()
    (tmp_path / "batch.json").write_text(json.dumps(data))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(REPO / "tests" / "helpers" / "dist_reward_worker.py"), str(tmp_path / "batch.json"), str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env_for_children(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    metrics = {}
    for reward in get_reward_funcs(["sasc", "majority"]):
        single = reward(
            prompts=data["prompts"],
            completions=data["completions"],
            completion_ids=[[0]] * len(data["prompts"]),
            token_entropies=data["token_entropies"],
            rollout_group=data["rollout_group"],
            answer=data["answer"],
            log_metric=lambda name, value: metrics.__setitem__(name, value),
        )
        assert ranks[0][reward.__name__] + ranks[1][reward.__name__] == single
    # Diagnostics are computed on the gathered batch, so both ranks log the one-process values.
    for name, value in metrics.items():
        assert ranks[0][name] == pytest.approx(value) and ranks[1][name] == pytest.approx(value), name


@pytest.mark.slow
@pytest.mark.parametrize("accelerate_config", ["cpu_2proc.yaml", "cpu_zero2.yaml", "cpu_zero3.yaml"])
def test_two_process_training_matches_one_process_votes(tiny_model_dir, tmp_path, accelerate_config):
    """A real 2-process GRPO run (accelerate DDP / DeepSpeed ZeRO-2 / ZeRO-3, gloo, CPU), groups split across ranks.

    per_device_train_batch_size (3) < num_generations (6): each group of 6 spans both ranks. The vote log written
    by rank 0 holds each group's gathered answers and instabilities; the pseudo-labels and rewards must be what one
    process computes on the same rollouts.
    """
    from sasc_ttrl.demo.tiny_model import write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "sums.json", n=8)
    votes = tmp_path / "votes.jsonl"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "accelerate_configs" / accelerate_config),
        "--main_process_port", str(free_port()),
        str(REPO / "scripts" / "train.py"), "--config", str(REPO / "recipes" / "tiny" / "sasc_cpu.yaml"),
        "--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(data),
        "--output_dir", str(tmp_path / "out"), "--num_generations", "6", "--per_device_train_batch_size", "3",
        "--max_steps", "2", "--vote_log_path", str(votes),
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env_for_children(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    lines = [json.loads(x) for x in votes.read_text().splitlines()]
    recipe_share = yaml.safe_load((REPO / "recipes" / "tiny" / "sasc_cpu.yaml").read_text())["min_label_share"]
    assert len(lines) == 2  # one group of 6 per step (2 ranks x 3 completions)
    for line in lines:
        assert sorted(set(line["ranks"])) == [0, 1], "the group should be split across both ranks"
        single = sasc_vote(line["answers"], line["instabilities"], filter_ratio=0.2, weight_temperature=1.0)
        assert single.pseudo_label == line["pseudo_label"]
        assert single.kept == line["kept"]
        # The recipe's confidence filter: a group whose label holds less of the vote than min_label_share gets 0.
        unsure = single.label_share < recipe_share
        assert line["filtered"] == unsure
        assert line["rewards"] == ([0.0] * len(single.rewards) if unsure else single.rewards)
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert any("loss" in entry for entry in state["log_history"])
    assert (tmp_path / "out" / "model.safetensors").exists(), "the trained weights must be saved as a model"
    if "zero" in accelerate_config:
        assert "DeepSpeed" in result.stdout + result.stderr, "DeepSpeed should have been initialised"


def test_run_command_destroys_the_process_group(tmp_path):
    """Every command ends its process group (left to interpreter exit, gloo's thread can abort)."""
    from dataclasses import dataclass

    import torch.distributed as dist
    from trl import TrlParser

    from sasc_ttrl.cli import run_command

    @dataclass
    class Args:
        name: str = "x"

    def main(args):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        gathered = [None]
        dist.all_gather_object(gathered, args.name)
        return gathered

    assert run_command(lambda: TrlParser((Args,)), main, "test", ["--name", "y"]) == ["y"]
    assert not dist.is_initialized()
