"""A training run killed with SIGKILL resumes from its last checkpoint and ends where an uninterrupted run ends.

Three real ``sasc-ttrl train`` processes on the tiny model (CPU, same environment): an uninterrupted reference run of
4 steps with a checkpoint every 2; a run killed once ``checkpoint-2`` is complete; and its rerun with
``--resume_from_checkpoint auto``. The rerun must do only steps 3-4 (its vote log has 2 steps of groups), vote on the
same rollouts as the reference did at steps 3-4 (the sampling RNG continues) and end with bit-identical weights (the
optimizer state continues: fresh Adam moments would give other weights).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from tests.helpers import resume_checks
from tests.helpers.resume_checks import assert_resumed_like_reference

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes" / "tiny" / "sasc_cpu.yaml")
MAX_STEPS, SAVE_STEPS, GROUPS_PER_STEP = 4, 2, 2
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}


def command(model_dir: Path, data: Path, output_dir: Path, votes: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "sasc_ttrl.cli", "train", "--config", RECIPE,
        "--model_name_or_path", str(model_dir), "--dataset_name", str(data), "--output_dir", str(output_dir),
        "--max_steps", str(MAX_STEPS), "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS),
        "--num_generations", "4", "--per_device_train_batch_size", str(4 * GROUPS_PER_STEP),
        "--max_completion_length", "48", "--seed", "7", "--vote_log_path", str(votes),
        "--reward_funcs", "sasc", "tests.training.user_rewards.position_reward", *extra,
    ]  # fmt: skip


def run(cmd: list[str], log: Path) -> None:
    resume_checks.run(cmd, log, ENV, timeout=600)


@pytest.mark.slow
def test_sigkill_then_resume_auto_continues_the_run(tiny_model_dir, tmp_path):
    data = write_tiny_dataset(tmp_path / "sums.json", n=16)

    reference = tmp_path / "reference"
    run(command(tiny_model_dir, data, reference, tmp_path / "votes_reference.jsonl"), tmp_path / "reference.log")

    killed = tmp_path / "killed"
    log = tmp_path / "killed.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            command(tiny_model_dir, data, killed, tmp_path / "votes_killed.jsonl"),
            env=ENV,
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.time() + 300
            while not (killed / f"checkpoint-{SAVE_STEPS}" / "trainer_state.json").exists():
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.time() < deadline, "no checkpoint within 300 s"
                time.sleep(0.05)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    # Killed mid-run: the next checkpoint and the final model were never written, so at most save_steps are lost.
    assert process.returncode == -signal.SIGKILL
    assert not (killed / f"checkpoint-{2 * SAVE_STEPS}").exists()
    assert not (killed / "train_results.json").exists()

    resumed_votes = tmp_path / "votes_resumed.jsonl"
    run(
        command(tiny_model_dir, data, killed, resumed_votes, "--resume_from_checkpoint", "auto"),
        tmp_path / "resumed.log",
    )

    assert_resumed_like_reference(
        killed, reference, resumed_votes, tmp_path / "votes_reference.jsonl", tiny_model_dir,
        MAX_STEPS, SAVE_STEPS, GROUPS_PER_STEP,
    )  # fmt: skip
