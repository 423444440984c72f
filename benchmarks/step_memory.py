"""Peak memory of GRPO steps on SmolLM2: TRL's GRPOTrainer vs SASCTrainer, same config, side by side in one run.

Each variant runs in its own fresh process (a process's peak never goes down), in the order plain, SASC, plain,
SASC, ...: the trainer is built on SmolLM2-135M-Instruct with a LoRA adapter (the demo's setting: rank 16, 2 prompts
x 6 rollouts, one-shot word-problem prompts) and trains ``--steps`` steps. The peak is the kernel's ``VmHWM`` (peak
resident set) of that process; it is read after each phase of the first step (model loaded, generation, rewards,
log-prob and loss forward, backward, optimizer), so the phase where the peak rose is named.

* **A**: `trl.GRPOTrainer` with a plain majority-vote reward;
* **B**: `SASCTrainer` with the `sasc` reward (entropy capture, vote) -- what `sasc-ttrl demo` trains.

Command (writes its figures to BENCHMARKS.md, one block per setting)::

    python benchmarks/step_memory.py            # --quick: the tiny model, seconds
    python benchmarks/step_memory.py --micro_batches 2 --repeats 1    # TRL settings that lower the peak
    python benchmarks/step_memory.py --gradient_checkpointing --repeats 1

Target: B / A <= 1.05.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import record  # sets OMP_NUM_THREADS; sorts before torch
from transformers import TrainerCallback

TARGET_RATIO = 1.05
VARIANTS = {"A": "A: GRPOTrainer + plain majority", "B": "B: SASCTrainer + sasc"}
PHASES = ("model loaded", "generation", "rewards", "loss forward", "backward", "optimizer step", "end of run")


@dataclass
class StepMemoryArguments(record.RecordingArguments):
    """Arguments of the step-memory benchmark."""

    repeats: int = field(default=2, metadata={"help": "Processes per variant (A B A B ...); the median is reported."})
    steps: int = field(default=2, metadata={"help": "GRPO steps per process."})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in the backward (TRL's own setting)."}
    )
    micro_batches: int = field(
        default=1,
        metadata={"help": "Split the 12 rollouts into this many micro-batches (steps_per_generation = accumulation)."},
    )
    quick: bool = field(default=False, metadata={"help": "The tiny model, 1 step, 1 repeat (the smoke test)."})
    child: str | None = field(default=None, metadata={"help": "Internal: run one variant (A or B) and print JSON."})

    def __post_init__(self):
        super().__post_init__()
        if self.quick:
            self.repeats, self.steps = 1, 1
        if self.micro_batches not in (1, 2, 3, 4, 6, 12):
            raise ValueError(f"micro_batches must divide the 12 rollouts of a step, got {self.micro_batches}")

    @property
    def setting(self) -> str:
        """The memory-relevant settings, as they name the figures' block."""
        return f"gradient_checkpointing {self.gradient_checkpointing}, {self.micro_batches} micro-batch(es)"


