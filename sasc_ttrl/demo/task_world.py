"""A task world the project generates itself: easy one-step arithmetic word problems with a ``\\boxed{}`` answer.

Each question is a short story ("Mia has 7 marbles. She finds 5 more. How many marbles does Mia have now?") whose
answer is one addition, subtraction or multiplication of small numbers (``two_step`` stories take two operations,
and [`make_arithmetic`] asks bare sums, differences and products: the vote study's other question families). A
small instruct model (SmolLM2-135M) is right on these only part of the time when it samples, and right more often
when several samples vote: the regime where label-free test-time RL can teach it. Questions are rows in the
format of the shipped benchmarks (``{prompt, answer, source, id}``): ``prompt`` is the bare question (the
loaders add the step-by-step / ``\\boxed{}`` instruction), ``answer`` the integer as a string, so every command of
the project reads them; each story row also has a worked ``solution`` (the reference rationale of
``self-improve --guidance rationale``).

Python::

    from sasc_ttrl.demo.task_world import make_questions, make_split
    questions = make_questions(300, seed=0)                   # list of {prompt, answer, id, source, op}
    trained, held_out = make_split(24, 24, seed=0)           # disjoint questions of the same kind

Command (writes a JSON list; ``--held_out_output`` also writes held-out questions disjoint from them)::

    python -m sasc_ttrl.demo.task_world --n 300 --seed 0 --output outputs/task_world.json

The generator is seeded: the same ``(n, seed, ops, max_value)`` always gives the same questions, and the first
``m`` questions of a set of ``n > m`` are the ``m`` questions of the smaller set.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

from ..data.store import write_atomic

SOURCE = "task-world"
OPS = ("add", "sub", "mul")  # the default mix (one step each)
ALL_OPS = (*OPS, "two_step")  # ``two_step``: two operations in one story (the vote study's harder family)
DEFAULT_MAX_VALUE = 20
NAMES = (
    ("Mia", "She"),
    ("Tom", "He"),
    ("Ava", "She"),
    ("Leo", "He"),
    ("Zoe", "She"),
    ("Sam", "He"),
    ("Nina", "She"),
    ("Ben", "He"),
    ("Lily", "She"),
    ("Max", "He"),
)
ITEMS = ("apples", "marbles", "stickers", "books", "pencils", "cookies", "coins", "shells", "cards", "balloons")
CONTAINERS = ("boxes", "bags", "baskets", "jars", "rows", "shelves")

ADD_TEMPLATES = (
    "{name} has {a} {item}. {pronoun} finds {b} more. How many {item} does {name} have now?",
    "{name} had {a} {item} and then bought {b} more. How many {item} does {name} have in total?",
    "There are {a} {item} on a table and {b} {item} on a chair. How many {item} are there altogether?",
)
SUB_TEMPLATES = (
    "{name} has {a} {item}. {pronoun} gives {b} of them to a friend. How many {item} does {name} have left?",
    "A jar holds {a} {item}. {name} takes out {b}. How many {item} are still in the jar?",
    "{name} had {a} {item} and lost {b}. How many {item} does {name} have now?",
)
MUL_TEMPLATES = (
    "{name} has {a} {container} with {b} {item} in each. How many {item} does {name} have?",
    "There are {a} {container} and each holds {b} {item}. How many {item} are there in total?",
)
# Two steps: (a + b) - c, or a x b + c.
TWO_STEP_ADD_SUB = (
    "{name} has {a} {item}. {pronoun} buys {b} more and then gives {c} to a friend. How many {item} does {name} "
    "have now?",
    "A box holds {a} {item}. {name} puts in {b} more and later takes out {c}. How many {item} are in the box?",
)
TWO_STEP_MUL_ADD = (
    "{name} has {a} {container} with {b} {item} in each, and {c} loose {item}. How many {item} does {name} have?",
    "There are {a} {container} of {b} {item} each. {name} adds {c} more {item}. How many {item} are there now?",
)
ARITHMETIC_SYMBOLS = {"add": "+", "sub": "-", "mul": "*"}


def make_question(rng: random.Random, ops: Sequence[str] = OPS, max_value: int = DEFAULT_MAX_VALUE) -> dict:
    """One word problem drawn from ``rng``: ``{"prompt", "answer", "solution", "op"}`` (``solution`` is the
    calculation in the one-shot prompt's format, e.g. ``3 + 2 = 5. The answer is \\boxed{5}.``; a ``two_step``
    story's has two steps).

    Additions use operands in ``[1, max_value]``, subtractions ``a`` in ``[2, max_value]`` and ``b`` in
    ``[1, a - 1]`` (the answer is positive), multiplications factors in ``[2, min(max_value, 9)]``. ``two_step``
    (never in the default mix) is ``a + b - c`` with ``c`` in ``[1, a + b - 1]`` or ``a x b + c`` with
    ``c`` in ``[1, max_value]``.
    """
    op = rng.choice(list(ops))
    name, pronoun = rng.choice(NAMES)
    item, container = rng.choice(ITEMS), rng.choice(CONTAINERS)
    c = 0
    if op == "two_step":
        if rng.random() < 0.5:
            a, b = rng.randint(2, max_value), rng.randint(1, max_value)
            c = rng.randint(1, a + b - 1)
            template, answer = rng.choice(TWO_STEP_ADD_SUB), a + b - c
            steps = f"{a} + {b} = {a + b}. {a + b} - {c} = {answer}."
        else:
            top = max(2, min(max_value, 9))
            a, b, c = rng.randint(2, top), rng.randint(2, top), rng.randint(1, max_value)
            template, answer = rng.choice(TWO_STEP_MUL_ADD), a * b + c
            steps = f"{a} * {b} = {a * b}. {a * b} + {c} = {answer}."
    elif op == "add":
        a, b = rng.randint(1, max_value), rng.randint(1, max_value)
        template, answer = rng.choice(ADD_TEMPLATES), a + b
    elif op == "sub":
        a = rng.randint(2, max_value)
        b = rng.randint(1, a - 1)
        template, answer = rng.choice(SUB_TEMPLATES), a - b
    else:
        top = max(2, min(max_value, 9))
        a, b = rng.randint(2, top), rng.randint(2, top)
        template, answer = rng.choice(MUL_TEMPLATES), a * b
    if op != "two_step":
        steps = f"{a} {ARITHMETIC_SYMBOLS[op]} {b} = {answer}."
    prompt = template.format(name=name, pronoun=pronoun, item=item, container=container, a=a, b=b, c=c)
    solution = f"{steps} The answer is \\boxed{{{answer}}}."
    return {"prompt": prompt, "answer": str(answer), "solution": solution, "op": op}


def _validate(n: int, ops: Sequence[str], max_value: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    unknown = [op for op in ops if op not in ALL_OPS]
    if unknown or not ops:
        raise ValueError(f"ops must be a non-empty subset of {ALL_OPS}, got {list(ops)}")
    if max_value < 2:
        raise ValueError(f"max_value must be >= 2, got {max_value}")


def make_questions(
    n: int,
    seed: int = 0,
    ops: Sequence[str] = OPS,
    max_value: int = DEFAULT_MAX_VALUE,
    exclude: Sequence[str] = (),
    id_prefix: str | None = None,
) -> list[dict]:
    """``n`` distinct word problems, seeded.

    Args:
        n: Number of questions.
        seed: Seed of the generator; the same arguments always give the same questions.
        ops: Which operations to draw from (``add``, ``sub``, ``mul``).
        max_value: Largest operand of additions and subtractions (multiplications stay within 9 x 9).
        exclude: Question texts that must not appear (e.g. the trained-on questions, to draw held-out ones).
        id_prefix: Prefix of the ids (default ``tw<seed>``); the ids are ``<prefix>-<index>``.

    Returns:
        A list of ``{"prompt", "answer", "solution", "id", "source", "op"}`` dicts with distinct prompts.

    Raises:
        ValueError: on an unknown op, ``max_value < 2``, or when the generator cannot find ``n`` distinct questions.
    """
    _validate(n, ops, max_value)
    rng = random.Random(f"task-world:{seed}")
    prefix = id_prefix or f"tw{seed}"
    seen = set(exclude)
    rows: list[dict] = []
    misses = 0
    while len(rows) < n:
        question = make_question(rng, ops, max_value)
        if question["prompt"] in seen:
            misses += 1
            if misses > 10_000:
                raise ValueError(
                    f"could not draw {n} distinct questions with ops={list(ops)} max_value={max_value} "
                    f"(got {len(rows)}): raise max_value or add ops"
                )
            continue
        misses = 0
        seen.add(question["prompt"])
        rows.append({**question, "id": f"{prefix}-{len(rows)}", "source": SOURCE})
    return rows


def make_split(
    n_train: int,
    n_held_out: int,
    seed: int = 0,
    ops: Sequence[str] = OPS,
    max_value: int = DEFAULT_MAX_VALUE,
) -> tuple[list[dict], list[dict]]:
    """Questions to train on (without their answers) and held-out questions of the same kind, disjoint.

    The trained-on questions are ``make_questions(n_train, seed)`` (ids ``tw<seed>-i``); the held-out ones come from
    a separate stream (ids ``tw<seed>-heldout-i``) with every trained-on question excluded.
    """
    train = make_questions(n_train, seed, ops, max_value)
    held_out = make_questions(
        n_held_out,
        seed + 1_000_003,
        ops,
        max_value,
        exclude=[q["prompt"] for q in train],
        id_prefix=f"tw{seed}-heldout",
    )
    return train, held_out


def make_arithmetic(
    n: int, seed: int = 0, ops: Sequence[str] = OPS, max_value: int = 99, id_prefix: str | None = None
) -> list[dict]:
    """``n`` distinct bare arithmetic questions ("What is 37 + 48?"), seeded, in the task world's row format.

    Additions and subtractions use operands in ``[10, max_value]`` (subtractions keep the answer positive),
    multiplications factors in ``[2, 12]``.
    """
    _validate(n, ops, max_value)
    if "two_step" in ops or max_value < 11:
        raise ValueError(f"make_arithmetic takes ops among {OPS} and max_value >= 11, got {list(ops)}, {max_value}")
    rng = random.Random(f"task-world-arithmetic:{seed}")
    prefix = id_prefix or f"arith{seed}"
    seen: set[str] = set()
    rows: list[dict] = []
    while len(rows) < n:
        op = rng.choice(list(ops))
        if op == "mul":
            a, b = rng.randint(2, 12), rng.randint(2, 12)
        else:
            a, b = rng.randint(10, max_value), rng.randint(10, max_value)
            if op == "sub" and a <= b:
                a, b = b + 1, a
        answer = {"add": a + b, "sub": a - b, "mul": a * b}[op]
        prompt = f"What is {a} {ARITHMETIC_SYMBOLS[op]} {b}?"
        if prompt in seen:
            continue
        seen.add(prompt)
        rows.append(
            {"prompt": prompt, "answer": str(answer), "op": op, "id": f"{prefix}-{len(rows)}", "source": SOURCE}
        )
    return rows


def write_questions(path: str | os.PathLike, questions: Sequence[dict]) -> Path:
    """Write questions as a JSON list (atomically; parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, json.dumps(list(questions), indent=1))


def main(argv: list[str] | None = None) -> None:
    """``python -m sasc_ttrl.demo.task_world --n 300 --seed 0 --output f.json [--held_out N --held_out_output f]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="Number of questions.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the generator.")
    parser.add_argument("--output", required=True, help="JSON file to write.")
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=ALL_OPS, help="Operations to draw from.")
    parser.add_argument("--max_value", type=int, default=DEFAULT_MAX_VALUE, help="Largest add/sub operand.")
    parser.add_argument("--held_out", type=int, default=0, help="Also draw this many held-out questions.")
    parser.add_argument("--held_out_output", default=None, help="Where the held-out questions go (JSON).")
    args = parser.parse_args(argv)
    if args.held_out and not args.held_out_output:
        parser.error("--held_out needs --held_out_output")
    train, held_out = make_split(args.n, args.held_out, args.seed, args.ops, args.max_value)
    write_questions(args.output, train)
    if args.held_out:
        write_questions(args.held_out_output, held_out)


if __name__ == "__main__":
    main()
