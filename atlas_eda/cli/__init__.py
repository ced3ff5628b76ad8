"""The ``atlas-eda`` command. Only this package prints (and the demo's session, which writes
its report to the stream it is given).

One module per command (:mod:`.demo`, :mod:`.log`, :mod:`.show`, :mod:`.diff`,
:mod:`.inspect`, :mod:`.follow`, :mod:`.dead_letters`, :mod:`.project`, :mod:`.cassette`,
:mod:`.replay`, :mod:`.graph`, :mod:`.sagas`, :mod:`.health`, :mod:`.metrics`), each with
the function that adds its arguments and the one that runs it, gathered in one
:class:`~.command.Command` record; :data:`COMMANDS` lists them in ``--help`` order and
:func:`main` dispatches through it.
Shared by the commands: :mod:`.format` (tables and values, on :mod:`atlas_eda.views`),
:mod:`.stores` (opening the store a command reads) and :mod:`.apps` (loading the
``--types`` and ``--app`` a user names)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from ..demo import DemoSystem, demo_session, demo_system
from ..errors import AtlasEdaError
from . import (
    cassette,
    dead_letters,
    diff,
    follow,
    graph,
    health,
    inspect,
    log,
    metrics,
    project,
    replay,
    sagas,
    show,
)
from . import demo as demo_command
from .apps import import_app_module, load_app, register_type_specs
from .cassette import run_cassette
from .command import USAGE_ERROR, Command, CommandError, UsageParser
from .dead_letters import run_dead_letters
from .demo import DEMO_URL, run_demo
from .diff import run_diff
from .follow import run_follow
from .format import format_table
from .graph import run_graph
from .health import run_health
from .inspect import run_inspect
from .log import DEFAULT_LIMIT, run_log
from .metrics import run_metrics
from .project import run_project
from .replay import run_replay
from .sagas import run_sagas
from .show import TIME_FORMAT, run_show

__all__ = [
    "COMMANDS",
    "DEFAULT_LIMIT",
    "DEMO_URL",
    "TIME_FORMAT",
    "Command",
    "CommandError",
    "DemoSystem",
    "build_parser",
    "demo_session",
    "demo_system",
    "format_table",
    "import_app_module",
    "load_app",
    "main",
    "register_type_specs",
    "run_cassette",
    "run_dead_letters",
    "run_demo",
    "run_diff",
    "run_follow",
    "run_graph",
    "run_health",
    "run_inspect",
    "run_log",
    "run_metrics",
    "run_project",
    "run_replay",
    "run_sagas",
    "run_show",
]

COMMANDS: tuple[Command, ...] = (
    demo_command.COMMAND,
    log.COMMAND,
    show.COMMAND,
    diff.COMMAND,
    inspect.COMMAND,
    follow.COMMAND,
    dead_letters.COMMAND,
    project.COMMAND,
    cassette.COMMAND,
    replay.COMMAND,
    graph.COMMAND,
    sagas.COMMAND,
    health.COMMAND,
    metrics.COMMAND,
)
"""Every subcommand, in the order ``atlas-eda --help`` lists them."""

_BY_NAME = {command.name: command for command in COMMANDS}


def build_parser() -> UsageParser:
    """The ``atlas-eda`` argument parser: ``-v`` and one subcommand from :data:`COMMANDS`."""
    parser = UsageParser(
        prog="atlas-eda", description="Inspect and exercise an atlas_eda event mesh."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subcommands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_arguments(
            subcommands.add_parser(command.name, help=command.help, description=command.description)
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _BY_NAME[args.command].run(args)
    except AtlasEdaError as exc:
        print(f"atlas-eda: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:
        # The reader (``| head``) went away: stop quietly, as command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
