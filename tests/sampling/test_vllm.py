"""vLLM generation with the tiny model: its top-k entropies and sampled-token logprobs agree with transformers.

Runs only in the optional vLLM environment (``bash scripts/run_vllm_tests.sh``; vLLM's CPU build pins an older
transformers than the project, see scripts/setup_vllm_env.sh). For both of vLLM's log-probability modes -- the default
``raw_logprobs`` and ``processed_logprobs`` (what TRL's colocated engine asks for) -- the tiny model samples 4
completions for each of 2 prompts with ``SamplingParams(n=4, temperature=0.7, max_tokens=32, logprobs=20, seed=0)``.
The per-token top-20 logprobs are unpacked as GRPOTrainer receives them (TRL's ``extract_logprobs``), and:

* the top-k entropies from them (`sampling.vllm_topk.entropies_from_topk`) match a transformers forward pass over the
  same sampled tokens (`sampling.entropy_capture.forward_topk_entropies`), one entropy per completion token;
* the sampled token's logprob, picked by token id (`sasc_ttrl.sampling.vllm_topk.sampled_token_logprobs`), matches
  transformers' ``log_softmax(logits / T)`` of that token (T = 1 for raw logprobs, 0.7 for processed ones);
* `sampling.generation.sample_vllm` (the evaluation / build backend) returns records whose entropies match too.

Tolerance: vLLM's CPU kernels (its own attention, fused RMSNorm and SiLU-and-mul) compute the same float32 model as
transformers in a different order; on this machine the largest difference over all 256 tokens of a mode was 3.6e-6
nats for the entropies and 5.5e-6 for the logprobs, hence a tolerance of 1e-4. A wrong temperature (scaling processed
logprobs again, or raw ones not at all) moves the entropies by more than 0.1, and TRL's top-ranked ``lp[0]`` is off by
more than 0.1 where the sampled token was not the most likely one, so the tolerance tells the right computation from
the wrong ones.

Environment: the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``distributed_executor_backend=
"uni"``, ``enforce_eager=True``): each extra process re-imports vLLM (~30 s each here), and eager mode skips
torch.compile. ``VLLM_CPU_KVCACHE_SPACE=1`` keeps the KV cache at 1 GiB. Set SASC_TTRL_REQUIRE_VLLM=1 (the vLLM CI job
does) to fail instead of skipping when vLLM is not installed.
"""

from __future__ import annotations

import gc
import math
import os

import pytest
import torch

from sasc_ttrl.data.prompts import render_prompt
from sasc_ttrl.sampling.entropy_capture import forward_topk_entropies
from sasc_ttrl.sampling.generation import encode_prompts
from sasc_ttrl.sampling.models import load_transformers_model
from sasc_ttrl.sampling.vllm_topk import entropies_from_topk, sampled_token_logprobs, server_entropy_temperature
from tests.helpers.vllm_marks import VLLM_MARKS

pytestmark = VLLM_MARKS

QUESTIONS = ["What is 3 + 4?", "What is 12 + 9?"]
N, TEMPERATURE, MAX_TOKENS, TOP_K, SEED = 4, 0.7, 32, 20, 0
# Largest differences observed on this machine (256 tokens per mode): 3.6e-6 nats (entropies), 5.5e-6 (sampled-token
# logprobs). 1e-4 leaves ~20x headroom for other CPUs' kernels (vLLM picks AVX2/AVX-512 code paths at run time) and
# stays three orders of magnitude below the error of a wrong temperature or of reading the top-ranked logprob.
ENTROPY_TOLERANCE = 1e-4
LOGPROB_TOLERANCE = 1e-4
MODES = ["raw_logprobs", "processed_logprobs"]

VLLM_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    """The transformers model and tokenizer (float32, CPU), and the token ids of the rendered prompts."""
    model, tokenizer = load_transformers_model(str(tiny_model_dir), dtype="float32", device="cpu")
    prompts = [render_prompt(q, tokenizer) for q in QUESTIONS]
    return model, tokenizer, prompts, encode_prompts(tokenizer, prompts)


def _make_llm(model_dir, logprobs_mode: str):
    from sasc_ttrl.sampling.models import load_vllm

    for key, value in VLLM_ENV.items():
        os.environ.setdefault(key, value)
    return load_vllm(
        str(model_dir),
        seed=SEED,
        entropy_top_k=TOP_K,
        dtype="float32",
        logprobs_mode=logprobs_mode,
        max_model_len=512,
        max_num_seqs=N * len(QUESTIONS),
        enforce_eager=True,
        distributed_executor_backend="uni",
    )


def _shutdown(llm) -> None:
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    engine = getattr(llm, "llm_engine", None)
    if engine is not None and hasattr(engine, "engine_core") and hasattr(engine.engine_core, "shutdown"):
        engine.engine_core.shutdown()
    del llm
    gc.collect()
    cleanup_dist_env_and_memory()


