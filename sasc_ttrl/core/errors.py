"""The error every layer raises for a bad configuration or bad data, found before any model is loaded.

`sasc_ttrl.cli` prints it as one line on stderr and exits with code 2; `sasc_ttrl.training.checks` lists what is
checked before a run.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A problem with the configuration or the data, found before any model is loaded."""


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (a ``KeyError``'s message without its quotes)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(text).split()) or type(error).__name__
