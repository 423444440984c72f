"""What every reward does with TRL's batch: read a completion's text, find the groups, gather all processes' rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def completion_text(completion: Any) -> str:
    """Text of a completion, plain (``str``) or conversational (list of messages, the last one answering)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # typed content blocks
            return "".join(block.get("text", "") for block in content if isinstance(block, dict))
        return str(content)
    raise TypeError(f"cannot read the text of a completion of type {type(completion).__name__}")


def groups_of(group_ids: Sequence[Any] | None, prompts: Sequence[Any]) -> list[list[int]]:
    """Indices of each group: by ``group_ids`` when given, else runs of consecutive identical prompts."""
    keys = group_ids if group_ids is not None else [repr(p) for p in prompts]
    groups: list[list[int]] = []
    positions: dict[Any, int] = {}
    previous = object()
    for i, key in enumerate(keys):
        if group_ids is not None:
            if key not in positions:
                positions[key] = len(groups)
                groups.append([])
            groups[positions[key]].append(i)
        else:
            if key != previous:
                groups.append([])
            groups[-1].append(i)
            previous = key
    return groups


def gather_records(records: list[dict]) -> tuple[list[dict], int, bool]:
    """Gather the records of every process in rank order.

    Returns:
        The records of all processes, the offset of this process's slice, and whether this is the main process.
    """
    from accelerate import PartialState

    state = PartialState()
    for record in records:
        record["rank"] = state.process_index
    if state.num_processes == 1:
        return records, 0, True
    from accelerate.utils import gather_object

    per_rank = gather_object([(state.process_index, records)])
    per_rank = sorted(per_rank, key=lambda item: item[0])
    offset = sum(len(r) for rank, r in per_rank if rank < state.process_index)
    return [rec for _, r in per_rank for rec in r], offset, state.is_main_process
