"""What a run killed after a checkpoint and resumed with ``--resume_from_checkpoint auto`` must show, shared by the
one-process test (`test_resume.py`) and the killed-rank test (`test_killed_rank.py`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]


def run(cmd: list[str], log: Path, env: dict[str, str], timeout: float) -> None:
    """Run ``cmd`` from the repository with its output in ``log``; fail with the log's tail unless it succeeds."""
    with open(log, "w") as handle:
        result = subprocess.run(cmd, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout)
    assert result.returncode == 0, log.read_text()[-4000:]


def vote_lines(path: Path) -> list[dict]:
    """The lines of a ``vote_log_path`` file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_resumed_like_reference(
    killed: Path,
    reference: Path,
    resumed_votes: Path,
    reference_votes: Path,
    initial_model: Path,
    max_steps: int,
    save_steps: int,
    groups_per_step: int,
    vote_fields: tuple[str, ...] = ("answers", "pseudo_label", "rewards"),
) -> list[dict]:
    """The resumed run ends where the uninterrupted one does, bit for bit.

    Checks that the step counter continued (the rerun trained the steps after the checkpoint only), that the
    sampling RNG continued (the resumed steps voted on the very rollouts of the uninterrupted run: ``vote_fields``
    equal, instabilities to 1e-6), and that the optimizer continued (the final weights equal the uninterrupted run's
    and differ from ``initial_model``'s: the runs train beside the vote with a reward that varies by construction,
    `user_rewards.position_reward`, so the weights move whatever the model samples). Returns the resumed run's vote
    lines for further checks.
    """
    state = json.loads((killed / "trainer_state.json").read_text())
    assert state["global_step"] == max_steps
    assert [e["step"] for e in state["log_history"] if "loss" in e] == list(range(1, max_steps + 1))
    resumed = vote_lines(resumed_votes)
    assert len(resumed) == (max_steps - save_steps) * groups_per_step

    expected = vote_lines(reference_votes)[save_steps * groups_per_step :]
    assert [[v[f] for f in vote_fields] for v in resumed] == [[v[f] for f in vote_fields] for v in expected]
    flat = [s for v in resumed for s in v["instabilities"]]
    assert flat == pytest.approx([s for v in expected for s in v["instabilities"]], abs=1e-6)

    final, base = load_file(killed / "model.safetensors"), load_file(reference / "model.safetensors")
    assert final.keys() == base.keys()
    for name in base:
        assert torch.equal(final[name], base[name]), name
    initial = load_file(initial_model / "model.safetensors")
    assert any(not torch.equal(base[name], initial[name]) for name in initial), "training must move the weights"
    return resumed