@pytest.fixture(scope="module", params=MODES)
def vllm_run(request, tiny_model_dir, hf):
    """One vLLM engine per logprobs mode, and its samples unpacked as TRL's ``extract_logprobs`` does."""
    from trl.generation.vllm_generation import extract_logprobs
    from vllm import SamplingParams

    mode = request.param
    _, _, _, prompt_ids = hf
    llm = _make_llm(tiny_model_dir, mode)
    params = SamplingParams(n=N, temperature=TEMPERATURE, max_tokens=MAX_TOKENS, logprobs=TOP_K, seed=SEED)
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
    topk_logprobs, topk_token_ids = extract_logprobs(outputs)
    completion_ids = [list(sample.token_ids) for request_out in outputs for sample in request_out.outputs]
    flat_prompt_ids = [list(request_out.prompt_token_ids) for request_out in outputs for _ in request_out.outputs]
    run = {
        "mode": mode,
        "llm": llm,
        "outputs": outputs,
        "topk_logprobs": topk_logprobs,
        "topk_token_ids": topk_token_ids,
        "completion_ids": completion_ids,
        "prompt_ids": flat_prompt_ids,
        # Processed logprobs are log_softmax(logits / T) already; raw ones are log_softmax(logits). The trainer's
        # server mode reads the same from the server's configuration.
        "entropy_temperature": server_entropy_temperature(
            {"model_config": {"logprobs_mode": mode, "max_logprobs": TOP_K}}, TEMPERATURE, TOP_K
        ),
        "logprob_temperature": TEMPERATURE if mode == "processed_logprobs" else 1.0,
    }
    yield run
    _shutdown(llm)


@torch.no_grad()
def _transformers_logprobs(model, prompt_ids, completion_ids, temperature: float) -> list[list[float]]:
    """log_softmax(logits / T) of each sampled token, one unpadded forward pass per sequence."""
    result = []
    for prompt, completion in zip(prompt_ids, completion_ids):
        logits = model(input_ids=torch.tensor([prompt + completion])).logits[0].float()
        logp = torch.log_softmax(logits[len(prompt) - 1 : len(prompt) - 1 + len(completion)] / temperature, dim=-1)
        result.append(logp.gather(-1, torch.tensor(completion)[:, None])[:, 0].tolist())
    return result


def _max_abs_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for row_a, row_b in zip(a, b, strict=True) for x, y in zip(row_a, row_b, strict=True))


def test_shapes_and_sampling(vllm_run, hf):
    _, tokenizer, _, prompt_ids = hf
    completions = vllm_run["completion_ids"]
    assert len(completions) == N * len(QUESTIONS)
    assert len({tuple(c) for c in completions}) > 1, "the n samples of a prompt should differ"
    for seq, completion in enumerate(completions):
        assert 0 < len(completion) <= MAX_TOKENS
        # One position of logprobs per completion token, each with the top k (+ the sampled token when outside).
        assert len(vllm_run["topk_logprobs"][seq]) == len(completion) == len(vllm_run["topk_token_ids"][seq])
        for values, ids, token in zip(vllm_run["topk_logprobs"][seq], vllm_run["topk_token_ids"][seq], completion):
            assert len(values) in (TOP_K, TOP_K + 1) and len(ids) == len(values)
            assert token in ids
            assert (len(values) == TOP_K + 1) == (token not in ids[:TOP_K])
        assert tokenizer.eos_token_id not in completion[:-1]
    assert vllm_run["prompt_ids"][0] == prompt_ids[0]


def test_entropies_match_transformers(vllm_run, hf, record_property):
    model, tokenizer, _, _ = hf
    got = entropies_from_topk(vllm_run["topk_logprobs"], k=TOP_K, temperature=vllm_run["entropy_temperature"])
    reference = forward_topk_entropies(
        model,
        vllm_run["prompt_ids"],
        vllm_run["completion_ids"],
        k=TOP_K,
        temperature=TEMPERATURE,
        pad_token_id=tokenizer.pad_token_id,
    )
    assert [len(e) for e in got] == [len(c) for c in vllm_run["completion_ids"]]
    worst = _max_abs_diff(got, reference)
    record_property(f"entropy_max_abs_diff_{vllm_run['mode']}", worst)
    # The tolerance separates right from wrong: scaling by the temperature a second time (or forgetting it) is far off.
    wrong_temperature = TEMPERATURE if vllm_run["mode"] == "processed_logprobs" else 1.0
    wrong = _max_abs_diff(
        entropies_from_topk(vllm_run["topk_logprobs"], k=TOP_K, temperature=wrong_temperature), reference
    )
    print(
        f"\n[{vllm_run['mode']}] entropies: max |vLLM - transformers| = {worst:.3g} over "
        f"{sum(map(len, got))} tokens (with temperature {wrong_temperature} instead: {wrong:.3g})"
    )
    assert worst < ENTROPY_TOLERANCE
    assert wrong > 1000 * ENTROPY_TOLERANCE


