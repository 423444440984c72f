"""Shared fixtures: the tiny model (built once per machine and seed, cached), the shared benchmark folder.

``SASC_TTRL_TINY_SEED`` (default 0) builds the tiny model from another seed: its weights, and so what it samples,
change as they would on a CPU whose floating-point kernels differ. The suite must pass for any of them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SASC_TTRL_SHARED", REPO.parent / "shared")) / "data" / "benchmarks"
CACHE = Path(os.environ.get("SASC_TTRL_CACHE", Path.home() / ".cache" / "sasc_ttrl"))
TINY_SEED = int(os.environ.get("SASC_TTRL_TINY_SEED", "0"))


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Path of the project's tiny math model, built from ``SASC_TTRL_TINY_SEED`` (on first use, about 20 s; cached
    across runs, one folder per seed)."""
    from sasc_ttrl.demo.tiny_model import build_tiny_model

    CACHE.mkdir(parents=True, exist_ok=True)
    name = "tiny-model" if TINY_SEED == 0 else f"tiny-model-seed{TINY_SEED}"
    with FileLock(str(CACHE / f"{name}.lock")):
        return build_tiny_model(CACHE / name, seed=TINY_SEED)


@pytest.fixture(scope="session")
def shared_benchmarks() -> Path:
    """The ../shared/data/benchmarks folder; tests that need it are skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmarks not found at {SHARED_DATA} (set SASC_TTRL_SHARED to the shared/ folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter folder of the tiny model (q_proj, v_proj; random B, so it changes the outputs), saved as
    ``sasc-ttrl train --use_peft true`` saves one: adapter weights, adapter_config.json and the tokenizer, no
    config.json."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-adapter")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder
