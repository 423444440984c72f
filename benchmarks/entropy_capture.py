"""Cost of getting per-token top-k entropies on the transformers path, measured in one run.

Compares, on the same prompts and seed:
  * ``generate``                      -- plain sampling (what GRPOTrainer does anyway);
  * ``generate + hook``               -- SASCTrainer's default: top-k entropy recorded by an lm_head hook;
  * ``generate + forward pass``       -- the alternative: one extra no-grad forward pass over prompt+completion.

Command (writes the table that BENCHMARKS.md quotes)::

    OMP_NUM_THREADS=1 python benchmarks/entropy_capture.py --model runs/tiny-model --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sasc_ttrl.data import render_prompt
from sasc_ttrl.entropy_capture import capture_topk_entropies, forward_topk_entropies


def completion_lengths(completions: torch.Tensor, eos: int) -> list[int]:
    lengths = []
    for row in completions.tolist():
        lengths.append(row.index(eos) + 1 if eos in row else len(row))
    return lengths


def run(args: argparse.Namespace) -> None:
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    questions = [f"What is {a} + {a + 3}?" for a in range(args.prompts)]
    batch = tokenizer([render_prompt(q, tokenizer) for q in questions], return_tensors="pt", padding=True)
    gen_kwargs = dict(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        max_new_tokens=args.max_new_tokens,
        num_return_sequences=args.generations,
        pad_token_id=tokenizer.pad_token_id,
    )
    timings: dict[str, list[float]] = {"generate": [], "generate + hook": [], "generate + forward pass": []}
    with torch.no_grad():
        for _ in range(args.repeats):
            torch.manual_seed(0)
            start = time.perf_counter()
            out = model.generate(**batch, **gen_kwargs)
            timings["generate"].append(time.perf_counter() - start)

            torch.manual_seed(0)
            start = time.perf_counter()
            with capture_topk_entropies(model, k=20, temperature=1.0) as recorder:
                out_hook = model.generate(**batch, **gen_kwargs)
            completions = out_hook[:, batch["input_ids"].shape[1] :]
            recorder.per_sequence(completion_lengths(completions, tokenizer.eos_token_id))
            timings["generate + hook"].append(time.perf_counter() - start)

            torch.manual_seed(0)
            start = time.perf_counter()
            out = model.generate(**batch, **gen_kwargs)
            completions = out[:, batch["input_ids"].shape[1] :]
            lengths = completion_lengths(completions, tokenizer.eos_token_id)
            prompt_ids = [
                [t for t, m in zip(ids, mask) if m]
                for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())
                for _ in range(args.generations)
            ]
            forward_topk_entropies(
                model,
                prompt_ids,
                [row[:n] for row, n in zip(completions.tolist(), lengths)],
                k=20,
                temperature=1.0,
                pad_token_id=tokenizer.pad_token_id,
                batch_size=len(prompt_ids),
            )
            timings["generate + forward pass"].append(time.perf_counter() - start)

    base = statistics.median(timings["generate"])
    n_tokens = sum(completion_lengths(completions, tokenizer.eos_token_id))
    print(f"model={args.model} prompts={args.prompts} x {args.generations} rollouts, {n_tokens} completion tokens")
    print("| variant | median s | ratio to generate |")
    print("|---|---|---|")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / base:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/tiny-model")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    run(parser.parse_args())
