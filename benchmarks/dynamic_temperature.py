"""Cost of Self-Calibration's entropy-based dynamic temperature: the batched processor vs the authors' own loop.

Three variants on the same model, prompts and seed, measured in one run (repetitions interleave them; medians):

* ``batched, dynamic`` -- `sample_transformers` with ``dynamic=DynamicTemperature(...)``: many prompts and samples
  per ``generate`` call, every row at its own temperature (`sasc_ttrl.sampling.dynamic_temperature`);
* ``batched, fixed T`` -- the same call at the fixed temperature, for reference (the processor's own cost);
* ``one-prompt loop (authors)`` -- Self-Calibration's ``EntropyDynamicTemperatureGenerator.generate``
  (``data_creation/dt_generator.py``): one prompt, one token per full forward pass over the whole sequence.

Tokens/s = generated tokens (up to EOS) / seconds. What the sampler changes in the data (answers, calibration) is
measured by ``studies/dynamic_temperature_study.py``. Command (writes its figures to BENCHMARKS.md)::

    python benchmarks/dynamic_temperature.py              # SmolLM2-135M-Instruct (prepared from its wheel)
    python benchmarks/dynamic_temperature.py --quick      # the tiny model, seconds (the smoke test)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import record  # sets OMP_NUM_THREADS; sorts before torch
import torch
from trl import TrlParser

QUESTIONS = [
    "A box holds 6 rows of 7 apples. How many apples are in the box?",
    "Each of 4 shelves has 9 books. How many books are there?",
    "A bag has 8 marbles and there are 5 bags. How many marbles in all?",
    "There are 3 tables with 12 chairs each. How many chairs are there?",
    "A farmer plants 7 rows of 6 trees. How many trees does he plant?",
    "Each pack has 9 pens and Sam buys 4 packs. How many pens does he have?",
    "A bus carries 11 people on each of 3 trips. How many people does it carry?",
    "There are 5 plates with 8 cookies each. How many cookies are there?",
]


@dataclass
class DynamicTemperatureCostArguments(record.RecordingArguments):
    """Arguments of the dynamic-temperature cost benchmark."""

    model: str | None = field(default=None, metadata={"help": "Model (default: SmolLM2-135M-Instruct)."})
    prompts: int = field(default=4, metadata={"help": "Prompts per batch (at most 8)."})
    samples: int = field(default=4, metadata={"help": "Samples per prompt."})
    max_new_tokens: int = field(default=48, metadata={"help": "New tokens per sample at most."})
    temperature: float = field(default=0.8, metadata={"help": "T0 of the dynamic temperature; the fixed T."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    repeats: int = field(default=3, metadata={"help": "Repetitions per variant; the median is reported."})
    quick: bool = field(default=False, metadata={"help": "The tiny model, one short repetition (seconds)."})

    def __post_init__(self):
        super().__post_init__()
        if self.quick:
            self.prompts, self.samples, self.max_new_tokens, self.repeats = 1, 2, 8, 1
        if not 1 <= self.prompts <= len(QUESTIONS) or self.repeats < 1:
            raise ValueError(f"prompts must be in [1, {len(QUESTIONS)}] and repeats >= 1")


# -- cost ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def authors_loop(model: Any, prompt_ids: list[int], max_tokens: int, eos: int, generator: torch.Generator) -> int:
    """Self-Calibration's ``EntropyDynamicTemperatureGenerator.generate`` (one prompt; the full sequence through the
    model for every token, no cache; their entropy and threshold), with ids instead of decoded strings. Returns
    the number of tokens generated."""
    input_ids = torch.tensor([prompt_ids])
    for step in range(max_tokens):
        logits = model(input_ids, use_cache=True).logits[:, -1, :]
        stable = logits - logits.max(dim=-1, keepdim=True).values
        probs = stable.exp() / stable.exp().sum(dim=-1, keepdim=True)
        entropy = (-(probs * stable).sum(dim=-1)).item()
        temperature = 0 if entropy == 0 else 0.8 * (0.8 ** (1.0 / entropy))
        if temperature < 0.001:
            next_id = logits.argmax(dim=-1, keepdim=True)
        else:
            next_id = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)
        input_ids = torch.cat([input_ids, next_id], dim=1)
        if next_id.item() == eos:
            return step + 1
    return max_tokens


def measure_cost(args: DynamicTemperatureCostArguments, model_path: str) -> dict[str, Any]:
    """Tokens per second of the three variants, interleaved ``repeats`` times (medians)."""
    from sasc_ttrl.data.prompts import render_prompt
    from sasc_ttrl.sampling.dynamic_temperature import DynamicTemperature
    from sasc_ttrl.sampling.generation import encode_prompts, sample_transformers
    from sasc_ttrl.sampling.models import load_transformers_model

    model, tokenizer = load_transformers_model(model_path, dtype="float32", device="cpu")
    prompts = [render_prompt(q, tokenizer, "word_problem_one_shot") for q in QUESTIONS[: args.prompts]]
    common = dict(n=args.samples, temperature=args.temperature, top_p=1.0, max_tokens=args.max_new_tokens,
                  seed=args.seed, batch_size=len(prompts))  # fmt: skip
    rule = DynamicTemperature(base=args.temperature)

    def batched(dynamic: DynamicTemperature | None) -> int:
        groups = sample_transformers(model, tokenizer, prompts, **common, dynamic=dynamic)
        return sum(len(r.token_ids) for g in groups for r in g)

    def loop() -> int:
        generator = torch.Generator().manual_seed(args.seed)
        ids = encode_prompts(tokenizer, prompts)
        return sum(
            authors_loop(model, p, args.max_new_tokens, tokenizer.eos_token_id, generator)
            for p in ids
            for _ in range(args.samples)
        )

    variants = {"batched, dynamic": lambda: batched(rule), "batched, fixed T": lambda: batched(None),
                "one-prompt loop (authors)": loop}  # fmt: skip
    times: dict[str, list[float]] = {v: [] for v in variants}
    tokens: dict[str, list[int]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            tokens[name].append(run())
            times[name].append(time.perf_counter() - start)
    out = {}
    for name in variants:
        seconds = statistics.median(times[name])
        rates = [t / s for t, s in zip(tokens[name], times[name])]
        out[name] = {"seconds": seconds, "tokens": statistics.median(tokens[name]),
                     "tokens_per_second": statistics.median(rates)}  # fmt: skip
    out["speedup"] = (
        out["batched, dynamic"]["tokens_per_second"] / out["one-prompt loop (authors)"]["tokens_per_second"]
    )
    return out


def cost_table(cost: dict[str, Any], args: DynamicTemperatureCostArguments) -> str:
    rows = [[name, f"{v['tokens']:.0f}", f"{v['seconds']:.2f}", f"{v['tokens_per_second']:.1f}"]
            for name, v in cost.items() if name != "speedup"]  # fmt: skip
    table = record.markdown_table(["variant", "tokens (median)", "seconds (median)", "tokens/s"], rows)
    return (
        f"{args.prompts} prompts x {args.samples} samples, up to {args.max_new_tokens} new tokens, "
        f"{args.repeats} interleaved repetitions, {record.THREADS} thread.\n\n{table}\n\n"
        f"Batched dynamic temperature / the authors' one-prompt loop: **{cost['speedup']:.1f}x** tokens per second."
    )


def cost_figures(cost: dict[str, Any], args: DynamicTemperatureCostArguments, model: str) -> record.Figures:
    """The figures block (`cost_table`) and its headline."""
    headline = {
        "model": Path(model).name,
        "setting": f"{args.prompts} prompts x {args.samples} samples, up to {args.max_new_tokens} new tokens",
        "figure": f"batched dynamic / one-prompt loop: {cost['speedup']:.1f}x tokens per second",
    }
    return record.Figures(cost_table(cost, args), headline)


def main(args: DynamicTemperatureCostArguments) -> None:
    torch.set_num_threads(record.THREADS)
    model = args.model or str(record.tiny_model_dir() if args.quick else record.smollm2_dir())
    record.measure_and_record(
        args, "dynamic_temperature", "Dynamic temperature: batched vs the authors' loop",
        lambda: cost_figures(measure_cost(args, model), args, model),
    )  # fmt: skip


if __name__ == "__main__":
    main(TrlParser((DynamicTemperatureCostArguments,)).parse_args_and_config()[0])
