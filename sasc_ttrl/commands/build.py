"""Offline selection pipeline and data builder: sample N candidates per question, score them with one or several
selection methods, write the selected answers as training data, and compare the methods.

Command::

    sasc-ttrl build --model_name_or_path Qwen/Qwen2.5-Math-1.5B --dataset_name math500 \\
        --methods self-consistency sasc deepconf --n_candidates 8 --temperature 0.6 --output_dir outputs/build
    python scripts/build_data.py --config build.yaml   # CLI flags override the YAML

Every method scores the same candidates (one generation per question, seeded by ``(seed, question index, sample
index)``). Outputs in ``output_dir``:

* ``<method>.jsonl``: one row per question -- ``id``, ``method``, ``question``, ``answer`` (the selected completion),
  ``gpt_response`` (its key steps, when a key-step API is given), ``pseudo_label``, ``confidence``,
  ``majority_ratio`` (share of the candidates agreeing with the selected answer), the hidden ``reference_answer``
  and whether the selection matches it (``correct``; diagnostics only), the cost (``samples_used``,
  ``tokens_generated``, ``seconds``), and with ``--save_candidates`` every candidate with its score. Rows are
  appended and fsynced one by one; a rerun skips the questions a file already holds (a truncated last line is
  dropped) and regenerates the same candidates for the rest, so each question appears exactly once.
* ``comparison.json`` / ``comparison.md``: accuracy, tokens and time of each method (`sasc_ttrl.reports.selection`).
* ``build_config.json``: the settings that determine the rows ([`BuildArguments`]); a rerun with other settings
  refuses to mix them.

The engine is `sasc_ttrl.selection.builder.SelectionBuilder`. `sasc-ttrl train --dataset_name outputs/build/sasc.jsonl`
trains on a builder output (see `sasc_ttrl.data.training_data.load_builder_output`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trl import TrlParser

from ..data.benchmarks import load_questions
from ..data.checks import data_errors
from ..reports.selection import comparison_report, write_comparison
from ..sampling.generation import resolve_backend
from ..sampling.models import check_model_vocabulary
from ..selection.build_arguments import BuildArguments, build_settings, check_build_settings
from ..selection.builder import SelectionBuilder
from ..selection.registry import resolve_methods

logger = logging.getLogger(__name__)


def _check_config(output_dir: Path, settings: dict[str, Any], overwrite: bool) -> None:
    if overwrite and output_dir.exists():
        logger.info("--overwrite: deleting the earlier build in %s", output_dir)
    check_build_settings(output_dir, settings, overwrite)


def main(args: BuildArguments) -> dict[str, Any]:
    """Build the selections of ``args.methods`` on ``args.dataset_name`` and write the comparison report.

    Returns:
        The comparison report (the content of ``comparison.json``).
    """
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    output_dir = Path(args.output_dir)
    specs = resolve_methods(args.methods, has_verifier=args.verifier_model_name_or_path is not None)
    backend = resolve_backend(args.backend, args.dynamic_temperature)
    settings = build_settings(args, backend)
    # Data and vocabulary are checked before anything is written or any weights are read.
    with data_errors(args.dataset_name):
        questions = load_questions(
            args.dataset_name, args.dataset_split, args.limit, args.prompt_column, args.answer_column
        )
    check_model_vocabulary(args.model_name_or_path, args.entropy_top_k)
    _check_config(output_dir, settings, args.overwrite)
    logger.info(
        "%d questions x %d candidates, methods: %s",
        len(questions),
        args.n_candidates,
        ", ".join(s.name for s in specs),
    )
    builder = SelectionBuilder(args, specs, backend)
    rows = builder.run(questions, output_dir)
    report = comparison_report(rows, {**settings, "methods_run": [s.name for s in specs]})
    write_comparison(output_dir, report)
    return report


def make_parser() -> TrlParser:
    """The argument parser of ``sasc-ttrl build`` (supports ``--config build.yaml``)."""
    return TrlParser((BuildArguments,))
