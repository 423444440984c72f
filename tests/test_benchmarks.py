"""Every benchmark runs in its tiny configuration and records well-formed figures (so none can silently rot).

Each script runs as a user runs it (``python benchmarks/<name>.py --quick``), writing to a temporary copy of the
benchmarks file, never to the real BENCHMARKS.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
NUMBER = r"[-+]?[\d,]+(?:\.\d+)?"


def run_benchmark(name: str, tmp_path: Path, *extra: str) -> tuple[str, str]:
    """Run ``benchmarks/<name>.py --quick`` against a temporary benchmarks file; return (stdout, file text)."""
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\nHand-written text that must survive.\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick", "--benchmarks_file", str(target), *extra],
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


def recorded_block(text: str, marker: str) -> str:
    """The figures between the markers, checked for command, date and machine."""
    match = re.search(rf"<!-- figures: {marker} -->\n(.*?)<!-- /figures: {marker} -->", text, re.DOTALL)
    assert match, f"no figures block for {marker}"
    block = match.group(1)
    assert re.search(r"Latest figures \(\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC\)", block)
    assert re.search(r"python benchmarks/\S+\.py --quick --benchmarks_file", block)
    assert re.search(r"Machine: .+, \d+ cores, OMP_NUM_THREADS=1, torch \S+", block)
    assert text.count(f"<!-- figures: {marker} -->") == 1
    return block


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


def recorded_block_any(text: str, marker: str) -> str:
    match = re.search(rf"<!-- figures: {marker} -->\n(.*?)<!-- /figures: {marker} -->", text, re.DOTALL)
    assert match
    return match.group(1)


def test_step_overhead_quick(tmp_path):
    stdout, text = run_benchmark("step_overhead", tmp_path)
    block = recorded_block(text, "step_overhead")
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


@pytest.mark.parametrize(
    "name", ["step_overhead", "vote_latency", "entropy_memory", "generation_capture", "long_run_memory"]
)
def test_benchmark_has_a_docstring_with_its_command(name):
    source = (BENCHMARKS / f"{name}.py").read_text()
    assert f"python benchmarks/{name}.py" in source.split('"""')[1]
