"""One rank of a 2-process run is SIGKILLed after the first checkpoint: the launcher stops the other rank within a
bounded time, and ``--resume_from_checkpoint auto`` then ends where an uninterrupted run ends.

Real ``accelerate launch`` runs of ``scripts/train.py`` on the tiny model (2 CPU processes, gloo), under DDP and
DeepSpeed ZeRO-2: an uninterrupted reference run of 4 steps with a checkpoint every 2; a run whose rank 1 is
SIGKILLed once ``checkpoint-2`` is complete (every rank's files written); and its rerun with
``--resume_from_checkpoint auto``. A step is 3 groups of 4 rollouts on 2 x 6 slots: the middle group is split 2 + 2
across the ranks, so its vote needs both. The rerun must train steps 3-4 only, vote on the rollouts the reference
voted on at steps 3-4 (each rank's sampling RNG continues from its own ``rng_state_<rank>.pth``) and end with
bit-identical weights (the optimizer state continues: the DDP optimizer file, or DeepSpeed's per-rank ZeRO
partitions).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from tests.helpers import resume_checks
from tests.helpers.resume_checks import assert_resumed_like_reference
from tests.training.test_distributed import env_for_children, free_port

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes" / "tiny" / "sasc_cpu.yaml")
MAX_STEPS, SAVE_STEPS, GENERATIONS, PER_DEVICE = 4, 2, 4, 6
GROUPS_PER_STEP = 2 * PER_DEVICE // GENERATIONS
STOP_BOUND_SECONDS = 60.0  # the launcher must have stopped rank 0 this long after rank 1 died


def launch_command(config: str, model_dir: Path, data: Path, output_dir: Path, votes: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "accelerate_configs" / config), "--main_process_port", str(free_port()),
        str(REPO / "scripts" / "train.py"), "--config", RECIPE,
        "--model_name_or_path", str(model_dir), "--dataset_name", str(data), "--output_dir", str(output_dir),
        "--max_steps", str(MAX_STEPS), "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS),
        "--num_generations", str(GENERATIONS), "--per_device_train_batch_size", str(PER_DEVICE),
        "--max_completion_length", "48", "--seed", "7", "--vote_log_path", str(votes),
        "--reward_funcs", "sasc", "tests.training.user_rewards.position_reward", *extra,
    ]  # fmt: skip


def run(cmd: list[str], log: Path) -> None:
    resume_checks.run(cmd, log, env_for_children(), timeout=900)


def ranks_of(launcher: subprocess.Popen) -> dict[int, psutil.Process]:
    """The training processes the launcher started, by their ``RANK``."""
    found = {}
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if "scripts/train.py" in " ".join(child.cmdline()):
                found[int(child.environ()["RANK"])] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError):
            continue
    return found


def checkpoint_complete(folder: Path, zero: bool) -> bool:
    """Every rank's part of the checkpoint is on disk (rank 0 writes ``trainer_state.json`` without waiting for rank
    1's RNG state, so that file alone is not enough)."""
    files = ["trainer_state.json", "rng_state_0.pth", "rng_state_1.pth"]
    if zero:  # DeepSpeed: each rank's optimizer partition, in global_step<N>/
        partitions = list(folder.glob("global_step*/zero_pp_rank_*_optim_states.pt"))
        if len(partitions) < 2:
            return False
    elif not (folder / "optimizer.pt").is_file():
        return False
    return all((folder / name).is_file() for name in files)


@pytest.mark.slow
@pytest.mark.parametrize("accelerate_config", ["cpu_2proc.yaml", "cpu_zero2.yaml"])
def test_killed_rank_stops_the_run_and_resume_auto_finishes_it(tiny_model_dir, tmp_path, accelerate_config):
    zero = "zero" in accelerate_config
    data = write_tiny_dataset(tmp_path / "sums.json", n=16)

    reference = tmp_path / "reference"
    run(
        launch_command(accelerate_config, tiny_model_dir, data, reference, tmp_path / "votes_reference.jsonl"),
        tmp_path / "reference.log",
    )

    killed = tmp_path / "killed"
    log = tmp_path / "killed.log"
    with open(log, "w") as handle:
        launcher = subprocess.Popen(
            launch_command(accelerate_config, tiny_model_dir, data, killed, tmp_path / "votes_killed.jsonl"),
            env=env_for_children(),
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: everything it started can be cleaned up below
        )
        try:
            # Killed once the checkpoint is complete and step 3 has voted: its vote gathered rank 1's rollouts, so
            # rank 1 had finished writing its part of the checkpoint.
            deadline = time.time() + 600
            votes = tmp_path / "votes_killed.jsonl"
            while not (
                checkpoint_complete(killed / f"checkpoint-{SAVE_STEPS}", zero)
                and votes.is_file()
                and len(votes.read_text().splitlines()) > SAVE_STEPS * GROUPS_PER_STEP
            ):
                assert launcher.poll() is None, log.read_text()[-4000:]
                assert time.time() < deadline, "no complete checkpoint within 600 s"
                time.sleep(0.02)
            ranks = ranks_of(launcher)
            assert sorted(ranks) == [0, 1], f"expected ranks 0 and 1, found {sorted(ranks)}"
            ranks[1].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            returncode = launcher.wait(timeout=STOP_BOUND_SECONDS)
            stopped_after = time.monotonic() - killed_at
            rank0_gone = not ranks[0].is_running() or ranks[0].status() == psutil.STATUS_ZOMBIE
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
    text = log.read_text()
    print(f"{accelerate_config}: launcher exited {returncode} {stopped_after:.1f} s after rank 1's SIGKILL")
    assert returncode != 0, "a run that lost a rank must not report success"
    assert rank0_gone, "rank 0 outlived the launcher"
    assert stopped_after < STOP_BOUND_SECONDS
    assert "Signals.SIGKILL" in text or "exitcode  : -9" in text, text[-3000:]
    # Killed mid-run: the next checkpoint and the final model were never written.
    assert not (killed / f"checkpoint-{2 * SAVE_STEPS}").exists()
    assert not (killed / "train_results.json").exists()

    resumed_votes = tmp_path / "votes_resumed.jsonl"
    run(
        launch_command(
            accelerate_config, tiny_model_dir, data, killed, resumed_votes, "--resume_from_checkpoint", "auto"
        ),
        tmp_path / "resumed.log",
    )

    resumed = assert_resumed_like_reference(
        killed, reference, resumed_votes, tmp_path / "votes_reference.jsonl", tiny_model_dir,
        MAX_STEPS, SAVE_STEPS, GROUPS_PER_STEP, vote_fields=("answers", "ranks", "pseudo_label", "rewards"),
    )  # fmt: skip
    assert any(sorted(set(v["ranks"])) == [0, 1] for v in resumed), "the middle group should span both ranks"
