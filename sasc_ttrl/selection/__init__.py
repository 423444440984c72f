"""Selection methods of the offline pipeline (pick one of N candidates of a question) and the builder that runs them.

Lives here: the scorers, the candidate record, the builder engine and its arguments, Monte-Carlo step labels, and
(in ``adapters/``) the three model adapters. May import ``core``, ``data`` and ``sampling``; never ``training``.

Every method is a function ``select(candidates, context) -> Selection`` registered by name ([`register_method`],
which refuses a duplicate name); ``sasc-ttrl build --methods ...`` runs them on one shared set of candidates. Most
are pure scorers of what the candidates carry; ``self-eval`` and ``self-calibration --calibration_confidence
self-eval`` call the Yes/No judge and ``verifier`` a reward model (`sasc_ttrl.selection.adapters`), handed to them
in the context. The methods reuse the project's one implementation of each idea: answers and equivalence from
`core.answers`, the votes from `core.voting`, the instability statistics from `core.stability`.

| name | what it scores |
|---|---|
| ``baseline`` | nothing: the first sample |
| ``self-consistency`` | the majority answer |
| ``self-certainty`` | mean KL(uniform || p) over tokens, combined with step probability via ``lambda_weight`` |
| ``self-eval`` | the model's P(Yes) to "Is this step correct?", combined with token probability |
| ``coe-r`` / ``coe-c`` | chain of embedding over the per-layer hidden states |
| ``sasc`` | the trainer's stability gate and weighted vote (``clipped_exp`` by default) |
| ``deepconf`` | sliding-window top-20 token confidence; keep the top eta %, confidence-weighted vote |
| ``self-calibration`` / ``self-calibration-es`` | soft self-consistency / early-stopping best-of-N |
| ``verifier`` | an outcome or process reward model given by path; best of N |
| ``verifier-vote`` | the same scores summed per answer class: verifier-weighted majority |
"""

from . import (
    baseline,
    coe,
    deepconf,
    sasc,
    self_calibration,
    self_certainty,
    self_consistency,
    self_eval,
    verifier,
)
from .adapters.token_features import compute_token_features
from .base import Selection, SelectionContext, SelectionSettings
from .candidates import Candidate, TokenFeatures
from .registry import ALL, NEEDS, SELECTION_METHODS, MethodSpec, get_method, register_method, resolve_methods

__all__ = [
    "ALL",
    "NEEDS",
    "SELECTION_METHODS",
    "Candidate",
    "MethodSpec",
    "Selection",
    "SelectionContext",
    "SelectionSettings",
    "TokenFeatures",
    "baseline",
    "coe",
    "compute_token_features",
    "deepconf",
    "get_method",
    "register_method",
    "resolve_methods",
    "sasc",
    "self_calibration",
    "self_certainty",
    "self_consistency",
    "self_eval",
    "verifier",
]
