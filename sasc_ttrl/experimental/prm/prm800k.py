"""Human step labels in PRM800K's format (Lightman et al., 2023, "Let's Verify Step by Step"; openai/prm800k) as
labelled solution paths for the process reward model of ``sasc-ttrl prm``.

One JSON row per labelled solution (phase 1 and phase 2 alike)::

    {"question": {"problem": ..., "ground_truth_answer": ...},
     "label": {"steps": [{"completions": [{"text": ..., "rating": -1 | 0 | 1 | null}, ...] | null,
                          "human_completion": null | {"text": ..., "rating": null} | "text",
                          "chosen_completion": 0 | null}, ...],
               "finish_reason": "solution" | "found_error" | "give_up" | "bad_problem"},
     "is_quality_control_question": false, "is_initial_screening_question": false, "generation": 9}   # phase 2

**Ratings** become labels as the paper does: +1 good (1), -1 bad (0), and the neutral 0 by ``neutral``: ``good``
(default -- the paper: "we consider neutral steps to be positive", quoted in openai/prm800k#8, and the default of
OpenR's PRM800K preprocessor), ``bad`` (OpenR's ``--neutral-is-bad``) or ``ignore`` (the step stays in the context,
its label is left out of the loss). A missing rating counts as neutral (as OpenR does). A human-written step is good:
labelers wrote one only when every model step was rated -1, and the phase-1 instructions ask for a +1 step.

**Paths.** A step may hold several rated alternatives. ``mode`` turns a row into

* ``chosen`` -- one path: at each step the chosen completion, else the human completion; a step with neither ends
  the path *with* its first completion (in phase 2 the generator's own step, where the labeler found the first
  error: it carries the row's only negative label), and a step without completions ends it before;
* ``prod`` -- every combination of the steps' alternatives (the completions, plus the human one), the Cartesian
  product of OpenR's ``convert_prm800k_item`` (``preprocess/src/preprocessors/prm800k.py``: steps of 1, 3 and 2
  alternatives give 6 paths), taken in ``itertools.product`` order up to ``max_paths`` per row; steps without
  completions are skipped, as there. The paper's authors trained on every labelled step in its own prefix
  (openai/prm800k#11); with a causal PRM the labels of a path are those of its prefixes, so ``prod`` covers them.

Rows a labeler flagged ``bad_problem`` are dropped; so are phase 2's quality-control and initial-screening rows (the
same solutions served to every labeler) unless ``keep_control_rows``.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.errors import ConfigError
from ...data.sources import load_raw_dataset

logger = logging.getLogger(__name__)

PATH_MODES = ("chosen", "prod")
NEUTRAL_MODES = ("good", "bad", "ignore")
TARGET = "prm800k"

Step = tuple[str, int | None]


@dataclass
class PRM800KSettings:
    """How PRM800K rows become labelled paths (see the module docstring).

    Args:
        mode: ``chosen`` (one path per row) or ``prod`` (every combination of the alternatives).
        neutral: Label of a neutral (0) rating: ``good``, ``bad`` or ``ignore``.
        max_paths: ``prod``: at most this many paths per row.
        keep_control_rows: Keep phase 2's quality-control and initial-screening rows.
    """

    mode: str = "chosen"
    neutral: str = "good"
    max_paths: int = 64
    keep_control_rows: bool = False

    def __post_init__(self):
        if self.mode not in PATH_MODES:
            raise ConfigError(f"prm800k path mode must be one of {PATH_MODES}, got {self.mode!r}")
        if self.neutral not in NEUTRAL_MODES:
            raise ConfigError(f"prm800k neutral handling must be one of {NEUTRAL_MODES}, got {self.neutral!r}")
        if self.max_paths < 1:
            raise ConfigError(f"prm800k max_paths must be >= 1, got {self.max_paths}")


def rating_label(rating: int | None, neutral: str = "good") -> int | None:
    """The training label of a rating: 1 (good), 0 (bad), or ``None`` (a neutral step with ``neutral="ignore"``).

    >>> [rating_label(r) for r in (1, 0, -1, None)], rating_label(0, "bad"), rating_label(0, "ignore")
    ([1, 1, 0, 1], 0, None)
    """
    if rating is None or rating == 0:
        return {"good": 1, "bad": 0, "ignore": None}[neutral]
    if rating in (1, -1):
        return int(rating > 0)
    raise ValueError(f"a PRM800K rating is -1, 0, 1 or null, got {rating!r}")


def _human_text(step: dict[str, Any]) -> str | None:
    human = step.get("human_completion")
    if isinstance(human, dict):
        human = human.get("text")
    return human if isinstance(human, str) and human.strip() else None


def step_alternatives(step: dict[str, Any], neutral: str = "good") -> list[Step]:
    """Every rated alternative of one step, ``(text, label)``: the completions in order, then the human one."""
    out = [(c["text"], rating_label(c.get("rating"), neutral)) for c in step.get("completions") or []]
    human = _human_text(step)
    return out + [(human, 1)] if human is not None else out


def chosen_path(steps: Sequence[dict[str, Any]], neutral: str = "good") -> list[Step]:
    """The one path of a row's steps (``mode="chosen"``, see the module docstring)."""
    path: list[Step] = []
    for step in steps:
        completions = step.get("completions") or []
        chosen = step.get("chosen_completion")
        if chosen is not None and 0 <= chosen < len(completions):
            path.append((completions[chosen]["text"], rating_label(completions[chosen].get("rating"), neutral)))
        elif _human_text(step) is not None:
            path.append((_human_text(step), 1))  # type: ignore[arg-type]
        else:
            if completions:
                path.append((completions[0]["text"], rating_label(completions[0].get("rating"), neutral)))
            break
    return path


