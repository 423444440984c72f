"""The fast top-k (`stability.topk_values`), the entropies built on it and the hook's deferred reduction give exactly
what the plain `torch.topk` code gives."""

from __future__ import annotations

import pytest
import torch

from sasc_ttrl.sampling.entropy import topk_entropy_from_logits, topk_values
from sasc_ttrl.sampling.entropy_capture import EntropyRecorder


@pytest.mark.parametrize("vocab", [151_936, 49_152, 50_257, 103])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_topk_values_equal_torch_topk(vocab, dtype):
    generator = torch.Generator().manual_seed(vocab)
    logits = (torch.randn(6, vocab, generator=generator) * 4).to(dtype)
    logits[0, : vocab // 2] = float("-inf")  # a masked half of the vocabulary
    logits[1] = 1.0  # one value everywhere: ties across every block
    logits[2, 5::97] = 30.0  # the top values spread over many blocks
    logits[3, 7:40] = 25.0  # ... or crowded into one
    assert torch.equal(topk_values(logits, 20), torch.topk(logits, 20, dim=-1).values)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_size", [1024, 7])
def test_topk_entropies_equal_the_plain_topk_computation(dtype, chunk_size):
    logits = (torch.randn(2, 45, 151_936, generator=torch.Generator().manual_seed(1)) * 3).to(dtype)
    plain = torch.topk(logits, 20, dim=-1).values.float() / 0.8
    logp = torch.log_softmax(plain, dim=-1)
    expected = -(logp.exp() * logp).sum(-1)
    got = topk_entropy_from_logits(logits, k=20, temperature=0.8, chunk_size=chunk_size)
    assert got.shape == (2, 45) and torch.equal(got, expected)


def test_topk_values_on_a_strided_prefill_slice():
    logits = torch.randn(3, 5, 49_152)
    last = logits[:, -1, :]  # rows of a (batch, positions, vocab) output: not contiguous as a whole
    assert torch.equal(topk_values(last, 20), torch.topk(last, 20, dim=-1).values)


def test_recorder_gives_the_entropies_of_the_full_logits():
    generator = torch.Generator().manual_seed(0)
    steps = [torch.randn(4, 1, 49_152, generator=generator) * 3 for _ in range(7)]
    recorder = EntropyRecorder(k=20, temperature=0.7)
    for logits in steps:
        recorder(None, (), logits)
    lengths = [7, 3, 0, 5]
    got = recorder.per_sequence(lengths)
    full = topk_entropy_from_logits(torch.cat(steps, dim=1), k=20, temperature=0.7)  # (batch, steps)
    assert [len(g) for g in got] == lengths
    for row, n in zip(range(4), lengths):
        assert torch.allclose(torch.tensor(got[row]), full[row, :n], atol=1e-6)


def test_recorder_refuses_fewer_steps_than_tokens():
    recorder = EntropyRecorder(k=20, temperature=1.0)
    recorder(None, (), torch.randn(2, 1, 103))
    with pytest.raises(RuntimeError, match="recorded 1 generation steps"):
        recorder.per_sequence([2, 1])
