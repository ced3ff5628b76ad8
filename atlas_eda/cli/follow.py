"""``atlas-eda follow``: the store's document events printed as they are committed."""

from __future__ import annotations

import argparse
import contextlib

from ..bus import EventBus
from ..events import Event
from ..follower import StoreFollower
from ..views import when
from .command import Command, CommandError, integer
from .command import seconds as as_seconds
from .signals import stop_on_signals
from .stores import add_store_option, check_existing, store_url

__all__ = ["COMMAND", "run_follow"]

POSITION_WIDTH = 6
"""The width of the position column (right-aligned)."""

TYPE_WIDTH = 16
"""The width of the event type column: the longest built-in document event type."""


def run_follow(
    url: str | None,
    *,
    name: str | None = None,
    from_start: bool = False,
    limit: str | None = None,
    timeout: str | None = None,
) -> None:
    """Print the store's document events as they are committed, one line each, until
    ``limit`` events or ``timeout`` seconds, or until SIGTERM or Ctrl-C (the event under
    way is finished and the position recorded)."""
    followed = store_url(url)
    check_existing(followed)
    count = _count(limit)
    seconds = as_seconds(timeout, "--timeout", "follow until Ctrl-C")
    bus = EventBus()
    bus.subscribe_all(_print_event)
    with (
        StoreFollower(followed, bus, name, from_start=from_start) as follower,
        stop_on_signals() as stop,
        contextlib.suppress(KeyboardInterrupt),  # a second signal: stop at once, quietly
    ):
        follower.run(timeout=seconds, limit=count, stop_event=stop)


def _count(limit: str | None) -> int | None:
    """``--limit`` as a number of events (at least 1), ``None`` when not given."""
    count = None if limit is None else integer(limit, "--limit")
    if count is not None and count < 1:
        raise CommandError(f"--limit must be at least 1, got {limit!r}.")
    return count


def _print_event(event: Event) -> None:
    """One line: position, time, type, document, version and the other data."""
    data = dict(event.data)
    notification = event.metadata.get("notification_id")
    document_id, version = data.pop("id"), data.pop("version")
    rest = ", ".join(f"{k}={v!r}" for k, v in data.items() if v is not None)
    print(
        f"{notification:>{POSITION_WIDTH}}  {when(event.timestamp, precise=True)}  "
        f"{event.type.name:<{TYPE_WIDTH}}  {document_id}  v{version}  {rest}".rstrip(),
        flush=True,
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument("--name", metavar="NAME", help="a durable follower name to resume from")
    parser.add_argument(
        "--from-start",
        action="store_true",
        help="a follower with no recorded position starts at the first event, not the end",
    )
    parser.add_argument("--limit", metavar="N", help="stop after N events")
    parser.add_argument("--timeout", metavar="SECONDS", help="stop after this many seconds")


def _run(args: argparse.Namespace) -> int:
    run_follow(
        args.store,
        name=args.name,
        from_start=args.from_start,
        limit=args.limit,
        timeout=args.timeout,
    )
    return 0


COMMAND = Command(
    name="follow",
    help="print the store's document events as they are committed",
    description="Tail the store's log and print each document event as it is "
    "committed (position, time in UTC, type, document, version, what changed). With "
    "--name the position is recorded in the store's database and the next run with "
    "that name resumes after it; without, nothing is recorded.",
    add_arguments=_arguments,
    run=_run,
)
