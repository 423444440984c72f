"""``sasc-ttrl prm``: Monte-Carlo (or PRM800K) step labels, a process reward model and an outcome verifier from
builder rollouts (see `runner`)."""

from .config import PRMArguments
from .runner import main, make_parser

__all__ = ["PRMArguments", "main", "make_parser"]