def product_paths(steps: Sequence[dict[str, Any]], neutral: str = "good", max_paths: int = 64) -> list[list[Step]]:
    """Every combination of the steps' alternatives (``mode="prod"``), at most ``max_paths`` of them."""
    alternatives = [alts for alts in (step_alternatives(s, neutral) for s in steps) if alts]
    if not alternatives:
        return []
    return [list(p) for p in itertools.islice(itertools.product(*alternatives), max_paths)]


def row_paths(row: dict[str, Any], settings: PRM800KSettings) -> list[list[Step]]:
    """The labelled paths of one PRM800K row (none for a dropped row)."""
    label = row.get("label") or {}
    if label.get("finish_reason") == "bad_problem":
        return []
    if not settings.keep_control_rows and (
        row.get("is_quality_control_question") or row.get("is_initial_screening_question")
    ):
        return []
    steps = label.get("steps") or []
    if settings.mode == "chosen":
        path = chosen_path(steps, settings.neutral)
        return [path] if path else []
    return product_paths(steps, settings.neutral, settings.max_paths)


def read_prm800k(source: str, split: str = "train") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(key, row)`` of every row of a PRM800K JSONL file (read line by line: its nested fields vary from row to
    row) or of a hub data set / folder in that format; the key is ``<file stem>:<line>`` or ``<name>:<index>``."""
    path = Path(source)
    if path.is_file():
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield f"{path.stem}:{number}", json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ConfigError(f"{path}:{number} is not a JSON row: {err}") from err
        return
    for index, row in enumerate(load_raw_dataset(source, split=split)):
        yield f"{source}:{index}", row


def prm800k_rows(
    sources: Iterable[str],
    settings: PRM800KSettings,
    split: str = "train",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Step-label rows (the format of ``sasc-ttrl prm``'s ``step_labels.jsonl``) from PRM800K sources.

    Each kept PRM800K row gives one output row: ``id``, ``question`` (the problem), ``target`` (``"prm800k"``),
    ``target_answer`` (the ground-truth answer), ``finish_reason``, and ``rollouts``, one per path, each with
    ``text`` (the steps joined by new lines), ``steps`` and ``labels`` (1 / 0 / ``None`` = not supervised).

    Args:
        sources: PRM800K JSONL files, folders or hub names (phase 1 and phase 2 rows may be mixed).
        settings: Path mode, neutral handling, path cap and control rows.
        split: Split of hub data sets.
        limit: Only the first N kept rows.

    Raises:
        ConfigError: when a source holds rows that are not in PRM800K's format, or nothing to train on.
    """
    sources = list(sources)
    out: list[dict[str, Any]] = []
    dropped = capped = 0
    for source in sources:
        for key, row in read_prm800k(source, split):
            if limit is not None and len(out) >= limit:
                break
            if not isinstance(row.get("question"), dict) or not isinstance(row.get("label"), dict):
                raise ConfigError(f"{key}: not a PRM800K row (it needs 'question' and 'label' objects)")
            paths = row_paths(row, settings)
            if not paths:
                dropped += 1
                continue
            if settings.mode == "prod" and len(paths) == settings.max_paths:
                capped += 1
            out.append(
                {
                    "id": key,
                    "question": row["question"].get("problem", ""),
                    "target": TARGET,
                    "target_answer": row["question"].get("ground_truth_answer"),
                    "finish_reason": row["label"].get("finish_reason"),
                    "rollouts": [
                        {
                            "text": "\n".join(t for t, _ in path),
                            "answer": None,
                            "steps": [t for t, _ in path],
                            "labels": [lab for _, lab in path],
                        }
                        for path in paths
                    ],
                }
            )
    logger.info(
        "PRM800K: %d rows kept, %d dropped, %d capped at %d paths", len(out), dropped, capped, settings.max_paths
    )
    if not out:
        raise ConfigError(f"no labelled PRM800K path in {sources}")
    return out
