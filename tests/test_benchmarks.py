"""Every benchmark runs in its tiny configuration and records well-formed figures (so none can silently rot).

Each script runs as a user runs it (``python benchmarks/<name>.py --quick``), writing to a temporary copy of the
benchmarks file, never to the real BENCHMARKS.md.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.vllm_marks import needs_vllm

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
NUMBER = r"[-+]?[\d,]+(?:\.\d+)?"


def run_benchmark(name: str, tmp_path: Path, *extra: str) -> tuple[str, str]:
    """Run ``benchmarks/<name>.py --quick --force`` against a temporary benchmarks file; return (stdout, file text).

    ``--force``: this machine is shared, so the smoke run records whatever the load (the figures then say so).
    """
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\nHand-written text that must survive.\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--force", "--benchmarks_file", str(target)]
    proc = subprocess.run(
        [*command, *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    text = target.read_text()
    assert "Hand-written text that must survive." in text
    assert (REPO / "BENCHMARKS.md").resolve() != target.resolve()
    return proc.stdout, text


def recorded_block(text: str, marker: str, threads: int = 1) -> str:
    """The figures between the markers, checked for command, date and machine."""
    match = re.search(rf"<!-- figures: {marker} -->\n(.*?)<!-- /figures: {marker} -->", text, re.DOTALL)
    assert match, f"no figures block for {marker}"
    block = match.group(1)
    assert re.search(r"Latest figures \(\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\)", block)
    assert re.search(r"python benchmarks/\S+\.py --quick --force --benchmarks_file", block)
    assert re.search(rf"Machine: .+, \d+ cores, OMP_NUM_THREADS={threads}, torch \S+", block)
    load = re.search(
        rf"Load: 1-minute load average ({NUMBER}) before the run, ({NUMBER}) after .*?"
        rf"the rest of the machine used ({NUMBER}) cores on average during the run\. Limit ({NUMBER}) .*?: "
        r"(within the limits|LOADED \(.+?\))\.( Recorded anyway \(--force\)\.)?\n",
        block,
    )
    assert load, "the figures lack their load reading"
    assert (load.group(5) == "within the limits") == (load.group(6) is None)  # a loaded run is recorded by --force
    assert block.index("Machine:") < block.index("Load:") < block.index("|")
    assert text.count(f"<!-- figures: {marker} -->") == 1
    check_headline_row(text, marker, block)
    return block


def check_headline_row(text: str, marker: str, block: str) -> None:
    """The block opens with its headline, copied from its own figures, and its family's summary shows it."""
    first, own_text = block.split("\n", 1)
    headline = re.fullmatch(r"<!-- headline: (\{.*\}) -->", first)
    assert headline, f"{marker} has no headline"
    values = json.loads(headline.group(1))
    assert values.get("figure") and values["date"] in own_text.split("\n", 1)[0]
    for value in values.values():
        for number in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", value):
            assert number in own_text.replace("**", ""), f"{marker}: {number} of {value!r} is not in its block"
    rows = [
        row
        for table in re.findall(r"<!-- summary: \S+ -->\n(.*?)<!-- /summary: ", text, re.DOTALL)
        for row in table_rows(table, r".*")
        if row[-1] == f"`{marker}`"
    ]
    assert len(rows) == 1, f"{marker} has {len(rows)} summary rows"
    keys = ("model", "setting", "figure", "target", "verdict", "date")
    assert rows[0][:6] == [values.get(key, "–").replace("|", "\\|") for key in keys]


def table_rows(block: str, first_cell: str) -> list[list[str]]:
    """Cells of the markdown table rows whose first cell matches ``first_cell`` (a regex)."""
    rows = []
    for line in block.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if re.fullmatch(first_cell, cells[0]):
                rows.append(cells)
    return rows


def as_number(cell: str) -> float:
    assert re.fullmatch(NUMBER + r"x?", cell), f"not a number: {cell!r}"
    return float(cell.rstrip("x").replace(",", ""))


