"""The file store of every command: atomic writes, durable JSONL appends, samples files, the settings guard.

* [`write_atomic`], [`save_figure_atomic`], [`save_model_atomic`]: a reader or a crash never sees a half-written
  report, figure or checkpoint (temporary sibling, fsync, ``os.replace``).
* [`append_row`]: one JSON line, flushed and fsynced before the caller goes on (resumable outputs).
* [`read_samples`]: the lines of a samples file by question id, dropping a torn last line.
* [`check_run_settings`]: a resumable output folder refuses to mix runs made with other settings.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError

logger = logging.getLogger(__name__)


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, fsync, then ``os.replace``.

    A ``.gz`` path is gzip-compressed (with a fixed timestamp, so the same text gives the same bytes).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    with open(tmp, "wb") as handle:
        handle.write(data)
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


def save_model_atomic(model: Any, tokenizer: Any, output_dir: str | os.PathLike) -> Path:
    """Save a model and its tokenizer to ``output_dir`` through a sibling temporary folder and a rename."""
    output_dir = Path(output_dir)
    tmp = output_dir.with_name(f".{output_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    os.replace(tmp, output_dir)
    return output_dir


def append_row(handle, row: dict[str, Any]) -> None:
    """Append one JSON line and make it durable (flush + fsync) before going on."""
    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def read_samples(path: str | Path) -> dict[str, dict[str, Any]]:
    """The question lines of a samples file, by question key.

    A last line cut short by an interruption is dropped (and removed from the file so that appending is safe);
    a corrupt line anywhere else is an error. A ``.jsonl.gz`` file (written whole by [`write_atomic`]) is read as
    it is.
    """
    path = Path(path)
    if not path.exists():
        return {}
    compressed = path.suffix == ".gz"
    raw = gzip.decompress(path.read_bytes()).decode("utf-8") if compressed else path.read_text(encoding="utf-8")
    lines = raw.split("\n")
    done: dict[str, dict[str, Any]] = {}
    good: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            if any(rest.strip() for rest in lines[number:]):
                raise ValueError(f"{path}:{number} is not valid JSON ({err}); fix or delete the file") from err
            logger.warning("%s: dropping a truncated last line (question not finished)", path)
            continue
        done[str(item["id"])] = item
        good.append(line)
    clean = "".join(line + "\n" for line in good)
    if clean != raw and not compressed:
        write_atomic(path, clean)  # a kill now leaves either the old file or the clean one
    return done


def check_run_settings(
    output_dir: str | os.PathLike,
    config_name: str,
    settings: dict[str, Any],
    overwrite: bool,
    defaults: dict[str, Any] | None = None,
    what: str = "a run",
    data_subdir: str | None = None,
) -> None:
    """Guard a resumable output folder against mixing settings, then record ``settings`` in it.

    With ``overwrite`` the run's data is deleted first: the whole folder, or only ``output_dir/data_subdir`` when
    given (``sasc-ttrl eval`` keeps its reports). Otherwise, when ``output_dir/config_name`` exists (and, with
    ``data_subdir``, so does that folder), every setting must equal the recorded one, else a [`ConfigError`] names
    each changed setting (old, new). A setting missing from the record (added to the program after that run)
    counts as its value in ``defaults``.
    """
    output_dir = Path(output_dir)
    config_file = output_dir / config_name
    data = output_dir / data_subdir if data_subdir else output_dir
    if overwrite and data.exists():
        logger.info("--overwrite: deleting %s", data)
        shutil.rmtree(data)
    elif config_file.exists() and data.exists():
        previous = json.loads(config_file.read_text())
        defaults = defaults or {}
        old = {k: previous.get(k, defaults.get(k)) for k in settings}
        changed = {k: (old[k], v) for k, v in settings.items() if old[k] != v}
        if changed:
            raise ConfigError(
                f"{output_dir} holds {what} made with other settings {changed} (old, new); use another output_dir "
                "or --overwrite"
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(config_file, json.dumps(settings, indent=2) + "\n")


def field_defaults(cls: type) -> dict[str, Any]:
    """The plain default of each field of the dataclass ``cls`` (fields with a factory or no default are left out)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}
