"""``coe-r`` and ``coe-c``: Chain-of-Embedding scores from per-layer hidden states (Wang et al., 2024).

For a candidate, ``h_l`` is the mean hidden state of its completion tokens at layer ``l`` (``l = 0`` the embedding
output, ``l = L`` the last layer). Between consecutive layers:

* magnitude ``M_l = ||h_{l+1} - h_l|| / ||h_L - h_0||``;
* angle ``A_l = arccos(cos(h_{l+1}, h_l)) / arccos(cos(h_L, h_0))``.

``CoE-R = mean(M) - mean(A)`` and ``CoE-C = |mean_l M_l e^{i A_l}|``. Higher is more confident; the best
candidate is selected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .base import Selection, SelectionContext, best_of_n
from .candidates import Candidate
from .registry import register_method

EPS = 1e-12


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    if denom < EPS:
        return 0.0
    return math.acos(max(-1.0, min(1.0, float(np.dot(a, b)) / denom)))


def coe_trajectory(chain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised magnitude and angle changes ``(M, A)`` between consecutive layers of a hidden-state chain.

    Args:
        chain: Array ``(num_layers + 1, hidden_size)`` (at least two rows).
    """
    chain = np.asarray(chain, dtype=np.float64)
    if chain.ndim != 2 or chain.shape[0] < 2:
        raise ValueError(f"a chain of embeddings needs shape (layers >= 2, hidden), got {chain.shape}")
    total_magnitude = max(float(np.linalg.norm(chain[-1] - chain[0])), EPS)
    total_angle = max(_angle(chain[-1], chain[0]), EPS)
    magnitudes = np.linalg.norm(np.diff(chain, axis=0), axis=1) / total_magnitude
    angles = np.array([_angle(chain[i + 1], chain[i]) for i in range(len(chain) - 1)]) / total_angle
    return magnitudes, angles


def coe_r(chain: np.ndarray) -> float:
    """``CoE-R = mean(M) - mean(A)``."""
    magnitudes, angles = coe_trajectory(chain)
    return float(magnitudes.mean() - angles.mean())


def coe_c(chain: np.ndarray) -> float:
    """``CoE-C = |mean_l M_l exp(i A_l)|``."""
    magnitudes, angles = coe_trajectory(chain)
    return float(abs(np.mean(magnitudes * np.exp(1j * angles))))


def _select(candidates: Sequence[Candidate], score) -> Selection:
    for c in candidates:
        c.require("hidden_chain")
    return best_of_n(candidates, [score(c.hidden_chain) for c in candidates])


@register_method("coe-r", needs=("hidden_states",), summary="CoE-R = mean layer-to-layer magnitude - mean angle")
def select_coe_r(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Best-of-N by CoE-R."""
    return _select(candidates, coe_r)


@register_method("coe-c", needs=("hidden_states",), summary="CoE-C = |mean_l M_l e^{i A_l}| over the layer chain")
def select_coe_c(candidates: Sequence[Candidate], context: SelectionContext) -> Selection:
    """Best-of-N by CoE-C."""
    return _select(candidates, coe_c)
