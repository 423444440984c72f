"""Model names and folders: what can only be a path, LoRA adapter folders (vocabulary, loading, vLLM's folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sasc_ttrl.core.errors import ConfigError
from sasc_ttrl.sampling.models import (
    adapter_base_model,
    check_model_location,
    is_adapter_folder,
    load_merged_adapter,
    load_transformers_model,
    looks_like_path,
    model_vocab_size,
    vllm_model_folder,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("/abs/model", True), ("./model", True), ("../model", True), ("~/model", True), ("a/b/c", True),
     ("Qwen/Qwen2.5-Math-1.5B", False), ("gpt2", False), ("runs/model", True)],
)  # fmt: skip
def test_looks_like_path(name, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # an existing first component makes org/name a local path
    assert looks_like_path(name) is expected


def test_check_model_location(tmp_path, tiny_model_dir, tiny_adapter_dir):
    check_model_location(str(tiny_model_dir))
    check_model_location(str(tiny_adapter_dir))
    check_model_location("Qwen/Qwen2.5-Math-1.5B")  # a hub id: left to the hub
    with pytest.raises(ConfigError, match=f"^model folder {tmp_path / 'nope'} does not exist$"):
        check_model_location(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_model_location(str(tmp_path / "file"))


def test_adapter_folder_vocabulary_is_its_base_models(tiny_model_dir, tiny_adapter_dir):
    assert is_adapter_folder(str(tiny_adapter_dir)) and not is_adapter_folder(str(tiny_model_dir))
    assert not (tiny_adapter_dir / "config.json").exists()
    assert adapter_base_model(str(tiny_adapter_dir)) == str(tiny_model_dir)
    vocab = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    assert model_vocab_size(str(tiny_adapter_dir)) == vocab


def test_transformers_loader_merges_an_adapter(tiny_model_dir, tiny_adapter_dir):
    merged, tokenizer = load_transformers_model(str(tiny_adapter_dir), dtype="float32", device="cpu")
    base, _ = load_transformers_model(str(tiny_model_dir), dtype="float32", device="cpu")
    assert type(merged).__name__ == type(base).__name__  # a plain model, no PEFT wrapper
    assert tokenizer.padding_side == "left"
    q, up = "model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight"
    merged_state, base_state = merged.state_dict(), base.state_dict()
    assert not torch.equal(merged_state[q], base_state[q]) and torch.equal(merged_state[up], base_state[up])
    ids = torch.tensor([tokenizer("What is 3 + 4?")["input_ids"]])
    assert not torch.allclose(merged(ids).logits, base(ids).logits)


def test_vllm_folder_of_an_adapter(tmp_path, tiny_model_dir, tiny_adapter_dir):
    """vLLM loads a full model: the adapter's merged/ when present, else a merge written to a temporary folder."""
    assert vllm_model_folder(str(tiny_model_dir)) == str(tiny_model_dir)
    folder = Path(vllm_model_folder(str(tiny_adapter_dir), dtype="float32"))
    assert folder != tiny_adapter_dir and (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    written = load_file(folder / "model.safetensors")
    expected = load_merged_adapter(str(tiny_adapter_dir), dtype=torch.float32).state_dict()
    assert all(torch.equal(written[k], expected[k]) for k in written)
    # With a merged/ copy (save_merged_model: true), that one is used and nothing is merged.
    import shutil

    adapter = tmp_path / "run"
    shutil.copytree(tiny_adapter_dir, adapter)
    shutil.copytree(folder, adapter / "merged")
    assert vllm_model_folder(str(adapter)) == str(adapter / "merged")
