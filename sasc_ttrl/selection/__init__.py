"""Selection methods of the offline pipeline: pick one of N candidate completions of a question.

Every method is a pure function ``select(candidates, context) -> Selection`` registered by name
([`register_method`], which refuses a duplicate name); ``sasc-ttrl build --methods ...`` runs them on one shared
set of candidates. The methods reuse the project's one implementation of each idea: answers and equivalence from
`answers`, the votes from `voting`, the top-k entropies and the stability gate from `stability` / `voting`.

| name | what it scores |
|---|---|
| ``baseline`` | nothing: the first sample |
| ``self-consistency`` | the majority answer |
| ``self-certainty`` | mean KL(uniform || p) over tokens, combined with step probability via ``lambda_weight`` |
| ``self-eval`` | the model's P(Yes) to "Is this step correct?", combined with token probability |
| ``coe-r`` / ``coe-c`` | chain of embedding over the per-layer hidden states |
| ``sasc`` | the trainer's stability gate and exp(-z) weighted vote |
| ``deepconf`` | sliding-window top-20 token confidence; keep the top eta %, confidence-weighted vote |
| ``self-calibration`` / ``self-calibration-es`` | soft self-consistency / early-stopping best-of-N |
| ``verifier`` | an outcome or process reward model given by path |
"""

from . import baseline, coe, deepconf, sasc, self_calibration, self_certainty, self_consistency, self_eval, verifier
from .base import Selection, SelectionContext, SelectionSettings
from .candidates import Candidate, TokenFeatures, compute_token_features
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
