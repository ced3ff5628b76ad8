"""``atlas-eda demo``: the demo's session (:mod:`atlas_eda.demo`) against a store."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..demo import demo_session, demo_system
from .command import Command

__all__ = ["COMMAND", "DEMO_URL", "run_demo"]

DEMO_URL = "sqlite:///atlas-demo.db"
"""Where ``atlas-eda demo`` keeps its store unless ``--store`` says otherwise."""


def run_demo(url: str, *, out: TextIO | None = None) -> None:
    """The source document's scenario against the store at ``url``, then three tables:
    the bus history, every version of every stored document, and the service's metrics."""
    system = demo_system(url)
    with system.runtime:
        demo_session(system, out=out or sys.stdout)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=DEMO_URL,
        metavar="URL",
        help=f"store URL (default {DEMO_URL}: ./atlas-demo.db; memory:// for a throwaway one)",
    )


def _run(args: argparse.Namespace) -> int:
    run_demo(args.store)
    return 0


COMMAND = Command(
    name="demo",
    help="run the reference scenario and print history, versions and metrics",
    add_arguments=_arguments,
    run=_run,
)
