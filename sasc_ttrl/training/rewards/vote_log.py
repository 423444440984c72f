"""The vote audit log: one JSON line per voted group, with ids unique across a run."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from ...core.voting import VoteResult


class VoteLogCounter:
    """Numbers the groups a reward function votes on, so that each vote-log line has an id unique across the run.

    A group's id is ``"<step>-<i>"``: ``step`` is the training step its batch is generated for (``global_step + 1``
    of the ``trainer_state`` TRL hands to rewards, the step under which TRL logs the vote's metrics) and ``i`` counts
    the groups voted on at that step (several generation batches can fall in one step when
    ``gradient_accumulation_steps`` exceeds ``steps_per_generation``). Without a trainer state (a reward called
    outside a trainer), the id is ``i`` counted over every call.
    """

    def __init__(self):
        self.step: int | None = None
        self.count = 0

    def ids(self, trainer_state: Any, n_groups: int) -> tuple[int | None, list[str]]:
        """The step and the ids of the next ``n_groups`` groups."""
        step = None if trainer_state is None else int(trainer_state.global_step) + 1
        if step != self.step:
            self.step, self.count = step, 0
        first, self.count = self.count, self.count + n_groups
        prefix = "" if step is None else f"{step}-"
        return step, [f"{prefix}{first + j}" for j in range(n_groups)]


def append_vote_log(
    path: str,
    vote: str,
    groups: list[list[int]],
    records: list[dict],
    votes: list[VoteResult],
    step: int | None = None,
    group_ids: Sequence[str] | None = None,
    filtered: Sequence[bool] | None = None,
):
    """Append one JSON line per group to ``path`` (flushed line by line).

    Each line holds ``step`` and ``group`` (see [`VoteLogCounter`]), ``batch_group`` (the group's index in its batch:
    its ``rollout_group``, or its position when there is none), the rollouts' answers, instabilities and ranks, and
    the vote's outcome: kept, weights, ``pseudo_label``, ``label_share``, ``filtered`` (below ``min_label_share``)
    and the rewards given.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for position, (idx, result) in enumerate(zip(groups, votes)):
            batch_group = records[idx[0]]["group"]
            line = {
                "vote": vote,
                "step": step,
                "group": group_ids[position] if group_ids is not None else str(position),
                "batch_group": position if batch_group is None else batch_group,
                "answers": [records[i]["answer"] for i in idx],
                "instabilities": [records[i]["instability"] for i in idx],
                "ranks": [records[i]["rank"] for i in idx],
                "kept": result.kept,
                "weights": result.weights,
                "pseudo_label": result.pseudo_label,
                "label_share": result.label_share,
                "filtered": bool(filtered[position]) if filtered is not None else False,
                "rewards": [0.0] * len(idx) if filtered is not None and filtered[position] else result.rewards,
            }
            handle.write(json.dumps(line) + "\n")
