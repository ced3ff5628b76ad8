"""Beyond one process: 4 writer processes and 2 follower processes on one store, on
PostgreSQL (a throwaway server started here, fsync on) and on SQLite (one WAL file).

Figures, for each database:

- writes/s: document commits per second by the 4 writers together (each writer creates a
  document, then updates it 4 times, and so on), from the first start to the last end;
- follower lag p50 / p95: for every event each of the 2 followers republishes, the time
  from the event's own timestamp (taken in the writer just before its commit) to the
  moment the follower's bus handler runs. Followers run ``StoreFollower.run`` with a
  ``POLL_INTERVAL`` cap; on PostgreSQL they are woken by ``NOTIFY`` instead. Measured
  twice, on fresh stores: with the default ``commit_every=1`` (one durable position
  commit per event) and with ``commit_every=100``.

Every follower must deliver every event exactly once (no crash here), or the section
errors. The figures are information (no target): the issue asked for them, not a bound.
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

from atlas_eda import Event, EventBus, StoreFollower, TemporalStore
from atlas_eda.testing.postgres import PostgresUnavailableError, start_cluster

from ._harness import Config, Row, Section

__all__ = ["FOLLOWERS", "POLL_INTERVAL", "SECTION", "WRITERS", "measure"]

WRITERS = 4
FOLLOWERS = 2
POLL_INTERVAL = 0.05
UPDATES_PER_DOC = 4


def _write(url: str, count: int, go: ProcessEvent, results: Any) -> None:
    store = TemporalStore(url=url, snapshot_interval=0)
    errors = 0
    go.wait()
    started = time.time()
    document_id = ""
    done = 0
    while done < count:
        try:
            if done % (UPDATES_PER_DOC + 1) == 0:
                document_id = store.create_document(f"doc {done}", "body", "writer")
            else:
                store.update_document(document_id, content=f"body {done}", editor="writer")
        except Exception:  # counted and reported: a benchmark must not hide failures
            errors += 1
        done += 1
    ended = time.time()
    store.close()
    results.put(("writer", started, ended, count - errors, errors))


def _follow(
    url: str,
    name: str,
    total: int,
    ready: ProcessEvent,
    results: Any,
    *,
    timeout: float,
    commit_every: int,
) -> None:
    bus = EventBus(history_limit=10)
    lags: list[float] = []
    positions: list[int] = []

    def handle(event: Event) -> None:
        lags.append(time.time() - event.timestamp)
        positions.append(event.metadata["notification_id"])

    bus.subscribe_all(handle)
    follower = StoreFollower(url, bus, name, from_start=True, commit_every=commit_every)
    ready.set()
    deadline = time.monotonic() + timeout
    while len(lags) < total and time.monotonic() < deadline:
        follower.run(limit=total - len(lags), timeout=1, interval=POLL_INTERVAL)
    follower.close()
    results.put(("follower", name, lags, len(set(positions)), len(positions)))


def measure(
    url: str, per_writer: int, *, commit_every: int = 1, timeout: float = 600
) -> dict[str, float]:
    """Run the writers and followers on ``url`` (an empty store); returns writes_per_s,
    lag_p50_ms, lag_p95_ms, errors. Raises RuntimeError when a follower missed events or
    got one twice."""
    TemporalStore(url=url, snapshot_interval=0).close()  # tables first, outside the race
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    go = context.Event()
    total = WRITERS * per_writer
    readies = [context.Event() for _ in range(FOLLOWERS)]
    followers = [
        context.Process(
            target=_follow,
            args=(url, f"bench-{i}", total, readies[i], results),
            kwargs={"timeout": timeout, "commit_every": commit_every},
        )
        for i in range(FOLLOWERS)
    ]
    writers = [
        context.Process(target=_write, args=(url, per_writer, go, results)) for _ in range(WRITERS)
    ]
    for process in followers + writers:
        process.start()
    try:
        for ready in readies:
            if not ready.wait(120):
                raise RuntimeError("a follower process did not start within 120 s")
        time.sleep(1.0)  # let every writer open its store
        go.set()
        outcomes = [results.get(timeout=timeout + 60) for _ in followers + writers]
    finally:
        for process in followers + writers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    writes = [o for o in outcomes if o[0] == "writer"]
    follows = [o for o in outcomes if o[0] == "follower"]
    committed = sum(o[3] for o in writes)
    errors = sum(o[4] for o in writes)
    for _, name, _lags, distinct, delivered in follows:
        if distinct != committed or delivered != committed:
            raise RuntimeError(
                f"follower {name} delivered {delivered} events ({distinct} distinct) of "
                f"{committed} committed"
            )
    elapsed = max(o[2] for o in writes) - min(o[1] for o in writes)
    lags_ms = sorted(lag * 1000 for o in follows for lag in o[2])
    quantiles = statistics.quantiles(lags_ms, n=100)
    return {
        "writes_per_s": committed / elapsed,
        "lag_p50_ms": statistics.median(lags_ms),
        "lag_p95_ms": quantiles[94],
        "errors": float(errors),
        "events": float(committed),
    }


def _rows(label: str, each: dict[str, float], batched: dict[str, float]) -> list[Row]:
    note = f"{each['events']:,.0f} commits" + (
        f"; {each['errors']:.0f} writes failed" if each["errors"] else ""
    )
    rows = [
        Row(
            f"{label}: writes/s, {WRITERS} writer processes",
            each["writes_per_s"],
            "/s",
            note=note,
        )
    ]
    for how, figures in (("commit_every=1", each), ("commit_every=100", batched)):
        rows += [
            Row(f"{label}: follower lag {q}, {how}", figures[f"lag_{q}_ms"], "ms")
            for q in ("p50", "p95")
        ]
    return rows


def run(config: Config) -> list[Row]:
    per_writer = 250 if config.quick else 1000
    rows: list[Row] = []
    try:
        cluster = start_cluster(durable=True)
    except PostgresUnavailableError as exc:
        rows.append(Row.failed("PostgreSQL scaling", str(exc)))
        postgres = None
    else:
        try:
            postgres = measure(cluster.url(pool_size=1, max_overflow=2), per_writer)
            database = cluster.create_database()
            batched = measure(
                cluster.url(database, pool_size=1, max_overflow=2), per_writer, commit_every=100
            )
        finally:
            cluster.stop()
        rows += _rows("PostgreSQL", postgres, batched)
    with tempfile.TemporaryDirectory(prefix="atlas-bench-scaling-") as tmp:
        sqlite = measure(f"sqlite:///{Path(tmp).absolute() / 'store.db'}", per_writer)
        batched = measure(
            f"sqlite:///{Path(tmp).absolute() / 'batched.db'}", per_writer, commit_every=100
        )
    rows += _rows("SQLite", sqlite, batched)
    if postgres is not None:
        rows.append(
            Row(
                "PostgreSQL / SQLite writes/s",
                postgres["writes_per_s"] / sqlite["writes_per_s"],
                "x",
                note="both with fsync on, same run, same machine",
            )
        )
    return rows


SECTION = Section(
    "scaling",
    f"Scaling: {WRITERS} writer and {FOLLOWERS} follower processes, PostgreSQL vs SQLite",
    run,
)
