"""``atlas-eda graph``: the declared event graph of the system an app factory builds, as
Mermaid or plain text."""

from __future__ import annotations

import argparse

from ..testing.scenario import system_parts
from .apps import load_app
from .command import Command

__all__ = ["COMMAND", "FORMATS", "run_graph"]

FORMATS = ("mermaid", "text")
"""What ``--format`` takes."""


def run_graph(app: str, output: str = "mermaid") -> int:
    """Print the declared graph of the bus the factory ``app`` (``module:factory``)
    builds, in ``output`` format (``mermaid`` or ``text``, which also lists the cycles);
    returns the exit status, 0. (``bus.check()`` is what refuses cycles.)"""
    bus, _ = system_parts(load_app(app), f"--app {app!r}: the factory")
    graph = bus.graph()
    print(graph.to_mermaid() if output == "mermaid" else graph.to_text(), end="")
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        required=True,
        help="a function (no arguments) returning the system whose graph to print: an "
        "EventBus, a (bus, store) tuple, or an object with a .bus",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="mermaid",
        help="mermaid (a flowchart to paste into Markdown; the default) or text (each "
        "type, its handlers and what they emit, then the cycles)",
    )


def _run(args: argparse.Namespace) -> int:
    return run_graph(args.app, args.format)


COMMAND = Command(
    name="graph",
    help="print the declared event graph of an app (Mermaid or text)",
    description="Build the system --app names and print its declared event graph: each "
    "message type (events, commands, queries), the handlers that receive it and the types "
    "they declared they emit (emits=), as a Mermaid flowchart or as text with its cycles.",
    add_arguments=_arguments,
    run=_run,
)
