"""``atlas-eda sagas``: the saga instances in a store, with their state; with
``--run-due --app module:factory``, fire the deadlines that are due first."""

from __future__ import annotations

import argparse
from typing import Any

from ..sagas import SagaManager, SagaState, stored_sagas
from ..store import TemporalStore, redact_url
from ..views import when
from .apps import import_app_module
from .command import Command, CommandError
from .format import format_table
from .show import TIME_FORMAT, parse_time
from .stores import add_store_option, open_store, store_url

__all__ = ["COMMAND", "run_sagas", "saga_rows"]


def saga_rows(states: list[SagaState]) -> list[list[Any]]:
    """One table row per instance: id, saga, key, version, status, step, deadline, reason."""
    return [
        [
            s.id,
            s.saga,
            s.key,
            s.version,
            s.status,
            s.step or "",
            "" if s.deadline is None else f"{s.deadline[0]} at {when(s.deadline[1])}",
            s.failed_compensation or s.reason or "",
        ]
        for s in states
    ]


def _print_instances(url: str, states: list[SagaState]) -> None:
    noun = "instance" if len(states) == 1 else "instances"
    print(
        format_table(
            f"Sagas in {redact_url(url)}: {len(states)} {noun}",
            ["saga id", "saga", "key", "version", "status", "step", "deadline (UTC)", "why"],
            saga_rows(states),
        )
    )


def _manager_of(spec: str, url: str) -> tuple[SagaManager, Any]:
    """The saga manager of ``--app module:factory``: the factory is called with the store
    URL and returns a SagaManager or an object whose ``.sagas`` is one."""
    module, name = import_app_module(spec)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise CommandError(
            f"--app {spec!r}: module {module.__name__!r} has no function {name!r}; name a "
            f"function that takes the store URL and returns the app (with .sagas)."
        )
    try:
        app = factory(url)
    except Exception as exc:
        raise CommandError(
            f"--app {spec!r}: calling {name}({redact_url(url)!r}) raised "
            f"{type(exc).__name__}: {exc}."
        ) from None
    manager = app if isinstance(app, SagaManager) else getattr(app, "sagas", None)
    if not isinstance(manager, SagaManager):
        raise CommandError(
            f"--app {spec!r}: {name}(url) returned {type(app).__name__}, not a SagaManager "
            f"nor an object whose .sagas is one; return the app whose sagas are registered."
        )
    return manager, app


def run_sagas(
    url: str | None, *, saga: str | None = None, app: str | None = None, now: str | None = None
) -> None:
    """Print the saga instances in the store at ``url`` (only the saga named ``saga``
    when given). With ``app`` (``module:factory``), first fire the deadlines due at
    ``now`` (ISO 8601, UTC without an offset; default: the clock now) through the
    saga manager the factory returns for ``url``, and say which fired."""
    moment = None if now is None else parse_time(now).timestamp()
    if app is None:
        if now is not None:
            raise CommandError("--now goes with --run-due; add --run-due --app module:factory.")
        with open_store(url) as store:
            _print_instances(store.url, stored_sagas(store, saga))
        return
    checked = store_url(url)
    with open_store(checked):  # refuses a store that does not exist, before the app opens it
        pass
    manager, system = _manager_of(app, checked)
    try:
        fired = manager.run_due(moment)
        print(f"Fired {len(fired)} due deadline(s){': ' if fired else ''}{', '.join(fired)}")
        _print_instances(checked, manager.instances(saga))
    finally:
        store = getattr(system, "store", manager.store)
        if isinstance(store, TemporalStore):
            store.close()


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument("--saga", metavar="NAME", help="only the instances of this saga")
    parser.add_argument(
        "--run-due",
        action="store_true",
        help="first fire the deadlines that are due (needs --app)",
    )
    parser.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        help="with --run-due: a function taking the store URL and returning the app whose "
        "saga manager (its .sagas) has the sagas registered",
    )
    parser.add_argument(
        "--now",
        metavar="ISO-TIME",
        help=f"with --run-due: the time deadlines are due at, ISO 8601: {TIME_FORMAT} "
        "(default: the clock now)",
    )


def _run(args: argparse.Namespace) -> int:
    if args.run_due and args.app is None:
        raise CommandError("--run-due needs --app module:factory (the app whose sagas run).")
    if args.app is not None and not args.run_due:
        raise CommandError("--app goes with --run-due; add --run-due to fire due deadlines.")
    run_sagas(args.store, saga=args.saga, app=args.app, now=args.now)
    return 0


COMMAND = Command(
    name="sagas",
    help="the saga instances in a store, with their state; --run-due fires deadlines",
    description="Print every saga instance in the store: its id, saga, correlation key, "
    "version, status, last step, deadline and why it failed. With --run-due --app "
    "module:factory, first fire the deadlines due at --now (default: now).",
    add_arguments=_arguments,
    run=_run,
)
