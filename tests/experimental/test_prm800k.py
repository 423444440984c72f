"""PRM800K-format rows -> labelled paths: ratings, the chosen path, every combination (prod), dropped rows, on a
small file written here in the exact format of openai/prm800k (phase 1 and phase 2 rows)."""

from __future__ import annotations

import json

import pytest

from sasc_ttrl.core.errors import ConfigError
from sasc_ttrl.experimental.prm.prm800k import (
    PRM800KSettings,
    chosen_path,
    prm800k_rows,
    product_paths,
    rating_label,
    row_paths,
    step_alternatives,
)


def completion(text, rating, flagged=False):
    return {"text": text, "rating": rating, "flagged": flagged}


def step(completions, chosen=0, human=None):
    return {"completions": completions, "human_completion": human, "chosen_completion": chosen}


# Phase 1: alternatives at step 2 (all -1: a human wrote the step), a neutral step, 2 alternatives at the end.
PHASE1 = {
    "labeler": "e90a38f3",
    "timestamp": "2022-07-30T23:23:32.118856",
    "generation": None,
    "is_quality_control_question": False,
    "is_initial_screening_question": False,
    "question": {"problem": "Three pencils cost $1.24 ... a pencil?", "ground_truth_answer": "29"},
    "label": {
        "steps": [
            step([completion("Let p be a pencil's price.", 1)]),
            step(
                [completion("3p + e = 124 and 5p + e = 182.", -1), completion("3p + e = 124.", -1)],
                chosen=None,
                human={
                    "text": "We have 3p+e=1.24 and 5p+e=1.82.",
                    "rating": None,
                    "source": "human",
                    "flagged": False,
                },
            ),
            step([completion("We could also substitute.", 0)]),
            step(
                [completion("So p = 0.28.\n\n# Answer\n\n28", -1), completion("So 29 cents.\n\n# Answer\n\n29", 1)],
                chosen=1,
            ),
        ],
        "total_time": 293250,
        "finish_reason": "solution",
    },
}
# Phase 2: the labeler stops at the first error; the error step has alternatives and no chosen completion.
PHASE2 = {
    "labeler": "cc88bf76",
    "timestamp": "2022-11-22T16:51:29.980606",
    "generation": 6,
    "is_quality_control_question": False,
    "is_initial_screening_question": False,
    "question": {
        "problem": "In how many ways can they sit around a circular table?",
        "ground_truth_solution": "... $2\\cdot5!\\cdot5!=\\boxed{28800}$.",
        "ground_truth_answer": "28800",
        "pre_generated_steps": ["There are three groups.", "For the Democrats, 5!/2 ways."],
        "pre_generated_answer": "7200",
        "pre_generated_verifier_score": 0.0011,
    },
    "label": {
        "steps": [
            step([completion("There are three groups.", 1, None)]),
            step(
                [completion("For the Democrats, 5!/2 ways.", -1, None), completion("There are 5! ways.", 1)],
                chosen=None,
            ),
        ],
        "total_time": 164458,
        "finish_reason": "found_error",
    },
}
QUALITY_CONTROL = {**PHASE2, "is_quality_control_question": True}
SCREENING = {
    **PHASE2,
    "generation": -1,
    "is_initial_screening_question": True,
    "question": {"problem": "Solve over the integers: 2^a+4^b+8^c=328.", "ground_truth_answer": None},
}
BAD_PROBLEM = {**PHASE1, "label": {**PHASE1["label"], "finish_reason": "bad_problem"}}
# A give-up row whose last step holds no completion at all (it happens in phase 1).
GIVE_UP = {
    **PHASE1,
    "label": {
        "steps": [step([completion("In a regular tetrahedron all faces are equilateral.", 1)]), step(None, None)],
        "finish_reason": "give_up",
    },
}


@pytest.fixture
def prm800k_file(tmp_path):
    path = tmp_path / "phase_mix.jsonl"
    rows = [PHASE1, PHASE2, QUALITY_CONTROL, SCREENING, BAD_PROBLEM, GIVE_UP]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_ratings_map_as_the_paper_and_neutral_is_an_option():
    assert [rating_label(r) for r in (1, -1, 0, None)] == [1, 0, 1, 1]
    assert [rating_label(r, "bad") for r in (1, -1, 0, None)] == [1, 0, 0, 0]
    assert [rating_label(r, "ignore") for r in (1, -1, 0)] == [1, 0, None]
    with pytest.raises(ValueError, match="rating"):
        rating_label(2)
    with pytest.raises(ConfigError, match="neutral"):
        PRM800KSettings(neutral="positive")
    with pytest.raises(ConfigError, match="path mode"):
        PRM800KSettings(mode="all")


