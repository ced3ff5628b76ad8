"""How the commands write values into their tables, on top of :mod:`atlas_eda.views`:
times through ``views.when`` (to the microsecond where a time can be pasted back into
``--at``), tables through ``views.text_table``."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from ..checks import is_int
from ..timeline import Cause, RecordedEvent
from ..views import TEXT_CELL_WIDTH, when
from ..views import text_table as format_table
from .command import CommandError, integer

__all__ = [
    "FULL",
    "MIN_WIDTH",
    "SUMMARY_WIDTH",
    "add_width_options",
    "cause_cell",
    "cause_line",
    "data_summary",
    "field_value",
    "format_table",
    "summary",
    "value_width",
    "wrapped_rows",
]

SUMMARY_WIDTH = 80
"""The width of the ``changes`` column of ``atlas-eda log`` and the ``data`` column of
``atlas-eda cassette``."""

CHANGE_WIDTH = 24
"""The longest a changed value's repr is in a log summary; longer ones are cut, keeping
their last character (the closing quote or bracket)."""


MIN_WIDTH = 8
"""The narrowest ``--width`` takes: room for a short id and its ellipsis."""

FULL = sys.maxsize
"""The width ``--full`` gives: nothing is cut or wrapped."""


def add_width_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--width N`` and ``--full`` (one or the other) to a command's parser."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--width",
        metavar="N",
        help=f"cut (or wrap) each value at N characters instead of the default "
        f"(at least {MIN_WIDTH})",
    )
    group.add_argument(
        "--full", action="store_true", help="print every value whole: nothing cut or wrapped"
    )


def value_width(width: str | None, full: bool, default: int) -> int:
    """The widest a table cell may be: ``default`` when neither ``--width`` nor ``--full``
    was given, :data:`FULL` for ``--full``, else ``--width`` (a :class:`CommandError`
    when it is not a number of at least :data:`MIN_WIDTH`)."""
    if full:
        return FULL
    if width is None:
        return default
    found = integer(width, "--width")
    if found < MIN_WIDTH:
        raise CommandError(
            f"--width must be at least {MIN_WIDTH}, got {found}; give a wider one, or --full "
            f"to print values whole."
        )
    return found


def field_value(name: str, value: Any) -> str:
    """A document field's value as text: times (``*_at`` numbers) as UTC to the
    microsecond, ``None`` as empty."""
    if value is None:
        return ""
    if name.endswith("_at") and (is_int(value) or isinstance(value, float)):
        return when(float(value), precise=True)
    return str(value)


def wrap(text: str, width: int = TEXT_CELL_WIDTH) -> list[str]:
    """``text`` cut into lines that fit a table cell, so long values are shown whole."""
    lines: list[str] = []
    for line in text.split("\n") or [""]:
        lines.extend(
            textwrap.wrap(line, width, break_on_hyphens=False, replace_whitespace=False, tabsize=4)
            or [""]
        )
    return lines


def wrapped_rows(row: Sequence[str], width: int = TEXT_CELL_WIDTH) -> list[list[str]]:
    """One table row per line of the row's longest cell (cells wrapped at ``width``);
    further lines leave the cells that have no more text empty."""
    columns = [wrap(cell, width) for cell in row]
    height = max(len(c) for c in columns)
    return [[c[i] if i < len(c) else "" for c in columns] for i in range(height)]


def summary(event: RecordedEvent, width: int = CHANGE_WIDTH) -> str:
    """What an event changed, on one line: each new value, those longer than ``width``
    shortened."""
    parts = []
    for name, value in event.changes.items():
        text = repr(value)
        if len(text) > width:
            text = text[: width - 2] + "…" + text[-1]
        parts.append(f"{name}={text}")
    return ", ".join(parts)


def data_summary(data: Any) -> str:
    """An event's data on one line: a dict as ``key=repr(value)`` pairs, else its repr."""
    if data is None:
        return ""
    if isinstance(data, dict):
        return ", ".join(f"{k}={v!r}" for k, v in data.items())
    return repr(data)


def cause_cell(cause: Cause | None) -> str:
    """A stored event's cause in a table cell: ``Enum.MEMBER …1a2b3c4d by handler``
    (:meth:`Cause.describe`), empty for a write outside any delivery."""
    return "" if cause is None else cause.describe()


def cause_line(version: int, cause: Cause | None) -> str:
    """The line ``atlas-eda show`` prints under its table: what wrote ``version``, with
    the whole ids (to pass to ``Timeline.caused_by`` and ``Timeline.correlated``)."""
    if cause is None:
        return f"Cause of version {version}: none (written outside any bus delivery)"
    handler = "an unknown handler" if cause.handler is None else cause.handler
    return (
        f"Cause of version {version}: {cause.event_type} event {cause.event_id} delivered "
        f"to {handler} (correlation {cause.correlation_id or 'none'})"
    )
