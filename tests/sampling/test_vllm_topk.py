"""sasc_ttrl.sampling.vllm_topk on hand-made inputs in TRL's `extract_logprobs` form (no vLLM needed).

Each position holds the top-k logprobs sorted by rank and their token ids, plus the sampled token as a (k+1)-th
entry when it is outside the top k; ``None`` stands for a NaN logprob.
"""

from __future__ import annotations

import math

import pytest
import torch

from sasc_ttrl.sampling.entropy import topk_entropy_from_logits
from sasc_ttrl.sampling.vllm_topk import (
    compact_topk_output,
    entropies_from_topk,
    sampled_token_logprobs,
    sasc_sampling_overrides,
    server_entropy_temperature,
    split_compact_topk,
)


def _position(logits: torch.Tensor, k: int, sampled: int, temperature: float = 1.0):
    """What vLLM + TRL return for one token: top-k (+ the sampled token) of log_softmax(logits / T), by rank."""
    logp = torch.log_softmax(logits.double() / temperature, dim=-1)
    top = torch.topk(logp, k)
    values, ids = top.values.tolist(), top.indices.tolist()
    if sampled not in ids:
        values.append(logp[sampled].item())
        ids.append(sampled)
    return values, ids, logp[sampled].item()


def test_sampled_token_picked_by_id_not_by_rank():
    # Position 0: the sampled token (id 7) is ranked 2nd; position 1: ranked 1st.
    lps = [[[-0.1, -2.5, -3.0], [-0.3, -1.2, -4.0]]]
    ids = [[[3, 7, 9], [7, 3, 1]]]
    assert sampled_token_logprobs(lps, ids, [[7, 7]]) == [[-2.5, -0.3]]
    # TRL's own branch would read lp[0]: -0.1 at position 0, the logprob of token 3.
    assert [seq[0] for seq in lps[0]] == [-0.1, -0.3]


def test_sampled_token_outside_the_top_k():
    torch.manual_seed(0)
    logits = torch.randn(50)
    k = 5
    sampled = int(torch.argsort(logits)[0])  # the least likely token: surely outside the top 5
    values, ids, expected = _position(logits, k, sampled)
    assert len(values) == k + 1 and ids[-1] == sampled
    assert sampled_token_logprobs([[values]], [[ids]], [[sampled]]) == [[pytest.approx(expected)]]
    # The (k+1)-th entry is not part of the top-k entropy.
    entropy = entropies_from_topk([[values]], k=k, temperature=1.0)[0][0]
    assert entropy == pytest.approx(topk_entropy_from_logits(logits, k=k).item(), abs=1e-6)


def test_entropies_match_logits_for_raw_and_processed_logprobs():
    torch.manual_seed(1)
    logits = torch.randn(6, 40) * 3
    k, temperature = 20, 0.7
    sampled = [int(torch.multinomial(torch.softmax(row / temperature, -1), 1)) for row in logits]
    raw = [_position(row, k, s) for row, s in zip(logits, sampled)]
    processed = [_position(row, k, s, temperature) for row, s in zip(logits, sampled)]
    expected = topk_entropy_from_logits(logits, k=k, temperature=temperature).tolist()
    # Raw logprobs (vLLM's default): the entropy applies the sampling temperature.
    assert entropies_from_topk([[v for v, _, _ in raw]], k=k, temperature=temperature)[0] == pytest.approx(
        expected, abs=1e-6
    )
    # Processed logprobs (TRL's engine): already divided by T, so temperature=1.0.
    assert entropies_from_topk([[v for v, _, _ in processed]], k=k, temperature=1.0)[0] == pytest.approx(
        expected, abs=1e-6
    )
    # Scaling processed logprobs a second time gives another (wrong) number.
    twice = entropies_from_topk([[v for v, _, _ in processed]], k=k, temperature=temperature)[0]
    assert max(abs(a - b) for a, b in zip(twice, expected)) > 0.05
    # The sampled token's processed logprob is log_softmax(logits / T) of it.
    got = sampled_token_logprobs([[v for v, _, _ in processed]], [[i for _, i, _ in processed]], [sampled])[0]
    assert got == pytest.approx([e for _, _, e in processed])


def test_ties():
    # Three tokens tied at the top, the sampled one (id 2) among them; ids decide which entry is picked.
    lps = [[[-1.0, -1.0, -1.0, -5.0]]]
    ids = [[[0, 1, 2, 3]]]
    assert sampled_token_logprobs(lps, ids, [[2]]) == [[-1.0]]
    # A tie at the k-th place: the (k+1)-th entry (the sampled token, tied with the k-th) changes nothing.
    entropy = entropies_from_topk([[[-1.0, -2.0, -2.0]]], k=2, temperature=1.0)[0][0]
    expected = topk_entropy_from_logits(torch.tensor([-1.0, -2.0]), k=2).item()
    assert entropy == pytest.approx(expected, abs=1e-6)
    # Uniform over k: entropy log k.
    assert entropies_from_topk([[[-0.5] * 4]], k=4, temperature=0.3)[0][0] == pytest.approx(math.log(4))