def test_sampled_token_logprobs_match_transformers(vllm_run, hf, record_property):
    model, _, _, _ = hf
    picked = sampled_token_logprobs(vllm_run["topk_logprobs"], vllm_run["topk_token_ids"], vllm_run["completion_ids"])
    assert [len(p) for p in picked] == [len(c) for c in vllm_run["completion_ids"]]
    assert not any(math.isnan(v) for row in picked for v in row)
    reference = _transformers_logprobs(
        model, vllm_run["prompt_ids"], vllm_run["completion_ids"], temperature=vllm_run["logprob_temperature"]
    )
    worst = _max_abs_diff(picked, reference)
    record_property(f"logprob_max_abs_diff_{vllm_run['mode']}", worst)
    not_top = sum(
        ids[0] != tok
        for seq, c in enumerate(vllm_run["completion_ids"])
        for ids, tok in zip(vllm_run["topk_token_ids"][seq], c)
    )
    outside = sum(len(v) == TOP_K + 1 for seq in vllm_run["topk_logprobs"] for v in seq)
    # GRPOTrainer's own vLLM branch reads lp[0], the top-ranked entry: with top-k logprobs that is another token's
    # logprob wherever the sampled token was not the most likely one (at temperature 0.7 that happens here).
    top_ranked = _max_abs_diff([[values[0] for values in seq] for seq in vllm_run["topk_logprobs"]], reference)
    print(
        f"\n[{vllm_run['mode']}] sampled-token logprobs: max |vLLM - transformers| = {worst:.3g}; {not_top} tokens "
        f"not top-ranked (lp[0] off by up to {top_ranked:.3g}), {outside} outside the top {TOP_K}"
    )
    assert worst < LOGPROB_TOLERANCE
    assert not_top > 0
    assert top_ranked > 1000 * LOGPROB_TOLERANCE


def test_sample_vllm_records_match_transformers(vllm_run, hf, record_property):
    """`generation.sample_vllm` against transformers, with either logprobs mode of the engine."""
    from sasc_ttrl.sampling.generation import sample_vllm

    model, tokenizer, prompts, prompt_ids = hf
    groups = sample_vllm(
        vllm_run["llm"],
        prompts,
        n=N,
        temperature=TEMPERATURE,
        top_p=1.0,
        max_tokens=MAX_TOKENS,
        seed=SEED,
        entropy_top_k=TOP_K,
    )
    assert [len(g) for g in groups] == [N] * len(QUESTIONS)
    records = [r for g in groups for r in g]
    for record in records:
        assert 0 < len(record.token_ids) == len(record.entropies) <= MAX_TOKENS
        assert record.text == tokenizer.decode(record.token_ids, skip_special_tokens=True)
    reference = forward_topk_entropies(
        model,
        [prompt_ids[i] for i, g in enumerate(groups) for _ in g],
        [r.token_ids for r in records],
        k=TOP_K,
        temperature=TEMPERATURE,
        pad_token_id=tokenizer.pad_token_id,
    )
    worst = _max_abs_diff([r.entropies for r in records], reference)
    record_property("sample_vllm_entropy_max_abs_diff", worst)
    print(f"\n[sample_vllm] entropies: max |vLLM - transformers| = {worst:.3g}")
    assert worst < ENTROPY_TOLERANCE


def test_sasc_request_without_text_samples_the_same_tokens_and_logprobs(vllm_run, hf):
    """SASCTrainer's request adds ``detokenize=False`` (`sasc_sampling_overrides`): vLLM then skips the text of the
    completion and of every returned logprob's token, and must return exactly the same ids and logprobs."""
    from trl.generation.vllm_generation import extract_logprobs
    from vllm import SamplingParams

    from sasc_ttrl.sampling.vllm_topk import sasc_sampling_overrides

    _, _, _, prompt_ids = hf
    overrides = sasc_sampling_overrides({})
    assert overrides == {"detokenize": False}
    params = SamplingParams(
        n=N, temperature=TEMPERATURE, max_tokens=MAX_TOKENS, logprobs=TOP_K, seed=SEED, **overrides
    )
    outputs = vllm_run["llm"].generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
    completion_ids = [list(sample.token_ids) for request_out in outputs for sample in request_out.outputs]
    topk_logprobs, topk_token_ids = extract_logprobs(outputs)
    assert completion_ids == vllm_run["completion_ids"]
    assert topk_logprobs == vllm_run["topk_logprobs"] and topk_token_ids == vllm_run["topk_token_ids"]
    # The text is what was skipped: the default request has it, this one does not.
    assert all(sample.text for request_out in vllm_run["outputs"] for sample in request_out.outputs)
    assert not any(sample.text for request_out in outputs for sample in request_out.outputs)
    decoded = {
        lp.decoded_token
        for request_out in outputs
        for s in request_out.outputs
        for p in s.logprobs
        for lp in p.values()
    }
    assert decoded == {None}
