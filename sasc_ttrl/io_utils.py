"""Atomic file writes (a reader or a crash never sees a half-written report) and the settings guard of resumable
output folders."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def save_figure_atomic(fig, path: str | os.PathLike, **kwargs) -> Path:
    """``fig.savefig`` through a temporary file and ``os.replace`` (PNG unless ``format`` is given)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format=kwargs.pop("format", path.suffix.lstrip(".") or "png"), **kwargs)
    os.replace(tmp, path)
    return path


def check_run_settings(
    output_dir: str | os.PathLike,
    config_name: str,
    settings: dict[str, Any],
    overwrite: bool,
    defaults: dict[str, Any] | None = None,
    what: str = "a run",
) -> None:
    """Guard a resumable output folder against mixing settings, then record ``settings`` in it.

    With ``overwrite`` the folder is deleted first. Otherwise, when ``output_dir/config_name`` exists, every setting
    must equal the recorded one, else a ValueError names each changed setting (old, new). A setting missing from the
    record (added to the program after that run) counts as its value in ``defaults``.
    """
    output_dir = Path(output_dir)
    config_file = output_dir / config_name
    if overwrite and output_dir.exists():
        shutil.rmtree(output_dir)
    elif config_file.exists():
        previous = json.loads(config_file.read_text())
        defaults = defaults or {}
        old = {k: previous.get(k, defaults.get(k)) for k in settings}
        changed = {k: (old[k], v) for k, v in settings.items() if old[k] != v}
        if changed:
            raise ValueError(
                f"{output_dir} holds {what} made with other settings {changed} (old, new); use another output_dir "
                "or --overwrite"
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(config_file, json.dumps(settings, indent=2) + "\n")


def field_defaults(cls: type) -> dict[str, Any]:
    """The plain default of each field of the dataclass ``cls`` (fields with a factory or no default are left out)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}
