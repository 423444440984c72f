"""The training entry point end to end: recipe + CLI overrides, full fine-tuning and LoRA (+ merged save)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from sasc_ttrl.commands.train import main, make_parser
from sasc_ttrl.demo.tiny_model import write_tiny_dataset

REPO = Path(__file__).resolve().parents[2]
RECIPE = str(REPO / "recipes" / "tiny" / "sasc_cpu.yaml")


def run_train(tiny_model_dir, tmp_path, *extra: str):
    data = write_tiny_dataset(tmp_path / "sums.json", n=8)
    args = [
        "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(data),
        "--output_dir", str(tmp_path / "out"), "--max_steps", "2", "--num_generations", "5",
        "--per_device_train_batch_size", "10", *extra,
    ]  # fmt: skip
    return main(*make_parser().parse_args_and_config(args=args))


def test_train_script_full_finetune(tiny_model_dir, tmp_path):
    trainer = run_train(tiny_model_dir, tmp_path)
    out = tmp_path / "out"
    assert trainer.state.global_step == 2
    assert json.loads((out / "train_results.json").read_text())["train_samples"] == 8
    trained = load_file(out / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(trained[k], base[k]) for k in base)


def test_lora_changes_only_adapter_weights_and_merges(tiny_model_dir, tmp_path):
    trainer = run_train(
        tiny_model_dir, tmp_path,
        "--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16", "--lora_target_modules", "q_proj", "v_proj",
        "--learning_rate", "1e-2", "--save_merged_model", "true",
    )  # fmt: skip
    out = tmp_path / "out"
    base = load_file(tiny_model_dir / "model.safetensors")
    # Base weights inside the PEFT model did not move; the adapter did.
    for name, param in trainer.model.named_parameters():
        if "lora_" in name:
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(param.detach(), base[key]), f"base weight {key} changed"
    adapter = load_file(out / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b), "LoRA B starts at zero and must have moved"
    assert not (out / "model.safetensors").exists(), "only the adapter is saved in output_dir"
    # The merged model is a plain model: adapted projections differ from the base, the rest is identical.
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").state_dict()
    q, up = "model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(merged[q], base[q])
    assert torch.equal(merged[up], base[up])


def test_conversational_data_trains_and_extra_columns_reach_rewards(tiny_model_dir, tmp_path):
    """TRL's conversational format passes through (template applied once) and a user reward reads `solution`."""
    from tests.training import user_rewards

    rows = [
        {"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}], "answer": str(a + b), "solution": f"{a + b}"}
        for a, b in ((1, 2), (3, 4), (2, 2), (5, 1))
    ]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    user_rewards.SEEN.clear()
    args = [
        "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(data),
        "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--num_generations", "4",
        "--per_device_train_batch_size", "8", "--max_completion_length", "16",
        "--reward_funcs", "sasc", "tests.training.user_rewards.solution_reward",
    ]  # fmt: skip
    trainer = main(*make_parser().parse_args_and_config(args=args))
    assert trainer.state.global_step == 1
    (call,) = user_rewards.SEEN
    solutions = {r["prompt"][0]["content"]: r["solution"] for r in rows}
    assert len(call["prompts"]) == 8
    for prompt, solution in zip(call["prompts"], call["solution"]):
        assert prompt == [{"role": "user", "content": prompt[0]["content"]}]  # the data's messages, untouched
        assert solutions[prompt[0]["content"]] == solution  # each row's own extra column came with it
    assert "answer" in call["keys"] and "token_entropies" in call["keys"]
