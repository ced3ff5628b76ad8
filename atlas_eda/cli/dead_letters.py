"""``atlas-eda dead-letters``: the deliveries followers gave up on, listed, retried or
discarded."""

from __future__ import annotations

import argparse

from ..follower import StoreFollower
from ..store.dead_letters import DeadLetterTable, FollowerDeadLetter
from ..testing.scenario import system_parts
from ..views import when
from .apps import load_app
from .command import Command, CommandError, integer
from .format import SUMMARY_WIDTH, format_table
from .stores import add_store_option, open_store

__all__ = ["COMMAND", "run_dead_letters"]


def run_dead_letters(
    url: str | None,
    *,
    follower: str | None = None,
    retry: str | None = None,
    discard: str | None = None,
    app: str | None = None,
) -> None:
    """Print the dead letters of the store at ``url`` (of ``follower`` when given), one row
    each; or, with ``retry`` (an id or ``all``), deliver their events again to the handlers
    of the system ``app`` (``module:factory``) builds and print what happened; or, with
    ``discard`` (an id), delete one."""
    if retry is not None and discard is not None:
        raise CommandError("give either --retry or --discard, not both.")
    if retry is not None and app is None:
        raise CommandError(
            "--retry needs --app MODULE:FACTORY: the letters' events are delivered again to "
            "the handlers of the system the factory builds."
        )
    if app is not None and retry is None:
        raise CommandError("--app is only used with --retry.")
    with open_store(url) as store:
        table = DeadLetterTable(store.tracking_recorder())
        letters = table.letters(follower)
        if discard is not None:
            letter_id = integer(discard, "--discard")
            if not any(letter.id == letter_id for letter in letters):
                raise CommandError(_unknown(letter_id, follower))
            table.discard(letter_id)
            print(f"Discarded dead letter {letter_id}.")
            return
        if retry is None or app is None:
            _print_letters(store.url, follower, letters)
            return
        chosen = _chosen(retry, letters, follower)
    if not chosen:
        print("No dead letters to retry.")
        return
    bus, _ = system_parts(load_app(app), f"--app {app!r}: the factory")
    for name in dict.fromkeys(letter.follower for letter in chosen):
        ids = [letter.id for letter in chosen if letter.follower == name]
        with StoreFollower(store.url, bus, name) as retrying:
            done = retrying.retry_dead_letters(ids)
        print(f"Follower {name!r}: {done} of {len(ids)} dead letters handled and removed.")


def _chosen(
    retry: str, letters: list[FollowerDeadLetter], follower: str | None
) -> list[FollowerDeadLetter]:
    """The letters ``--retry`` names: one id, or ``all``."""
    if retry == "all":
        return letters
    letter_id = integer(retry, "--retry")
    chosen = [letter for letter in letters if letter.id == letter_id]
    if not chosen:
        raise CommandError(_unknown(letter_id, follower))
    return chosen


def _unknown(letter_id: int, follower: str | None) -> str:
    whose = "" if follower is None else f" of follower {follower!r}"
    return f"no dead letter {letter_id}{whose}; list them with 'atlas-eda dead-letters'."


def _print_letters(url: str, follower: str | None, letters: list[FollowerDeadLetter]) -> None:
    whose = "" if follower is None else f" of follower {follower!r}"
    rows = [
        [
            letter.id,
            letter.follower,
            letter.position,
            letter.handler,
            f"{letter.error_type}: {letter.error_message}",
            letter.attempts,
            when(letter.failed_at),
        ]
        for letter in letters
    ]
    print(
        format_table(
            f"Dead letters{whose}: {len(letters)}",
            ["id", "follower", "position", "handler", "error", "attempts", "failed at (UTC)"],
            rows,
            max_width=SUMMARY_WIDTH,
        )
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument("--follower", metavar="NAME", help="only this follower's letters")
    parser.add_argument(
        "--retry",
        metavar="ID|all",
        help="deliver the letter's event (or every letter's) again; needs --app",
    )
    parser.add_argument("--discard", metavar="ID", help="delete the letter")
    parser.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        help="with --retry: a function (no arguments) returning the system whose handlers "
        "receive the events again: an EventBus, a (bus, store) tuple, or an object with a .bus",
    )


def _run(args: argparse.Namespace) -> int:
    run_dead_letters(
        args.store, follower=args.follower, retry=args.retry, discard=args.discard, app=args.app
    )
    return 0


COMMAND = Command(
    name="dead-letters",
    help="list, retry or discard the deliveries followers gave up on",
    description="List the dead letters followers keep in the store's database (id, "
    "follower, position of the event, handler, error, attempts, when it last failed). "
    "--retry ID|all delivers the letters' events again to the handlers of the system "
    "--app builds (a letter whose event is handled is removed); --discard ID deletes one.",
    add_arguments=_arguments,
    run=_run,
)
