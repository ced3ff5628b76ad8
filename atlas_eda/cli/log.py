"""``atlas-eda log``: the store's global ordered log, a page at a time."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from typing import Any

from ..redaction import redact_url
from ..store import TemporalStore
from ..timeline import RecordedEvent
from ..views import when
from .command import Command, CommandError, integer, position
from .format import (
    CHANGE_WIDTH,
    SUMMARY_WIDTH,
    add_width_options,
    cause_cell,
    format_table,
    summary,
    value_width,
)
from .stores import add_store_option, open_store, resolve_document

__all__ = ["COMMAND", "DEFAULT_LIMIT", "run_log"]

DEFAULT_LIMIT = 50
"""How many rows ``atlas-eda log`` prints when ``--limit`` is not given."""

MAX_PAGE = 200
"""The most notifications the log reads from the store at once."""


def run_log(
    url: str | None,
    *,
    document: str | None = None,
    since: str = "1",
    limit: str | None = None,
    width: str | None = None,
    full: bool = False,
) -> None:
    """Print the store's log from position ``since`` on, oldest first, at most ``limit``
    rows (only ``document``'s events when given); reads only the rows it prints. Each
    changed value is cut at 24 characters and each cell at 80, unless ``width`` (each
    value and cell cut at that many) or ``full`` (nothing cut)."""
    cells = value_width(width, full, SUMMARY_WIDTH)
    changes = CHANGE_WIDTH if width is None and not full else cells
    rows_wanted = DEFAULT_LIMIT if limit is None else integer(limit, "--limit")
    if rows_wanted < 1:
        raise CommandError(f"--limit must be at least 1, got {rows_wanted}.")
    with open_store(url) as store:
        last = len(store.timeline())
        start = _start(since, last)
        document_id, latest = resolve_document(store, document) if document else (None, 0)
        events = _page(store, start, rows_wanted, document_id)
        if not events:
            hidden = 0
        elif document_id is None:
            hidden = last - events[-1].position
        else:
            hidden = latest - events[-1].version
        print(_table(redact_url(store.url), document_id, events, last, (cells, changes)))
        if hidden:
            noun = "event" if hidden == 1 else "events"
            print(
                f"\n{hidden} more {noun} not shown; use --since/--limit "
                f"(next page: --since {events[-1].position + 1})."
            )


def _start(since: str, last: int) -> int:
    """The first position to print. The log starts at 1, also in an empty store (where
    only a later ``--since`` is past the end); ``--since 0`` means the same."""
    if last == 0 and integer(since, "--since") in (0, 1):
        return 1
    return max(position(since, "--since", last), 1)


def _page(
    store: TemporalStore, start: int, rows: int, document_id: str | None
) -> list[RecordedEvent]:
    """At most ``rows`` events from ``start`` on (only ``document_id``'s when given),
    read from the store a page of at most ``MAX_PAGE`` at a time."""
    page = rows if document_id is None else MAX_PAGE
    timeline = store.timeline(page_size=max(1, min(page, MAX_PAGE)))
    return list(itertools.islice(timeline.iter_from(start, document_id=document_id), rows))


def _table(
    url: str,
    document_id: str | None,
    events: Sequence[RecordedEvent],
    last: int,
    widths: tuple[int, int],
) -> str:
    cells, changes = widths
    scope = f", document {document_id}" if document_id else ""
    span = f"positions {events[0].position} to {events[-1].position}" if events else "no events"
    rows: list[list[Any]] = [
        [
            e.position,
            when(e.timestamp, precise=True),
            e.document_id,
            e.version,
            e.kind,
            summary(e, changes),
            cause_cell(e.cause),
        ]
        for e in events
    ]
    return format_table(
        f"Log of {url}{scope}: {span} (the log has {last} in all)",
        ["position", "time (UTC)", "document", "version", "kind", "changes", "cause"],
        rows,
        max_width=cells,
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument("--doc", metavar="ID", help="only this document's events (id or prefix)")
    parser.add_argument(
        "--since", metavar="POS", default="1", help="start at this position (default 1)"
    )
    parser.add_argument(
        "--limit", metavar="N", help=f"print at most N events (default {DEFAULT_LIMIT})"
    )
    add_width_options(parser)


def _run(args: argparse.Namespace) -> int:
    run_log(
        args.store,
        document=args.doc,
        since=args.since,
        limit=args.limit,
        width=args.width,
        full=args.full,
    )
    return 0


COMMAND = Command(
    name="log",
    help="the store's log of events, oldest first",
    description="Print the store's global ordered log: position, time (UTC), document, "
    "version, kind of change, what changed and its cause (the bus event and handler that "
    "wrote it, empty for a write outside any delivery), oldest first.",
    add_arguments=_arguments,
    run=_run,
)
