"""Sample records from the tiny model (transformers backend) and from fake vLLM outputs."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest
import torch

from sasc_ttrl.core.answers import extract_answer
from sasc_ttrl.core.stability import instability
from sasc_ttrl.data.prompts import render_prompt
from sasc_ttrl.sampling.entropy import topk_entropy_from_logits
from sasc_ttrl.sampling.entropy_capture import forward_topk_entropies
from sasc_ttrl.sampling.generation import (
    SeededSampler,
    encode_prompts,
    records_from_vllm,
    resolve_backend,
    sample_seed,
    sample_transformers,
    sample_vllm,
)
from sasc_ttrl.sampling.models import load_transformers_model, load_vllm
from sasc_ttrl.sampling.records import SampleRecord, grade_records

QUESTIONS = ["What is 3 + 4?", "What is 12 + 9?", "What is 0 + 5?"]
SETTINGS = dict(n=3, temperature=0.8, top_p=0.95, max_tokens=40, seed=7)


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    return load_transformers_model(str(tiny_model_dir), dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def sampled(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = [render_prompt(q, tokenizer) for q in QUESTIONS]
    return prompts, sample_transformers(model, tokenizer, prompts, **SETTINGS, batch_size=2)


def test_records_have_one_entropy_per_completion_token(model_and_tokenizer, sampled):
    model, tokenizer = model_and_tokenizer
    prompts, groups = sampled
    assert [len(g) for g in groups] == [3, 3, 3]
    eos = tokenizer.eos_token_id
    for record in (r for g in groups for r in g):
        assert 0 < len(record.token_ids) <= SETTINGS["max_tokens"]
        assert len(record.entropies) == len(record.token_ids)
        assert tokenizer.pad_token_id not in record.token_ids
        # The completion ends at its first EOS (inclusive) or at the length limit.
        assert eos not in record.token_ids[:-1]
        assert record.token_ids[-1] == eos or len(record.token_ids) == SETTINGS["max_tokens"]
        assert record.text == tokenizer.decode(record.token_ids, skip_special_tokens=True)
        assert record.answer == extract_answer(record.text)
        assert record.correct is None
        assert record.instability == pytest.approx(instability(record.entropies))
    assert any(r.answer is not None for g in groups for r in g)


def test_recorded_entropies_match_a_forward_pass(model_and_tokenizer, sampled):
    model, tokenizer = model_and_tokenizer
    prompts, groups = sampled
    prompt_ids = encode_prompts(tokenizer, prompts)
    flat = [(prompt_ids[i], r) for i, g in enumerate(groups) for r in g]
    reference = forward_topk_entropies(
        model,
        [p for p, _ in flat],
        [r.token_ids for _, r in flat],
        k=20,
        temperature=SETTINGS["temperature"],
        pad_token_id=tokenizer.pad_token_id,
    )
    for (_, record), expected in zip(flat, reference):
        assert record.entropies == pytest.approx(expected, abs=1e-4)


def test_sampling_is_seeded_per_prompt(model_and_tokenizer, sampled):
    model, tokenizer = model_and_tokenizer
    prompts, groups = sampled
    texts = [[r.text for r in g] for g in groups]
    # Same seed, other batching, a subset of the prompts keyed by their original positions: the same samples.
    again = sample_transformers(model, tokenizer, prompts[1:], **SETTINGS, batch_size=1, sample_keys=[1, 2])
    assert [[r.text for r in g] for g in again] == texts[1:]
    other = sample_transformers(model, tokenizer, prompts[:1], **{**SETTINGS, "seed": 8}, batch_size=1)
    assert [r.token_ids for r in other[0]] != [r.token_ids for r in groups[0]]


def test_seeded_sampler_respects_top_p_and_its_seeds():
    scores = torch.tensor([[5.0, 0.0, 0.0, 0.0]] * 4 + [[1.0, 1.0, -50.0, -50.0]] * 64)
    sampler = SeededSampler([sample_seed(0, r) for r in range(68)], temperature=1.0, top_p=0.5)
    out = sampler(torch.zeros(68, 1, dtype=torch.long), scores)
    chosen = out.argmax(-1)
    assert torch.isinf(out).sum(-1).eq(3).all()  # one-hot: a single finite entry per row
    assert chosen[:4].eq(0).all()  # top_p=0.5 keeps only the dominant token
    assert chosen[4:].eq(0).all()  # two equal tokens: the first already holds 0.5 of the mass
    free = SeededSampler([sample_seed(0, r) for r in range(68)], temperature=1.0, top_p=1.0)
    drawn = free(torch.zeros(68, 1, dtype=torch.long), scores).argmax(-1)
    assert set(drawn[4:].tolist()) == {0, 1}
    again = SeededSampler([sample_seed(0, r) for r in range(68)], temperature=1.0, top_p=1.0)
    assert torch.equal(again(torch.zeros(68, 1, dtype=torch.long), scores).argmax(-1), drawn)


def test_grade_records_and_round_trip():
    records = [
        SampleRecord("x", [1], "1/2", [0.1]),
        SampleRecord("y", [2], None, [0.2]),
        SampleRecord("z", [], "3", []),
    ]
    grade_records(records, "0.5")
    assert [r.correct for r in records] == [True, False, False]
    grade_records(records, None)
    assert [r.correct for r in records] == [None, None, None]
    record = SampleRecord("t", [4, 5], "7", [0.1234567891, 0.5], correct=True)
    assert SampleRecord.from_dict(record.to_dict()) == record
    assert record.to_dict(entropy_decimals=3)["entropies"] == [0.123, 0.5]


def test_resolve_backend():
    assert resolve_backend("transformers") == "transformers"
    if not torch.cuda.is_available():
        assert resolve_backend("auto") == "transformers"
    with pytest.raises(ValueError):
        resolve_backend("tgi")


class Logprob:
    """Stands in for ``vllm.sequence.Logprob``."""

    def __init__(self, logprob: float, rank: int | None = None):
        self.logprob = logprob
        self.rank = rank


def fake_completion(logits: torch.Tensor, token_ids: list[int], k: int, text: str):
    """A fake ``CompletionOutput``: raw top-k logprobs per token, plus the sampled token when outside the top k."""
    logprobs = torch.log_softmax(logits, dim=-1)
    positions = []
    for row, token in zip(logprobs, token_ids):
        top = torch.topk(row, k).indices.tolist()
        entry = {t: Logprob(float(row[t]), rank=i + 1) for i, t in enumerate(top)}
        entry.setdefault(token, Logprob(float(row[token])))
        positions.append(entry)
    return SimpleNamespace(text=text, token_ids=tuple(token_ids), logprobs=positions)


def test_records_from_fake_vllm_outputs_match_the_logits():
    torch.manual_seed(0)
    k, temperature = 5, 0.7
    logits = [torch.randn(3, 50), torch.randn(2, 50)]
    logits[0][1, 49] = -10.0  # the sampled token 49 is outside the top k: vLLM returns k + 1 entries there
    outputs = [
        SimpleNamespace(
            outputs=[
                fake_completion(logits[0], [3, 49, 1], k, "so \\boxed{12}"),
                fake_completion(logits[1], [7, 1], k, "no answer"),
            ]
        )
    ]
    assert len(outputs[0].outputs[0].logprobs[1]) == k + 1
    records = records_from_vllm(outputs, temperature=temperature, entropy_top_k=k)
    assert len(records) == 1 and len(records[0]) == 2
    first, second = records[0]
    assert (first.text, first.token_ids, first.answer) == ("so \\boxed{12}", [3, 49, 1], "12")
    assert second.answer is None
    for record, raw in zip(records[0], logits):
        expected = topk_entropy_from_logits(raw, k=k, temperature=temperature).tolist()
        assert record.entropies == pytest.approx(expected, abs=1e-5)
    broken = [SimpleNamespace(outputs=[SimpleNamespace(text="", token_ids=(1,), logprobs=None)])]
    with pytest.raises(ValueError, match="logprobs"):
        records_from_vllm(broken, temperature=1.0)
    short = [SimpleNamespace(outputs=[fake_completion(logits[1], [7, 1], k, "")])]
    short[0].outputs[0].token_ids = (7, 1, 2)
    with pytest.raises(ValueError, match="positions"):
        records_from_vllm(short, temperature=1.0, entropy_top_k=k)


def test_sample_vllm_builds_seeded_requests(monkeypatch, tiny_model_dir):
    """``sample_vllm`` against a fake ``vllm`` module: token-id prompts, one seeded SamplingParams per prompt."""
    from transformers import AutoTokenizer

    fake_vllm = types.ModuleType("vllm")
    fake_vllm.SamplingParams = lambda **kwargs: SimpleNamespace(**kwargs)
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    prompts = [render_prompt(q, tokenizer) for q in QUESTIONS[:2]]
    calls = []

    class FakeLLM:
        def get_tokenizer(self):
            return tokenizer

        def generate(self, requests, params, use_tqdm=True):
            calls.append((requests, params))
            logits = torch.randn(2, 40)
            return [SimpleNamespace(outputs=[fake_completion(logits, [9, 5], 20, "\\boxed{1}")] * p.n) for p in params]

    groups = sample_vllm(
        FakeLLM(), prompts, n=2, temperature=0.6, top_p=0.95, max_tokens=16, seed=3, sample_keys=[4, 9]
    )
    requests, params = calls[0]
    assert [r["prompt_token_ids"] for r in requests] == encode_prompts(tokenizer, prompts)
    assert [p.seed for p in params] == [sample_seed(3, 4), sample_seed(3, 9)]
    assert all((p.n, p.logprobs, p.temperature, p.top_p, p.max_tokens) == (2, 20, 0.6, 0.95, 16) for p in params)
    assert [len(g) for g in groups] == [2, 2]
    assert groups[0][0].answer == "1" and len(groups[0][0].entropies) == 2


def test_sample_vllm_on_a_cpu_engine_sends_prompts_in_batches_that_fit_one_step(monkeypatch, tiny_model_dir):
    """A fake engine that reports vLLM's CPU device and a step budget of 2 prompts x n: ``sample_vllm`` makes one
    ``generate`` call per 2 prompts, keeps each prompt's seed and returns the groups in prompt order; on another
    device it makes one call."""
    from transformers import AutoTokenizer

    fake_vllm = types.ModuleType("vllm")
    fake_vllm.SamplingParams = lambda **kwargs: SimpleNamespace(**kwargs)
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    prompts = [render_prompt(q, tokenizer) for q in QUESTIONS[:3]] * 2  # 6 prompts
    longest = max(len(ids) for ids in encode_prompts(tokenizer, prompts))

    class FakeLLM:
        def __init__(self, device):
            scheduler = SimpleNamespace(
                max_num_batched_tokens=2 * 2 * longest, max_num_scheduled_tokens=None, max_num_seqs=64,
                enable_chunked_prefill=True, long_prefill_token_threshold=0,
            )  # fmt: skip
            config = SimpleNamespace(device_config=SimpleNamespace(device_type=device), scheduler_config=scheduler)
            self.llm_engine = SimpleNamespace(vllm_config=config)
            self.calls = []

        def get_tokenizer(self):
            return tokenizer

        def generate(self, requests, params, use_tqdm=True):
            self.calls.append([p.seed for p in params])
            logits = torch.randn(2, 40)
            return [
                SimpleNamespace(outputs=[fake_completion(logits, [9, 5], 20, f"\\boxed{{{p.seed}}}")] * p.n)
                for p in params
            ]

    keys = [10, 11, 12, 13, 14, 15]
    cpu = FakeLLM("cpu")
    groups = sample_vllm(cpu, prompts, n=2, temperature=0.6, top_p=1.0, max_tokens=16, seed=3, sample_keys=keys)
    seeds = [sample_seed(3, key) for key in keys]
    assert cpu.calls == [seeds[0:2], seeds[2:4], seeds[4:6]]
    assert [g[0].answer for g in groups] == [str(x) for x in seeds]  # each group is its own prompt's
    gpu = FakeLLM("cuda")
    sample_vllm(gpu, prompts, n=2, temperature=0.6, top_p=1.0, max_tokens=16, seed=3, sample_keys=keys)
    assert gpu.calls == [seeds]


@pytest.mark.slow
@pytest.mark.vllm
def test_sample_vllm_on_the_tiny_model(model_and_tokenizer, tiny_model_dir):
    """Real vLLM (CPU build): records like the transformers backend, seeded per prompt. Skipped without vLLM."""
    pytest.importorskip("vllm")
    model, tokenizer = model_and_tokenizer
    llm = load_vllm(str(tiny_model_dir), seed=0, entropy_top_k=20, dtype="float32", max_model_len=512)
    prompts = [render_prompt(q, tokenizer) for q in QUESTIONS[:2]]
    groups = sample_vllm(llm, prompts, **SETTINGS, tokenizer=tokenizer)
    assert [len(g) for g in groups] == [3, 3]
    flat = [(ids, r) for ids, g in zip(encode_prompts(tokenizer, prompts), groups) for r in g]
    for _, record in flat:
        assert len(record.entropies) == len(record.token_ids) > 0
        assert record.answer == extract_answer(record.text)
    reference = forward_topk_entropies(
        model,
        [p for p, _ in flat],
        [r.token_ids for _, r in flat],
        k=20,
        temperature=SETTINGS["temperature"],
        pad_token_id=tokenizer.pad_token_id,
    )
    for (_, record), expected in zip(flat, reference):
        assert record.entropies == pytest.approx(expected, abs=1e-3)
    again = sample_vllm(llm, prompts[1:], **SETTINGS, sample_keys=[1], tokenizer=tokenizer)
    assert [r.token_ids for r in again[0]] == [r.token_ids for r in groups[1]]


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_serves_a_lora_adapter_folder_merged(tiny_model_dir, tiny_adapter_dir):
    """`load_vllm` on an adapter folder (no config.json of its own) samples from base + adapter: its entropies are
    those of the merged model, not of the base. Skipped without vLLM."""
    pytest.importorskip("vllm")
    merged, tokenizer = load_transformers_model(str(tiny_adapter_dir), dtype="float32", device="cpu")
    base, _ = load_transformers_model(str(tiny_model_dir), dtype="float32", device="cpu")
    llm = load_vllm(str(tiny_adapter_dir), seed=0, entropy_top_k=20, dtype="float32", max_model_len=512)
    prompts = [render_prompt(q, tokenizer) for q in QUESTIONS[:2]]
    groups = sample_vllm(llm, prompts, **SETTINGS, tokenizer=tokenizer)
    flat = [(ids, r) for ids, g in zip(encode_prompts(tokenizer, prompts), groups) for r in g]

    def entropies(model):
        return forward_topk_entropies(
            model, [p for p, _ in flat], [r.token_ids for _, r in flat], k=20,
            temperature=SETTINGS["temperature"], pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip

    for (_, record), expected in zip(flat, entropies(merged)):
        assert record.entropies == pytest.approx(expected, abs=1e-3)
    worst_vs_base = max(
        abs(a - b) for (_, record), ref in zip(flat, entropies(base)) for a, b in zip(record.entropies, ref)
    )
    assert worst_vs_base > 1e-2, "the adapter should change the model"


def test_sampling_settings_from_a_commands_arguments():
    """A command's arguments give the fields they have; the rest keep the class defaults; overrides win; the
    settings' own checks still apply."""
    from types import SimpleNamespace

    from sasc_ttrl.sampling.generation import SamplingSettings

    args = SimpleNamespace(temperature=0.6, top_p=0.9, max_tokens=40, seed=3, batch_size=2, learning_rate=1e-3)
    got = SamplingSettings.from_arguments(args, n=5, seed=11)
    assert got == SamplingSettings(n=5, temperature=0.6, top_p=0.9, max_tokens=40, seed=11, batch_size=2)
    assert got.entropy_top_k == SamplingSettings(n=1, temperature=1.0).entropy_top_k  # not in args: the default
    with pytest.raises(ValueError, match="temperature"):
        SamplingSettings.from_arguments(SimpleNamespace(temperature=0.0), n=1)