def test_none_logprob_of_the_sampled_token_becomes_nan():
    # TRL's extract_logprobs writes None for a NaN logprob; GRPOTrainer maps it back to NaN: so do we.
    lps = [[[None, -1.0], [-0.2, -2.0]]]
    ids = [[[4, 5], [4, 5]]]
    got = sampled_token_logprobs(lps, ids, [[4, 5]])
    assert math.isnan(got[0][0]) and got[0][1] == -2.0
    nan_in = sampled_token_logprobs([[[float("nan"), -1.0]]], [[[4, 5]]], [[4]])
    assert math.isnan(nan_in[0][0])


def test_none_entries_in_the_entropy():
    # The committed behaviour: None/NaN entries are left out of the position's top-k.
    with_none = entropies_from_topk([[[-0.5, None, -1.5, -2.0]]], k=3, temperature=1.0)[0][0]
    without = entropies_from_topk([[[-0.5, -1.5, -2.0]]], k=3, temperature=1.0)[0][0]
    assert with_none == pytest.approx(without)


def test_minus_infinity_entries_contribute_nothing():
    # Processed logprobs under top-p/top-k truncation carry -inf for the truncated tokens.
    got = entropies_from_topk([[[-0.1, -2.4, -math.inf, -math.inf]]], k=4, temperature=1.0)[0][0]
    assert got == pytest.approx(topk_entropy_from_logits(torch.tensor([-0.1, -2.4]), k=2).item(), abs=1e-6)


def test_shapes_and_empty_completions():
    assert sampled_token_logprobs([], [], []) == []
    assert entropies_from_topk([], k=20, temperature=1.0) == []
    assert sampled_token_logprobs([[]], [[]], [[]]) == [[]]
    assert entropies_from_topk([[]], k=20, temperature=1.0) == [[]]


def test_errors():
    with pytest.raises(ValueError, match="sampled id 9 is not among"):
        sampled_token_logprobs([[[-0.1, -2.0]]], [[[1, 2]]], [[9]])
    with pytest.raises(ValueError, match="2 tokens"):
        sampled_token_logprobs([[[-0.1, -2.0]]], [[[1, 2]]], [[1, 2]])
    with pytest.raises(ValueError):  # one more completion than logprob sequences
        sampled_token_logprobs([[[-0.1]]], [[[1]]], [[1], [1]])


def _one_token_at_a_time(topk_logprobs, k: int, temperature: float) -> list[list[float]]:
    """The reduction one token at a time: one float64 tensor per token (the reference for exactness)."""
    out = []
    for seq in topk_logprobs:
        row = []
        for values in seq:
            clean = sorted((v for v in values if v is not None and not math.isnan(v)), reverse=True)[:k]
            top = torch.tensor(clean, dtype=torch.float64) / temperature
            logp = torch.log_softmax(top, dim=-1)
            row.append(float(-(torch.exp(logp) * torch.nan_to_num(logp, neginf=0.0)).sum(dim=-1)))
        out.append(row)
    return out


@pytest.mark.parametrize("temperature", [1.0, 0.6, 1.3])
def test_batched_entropies_equal_one_token_at_a_time_exactly(temperature):
    # Completions of several lengths; positions with k or k+1 entries (the sampled token outside the top k), fewer
    # (a small vocabulary), None and NaN entries, -inf entries (truncated by top-p), unsorted values.
    rng = torch.Generator().manual_seed(3)
    k, topk_logprobs = 20, []
    for length in (0, 1, 7, 64, 33):
        seq = []
        for _ in range(length):
            size = int(torch.randint(1, k + 2, (1,), generator=rng))
            values = (torch.randn(size, generator=rng, dtype=torch.float64) * 4 - 5).tolist()
            for i, draw in enumerate(torch.rand(size, generator=rng).tolist()):
                if draw < 0.05:
                    values[i] = -math.inf
                elif draw < 0.08 and size > 1:
                    values[i] = None if draw < 0.065 else float("nan")
            if all(v is None or v != v or v == -math.inf for v in values):
                values[0] = -0.5
            seq.append(values)
        topk_logprobs.append(seq)
    got = entropies_from_topk(topk_logprobs, k=k, temperature=temperature)
    assert got == _one_token_at_a_time(topk_logprobs, k, temperature)  # bit for bit, not approximately
    assert [len(e) for e in got] == [0, 1, 7, 64, 33]


