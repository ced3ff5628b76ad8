"""``atlas-eda replay``: a cassette replayed into a fresh system, and the first place
where the system did something else than what was recorded."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..errors import CassetteError, CassetteWarning, ScenarioError
from ..testing import Cassette, replay
from ..testing.replay import MODES, ReplayReport
from ..testing.scenario import system_parts
from .apps import add_type_options, import_app_module, load_app, register_type_specs
from .cassette import for_the_command_line
from .command import Command, CommandError

__all__ = ["COMMAND", "run_replay"]

DIVERGED = 1
"""The exit status of a replay whose system did not behave as recorded."""


def run_replay(
    path: str,
    app: str,
    *,
    mode: str = "check",
    strict: bool = True,
    strict_order: bool = True,
    types: Sequence[str] = (),
    verbose: bool = False,
) -> int:
    """Replay the cassette at ``path`` into the system ``app``'s factory builds and print
    the report; returns 0 when the system behaved as recorded, 1 when it diverged. The
    bus's log of handler failures is silenced during the replay unless ``verbose``."""
    register_type_specs(types)
    import_app_module(app)  # its types must be registered before the cassette loads
    cassette = _load(path, strict=strict)
    system = load_app(app)
    try:
        bus, store = system_parts(system, f"--app {app!r}: the factory")
    except ScenarioError as exc:
        raise CommandError(str(exc)) from None
    try:
        with _quiet_bus_log(verbose=verbose):
            report = replay(cassette, bus, mode, strict_order=strict_order, store=store)
    finally:
        if store is not None:
            store.close()
    return _print_report(report, cassette, path, app, mode)


def _load(path: str, *, strict: bool) -> Cassette:
    """The cassette at ``path``; the lines skipped when not ``strict`` are warned about on
    standard error, one line each."""
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always", CassetteWarning)
        try:
            cassette = Cassette.load(path, strict=strict)
        except CassetteError as exc:  # its advice told as this command's options
            raise CommandError(for_the_command_line(str(exc))) from None
    for warning in skipped:
        print(f"atlas-eda: warning: {warning.message}", file=sys.stderr)
    return cassette


@contextmanager
def _quiet_bus_log(*, verbose: bool) -> Iterator[None]:
    """Silence the bus's log while the block runs, unless ``verbose``. A replay re-raises
    recorded failures on purpose, and the report shows the ERROR events they cause: the
    bus's log of each (with a traceback) is noise unless -v."""
    bus_logger = logging.getLogger("atlas_eda.bus")
    level = bus_logger.level
    if not verbose:
        bus_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        bus_logger.setLevel(level)


def _print_report(report: ReplayReport, cassette: Cassette, path: str, app: str, mode: str) -> int:
    """Print what the replay found; the exit status: 0 as recorded, 1 diverged."""
    total, roots = len(cassette), len(cassette.roots())
    print(
        f"Replay of {path} into {app} ({mode} mode): {total} recorded events, {roots} root events."
    )
    if report.divergence is None:
        print(f"OK: the system behaved as recorded ({report.events_matched} events matched).")
        return 0
    print(
        f"DIVERGED at line {report.divergence.position}, after {report.events_matched} of "
        f"{total} events matched:"
    )
    print(report.divergence)
    return DIVERGED


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cassette", metavar="CASSETTE", help="the cassette file (.jsonl)")
    parser.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        required=True,
        help="a function (no arguments) returning a fresh system under test: an EventBus, a "
        "(bus, store) tuple, or an object with a .bus; MODULE is imported from the current "
        "directory or sys.path and may register its types",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="check",
        help="check: effects stubbed, events and effects compared (default); stub: effects "
        "stubbed, events compared; perform: effects really performed, results compared too",
    )
    parser.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a bad line is an error (default); --no-strict skips it with a warning",
    )
    parser.add_argument(
        "--strict-order",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="lines out of time order are a divergence (default); --no-strict-order for a "
        "session recorded from several threads",
    )
    add_type_options(parser)


def _run(args: argparse.Namespace) -> int:
    return run_replay(
        args.cassette,
        args.app,
        mode=args.mode,
        strict=args.strict,
        strict_order=args.strict_order,
        types=args.types,
        verbose=args.verbose,
    )


COMMAND = Command(
    name="replay",
    help="replay a cassette into a fresh system and report the first divergence",
    description="Replay the root events of a cassette into the system that "
    "MODULE:FACTORY() builds and compare what it does with the recording. Exit status: "
    "0 when it behaved as recorded, 1 on a divergence, 2 on bad input.",
    add_arguments=_arguments,
    run=_run,
)
