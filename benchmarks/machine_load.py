"""How loaded the machine was around a benchmark run, and whether its figures may be recorded.

A benchmark's timings move with what else runs on the machine (2 shared cores here). Around every run this module
takes three readings from Linux's ``/proc``:

* **before** and **after**: the 1-minute load average (``/proc/loadavg``), this run's own estimated share of it,
  and the other processes that kept a core busy during a 2-second sample (by name);
* **during**: the CPU time the rest of the machine used while the benchmark measured, in cores on average
  (``/proc/stat``'s busy time minus this run's own).

"This run" is the benchmark process, its children already waited for and its live descendants; its share of the
load average is the kernel's own formula (an exponentially damped average with a 1-minute time constant) applied
to its CPU use, sampled every 5 s by a daemon thread. A run counts as **loaded** when, before or after it, the load
average minus its own share exceeds the limit (by default half the cores), or another process kept at least a
quarter of a core busy, or the rest of the machine used more than a quarter of a core on average during the run.
`benchmarks.record` refuses to record a loaded run unless told ``--force``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_SECONDS = 2.0  # length of the sample that names the busy processes
MONITOR_SECONDS = 5.0  # the kernel updates the load average every 5 s
BUSY_CORES = 0.25  # a process (or the rest of the machine, on average) using this much of a core is "busy"
LOAD_FRACTION = 0.5  # default limit: others' 1-minute load average <= half the cores
EXP_SECONDS = 60.0  # time constant of the 1-minute load average


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_limit() -> float:
    """The default limit on the others' 1-minute load average: half the cores."""
    return LOAD_FRACTION * cores()


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def load_average() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine_busy_seconds() -> float:
    """CPU seconds spent by all cores outside idle and I/O wait since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / _clock_ticks()


@dataclass
class ProcessTable:
    """One pass over ``/proc/*/stat``: name, parent, CPU seconds (own threads) and CPU seconds of the children it
    waited for, of every process."""

    names: dict[int, str] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)
    waited_children_cpu: dict[int, float] = field(default_factory=dict)

    @classmethod
    def read(cls) -> ProcessTable:
        table = cls()
        ticks = _clock_ticks()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                text = Path(entry.path, "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            pid = int(entry.name)
            name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
            table.names[pid] = name
            table.parents[pid] = int(rest[1])
            table.cpu[pid] = (int(rest[11]) + int(rest[12])) / ticks  # utime + stime
            table.waited_children_cpu[pid] = (int(rest[13]) + int(rest[14])) / ticks  # cutime + cstime
        return table

    def ancestors(self, pid: int) -> set[int]:
        """The parent of ``pid``, its parent, and so on."""
        found = set()
        parent = self.parents.get(pid)
        while parent and parent not in found:
            found.add(parent)
            parent = self.parents.get(parent)
        return found

    def descendants(self, pid: int) -> set[int]:
        """The children of ``pid``, their children, and so on."""
        children: dict[int, list[int]] = {}
        for child, parent in self.parents.items():
            children.setdefault(parent, []).append(child)
        found: set[int] = set()
        stack = [pid]
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def family(self, pid: int) -> set[int]:
        """``pid``, its ancestors and its descendants: the processes that are this run (or wait for it)."""
        return {pid} | self.ancestors(pid) | self.descendants(pid)


def own_cpu_seconds(table: ProcessTable | None = None) -> float:
    """CPU seconds of this run so far: this process, its children already waited for, its live descendants and the
    children they waited for (e.g. the math-verify server's re-forked workers)."""
    times = os.times()
    table = table if table is not None else ProcessTable.read()
    return (
        times.user
        + times.system
        + times.children_user
        + times.children_system
        + sum(table.cpu[p] + table.waited_children_cpu[p] for p in table.descendants(os.getpid()))
    )


def _process_start_uptime() -> float:
    """Seconds after boot at which this process started."""
    text = Path("/proc/self/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[19]) / _clock_ticks()


@dataclass
class Sample:
    """One point in time: uptime, this run's CPU seconds, the machine's busy CPU seconds."""

    uptime: float
    own: float
    machine: float

    @classmethod
    def now(cls, table: ProcessTable | None = None) -> Sample:
        return cls(_uptime(), own_cpu_seconds(table), machine_busy_seconds())


@dataclass
class LoadReading:
    """The load around one moment (see the module docstring)."""

    load1: float
    own: float
    busy: list[tuple[int, str, float]]  # (pid, name, cores) of the other busy processes

    @property
    def others(self) -> float:
        """The load average without this run's estimated share (never below 0)."""
        return max(0.0, self.load1 - self.own)

    def busy_text(self) -> str:
        if not self.busy:
            return "none"
        return ", ".join(f"{name} {100 * share:.0f}%" for _, name, share in self.busy)


class LoadMonitor:
    """Samples this run's CPU use every 5 s (a daemon thread) to estimate its share of the load average, and takes
    the before / after readings.

    Usage::

        monitor = LoadMonitor().start()
        before = monitor.reading()
        monitor.mark()          # the measurement starts
        ...                     # measure
        during = monitor.others_cores_since_mark()
        after = monitor.reading()
    """

    def __init__(self, interval: float = MONITOR_SECONDS):
        self.interval = interval
        # This process's CPU before the thread starts is spread evenly since it started.
        self.samples: list[Sample] = [Sample(_process_start_uptime(), 0.0, float("nan"))]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mark: Sample | None = None

    def start(self) -> LoadMonitor:
        self._add(Sample.now())
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._add(Sample.now())

    def _add(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)

    def own_load(self, now: Sample) -> float:
        """This run's share of the 1-minute load average at ``now``: the load average's damped average applied to
        the run's CPU use (in cores) between consecutive samples."""
        with self._lock:
            points = [*self.samples, now]
        share = 0.0
        for earlier, later in zip(points, points[1:]):
            span = later.uptime - earlier.uptime
            if span <= 0:
                continue
            decay = math.exp(-span / EXP_SECONDS)
            share = share * decay + (later.own - earlier.own) / span * (1.0 - decay)
        return max(0.0, share)

    def reading(self, seconds: float = SAMPLE_SECONDS) -> LoadReading:
        """Load average, this run's share of it, and the other processes that used >= a quarter of a core during a
        ``seconds`` sample (this process sleeps meanwhile)."""
        first = ProcessTable.read()
        start = _uptime()
        time.sleep(seconds)
        second = ProcessTable.read()
        span = max(_uptime() - start, 1e-3)
        ours = second.family(os.getpid()) | first.family(os.getpid())
        busy = []
        for pid, cpu in second.cpu.items():
            if pid in ours or pid not in first.cpu or first.names.get(pid) != second.names[pid]:
                continue
            share = (cpu - first.cpu[pid]) / span
            if share >= BUSY_CORES:
                busy.append((pid, second.names[pid], share))
        now = Sample.now(second)
        self._add(now)
        return LoadReading(load1=load_average(), own=self.own_load(now), busy=sorted(busy, key=lambda b: -b[2]))

    def mark(self) -> None:
        """The measurement starts now (for `others_cores_since_mark`)."""
        self._mark = Sample.now()

    def others_cores_since_mark(self) -> float:
        """Cores the rest of the machine used on average since `mark`: busy CPU time minus this run's."""
        if self._mark is None:
            raise RuntimeError("LoadMonitor.mark() was not called")
        now = Sample.now()
        span = max(now.uptime - self._mark.uptime, 1e-3)
        return max(0.0, ((now.machine - self._mark.machine) - (now.own - self._mark.own)) / span)


@dataclass
class LoadVerdict:
    """The three readings of a run, the limit, and whether the run counts as loaded (with the reasons)."""

    before: LoadReading
    after: LoadReading
    during: float
    limit: float
    reasons: list[str]

    @property
    def loaded(self) -> bool:
        return bool(self.reasons)

    @classmethod
    def judge(cls, before: LoadReading, after: LoadReading, during: float, limit: float) -> LoadVerdict:
        reasons = []
        for when, reading in (("before", before), ("after", after)):
            if reading.others > limit:
                reasons.append(f"load average {when} the run without its own share {reading.others:.2f} > {limit:.2f}")
            if reading.busy:
                reasons.append(f"busy processes {when} the run: {reading.busy_text()}")
        if during > BUSY_CORES:
            reasons.append(f"the rest of the machine used {during:.2f} cores during the run (> {BUSY_CORES})")
        return cls(before, after, during, limit, reasons)

    def text(self) -> str:
        """One paragraph for the figures block."""
        b, a = self.before, self.after
        verdict = "within the limits" if not self.loaded else "LOADED (" + "; ".join(self.reasons) + ")"
        return (
            f"Load: 1-minute load average {b.load1:.2f} before the run, {a.load1:.2f} after "
            f"(this run's own share {b.own:.2f} and {a.own:.2f}, others {b.others:.2f} and {a.others:.2f}); "
            f"other busy processes (>= {100 * BUSY_CORES:.0f}% of a core) before: {b.busy_text()}, after: "
            f"{a.busy_text()}; the rest of the machine used {self.during:.2f} cores on average during the run. "
            f"Limit {self.limit:.2f} (others' load average; {self.limit / cores():.2g} x {cores()} cores): {verdict}."
        )
