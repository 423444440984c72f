"""Atomic writes leave either the old or the new file, never a partial one, and no temporary files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest

from sasc_ttrl.data.store import check_run_settings, field_defaults, save_figure_atomic, write_atomic


def test_write_atomic_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"


def test_save_figure_atomic_writes_a_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    path = save_figure_atomic(fig, tmp_path / "plot.png", dpi=50)
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["plot.png"]


def test_check_run_settings_records_refuses_and_overwrites(tmp_path):
    out = tmp_path / "run"
    check_run_settings(out, "cfg.json", {"k": 4, "rule": "any"}, overwrite=False)
    assert json.loads((out / "cfg.json").read_text()) == {"k": 4, "rule": "any"}
    (out / "rows.jsonl").write_text("{}\n")
    check_run_settings(out, "cfg.json", {"k": 4, "rule": "any"}, overwrite=False)  # same settings: resume
    assert (out / "rows.jsonl").exists()
    with pytest.raises(ValueError, match=r"holds step labels made with other settings \{'k': \(4, 8\)\}"):
        check_run_settings(out, "cfg.json", {"k": 8, "rule": "any"}, overwrite=False, what="step labels")
    # a setting the record lacks counts as its default: equal resumes, different is refused
    check_run_settings(out, "cfg.json", {"k": 4, "rule": "any", "style": "math"}, False, defaults={"style": "math"})
    (out / "cfg.json").write_text(json.dumps({"k": 4, "rule": "any"}))
    with pytest.raises(ValueError, match="style"):
        check_run_settings(out, "cfg.json", {"k": 4, "rule": "any", "style": "x"}, False, defaults={"style": "math"})
    check_run_settings(out, "cfg.json", {"k": 8}, overwrite=True)
    assert not (out / "rows.jsonl").exists() and json.loads((out / "cfg.json").read_text()) == {"k": 8}


def test_field_defaults_keeps_plain_defaults_only():
    @dataclass
    class Args:
        name: str
        k: int = 4
        tags: list = field(default_factory=list)

    assert field_defaults(Args) == {"k": 4}


def test_gz_files_are_written_reproducibly_and_read_back(tmp_path):
    import gzip

    from sasc_ttrl.data.store import read_samples

    rows = [{"id": "a", "samples": [1]}, {"id": "b", "samples": [2]}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    first, second = tmp_path / "one.jsonl.gz", tmp_path / "two.jsonl.gz"
    write_atomic(first, text)
    write_atomic(second, text)
    assert first.read_bytes() == second.read_bytes()  # fixed gzip timestamp
    assert gzip.decompress(first.read_bytes()).decode() == text
    assert read_samples(first) == {"a": rows[0], "b": rows[1]}
    assert first.read_bytes() == second.read_bytes()  # reading never rewrites a compressed file


def test_check_run_settings_with_a_data_subdir_keeps_the_rest(tmp_path):
    from sasc_ttrl.core.errors import ConfigError

    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "a.jsonl").write_text("{}\n")
    (tmp_path / "metrics.json").write_text("{}")
    check_run_settings(tmp_path, "cfg.json", {"n": 4}, overwrite=False, data_subdir="samples")
    with pytest.raises(ConfigError, match=r"'n': \(4, 8\)"):
        check_run_settings(tmp_path, "cfg.json", {"n": 8}, overwrite=False, data_subdir="samples")
    check_run_settings(tmp_path, "cfg.json", {"n": 8}, overwrite=True, data_subdir="samples")
    assert not (tmp_path / "samples").exists() and (tmp_path / "metrics.json").exists()
    # Without samples the recorded settings do not bind (nothing would be mixed).
    check_run_settings(tmp_path, "cfg.json", {"n": 16}, overwrite=False, data_subdir="samples")
