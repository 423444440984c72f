"""Where data comes from: a benchmark name (``math500``, ``amc``, ``aime24``, ``gsm8k``), a hub data set, a local
file (json / jsonl / parquet / csv) or a local folder (laid out like a hub repository, or written by
``save_to_disk``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)
BENCHMARK_FILES = {"math500": "math500.json", "amc": "amc.json", "aime24": "aime24.json", "gsm8k": "gsm8k.json"}
SHIPPED_BENCHMARKS = Path(__file__).resolve().parent / "benchmark_files"
LOCAL_SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def benchmarks_dir() -> Path:
    """Folder of the named benchmark files: ``$SASC_TTRL_BENCHMARKS_DIR`` when set, else the copies shipped with
    the package (``sasc_ttrl/data/benchmark_files``, provenance and licences in its PROVENANCE.md)."""
    env = os.environ.get("SASC_TTRL_BENCHMARKS_DIR")
    return Path(env) if env else SHIPPED_BENCHMARKS


def resolve_data_source(name_or_path: str) -> str:
    """Turn a benchmark name (``math500``, ``amc``, ``aime24``, ``gsm8k``) into its file; pass others through.

    Raises:
        FileNotFoundError: naming the file when ``$SASC_TTRL_BENCHMARKS_DIR`` points at a folder without it.
    """
    if name_or_path in BENCHMARK_FILES:
        path = benchmarks_dir() / BENCHMARK_FILES[name_or_path]
        if not path.is_file():
            raise FileNotFoundError(
                f"benchmark {name_or_path!r}: {path} does not exist ($SASC_TTRL_BENCHMARKS_DIR="
                f"{os.environ.get('SASC_TTRL_BENCHMARKS_DIR')!r}); unset it to use the copies shipped with sasc-ttrl"
            )
        return str(path)
    return name_or_path


def load_raw_dataset(name_or_path: str, split: str = "train", config: str | None = None):
    """Load one split of a data set by hub name, local file (json/jsonl/parquet/csv), local folder (a hub-style
    layout, or a `Dataset` / `DatasetDict` saved with ``save_to_disk``), or benchmark name."""
    from datasets import load_dataset

    source = resolve_data_source(name_or_path)
    path = Path(source)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix not in LOCAL_SUFFIXES:
            raise ValueError(f"unsupported data file {path}: expected one of {sorted(LOCAL_SUFFIXES)}")
        return load_dataset(LOCAL_SUFFIXES[suffix], data_files=str(path), split="train")
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _load_saved(path, split)
        return load_dataset(str(path), split=split)
    if source.startswith((".", "/")) or os.sep in source and not _looks_like_hub_id(source):
        raise FileNotFoundError(f"data file {source} does not exist")
    return load_dataset(source, name=config, split=split)


def _load_saved(path: Path, split: str):
    """A `Dataset` or one split of a `DatasetDict` written by ``save_to_disk``.

    Raises:
        ValueError: naming the folder and its splits when ``split`` is not one of them.
    """
    from datasets import DatasetDict, load_from_disk

    saved = load_from_disk(str(path))
    if not isinstance(saved, DatasetDict):
        return saved
    if split not in saved:
        raise ValueError(f"{path}: no split {split!r}; its splits are {sorted(saved)} (set dataset_train_split)")
    return saved[split]


def _looks_like_hub_id(source: str) -> bool:
    return source.count("/") == 1 and not source.startswith(("/", "."))
