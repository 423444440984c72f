"""Shared pieces of the benchmark scripts: fixed threads, timing helpers, and recording figures in BENCHMARKS.md.

Every benchmark writes its latest figures between two markers in BENCHMARKS.md::

    <!-- figures: NAME -->
    ...command, date (UTC), machine, table...
    <!-- /figures: NAME -->

A new run replaces what lies between the markers and leaves the hand-written text around them alone. When the
markers are missing, a new section (``## TITLE`` + markers) is appended at the end of the file.
"""

from __future__ import annotations

import os

# Fixed before torch (or anything using OpenMP) is imported by a benchmark script that imports this module first.
THREADS = 1
os.environ["OMP_NUM_THREADS"] = str(THREADS)
os.environ["MKL_NUM_THREADS"] = str(THREADS)

import datetime  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BENCHMARKS_FILE = REPO / "BENCHMARKS.md"


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


def figures_block(body: str) -> str:
    """The recorded figures: command, date, machine, then ``body`` (tables and notes)."""
    return (
        f"Latest figures ({utc_now()}), command:\n\n```bash\n{command_line()}\n```\n\n"
        f"Machine: {machine_line()}.\n\n{body.strip()}\n"
    )


def record_figures(name: str, title: str, body: str, path: str | os.PathLike | None = None) -> Path:
    """Write ``body`` as the latest figures of benchmark ``name`` in the benchmarks file (atomically).

    Args:
        name: Marker name of the benchmark (e.g. ``step_overhead``).
        title: Section heading used when the section does not exist yet.
        body: Markdown with the figures (tables, notes); command, date and machine are added.
        path: The benchmarks file; BENCHMARKS.md at the repository root by default.

    Returns:
        The path written.
    """
    from sasc_ttrl.data.store import write_atomic

    path = Path(path) if path is not None else DEFAULT_BENCHMARKS_FILE
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- figures: {name} -->", f"<!-- /figures: {name} -->"
    block = f"{start}\n{figures_block(body)}{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"
    write_atomic(path, text if text.endswith("\n") else text + "\n")
    return path


def median(values: Sequence[float]) -> float:
    """Median of the measurements (raises on an empty list, naming it)."""
    if not values:
        raise ValueError("no measurements to take the median of")
    return statistics.median(values)


class Timers:
    """Accumulated wall time per (variant, part), for breaking a measured step down.

    ``wrap(owner, attribute, part)`` replaces a function or method by a timed one that adds its wall time to the
    current variant's ``part``; ``restore()`` puts every original back.
    """

    def __init__(self):
        self.variant = ""
        self.totals: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self._originals: list[tuple[object, str, object]] = []

    def add(self, part: str, seconds: float) -> None:
        """Add ``seconds`` to ``part`` of the current variant."""
        self.totals[(self.variant, part)] += seconds
        self.calls[(self.variant, part)] += 1

    def timed(self, part: str, func: Callable) -> Callable:
        """``func`` wrapped so that its wall time is added to ``part``."""

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.add(part, time.perf_counter() - start)

        wrapper.__name__ = getattr(func, "__name__", part)
        wrapper.__doc__ = getattr(func, "__doc__", None)
        return wrapper

    def wrap(self, owner: object, attribute: str, part: str) -> None:
        """Replace ``owner.attribute`` by a timed version (undone by `restore`)."""
        original = getattr(owner, attribute)
        self._originals.append((owner, attribute, original))
        setattr(owner, attribute, self.timed(part, original))

    def restore(self) -> None:
        """Put back every wrapped attribute."""
        for owner, attribute, original in reversed(self._originals):
            setattr(owner, attribute, original)
        self._originals.clear()

    def snapshot(self) -> dict[tuple[str, str], float]:
        """A copy of the totals so far."""
        return dict(self.totals)
