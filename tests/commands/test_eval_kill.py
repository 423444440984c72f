"""SIGKILL a real ``sasc-ttrl eval`` mid-run, tear its last line, rerun: every question once, identical metrics.

The reference is an uninterrupted run with the same command (subprocesses with the same environment, so the samples
are bit-identical). The kill lands once two questions are on disk; a half-written line is then appended to mimic a
kill in the middle of a write. The rerun must drop the torn line, keep the finished questions as they are, sample
only the rest, and write the same samples and metrics as the reference.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sasc_ttrl.demo.tiny_model import write_tiny_dataset

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
QUESTIONS = 12


def command(model_dir: Path, data: Path, output_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "sasc_ttrl.cli", "eval", "--model_name_or_path", str(model_dir),
        "--benchmarks", str(data), "--n", "4", "--k_list", "1", "2", "4", "--temperature", "0.8",
        "--max_tokens", "48", "--seed", "3", "--batch_size", "1", "--dtype", "float32", "--backend", "transformers",
        "--output_dir", str(output_dir),
    ]  # fmt: skip


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_eval_then_rerun_gives_each_question_once_and_the_same_metrics(tiny_model_dir, tmp_path):
    data = write_tiny_dataset(tmp_path / "sums.json", n=QUESTIONS, seed=5)
    reference = tmp_path / "reference"
    subprocess.run(command(tiny_model_dir, data, reference), env=ENV, cwd=REPO, check=True, capture_output=True)

    out = tmp_path / "killed"
    samples = out / "samples" / "sums.jsonl"
    process = subprocess.Popen(
        command(tiny_model_dir, data, out), env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.time() + 300
        while not (samples.exists() and samples.read_text().count("\n") >= 2):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.time() < deadline
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()
    finished = samples.read_text()
    assert 2 <= finished.count("\n") < QUESTIONS
    torn = json.dumps(lines(reference / "samples" / "sums.jsonl")[-1])[:100]
    with open(samples, "a") as handle:  # killed in the middle of writing a line
        handle.write(torn)

    rerun = subprocess.run(command(tiny_model_dir, data, out), env=ENV, cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    got, expected = lines(samples), lines(reference / "samples" / "sums.jsonl")
    ids = [line["id"] for line in got]
    assert sorted(ids) == sorted(line["id"] for line in expected) and len(ids) == len(set(ids)) == QUESTIONS
    assert samples.read_text().startswith(finished)  # the finished questions were kept, not redone
    assert {line["id"]: line for line in got} == {line["id"]: line for line in expected}
    metrics, reference_metrics = (json.loads((d / "metrics.json").read_text()) for d in (out, reference))
    assert metrics["benchmarks"] == reference_metrics["benchmarks"]
    assert metrics["benchmarks"]["sums"]["num_questions"] == QUESTIONS
    assert not list(out.rglob("*.tmp"))  # every final file went through its temporary name and was renamed
