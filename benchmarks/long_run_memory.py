"""Resident memory over a long 2-process training run, and the byte bound of the answer and verdict caches (issue 19).

Part 1 -- a real run: ``accelerate launch`` (2 CPU processes, DDP, gloo) of ``scripts/train.py`` with the tiny-model
recipe for ``--steps`` steps (500) with the vote log on. Every ``--every`` steps (50; and at step 1) the resident set
size (RSS) of each rank and of its checker processes -- the math-verify server and its forked worker -- is read with
psutil. The step is read from the vote log (rank 0 appends one line per group, ``groups_per_step`` lines per step).
The curve flattens when the RSS grows by at most ``FLAT_MIB`` MiB over the second half of the run.

Part 2 -- the caches alone, in this process: ``--stream`` pairs of distinct irrational answers checked in-process
(``is_equivalent(timeout=None)``: the parse and verdict caches the verify worker uses) and as many pairs of plain
numbers through the timed-verdict cache the ranks use. Every tenth of the stream, each cache's charged bytes (its
bound is in bytes, `sasc_ttrl.core.byte_cache`) and this process's RSS are recorded.

Writes the figures to BENCHMARKS.md and the curves to ``docs/long_run_memory.png``.

Command (writes its figures to BENCHMARKS.md; the two ranks may share one core, RSS does not depend on speed)::

    python benchmarks/long_run_memory.py            # --quick: 6 steps, memory every 2, 300 answer pairs
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import record  # sets OMP_NUM_THREADS

from sasc_ttrl.core import answers, math_equivalence

MIB = 2**20
FLAT_MIB = 10.0  # the most a process may grow over the second half of the run for its curve to count as flat
SERVER = "sasc_ttrl.core.verify_process"


@dataclass
class LongRunMemoryArguments(record.RecordingArguments):
    """Arguments of the long-run memory benchmark."""

    steps: int = field(default=500, metadata={"help": "Training steps."})
    every: int = field(default=50, metadata={"help": "Read the memory every this many steps (and at step 1)."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Rollouts per rank per step."})
    num_generations: int = field(default=8, metadata={"help": "Rollouts per group."})
    stream: int = field(default=40_000, metadata={"help": "Pairs of distinct answers streamed through the caches."})
    model: str = field(
        default=str(record.cache_dir() / "tiny-model"),
        metadata={"help": "The tiny model (built there when missing)."},
    )
    output_dir: str | None = field(default=None, metadata={"help": "Run folder (default: a temporary one)."})
    plot: str | None = field(
        default=None, metadata={"help": "PNG of the curves (default: docs/long_run_memory.png beside the figures)."}
    )
    quick: bool = field(default=False, metadata={"help": "6 steps, memory every 2, 300 answers: the smoke test."})

    def __post_init__(self):
        super().__post_init__()
        if self.quick:
            self.steps, self.every, self.stream = 6, 2, 300
        if self.steps < 1 or self.every < 1 or self.stream < 10:
            raise ValueError("steps and every must be >= 1, stream >= 10")
        if (2 * self.per_device_train_batch_size) % self.num_generations:
            raise ValueError("2 x per_device_train_batch_size must be a multiple of num_generations")


# -- part 1: the training run -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_model(path: Path) -> Path:
    """The tiny model at ``path``, built there first when missing."""
    from filelock import FileLock

    from sasc_ttrl.demo.tiny_model import build_tiny_model

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent / f"{path.name}.lock")):
        return build_tiny_model(path)


def processes(launcher: psutil.Process) -> dict[str, psutil.Process]:
    """The run's processes by role: ``rank 0``, ``rank 1``, ``server 0`` / ``worker 0`` (rank 0's checkers), ..."""
    found = {}
    for child in launcher.children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
            if "scripts/train.py" in cmdline:
                found[f"rank {child.environ()['RANK']}"] = child
            elif SERVER in cmdline:
                parent = child.parent()
                role = "worker" if SERVER in " ".join(parent.cmdline()) else "server"
                found[f"{role} {child.environ()['RANK']}"] = child
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, KeyError):
            continue
    return found


def rss_mib(process: psutil.Process) -> float | None:
    try:
        return process.memory_info().rss / MIB
    except psutil.NoSuchProcess:
        return None


def train_and_sample(args: LongRunMemoryArguments, run_dir: Path) -> tuple[list[dict], float]:
    """Run the training; return the memory samples ({"step", role: MiB}) and the wall time."""
    from sasc_ttrl.demo.tiny_model import write_tiny_dataset

    model = tiny_model(Path(args.model).expanduser())
    data = write_tiny_dataset(run_dir / "sums.json", n=16)
    votes = run_dir / "votes.jsonl"
    groups_per_step = 2 * args.per_device_train_batch_size // args.num_generations
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(record.REPO / "accelerate_configs" / "cpu_2proc.yaml"),
        "--main_process_port", str(free_port()),
        str(record.REPO / "scripts" / "train.py"), "--config", str(record.REPO / "recipes" / "tiny" / "sasc_cpu.yaml"),
        "--model_name_or_path", str(model), "--dataset_name", str(data), "--output_dir", str(run_dir / "out"),
        "--max_steps", str(args.steps), "--num_generations", str(args.num_generations),
        "--per_device_train_batch_size", str(args.per_device_train_batch_size), "--vote_log_path", str(votes),
        "--logging_steps", str(args.every),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(record.REPO), env.get("PYTHONPATH")]))
    targets = sorted({1, *range(args.every, args.steps + 1, args.every)})
    samples: list[dict] = []
    log = run_dir / "train.log"
    start = time.monotonic()
    with open(log, "w") as handle:
        launcher = subprocess.Popen(cmd, cwd=record.REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
        try:
            parent = psutil.Process(launcher.pid)
            while launcher.poll() is None and targets:
                lines = votes.read_text().count("\n") if votes.exists() else 0
                step = lines // groups_per_step
                if step >= targets[0]:
                    sample = {"step": step}
                    for role, process in processes(parent).items():
                        if (mib := rss_mib(process)) is not None:
                            sample[role] = mib
                    samples.append(sample)
                    print(json.dumps(sample), flush=True)
                    while targets and targets[0] <= step:
                        targets.pop(0)
                time.sleep(0.05)
            returncode = launcher.wait()
        finally:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
    if returncode != 0:
        raise RuntimeError(f"the training run failed ({returncode}):\n{log.read_text()[-3000:]}")
    if targets:
        raise RuntimeError(f"the run ended before steps {targets} could be sampled (see {log})")
    return samples, time.monotonic() - start


# -- part 2: the caches alone -----------------------------------------------------------------------------------------
CACHES = {
    "parsed answers": math_equivalence._parse,
    "verdicts (worker)": math_equivalence._verify_uncached_timeout_free,
    "timed verdicts": answers._timed_verdict,
}


def stream_through_caches(n: int) -> list[dict]:
    """Check ``n`` distinct answers in-process and ``n`` pairs of plain numbers; sample the caches every n/10."""
    answers.clear_caches()
    me = psutil.Process()
    rows = []
    for i in range(1, n + 1):
        # Distinct irrational answers: math-verify parses both sides, then they are compared (in this process).
        answers.is_equivalent(f"\\sqrt{{{i}}}", f"\\frac{{\\pi}}{{{i}}}", timeout=None)
        answers.is_equivalent(str(i), str(3 * i + 1))  # plain numbers: the rank's fast path, cached
        if i % (n // 10) == 0:
            row = {"answers": i, "rss": me.memory_info().rss / MIB}
            for label, cache in CACHES.items():
                info = cache.cache_info()
                row[label] = (info.bytes / MIB, info.currsize, info.maxbytes / MIB)
            rows.append(row)
            print(json.dumps(row), flush=True)
    answers.clear_caches()
    return rows


# -- report ---------------------------------------------------------------------------------------------------------
def growth(samples: list[dict], role: str) -> tuple[float, float] | None:
    """RSS growth (MiB) of ``role`` over the first and the second half of the sampled steps."""
    series = [(s["step"], s[role]) for s in samples if role in s]
    if len(series) < 3:
        return None
    middle = series[-1][0] / 2
    half = min(series, key=lambda item: abs(item[0] - middle))
    return half[1] - series[0][1], series[-1][1] - half[1]


def plot(samples: list[dict], stream: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roles = sorted({k for s in samples for k in s if k != "step"})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for role in roles:
        points = [(s["step"], s[role]) for s in samples if role in s]
        left.plot(*zip(*points), marker="o", label=role)
    left.set(xlabel="training step", ylabel="RSS (MiB)", title="2-process tiny-model run, vote log on")
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    counts = [r["answers"] for r in stream]
    for label in CACHES:
        right.plot(counts, [r[label][0] for r in stream], marker=".", label=f"{label} (charged)")
    right.plot(counts, [r["rss"] for r in stream], color="black", label="process RSS")
    for budget in sorted({r[label][2] for r in stream for label in CACHES}):
        right.axhline(budget, color="grey", linestyle=":", linewidth=1)
    right.set(xlabel="pairs of new answers checked", ylabel="MiB", title="caches under a stream of new answers")
    right.set_ylim(bottom=0)
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(
    args: LongRunMemoryArguments, samples: list[dict], wall: float, stream: list[dict], png: str
) -> record.Figures:
    """The figures block (RSS per process over the run, its growth per half, the caches under a stream of new
    answers) and its headline (the ranks' growth over the second half)."""
    roles = sorted({k for s in samples for k in s if k != "step"})
    rows = [[s["step"], *(f"{s[r]:.1f}" if r in s else "-" for r in roles)] for s in samples]
    verdicts = []
    for role in roles:
        halves = growth(samples, role)
        if halves is None:
            verdicts.append([role, "-", "-", "too few samples"])
            continue
        first, second = halves
        verdict = "flat" if second <= FLAT_MIB else "GROWING"
        verdicts.append([role, f"{first:+.1f}", f"{second:+.1f}", verdict])
    budgets = {label: stream[-1][label][2] for label in CACHES}
    stream_rows = [
        [r["answers"], *(f"{r[label][0]:.2f} ({r[label][1]:,})" for label in CACHES), f"{r['rss']:.1f}"]
        for r in stream
    ]
    peaks = {label: max(r[label][0] for r in stream) for label in CACHES}
    groups = 2 * args.per_device_train_batch_size // args.num_generations
    ranks = [v for v in verdicts if v[0].startswith("rank")]
    states = {v[3] for v in verdicts}
    overall = "GROWING" if "GROWING" in states else "flat" if states == {"flat"} else "too few samples"
    headline = {
        "model": "tiny",
        "setting": f"{args.steps} steps, 2 CPU processes, DDP",
        "figure": "second half: "
        + ", ".join(f"{v[0]} {v[2]} MiB" for v in ranks)
        + f"; caches {sum(budgets.values()):g} MiB",
        "target": f"at most {FLAT_MIB:g} MiB in the second half",
        "verdict": overall,
    }
    body = "\n".join(
        [
            f"Part 1: `accelerate launch` (2 CPU processes, DDP) of `scripts/train.py --config "
            f"recipes/tiny/sasc_cpu.yaml`, {args.steps} steps of {groups} groups x {args.num_generations} rollouts, "
            f"vote log on; {wall:.0f} s wall. RSS in MiB (psutil) every {args.every} steps; `server N` / `worker N` "
            "are rank N's math-verify server and its forked worker (a forked worker shares its pages with the "
            "server until it writes them, so its RSS counts them too).",
            "",
            record.markdown_table(["step", *roles], rows),
            "",
            f"Growth over the first and the second half of the run (flat: at most {FLAT_MIB:g} MiB in the second):",
            "",
            record.markdown_table(["process", "first half MiB", "second half MiB", "verdict"], verdicts),
            "",
            f"Part 2: {args.stream:,} pairs of distinct irrational answers (`\\sqrt{{i}}` vs `\\frac{{\\pi}}{{i}}`) "
            "checked in this process (parse + math-verify: the worker's caches) and as many pairs of plain numbers "
            "(the ranks' timed-verdict cache). Charged MiB (entries) per cache, and this process's RSS:",
            "",
            record.markdown_table(["answer pairs", *CACHES, "RSS MiB"], stream_rows),
            "",
            "Budgets: "
            + ", ".join(f"{label} {budgets[label]:g} MiB (peak charged {peaks[label]:.2f})" for label in CACHES)
            + f"; {sum(budgets.values()):g} MiB per process in all.",
            "",
            f"![RSS over the run and the caches under a stream of new answers]({png})",
        ]
    )
    return record.Figures(body, headline)


def main(args: LongRunMemoryArguments) -> None:
    """Run both parts, draw the curves, print the figures, record them unless the machine was loaded."""
    figures = Path(args.benchmarks_file) if args.benchmarks_file else record.DEFAULT_BENCHMARKS_FILE
    png = Path(args.plot) if args.plot else figures.parent / "docs" / "long_run_memory.png"

    def measure() -> record.Figures:
        with tempfile.TemporaryDirectory() as scratch:
            run_dir = Path(args.output_dir or scratch)
            run_dir.mkdir(parents=True, exist_ok=True)
            samples, wall = train_and_sample(args, run_dir)
        stream = stream_through_caches(args.stream)
        plot(samples, stream, png)
        return report(args, samples, wall, stream, os.path.relpath(png, figures.parent))

    record.measure_and_record(args, "long_run_memory", "Memory over a long multi-process run", measure)


if __name__ == "__main__":
    from trl import TrlParser

    main(*TrlParser((LongRunMemoryArguments,)).parse_args_and_config())
