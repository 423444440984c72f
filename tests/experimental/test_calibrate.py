"""Calibration SFT: the soft self-consistency target, ECE / Brier on hand-made numbers, the Yes/No SFT rows, and
the whole `sasc-ttrl calibrate` loop on the tiny model."""

from __future__ import annotations

import json

import pytest

from sasc_ttrl.commands import build
from sasc_ttrl.core.metrics import auroc, brier_score, expected_calibration_error
from sasc_ttrl.data.rollouts import QuestionRollouts
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.experimental.calibrate import CalibrationArguments
from sasc_ttrl.experimental.calibrate import runner as calibrate
from sasc_ttrl.experimental.calibrate.runner import calibration_examples, sft_rows, ssc_targets, yes_no_copies
from sasc_ttrl.selection.build_arguments import BuildArguments


def test_ssc_target_is_the_confidence_share_of_the_answer():
    # "4" and "4.0" are one answer: (0.5 + 0.1) / (0.5 + 0.1 + 0.4); the unanswered candidate has no target.
    targets = ssc_targets(["4", "5", "4.0", None], [0.5, 0.4, 0.1, 0.9], timeout=None)
    assert targets[0] == pytest.approx(0.6) and targets[2] == pytest.approx(0.6)
    assert targets[1] == pytest.approx(0.4) and targets[3] is None
    # Equal confidences: the majority share.
    assert ssc_targets(["1", "1", "2"], [1.0, 1.0, 1.0], timeout=None) == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    with pytest.raises(ValueError, match="confidences"):
        ssc_targets(["1"], [0.5, 0.5])


def test_ece_and_brier_by_hand():
    # Bin [0.2, 0.3): confidences 0.2, 0.2, accuracy 0.5 -> gap 0.3; bin [0.9, 1]: 0.9, 1.0, accuracy 1 -> gap 0.05.
    p, y = [0.2, 0.2, 0.9, 1.0], [True, False, True, True]
    assert expected_calibration_error(p, y, num_bins=10) == pytest.approx(0.5 * 0.3 + 0.5 * 0.05)
    assert brier_score(p, y) == pytest.approx((0.64 + 0.04 + 0.01 + 0.0) / 4)
    assert expected_calibration_error([0.7, 0.7, 0.7], [True, True, False], num_bins=1) == pytest.approx(0.7 - 2 / 3)
    assert expected_calibration_error([1.0], [True]) == 0.0  # 1.0 falls in the last bin
    with pytest.raises(ValueError, match="as many"):
        brier_score([0.5], [True, False])


def test_auroc_by_hand():
    # Correct: 0.9, 0.4; incorrect: 0.5, 0.4 -> pairs (0.9>0.5, 0.9>0.4, 0.4<0.5, 0.4=0.4) = (1 + 1 + 0 + 0.5) / 4.
    assert auroc([0.9, 0.4, 0.5, 0.4], [True, True, False, False]) == pytest.approx(2.5 / 4)
    assert auroc([0.1, 0.9], [False, True]) == 1.0
    assert auroc([0.3, 0.6], [True, True]) is None


def test_within_group_auroc_pools_pairs_of_the_same_group():
    from sasc_ttrl.core.metrics import within_group_auroc

    # group 1: 2 pairs, both won; group 2: 1 pair, lost; group 3: one kind only, no pair.
    groups = [([0.9, 0.8, 0.1], [True, True, False]), ([0.2, 0.7], [True, False]), ([0.5], [True])]
    assert within_group_auroc(groups) == (pytest.approx(2 / 3), 3)
    assert within_group_auroc([([1.0], [False])]) == (None, 0)


def test_yes_no_rows_follow_the_target():
    assert yes_no_copies(0.75, 4) == (3, 1) and yes_no_copies(0.0, 10) == (0, 10) and yes_no_copies(1.0, 3) == (3, 0)
    with pytest.raises(ValueError, match="target"):
        yes_no_copies(1.5, 10)
    rows = sft_rows([{"id": "a", "message": "m", "target": 0.3}], resolution=10)
    answers = [r["completion"][0]["content"] for r in rows]
    assert len(rows) == 10 and answers.count("Yes") == 3 and answers.count("No") == 7
    assert all(r["prompt"] == [{"role": "user", "content": "m"}] for r in rows)


