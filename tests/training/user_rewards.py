"""A user's own reward function, referred to by dotted path in a test: it reads an extra data set column."""

from __future__ import annotations

SEEN: list[dict] = []


def solution_reward(prompts, completions, solution, **kwargs):
    """1.0 when the completion mentions the data set's worked solution's first number (reads ``solution``)."""
    SEEN.append({"prompts": list(prompts), "solution": list(solution), "keys": sorted(kwargs)})
    return [float(s.split()[0] in str(c)) for s, c in zip(solution, completions)]