def vm_kib(key: str) -> int:
    """This process's ``VmHWM`` or ``VmRSS`` in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def run_child(variant: str, args: StepMemoryArguments) -> dict:
    """Build one variant's trainer, train ``steps`` steps and return the peak after each phase of the first step."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    from sasc_ttrl.core.answers import extract_answer
    from sasc_ttrl.data.training_data import load_math_dataset
    from sasc_ttrl.demo.tiny_model import write_tiny_dataset
    from sasc_ttrl.training.configs import SASCConfig
    from sasc_ttrl.training.trainer import SASCTrainer

    peaks: dict[str, int] = {}

    def mark(phase: str) -> None:
        if phase not in peaks:
            peaks[phase] = vm_kib("VmHWM")

    model_dir = record.tiny_model_dir() if args.quick else record.smollm2_dir()
    out = Path(tempfile.mkdtemp(prefix="step_memory_"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = write_tiny_dataset(out / "sums.json", n=8, seed=0)
    dataset = load_math_dataset(str(data), tokenizer=tokenizer, prompt_style="word_problem_one_shot")
    config = dict(
        output_dir=str(out / "run"), num_generations=6, per_device_train_batch_size=12 // args.micro_batches,
        steps_per_generation=args.micro_batches, gradient_accumulation_steps=args.micro_batches,
        max_completion_length=26, temperature=1.0, top_k=0, beta=0.0, loss_type="dapo", learning_rate=5e-4,
        max_steps=args.steps, seed=0, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
        gradient_checkpointing=args.gradient_checkpointing,
        logging_steps=1, disable_tqdm=True, log_completions=False,
    )  # fmt: skip
    peft = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    mark("model loaded")

    def majority(prompts, completions, **kwargs):
        answers = [extract_answer(c if isinstance(c, str) else c[-1]["content"]) for c in completions]
        rewards = []
        for start in range(0, len(answers), 6):
            group = answers[start : start + 6]
            counts = {a: group.count(a) for a in group if a is not None}
            top = max(counts, key=counts.get) if counts else None
            rewards += [float(a is not None and a == top) for a in group]
        return rewards

    if variant == "A":
        trainer = GRPOTrainer(model=model, reward_funcs=[majority], args=GRPOConfig(**config), train_dataset=dataset,
                              processing_class=tokenizer, peft_config=peft)  # fmt: skip
    else:
        trainer = SASCTrainer(model=model, args=SASCConfig(reward_funcs=["sasc"], min_label_share=0.0, **config),
                              train_dataset=dataset, processing_class=tokenizer, peft_config=peft)  # fmt: skip
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)

    def after(obj, name: str, phase: str) -> None:
        method = getattr(obj, name)

        def wrapped(*args, **kwargs):
            result = method(*args, **kwargs)
            mark(phase)
            return result

        setattr(obj, name, wrapped)

    after(trainer, "_generate_single_turn", "generation")
    after(trainer, "_calculate_rewards", "rewards")
    after(trainer, "compute_loss", "loss forward")
    after(trainer.accelerator, "backward", "backward")
    trainer.add_callback(OptimizerMark(mark))
    trainer.train()
    mark("end of run")
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return {"variant": variant, "peaks_kib": peaks, "rss_end_kib": vm_kib("VmRSS"), "model": str(model_dir),
            "mean_length_per_step": lengths}  # fmt: skip


class OptimizerMark(TrainerCallback):
    """Marks the peak after each optimizer step (``on_step_end``)."""

    def __init__(self, mark):
        self.mark = mark

    def on_step_end(self, args, state, control, **kwargs):
        self.mark("optimizer step")


def measure(args: StepMemoryArguments) -> dict:
    """Run the child processes (A B A B ...) and collect their peaks."""
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    for _ in range(args.repeats):
        for variant in ("A", "B"):
            cmd = [sys.executable, __file__, "--child", variant, "--steps", str(args.steps)]
            cmd += ["--micro_batches", str(args.micro_batches)]
            cmd += ["--gradient_checkpointing"] if args.gradient_checkpointing else []
            cmd += ["--quick"] if args.quick else []
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"variant {variant} failed:\n{proc.stderr[-3000:]}")
            runs[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return runs


def report(args: StepMemoryArguments, runs: dict) -> record.Figures:
    """The figures block (peak per variant, median over processes; the ratio; the peak after each phase) and its
    headline."""
    peak = {v: record.median([r["peaks_kib"]["end of run"] for r in runs[v]]) / 2**20 for v in runs}
    ratio = peak["B"] / peak["A"]
    rows = []
    for phase in PHASES:
        cells = [phase]
        for v in ("A", "B"):
            values = [r["peaks_kib"].get(phase) for r in runs[v]]
            cells.append(f"{record.median([x for x in values if x]) / 2**20:.2f}" if all(values) else "-")
        rows.append(cells)
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    headline = {
        "model": Path(runs["A"][0]["model"]).name,
        "setting": args.setting,
        "figure": f"B / A = {ratio:.3f} ({peak['A']:.2f} vs {peak['B']:.2f} GiB)",
        "target": f"<= {TARGET_RATIO}",
        "verdict": verdict,
    }
    lines = [
        f"Model: `{Path(runs['A'][0]['model']).name}`, LoRA r 16, 2 prompts x 6 rollouts, 26 tokens, "
        f"{args.steps} step(s) per process, {args.repeats} process(es) per variant (A B A B ...); "
        f"{args.setting}.",
        "",
        record.markdown_table(
            ["variant", "peak RSS (VmHWM), GiB"], [[VARIANTS[v], f"{peak[v]:.2f}"] for v in ("A", "B")]
        ),
        "",
        f"**B / A = {ratio:.3f}** ({verdict} the target <= {TARGET_RATIO}).",
        "",
        "Peak so far after each phase of the first step (GiB; the phase where it rises is where the peak comes from):",
        "",
        record.markdown_table(["after", VARIANTS["A"], VARIANTS["B"]], rows),
        "",
        "Mean completion length of each step (tokens, first process of each variant; the first step samples "
        "the same tokens in both, later steps sample from weights moved by different rewards): "
        + "; ".join(f"{v} " + " / ".join(f"{x:.1f}" for x in runs[v][0]["mean_length_per_step"]) for v in "AB")
        + ".",
    ]
    return record.Figures("\n".join(lines), headline)


def main(args: StepMemoryArguments) -> None:
    if args.child:
        print(json.dumps(run_child(args.child, args)))
        return
    name = "step_memory"
    if args.gradient_checkpointing or args.micro_batches > 1:
        name += f"_gc{int(args.gradient_checkpointing)}_mb{args.micro_batches}"
    title = "Peak memory of a GRPO step" + ("" if name == "step_memory" else f" ({args.setting})")
    record.measure_and_record(args, name, title, lambda: report(args, measure(args)), family="step_memory")


if __name__ == "__main__":
    from trl import TrlParser

    main(TrlParser(StepMemoryArguments).parse_args_and_config()[0])
