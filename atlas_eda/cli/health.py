"""``atlas-eda health``: the store's health checks as a table (or JSON), the exit status
saying how healthy it is."""

from __future__ import annotations

import argparse

from ..errors import AtlasEdaError
from ..health import (
    DEFAULT_BACKLOG,
    DEFAULT_LAG,
    CheckResult,
    DeadLetterCheck,
    FollowerCheck,
    Health,
    HealthReport,
    Status,
    StoreCheck,
    Thresholds,
    durable_followers,
)
from ..redaction import redact_url
from .command import Command, CommandError
from .stores import add_store_option, open_store, store_url

__all__ = ["COMMAND", "run_health"]


def run_health(
    url: str | None,
    *,
    followers: list[str] | None = None,
    as_json: bool = False,
    backlog: str | None = None,
    lag: str | None = None,
) -> int:
    """Check the store at ``url``: reachable and its head, each follower's backlog and lag
    (``followers``, or every durable one), its durable dead letters. Print a table (JSON
    with ``as_json``) and return 0, 1 or 2 for ok, degraded, failing. Bad input (no store,
    a missing file, an unknown follower) raises :class:`CommandError` instead: one line on
    stderr, nothing on stdout, exit status 2."""
    given = store_url(url)
    backlog_at = _thresholds(backlog, "--backlog", DEFAULT_BACKLOG)
    lag_at = _thresholds(lag, "--lag", DEFAULT_LAG)
    try:
        with open_store(given) as store:
            names = followers or durable_followers(store)
            if followers:
                known = set(durable_followers(store))
                unknown = [name for name in followers if name not in known]
                if unknown:
                    raise CommandError(
                        f"no follower named {unknown[0]!r} has recorded a position in this "
                        f"store (followers: {', '.join(sorted(known)) or 'none'})."
                    )
            health = Health([StoreCheck(store)])
            for name in names:
                health.add(FollowerCheck(store, name, backlog=backlog_at, lag=lag_at))
            health.add(DeadLetterCheck(store=store))
            report = health.run()
    except AtlasEdaError:
        raise
    except Exception as exc:  # the database is down or refuses: failing, not bad input
        reason = f"unreachable: {type(exc).__name__}: {exc}"
        report = HealthReport((CheckResult("store", Status.FAILING, reason),))
    if as_json:
        print(report.to_json())
    else:
        print(f"Store: {redact_url(given)}")
        print(report.table())
    return report.exit_code


def _thresholds(text: str | None, what: str, default: Thresholds) -> Thresholds:
    """``DEGRADED,FAILING`` as :class:`Thresholds`; ``default`` when not given."""
    if text is None:
        return default
    parts = text.split(",")
    try:
        if len(parts) != 2:  # noqa: PLR2004 - a pair
            raise ValueError("two numbers")
        return Thresholds(float(parts[0]), float(parts[1]))
    except (TypeError, ValueError) as exc:
        raise CommandError(
            f"{what} must be DEGRADED,FAILING: two positive numbers, the first not larger "
            f"(for example {default.degraded:g},{default.failing:g}), got {text!r}."
        ) from exc


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument(
        "--follower",
        metavar="NAME",
        action="append",
        help="check this durable follower (repeatable; default: every one in the store)",
    )
    parser.add_argument(
        "--backlog",
        metavar="DEGRADED,FAILING",
        help="a follower's backlog (events) that degrades it and that fails it (default "
        f"{DEFAULT_BACKLOG.degraded:g},{DEFAULT_BACKLOG.failing:g})",
    )
    parser.add_argument(
        "--lag",
        metavar="DEGRADED,FAILING",
        help="a follower's lag (seconds) that degrades it and that fails it (default "
        f"{DEFAULT_LAG.degraded:g},{DEFAULT_LAG.failing:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _run(args: argparse.Namespace) -> int:
    return run_health(
        args.store, followers=args.follower, as_json=args.json, backlog=args.backlog, lag=args.lag
    )


COMMAND = Command(
    name="health",
    help="check the store, its followers and dead letters; exit 0/1/2 = ok/degraded/failing",
    description="Check that the store can be read (and its head position), each durable "
    "follower's backlog (by default degraded at 100 events, failing at 10,000; "
    "--backlog) and lag (degraded at 30 s, failing at 300 s; --lag), and the followers' "
    "dead letters (degraded while any is kept). "
    "Prints a table, or JSON with --json; exits 0, 1 or 2 for ok, degraded, failing. Bad "
    "input also exits 2, with one line on stderr and nothing on stdout.",
    add_arguments=_arguments,
    run=_run,
)
