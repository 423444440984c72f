"""studies/label_free_study.py --quick: the dev sweep, its rule, every arm of the report, the summary, a resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "studies"))


def test_the_rule_drops_collapsed_configurations_and_takes_the_best_worst_case():
    import label_free_study as study

    base = {"evaluation": {"trained": {"pass@1": 0.2}, "held_out": {"pass@1": 0.1}}}

    def run(trained, held_out, share=0.1):
        return {"evaluation": {"trained": {"pass@1": trained}, "held_out": {"pass@1": held_out,
                                                                             "top_answer_share": share}}}  # fmt: skip

    dev = {
        (1e-4, 0.0): [run(0.5, 0.40), run(0.5, 0.12)],  # best mean, worst case +2
        (1e-4, 0.5): [run(0.3, 0.20), run(0.3, 0.18)],  # worst case +8: chosen
        (5e-4, 0.0): [run(0.9, 0.60, share=0.7), run(0.9, 0.60)],  # collapsed in one seed: out
        (5e-5, 0.5): [run(0.3, 0.18), run(0.2, 0.19)],  # also +8, but less trained-on gain (+5 vs +10)
    }
    decision = study.decide(dev, base, study.Plan())
    assert decision["choice"]["learning_rate"] == 1e-4 and decision["choice"]["min_label_share"] == 0.5
    assert [r["collapsed"] for r in decision["table"]] == [False, False, True, False]
    assert decision["table"][0]["worst_held_out_gain"] == pytest.approx(2.0)


def test_the_question_sets_are_disjoint_and_fixed():
    import label_free_study as study

    sets = study.questions(study.Plan())
    texts = [q["question"] for split in sets.values() for part in split.values() for q in part]
    assert len(texts) == len(set(texts)) == 32 + 64 + 16 + 32
    assert all(q["answer"].isdigit() for q in sets["report"]["trained"])
    assert study.questions(study.Plan()) == sets


def test_published_runs_restore_into_a_fresh_run_folder_of_the_same_plan_only(tmp_path):
    from dataclasses import asdict, replace

    import label_free_study as study
    import label_free_summary

    plan = study.Plan()
    first = tmp_path / "first"
    for rel in ("dev/base", "dev/lr0.0002-tau0.5/seed10", "report/sasc/seed0"):
        (first / rel).mkdir(parents=True)
        (first / rel / "result.json").write_text(json.dumps({"arm": rel}))
    (first / "report" / "oracle" / "seed0" / "train").mkdir(parents=True)  # unfinished: a checkpoint, no result
    (first / "plan.json").write_text(json.dumps(asdict(plan)))
    (first / "curves.png").write_bytes(b"png")
    published = tmp_path / "published"
    label_free_summary.publish(first, published, figure=tmp_path / "docs" / "curves.png")
    assert not (published / "runs" / "report" / "oracle").exists()
    assert (tmp_path / "docs" / "curves.png").read_bytes() == b"png" and not (published / "curves.png").exists()

    fresh = tmp_path / "fresh"
    (fresh / "dev" / "base").mkdir(parents=True)
    (fresh / "dev" / "base" / "result.json").write_text(json.dumps({"arm": "kept"}))  # never overwritten
    copied = study.restore(published / "runs", fresh, plan)
    assert sorted(p.relative_to(fresh).as_posix() for p in copied) == [
        "dev/lr0.0002-tau0.5/seed10/result.json", "report/sasc/seed0/result.json"]  # fmt: skip
    assert json.loads((fresh / "dev" / "base" / "result.json").read_text()) == {"arm": "kept"}
    restored = fresh / "report" / "sasc" / "seed0" / "result.json"
    assert json.loads(restored.read_text()) == {"arm": "report/sasc/seed0"}
    other = tmp_path / "other"
    assert study.restore(published / "runs", other, replace(plan, epochs=4)) == [] and not other.exists()


@pytest.mark.slow
def test_label_free_study_quick_then_resumed(tiny_model_dir, tmp_path):
    cmd = [sys.executable, str(REPO / "studies" / "label_free_study.py"), "all", "--quick",
           "--model", str(tiny_model_dir), "--output_root", str(tmp_path)]  # fmt: skip
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-3000:]
    choice = json.loads((tmp_path / "dev_choice.json").read_text())
    assert len(choice["table"]) == 2 and choice["choice"]["min_label_share"] in (0.0, 0.5)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["seed"], r["arm"]) for r in summary["rows"]] == [(0, a) for a in ("oracle", "format", "ttrl", "sasc")]
    for row in summary["rows"]:
        assert row["done"] and 0.0 <= row["held_out pass@1"] <= 1.0 and 0.0 <= row["held_out top_answer_share"] <= 1
    result = json.loads((tmp_path / "report" / "sasc" / "seed0" / "result.json").read_text())
    assert [p["step"] for p in result["curve"]] == [1, 2]  # a held-out point every step (quick plan)
    assert result["min_label_share"] == choice["choice"]["min_label_share"]
    assert not (tmp_path / "report" / "sasc" / "seed0" / "train").exists()  # checkpoints removed once done
    assert (tmp_path / "curves.png").stat().st_size > 0 and "| 0 | SASC-TTRL |" in (
        tmp_path / "summary.md"
    ).read_text()
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)  # every run is read back
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "summary.json").read_text())["rows"] == summary["rows"]
    # A fresh machine restores the runs but not dev_choice.json: `report` decides it again from the dev runs.
    (tmp_path / "dev_choice.json").unlink()
    report = subprocess.run([*cmd[:2], "report", *cmd[3:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    assert json.loads((tmp_path / "dev_choice.json").read_text()) == choice
