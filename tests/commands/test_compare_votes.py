"""`sasc-ttrl compare-votes` on saved rollouts: paired subsets, bootstrap intervals, both file formats, the CLI."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from sasc_ttrl.cli import main as cli_main
from sasc_ttrl.commands.compare_votes import CompareVotesArguments, compare_votes
from sasc_ttrl.core.vote_comparison import (
    DEFAULT_VARIANT,
    MAJORITY,
    accuracy_table,
    bootstrap_summary,
    default_variants,
    parse_variant,
    signal_quality,
    subsets,
    variant_name,
)
from sasc_ttrl.core.voting import VoteSettings
from sasc_ttrl.data.rollouts import load_rollouts


def _seq(std: float, length: int = 8, mean: float = 1.0) -> list[float]:
    return [mean + (std if i % 2 else -std) for i in range(length)]


def _question(qid: str, gold: str, rollouts: list[tuple[str | None, float]]) -> dict:
    """An eval samples line: each rollout is (answer, entropy std)."""
    return {
        "id": qid,
        "gold": gold,
        "samples": [
            {"text": f"\\boxed{{{a}}}", "answer": a, "correct": a == gold, "entropies": _seq(s), "token_ids": [1] * 8}
            for a, s in rollouts
        ],
    }


# Question "stable-right": two stable rollouts are right, four unstable ones agree on a wrong answer.
STABLE_RIGHT = [("3", 0.05), ("3", 0.06), ("5", 0.6), ("5", 0.65), ("5", 0.7), ("5", 0.75)]
# Question "majority-right": the majority is right and stable.
MAJORITY_RIGHT = [("7", 0.1), ("7", 0.1), ("7", 0.12), ("1", 0.9), ("2", 0.5)]


@pytest.fixture
def samples_file(tmp_path):
    path = tmp_path / "samples" / "toy.jsonl"
    path.parent.mkdir()
    lines = [_question("a", "3", STABLE_RIGHT), _question("b", "7", MAJORITY_RIGHT)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_full_group_votes_match_the_hand_computed_outcomes(samples_file):
    questions = load_rollouts(samples_file)
    variants = {MAJORITY: None, DEFAULT_VARIANT: VoteSettings(), "gate only": VoteSettings(vote_weighting="uniform")}
    acc = accuracy_table(questions, variants, [6])[6]  # k >= n: each question's whole group
    # Rows: questions a, b; columns: majority, sasc default, gate only.
    assert acc.tolist() == [[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]


def test_k_one_is_the_mean_rollout_accuracy_for_every_variant(samples_file):
    questions = load_rollouts(samples_file)
    acc = accuracy_table(questions, default_variants(), [1], resamples=200, seed=3)[1]
    assert np.allclose(acc, acc[:, [0]])  # a vote of one rollout is that rollout, whatever the variant
    assert abs(acc[0, 0] - 2 / 6) < 0.1 and abs(acc[1, 0] - 3 / 5) < 0.1


def test_subsets_are_paired_and_seeded():
    rng_a, rng_b = random.Random("s"), random.Random("s")
    assert subsets(10, 4, 5, rng_a) == subsets(10, 4, 5, rng_b)
    assert subsets(5, 8, 5, random.Random(0)) == [[0, 1, 2, 3, 4]]  # k >= n: the whole group, once
    assert all(len(s) == 4 and len(set(s)) == 4 for s in subsets(10, 4, 5, random.Random(1)))


def test_bootstrap_interval_and_paired_difference():
    acc = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    rows = bootstrap_summary(acc, ["majority", "other"], samples=4000, seed=0)
    assert rows[0]["accuracy"] == 0.5 and rows[1]["accuracy"] == 0.75
    assert rows[1]["delta"] == pytest.approx(0.25)
    assert rows[0]["delta_ci_low"] == rows[0]["delta_ci_high"] == 0.0
    # Per-question differences are [1, 0, 0, 0]: a resample holds no gain with chance (3/4)^4 = 32%.
    assert rows[1]["delta_ci_low"] == 0.0 and 0.25 < rows[1]["delta_ci_high"] <= 1.0
    assert rows[0]["ci_low"] < 0.5 < rows[0]["ci_high"]
    constant = bootstrap_summary(np.ones((5, 1)), ["x"], samples=100)
    assert constant[0]["ci_low"] == constant[0]["ci_high"] == 1.0


def test_signal_quality_auroc(samples_file):
    rows = {r["statistic"]: r for r in signal_quality(load_rollouts(samples_file))}
    # Every right rollout is more stable (smaller std) than every wrong one in both questions.
    assert rows["std"]["auroc_within_question"] == 1.0
    assert rows["std"]["pairs"] == 2 * 4 + 3 * 2
    # The mean entropy is 1.0 for all: no signal, every pair is a tie.
    assert rows["mean"]["auroc_within_question"] == 0.5


def test_variant_names_and_parsing():
    assert variant_name(VoteSettings()) == "gate std + clipped_exp(std)"  # the default, c = 1
    assert variant_name(VoteSettings(vote_weighting="exp")) == "gate std + exp(std)"
    assert variant_name(VoteSettings(weight_clip=0.5)) == "gate std + clipped_exp(std) c=0.5"
    assert variant_name(VoteSettings(filter_ratio=0.0, vote_weighting="rank")) == "no gate + rank(std)"
    assert variant_name(VoteSettings(gate_statistic="mean", vote_weighting="uniform", filter_ratio=0.3)) == (
        "gate mean@0.3 + uniform"
    )
    parsed = parse_variant("gate_statistic=tail, vote_weighting=clipped_exp, weight_clip=0.25, tail_tokens=4")
    assert (parsed.gate_statistic, parsed.vote_weighting, parsed.weight_clip, parsed.tail_tokens) == (
        "tail",
        "clipped_exp",
        0.25,
        4,
    )
    with pytest.raises(ValueError, match="unknown field"):
        parse_variant("gate=std")
    with pytest.raises(ValueError, match="key=value"):
        parse_variant("std")
    with pytest.raises(ValueError, match="gate_statistic"):
        parse_variant("gate_statistic=median")
    names = list(default_variants())
    assert names[0] == MAJORITY and len(names) == len(set(names))


def test_rollouts_without_entropies_are_rejected_by_name(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "q1", "samples": [{"answer": "1", "correct": True}]}) + "\n")
    with pytest.raises(ValueError, match=r"q1, rollout 0 lacks \['entropies'\]"):
        load_rollouts(path)
    with pytest.raises(FileNotFoundError, match="no rollouts file"):
        load_rollouts(tmp_path / "missing.jsonl")


def test_builder_candidates_format_is_read(tmp_path):
    path = tmp_path / "sasc.jsonl"
    row = {
        "id": "q",
        "candidates": [{"answer": a, "correct": a == "3", "entropies": _seq(s)} for a, s in STABLE_RIGHT],
    }
    path.write_text(json.dumps(row) + "\n")
    (question,) = load_rollouts(path)
    assert question.answers == [a for a, _ in STABLE_RIGHT] and question.correct == [True] * 2 + [False] * 4


def test_cli_writes_every_report_file(samples_file, tmp_path):
    out = tmp_path / "report"
    cli_main(
        [
            "compare-votes",
            "--samples",
            str(samples_file),
            "--k_list",
            "1",
            "6",
            "--resamples",
            "3",
            "--bootstrap",
            "50",
            "--only",
            "true",
            "--variants",
            "vote_weighting=rank",
            "--output_dir",
            str(out),
        ]
    )
    report = json.loads((out / "compare_votes.json").read_text())
    assert list(report["variants"]) == [MAJORITY, "gate std + rank(std)"]
    assert report["num_questions"] == 2 and set(report["results"]) == {"1", "6"}
    assert report["results"]["6"][1]["accuracy"] == 1.0 and report["results"]["6"][0]["accuracy"] == 0.5
    markdown = (out / "compare_votes.md").read_text()
    assert "| gate std + rank(std) |" in markdown and "within-question AUROC" in markdown
    assert (out / "compare_votes.png").stat().st_size > 1000


def test_arguments_are_validated_before_reading():
    with pytest.raises(ValueError, match="--samples"):
        CompareVotesArguments(samples=[])
    with pytest.raises(ValueError, match="unknown field"):
        CompareVotesArguments(samples=["x.jsonl"], variants=["bogus=1"])
    with pytest.raises(ValueError, match="k_list"):
        CompareVotesArguments(samples=["x.jsonl"], k_list=[0, 4])


def test_compare_votes_rejects_an_empty_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no questions"):
        compare_votes(CompareVotesArguments(samples=[str(empty)], output_dir=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_sampling_script_then_compare_votes_end_to_end(tiny_model_dir, tmp_path):
    """The sampling script writes graded rollouts with entropies; compare-votes reads them; a rerun resumes."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "sample_task_world.py"
    output = tmp_path / "rollouts.jsonl"
    command = [sys.executable, str(script), "--model", str(tiny_model_dir), "--n_questions", "3", "--n", "4"]
    command += ["--max_tokens", "6", "--batch_size", "2", "--output", str(output)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["tw0-0", "tw0-1", "tw0-2"]
    for line in lines:
        assert len(line["samples"]) == 4
        for sample in line["samples"]:
            assert len(sample["entropies"]) == len(sample["token_ids"]) > 0
            assert isinstance(sample["correct"], bool)
    subprocess.run(command, check=True, capture_output=True, timeout=300)  # everything done: nothing appended
    assert output.read_text().count("\n") == 3
    report = compare_votes(
        CompareVotesArguments(samples=[str(output)], k_list=[1, 4], bootstrap=20, output_dir=str(tmp_path / "cv"))
    )
    assert report["num_questions"] == 3 and len(report["results"]["4"]) == len(default_variants())
