"""``atlas-eda inspect``: the browser inspector of a store, served on this machine only."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import webbrowser
from collections.abc import Iterator

from ..projections import Projection
from ..redaction import redact_url
from .command import Command, CommandError, integer
from .project import load_projections
from .signals import stop_on_signals
from .stores import add_store_option, open_store

__all__ = ["COMMAND", "DEFAULT_PORT", "run_inspect"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8765
"""The port ``atlas-eda inspect`` serves on when ``--port`` is not given."""

HIGHEST_PORT = 65535

LOOPBACK = "127.0.0.1"


def _port(text: str | None) -> int:
    """``--port`` as a TCP port (0: any free one)."""
    if text is None:
        return DEFAULT_PORT
    port = integer(text, "--port")
    if not 0 <= port <= HIGHEST_PORT:
        raise CommandError(f"--port must be from 0 to {HIGHEST_PORT}, got {port}.")
    return port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _projections(app: str | None) -> Iterator[list[Projection]]:
    """The projections ``--app module:factory`` makes (none without it), closed after."""
    made = [] if app is None else load_projections(app)
    try:
        yield made
    finally:
        for projection in made:
            projection.close()


def run_inspect(
    url: str | None,
    *,
    port: str | None = None,
    host: str | None = None,
    open_page: bool = False,
    app: str | None = None,
) -> None:
    """Serve the read-only inspector of the store at ``url`` on ``host`` (default
    127.0.0.1: this machine only) and ``port`` until Ctrl-C; open it in the browser when
    ``open_page``. With ``app`` (``module:factory``, as ``atlas-eda project --app``),
    the projections the factory returns are shown too. Needs the ``inspect`` extra."""
    try:
        # The server is an optional extra: imported only when the inspector is asked for.
        import uvicorn  # noqa: PLC0415

        from ..inspector.app import LOOPBACK_HOSTS, create_app  # noqa: PLC0415
    except ImportError as exc:
        raise CommandError(
            f"the inspector needs the 'inspect' extra ({exc}); install it with: "
            f"pip install 'atlas_eda[inspect]'"
        ) from None
    chosen_port = _port(port)
    bind = LOOPBACK if host is None else host
    hosts = list(LOOPBACK_HOSTS)
    if not _is_loopback(bind):
        # Only an explicit --host gets here: say loudly that the store is now readable by
        # whoever reaches this address (the inspector has no login).
        logger.warning(
            "Serving on %s: anyone who can reach this address can read the whole store. "
            "Leave out --host to serve this machine only.",
            bind,
        )
        hosts = ["*"]
    with open_store(url) as store, _projections(app) as projections:
        config = uvicorn.Config(
            create_app(store.timeline(), hosts=hosts, projections=projections),
            host=bind,
            port=chosen_port,
            log_level="warning",
            lifespan="off",
        )
        server = uvicorn.Server(config)

        def exit_server() -> None:
            server.should_exit = True

        # A signal before uvicorn's own handlers are in place tells the server to exit
        # (it then shuts down at once); uvicorn shuts down cleanly on one that comes while
        # it serves, then raises it again once its handlers are gone: stop_on_signals
        # takes it there too, and the command exits 0.
        with stop_on_signals(exit_server), contextlib.suppress(KeyboardInterrupt):
            # A free port (--port 0) is known once the socket is bound, and a browser may
            # connect as soon as the address is printed: listen first, then say where.
            sock = config.bind_socket()
            sock.listen(config.backlog)
            served = sock.getsockname()
            shown_host = f"[{served[0]}]" if ":" in served[0] else served[0]
            address = f"http://{shown_host}:{served[1]}/"
            print(
                f"Inspecting {redact_url(store.url)} at {address} (read-only; Ctrl-C to stop)",
                flush=True,
            )
            if open_page:
                webbrowser.open(address)
            server.run(sockets=[sock])


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument(
        "--port", metavar="N", help=f"the port to serve on (default {DEFAULT_PORT}; 0: any free)"
    )
    parser.add_argument(
        "--host",
        metavar="H",
        help="the address to serve on (default 127.0.0.1, this machine only; any other "
        "address lets others read the store, and is warned about)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in a web browser")
    parser.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        help="show projections too: a function that takes no arguments and returns a "
        "Projection or a list of them (as for atlas-eda project)",
    )


def _run(args: argparse.Namespace) -> int:
    run_inspect(args.store, port=args.port, host=args.host, open_page=args.open, app=args.app)
    return 0


COMMAND = Command(
    name="inspect",
    help="browse the store's timeline in a web browser (read-only)",
    description="Serve a read-only page on 127.0.0.1 showing the store's timeline (paged "
    "and filtered), the whole store at any position (a scrubber), each document's "
    "versions, the diff between two positions, the cause chain of every change and the "
    "saga instances; with --app, the projections' read models too. It follows new "
    "commits while open. Needs the 'inspect' extra.",
    add_arguments=_arguments,
    run=_run,
)
