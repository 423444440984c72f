"""The vote study (studies/vote_study.py): the decision rule on hand-made deltas, the study on hand-made saved
sets, and sampling end to end on the tiny model (resumable, saved compressed)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from sasc_ttrl.core.voting import VoteSettings

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("vote_study", REPO / "studies" / "vote_study.py")
vote_study = importlib.util.module_from_spec(spec)
sys.modules["vote_study"] = vote_study
spec.loader.exec_module(vote_study)


def test_candidates_are_the_rule_s_grid():
    grid = vote_study.candidates()
    assert len(grid) == 13  # 6 weightings x {std, mean} + uniform
    assert all(s.filter_ratio == 0.2 and s.gate_statistic == "std" for s in grid.values())
    assert {s.weight_statistic for s in grid.values()} == {"std", "mean"}
    assert grid["exp T=4 (mean)"] == VoteSettings(
        vote_weighting="exp", weight_temperature=4.0, weight_statistic="mean"
    )
    assert grid["clipped_exp c=1 (std)"].weight_clip == 1.0


def test_decide_takes_the_best_worst_case_at_16():
    settings = {
        "a": VoteSettings(vote_weighting="rank"),
        "b": VoteSettings(),
        "c": VoteSettings(vote_weighting="uniform"),
    }
    delta16 = {"a": {"s1": 0.05, "s2": -0.01}, "b": {"s1": 0.20, "s2": -0.08}, "c": {"s1": 0.00, "s2": 0.00}}
    delta8 = {"a": {"s1": 0.1, "s2": 0.1}, "b": {"s1": 0.3, "s2": 0.3}, "c": {"s1": 0.0, "s2": 0.0}}
    verdict = vote_study.decide(delta16, delta8, settings)
    assert verdict["winner"] == "c"  # worst case 0 beats -0.01 and -0.08, whatever the best case
    assert [r[0] for r in verdict["ranking"]] == ["c", "a", "b"]
    assert not verdict["all_negative"]


def test_decide_breaks_ties_by_mean_at_8_then_simplicity():
    settings = {
        "exp": VoteSettings(vote_weighting="exp"),
        "rank": VoteSettings(vote_weighting="rank"),
        "clip": VoteSettings(vote_weighting="clipped_exp"),
    }
    delta16 = {name: {"s1": 0.02, "s2": 0.01} for name in settings}
    delta8 = {"exp": {"s1": 0.05}, "rank": {"s1": 0.04}, "clip": {"s1": 0.05}}
    assert vote_study.decide(delta16, delta8, settings)["winner"] == "exp"  # mean at 8 ties exp/clip: fewer params
    delta8 = {name: {"s1": 0.05} for name in settings}
    assert vote_study.decide(delta16, delta8, settings)["winner"] == "rank"  # all tie: the simplest


def test_decide_says_when_every_worst_case_is_negative():
    settings = {"x": VoteSettings(), "y": VoteSettings(vote_weighting="rank")}
    verdict = vote_study.decide({"x": {"s": -0.02}, "y": {"s": -0.01}}, {"x": {"s": 0.0}, "y": {"s": 0.0}}, settings)
    assert verdict["winner"] == "y" and verdict["all_negative"]
    with pytest.raises(ValueError, match="same"):
        vote_study.decide({"x": {"s": 0.0}}, {"y": {"s": 0.0}}, settings)


def _write_set(path: Path, questions: list[list[tuple[str, bool, list[float]]]]) -> None:
    lines = []
    for i, rollouts in enumerate(questions):
        samples = [{"answer": a, "correct": c, "entropies": e} for a, c, e in rollouts]
        lines.append(json.dumps({"id": f"q{i}", "question": f"q{i}", "gold": "1", "samples": samples}))
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def test_study_on_hand_made_sets_gives_a_table_and_a_verdict(tmp_path):
    sets = tmp_path / "sets"
    sets.mkdir()
    steady, shaky = [0.1, 0.1, 0.1], [0.0, 2.0, 0.0, 2.0]
    # 16 rollouts: 6 stable correct "1", 7 unstable wrong "2", 3 unstable wrong "3": majority wins "2", a
    # stability-weighted vote "1".
    group = [("1", True, steady)] * 6 + [("2", False, shaky)] * 7 + [("3", False, shaky)] * 3
    _write_set(sets / "a.jsonl.gz", [group] * 3)
    _write_set(sets / "b.jsonl.gz", [[("1", True, steady)] * 16] * 2)  # unanimous: every vote agrees
    report = vote_study.cmd_study(
        vote_study.argparse.Namespace(
            sets_dir=str(sets), sets=None, resamples=2, bootstrap=50, output_dir=str(tmp_path / "out")
        )
    )
    assert set(report["sets"]) == {"a", "b"}
    maj16 = {r["variant"]: r for r in report["sets"]["a"]["results"]["16"]}
    assert maj16["majority"]["accuracy"] == 0.0 and maj16["exp T=1 (std)"]["delta"] == 1.0
    assert all(r["delta"] == 0.0 for r in report["sets"]["b"]["results"]["16"])
    assert report["verdict"]["ranking"][0][1] == 0.0  # worst case over the sets: set b
    text = (tmp_path / "out" / "vote_study.md").read_text()
    assert "Rule's winner" in text and "| S1 `a` |" in text


@pytest.mark.slow
def test_sample_then_study_on_the_tiny_model(tiny_model_dir, tmp_path):
    """`sample --limit` on the tiny model (transformers), resumed, then `study` on what it saved."""
    import subprocess

    cmd = [
        sys.executable, str(REPO / "studies" / "vote_study.py"), "sample", "--backend", "transformers",
        "--model", str(tiny_model_dir), "--n", "4", "--limit", "3", "--sets", "arith-bare-64-t0.8",
        "--work_dir", str(tmp_path / "work"),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, timeout=600)
    saved = tmp_path / "work" / "smoke_sets" / "arith-bare-64-t0.8.jsonl.gz"
    lines = [json.loads(x) for x in gzip.decompress(saved.read_bytes()).decode().splitlines()]
    assert [len(line["samples"]) for line in lines] == [4, 4, 4]
    assert all(set(s) == {"answer", "correct", "entropies"} for line in lines for s in line["samples"])
    full = tmp_path / "work" / "samples" / "arith-bare-64-t0.8.jsonl"
    before = full.read_text()
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, timeout=600)  # resumes: nothing new sampled
    assert full.read_text() == before
    meta = json.loads(saved.with_name("arith-bare-64-t0.8.meta.json").read_text())
    assert meta["sampling"]["n"] == 4 and meta["set"]["max_tokens"] == 64
