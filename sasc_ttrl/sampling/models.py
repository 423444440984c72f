"""Loading the models that sample (transformers or vLLM), and the model check that runs before any weights load.

Every loader takes a full model (a folder with ``config.json`` and weights, or a hub name) or a LoRA adapter folder
(``adapter_config.json``, as ``sasc-ttrl train --use_peft true`` saves it). An adapter is merged into its base model
(``adapter_config.json``'s ``base_model_name_or_path``) before sampling: in memory for transformers; for vLLM, which
loads weights from a folder, ``<adapter>/merged`` (written by ``save_merged_model: true``) is used when it exists,
else the merged model is written to a temporary folder that is removed when the process exits.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..core.errors import ConfigError, one_line
from ..core.stability import DEFAULT_TOP_K

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
MERGED_SUBDIR = "merged"  # where `sasc-ttrl train --save_merged_model true` writes the merged model


# -- what a model name is -------------------------------------------------------------------------------------------
def looks_like_path(model_name_or_path: str) -> bool:
    """Whether a model name can only be a local folder, not a hub id (``org/name``).

    True when it starts with ``/``, ``./``, ``../`` or ``~``, has more than one ``/``, or its first component is an
    existing local folder (``runs/my-run`` when ``runs/`` exists).
    """
    name = str(model_name_or_path)
    if name in (".", "..") or name.startswith(("/", "./", "../", "~", ".\\", "..\\")):
        return True
    if name.count("/") > 1:
        return True
    return "/" in name and Path(name.split("/", 1)[0]).is_dir()


def is_adapter_folder(model_name_or_path: str) -> bool:
    """Whether ``model_name_or_path`` is a local PEFT adapter folder (it holds ``adapter_config.json``)."""
    return (Path(model_name_or_path).expanduser() / ADAPTER_CONFIG).is_file()


def adapter_base_model(adapter_path: str) -> str:
    """The base model an adapter folder was trained on (``base_model_name_or_path`` of its ``adapter_config.json``)."""
    config_file = Path(adapter_path).expanduser() / ADAPTER_CONFIG
    try:
        base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {config_file}: {one_line(err)}") from err
    if not base:
        raise ConfigError(f"{config_file} names no base_model_name_or_path")
    return str(base)


def check_model_location(model_name_or_path: str) -> None:
    """A name that can only be a local folder must be one that exists (else: "model folder X does not exist")."""
    path = Path(model_name_or_path).expanduser()
    if looks_like_path(model_name_or_path) and not path.exists():
        raise ConfigError(f"model folder {model_name_or_path} does not exist")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"model folder {model_name_or_path} is a file, not a folder")
    if path.is_dir() and not (path / "config.json").is_file() and not (path / ADAPTER_CONFIG).is_file():
        raise ConfigError(
            f"model folder {model_name_or_path} holds neither config.json (a model) nor {ADAPTER_CONFIG} (a LoRA "
            "adapter)"
        )


# -- loaders ----------------------------------------------------------------------------------------------------------
def load_tokenizer(model_name_or_path: str, **kwargs: Any):
    """The tokenizer of a model, or of an adapter folder (its own copy when saved with it, else its base model's)."""
    from transformers import AutoTokenizer

    path = Path(model_name_or_path).expanduser()
    if is_adapter_folder(model_name_or_path) and not (path / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(adapter_base_model(model_name_or_path), **kwargs)
    return AutoTokenizer.from_pretrained(model_name_or_path, **kwargs)


def load_merged_adapter(adapter_path: str, dtype: Any = "auto"):
    """An adapter folder's base model with the adapter merged in (``peft.AutoPeftModelForCausalLM``)."""
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(adapter_path, dtype=dtype)
    return model.merge_and_unload()


def load_vllm(model_name_or_path: str, seed: int, entropy_top_k: int = DEFAULT_TOP_K, **llm_kwargs: Any) -> Any:
    """One ``vllm.LLM`` able to return ``entropy_top_k`` log-probabilities per token (``max_logprobs``).

    A LoRA adapter folder is served as its merged model ([`vllm_model_folder`]).
    """
    from vllm import LLM

    folder = vllm_model_folder(model_name_or_path, dtype=llm_kwargs.get("dtype", "auto"))
    return LLM(model=folder, seed=seed, max_logprobs=max(entropy_top_k, 20), **llm_kwargs)


def vllm_model_folder(model_name_or_path: str, dtype: str = "auto") -> str:
    """The folder vLLM loads for ``model_name_or_path``: itself, or for an adapter folder its merged model.

    vLLM reads full weights from a folder. For an adapter folder, ``<adapter>/merged`` (``save_merged_model: true``)
    is used when it holds a model; otherwise the adapter is merged into its base model and saved, with the
    tokenizer, to a temporary folder that is deleted when the process exits (it needs the disk space of the full
    model; train with ``save_merged_model: true`` to do it once).
    """
    if not is_adapter_folder(model_name_or_path):
        return model_name_or_path
    merged = Path(model_name_or_path).expanduser() / MERGED_SUBDIR
    if (merged / "config.json").is_file():
        logger.info("%s is a LoRA adapter: vLLM loads its merged model %s", model_name_or_path, merged)
        return str(merged)
    folder = tempfile.mkdtemp(prefix="sasc_ttrl_merged_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    logger.warning(
        "%s is a LoRA adapter without a merged copy: merging it into %s for vLLM (deleted at exit; train with "
        "save_merged_model: true to keep one in %s)",
        model_name_or_path,
        folder,
        merged,
    )
    torch_dtype = dtype if dtype in ("auto", None) else getattr(torch, dtype)
    load_merged_adapter(model_name_or_path, dtype=torch_dtype or "auto").save_pretrained(folder)
    load_tokenizer(model_name_or_path).save_pretrained(folder)
    return folder


def load_transformers_model(model_name_or_path: str, dtype: str = "auto", device: str | None = None):
    """Load a causal LM in eval mode (on the GPU when there is one) and its left-padding tokenizer.

    A LoRA adapter folder loads as its base model with the adapter merged in.
    """
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(model_name_or_path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    if is_adapter_folder(model_name_or_path):
        model = load_merged_adapter(model_name_or_path, dtype=torch_dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype=torch_dtype)
    return model.to(device).eval(), tokenizer


# -- the check before any weights load --------------------------------------------------------------------------------
def model_vocab_size(model_name_or_path: str, revision: str | None = None, trust_remote_code: bool = False) -> int:
    """The vocabulary size in a model's config (the weights are not read).

    For a LoRA adapter folder without a ``config.json`` of its own, the base model's config is read.

    Raises:
        ConfigError: the folder does not exist (a name that can only be a path, see [`looks_like_path`]), holds no
            model, or its config cannot be read.
    """
    from transformers import AutoConfig

    check_model_location(model_name_or_path)
    path = Path(model_name_or_path).expanduser()
    if is_adapter_folder(model_name_or_path) and not (path / "config.json").is_file():
        base = adapter_base_model(model_name_or_path)
        try:
            return model_vocab_size(base, trust_remote_code=trust_remote_code)
        except ConfigError as err:
            raise ConfigError(f"LoRA adapter {model_name_or_path}: {err}") from err
    try:
        config = AutoConfig.from_pretrained(
            os.fspath(path) if path.is_dir() else model_name_or_path,
            revision=revision,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the model config of {model_name_or_path!r}: {one_line(err)}") from err
    vocab = getattr(config, "vocab_size", None) or getattr(config.get_text_config(), "vocab_size", None)
    if not vocab:
        raise ConfigError(f"the config of {model_name_or_path!r} has no vocab_size")
    return int(vocab)


def check_model_vocabulary(model_name_or_path: str, entropy_top_k: int, **kwargs) -> None:
    """The model exists and ``entropy_top_k`` is between 1 and its vocabulary size (used by train, eval, build)."""
    vocab = model_vocab_size(model_name_or_path, **kwargs)
    if not 1 <= entropy_top_k <= vocab:
        raise ConfigError(
            f"entropy_top_k={entropy_top_k} is outside [1, {vocab}], the vocabulary size of {model_name_or_path}"
        )
