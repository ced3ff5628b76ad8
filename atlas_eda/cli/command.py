"""What an ``atlas-eda`` command is, its one error type, and the checks of numeric
arguments that several commands share."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from ..errors import AtlasEdaError

__all__ = ["MAX_NUMBER", "Command", "CommandError", "UsageParser", "integer", "position"]

USAGE_ERROR = 2
"""The exit status of a usage error or of bad input, as for every command-line tool."""


class CommandError(AtlasEdaError):
    """A command-line argument names something the store does not hold (or is malformed);
    the message says what to do instead."""


class UsageParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error of the
    command: ``atlas-eda: error: ...`` with a pointer to ``--help``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error on one line and exit with status 2."""
        self.exit(USAGE_ERROR, f"atlas-eda: error: {message} (see '{self.prog} --help')\n")


@dataclass(frozen=True)
class Command:
    """One subcommand of ``atlas-eda``: its name, its line in ``atlas-eda --help`` and
    its own ``--help`` description, the function that adds its arguments to its parser,
    and the function that runs it on the parsed arguments and returns the exit status."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


MAX_NUMBER = sys.maxsize
"""The largest number a numeric argument takes (a count or position past it is refused,
rather than overflowing what Python's slices and SQLite's integers can hold)."""


def integer(text: str, what: str) -> int:
    """``text`` (ASCII digits, an optional sign) as an int of at most :data:`MAX_NUMBER`;
    a :class:`CommandError` naming the argument ``what`` if not."""
    digits = text.strip().removeprefix("-").removeprefix("+")
    if not (digits.isascii() and digits.isdigit()):
        raise CommandError(f"{what} must be a whole number, got {text!r}.")
    if len(digits) > len(str(MAX_NUMBER)) or abs(int(text)) > MAX_NUMBER:
        raise CommandError(
            f"{what} is {text.strip()}, too large: the most it takes is {MAX_NUMBER}."
        )
    return int(text)


def seconds(text: str | None, what: str, otherwise: str) -> float | None:
    """``text`` as a positive, finite number of seconds, ``None`` when not given; a
    :class:`CommandError` naming the argument ``what`` if not, ending with ``otherwise``
    (what leaving it out does)."""
    if text is None:
        return None
    try:
        found = float(text)
    except ValueError:
        found = -1.0
    if not 0 < found < math.inf:
        raise CommandError(
            f"{what} must be a positive, finite number of seconds, got {text!r}; leave it "
            f"out to {otherwise}."
        )
    return found


def position(text: str, what: str, last: int) -> int:
    """A position in a log whose last position is ``last`` (0 = before the first event);
    ``what`` names the argument in messages (``--since``, ``A``, ``B``)."""
    found = integer(text, what)
    label = what if what.startswith("-") else f"position {what}"
    if found < 0:
        raise CommandError(
            f"{label} is {found}, a negative position: positions run from 0 (before the "
            f"first event) to {last}, the last recorded position."
        )
    if found > last:
        raise CommandError(
            f"{label} is {found}, past the end: the last recorded position is {last}"
            + (" (the store holds no events yet)." if last == 0 else ".")
        )
    return found