def test_a_position_without_logprobs_is_named():
    with pytest.raises(ValueError, match="completion 1, token 2 has no log-probabilities"):
        entropies_from_topk([[[-0.1]], [[-0.1], [-0.2], [None]]], k=20, temperature=1.0)


def test_sasc_sampling_overrides():
    # SASC asks vLLM not to turn the returned logprobs' tokens into text ...
    assert sasc_sampling_overrides(None) == {"detokenize": False}
    kwargs = {"min_tokens": 2}
    assert sasc_sampling_overrides(kwargs) == {"min_tokens": 2, "detokenize": False}
    assert kwargs == {"min_tokens": 2}  # the caller's dict (GRPOConfig.generation_kwargs) is left alone
    # ... unless the caller decided, or stop strings need the text.
    assert sasc_sampling_overrides({"detokenize": True}) == {"detokenize": True}
    assert sasc_sampling_overrides({"stop": ["\n\n"]}) == {"stop": ["\n\n"]}
    assert sasc_sampling_overrides({"stop": []}) == {"stop": [], "detokenize": False}


def _server_output(temperature: float, mode: str, seed: int = 3):
    """What `VLLMClient.generate` returns for 2 completions of 5 and 3 tokens, with logprobs=20 in ``mode``."""
    gen = torch.Generator().manual_seed(seed)
    logits = [torch.randn(n, 60, generator=gen) * 3 for n in (5, 3)]
    output = {"prompt_ids": [[1, 2]], "completion_ids": [], "logprobs": [], "logprob_token_ids": []}
    for rows in logits:
        tokens, lps, ids = [], [], []
        for row in rows:
            sampled = int(torch.multinomial(torch.softmax(row / temperature, -1), 1, generator=gen))
            scaled = row / temperature if mode.startswith("processed") else row
            values = torch.log_softmax(scaled.double(), -1) if mode.endswith("logprobs") else scaled.double()
            top = torch.topk(values, 20)
            v, i = top.values.tolist(), top.indices.tolist()
            if sampled not in i:
                v.append(values[sampled].item())
                i.append(sampled)
            tokens.append(sampled)
            lps.append(v)
            ids.append(i)
        output["completion_ids"].append(tokens)
        output["logprobs"].append(lps)
        output["logprob_token_ids"].append(ids)
    expected = [topk_entropy_from_logits(rows, k=20, temperature=temperature).tolist() for rows in logits]
    return output, expected


@pytest.mark.parametrize("mode", ["raw_logprobs", "raw_logits", "processed_logprobs", "processed_logits"])
def test_server_logprobs_mode_sets_the_entropy_temperature(mode):
    """Whatever the server's --logprobs-mode, the compacted entropies are those of logits / T over the top 20, and
    the sampled logprob is the one TRL's importance sampling reads from that server."""
    temperature = 0.6
    output, expected = _server_output(temperature, mode)
    info = {"model_config": {"logprobs_mode": mode, "max_logprobs": -1}}
    t = server_entropy_temperature(info, temperature, k=20)
    assert t == (1.0 if mode.startswith("processed") else temperature)
    sampled, entropies = split_compact_topk(compact_topk_output(output, k=20, temperature=t)["logprobs"])
    for got, want in zip(entropies, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-6)
    assert sampled == sampled_token_logprobs(output["logprobs"], output["logprob_token_ids"], output["completion_ids"])


def test_compact_output_is_what_the_ranks_need_and_much_smaller():
    import pickle

    output, _ = _server_output(1.0, "processed_logprobs")
    compact = compact_topk_output(output, k=20, temperature=1.0)
    assert compact["completion_ids"] == output["completion_ids"]
    assert all(len(token) == 2 for row in compact["logprobs"] for token in row)
    assert compact["logprob_token_ids"] == [[[t] for t in row] for row in output["completion_ids"]]
    assert len(pickle.dumps(compact)) * 5 < len(pickle.dumps(output))
    assert output["logprobs"][0][0] != compact["logprobs"][0][0]  # the input is not modified


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"logprobs_mode": "raw_logprobs", "max_logprobs": 5}, "at most 5 logprobs.*--max-logprobs 20"),
        ({"max_logprobs": -1}, "logprobs_mode None.*trl vllm-serve"),
        ({"logprobs_mode": "weird"}, "logprobs_mode 'weird'"),
    ],
)
def test_server_that_cannot_give_the_entropies_is_refused(config, message):
    with pytest.raises(ValueError, match=message):
        server_entropy_temperature({"model_config": config}, 0.7, k=20)
