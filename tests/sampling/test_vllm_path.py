"""SASCTrainer's vLLM branch, run through GRPOTrainer's real vLLM code path with a stand-in for vLLM.

vLLM itself is tested in its own environment (tests/sampling/test_vllm.py). Here a stand-in for TRL's `VLLMGeneration`
samples with the trainer's own model and returns what TRL's `extract_logprobs` returns: per token, the top-k
*processed* logprobs (log-softmax of logits / T) sorted by rank, plus the sampled token when it is outside the
top k, with their token ids. If the trainer read `lp[0]` (the top-ranked token) as the sampled token's logprob,
TRL's importance-sampling logp difference would be far from 0; if it scaled the processed logprobs by the
temperature twice, the entropies would not match the reference forward pass.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from transformers import AutoTokenizer

from sasc_ttrl.data.training_data import load_math_dataset
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.sampling.entropy_capture import forward_topk_entropies
from sasc_ttrl.training.rewards import get_reward_funcs
from sasc_ttrl.training.trainer import SASCTrainer
from tests.training.test_trainer import Spy, tiny_config

TEMPERATURE = 0.7


class FakeVLLMGeneration:
    def __init__(self, trainer, max_tokens: int):
        self.trainer = trainer
        self.max_tokens = max_tokens
        self.logprobs = 0
        self.syncs = 0

    def sync_weights(self):
        self.syncs += 1

    @torch.no_grad()
    def generate(self, prompts, images=None, num_generations=1, profiler=None):
        model = self.trainer.model
        tok = self.trainer.processing_class
        with profiler or nullcontext():
            width = max(len(p) for p in prompts)
            ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + list(p) for p in prompts])
            mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
            out = model.generate(
                input_ids=ids, attention_mask=mask, do_sample=True, temperature=TEMPERATURE, top_k=0, top_p=1.0,
                max_new_tokens=self.max_tokens, pad_token_id=tok.pad_token_id,
            )  # fmt: skip
            completions = []
            for row in out[:, width:].tolist():
                completions.append(row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row)
            all_lps, all_ids = [], []
            for prompt, completion in zip(prompts, completions):
                full = torch.tensor([list(prompt) + completion])
                logits = model(input_ids=full).logits[0, len(prompt) - 1 : len(prompt) - 1 + len(completion)]
                logp = torch.log_softmax(logits.float() / TEMPERATURE, dim=-1)
                top = torch.topk(logp, self.logprobs, dim=-1)
                seq_lps, seq_ids = [], []
                for t, sampled in enumerate(completion):
                    lps, tids = top.values[t].tolist(), top.indices[t].tolist()
                    if sampled not in tids:  # vLLM appends the sampled token when it is outside the top k
                        lps.append(logp[t, sampled].item())
                        tids.append(sampled)
                    order = sorted(range(len(lps)), key=lambda i: -lps[i])
                    seq_lps.append([lps[i] for i in order])
                    seq_ids.append([tids[i] for i in order])
                all_lps.append(seq_lps)
                all_ids.append(seq_ids)
        return prompts, completions, all_lps, all_ids


def test_vllm_branch_entropies_and_sampled_logprobs(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    dataset = load_math_dataset(str(write_tiny_dataset(tmp_path / "sums.json", n=4)), tokenizer=tokenizer)
    spy = Spy()
    args = tiny_config(tmp_path, max_steps=1, learning_rate=0.0, temperature=TEMPERATURE)
    trainer = SASCTrainer(
        model=str(tiny_model_dir),
        reward_funcs=[spy] + get_reward_funcs(["sasc"], args.vote_settings),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    # Switch to the vLLM branch with the stand-in (constructing with use_vllm=True would import vLLM).
    fake = FakeVLLMGeneration(trainer, max_tokens=args.max_completion_length)
    fake.logprobs = args.entropy_top_k  # what SASCTrainer.__init__ sets on a real VLLMGeneration
    trainer.use_vllm, trainer.vllm_generation, trainer._last_loaded_step = True, fake, -1
    trainer.entropy_path = "vllm"  # what SASCTrainer.__init__ decides with use_vllm=True
    trainer.vllm_importance_sampling_correction = True
    trainer.train()

    assert fake.syncs == 1
    call = spy.calls[0]
    assert [len(e) for e in call["token_entropies"]] == [len(c) for c in call["completion_ids"]]
    prompt_ids = [
        tokenizer.apply_chat_template(p, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
        for p in call["prompts"]
    ]
    reference = forward_topk_entropies(
        trainer.model, prompt_ids, call["completion_ids"], k=20, temperature=TEMPERATURE, pad_token_id=0
    )
    worst = max(abs(a - b) for got, ref in zip(call["token_entropies"], reference) for a, b in zip(got, ref))
    assert worst < 1e-4
    logged = trainer.state.log_history[0]
    # TRL compares the trainer's logprobs with the sampling logprobs we returned: they must be the sampled token's.
    assert logged["sampling/sampling_logp_difference/max"] < 1e-3
    assert 0.99 < logged["sampling/importance_sampling_ratio/mean"] < 1.01


def test_sasc_trainer_sets_topk_logprobs_request(tiny_model_dir, tmp_path):
    import pytest

    with pytest.raises(ValueError, match="max_logprobs"):
        SASCTrainer(model=str(tiny_model_dir), args=tiny_config(tmp_path, use_vllm=True, entropy_top_k=32))
