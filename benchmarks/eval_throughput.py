"""Which backend should ``sasc-ttrl eval`` use on a CPU: tokens/s of vLLM's CPU build against transformers.

The evaluator's own loop is timed: `sasc_ttrl.sampling.benchmark.sample_benchmark` with the `BenchmarkSampler`
that ``sasc-ttrl eval`` builds, once with ``backend="vllm"`` and once with ``backend="transformers"``, on the same
questions, ``n``, temperature, top-p, length, seed and dtype. Each repetition samples every question afresh into a
new samples file (sampling, answer extraction, grading, writing), vLLM then transformers; tokens/s = completion
tokens written / median seconds. Loading each model (the first call) is timed on its own: a user pays it once
per command. Both backends record the same per-token top-k entropies (vLLM from its top-k logprobs).

Run in the vLLM environment (it has both backends). Environment as in the project's vLLM scripts: the engine in
this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), 1 GiB of KV cache, ``OMP_NUM_THREADS=1`` for both backends.

Command (writes its figures to BENCHMARKS.md)::

    python benchmarks/eval_throughput.py --model ~/.cache/sasc_ttrl/smollm2-135m-instruct
"""

from __future__ import annotations

import record  # sets OMP_NUM_THREADS

record.set_vllm_cpu_environment()  # before torch and vLLM are imported

import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from sasc_ttrl.data.benchmarks import load_benchmark  # noqa: E402
from sasc_ttrl.demo.tiny_model import write_tiny_dataset  # noqa: E402
from sasc_ttrl.sampling.benchmark import BenchmarkSampler, sample_benchmark  # noqa: E402
from sasc_ttrl.sampling.generation import SamplingSettings  # noqa: E402

BACKENDS = ("vllm", "transformers")


@dataclass
class EvalThroughputArguments(record.RecordingArguments):
    """Arguments of the evaluation-throughput benchmark."""

    model: str | None = field(
        default=None, metadata={"help": "Model folder; default: the tiny model (built in the cache if missing)."}
    )
    questions: int = field(default=4, metadata={"help": "Questions (synthetic sums, the math prompt)."})
    n: int = field(default=8, metadata={"help": "Samples per question."})
    max_tokens: int = field(default=64, metadata={"help": "Maximum completion tokens."})
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature (eval's default)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus mass (eval's default)."})
    batch_size: int = field(default=8, metadata={"help": "Questions per generation call (eval's default)."})
    dtype: str = field(default="float32", metadata={"help": "Model dtype of both backends."})
    repeats: int = field(default=3, metadata={"help": "Repetitions of both backends; medians are reported."})
    seed: int = field(default=42, metadata={"help": "Sampling seed (eval's default)."})
    quick: bool = field(default=False, metadata={"help": "Tiny configuration for the smoke test."})

    def __post_init__(self):
        super().__post_init__()
        if self.quick:
            self.questions, self.n, self.max_tokens, self.repeats = 2, 2, 8, 1
        if min(self.questions, self.n, self.max_tokens, self.repeats, self.batch_size) < 1:
            raise ValueError("questions, n, max_tokens, batch_size and repeats must be >= 1")


