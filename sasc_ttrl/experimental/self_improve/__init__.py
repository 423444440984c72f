"""``sasc-ttrl self-improve``: STaR-style rounds that keep the rollouts agreeing with their target, guide the hard
questions and fine-tune on the kept ones (see `runner`)."""

from .config import SelfImproveArguments
from .runner import main, make_parser

__all__ = ["SelfImproveArguments", "main", "make_parser"]
