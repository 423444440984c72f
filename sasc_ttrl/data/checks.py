"""Pre-flight checks on data: a data set that cannot be read, or lacks a column, becomes a [`ConfigError`] that names
the source and the columns there are.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from ..core.errors import ConfigError, one_line

logger = logging.getLogger(__name__)
DEFAULT_ANSWER_COLUMN = "answer"


@contextlib.contextmanager
def data_errors(source: str) -> Iterator[None]:
    """Report a data set that cannot be read, or lacks a column, as a [`ConfigError`] naming ``source``.

    ``datasets``' progress bars and log lines are off inside the block, so that stderr holds only the error line.
    """
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    verbosity = datasets.utils.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity(logging.CRITICAL)
    try:
        yield
    except ConfigError:
        raise
    except (KeyError, ValueError, OSError) as err:
        message = one_line(err)
        raise ConfigError(message if source in message else f"{source}: {message}") from err
    except Exception as err:  # noqa: BLE001 - datasets raises its own types for unreadable files
        raise ConfigError(f"cannot read data {source}: {type(err).__name__}: {one_line(err)}") from err
    finally:
        datasets.utils.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()


# -- data -------------------------------------------------------------------------------------------------------------
def check_columns(columns: Sequence[str], source: str, prompt_column: str, answer_column: str | None) -> None:
    """The prompt column must exist; so must the answer column when one other than the default is named."""
    if prompt_column not in columns:
        raise ConfigError(f"{source}: prompt column {prompt_column!r} not found; columns are {list(columns)}")
    if answer_column not in (None, DEFAULT_ANSWER_COLUMN) and answer_column not in columns:
        raise ConfigError(f"{source}: answer column {answer_column!r} not found; columns are {list(columns)}")
