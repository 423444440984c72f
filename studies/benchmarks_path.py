"""Puts ``benchmarks/`` on ``sys.path``, so that a study imports its helpers (``record``, ``demo_wall_time``) as the
benchmark scripts do. Import it before them: ``import benchmarks_path  # noqa: F401``."""

import sys
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS_DIR) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS_DIR))