def test_record_figures_replaces_its_block_and_keeps_the_rest(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import record

    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n\n## Mine\n\nIntro.\n\n<!-- figures: x -->\nold\n<!-- /figures: x -->\n\nOutro.\n")
    record.record_figures("x", "Mine", "| a |\n|---|\n| 1 |", path)
    record.record_figures("y", "New one", "new figures", path)
    text = path.read_text()
    assert "old" not in text and "| 1 |" in text
    assert text.index("Intro.") < text.index("| 1 |") < text.index("Outro.") < text.index("## New one")
    assert "new figures" in recorded_block_any(text, "y")
    record.record_figures("y", "New one", "newer", path)
    assert path.read_text().count("## New one") == 1 and "newer" in path.read_text()


@pytest.fixture
def bench(monkeypatch):
    """The benchmarks' shared modules (``record``, ``machine_load``), imported as the scripts import them."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import machine_load
    import record

    return record, machine_load


def test_own_share_follows_the_load_average_formula(bench):
    _, machine_load = bench
    monitor = machine_load.LoadMonitor()
    # One core busy for 60 s, sampled every 5 s: the kernel's damped average reaches 1 - 1/e.
    monitor.samples = [machine_load.Sample(t, t, 0.0) for t in range(0, 61, 5)]
    assert monitor.own_load(machine_load.Sample(60, 60, 0.0)) == pytest.approx(1 - math.exp(-1))
    # Then idle for a minute: the share decays by another factor e.
    assert monitor.own_load(machine_load.Sample(120, 60, 0.0)) == pytest.approx((1 - math.exp(-1)) / math.e)


def test_busy_descendant_is_own_and_busy_stranger_is_named(bench):
    _, machine_load = bench
    spin = ["bash", "-c", "while :; do :; done"]
    child = subprocess.Popen(spin)
    # A spinner that is not ours: its parent exits at once, so it is re-parented away from this process.
    launcher = subprocess.run(
        ["bash", "-c", "(while :; do :; done) >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        start_new_session=True,
        check=True,
    )
    stranger = int(launcher.stdout.strip())
    try:
        before = machine_load.own_cpu_seconds()
        reading = machine_load.LoadMonitor().reading(seconds=1.5)
        after = machine_load.own_cpu_seconds()
        assert after - before > 0.2  # the child's CPU counts as this run's
        busy_pids = {pid for pid, _, _ in reading.busy}
        assert stranger in busy_pids and child.pid not in busy_pids
        assert reading.others == pytest.approx(max(0.0, reading.load1 - reading.own))
    finally:
        child.kill()
        child.wait()
        os.kill(stranger, signal.SIGKILL)


def test_cpu_of_a_descendants_finished_children_is_own(bench):
    _, machine_load = bench
    # A live child that ran a busy grandchild and waited for it (as the math-verify server re-forks its workers).
    child = subprocess.Popen(["bash", "-c", "timeout 1 bash -c 'while :; do :; done'; sleep 30"])
    try:
        time.sleep(1.5)
        table = machine_load.ProcessTable.read()
        assert table.cpu[child.pid] < 0.2 and table.waited_children_cpu[child.pid] > 0.5
        assert machine_load.own_cpu_seconds(table) - sum(os.times()[:4]) > 0.5
    finally:
        child.kill()
        child.wait()


def _fake_readings(monkeypatch, machine_load, load1: float, busy: list, during: float = 0.0) -> None:
    reading = machine_load.LoadReading(load1=load1, own=0.1, busy=busy)
    monkeypatch.setattr(machine_load.LoadMonitor, "reading", lambda self, seconds=2.0: reading)
    monkeypatch.setattr(machine_load.LoadMonitor, "others_cores_since_mark", lambda self: during)


def test_loaded_runs_are_printed_not_recorded_unless_forced(bench, monkeypatch, tmp_path, capsys):
    record, machine_load = bench
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n")
    table = "| a |\n|---|\n| 1 |"
    _fake_readings(monkeypatch, machine_load, load1=5.0, busy=[(1, "trainer", 0.97)])
    args = record.RecordingArguments(benchmarks_file=str(path), max_load=1.0)
    assert record.measure_and_record(args, "x", "X", lambda: table) is False
    out = capsys.readouterr().out
    assert "NOT RECORDED" in out and "| 1 |" in out and "busy processes before the run: trainer 97%" in out
    assert path.read_text() == "# Benchmarks\n"
    forced = record.RecordingArguments(benchmarks_file=str(path), max_load=1.0, force=True)
    assert record.measure_and_record(forced, "x", "X", lambda: table) is True
    block = recorded_block_any(path.read_text(), "x")
    assert "LOADED (load average before the run without its own share 4.90 > 1.00" in block
    assert "Recorded anyway (--force)." in block
    # Quiet before and after, but the rest of the machine was busy while measuring.
    _fake_readings(monkeypatch, machine_load, load1=0.3, busy=[], during=0.8)
    assert record.measure_and_record(args, "y", "Y", lambda: table) is False
    assert "the rest of the machine used 0.80 cores during the run" in capsys.readouterr().out
    # Quiet throughout: recorded, and the block says so.
    _fake_readings(monkeypatch, machine_load, load1=0.3, busy=[], during=0.05)
    assert record.measure_and_record(args, "y", "Y", lambda: table) is True
    block = recorded_block_any(path.read_text(), "y")
    assert "Load: 1-minute load average 0.30 before the run" in block and "within the limits." in block
    # --no_record prints only.
    no_record = record.RecordingArguments(benchmarks_file=str(path), no_record=True)
    text = path.read_text()
    assert record.measure_and_record(no_record, "z", "Z", lambda: table) is False
    assert path.read_text() == text


def test_wait_quiet_gives_up_without_measuring(bench, monkeypatch, tmp_path):
    record, machine_load = bench
    _fake_readings(monkeypatch, machine_load, load1=5.0, busy=[])
    monkeypatch.setattr(record, "POLL_SECONDS", 0.01)
    measured = []
    args = record.RecordingArguments(benchmarks_file=str(tmp_path / "B.md"), max_load=1.0, wait_quiet=0.05)
    with pytest.raises(SystemExit, match="not measured: the machine was not quiet after 0 s"):
        record.measure_and_record(args, "x", "X", lambda: measured.append(1) or "figures")
    assert measured == [] and not (tmp_path / "B.md").exists()
    # The same wait on a machine that becomes quiet measures.
    _fake_readings(monkeypatch, machine_load, load1=0.2, busy=[])
    assert record.measure_and_record(args, "x", "X", lambda: measured.append(1) or "figures") is True
    assert measured == [1]


def test_recording_arguments_errors(bench):
    record, _ = bench
    with pytest.raises(ValueError, match="max_load"):
        record.RecordingArguments(max_load=-1)
    with pytest.raises(ValueError, match="wait_quiet"):
        record.RecordingArguments(wait_quiet=-5)


def recorded_block_any(text: str, marker: str) -> str:
    match = re.search(rf"<!-- figures: {marker} -->\n(.*?)<!-- /figures: {marker} -->", text, re.DOTALL)
    assert match
    return match.group(1)


@pytest.mark.parametrize("lora", [0, 4])
def test_step_overhead_quick(tmp_path, lora):
    stdout, text = run_benchmark("step_overhead", tmp_path, *(["--lora", str(lora)] if lora else []))
    block = recorded_block(text, "step_overhead" + (f"_lora{lora}" if lora else ""))
    assert (f"(LoRA rank {lora})" if lora else "(full model)") in block
    assert "| ratio B / A |" in stdout
    (ratio_row,) = [line for line in block.splitlines() if re.match(rf"\| {NUMBER} \| {NUMBER} \| <= 1.05 \|", line)]
    ratio = float(ratio_row.split("|")[1])
    assert 0.2 < ratio < 5.0
    assert ratio_row.rstrip(" |").endswith(("met", "MISSED"))
    assert "(identical across variants and repetitions)" in block  # both variants sampled the same tokens
    rows = {cells[0]: cells for cells in table_rows(block, r"[a-z ]+")}
    for part in ("step", "generate", "entropy hook", "reward", "answer parsing", "gather", "classes", "vote"):
        assert part in rows, f"breakdown lacks {part!r}"
        a, b, diff = (as_number(c) for c in rows[part][2:5])
        assert a >= 0 and b >= 0 and abs(b - a - diff) < 0.11
    assert as_number(rows["step"][2]) > 0 and as_number(rows["step"][3]) > 0
    assert as_number(rows["entropy hook"][2]) == 0 < as_number(rows["entropy hook"][3])  # only SASC hooks


def test_vote_latency_quick(tmp_path):
    _, text = run_benchmark("vote_latency", tmp_path)
    block = recorded_block(text, "vote_latency")
    assert re.search(r"64 rollouts: \d+ answered, \d+ equivalence classes", block)
    rows = {cells[0].split(":")[0].split(" (")[0]: cells for cells in table_rows(block, r"(cold|warm|fresh|first).*")}
    assert set(rows) == {"cold", "warm", "fresh verify worker", "first call in the process"}
    assert all(as_number(cells[1]) > 0 for cells in rows.values())
    assert rows["cold"][3] in ("met", "MISSED") and rows["warm"][3] in ("met", "MISSED")


def test_entropy_memory_quick(tmp_path):
    _, text = run_benchmark("entropy_memory", tmp_path)
    block = recorded_block(text, "entropy_memory")
    rows = table_rows(block, NUMBER)
    assert [(r[0], r[3].split(" (")[0]) for r in rows] == [
        (length, variant)
        for length in ("64", "128")
        for variant in ("top-k", "full, same chunks", "full, TRL entropy_from_logits")
    ]
    for length in ("64", "128"):
        topk, same, trl = (r for r in rows if r[0] == length)
        extra_topk, extra_same, extra_trl = (as_number(r[4]) for r in (topk, same, trl))
        # Full-vocabulary entropy materialises chunk x vocabulary floats; top-k never does.
        assert extra_topk < extra_same and extra_topk < extra_trl
        assert all(as_number(r[6]) > 0 for r in (topk, same, trl))


def test_step_memory_quick(tmp_path):
    _, text = run_benchmark("step_memory", tmp_path)
    block = recorded_block(text, "step_memory")
    peaks = {cells[0]: as_number(cells[1]) for cells in table_rows(block, r"[AB]: .*")}
    assert set(peaks) == {"A: GRPOTrainer + plain majority", "B: SASCTrainer + sasc"}
    assert all(value > 0.1 for value in peaks.values())  # GiB: at least the interpreter, torch and the model
    ratio = float(re.search(r"B / A = ([\d.]+)", block).group(1))
    assert ratio == pytest.approx(peaks["B: SASCTrainer + sasc"] / peaks["A: GRPOTrainer + plain majority"], rel=0.02)
    phases = table_rows(block, r"(model loaded|generation|rewards|loss forward|backward|optimizer step|end of run)")
    assert [cells[0] for cells in phases][:2] == ["model loaded", "generation"] and len(phases) == 7
    for cells in phases:  # a process's peak never falls from one phase to the next
        assert cells[1] != "-" and cells[2] != "-"
    for column in (1, 2):
        values = [as_number(cells[column]) for cells in phases]
        assert values == sorted(values)
    lengths = re.search(r"Mean completion length of each step .*: A ([\d.]+); B ([\d.]+)\.", block)
    assert lengths and 0 < float(lengths.group(1)) <= 26 and float(lengths.group(1)) == float(lengths.group(2))


def test_generation_capture_quick(tmp_path):
    _, text = run_benchmark("generation_capture", tmp_path)
    block = recorded_block(text, "generation_capture")
    assert "(the same in every variant and repetition)" in block
    rows = {cells[0]: cells for cells in table_rows(block, r"generate.*")}
    assert set(rows) == {"generate", "generate + hook", "generate + forward pass"}
    assert as_number(rows["generate"][3]) == 1.0
    for cells in rows.values():
        seconds, tokens_per_s = as_number(cells[1]), as_number(cells[2])
        assert seconds > 0 and tokens_per_s > 0
    hook = re.search(rf"hook itself .*?: ({NUMBER}) ms per batch, ({NUMBER})% of plain generation", block)
    assert hook and float(hook.group(1)) > 0


def test_dynamic_temperature_quick(tmp_path):
    _, text = run_benchmark("dynamic_temperature", tmp_path)
    block = recorded_block(text, "dynamic_temperature")
    rows = {cells[0]: cells for cells in table_rows(block, r"(batched|one-prompt).*")}
    assert set(rows) == {"batched, dynamic", "batched, fixed T", "one-prompt loop (authors)"}
    for cells in rows.values():
        assert as_number(cells[1]) > 0 and as_number(cells[2]) > 0 and as_number(cells[3]) > 0
    speedup = re.search(rf"one-prompt loop: \*\*({NUMBER})x\*\* tokens per second", block)
    assert speedup and float(speedup.group(1)) > 0


def test_dynamic_temperature_study_quick(tmp_path):
    command = [sys.executable, str(REPO / "studies" / "dynamic_temperature_study.py"), "--quick",
               "--output_root", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {cells[0]: cells for cells in table_rows(proc.stdout, r"(T = 0.8|dynamic).*")}
    assert len(rows) == 2
    for arm in ("fixed", "dynamic"):
        config = (tmp_path / arm / "build" / "build_config.json").read_text()
        assert ('"dynamic_temperature": true' in config) == (arm == "dynamic")
        assert (tmp_path / arm / "calibrate" / "calibration_report.json").exists()


@pytest.mark.slow  # a real 2-process training run (6 steps), about a minute
def test_long_run_memory_quick(tmp_path):
    _, text = run_benchmark("long_run_memory", tmp_path)
    block = recorded_block(text, "long_run_memory")
    samples = table_rows(block, r"\d+")[:4]  # part 1: read at steps 1, 2, 4 and 6 (or just after)
    steps = [int(r[0]) for r in samples]
    assert steps == sorted(set(steps)) and steps[0] >= 1 and steps[-1] == 6
    header = next(line for line in block.splitlines() if line.startswith("| step |"))
    roles = [c.strip() for c in header.strip("|").split("|")][1:]
    assert {"rank 0", "rank 1"} <= set(roles)
    for row in samples:
        ranks = [as_number(row[1 + roles.index(r)]) for r in ("rank 0", "rank 1")]
        assert all(100 < mib < 20_000 for mib in ranks)  # a torch process holding a model
    verdicts = {cells[0]: cells for cells in table_rows(block, r"(rank|server|worker) \d")}
    assert {"rank 0", "rank 1"} <= set(verdicts)
    # Part 2: every cache's charged bytes stay within its budget.
    budgets = dict(re.findall(rf"(parsed answers|verdicts \(worker\)|timed verdicts) ({NUMBER}) MiB \(peak", block))
    assert len(budgets) == 3 and sum(float(b) for b in budgets.values()) == 32
    stream = table_rows(block, r"\d{2,}")[-10:]
    assert [int(r[0]) for r in stream] == list(range(30, 301, 30))
    for row in stream:
        for cell, budget in zip(row[1:4], budgets.values()):
            assert 0 < as_number(cell.split(" (")[0]) <= float(budget)
    png = re.search(r"!\[[^]]*\]\(([^)]+\.png)\)", block)
    assert png and (tmp_path / png.group(1)).stat().st_size > 10_000


ALL_BENCHMARKS = [
    "step_overhead",
    "vote_latency",
    "entropy_memory",
    "generation_capture",
    "demo_wall_time",
    "vllm_logprobs",
    "eval_throughput",
    "long_run_memory",
    "dynamic_temperature",
    "step_memory",
]


@pytest.mark.parametrize("name", ALL_BENCHMARKS)
def test_benchmark_has_a_docstring_with_its_command(name):
    source = (BENCHMARKS / f"{name}.py").read_text()
    assert f"python benchmarks/{name}.py" in source.split('"""')[1]


@pytest.mark.parametrize("name", ALL_BENCHMARKS)
def test_every_benchmark_records_through_the_load_rule(name):
    # One place decides whether figures are recorded: no benchmark writes BENCHMARKS.md by itself.
    source = (BENCHMARKS / f"{name}.py").read_text()
    assert "record.measure_and_record(" in source and "record_figures(" not in source
    assert "(record.RecordingArguments)" in source
    # The studies (studies/) write their own summaries (outputs/, docs/studies/), not BENCHMARKS.md figures.
    helpers = ["machine_load", "record"]
    assert sorted(p.stem for p in BENCHMARKS.glob("*.py")) == sorted([*ALL_BENCHMARKS, *helpers])


def test_demo_wall_time_headline_names_the_settings_the_demo_ran_with(monkeypatch):
    """A block's summary row names the demo's settings from its demo_config.json and judges time and peak."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import demo_wall_time

    config = {"min_label_share": 0.5, "micro_batches": 6, "gradient_checkpointing": True, "seed": 0}
    settings = demo_wall_time.settings_text(config)
    assert settings == "min_label_share 0.5, 6 micro-batch(es), gradient checkpointing on"
    args = demo_wall_time.DemoWallTimeArguments(seeds=[0, 1], threads=2)
    quick = ["sasc-ttrl demo --quick", "–", "20", "120", "0.63", "–", ""]
    rows = [
        quick,
        ["sasc-ttrl demo", "0", "449", "600", "2.10", "3", ""],
        ["sasc-ttrl demo", "1", "453", "600", "2.17", "3", ""],
    ]
    head = demo_wall_time.headline(args, rows, settings)
    assert head["setting"] == f"seeds 0 1, {settings}, OMP_NUM_THREADS=2"
    assert head["figure"] == "demo 449 / 453 s, peak 2.17 GB; --quick 20 s" and head["verdict"] == "met"
    over = [quick, ["sasc-ttrl demo", "0", "449", "600", "3.06", "3", ""]]
    assert demo_wall_time.headline(args, over, settings)["verdict"] == "MISSED"  # a peak over 3 GB misses


@pytest.mark.slow
def test_demo_wall_time_quick(tmp_path):
    _, text = run_benchmark("demo_wall_time", tmp_path, "--output_root", str(tmp_path / "demo"))
    block = recorded_block(text, "demo_wall_time", threads=2)
    (row,) = table_rows(block, r"sasc-ttrl demo --quick.*")
    assert as_number(row[2]) > 0 and 0.2 < as_number(row[4]) < 24 and "eval_base" in row[6]  # seconds, peak GB


@needs_vllm
def test_vllm_logprobs_quick(tmp_path):
    _, text = run_benchmark("vllm_logprobs", tmp_path)
    block = recorded_block(text, "vllm_logprobs")
    assert "(identical in every variant and repetition)" in block  # the four variants sampled the same tokens
    assert "with and without text: identical." in block  # detokenize=False changes no entropy or logprob
    (ratio_row,) = table_rows(block, NUMBER)
    ratio, alone = as_number(ratio_row[0]), as_number(ratio_row[1])
    assert 0.2 < ratio < 5 and 0.2 < alone < 5 and ratio_row[2] == "<= 1.05" and ratio_row[3] in ("met", "MISSED")
    variants = {cells[0]: cells for cells in table_rows(block, r"[A-D]: .*")}
    assert list(variants) == ["A: TTRL", "B: SASC, text", "C: SASC", "D: TTRL, no text"]
    assert as_number(variants["A: TTRL"][3]) == 1.0 and all(as_number(c[2]) > 0 for c in variants.values())
    part_rows = table_rows(block, r"(?!part$|variant$)[a-z ].*")  # the breakdown, without the header rows
    parts = {cells[0]: [as_number(c) for c in cells[2:6]] for cells in part_rows}
    # Only the SASC variants reduce entropies; only the variants with text run the detokenizers.
    assert parts["entropies"][0] == 0 == parts["entropies"][3] and parts["entropies"][1] > 0 < parts["entropies"][2]
    assert parts["of which token text"][1] > 0 == parts["of which token text"][2]
    assert parts["completion text"][0] > 0 == parts["completion text"][3]
    assert all(parts["generate"][i] <= parts["total"][i] for i in range(4))


@needs_vllm
def test_eval_throughput_quick(tmp_path):
    _, text = run_benchmark("eval_throughput", tmp_path)
    block = recorded_block(text, "eval_throughput")
    rows = {cells[0]: cells for cells in table_rows(block, r"vllm|transformers")}
    assert set(rows) == {"vllm", "transformers"}
    for cells in rows.values():
        assert as_number(cells[1]) >= 0 and as_number(cells[2]) > 0 and as_number(cells[4]) > 0
        assert cells[6] == "yes"  # every backend is seeded per question: the same samples every repetition
    assert as_number(rows["vllm"][1]) > 0  # starting the engine takes seconds; the tiny model loads in milliseconds
    assert as_number(rows["transformers"][5]) == 1.0
    assert re.search(r"Faster on this CPU: \*\*(vllm|transformers)\*\*", block)


SMALL_BENCHMARKS = """# Benchmarks

Intro.

## Step cost

Hand-written intro.

<!-- figures: cost -->
old tiny figures
<!-- /figures: cost -->

Reading of the step cost.

## Other

<!-- figures: other -->
other figures
<!-- /figures: other -->
"""


def summary_rows(text: str, family: str) -> list[list[str]]:
    """The rows of ``family``'s summary table (the header excluded)."""
    match = re.search(rf"<!-- summary: {family} -->\n(.*?)<!-- /summary: {family} -->", text, re.DOTALL)
    assert match, f"no summary table for {family}"
    return table_rows(match.group(1), r"(?!model$).*")


def test_summary_table_is_regenerated_with_a_row_per_block(bench, tmp_path):
    record, _ = bench
    path = tmp_path / "B.md"
    path.write_text(SMALL_BENCHMARKS)
    tiny = {"model": "tiny", "setting": "full", "figure": "B / A 0.99", "target": "<= 1.05", "verdict": "met"}
    record.record_figures("cost", "Step cost", "| a |\n|---|\n| 1 |", path, headline=tiny)
    lora = {"model": "smol", "setting": "LoRA 16", "figure": "B / A 1.01", "target": "<= 1.03", "verdict": "met"}
    record.record_figures("cost_smol_lora16", "Step cost (smol, LoRA)", "| a |\n|---|\n| 2 |", path,
                          headline=lora, family="cost")  # fmt: skip
    text = path.read_text()
    # The table sits right under the family's heading, above the hand-written text; the new block goes after the
    # family's last block, under its own ### heading, before the family's reading.
    assert text.index("## Step cost\n\n<!-- summary: cost -->") < text.index("Hand-written intro.")
    assert text.index("<!-- /figures: cost -->") < text.index("### Step cost (smol, LoRA)")
    assert text.index("<!-- /figures: cost_smol_lora16 -->") < text.index("Reading of the step cost.")
    rows = summary_rows(text, "cost")
    assert [r[0] for r in rows] == ["tiny", "smol"] and [r[-1] for r in rows] == ["`cost`", "`cost_smol_lora16`"]
    assert rows[1][:5] == ["smol", "LoRA 16", "B / A 1.01", "<= 1.03", "met"]
    date = re.search(r"Latest figures \(([^)]+)\)", recorded_block_any(text, "cost_smol_lora16")).group(1)
    assert rows[1][5] == date and rows[1][6] == "–"  # the block's own date; no load reading given
    assert "summary: other" not in text  # only the recorded family's table is written
    # Re-recording the first block replaces its row, in place.
    again = dict(tiny, figure="B / A 0.97")
    record.record_figures("cost", "Step cost", "| a |\n|---|\n| 3 |", path, headline=again, load=LOAD_LINE)
    text = path.read_text()
    rows = summary_rows(text, "cost")
    assert [r[-1] for r in rows] == ["`cost`", "`cost_smol_lora16`"] and rows[0][2] == "B / A 0.97"
    assert rows[0][6] == "within the limits" and "B / A 0.99" not in text
    assert text.count("<!-- summary: cost -->") == 1 and text.count("### Step cost (smol, LoRA)") == 1
    first = recorded_block_any(text, "cost").splitlines()[0]
    assert record.parse_headline(first) == {**again, "date": rows[0][5]}


LOAD_LINE = (
    "Load: 1-minute load average 0.30 before the run, 0.30 after (this run's own share 0.10 and 0.10, others 0.20 and "
    "0.20); other busy processes (>= 25% of a core) before: none, after: none; the rest of the machine used 0.00 "
    "cores on average during the run. Limit 1.00 (others' load average; 0.5 x 2 cores): within the limits."
)


def test_a_block_without_headline_gets_a_row_that_says_so(bench, tmp_path):
    record, _ = bench
    path = tmp_path / "B.md"
    path.write_text(SMALL_BENCHMARKS)
    record.record_figures("cost", "Step cost", "figures", path, headline={"model": "tiny", "figure": "0.99"})
    # An older record.py (or a hand edit) replaces the block by one without a headline: no crash, a clear row.
    text = path.read_text()
    old_format = "<!-- figures: cost -->\nLatest figures (2026-12-01 10:00 UTC), command:\n\nfigures\n"
    text = re.sub(r"<!-- figures: cost -->\n.*?(?=<!-- /figures: cost -->)", old_format, text, flags=re.DOTALL)
    path.write_text(text)
    record.main(["--summaries", str(path)])
    (row,) = summary_rows(path.read_text(), "cost")
    assert row == ["–", "–", "(no headline)", "–", "–", "2026-12-01 10:00 UTC", "–", "`cost`"]
    # A block recorded without a headline (a benchmark that passes none) is a family of its own with that row.
    record.record_figures("other", "Other", "figures", path)
    (row,) = summary_rows(path.read_text(), "other")
    assert row[2] == "(no headline)" and row[-1] == "`other`"


def test_headline_values_are_checked(bench, tmp_path):
    record, _ = bench
    with pytest.raises(ValueError, match="unknown headline keys"):
        record.headline_line({"speed": 1})
    with pytest.raises(ValueError, match="-->"):
        record.headline_line({"figure": "a --> b"})
    line = record.headline_line({"figure": 1.5, "model": "m", "target": None})
    assert line == '<!-- headline: {"model": "m", "figure": "1.5"} -->'
    assert record.parse_headline(line + "\nrest") == {"model": "m", "figure": "1.5"}
    assert record.summary_row("x", "<!-- headline: {oops -->\n")[2] == "(unreadable headline)"
    with pytest.raises(ValueError, match="cannot belong to family"):
        record.record_figures("other", "Other", "figures", tmp_path / "B.md", family="cost")


def markdown_sections(text: str) -> list[str]:
    """The ``## `` sections of a markdown file (each from its heading to the next)."""
    return re.split(r"(?m)^(?=## )", text)[1:]


def test_benchmarks_md_has_one_summary_per_benchmark_matching_its_blocks(bench):
    record, _ = bench
    text = (REPO / "BENCHMARKS.md").read_text()
    assert record.update_all_summaries(text) == text  # no table is stale
    seen = []
    for section in markdown_sections(text):
        blocks = [m for m in record.BLOCK_PATTERN.finditer(section)]
        if not blocks:
            assert "<!-- summary:" not in section
            continue
        (family,) = re.findall(r"<!-- summary: (\S+) -->", section)
        heading = section.split("\n", 1)[0]
        assert section.startswith(f"{heading}\n\n<!-- summary: {family} -->"), "the table comes first"
        assert section.index("<!-- /summary:") < blocks[0].start()
        rows = summary_rows(section, family)
        assert [r[-1] for r in rows] == [f"`{m['name']}`" for m in blocks]  # one row per block, in order
        assert all(record.family_of(m["name"], {family}) == family for m in blocks)
        for row, block in zip(rows, blocks):
            headline = record.parse_headline(block["body"])
            assert headline is not None, f"{block['name']} has no headline"
            assert row[:6] == [headline.get(k, "–").replace("|", "\\|") for k in record.HEADLINE_KEYS]
            # Copied from the block: each number of the headline appears in the block's own text.
            own_text = block["body"].split("\n", 1)[1].replace("**", "")
            for value in headline.values():
                for number in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", value):
                    assert number in own_text, f"{block['name']}: {number} of {value!r} is not in its block"
            assert headline["date"] in own_text.split("\n", 1)[0]
        seen.append(family)
    assert len(seen) == len(set(seen))  # one section per benchmark
    assert {"step_overhead", "step_memory"} <= set(seen)
