"""``atlas-eda cassette``: the events recorded in a cassette, one row each."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

from ..errors import CassetteError
from ..events import type_name
from ..testing import Cassette
from ..testing.cassette import MAX_LINE_BYTES
from ..views import short_id, when
from .apps import add_type_options, import_app_module, register_type_specs
from .command import Command, CommandError, integer
from .format import FULL, SUMMARY_WIDTH, add_width_options, data_summary, format_table, value_width

__all__ = ["COMMAND", "for_the_command_line", "run_cassette"]

_PYTHON_ADVICE = re.compile(
    r"Call atlas_eda\.testing\.register_types\((?P<name>\w+)\) before loading the cassette\."
)
_UNKNOWN_CLASS = re.compile(r"no (?:Enum class|dataclass) named '(?P<name>\w+)'")


def for_the_command_line(message: str) -> str:
    """A cassette loader's ``message`` with its advice to call ``register_types`` (a
    Python call) told as the command's options instead: ``--types module:Name`` or
    ``--app module:factory``. Any other message is returned unchanged."""
    advice = _PYTHON_ADVICE.search(message)
    if advice is None:
        return message
    unknown = _UNKNOWN_CLASS.search(message)
    name = unknown["name"] if unknown else advice["name"]
    return (
        f"{message[: advice.start()]}Name the module that defines it: --types "
        f"MODULE:{name} (repeatable), or --app MODULE:FACTORY for a module that registers "
        f"it.{message[advice.end() :]}"
    )


def run_cassette(
    path: str,
    *,
    types: Sequence[str] = (),
    app: str | None = None,
    max_line_bytes: str | None = None,
    width: str | None = None,
    full: bool = False,
) -> None:
    """Print the cassette at ``path`` as a table: one row per recorded event, with the
    line of the event that caused it and how many effects it performed. ``types``
    (``module:EnumName`` each) and ``app``'s module (``module:factory``; imported, the
    factory is not called) register the cassette's own event and effect types first.
    ``max_line_bytes`` (a number, default 64 MiB) is the longest line read. Cells are cut
    at 80 characters, or at ``width``; ``full`` cuts nothing (ids shown whole too)."""
    cells = value_width(width, full, SUMMARY_WIDTH)
    limit = (
        MAX_LINE_BYTES if max_line_bytes is None else integer(max_line_bytes, "--max-line-bytes")
    )
    if limit < 1:
        raise CommandError(f"--max-line-bytes must be at least 1, got {max_line_bytes!r}.")
    register_type_specs(types)
    if app is not None:
        import_app_module(app)
    try:
        cassette = Cassette.load(path, max_line_bytes=limit)
    except CassetteError as exc:
        raise CommandError(for_the_command_line(str(exc))) from None
    line_of = {entry.event.id: entry.line for entry in cassette}
    rows = [
        [
            entry.line,
            when(entry.event.timestamp, precise=True),
            type_name(entry.event.type),
            entry.event.id if cells == FULL else short_id(entry.event.id, tail=True),
            line_of.get(entry.event.causation_id or "", ""),
            data_summary(entry.event.data),
            len(entry.effects),
        ]
        for entry in cassette
    ]
    roots = len(cassette.roots())
    print(
        format_table(
            f"Cassette {path}: {len(cassette)} events, {roots} root events",
            ["line", "time (UTC)", "type", "id", "caused by", "data", "effects"],
            rows,
            max_width=cells,
        )
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassette", metavar="CASSETTE", help="the cassette file (.jsonl)")
    add_type_options(parser)
    parser.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        help="import MODULE so that it registers its types (the factory is not called)",
    )
    parser.add_argument(
        "--max-line-bytes",
        metavar="N",
        help=f"refuse a line longer than N bytes (default {MAX_LINE_BYTES}, 64 MiB)",
    )
    add_width_options(parser)


def _run(args: argparse.Namespace) -> int:
    run_cassette(
        args.cassette,
        types=args.types,
        app=args.app,
        max_line_bytes=args.max_line_bytes,
        width=args.width,
        full=args.full,
    )
    return 0


COMMAND = Command(
    name="cassette",
    help="the events recorded in a cassette, one row each",
    description="Print a cassette recorded with atlas_eda.testing.record: line, time "
    "(UTC), type, id, the line of the event that caused it, data and effect count.",
    add_arguments=_arguments,
    run=_run,
)
