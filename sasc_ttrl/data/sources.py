"""Where data comes from: a benchmark name (``math500``, ``amc``, ``aime24``, ``gsm8k``), a hub data set, a local
file (json / jsonl / parquet / csv) or a local folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)
BENCHMARK_FILES = {"math500": "math500.json", "amc": "amc.json", "aime24": "aime24.json", "gsm8k": "gsm8k.json"}
LOCAL_SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def benchmarks_dir() -> Path | None:
    """Folder of the named benchmark files: ``$SASC_TTRL_BENCHMARKS_DIR``, else ``../shared/data/benchmarks``."""
    env = os.environ.get("SASC_TTRL_BENCHMARKS_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parents[2]
    candidates += [
        here.parent / "shared" / "data" / "benchmarks",
        Path.cwd().parent / "shared" / "data" / "benchmarks",
    ]
    for path in candidates:
        if path.is_dir():
            return path
    return None


def resolve_data_source(name_or_path: str) -> str:
    """Turn a benchmark name (``math500``, ``amc``, ``aime24``, ``gsm8k``) into its local file; pass others through."""
    if name_or_path in BENCHMARK_FILES:
        folder = benchmarks_dir()
        if folder is None:
            raise FileNotFoundError(
                f"benchmark {name_or_path!r} is looked up in $SASC_TTRL_BENCHMARKS_DIR or ../shared/data/benchmarks, "
                "and neither exists; pass a hub name or a local file instead"
            )
        return str(folder / BENCHMARK_FILES[name_or_path])
    return name_or_path


def load_raw_dataset(name_or_path: str, split: str = "train", config: str | None = None):
    """Load a data set by hub name, local file (json/jsonl/parquet/csv), local folder, or benchmark name."""
    from datasets import load_dataset

    source = resolve_data_source(name_or_path)
    path = Path(source)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix not in LOCAL_SUFFIXES:
            raise ValueError(f"unsupported data file {path}: expected one of {sorted(LOCAL_SUFFIXES)}")
        return load_dataset(LOCAL_SUFFIXES[suffix], data_files=str(path), split="train")
    if path.is_dir():
        return load_dataset(str(path), split=split)
    if source.startswith((".", "/")) or os.sep in source and not _looks_like_hub_id(source):
        raise FileNotFoundError(f"data file {source} does not exist")
    return load_dataset(source, name=config, split=split)


def _looks_like_hub_id(source: str) -> bool:
    return source.count("/") == 1 and not source.startswith(("/", "."))
