"""The model card's content for the three kinds of run (SASC, TTRL baseline, builder labels); hub ids vs paths."""

from __future__ import annotations

import pytest
import yaml

from sasc_ttrl.training.model_card import CardFacts, build_model_card, is_hub_id, run_kind
from tests.training.test_trainer import tiny_config


def card_text(tmp_path, reward_names, **facts) -> str:
    args = tiny_config(tmp_path, **facts.pop("config", {}))
    values = dict(model_name="my-run", base_model="Qwen/Qwen2.5-Math-1.5B", reward_names=reward_names, args=args)
    values.update(facts)
    return str(build_model_card(CardFacts(**values)))


def metadata(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


def test_sasc_card_states_base_model_data_vote_and_citations(tmp_path):
    card = card_text(
        tmp_path, ["sasc_reward"], dataset_name="HuggingFaceH4/MATH-500", global_step=7,
        config={"filter_ratio": 0.3, "vote_weighting": "rank", "learning_rate": 5e-7},
    )  # fmt: skip
    meta = metadata(card)
    assert meta["base_model"] == "Qwen/Qwen2.5-Math-1.5B" and meta["datasets"] == ["HuggingFaceH4/MATH-500"]
    assert meta["library_name"] == "transformers" and "sasc-ttrl" in meta["tags"]
    assert "# my-run" in card
    assert "[Qwen/Qwen2.5-Math-1.5B](https://huggingface.co/Qwen/Qwen2.5-Math-1.5B)" in card
    assert "[HuggingFaceH4/MATH-500](https://huggingface.co/datasets/HuggingFaceH4/MATH-500)" in card
    assert "trained with SASC-TTRL" in card and "TTRL baseline" not in card
    assert "| `filter_ratio` | 0.3 " in card and "| `vote_weighting` | rank |" in card
    assert "| `learning_rate` | 5e-07 (linear) |" in card and "| `steps trained` | 7 (asked: 2 steps) |" in card
    assert "| `weight_clip` |" not in card  # only with clipped_exp
    for key in ("@article{zuo2025ttrl", "{{TTRL: Test-Time Reinforcement Learning}}", "arXiv:2504.16084"):
        assert key in card
    assert "@software{vonwerra2020trl" in card and "@article{shao2024deepseekmath" in card


def test_ttrl_card_says_it_is_the_baseline_and_leaves_out_the_gate(tmp_path):
    card = card_text(tmp_path, ["majority_reward"], config={"reward_funcs": ["majority"]})
    assert "trained with the TTRL baseline (plain majority vote)" in card
    assert "This run is the **TTRL** baseline" in card
    assert "| `filter_ratio` |" not in card and "| `entropy_top_k` |" not in card


def test_builder_label_card(tmp_path):
    card = card_text(tmp_path, ["fixed_label_reward"])
    assert "fixed pseudo-labels chosen offline by `sasc-ttrl build`" in card


def test_local_paths_stay_out_of_the_hub_metadata(tmp_path):
    base = tmp_path / "base-model"
    base.mkdir()
    data = tmp_path / "sums.json"
    data.write_text("[]")
    card = card_text(tmp_path, ["sasc_reward", "my_bonus"], base_model=str(base), dataset_name=str(data))
    meta = metadata(card)
    assert "base_model" not in meta and "datasets" not in meta
    assert f"a fine-tuned version of `{base}`" in card and f"`{data}`, without their answers" in card
    assert "| `reward functions` | `sasc_reward`, `my_bonus` |" in card
    assert "huggingface.co/None" not in card and "None" not in card.split("## Citations")[0]


def test_adapter_card(tmp_path):
    card = card_text(
        tmp_path, ["sasc_reward"], adapter=True, lora={"r": 16, "lora_alpha": 32, "target_modules": {"v", "q"}},
    )  # fmt: skip
    assert metadata(card)["library_name"] == "peft"
    assert (
        "a LoRA adapter of [Qwen/Qwen2.5-Math-1.5B]" in card and "| `LoRA` | r=16, alpha=32, modules: q, v |" in card
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Qwen/Qwen2.5-Math-1.5B", True), ("gpt2", True), ("/abs/model", False), ("./m", False), ("a/b/c", False),
     ("data.jsonl", False), (None, False)],
)  # fmt: skip
def test_is_hub_id(name, expected):
    assert is_hub_id(name) is expected


def test_run_kind():
    assert run_kind(["majority_reward"]) == "ttrl"
    assert run_kind(["majority_reward", "my_bonus"]) == "ttrl"
    assert run_kind(["sasc_reward", "majority_reward"]) == "sasc"
    assert run_kind(["my_reward"]) == "grpo"  # a user's own rewards: not called SASC-TTRL
    assert run_kind(["fixed_label_reward"]) == "fixed_label"
    assert run_kind(["oracle_reward"]) == "oracle" and run_kind(["format_reward", "my_bonus"]) == "format"
    assert run_kind(["majority_reward", "format_reward"]) == "ttrl"
