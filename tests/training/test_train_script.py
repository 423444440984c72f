"""The training entry point end to end: recipe + CLI overrides, full fine-tuning and LoRA (+ merged save); the saved
folders load in `sasc-ttrl eval` and PEFT, and carry a model card."""

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
    """Train 2 steps on the tiny recipe; beside the vote, a reward that varies by construction moves the weights
    whatever the model samples (`user_rewards.position_reward`)."""
    data = write_tiny_dataset(tmp_path / "sums.json", n=8)
    args = [
        "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_name", str(data),
        "--output_dir", str(tmp_path / "out"), "--max_steps", "2", "--num_generations", "5",
        "--per_device_train_batch_size", "10",
        "--reward_funcs", "sasc", "tests.training.user_rewards.position_reward", *extra,
    ]  # fmt: skip
    return main(*make_parser().parse_args_and_config(args=args))


def evaluate(folder: Path, output_dir: Path) -> list[dict]:
    """``sasc-ttrl eval`` on ``folder`` (2 questions x 2 samples of 16 tokens); returns its sample lines."""
    from sasc_ttrl import cli

    data = output_dir.parent / "eval_sums.json"
    if not data.exists():
        write_tiny_dataset(data, n=2)
    cli.main([
        "eval", "--model_name_or_path", str(folder), "--benchmarks", str(data), "--output_dir", str(output_dir),
        "--n", "2", "--max_tokens", "16", "--backend", "transformers", "--dtype", "float32", "--seed", "3",
    ])  # fmt: skip
    assert json.loads((output_dir / "metrics.json").read_text())["benchmarks"]
    (samples,) = (output_dir / "samples").iterdir()
    return [json.loads(line) for line in samples.read_text().splitlines()]


def test_train_script_full_finetune(tiny_model_dir, tmp_path):
    # report_to tensorboard, as every Qwen recipe: tensorboard is a dependency, so it logs instead of crashing.
    trainer = run_train(tiny_model_dir, tmp_path, "--report_to", "tensorboard")
    out = tmp_path / "out"
    assert trainer.state.global_step == 2
    assert list(out.rglob("events.out.tfevents.*")), "TensorBoard wrote no event file"
    assert json.loads((out / "train_results.json").read_text())["train_samples"] == 8
    trained = load_file(out / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(trained[k], base[k]) for k in base)
    assert json.loads((out / "config.json").read_text())["use_cache"] is True

    card = (out / "README.md").read_text()
    assert "Model Card for None" not in card and "huggingface.co/None" not in card
    assert card.startswith("---\n") and "sasc-ttrl" in card.split("---")[1]  # hub metadata, with our tag
    assert "# out\n" in card
    assert f"a fine-tuned version of `{tiny_model_dir.resolve()}`, trained with SASC-TTRL on the questions of" in card
    assert f"`{tmp_path / 'sums.json'}`, without their answers" in card
    assert "| `filter_ratio` | 0.2 " in card and "| `vote_weighting` | clipped_exp |" in card
    assert "| `weight_clip` | 1.0 |" in card
    assert "| `entropy_top_k` | 20 |" in card and "| `num_generations` | 5 rollouts" in card
    assert "| `steps trained` | 2 (asked: 2 steps) |" in card
    assert "stability-aware" in card and "TTRL, Zuo et al., 2025" in card
    for key in (
        "@article{zuo2025ttrl",
        "arXiv:2504.16084",
        "@software{vonwerra2020trl",
        "@article{shao2024deepseekmath",
    ):
        assert key in card
    assert f"sasc-ttrl eval --model_name_or_path {out}" in card


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
    assert json.loads((out / "merged" / "config.json").read_text())["use_cache"] is True
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").state_dict()
    q, up = "model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(merged[q], base[q])
    assert torch.equal(merged[up], base[up])

    # The adapter folder holds no base config.json (it made loaders look for model.safetensors there) and points at
    # its base model by an absolute path, so it loads from any directory.
    assert not (out / "config.json").exists()
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    # PEFT loads it; merged, it is the merged/ model.
    from peft import AutoPeftModelForCausalLM

    peft_merged = AutoPeftModelForCausalLM.from_pretrained(out).merge_and_unload().state_dict()
    assert peft_merged.keys() == merged.keys()
    assert all(torch.allclose(peft_merged[k], merged[k], atol=1e-6) for k in merged)

    # `sasc-ttrl eval` takes the adapter folder (it merges it) and merged/; same weights and seed: same samples.
    from_adapter = evaluate(out, tmp_path / "eval_adapter")
    from_merged = evaluate(out / "merged", tmp_path / "eval_merged")
    texts = [[s["text"] for s in line["samples"]] for line in from_adapter]
    assert texts == [[s["text"] for s in line["samples"]] for line in from_merged]
    assert len(texts) == 2 and all(len(t) == 2 for t in texts)

    card = (out / "README.md").read_text()
    assert f"a LoRA adapter of `{tiny_model_dir.resolve()}`" in card
    assert "library_name: peft" in card and "| `LoRA` | r=8, alpha=16, modules: q_proj, v_proj |" in card
    assert "AutoPeftModelForCausalLM.from_pretrained" in card


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
