"""Evaluate a checkpoint on math benchmarks: pass@k, maj@k, sasc@k and avg@n, with a report and plots.

Command::

    sasc-ttrl eval --model_name_or_path Qwen/Qwen2.5-Math-1.5B --benchmarks math500 amc aime24 \\
        --n 16 --temperature 0.6 --top_p 0.95 --max_tokens 3072 --output_dir outputs/eval/base
    sasc-ttrl eval --compare outputs/eval/base outputs/eval/sasc outputs/eval/ttrl --output_dir outputs/eval/cmp

(or ``python scripts/evaluate.py --config eval.yaml``). Outputs in ``output_dir``:

* ``samples/<benchmark>.jsonl``: one line per question with its ``n`` sample records, appended and fsynced as
  each question finishes. A rerun skips the questions already there (a truncated last line is dropped), and since
  every question is seeded by ``(seed, its index)``, it gives the same samples and metrics as an uninterrupted run.
* ``metrics.json``, ``metrics.md`` and ``pass_at_k.png`` (pass@k / maj@k / sasc@k against k);
* ``eval_config.json``: the settings that determine the samples; a rerun with other settings refuses to mix them
  (use another ``output_dir`` or ``--overwrite``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

from ..core.errors import ConfigError
from ..core.metrics import MAJ_AT_K_DEFINITION, benchmark_metrics, default_k_list
from ..core.vote_arguments import VoteArguments
from ..data.benchmarks import benchmark_slug, load_benchmark
from ..data.checks import data_errors
from ..data.prompts import check_prompt_style
from ..data.store import check_run_settings, field_defaults, write_atomic
from ..reports.evaluation import compare_runs, plot_run, print_summary, run_markdown
from ..sampling.arguments import SamplingArguments, sampling_field
from ..sampling.benchmark import BenchmarkSampler, sample_benchmark
from ..sampling.dynamic_temperature import DynamicTemperatureArguments
from ..sampling.generation import BACKENDS, SamplingSettings, resolve_backend
from ..sampling.models import check_model_vocabulary

logger = logging.getLogger(__name__)

CONFIG_FILE = "eval_config.json"
SAMPLING_KEYS = (
    "model_name_or_path",
    "n",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "entropy_top_k",
    "backend",
    "prompt_style",
    "system_prompt",
    "dynamic_temperature",
    "dt_base",
    "dt_n",
    "dt_theta",
    "dt_entropy",
)


@dataclass
class EvalArguments(VoteArguments, DynamicTemperatureArguments, SamplingArguments):
    """Arguments of ``sasc-ttrl eval``.

    Args:
        model_name_or_path: Checkpoint to evaluate (local folder or hub name).
        benchmarks: Benchmarks: ``math500``, ``amc``, ``aime24``, ``gsm8k`` (shared files, else the hub), a hub
            data set name, or a local ``.json``/``.jsonl``/``.parquet``/``.csv`` file.
        n: Samples per question.
        k_list: Values of k for pass@k / maj@k / sasc@k; default: powers of two up to ``n``, and ``n``.
        temperature: Sampling temperature (TTRL evaluates at 0.6).
        top_p: Nucleus sampling mass (TTRL: 0.95).
        max_tokens: Maximum completion length.
        seed: Base seed; question ``i`` is sampled from ``(seed, i)`` whatever the batching.
        batch_size: Questions per generation call (each expands to ``n`` sequences).
        output_dir: Where samples, metrics, the report and the plot go.
        run_name: Label of this run in reports and comparisons; default: the model folder's name.
        backend: ``auto`` (vLLM when installed and a GPU is present), ``vllm`` or ``transformers``.
        dtype: Model dtype for the transformers backend / vLLM (``auto``, ``float32``, ``bfloat16``, ...).
        entropy_top_k: k of the per-token top-k entropy recorded for the stability-aware vote.
        filter_ratio, weight_temperature, vote_weighting, gate_statistic, weight_statistic, ...: the vote of
            sasc@k ([`VoteArguments`]).
        answer_timeout: Seconds allowed per math-verify check.
        compare: Compare mode: output directories of two or more finished runs to put side by side (nothing is
            sampled; the comparison goes to ``output_dir``).
        limit: Evaluate only the first N questions of each benchmark.
        split: Split of hub data sets; default: the benchmark's known split, else ``test``.
        prompt_column: Question column; default: the first of ``prompt``, ``problem``, ``question``.
        prompt_style: How questions are asked (``data.prompts.PROMPT_STYLES``): ``math``, ``word_problem_one_shot``
            or ``raw``.
        system_prompt: A system message in front of every prompt.
        answer_column: Reference answer column; default: the first of ``answer``, ``final_answer``, ``solution``.
        overwrite: Delete the samples of an earlier run in ``output_dir`` instead of resuming it.
        vllm_gpu_memory_utilization: vLLM's ``gpu_memory_utilization``.
        vllm_tensor_parallel_size: vLLM's ``tensor_parallel_size``.
        dynamic_temperature, dt_base, dt_n, dt_theta, dt_entropy: sample at an entropy-based temperature per token
            ([`DynamicTemperatureArguments`]; transformers backend).
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "Checkpoint to evaluate (path or hub)."})
    benchmarks: list[str] = field(
        default_factory=lambda: ["math500"],
        metadata={"help": "math500, amc, aime24, gsm8k, a hub data set name, or a local json/jsonl/parquet file."},
    )
    n: int = field(default=16, metadata={"help": "Samples per question."})
    k_list: list[int] | None = field(
        default=None, metadata={"help": "k values for pass@k / maj@k / sasc@k (default: powers of 2 up to n, and n)."}
    )
    temperature: float = sampling_field("temperature", 0.6)
    top_p: float = sampling_field("top_p", 0.95)
    max_tokens: int = sampling_field("max_tokens", 3072)
    seed: int = field(default=42, metadata={"help": "Base seed; question i is sampled from (seed, i)."})
    batch_size: int = field(default=8, metadata={"help": "Questions per generation call (each gives n sequences)."})
    output_dir: str = field(default="outputs/eval", metadata={"help": "Output directory."})
    run_name: str | None = field(default=None, metadata={"help": "Label of the run (default: the model's name)."})
    backend: str = field(default="auto", metadata={"help": "auto (vllm if installed and a GPU), vllm, transformers."})
    dtype: str = field(default="auto", metadata={"help": "Model dtype: auto, float32, bfloat16, float16."})
    entropy_top_k: int = field(default=20, metadata={"help": "k of the per-token top-k entropy."})
    compare: list[str] | None = field(
        default=None, metadata={"help": "Compare mode: output dirs of two or more finished runs."}
    )
    limit: int | None = field(default=None, metadata={"help": "Only the first N questions of each benchmark."})
    split: str | None = field(default=None, metadata={"help": "Split of hub data sets."})
    prompt_column: str | None = field(default=None, metadata={"help": "Question column (default: auto-detect)."})
    system_prompt: str | None = field(default=None, metadata={"help": "A system message in front of every prompt."})
    answer_column: str | None = field(default=None, metadata={"help": "Answer column (default: auto-detect)."})
    overwrite: bool = field(default=False, metadata={"help": "Discard earlier samples in output_dir."})
    vllm_gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vLLM gpu_memory_utilization."})
    vllm_tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM tensor_parallel_size."})

    def __post_init__(self):
        if isinstance(self.benchmarks, str):
            self.benchmarks = [self.benchmarks]
        if isinstance(self.compare, str):
            self.compare = [self.compare]
        if self.compare:
            return
        check_prompt_style(self.prompt_style)
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.k_list is None:
            self.k_list = default_k_list(self.n)
        self.k_list = sorted(set(self.k_list))
        if not self.k_list or self.k_list[0] < 1 or self.k_list[-1] > self.n:
            raise ValueError(f"every k must be in [1, n={self.n}], got k_list={self.k_list}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1 or self.batch_size < 1 or self.entropy_top_k < 1:
            raise ValueError("max_tokens, batch_size and entropy_top_k must be >= 1")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        self.vote_settings  # noqa: B018 - validates the vote fields
        self.sampling_settings  # noqa: B018 - validates the dynamic-temperature fields
        resolve_backend(self.backend, self.dynamic_temperature)  # refuses vllm with --dynamic_temperature
        if not self.benchmarks:
            raise ValueError("benchmarks is empty")
        if self.model_name_or_path is None:
            raise ValueError("model_name_or_path is required (unless --compare is given)")

    @property
    def sampling_settings(self) -> SamplingSettings:
        """How the samples are drawn ([`SamplingSettings`])."""
        return SamplingSettings.from_arguments(self, n=self.n)


def main(args: EvalArguments) -> dict[str, Any]:
    """Evaluate ``args.model_name_or_path`` on ``args.benchmarks`` (or, with ``args.compare``, compare runs).

    Returns:
        The run's metrics (the content of ``metrics.json``), or the compared runs' metrics by label.
    """
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    if args.compare:
        return compare_runs(args.compare, args.output_dir)
    output_dir = Path(args.output_dir)
    backend = resolve_backend(args.backend, args.dynamic_temperature)
    settings = {
        **{k: v for k, v in asdict(args).items() if k not in ("compare", "overwrite", "run_name")},
        "backend": backend,
    }
    slugs = [benchmark_slug(name) for name in args.benchmarks]
    if len(set(slugs)) < len(slugs):
        raise ConfigError(f"benchmarks {args.benchmarks} share a file name ({slugs}); evaluate them in separate runs")
    # Data and vocabulary are checked before anything is written or any weights are read.
    questions = {}
    for slug, name in zip(slugs, args.benchmarks):
        with data_errors(name):
            questions[slug] = (
                name,
                load_benchmark(name, args.split, args.limit, args.prompt_column, args.answer_column),
            )
    check_model_vocabulary(args.model_name_or_path, args.entropy_top_k)
    check_run_settings(
        output_dir,
        CONFIG_FILE,
        {k: settings[k] for k in SAMPLING_KEYS},
        args.overwrite,
        defaults=field_defaults(EvalArguments),
        what="samples drawn",
        data_subdir="samples",
    )
    sampler = BenchmarkSampler(
        args.model_name_or_path,
        backend,
        args.sampling_settings,
        prompt_style=args.prompt_style,
        system_prompt=args.system_prompt,
        dtype=args.dtype,
        vllm_kwargs={
            "gpu_memory_utilization": args.vllm_gpu_memory_utilization,
            "tensor_parallel_size": args.vllm_tensor_parallel_size,
        },
    )
    results = {}
    for slug, (name, qs) in questions.items():
        logger.info("%s: %d questions, n=%d", name, len(qs), args.n)
        path = output_dir / "samples" / f"{slug}.jsonl"
        lines = sample_benchmark(slug, qs, path, sampler, args.batch_size, args.answer_timeout)
        results[slug] = benchmark_metrics(lines, args.n, args.k_list, args.vote_settings)
    run = {
        "run_name": args.run_name or Path(args.model_name_or_path.rstrip("/")).name,
        "model_name_or_path": args.model_name_or_path,
        "settings": settings,
        "maj_at_k_definition": MAJ_AT_K_DEFINITION,
        "benchmarks": results,
    }
    write_atomic(output_dir / "metrics.json", json.dumps(run, indent=2))
    write_atomic(output_dir / "metrics.md", run_markdown(run))
    plot_run(run, output_dir / "pass_at_k.png")
    print_summary([run], title=f"Evaluation: {run['run_name']}")
    logger.info("metrics, report and plot written to %s", output_dir)
    return run


def make_parser() -> TrlParser:
    """The argument parser of ``sasc-ttrl eval`` (supports ``--config eval.yaml``)."""
    return TrlParser((EvalArguments,))
