"""studies/training_study.py --quick: three variants x two seeds on the tiny model, summarised, then resumed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_training_study_quick_then_resumed(tiny_model_dir, tmp_path):
    cmd = [
        sys.executable, str(REPO / "studies" / "training_study.py"), "--quick", "--seeds", "0", "1",
        "--model", str(tiny_model_dir), "--output_root", str(tmp_path), "--threads", "1",
    ]  # fmt: skip
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["seed"], r["split"]) for r in summary["rows"]] == [
        (0, "trained"), (0, "held_out"), (1, "trained"), (1, "held_out")
    ]  # fmt: skip
    for row in summary["rows"]:
        for run in ("base", "sasc", "sasc_exp", "majority"):
            assert 0.0 <= row[f"{run} pass@1"] <= 1.0
    for seed in (0, 1):
        result = json.loads((tmp_path / f"seed{seed}" / "metrics.json").read_text())
        votes = result["training"]["sasc_exp"]["vote_settings"]
        assert (votes["vote_weighting"], votes["weight_temperature"]) == ("exp", 1.0)
        assert result["training"]["majority"]["reward"] == "majority"
    mean, sd = summary["summary"]["held_out"]["sasc pass@1 change"]
    deltas = [r["sasc pass@1"] - r["base pass@1"] for r in summary["rows"] if r["split"] == "held_out"]
    assert mean == pytest.approx(sum(deltas) / 2) and sd >= 0.0
    text = (tmp_path / "summary.md").read_text()
    assert "| mean ± sd | held-out |" in text and "TTRL" in text and "Wall time" in text
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)  # every phase is read back
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "summary.json").read_text())["rows"] == summary["rows"]
