"""A tiny math model the project builds itself, for the CPU demo and the tests (no hub download).

``build_tiny_model(output_dir)`` writes a character-level tokenizer with a chat template and a 2-layer Llama
(hidden 128, 4 heads of 32 -- a head size vLLM's CPU backend accepts), briefly trained on synthetic sums
("What is 3 + 4?" -> "3 + 4 = 7. The answer is \\boxed{7}.") so that its samples end in a boxed answer that is
right only part of the time: the regime where voting matters. The same synthetic questions, with their answers,
are written as a JSON data set by [`write_tiny_dataset`].

Command: ``sasc-ttrl make-tiny-model --output_dir runs/tiny-model``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.prompts import MATH_INSTRUCTION

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|pad|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<unk>"]
CHARSET = string.ascii_letters + string.digits + " \n.,;:!?+-*/=()[]{}\\^_$%&'\"<>|#@~`"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
TINY_MODEL_VERSION = "1"


def build_tokenizer():
    """A character-level fast tokenizer with a chat template; ``<|end|>`` ends an assistant turn."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARSET:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=None,
        eos_token="<|end|>",
        pad_token="<|pad|>",
        unk_token="<unk>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>", "<|endoftext|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def synthetic_problem(rng: random.Random) -> dict:
    """One synthetic sum with its answer: ``{"prompt", "answer", "solution"}``."""
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return {
        "prompt": f"What is {a} + {b}?",
        "answer": str(a + b),
        "solution": f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}.",
    }


def write_tiny_dataset(path: str | os.PathLike, n: int = 32, seed: int = 0) -> Path:
    """Write ``n`` synthetic sums as a JSON list of ``{prompt, answer, source, id}`` (the benchmark format)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        p = synthetic_problem(rng)
        rows.append({"prompt": p["prompt"], "answer": p["answer"], "source": "tiny-sums", "id": f"tiny-{i}"})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(path)
    return path


def build_tiny_model(
    output_dir: str | os.PathLike, train_steps: int = 150, seed: int = 0, overwrite: bool = False
) -> Path:
    """Build, briefly train and save the tiny model and tokenizer to ``output_dir``.

    Reuses an existing build of the same version unless ``overwrite``. Takes about half a minute on 2 cores.

    Args:
        output_dir: Where ``config.json``, the weights and the tokenizer files go.
        train_steps: Steps of next-token training on synthetic sums (0 leaves the weights random).
        seed: Seed for the weights and the data.
        overwrite: Rebuild even if a build exists.

    Returns:
        The output directory.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    output_dir = Path(output_dir)
    stamp = output_dir / "tiny_model_version.txt"
    if not overwrite and stamp.exists() and stamp.read_text().strip() == f"{TINY_MODEL_VERSION}:{train_steps}:{seed}":
        return output_dir
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    if train_steps > 0:
        _train_on_sums(model, tokenizer, train_steps, seed)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "tiny_model_version.txt").write_text(f"{TINY_MODEL_VERSION}:{train_steps}:{seed}")
    if output_dir.exists():
        import shutil

        shutil.rmtree(output_dir)
    tmp.replace(output_dir)
    logger.info("tiny model written to %s", output_dir)
    return output_dir


def _train_on_sums(model, tokenizer, steps: int, seed: int, batch_size: int = 32) -> None:
    rng = random.Random(seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        texts = []
        for _ in range(batch_size):
            p = synthetic_problem(rng)
            messages = [{"role": "user", "content": f"{p['prompt']}\n{MATH_INSTRUCTION}"}]
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            texts.append(prompt + p["solution"] + tokenizer.eos_token)
        batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right")
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 50 == 0:
            logger.info("tiny model step %d loss %.3f", step, loss.item())
    model.eval()


@dataclass
class TinyModelArguments:
    """Arguments of ``sasc-ttrl make-tiny-model``."""

    output_dir: str = field(default="runs/tiny-model", metadata={"help": "Where the model and tokenizer go."})
    dataset_path: str | None = field(
        default=None, metadata={"help": "Also write synthetic sums here (JSON); default <output_dir>/sums.json."}
    )
    num_questions: int = field(default=32, metadata={"help": "Questions in the synthetic data set."})
    train_steps: int = field(default=150, metadata={"help": "Next-token training steps on synthetic sums."})
    seed: int = field(default=0, metadata={"help": "Seed of the weights and the data."})
    overwrite: bool = field(default=False, metadata={"help": "Rebuild even if a build exists."})


def make_parser():
    """Parser of ``sasc-ttrl make-tiny-model``."""
    from trl import TrlParser

    return TrlParser((TinyModelArguments,))


def main(args: TinyModelArguments) -> None:
    """Build the tiny model and write its synthetic data set."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = build_tiny_model(args.output_dir, train_steps=args.train_steps, seed=args.seed, overwrite=args.overwrite)
    data = write_tiny_dataset(args.dataset_path or out / "sums.json", n=args.num_questions, seed=args.seed)
    logger.info("tiny model in %s, data set in %s", out, data)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
