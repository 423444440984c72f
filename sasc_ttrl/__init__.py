"""sasc-ttrl: stability-aware self-consistency test-time RL (label-free GRPO on math) on Hugging Face TRL.

The public API is imported lazily, as TRL does, so ``import sasc_ttrl`` stays fast and loads neither torch nor TRL::

    from sasc_ttrl import SASCConfig, SASCTrainer, get_reward_funcs

The package's folders are its layers, bottom to top: ``core`` (pure), ``data``, ``sampling``, ``training`` and
``selection``, ``reports``, ``commands``, ``demo``, and `sasc_ttrl.cli` (see ``[tool.importlinter]`` in
pyproject.toml, which CI enforces).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "SASCConfig": "sasc_ttrl.training.configs",
    "SASCScriptArguments": "sasc_ttrl.training.configs",
    "SASCTrainer": "sasc_ttrl.training.trainer",
    "get_reward_funcs": "sasc_ttrl.training.rewards",
    "register_reward": "sasc_ttrl.training.rewards",
    "VoteSettings": "sasc_ttrl.core.voting",
    "VoteResult": "sasc_ttrl.core.voting",
    "stability_vote": "sasc_ttrl.core.voting",
    "sasc_vote": "sasc_ttrl.core.voting",
    "majority_vote": "sasc_ttrl.core.voting",
    "extract_answer": "sasc_ttrl.core.answers",
    "is_equivalent": "sasc_ttrl.core.answers",
    "pass_at_k": "sasc_ttrl.core.metrics",
    "instability": "sasc_ttrl.core.stability",
}

__all__ = [
    "SASCConfig",
    "SASCScriptArguments",
    "SASCTrainer",
    "VoteResult",
    "VoteSettings",
    "extract_answer",
    "get_reward_funcs",
    "instability",
    "is_equivalent",
    "majority_vote",
    "pass_at_k",
    "register_reward",
    "sasc_vote",
    "stability_vote",
]
assert sorted(__all__) == sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs only; at run time the names load on first access
    from .core.answers import extract_answer, is_equivalent
    from .core.metrics import pass_at_k
    from .core.stability import instability
    from .core.voting import VoteResult, VoteSettings, majority_vote, sasc_vote, stability_vote
    from .training.configs import SASCConfig, SASCScriptArguments
    from .training.rewards import get_reward_funcs, register_reward
    from .training.trainer import SASCTrainer


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'sasc_ttrl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
