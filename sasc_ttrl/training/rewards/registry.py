"""The reward registry: names to reward factories, dotted import paths, and what SASCTrainer must capture for them."""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any

from ...core.voting import VoteSettings

RewardFunc = Callable[..., list[float]]
RewardFactory = Callable[..., RewardFunc]

# What SASCTrainer can hand to the rewards besides TRL's own keyword arguments (see `rollout_fields_requested`).
ROLLOUT_FIELDS = ("token_entropies", "rollout_group")

REWARD_FACTORIES: dict[str, RewardFactory] = {}
# Names whose factory also takes ``vote_log_path`` (the vote rewards, which can write an audit log).
VOTE_LOGGING: set[str] = set()


def register_reward(
    name: str, factory: RewardFactory | None = None, *, logs_votes: bool = False
) -> Callable[[RewardFactory], RewardFactory] | RewardFactory:
    """Register a reward factory under ``name``: as a decorator (``@register_reward("mine")``) or called directly
    (``register_reward("mine", factory)``). A duplicate name is refused.

    The factory is called with the run's [`VoteSettings`] and returns a TRL reward function
    (``f(prompts, completions, **kwargs) -> list[float]``). With ``logs_votes``, it is also given the run's
    ``vote_log_path`` (a keyword argument, ``None`` when the run keeps no vote log).
    """

    def decorator(fn: RewardFactory) -> RewardFactory:
        if name in REWARD_FACTORIES:
            raise ValueError(f"a reward named {name!r} is already registered")
        REWARD_FACTORIES[name] = fn
        if logs_votes:
            VOTE_LOGGING.add(name)
        return fn

    return decorator if factory is None else decorator(factory)


def is_registry_reference(name: str) -> bool:
    """Whether a reward given as a string is ours to resolve: a registered name or a dotted import path.

    Anything else (``org/model``, a local folder) is left to TRL, which loads strings as reward models. A dotted path
    here is a Python path: dot-separated identifiers, no ``/``, and not an existing local folder.
    """
    if name in REWARD_FACTORIES:
        return True
    parts = name.split(".")
    return len(parts) > 1 and all(p.isidentifier() for p in parts) and not os.path.exists(name)


def get_reward_funcs(
    names: Sequence[str], settings: VoteSettings | None = None, vote_log_path: str | None = None
) -> list[RewardFunc]:
    """Resolve reward names: a registered name, or a dotted import path to a TRL reward function.

    Args:
        names: Registered names (``sasc``, ``majority``, ...) or dotted paths (``my_pkg.rewards.my_reward``).
        settings: The vote hyper-parameters the registered rewards are built with (default: the defaults).
        vote_log_path: JSONL file where the vote rewards append every group's vote (``None``: no log).

    Raises:
        ValueError: naming the unknown reward and listing the registered names.
    """
    settings = settings or VoteSettings()
    funcs = []
    for name in names:
        if name in REWARD_FACTORIES:
            extra = {"vote_log_path": vote_log_path} if name in VOTE_LOGGING else {}
            funcs.append(REWARD_FACTORIES[name](settings, **extra))
        elif "." in name:
            module_path, attr = name.rsplit(".", 1)
            try:
                funcs.append(getattr(importlib.import_module(module_path), attr))
            except (ImportError, AttributeError) as err:
                raise ValueError(f"could not import reward function {name!r}: {err}") from err
        else:
            raise ValueError(
                f"unknown reward {name!r}: expected one of {sorted(REWARD_FACTORIES)} or a dotted import path "
                "(e.g. my_pkg.rewards.my_reward)"
            )
    return funcs


def resolve_reward_funcs(
    reward_funcs: Any, settings: VoteSettings | None = None, vote_log_path: str | None = None
) -> list[Any]:
    """Turn the registry names and dotted paths among ``reward_funcs`` into reward functions; keep the rest.

    ``SASCTrainer(reward_funcs=["sasc", my_fn])`` gives TRL ``[<sasc reward with settings>, my_fn]``; reward-model
    ids and model objects pass through unchanged for TRL to load. A single value counts as a list of one.
    """
    funcs = reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
    return [
        get_reward_funcs([f], settings, vote_log_path)[0] if isinstance(f, str) and is_registry_reference(f) else f
        for f in funcs
    ]


def rollout_fields_requested(reward_funcs: Sequence[Any]) -> set[str]:
    """The per-rollout fields of ``ROLLOUT_FIELDS`` that [`SASCTrainer`] must add for these reward functions.

    A reward asks for a field by a ``rollout_fields`` attribute (this package's vote rewards ask for both) or by
    naming it as a parameter (``def my_reward(completions, token_entropies, **kwargs)``); a ``**kwargs`` parameter
    alone asks for nothing, and reward models ask for nothing. With no field asked for, the trainer captures no
    entropies and behaves as TRL's ``GRPOTrainer``.
    """
    wanted: set[str] = set()
    for func in reward_funcs:
        if callable(func) and not isinstance(func, str):
            func = inspect.unwrap(func, stop=lambda f: hasattr(f, "rollout_fields"))
        declared = getattr(func, "rollout_fields", None)
        if declared is not None:
            wanted.update(declared)
            continue
        if not callable(func) or isinstance(func, str):
            continue
        try:
            parameters = inspect.signature(func).parameters
        except (TypeError, ValueError):  # builtins and some C callables have no signature
            continue
        wanted.update(name for name in ROLLOUT_FIELDS if name in parameters)
    return wanted