def run(args: EvalThroughputArguments) -> dict:
    """Median seconds and tokens per backend, and each model's load time."""
    import vllm

    torch.set_num_threads(record.THREADS)
    model_dir = args.model or str(record.tiny_model_dir())
    settings = SamplingSettings.from_arguments(args, n=args.n)
    seconds: dict[str, list[float]] = {b: [] for b in BACKENDS}
    tokens: dict[str, set[int]] = {b: set() for b in BACKENDS}
    samples: dict[str, set[str]] = {b: set() for b in BACKENDS}
    load: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        questions = load_benchmark(str(write_tiny_dataset(Path(tmp) / "sums.json", n=args.questions, seed=0)))
        samplers = {
            b: BenchmarkSampler(model_dir, b, settings, dtype=args.dtype, vllm_kwargs={"max_model_len": 512})
            for b in BACKENDS
        }
        for backend, sampler in samplers.items():
            start = time.perf_counter()
            sampler._load()
            load[backend] = time.perf_counter() - start
            sampler(questions[:1])  # warm-up (first-call costs), not timed
        for repeat in range(args.repeats):
            for backend, sampler in samplers.items():
                path = Path(tmp) / f"{backend}-{repeat}.jsonl"
                start = time.perf_counter()
                lines = sample_benchmark("bench", questions, path, sampler, args.batch_size)
                seconds[backend].append(time.perf_counter() - start)
                tokens[backend].add(sum(len(s["token_ids"]) for line in lines for s in line["samples"]))
                samples[backend].add(repr([[s["token_ids"] for s in line["samples"]] for line in lines]))
    shown = str(model_dir).replace(str(Path.home()), "~", 1)
    return {
        "seconds": {b: record.median(v) for b, v in seconds.items()},
        "pair_ratio": record.median([t / v for v, t in zip(seconds["vllm"], seconds["transformers"])]),
        "tokens": {b: max(v) for b, v in tokens.items()},
        "reproducible": {b: len(v) == 1 for b, v in samples.items()},
        "load": load,
        "model": shown,
        "vllm": vllm.__version__,
    }


def report(args: EvalThroughputArguments, result: dict) -> record.Figures:
    """The markdown figures (tokens/s per backend, the ratio, the load times) and their headline."""
    rows = []
    rate = {b: result["tokens"][b] / result["seconds"][b] for b in BACKENDS}
    for backend in BACKENDS:
        rows.append(
            [
                backend,
                f"{result['load'][backend]:.2f}",
                f"{result['seconds'][backend]:.2f}",
                f"{result['tokens'][backend]:,}",
                f"{rate[backend]:,.0f}",
                f"{rate[backend] / rate['transformers']:.2f}",
                "yes" if result["reproducible"][backend] else "NO",
            ]
        )
    faster = max(BACKENDS, key=rate.get)
    headline = {
        "model": Path(args.model or "tiny-model").name,
        "setting": f"{args.questions} questions x n = {args.n}, up to {args.max_tokens} tokens",
        "figure": "tokens/s: "
        + ", ".join(f"{b} {rate[b]:,.0f}" for b in BACKENDS)
        + f" ({rate['vllm'] / rate['transformers']:.2f})",
        "verdict": f"faster: {faster}",
    }
    body = "\n".join(
        [
            f"Model `{result['model']}` ({args.dtype}), vLLM {result['vllm']} (CPU); {args.questions} questions x "
            f"n = {args.n}, up to {args.max_tokens} tokens, temperature {args.temperature}, top_p {args.top_p}, "
            f"{args.batch_size} questions per call; median of {args.repeats} interleaved repetitions of the "
            "evaluator's loop (sampling, answers, grading, samples file).",
            "",
            record.markdown_table(
                [
                    "backend",
                    "model load s (once)",
                    "median s",
                    "completion tokens",
                    "tokens/s",
                    "vs transformers",
                    "same samples every repetition",
                ],
                rows,
            ),
            "",
            f"Faster on this CPU: **{faster}** (median of per-repetition time ratios transformers / vLLM: "
            f"{result['pair_ratio']:.2f}; the backends sample different tokens, so compare tokens/s).",
        ]
    )
    return record.Figures(body, headline)


def main(args: EvalThroughputArguments) -> None:
    """Run, print the figures, record them unless the machine was loaded (one block per model)."""
    warnings.filterwarnings("ignore")
    logging.getLogger("vllm").setLevel(logging.WARNING)
    import datasets

    datasets.disable_progress_bars()
    name = "eval_throughput" if args.model is None else "eval_throughput_" + Path(args.model).name
    title = f"Evaluation throughput: vLLM vs transformers backend ({Path(args.model or 'tiny-model').name})"
    record.measure_and_record(args, name, title, lambda: report(args, run(args)), family="eval_throughput")


if __name__ == "__main__":
    from trl import TrlParser

    main(*TrlParser((EvalThroughputArguments,)).parse_args_and_config())
