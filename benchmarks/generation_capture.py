"""Generation speed with and without per-token top-k entropy capture (transformers path), measured in one run.

Three variants on the same model, prompts and seed (so they sample the same tokens):

* ``generate`` -- plain sampling (what GRPOTrainer does anyway);
* ``generate + hook`` -- SASCTrainer's default (``entropy_source: generation``): the top-k entropy of every
  decoding step is recorded by a forward hook on the output embedding;
* ``generate + forward pass`` -- the alternative (``entropy_source: forward``): one extra no-grad forward pass
  over prompt + completion after generation.

Repetitions interleave the variants (A B C A B C ...); tokens/s = completion tokens (up to EOS) / median time.

Command (writes its figures to BENCHMARKS.md)::

    python benchmarks/generation_capture.py                       # the tiny model (built if missing)
    python benchmarks/generation_capture.py --model ~/.cache/sasc_ttrl/smollm2-135m-instruct
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import record  # sets OMP_NUM_THREADS
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sasc_ttrl.data.prompts import render_prompt
from sasc_ttrl.sampling.entropy_capture import EntropyRecorder, capture_topk_entropies, forward_topk_entropies

VARIANTS = ("generate", "generate + hook", "generate + forward pass")


@dataclass
class GenerationCaptureArguments(record.RecordingArguments):
    """Arguments of the generation-capture benchmark."""

    model: str | None = field(
        default=None, metadata={"help": "Model folder; default: the tiny model (built in the cache if missing)."}
    )
    prompts: int = field(default=2, metadata={"help": "Prompts per batch."})
    generations: int = field(default=8, metadata={"help": "Samples per prompt."})
    max_new_tokens: int = field(default=64, metadata={"help": "Maximum completion tokens."})
    k: int = field(default=20, metadata={"help": "Top-k of the local entropy."})
    repeats: int = field(default=7, metadata={"help": "Repetitions per variant; the median is reported."})
    quick: bool = field(default=False, metadata={"help": "Tiny configuration for the smoke test (seconds)."})

    def __post_init__(self):
        super().__post_init__()
        if self.quick:
            self.prompts, self.generations, self.max_new_tokens, self.repeats = 1, 2, 8, 2
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")


def completion_lengths(completions: torch.Tensor, eos: int) -> list[int]:
    """Tokens of each completion up to and including the first EOS."""
    lengths = []
    for row in completions.tolist():
        lengths.append(row.index(eos) + 1 if eos in row else len(row))
    return lengths


def run(args: GenerationCaptureArguments) -> dict:
    """Median seconds per variant, completion tokens, model description."""
    torch.set_num_threads(record.THREADS)
    model_dir = args.model or str(record.tiny_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    questions = [f"What is {a} + {a + 3}?" for a in range(args.prompts)]
    batch = tokenizer([render_prompt(q, tokenizer) for q in questions], return_tensors="pt", padding=True)
    gen_kwargs = dict(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=args.max_new_tokens,
        num_return_sequences=args.generations,
        pad_token_id=tokenizer.pad_token_id,
    )
    prompt_width = batch["input_ids"].shape[1]
    prompt_ids = [
        [t for t, m in zip(ids, mask) if m]
        for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())
        for _ in range(args.generations)
    ]

    def generate() -> list[int]:
        out = model.generate(**batch, **gen_kwargs)
        return completion_lengths(out[:, prompt_width:], tokenizer.eos_token_id)

    def generate_with_hook() -> list[int]:
        with capture_topk_entropies(model, k=args.k, temperature=1.0) as recorder:
            out = model.generate(**batch, **gen_kwargs)
        lengths = completion_lengths(out[:, prompt_width:], tokenizer.eos_token_id)
        recorder.per_sequence(lengths)
        return lengths

    def generate_then_forward() -> list[int]:
        out = model.generate(**batch, **gen_kwargs)
        completions = out[:, prompt_width:]
        lengths = completion_lengths(completions, tokenizer.eos_token_id)
        rows = [row[:n] for row, n in zip(completions.tolist(), lengths)]
        forward_topk_entropies(
            model, prompt_ids, rows, k=args.k, temperature=1.0, pad_token_id=tokenizer.pad_token_id, batch_size=8
        )
        return lengths

    funcs = dict(zip(VARIANTS, (generate, generate_with_hook, generate_then_forward)))
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    tokens: dict[str, set[int]] = {name: set() for name in VARIANTS}
    # The hook's own time, measured directly inside the hooked generation (steadier than a difference of totals).
    timers = record.Timers()
    timers.wrap(EntropyRecorder, "__call__", "hook")
    timers.wrap(EntropyRecorder, "per_sequence", "hook")
    hook_seconds = []
    try:
        with torch.no_grad():
            for _ in range(args.repeats):
                for name, func in funcs.items():
                    torch.manual_seed(0)
                    before = timers.totals[("", "hook")]
                    start = time.perf_counter()
                    lengths = func()
                    times[name].append(time.perf_counter() - start)
                    tokens[name].add(sum(lengths))
                    if name == "generate + hook":
                        hook_seconds.append(timers.totals[("", "hook")] - before)
    finally:
        timers.restore()
    config = model.config
    shown = str(model_dir).replace(str(Path.home()), "~", 1)
    return {
        "seconds": {name: record.median(values) for name, values in times.items()},
        "hook_seconds": record.median(hook_seconds),
        "tokens": tokens,
        "model": f"`{shown}` ({config.num_hidden_layers} layers, hidden {config.hidden_size}, vocabulary "
        f"{config.vocab_size:,}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)",
    }


def report(args: GenerationCaptureArguments, result: dict) -> record.Figures:
    """The markdown figures (median time, tokens/s and ratio to plain generation per variant) and their headline."""
    all_tokens = set().union(*result["tokens"].values())
    n_tokens = next(iter(all_tokens))
    base = result["seconds"]["generate"]
    rows = [
        [name, f"{sec:.3f}", f"{n_tokens / sec:,.0f}", f"{sec / base:.3f}"] for name, sec in result["seconds"].items()
    ]
    same = "the same in every variant and repetition" if len(all_tokens) == 1 else f"DIFFERED: {sorted(all_tokens)}"
    seconds = result["seconds"]
    headline = {
        "model": Path(args.model or "tiny-model").name,
        "setting": f"{args.prompts} prompts x {args.generations} samples, up to {args.max_new_tokens} new tokens, "
        f"k = {args.k}",
        "figure": f"time vs generate: hook {seconds['generate + hook'] / base:.3f}, "
        f"forward pass {seconds['generate + forward pass'] / base:.3f}",
    }
    body = "\n".join(
        [
            f"Model {result['model']}; {args.prompts} prompts x {args.generations} samples, up to "
            f"{args.max_new_tokens} new tokens, k = {args.k}; median of {args.repeats} interleaved repetitions. "
            f"Completion tokens per batch: {n_tokens} ({same}).",
            "",
            record.markdown_table(["variant", "median s", "tokens/s", "time vs generate"], rows),
            "",
            f"Time spent in the hook itself (`EntropyRecorder.__call__` + `per_sequence`, timed inside the hooked "
            f"generation): {1000 * result['hook_seconds']:.1f} ms per batch, "
            f"{100 * result['hook_seconds'] / base:.2f}% of plain generation.",
        ]
    )
    return record.Figures(body, headline)


def main(args: GenerationCaptureArguments) -> None:
    """Run, print the figures, record them unless the machine was loaded (one block per model)."""
    name = "generation_capture" if args.model is None else "generation_capture_" + Path(args.model).name
    title = f"Generation capture cost ({Path(args.model or 'tiny-model').name})"
    record.measure_and_record(args, name, title, lambda: report(args, run(args)), family="generation_capture")


if __name__ == "__main__":
    from trl import TrlParser

    main(*TrlParser((GenerationCaptureArguments,)).parse_args_and_config())
