"""``atlas-eda diff``: what changed in the store between two positions of its log."""

from __future__ import annotations

import argparse

from ..redaction import redact_url
from ..views import TEXT_CELL_WIDTH
from .command import Command, position
from .format import add_width_options, field_value, format_table, value_width, wrapped_rows
from .stores import add_store_option, open_store

__all__ = ["COMMAND", "run_diff"]


def run_diff(
    url: str | None, a: str, b: str, *, width: str | None = None, full: bool = False
) -> None:
    """Print what differs in the store between positions ``a`` and ``b`` (0 = empty).
    Values are wrapped at 48 characters, or at ``width``; ``full`` prints each line of a
    value whole."""
    cells = value_width(width, full, TEXT_CELL_WIDTH)
    with open_store(url) as store:
        timeline = store.timeline()
        last = len(timeline)
        first, second = position(a, "A", last), position(b, "B", last)
        diff = timeline.diff(first, second)
        if not diff:
            print(f"no differences between position {first} and position {second}.")
            return
        rows: list[list[str]] = []
        for document_id, change, name, before, after in diff.rows():
            rows.extend(
                wrapped_rows(
                    [
                        document_id,
                        change,
                        name,
                        field_value(name, before),
                        field_value(name, after),
                    ],
                    cells,
                )
            )
        print(
            format_table(
                f"Differences in {redact_url(store.url)} from position {first} to position "
                f"{second}: "
                f"{len(diff.added)} added, {len(diff.removed)} removed, "
                f"{len(diff.changed)} changed",
                ["document", "change", "field", f"before (#{first})", f"after (#{second})"],
                rows,
                max_width=cells,
            )
        )


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument("a", metavar="A", help="the earlier position (0 = before any event)")
    parser.add_argument("b", metavar="B", help="the later position")
    add_width_options(parser)


def _run(args: argparse.Namespace) -> int:
    run_diff(args.store, args.a, args.b, width=args.width, full=args.full)
    return 0


COMMAND = Command(
    name="diff",
    help="what changed in the store between two positions",
    description="Print each document added, removed or changed between positions A and "
    "B of the log, field by field (position 0 is the empty store).",
    add_arguments=_arguments,
    run=_run,
)
