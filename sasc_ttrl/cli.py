"""The ``sasc-ttrl`` command and the one place where a configuration error becomes one line and exit code 2.

Sub-commands (``sasc-ttrl <command> --help`` lists each one's fields): ``train``, ``eval``, ``build``, ``prm``,
``calibrate``, ``self-improve``, ``compare-votes``, ``demo`` and ``make-tiny-model``. Each parses the rest of the
command line with TRL's `TrlParser`, so ``--config recipe.yaml`` and CLI overrides work the same way as in
``scripts/``, which call [`main`] too.

A [`ConfigError`] (or, while the arguments are parsed, a ``ValueError`` / ``OSError`` from the config dataclasses'
own checks) is printed as ``<prog>: error: <one line>`` on stderr with exit code 2 (the argparse convention for
usage errors). An error raised once a run has started keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .core.errors import ConfigError, one_line
from .training.distributed import destroy_process_group

EXIT_CONFIG_ERROR = 2

COMMANDS = {
    "train": ("sasc_ttrl.commands.train", "GRPO training with the SASC (or majority) pseudo-label reward"),
    "eval": ("sasc_ttrl.commands.eval", "pass@k / maj@k / avg@n evaluation with a report and plots"),
    "build": ("sasc_ttrl.commands.build", "offline selection pipeline and data builder"),
    "prm": (
        "sasc_ttrl.experimental.prm.runner",
        "Monte-Carlo step labels, a process reward model and an outcome verifier",
    ),
    "calibrate": (
        "sasc_ttrl.experimental.calibrate.runner",
        "calibration SFT: P(Yes) fitted to soft self-consistency, ECE/Brier",
    ),
    "self-improve": (
        "sasc_ttrl.experimental.self_improve.runner",
        "STaR-style rounds: keep agreeing rollouts, hint hard ones, SFT",
    ),
    "compare-votes": (
        "sasc_ttrl.commands.compare_votes",
        "re-vote saved rollouts with every stability variant, with CIs",
    ),
    "demo": ("sasc_ttrl.demo.run", "a real LM learns its test questions without their answers on CPU (--quick: tiny)"),
    "make-tiny-model": ("sasc_ttrl.demo.tiny_model", "build the tiny CPU demo model and its data set"),
}


@contextlib.contextmanager
def exit_on(prog: str, errors: tuple[type[BaseException], ...] = (ConfigError,)) -> Iterator[None]:
    """Turn ``errors`` raised inside the block into ``<prog>: error: <one line>`` on stderr and exit code 2."""
    try:
        yield
    except errors as err:
        sys.stderr.write(f"{prog}: error: {one_line(err)}\n")
        raise SystemExit(EXIT_CONFIG_ERROR) from None


def run_command(
    make_parser: Callable[[], Any], main: Callable[..., Any], prog: str, argv: Sequence[str] | None = None
):
    """Parse ``argv`` (``--config`` YAML + flags) and call ``main``; configuration errors exit with code 2.

    The process group, if ``main`` created one (several processes), is destroyed before returning, also when
    ``main`` raises (`sasc_ttrl.training.distributed` says why).
    """
    parser = make_parser()
    parser.prog = prog
    with exit_on(prog, (ValueError, OSError)):  # the config dataclasses validate themselves while parsing
        args = parser.parse_args_and_config(args=None if argv is None else list(argv))
    try:
        with exit_on(prog):
            return main(*args)
    finally:
        destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``sasc-ttrl <command> [args]`` to the command module's ``make_parser`` and ``main``."""
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
    run_command(module.make_parser, module.main, f"sasc-ttrl {argv[0]}", argv[1:])


if __name__ == "__main__":
    main()