def test_examples_use_the_pseudo_label_side_only():
    q = QuestionRollouts(
        key="q1",
        question="What is 2 + 2?",
        pseudo_label="4",
        gold="5",  # never read for training
        rollouts=[
            {"text": "\\boxed{4}", "answer": "4", "mean_token_probability": 0.8},
            {"text": "\\boxed{5}", "answer": "5", "mean_token_probability": 0.2},
            {"text": "no idea", "answer": None, "mean_token_probability": 0.9},
        ],
    )
    examples = calibration_examples([q], "token", timeout=None)
    assert [e["target"] for e in examples] == pytest.approx([0.8, 0.2])
    assert "\\boxed{4}" in examples[0]["message"] and "Is the answer correct?" in examples[0]["message"]
    assert [e["target"] for e in calibration_examples([q], "uniform", timeout=None)] == [0.5, 0.5]
    del q.rollouts[0]["mean_token_probability"]
    with pytest.raises(ValueError, match="mean_token_probability"):
        calibration_examples([q], "token", timeout=None)


def test_limit_keeps_the_first_training_questions(tmp_path):
    rows = [
        {"id": str(i), "question": f"q{i}", "pseudo_label": "1", "reference_answer": "1", "candidates": []}
        for i in range(5)
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = CalibrationArguments(dataset_path=str(path), model_name_or_path="m", eval_fraction=0.5, limit=4)
    train, held_out = calibrate.split_questions(args)
    assert [q.key for q in train] == ["0", "1"] and [q.key for q in held_out] == ["2", "3"]
    with pytest.raises(ValueError, match="limit"):
        CalibrationArguments(dataset_path=str(path), model_name_or_path="m", limit=0)


@pytest.mark.slow
def test_calibrate_end_to_end_on_the_tiny_model(tiny_model_dir, tmp_path):
    data = write_tiny_dataset(tmp_path / "sums.json", n=6, seed=7)
    build_args = BuildArguments(
        model_name_or_path=str(tiny_model_dir),
        dataset_name=str(data),
        methods=["self-calibration"],
        n_candidates=4,
        temperature=1.0,
        max_tokens=40,
        seed=2,
        dtype="float32",
        save_candidates=True,
        output_dir=str(tmp_path / "build"),
    )
    build.main(build_args)
    args = CalibrationArguments(
        dataset_path=str(tmp_path / "build" / "self-calibration.jsonl"),
        model_name_or_path=str(tiny_model_dir),
        eval_fraction=0.5,
        resolution=4,
        learning_rate=5e-3,
        num_train_epochs=3,
        per_device_train_batch_size=8,
        max_length=256,
        output_dir=str(tmp_path / "cal"),
    )
    report = calibrate.main(args)
    assert report["train_questions"] == 3 and report["held_out_questions"] == 3
    examples = (tmp_path / "cal" / "calibration_examples.jsonl").read_text().splitlines()
    assert report["train_examples"] == len(examples) > 0
    for part in ("before", "after"):
        assert 0.0 <= report[part]["ece"] <= 1.0 and 0.0 <= report[part]["brier"] <= 1.0
        assert report[part]["items"] == report["before"]["items"] > 0
    # The fine-tuned P(Yes) moved towards the mean target (the model was never asked this question before): closer
    # than before, or, when the model started within 0.05 of it, still within 0.05.
    target = report["target_mean"]
    gap_before = abs(report["before"]["mean_p_yes"] - target)
    assert abs(report["after"]["mean_p_yes"] - target) < max(gap_before, 0.05)
    assert (tmp_path / "cal" / "model" / "config.json").exists()
    # A rerun reuses the model and the measurements.
    saved = json.loads((tmp_path / "cal" / "calibration_report.json").read_text())
    again = calibrate.main(args)
    assert again["after"] == saved["after"] and again["before"] == saved["before"]
    # Other settings would mix with the saved model and measures: refused, naming the setting.
    with pytest.raises(ValueError, match="resolution"):
        calibrate.main(CalibrationArguments(**{**vars(args), "resolution": 8}))
