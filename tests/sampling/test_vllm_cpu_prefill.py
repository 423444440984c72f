"""Seeded vLLM sampling on the CPU backend with a scheduler budget smaller than the batch's prefills.

vLLM rewinds a seeded request's generator after a partial (split) prefill, which CPU generators cannot do ("CPU
Generator does not use offset"), so `sample_vllm` sends the prompts in batches whose prefills all fit in one scheduler
step (`generation.prefill_batches`). Here the engine's ``max_num_batched_tokens`` holds one prompt's ``n`` prefills
but not two, so the two prompts go in two calls, and a prompt's samples are the same whether it is sampled alone or
with the other (each request has its own seed). Own module: it builds its own engine, after test_vllm's are gone.
"""

from __future__ import annotations

import os

from sasc_ttrl.data.prompts import render_prompt
from sasc_ttrl.sampling.generation import encode_prompts, prefill_batches, sample_vllm
from tests.helpers.vllm_marks import VLLM_MARKS
from tests.sampling.test_vllm import VLLM_ENV, _shutdown

pytestmark = VLLM_MARKS

QUESTIONS = ["What is 3 + 4?", "What is 12 + 9?"]
N, MAX_TOKENS = 4, 24


def test_seeded_sampling_never_splits_a_prefill_on_cpu(tiny_model_dir):
    from vllm.platforms import current_platform

    from sasc_ttrl.sampling.models import load_transformers_model, load_vllm

    assert current_platform.is_cpu()
    _, tokenizer = load_transformers_model(str(tiny_model_dir), dtype="float32", device="cpu")
    prompts = [render_prompt(q, tokenizer) for q in QUESTIONS]
    lengths = [len(ids) for ids in encode_prompts(tokenizer, prompts)]
    budget = N * max(lengths) + 1  # one prompt's N prefills fit in a step, two prompts' do not
    assert len(prefill_batches(lengths, N, budget, max_seqs=2 * N)) == 2
    for key, value in VLLM_ENV.items():
        os.environ.setdefault(key, value)
    llm = load_vllm(
        str(tiny_model_dir), seed=0, dtype="float32", max_model_len=128, max_num_seqs=2 * N,
        max_num_batched_tokens=budget, enforce_eager=True, distributed_executor_backend="uni",
    )  # fmt: skip
    try:
        settings = dict(n=N, temperature=1.0, top_p=1.0, max_tokens=MAX_TOKENS, seed=5)
        both = sample_vllm(llm, prompts, **settings)
        alone = sample_vllm(llm, prompts[1:], sample_keys=[1], **settings)
    finally:
        _shutdown(llm)
    assert [len(g) for g in both] == [N, N]
    assert all(0 < len(r.token_ids) == len(r.entropies) <= MAX_TOKENS for g in both for r in g)
    assert [r.token_ids for r in both[1]] == [r.token_ids for r in alone[0]]
