"""The math-verify worker is SIGKILLed in the middle of a 2-process training step: the step completes, the worker is
replaced, and the step's votes and rewards are those of a rerun without the kill.

Real ``accelerate launch`` runs of ``scripts/train.py`` on the tiny model (2 CPU processes, DDP, gloo); each rank
votes on the gathered batch with its own math-verify server and worker. The processes carry the instrumentation of
``tests/helpers/checker_probe/sitecustomize.py``: every pair of answers goes to the worker, and a check of two equal
answers (verdict "equivalent") is slowed down with a marker file while it runs. The test SIGKILLs one such busy worker
on each rank; the server re-forks the worker and does the check again, so the lost check never comes back as "not
equivalent" (which would split a class of equal answers and change the vote on that rank only).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from tests.training.test_distributed import env_for_children, free_port

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).resolve().parents[1] / "helpers" / "checker_probe"
MAX_STEPS, GENERATIONS, PER_DEVICE = 3, 4, 4
SERVER = "sasc_ttrl.core.verify_process"


def launch(model_dir: Path, data: Path, output_dir: Path, probe_dir: Path, log: Path) -> subprocess.Popen:
    probe_dir.mkdir()
    env = env_for_children()
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), str(PROBE)]), SASC_TTRL_CHECKER_PROBE=str(probe_dir))
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "accelerate_configs" / "cpu_2proc.yaml"), "--main_process_port", str(free_port()),
        str(REPO / "scripts" / "train.py"), "--config", str(REPO / "recipes" / "tiny" / "sasc_cpu.yaml"),
        "--model_name_or_path", str(model_dir), "--dataset_name", str(data), "--output_dir", str(output_dir),
        "--max_steps", str(MAX_STEPS), "--num_generations", str(GENERATIONS),
        "--per_device_train_batch_size", str(PER_DEVICE), "--max_completion_length", "48", "--seed", "3",
        "--vote_log_path", str(output_dir / "votes.jsonl"),
    ]  # fmt: skip
    with open(log, "w") as handle:
        return subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def is_alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_one_busy_worker_per_rank(launcher: subprocess.Popen, probe_dir: Path, log: Path) -> dict[int, int]:
    """SIGKILL, on each rank, the first worker seen in the middle of a check; return {rank: killed pid}."""
    killed: dict[int, int] = {}
    deadline = time.time() + 600
    while len(killed) < 2:
        assert launcher.poll() is None, f"the run ended before both kills ({killed}):\n" + log.read_text()[-3000:]
        assert time.time() < deadline, f"no busy worker on both ranks within 600 s ({killed})"
        for marker in probe_dir.glob("busy-*"):
            pid = int(marker.name.split("-")[1])
            try:
                worker = psutil.Process(pid)
                rank = int(worker.environ()["RANK"])
                if rank in killed or not marker.exists():
                    continue
                # A worker: forked by a verify server (same command line), itself started by the rank.
                assert all(SERVER in " ".join(p.cmdline()) for p in (worker, worker.parent())), worker.cmdline()
                worker.send_signal(signal.SIGKILL)
            except (psutil.NoSuchProcess, FileNotFoundError):
                continue
            while is_alive(worker):
                time.sleep(0.001)
            # Dead with its marker still there: the kill landed before the check could finish.
            assert marker.exists()
            killed[rank] = pid
        time.sleep(0.01)
    return killed


def wait(launcher: subprocess.Popen, log: Path) -> None:
    try:
        assert launcher.wait(timeout=900) == 0, log.read_text()[-4000:]
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()


def votes(output_dir: Path) -> list[tuple]:
    lines = [json.loads(x) for x in (output_dir / "votes.jsonl").read_text().splitlines()]
    return [(v["group"], v["answers"], v["ranks"], v["kept"], v["pseudo_label"], v["rewards"]) for v in lines]


def logged_rewards(output_dir: Path) -> list[float]:
    """Each step's mean reward as TRL logged it: gathered from both ranks' local rewards."""
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [e["rewards/sasc_reward/mean"] for e in state["log_history"] if "rewards/sasc_reward/mean" in e]


@pytest.mark.slow
def test_worker_killed_mid_step_is_replaced_and_the_step_votes_as_a_rerun(tiny_model_dir, tmp_path):
    data = write_tiny_dataset(tmp_path / "sums.json", n=16)

    rerun_log = tmp_path / "rerun.log"
    rerun = launch(tiny_model_dir, data, tmp_path / "rerun", tmp_path / "probe_rerun", rerun_log)
    wait(rerun, rerun_log)

    log = tmp_path / "killed.log"
    launcher = launch(tiny_model_dir, data, tmp_path / "killed", tmp_path / "probe_killed", log)
    try:
        killed = kill_one_busy_worker_per_rank(launcher, tmp_path / "probe_killed", log)
    finally:
        wait(launcher, log)

    # The step completed: the run finished every step, and each rank's server replaced its killed worker.
    text = log.read_text()
    for rank, pid in killed.items():
        match = re.search(rf"math-verify worker \(pid {pid}\) died; check retried in a new worker \(pid (\d+)\)", text)
        assert match, f"rank {rank}: no replacement of worker {pid} in the log"
        assert int(match.group(1)) != pid
    state = json.loads((tmp_path / "killed" / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS

    # The votes and rewards are the rerun's: rank 0's vote log, both ranks' rewards (TRL's gathered mean), weights.
    expected = votes(tmp_path / "rerun")
    assert len(expected) == MAX_STEPS * 2 * PER_DEVICE // GENERATIONS
    assert any(len(set(v[1])) < len(v[1]) for v in expected), "some group must hold equal answers"
    assert votes(tmp_path / "killed") == expected
    assert logged_rewards(tmp_path / "killed") == logged_rewards(tmp_path / "rerun")
    final, base = (
        load_file(tmp_path / "killed" / "model.safetensors"),
        load_file(tmp_path / "rerun" / "model.safetensors"),
    )
    assert all(torch.equal(final[name], base[name]) for name in base)
