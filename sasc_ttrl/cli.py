"""The ``sasc-ttrl`` command: ``train``, ``eval``, ``build`` and ``make-tiny-model`` sub-commands.

Each sub-command parses the rest of the command line with TRL's `TrlParser`, so ``--config recipe.yaml`` and
CLI overrides work the same way as in ``scripts/``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .validation import run_command

COMMANDS = {
    "demo": ("sasc_ttrl.demo", "a real LM learns its test questions without their answers, on CPU (--quick: tiny)"),
    "train": ("sasc_ttrl.train", "GRPO training with the SASC (or majority) pseudo-label reward"),
    "eval": ("sasc_ttrl.evaluate", "pass@k / maj@k / avg@n evaluation with a report and plots"),
    "build": ("sasc_ttrl.build_data", "offline selection pipeline and data builder"),
    "prm": ("sasc_ttrl.prm", "Monte-Carlo step labels, a process reward model and an outcome verifier"),
    "calibrate": ("sasc_ttrl.calibration", "calibration SFT: P(Yes) fitted to soft self-consistency, ECE/Brier"),
    "self-improve": ("sasc_ttrl.self_improve", "STaR-style rounds: keep agreeing rollouts, hint hard ones, SFT"),
    "compare-votes": ("sasc_ttrl.compare_votes", "re-vote saved rollouts with every stability variant, with CIs"),
    "make-tiny-model": ("sasc_ttrl.tiny_model", "build the tiny CPU demo model and its data set"),
}


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``sasc-ttrl <command> [args]`` to the command's ``make_parser`` and ``main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="sasc-ttrl", description="Label-free test-time RL for math on TRL.")
        sub = parser.add_subparsers(dest="command", metavar="command")
        for name, (_, help_text) in COMMANDS.items():
            sub.add_parser(name, help=help_text, add_help=False)
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose one of {sorted(COMMANDS)}")
        parser.print_help()
        raise SystemExit(0 if argv else 2)
    module = importlib.import_module(COMMANDS[argv[0]][0])
    # Configuration and data errors: one line on stderr, exit code 2 (see sasc_ttrl.validation).
    run_command(module.make_parser, module.main, f"sasc-ttrl {argv[0]}", argv[1:])


if __name__ == "__main__":
    main()
