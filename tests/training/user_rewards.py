"""A user's own reward function, referred to by dotted path in a test: it reads an extra data set column."""

from __future__ import annotations

SEEN: list[dict] = []


def solution_reward(prompts, completions, solution, **kwargs):
    """1.0 when the completion mentions the data set's worked solution's first number (reads ``solution``)."""
    SEEN.append({"prompts": list(prompts), "solution": list(solution), "keys": sorted(kwargs)})
    return [float(s.split()[0] in str(c)) for s, c in zip(solution, completions)]


def position_reward(completions, **kwargs):
    """0.0, 1.0, 0.0, ... by position in the call: varies inside every group of two or more rollouts whatever the
    model samples, so GRPO's advantages are never all zero and a training step always moves the weights."""
    return alternating(len(completions))


def alternating(n: int) -> list[float]:
    """``n`` rewards alternating 0.0 and 1.0."""
    return [float(i % 2) for i in range(n)]


RECORDED: list[dict] = []


def recording_reward(prompts, completions, **kwargs):
    """Records each call's prompts, completions and data columns (``pseudo_label``, ``answer``); returns 0.0."""
    columns = {k: list(v) for k, v in kwargs.items() if k in ("pseudo_label", "answer", "rollout_group")}
    RECORDED.append({"prompts": list(prompts), "completions": list(completions), **columns})
    return [0.0] * len(completions)
