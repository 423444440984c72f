"""Label-free reward functions for GRPO, in a registry.

``sasc`` (the stability-aware vote) and ``majority`` (TTRL) reward agreement with the group's pseudo-label
([`vote`]); ``fixed_label`` (a builder output's ``pseudo_label`` column), and two controls that are not
label-free, ``oracle`` (the true ``answer``: the ceiling) and ``format`` (box any answer), are in [`controls`].
Other rewards are registered with [`register_reward`] or named by dotted path.
"""

from .batch import completion_text
from .controls import make_fixed_label_reward, make_format_reward, make_oracle_reward
from .registry import (
    REWARD_FACTORIES,
    ROLLOUT_FIELDS,
    get_reward_funcs,
    is_registry_reference,
    register_reward,
    resolve_reward_funcs,
    rollout_fields_requested,
)
from .vote import filter_diagnostics, make_majority_reward, make_sasc_reward, vote_and_reward
from .vote_log import VoteLogCounter, append_vote_log

__all__ = [
    "REWARD_FACTORIES",
    "ROLLOUT_FIELDS",
    "VoteLogCounter",
    "append_vote_log",
    "completion_text",
    "filter_diagnostics",
    "get_reward_funcs",
    "is_registry_reference",
    "make_fixed_label_reward",
    "make_format_reward",
    "make_majority_reward",
    "make_oracle_reward",
    "make_sasc_reward",
    "register_reward",
    "resolve_reward_funcs",
    "rollout_fields_requested",
    "vote_and_reward",
]