def test_prefill_batches_fit_every_prefill_in_one_scheduler_step():
    from sasc_ttrl.sampling.generation import prefill_batches

    # n = 4: prompts of 10, 20, 5, 30 tokens need 40, 80, 20, 120 prefill tokens.
    assert prefill_batches([10, 20, 5, 30], n=4, token_budget=140, max_seqs=100) == [slice(0, 3), slice(3, 4)]
    assert prefill_batches([10, 20, 5, 30], n=4, token_budget=1000, max_seqs=8) == [slice(0, 2), slice(2, 4)]
    assert prefill_batches([10, 20, 5, 30], n=4, token_budget=1000, max_seqs=100) == [slice(0, 4)]
    assert prefill_batches([], n=4, token_budget=10, max_seqs=10) == []
    for lengths in ([3, 7, 2, 9, 9, 1, 4], [1] * 20):
        batches = prefill_batches(lengths, n=3, token_budget=30, max_seqs=9)
        assert [i for b in batches for i in range(len(lengths))[b]] == list(range(len(lengths)))  # all, in order
        assert all(sum(3 * x for x in lengths[b]) <= 30 and 3 * len(lengths[b]) <= 9 for b in batches)
    with pytest.raises(ValueError, match="prompt 1 has 40 tokens .* max_num_batched_tokens=100"):
        prefill_batches([10, 40], n=4, token_budget=100, max_seqs=100)
    with pytest.raises(ValueError, match="long_prefill_token_threshold=32"):
        prefill_batches([10, 40], n=1, token_budget=100, max_seqs=100, max_prefill=32)
