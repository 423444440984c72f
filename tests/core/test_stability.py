"""Top-k local entropy, instability and z-scores (sasc_ttrl.core.stability, sasc_ttrl.sampling.entropy)."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest
import torch

from sasc_ttrl.core.stability import instability, zscore
from sasc_ttrl.sampling.entropy import topk_entropy_from_logits, topk_entropy_from_logprobs


def _entropy(logits: list[float]) -> float:
    """Entropy of softmax(logits), by hand in float64."""
    m = max(logits)
    weights = [math.exp(x - m) for x in logits]
    total = sum(weights)
    return -sum(w / total * math.log(w / total) for w in weights if w > 0)


def _reference(row: list[float], k: int, temperature: float) -> float:
    top = sorted(row, reverse=True)[:k]
    return _entropy([x / temperature for x in top])


# --------------------------------------------------------------------------------------------------------------
# topk_entropy_from_logits


def test_two_equal_top_logits_give_log2():
    logits = torch.tensor([[5.0, 5.0, 1.0, 0.0, -3.0]])
    out = topk_entropy_from_logits(logits, k=2)
    assert out.shape == (1,)
    assert out.item() == pytest.approx(math.log(2), abs=1e-6)


def test_only_topk_are_renormalised():
    # The three low logits would add entropy over the full vocabulary; the top-1 softmax is a point mass.
    logits = torch.tensor([3.0, 2.9, 2.8, 2.7])
    assert topk_entropy_from_logits(logits, k=1).item() == pytest.approx(0.0, abs=1e-7)
    assert topk_entropy_from_logits(logits, k=4).item() > topk_entropy_from_logits(logits, k=2).item()


def test_k_larger_than_vocab_is_clipped():
    logits = torch.zeros(3)
    assert topk_entropy_from_logits(logits, k=20).item() == pytest.approx(math.log(3), abs=1e-6)


def test_temperature_scaling_hand_case():
    logits = torch.tensor([2.0, 0.0, -50.0])
    # T=2: softmax over [1, 0]: p = e/(e+1) = 0.7310586, 1/(e+1) = 0.2689414.
    p = math.e / (math.e + 1)
    expected = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert expected == pytest.approx(0.5822031, abs=1e-6)
    assert topk_entropy_from_logits(logits, k=2, temperature=2.0).item() == pytest.approx(expected, abs=1e-6)
    # T=1: softmax over [2, 0].
    q = math.exp(2) / (math.exp(2) + 1)
    expected_t1 = -(q * math.log(q) + (1 - q) * math.log(1 - q))
    assert topk_entropy_from_logits(logits, k=2, temperature=1.0).item() == pytest.approx(expected_t1, abs=1e-6)
    # A higher temperature flattens the distribution.
    assert expected > expected_t1


def test_matches_reference_on_random_logits():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, 50, generator=gen) * 3
    for k in (1, 5, 20, 50, 80):
        for temperature in (0.6, 1.0, 1.7):
            out = topk_entropy_from_logits(logits, k=k, temperature=temperature)
            expected = [
                [_reference(logits[b, t].tolist(), k, temperature) for t in range(logits.shape[1])]
                for b in range(logits.shape[0])
            ]
            assert torch.allclose(out, torch.tensor(expected, dtype=torch.float32), atol=1e-5)


def test_shape_and_dtype():
    logits = torch.randn(3, 5, 40, dtype=torch.float64)
    out = topk_entropy_from_logits(logits, k=4)
    assert out.shape == (3, 5)
    assert out.dtype == torch.float32
    assert torch.all(out >= 0)
    assert torch.all(out <= math.log(4) + 1e-6)


def test_chunking_gives_identical_results():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 11, 64, generator=gen)
    big = topk_entropy_from_logits(logits, k=8, chunk_size=4096)
    for chunk in (1, 2, 5, 33):
        assert torch.equal(topk_entropy_from_logits(logits, k=8, chunk_size=chunk), big)


def test_bf16_input():
    gen = torch.Generator().manual_seed(2)
    logits = (torch.randn(2, 6, 100, generator=gen) * 4).to(torch.bfloat16)
    out = topk_entropy_from_logits(logits, k=10, temperature=0.7)
    assert out.dtype == torch.float32
    assert out.shape == (2, 6)
    expected = topk_entropy_from_logits(logits.float(), k=10, temperature=0.7)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.all(torch.isfinite(out))


def test_neg_inf_logits_give_finite_entropy():
    inf = float("inf")
    logits = torch.tensor(
        [
            [0.0, -inf, -inf, 1.0],  # two finite, k=3 picks one -inf
            [2.0, -inf, -inf, -inf],  # one finite: entropy 0
            [0.0, 0.0, -inf, -inf],
        ]
    )
    out = topk_entropy_from_logits(logits, k=3)
    assert torch.all(torch.isfinite(out))
    assert out[0].item() == pytest.approx(_entropy([1.0, 0.0]), abs=1e-6)
    assert out[1].item() == pytest.approx(0.0, abs=1e-7)
    assert out[2].item() == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_logits_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        topk_entropy_from_logits(torch.zeros(2, 3), temperature=temperature)


def test_logits_bad_k():
    with pytest.raises(ValueError, match="k"):
        topk_entropy_from_logits(torch.zeros(2, 3), k=0)


# --------------------------------------------------------------------------------------------------------------
# topk_entropy_from_logprobs


@pytest.mark.parametrize("temperature", [0.3, 0.6, 1.0, 1.5, 2.5])
@pytest.mark.parametrize("k", [1, 3, 20])
def test_logprobs_match_logits(temperature, k):
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(9, 60, generator=gen, dtype=torch.float64) * 3
    logprobs = torch.log_softmax(logits, dim=-1)  # over the full vocabulary, as vLLM returns them
    rng = random.Random(k * 100 + int(temperature * 10))
    per_token = []
    for row in logprobs:
        values = sorted(row.tolist(), reverse=True)[: k + 1]  # k+1: the extra (sampled) entry is ignored
        rng.shuffle(values)
        per_token.append(values)
    from_logprobs = topk_entropy_from_logprobs(per_token, k=k, temperature=temperature)
    from_logits = topk_entropy_from_logits(logits, k=k, temperature=temperature)
    assert len(from_logprobs) == 9
    for a, b in zip(from_logprobs, from_logits.tolist()):
        assert a == pytest.approx(b, abs=1e-5)


def test_logprobs_extra_entry_is_ignored():
    # k=2, the two top entries are equal: log 2, whatever the third (smaller) entry is.
    assert topk_entropy_from_logprobs([[-5.0, -0.7, -0.7]], k=2) == pytest.approx([math.log(2)], abs=1e-9)
    # Fewer entries than k: all are used.
    assert topk_entropy_from_logprobs([[-1.0, -1.0, -1.0]], k=20) == pytest.approx([math.log(3)], abs=1e-9)


def test_logprobs_hand_case_with_temperature():
    # logprobs [ln 0.5, ln 0.25] at T=1: softmax -> [2/3, 1/3].
    out = topk_entropy_from_logprobs([[math.log(0.5), math.log(0.25)]], k=2, temperature=1.0)
    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert out == pytest.approx([expected], abs=1e-9)
    # T=0.5 squares the ratio: [0.25, 0.0625] -> [0.8, 0.2].
    out = topk_entropy_from_logprobs([[math.log(0.5), math.log(0.25)]], k=2, temperature=0.5)
    assert out == pytest.approx([-(0.8 * math.log(0.8) + 0.2 * math.log(0.2))], abs=1e-9)


def test_logprobs_neg_inf_entry():
    assert topk_entropy_from_logprobs([[0.0, float("-inf")]], k=2) == pytest.approx([0.0], abs=1e-12)


def test_logprobs_empty_sequence():
    assert topk_entropy_from_logprobs([], k=5) == []


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_logprobs_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        topk_entropy_from_logprobs([[-0.1, -2.0]], temperature=temperature)


def test_logprobs_empty_token_raises():
    with pytest.raises(ValueError, match="token 1"):
        topk_entropy_from_logprobs([[-0.1, -2.0], [], [-0.3]], k=2)


# --------------------------------------------------------------------------------------------------------------
# instability and zscore


def test_instability_hand_cases():
    assert instability([0.0, 1.0]) == pytest.approx(0.5)
    assert instability([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(1.25))  # population, not sample, std
    assert instability([0.7, 0.7, 0.7]) == pytest.approx(0.0, abs=1e-12)
    assert instability([3.0]) == 0.0
    assert instability(np.array([0.0, 2.0])) == pytest.approx(1.0)
    assert instability(torch.tensor([0.0, 2.0])) == pytest.approx(1.0)


def test_instability_matches_pstdev():
    rng = random.Random(4)
    values = [rng.random() * 3 for _ in range(37)]
    assert instability(values) == pytest.approx(statistics.pstdev(values), rel=1e-12)


def test_instability_empty_is_zero():
    assert instability([]) == 0.0


@pytest.mark.parametrize("bad", [[0.1, float("nan")], [float("inf"), 0.0], [float("-inf")]])
def test_instability_non_finite_raises(bad):
    with pytest.raises(ValueError):
        instability(bad)


def test_zscore_hand_case():
    # mean 2, population std sqrt(2/3)
    std = math.sqrt(2 / 3)
    assert zscore([1.0, 2.0, 3.0]) == pytest.approx([-1 / (std + 1e-6), 0.0, 1 / (std + 1e-6)], abs=1e-12)
    assert zscore([1.0, 2.0, 3.0]) == pytest.approx([-1.2247449, 0.0, 1.2247449], abs=1e-5)
    # [0, 0, 0, 4]: mean 1, std sqrt(3)
    s3 = math.sqrt(3)
    assert zscore([0.0, 0.0, 0.0, 4.0]) == pytest.approx([-1 / s3, -1 / s3, -1 / s3, 3 / s3], abs=1e-5)


def test_zscore_eps():
    assert zscore([0.0, 2.0], eps=1.0) == pytest.approx([-0.5, 0.5])


def test_zscore_degenerate():
    assert zscore([0.3, 0.3, 0.3]) == [0.0, 0.0, 0.0]
    assert zscore([0.4, 0.4, 0.4]) == [0.0, 0.0, 0.0]  # its float std is ~1e-17, not 0
    assert zscore([5.0]) == [0.0]
    assert zscore([]) == []
