"""What one GRPO step costs with the SASC reward, measured against TRL's own GRPOTrainer.

Two variants on the same tiny model, data, seed and GRPO config:

* **A**: TRL's plain `GRPOTrainer` with a plain majority-vote reward written here (extract each completion's
  answer, group equivalent answers with `sasc_ttrl.core.answers`, reward agreement with the largest class);
* **B**: `SASCTrainer` with the `sasc` reward (entropy capture during generation, gather, stability-aware vote,
  logged diagnostics) -- what `sasc-ttrl train` runs.

Each repetition runs one step of A then one step of B (A B A B ...). Before every step the model weights and the
optimizer are reset to the same starting point, this process's answer caches are cleared (a real step sees new answers)
and the RNG is re-seeded, so both variants sample the same completions. A step is timed from the trainer's
``on_step_begin`` to ``on_step_end`` (generation, rewards, loss, backward, optimizer step). The parts that SASC
adds are timed by wrapping the functions that do them (entropy hook, gather, answer parsing, classes, vote,
diagnostics).

Command (writes its figures to BENCHMARKS.md)::

    python benchmarks/step_overhead.py            # --quick for a seconds-long smoke run
    python benchmarks/step_overhead.py --model ~/.cache/sasc_ttrl/smollm2-135m-instruct --lora 16  # and without

Targets: ratio B / A <= 1.05 on the tiny model, <= 1.03 on a real model (``--model``).
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import record  # sets OMP_NUM_THREADS; sorts before torch
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, ProgressCallback, TrainerCallback
from trl import GRPOConfig, GRPOTrainer, TrlParser

import sasc_ttrl.core.answers as answers_module
import sasc_ttrl.training.rewards.vote as rewards_module
from sasc_ttrl.core import math_equivalence
from sasc_ttrl.core.answers import extract_answer, group_equivalent
from sasc_ttrl.data.training_data import load_math_dataset
from sasc_ttrl.demo.tiny_model import write_tiny_dataset
from sasc_ttrl.sampling.entropy_capture import EntropyRecorder
from sasc_ttrl.training.configs import SASCConfig
from sasc_ttrl.training.rewards import get_reward_funcs
from sasc_ttrl.training.trainer import SASCTrainer

TARGET_RATIO = 1.05  # the tiny model (issue 4)
TARGET_RATIO_MODEL = 1.03  # a real model given with --model (issue 20)
VOTE_FUNCTIONS = ("sasc_vote", "stability_vote")
VARIANT_A = "A: GRPOTrainer + plain majority"
VARIANT_B = "B: SASCTrainer + sasc"
# (part, what it measures); "step" is the whole step, the others are timed inside it.
PARTS = [
    ("step", "whole step (generation, rewards, loss, backward, optimizer)"),
    ("generate", "TRL's generation (`_generate_single_turn`), incl. the hook's calls"),
    ("entropy hook", "`EntropyRecorder.__call__`, once per decoding step"),
    ("entropy split", "`EntropyRecorder.per_sequence` (entropies per completion)"),
    ("reward", "the reward function, whole call"),
    ("answer parsing", "`extract_answer` on every completion"),
    ("instability", "`instability` (std of each entropy sequence)"),
    ("gather", "`gather_records` (cross-process gather; one process here)"),
    ("classes", "`group_equivalent` (math-verify equivalence classes)"),
    ("vote", "the stability-aware vote / `majority_vote` / the plain majority count"),
    ("diagnostics", "`group_diagnostics` (logged label/reward accuracy vs hidden answers)"),
    ("other", "step - generate - reward: logprobs, loss, backward, optimizer, TRL's bookkeeping"),
]


@dataclass
class StepOverheadArguments(record.RecordingArguments):
    """Arguments of the step-overhead benchmark."""

    model: str | None = field(
        default=None, metadata={"help": "Model folder; default: the tiny model (built in the cache if missing)."}
    )
    lora: int = field(
        default=0,
        metadata={"help": "LoRA rank on every linear layer (alpha = 2 r, as the demo trains); 0: the full model."},
    )
    repeats: int = field(default=7, metadata={"help": "Repetitions (A B pairs); the median is reported."})
    prompts: int = field(default=2, metadata={"help": "Prompts per step."})
    num_generations: int = field(default=8, metadata={"help": "Rollouts per prompt (the vote's group)."})
    max_completion_length: int = field(default=48, metadata={"help": "Maximum completion tokens."})
    seed: int = field(default=42, metadata={"help": "Seed of the sampler and of every step's generation."})
    quick: bool = field(default=False, metadata={"help": "Tiny configuration for the smoke test (seconds)."})

    def __post_init__(self):
        super().__post_init__()
        if self.quick:
            self.repeats, self.prompts, self.num_generations, self.max_completion_length = 2, 1, 4, 8
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.lora < 0:
            raise ValueError(f"lora must be >= 0 (a rank, or 0 for the full model), got {self.lora}")


def default_model_dir() -> Path:
    """The tiny model in the cache (built on first use)."""
    return record.tiny_model_dir()


def make_plain_majority_reward(num_generations: int, timers: record.Timers):
    """The baseline reward: plain majority vote over equivalence classes, nothing else (no entropies, no logs)."""
    extract = timers.timed("answer parsing", extract_answer)
    classes_of = timers.timed("classes", group_equivalent)

    def count_vote(classes: list[int | None]) -> list[float]:
        counts = Counter(c for c in classes if c is not None)
        if not counts:
            return [0.0] * len(classes)
        label = max(counts, key=lambda c: (counts[c], -classes.index(c)))
        return [1.0 if c == label else 0.0 for c in classes]

    vote = timers.timed("vote", count_vote)

    def plain_majority_reward(prompts, completions, **kwargs) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        answers = [extract(t) for t in texts]
        rewards: list[float] = []
        # Each prompt's rollouts are consecutive (TRL's RepeatSampler), one process: whole groups.
        for start in range(0, len(answers), num_generations):
            rewards += vote(classes_of(answers[start : start + num_generations]))
        return rewards

    return plain_majority_reward


class StepClock(TrainerCallback):
    """Re-seeds before every step and times it from ``on_step_begin`` to ``on_step_end``."""

    def __init__(self, seed: int, timers: record.Timers):
        self.seed = seed
        self.timers = timers
        self.start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        torch.manual_seed(self.seed)
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.timers.add("step", time.perf_counter() - self.start)


def install_timers(timers: record.Timers) -> None:
    """Wrap the functions whose time the breakdown reports (module attributes the reward code looks up)."""
    timers.wrap(GRPOTrainer, "_generate_single_turn", "generate")
    timers.wrap(EntropyRecorder, "__call__", "entropy hook")
    timers.wrap(EntropyRecorder, "per_sequence", "entropy split")
    for attribute, part in [
        ("extract_answer", "answer parsing"),
        ("instability", "instability"),
        ("gather_records", "gather"),
        ("group_equivalent", "classes"),
        ("majority_vote", "vote"),
        ("group_diagnostics", "diagnostics"),
    ]:
        timers.wrap(rewards_module, attribute, part)
    # The stability-aware vote's entry point in the rewards module (named differently across versions).
    votes = [name for name in VOTE_FUNCTIONS if hasattr(rewards_module, name)]
    if not votes:
        raise RuntimeError(f"sasc_ttrl.training.rewards.vote has none of {VOTE_FUNCTIONS}: update VOTE_FUNCTIONS")
    for name in votes:
        timers.wrap(rewards_module, name, "vote")


def clear_answer_caches() -> None:
    """Forget the parses and verdicts cached in this process, as a step on new questions would.

    Not `answers.clear_caches()`: that also re-forks the math-verify worker, whose warm-up (~1 s) no training step
    pays. The worker's own caches stay; the round trips to it are paid again.
    """
    math_equivalence.clear_caches()
    answers_module._timed_verdict.cache_clear()


def build_trainers(args: StepOverheadArguments, out_dir: Path, timers: record.Timers, tokens: dict[str, list[int]]):
    """Both trainers on the same model weights, data and config."""
    model_dir = Path(args.model) if args.model else default_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = write_tiny_dataset(out_dir / "sums.json", n=max(args.prompts * 4, 8), seed=args.seed)
    dataset = load_math_dataset(str(data), tokenizer=tokenizer)
    config = dict(
        num_generations=args.num_generations,
        per_device_train_batch_size=args.prompts * args.num_generations,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        max_completion_length=args.max_completion_length,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=0.0,
        loss_type="dapo",
        scale_rewards="group",
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        max_steps=1,
        seed=args.seed,
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        log_completions=False,
    )

    def counting(reward, variant):
        @functools.wraps(reward)  # keeps the reward's name and the fields it asks the trainer for
        def wrapped(prompts, completions, completion_ids, **kwargs):
            tokens[variant].append(sum(len(c) for c in completion_ids))
            return reward(prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs)

        return timers.timed("reward", wrapped)

    peft = {}
    if args.lora:
        from peft import LoraConfig

        peft["peft_config"] = LoraConfig(
            r=args.lora, lora_alpha=2 * args.lora, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    trainers = {}
    model_a = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainers[VARIANT_A] = GRPOTrainer(
        model=model_a,
        reward_funcs=[counting(make_plain_majority_reward(args.num_generations, timers), VARIANT_A)],
        args=GRPOConfig(output_dir=str(out_dir / "a"), **config),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[StepClock(args.seed, timers)],
        **peft,
    )
    sasc_args = SASCConfig(output_dir=str(out_dir / "b"), reward_funcs=["sasc"], **config)
    model_b = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainers[VARIANT_B] = SASCTrainer(
        model=model_b,
        reward_funcs=[counting(get_reward_funcs(["sasc"], sasc_args.vote_settings)[0], VARIANT_B)],
        args=sasc_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[StepClock(args.seed, timers)],
        **peft,
    )
    for trainer in trainers.values():  # no per-step log lines or progress bars in the benchmark's output
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    return trainers, str(model_dir).replace(str(Path.home()), "~", 1)


def run(args: StepOverheadArguments) -> dict:
    """Measure; return the per-part medians (ms) per variant, the ratio and the token counts."""
    torch.set_num_threads(record.THREADS)
    timers = record.Timers()
    tokens: dict[str, list[int]] = {VARIANT_A: [], VARIANT_B: []}
    per_rep: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trainers, model_dir = build_trainers(args, Path(tmp), timers, tokens)
        start_weights = {v: {k: t.clone() for k, t in tr.model.state_dict().items()} for v, tr in trainers.items()}
        install_timers(timers)
        try:
            for repeat in range(-1, args.repeats):  # repeat -1: an untimed warm-up pair
                for variant, trainer in trainers.items():
                    trainer.model.load_state_dict(start_weights[variant])
                    trainer.optimizer, trainer.lr_scheduler = None, None
                    clear_answer_caches()
                    timers.variant = variant
                    before = timers.snapshot()
                    trainer.train()
                    after = timers.snapshot()
                    if repeat < 0:
                        tokens[variant].clear()
                        continue
                    for part, _ in PARTS[:-1]:
                        key = (variant, part)
                        per_rep.setdefault(key, []).append(after.get(key, 0.0) - before.get(key, 0.0))
        finally:
            timers.restore()
    for variant in trainers:
        parts = [per_rep[(variant, p)] for p in ("step", "generate", "reward")]
        per_rep[(variant, "other")] = [step - gen - rew for step, gen, rew in zip(*parts)]
    medians = {key: 1000 * record.median(values) for key, values in per_rep.items()}
    steps_a, steps_b = per_rep[(VARIANT_A, "step")], per_rep[(VARIANT_B, "step")]
    return {
        "medians_ms": medians,
        "ratio": record.median(steps_b) / record.median(steps_a),
        "pair_ratio": record.median([b / a for a, b in zip(steps_a, steps_b)]),
        "tokens": tokens,
        "model": model_dir,
    }


def report(args: StepOverheadArguments, result: dict) -> record.Figures:
    """The markdown figures (the ratio against the target and the per-part breakdown) and their headline."""
    med = result["medians_ms"]
    rows = []
    for part, meaning in PARTS:
        a, b = med.get((VARIANT_A, part), 0.0), med.get((VARIANT_B, part), 0.0)
        rows.append([part, meaning, f"{a:.1f}", f"{b:.1f}", f"{b - a:+.1f}"])
    tokens_a, tokens_b = result["tokens"][VARIANT_A], result["tokens"][VARIANT_B]
    same = "identical" if tokens_a == tokens_b else f"NOT identical (A {tokens_a}, B {tokens_b})"
    target = TARGET_RATIO if args.model is None else TARGET_RATIO_MODEL
    verdict = "met" if result["ratio"] <= target else "MISSED"
    setting = f"LoRA rank {args.lora}" if args.lora else "full model"
    headline = {
        "model": Path(result["model"]).name,
        "setting": setting,
        "figure": f"B / A {result['ratio']:.3f} (per-pair {result['pair_ratio']:.3f})",
        "target": f"<= {target}",
        "verdict": verdict,
    }
    body = "\n".join(
        [
            f"Model `{result['model']}` ({setting}); "
            f"{args.prompts} prompts x {args.num_generations} rollouts, up to "
            f"{args.max_completion_length} tokens; median of {args.repeats} interleaved repetitions. Completion "
            f"tokens per step: {tokens_a[0] if tokens_a else 0} ({same} across variants and repetitions).",
            "",
            record.markdown_table(
                ["ratio B / A", "median of per-pair ratios", "target", "verdict"],
                [[f"{result['ratio']:.3f}", f"{result['pair_ratio']:.3f}", f"<= {target}", verdict]],
            ),
            "",
            record.markdown_table(["part", "what", "A median ms", "B median ms", "B - A ms"], rows),
        ]
    )
    return record.Figures(body, headline)


def main(args: StepOverheadArguments) -> None:
    """Run, print the figures, record them unless the machine was loaded."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    name, title = "step_overhead", "Step overhead: SASCTrainer + sasc vs GRPOTrainer + majority"
    if args.model is not None:
        name += "_" + Path(args.model).name + ("" if args.lora else "_full")
        title += f" ({Path(args.model).name}, {'LoRA' if args.lora else 'full model'})"
    if args.lora:
        name += f"_lora{args.lora}"
    record.measure_and_record(args, name, title, lambda: report(args, run(args)), family="step_overhead")


if __name__ == "__main__":
    main(*TrlParser((StepOverheadArguments,)).parse_args_and_config())
