"""The generated task world: seeded, distinct, answers right, trained and held-out questions disjoint."""

from __future__ import annotations

import json
import re

import pytest

from sasc_ttrl.core.answers import extract_answer
from sasc_ttrl.demo.task_world import OPS, main, make_arithmetic, make_questions, make_split


def _solve(prompt: str, op: str) -> int:
    a, b = (int(x) for x in re.findall(r"\d+", prompt)[:2])
    return {"add": a + b, "sub": a - b, "mul": a * b}[op]


def test_questions_are_seeded_distinct_and_correct():
    questions = make_questions(200, seed=3)
    assert questions == make_questions(200, seed=3)
    assert questions != make_questions(200, seed=4)
    assert make_questions(50, seed=3) == questions[:50]
    assert len({q["prompt"] for q in questions}) == 200
    assert len({q["id"] for q in questions}) == 200
    assert {q["op"] for q in questions} == set(OPS)
    for q in questions:
        assert int(q["answer"]) == _solve(q["prompt"], q["op"]) > 0
        assert extract_answer(f"\\boxed{{{q['answer']}}}") == q["answer"]


def test_split_is_disjoint_and_respects_ops():
    train, held_out = make_split(40, 30, seed=1, ops=["add"], max_value=12)
    assert len(train) == 40 and len(held_out) == 30
    assert not {q["prompt"] for q in train} & {q["prompt"] for q in held_out}
    assert not {q["id"] for q in train} & {q["id"] for q in held_out}
    assert all(q["op"] == "add" and int(q["answer"]) <= 24 for q in train + held_out)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="ops"):
        make_questions(3, ops=["div"])
    with pytest.raises(ValueError, match="max_value"):
        make_questions(3, max_value=1)
    with pytest.raises(ValueError, match="distinct"):
        make_questions(2000, ops=["add"], max_value=2)


def test_command_writes_json(tmp_path):
    out, held = tmp_path / "q.json", tmp_path / "sub" / "h.json"
    main(["--n", "12", "--seed", "0", "--output", str(out), "--held_out", "5", "--held_out_output", str(held)])
    rows, held_rows = json.loads(out.read_text()), json.loads(held.read_text())
    assert [r["prompt"] for r in rows] == [q["prompt"] for q in make_questions(12, seed=0)]
    assert len(held_rows) == 5 and set(rows[0]) >= {"prompt", "answer", "id", "source"}


def test_two_step_stories_have_the_right_answer():
    questions = make_questions(120, seed=5, ops=["two_step"])
    assert {q["op"] for q in questions} == {"two_step"}
    for q in questions:
        a, b, c = (int(x) for x in re.findall(r"\d+", q["prompt"])[:3])
        expected = a * b + c if ("each" in q["prompt"] or " of " in q["prompt"]) else a + b - c
        assert int(q["answer"]) == expected > 0
    # Adding the two-step family did not change the default mix drawn from a seed.
    assert all(q["op"] in OPS for q in make_questions(200, seed=3))


def test_every_story_carries_a_worked_solution_that_reaches_its_answer():
    # The solution is the one-shot prompt's calculation: each "x op y = z." is right, the last z is the answer.
    for q in make_questions(200, seed=3, ops=["add", "sub", "mul", "two_step"]):
        steps = re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)\.", q["solution"])
        assert len(steps) == (2 if q["op"] == "two_step" else 1)
        for a, op, b, z in steps:
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op] == int(z)
        assert steps[-1][3] == q["answer"] == extract_answer(q["solution"])
        assert q["solution"].endswith(f"The answer is \\boxed{{{q['answer']}}}.")
        if len(steps) == 2:  # a two-step solution chains its steps
            assert steps[1][0] == steps[0][3]


def test_arithmetic_questions_are_seeded_and_right():
    rows = make_arithmetic(300, seed=2)
    assert rows == make_arithmetic(300, seed=2) and rows != make_arithmetic(300, seed=3)
    assert len({r["prompt"] for r in rows}) == 300
    for r in rows:
        a, sym, b = re.fullmatch(r"What is (\d+) ([+*-]) (\d+)\?", r["prompt"]).groups()
        assert int(r["answer"]) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[sym] > 0
    with pytest.raises(ValueError, match="make_arithmetic"):
        make_arithmetic(3, ops=["two_step"])
