"""``atlas-eda metrics``: the store's Prometheus metrics served over HTTP until SIGTERM or
Ctrl-C (needs the ``prometheus`` extra)."""

from __future__ import annotations

import argparse
import threading

from ..redaction import redact_url
from .command import Command, CommandError, integer
from .signals import stop_on_signals
from .stores import add_store_option, open_store, store_url

__all__ = ["COMMAND", "parse_address", "run_metrics"]

MAX_PORT = 65535
"""The largest TCP port."""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``; a :class:`CommandError`
    saying what is wrong if not."""
    host, colon, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port_text:
        raise CommandError(f"--serve must be HOST:PORT (for example 127.0.0.1:9464), got {text!r}.")
    port = integer(port_text, "the --serve port")
    if not 0 <= port <= MAX_PORT:
        raise CommandError(f"the --serve port must be 0 to {MAX_PORT}, got {port}.")
    return host, port


def run_metrics(
    url: str | None,
    *,
    serve: str,
    followers: list[str] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve the metrics of the store at ``url`` (head position, followers' positions,
    backlogs and lags, durable dead letters) at ``http://HOST:PORT/metrics`` until
    SIGTERM or SIGINT (or ``stop`` is set), then stop cleanly."""
    host, port = parse_address(serve)
    try:
        from ..prometheus import PrometheusMetrics  # noqa: PLC0415  (the 'prometheus' extra)
    except ModuleNotFoundError as exc:
        raise CommandError(f"{exc} (atlas-eda metrics serves prometheus_client's format).") from exc
    given = store_url(url)
    with open_store(given) as store:
        metrics = PrometheusMetrics(
            store=store, followers=followers or (), all_followers=not followers
        )
        try:
            server = metrics.serve(port, host)
        except Exception as exc:
            metrics.close()
            raise CommandError(str(exc)) from exc
        try:
            with stop_on_signals() as signalled:
                print(
                    f"Serving the metrics of {redact_url(given)} at {server.url} "
                    f"(stop with Ctrl-C or SIGTERM).",
                    flush=True,
                )
                while not signalled.wait(0.2) and not (stop is not None and stop.is_set()):
                    pass
        finally:
            server.close()
            metrics.close()
    print("Stopped.", flush=True)


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument(
        "--serve",
        metavar="HOST:PORT",
        required=True,
        help="where to serve /metrics, for example 127.0.0.1:9464 (port 0: any free port)",
    )
    parser.add_argument(
        "--follower",
        metavar="NAME",
        action="append",
        help="a durable follower to report (repeatable; default: every one in the store)",
    )


def _run(args: argparse.Namespace) -> int:
    run_metrics(args.store, serve=args.serve, followers=args.follower)
    return 0


COMMAND = Command(
    name="metrics",
    help="serve the store's Prometheus metrics over HTTP",
    description="Serve, at http://HOST:PORT/metrics in Prometheus' text format, the store's "
    "head position and each durable follower's position, backlog, lag and dead letters, "
    "read at each scrape, until SIGTERM or Ctrl-C (exit status 0). Needs the prometheus "
    "extra (pip install 'atlas_eda[prometheus]'). A port in use or a bad address is one "
    "line on stderr and exit status 2.",
    add_arguments=_arguments,
    run=_run,
)