def test_chosen_path_follows_chosen_then_human_completions():
    path = chosen_path(PHASE1["label"]["steps"])
    assert path == [
        ("Let p be a pencil's price.", 1),
        ("We have 3p+e=1.24 and 5p+e=1.82.", 1),  # every completion -1: the human step, rated good
        ("We could also substitute.", 1),  # neutral -> good by default
        ("So 29 cents.\n\n# Answer\n\n29", 1),
    ]
    assert [lab for _, lab in chosen_path(PHASE1["label"]["steps"], "ignore")] == [1, 1, None, 1]
    # Phase 2: no chosen and no human completion -> the path ends with the generator's own (first wrong) step.
    assert chosen_path(PHASE2["label"]["steps"]) == [
        ("There are three groups.", 1),
        ("For the Democrats, 5!/2 ways.", 0),
    ]
    # A step without completions ends the path before it.
    assert chosen_path(GIVE_UP["label"]["steps"]) == [("In a regular tetrahedron all faces are equilateral.", 1)]


def test_prod_takes_every_combination_of_the_alternatives():
    steps = PHASE1["label"]["steps"]
    assert [len(step_alternatives(s)) for s in steps] == [1, 3, 1, 2]  # step 2: two completions + the human one
    paths = product_paths(steps)
    assert len(paths) == 1 * 3 * 1 * 2
    assert len({tuple(p) for p in paths}) == 6 and all(len(p) == 4 for p in paths)
    assert paths[0] == [
        ("Let p be a pencil's price.", 1),
        ("3p + e = 124 and 5p + e = 182.", 0),
        ("We could also substitute.", 1),
        ("So p = 0.28.\n\n# Answer\n\n28", 0),
    ]
    assert paths[-1][1] == ("We have 3p+e=1.24 and 5p+e=1.82.", 1) and paths[-1][3][1] == 1
    assert product_paths(steps, max_paths=4) == paths[:4]  # itertools.product order, capped
    assert len(product_paths(PHASE2["label"]["steps"])) == 2
    assert product_paths(GIVE_UP["label"]["steps"]) == [[("In a regular tetrahedron all faces are equilateral.", 1)]]


def test_control_and_bad_problem_rows_are_dropped_unless_kept():
    settings = PRM800KSettings()
    assert row_paths(QUALITY_CONTROL, settings) == [] and row_paths(SCREENING, settings) == []
    assert row_paths(BAD_PROBLEM, settings) == []
    kept = PRM800KSettings(keep_control_rows=True)
    assert len(row_paths(QUALITY_CONTROL, kept)) == 1 and row_paths(BAD_PROBLEM, kept) == []


def test_prm800k_rows_from_a_file(prm800k_file):
    rows = prm800k_rows([str(prm800k_file)], PRM800KSettings())
    assert [r["id"] for r in rows] == ["phase_mix:1", "phase_mix:2", "phase_mix:6"]
    first = rows[0]
    assert first["question"] == PHASE1["question"]["problem"] and first["target_answer"] == "29"
    assert first["target"] == "prm800k" and first["finish_reason"] == "solution"
    [path] = first["rollouts"]
    assert path["labels"] == [1, 1, 1, 1] and path["text"] == "\n".join(path["steps"])
    assert rows[1]["rollouts"][0]["labels"] == [1, 0]
    prod = prm800k_rows([str(prm800k_file)], PRM800KSettings(mode="prod", neutral="bad", keep_control_rows=True))
    assert [len(r["rollouts"]) for r in prod] == [6, 2, 2, 2, 1]
    assert all(r["rollouts"][0]["labels"][2] == 0 for r in prod[:1])  # the neutral step, now bad
    assert len(prm800k_rows([str(prm800k_file)], PRM800KSettings(), limit=2)) == 2


def test_a_folder_of_prm800k_files_reads_like_the_files(prm800k_file):
    # A folder (or a hub name) goes through the datasets loader: the same rows and labels, keys by row index.
    by_file = prm800k_rows([str(prm800k_file)], PRM800KSettings(mode="prod"))
    by_folder = prm800k_rows([str(prm800k_file.parent)], PRM800KSettings(mode="prod"))
    assert [r["id"] for r in by_folder] == [f"{prm800k_file.parent}:{i}" for i in (0, 1, 5)]
    strip = [{k: v for k, v in r.items() if k != "id"} for r in by_file]
    assert [{k: v for k, v in r.items() if k != "id"} for r in by_folder] == strip


def test_prm800k_rows_refuse_other_formats(tmp_path):
    wrong = tmp_path / "rows.jsonl"
    wrong.write_text(json.dumps({"question": "What is 1 + 1?", "answer": "2"}) + "\n")
    with pytest.raises(ConfigError, match="not a PRM800K row"):
        prm800k_rows([str(wrong)], PRM800KSettings())
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(PHASE1) + "\n{not json\n")
    with pytest.raises(ConfigError, match="broken.jsonl:2"):
        prm800k_rows([str(broken)], PRM800KSettings())
    only_control = tmp_path / "control.jsonl"
    only_control.write_text(json.dumps(QUALITY_CONTROL) + "\n")
    with pytest.raises(ConfigError, match="no labelled PRM800K path"):
        prm800k_rows([str(only_control)], PRM800KSettings())
