"""Loading the models that sample (transformers or vLLM), and the model check that runs before any weights load."""

from __future__ import annotations

from typing import Any

import torch

from ..core.errors import ConfigError, one_line
from ..core.stability import DEFAULT_TOP_K


def load_vllm(model_name_or_path: str, seed: int, entropy_top_k: int = DEFAULT_TOP_K, **llm_kwargs: Any) -> Any:
    """One ``vllm.LLM`` able to return ``entropy_top_k`` log-probabilities per token (``max_logprobs``)."""
    from vllm import LLM

    return LLM(model=model_name_or_path, seed=seed, max_logprobs=max(entropy_top_k, 20), **llm_kwargs)


def load_transformers_model(model_name_or_path: str, dtype: str = "auto", device: str | None = None):
    """Load a causal LM in eval mode (on the GPU when there is one) and its left-padding tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype=torch_dtype).to(device).eval()
    return model, tokenizer


def model_vocab_size(model_name_or_path: str, revision: str | None = None, trust_remote_code: bool = False) -> int:
    """The vocabulary size in a model's config (the weights are not read)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the model config of {model_name_or_path!r}: {one_line(err)}") from err
    vocab = getattr(config, "vocab_size", None) or getattr(config.get_text_config(), "vocab_size", None)
    if not vocab:
        raise ConfigError(f"the config of {model_name_or_path!r} has no vocab_size")
    return int(vocab)


def check_model_vocabulary(model_name_or_path: str, entropy_top_k: int, **kwargs) -> None:
    """``entropy_top_k`` must be between 1 and the model's vocabulary size."""
    vocab = model_vocab_size(model_name_or_path, **kwargs)
    if not 1 <= entropy_top_k <= vocab:
        raise ConfigError(
            f"entropy_top_k={entropy_top_k} is outside [1, {vocab}], the vocabulary size of {model_name_or_path}"
        )
