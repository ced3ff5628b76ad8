"""Beyond one process: writer processes and follower processes on one store, on PostgreSQL
(a throwaway server started here, fsync on, as a production server runs) and on SQLite (one
WAL file). Everything runs with the library's default settings.

Figures:

- follower lag p50 / p95 (target p95 ≤ 100 ms on both databases): 4 writer processes
  (each creates a document, then updates it 4 times, and so on) and 2 follower processes
  (``StoreFollower(url, bus, name)`` and ``run()`` with their defaults: the position
  recorded once per page; on PostgreSQL woken by ``NOTIFY``, on SQLite polling every
  ``interval``). Lag is, for every event each follower republishes, the time from the
  event's own timestamp (taken in the writer just before its commit) to the moment the
  follower's bus handler runs. Every follower must deliver every event exactly once (no
  crash here), or the section errors.
- PostgreSQL writes/s, 4 writer processes / 1 writer process (target ≥ 2.5x): the same
  writers with no follower, on fresh databases, from the first start to the last end.
- where a PostgreSQL writer's time goes (info): ``pg_stat_activity`` sampled every few
  milliseconds while the writers write, each writer's connection counted in one of:
  waiting for the log's table lock (eventsourcing serialises commits with it, so that
  the log's order is the commit order), flushing the WAL (the commit's fsync, done while
  the lock is held), running a statement, or waiting for the client (the writer's Python
  between statements). And the server's own WAL sync time per commit (``pg_stat_wal``
  with ``track_wal_io_timing``, a monitoring setting that changes nothing else).
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import threading
import time
from collections import Counter
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

from atlas_eda import Event, EventBus, StoreFollower, TemporalStore
from atlas_eda.testing.postgres import PostgresCluster, PostgresUnavailableError, start_cluster

from ._harness import Config, Row, Section, Target

__all__ = ["FOLLOWERS", "SECTION", "WRITERS", "measure"]

WRITERS = 4
FOLLOWERS = 2
UPDATES_PER_DOC = 4
SAMPLE_EVERY = 0.005  # seconds between two looks at pg_stat_activity

LAG_TARGET = Target("<=", 100, "ms")
SCALING_TARGET = Target(">=", 2.5, "x")

# What a writer's connection is doing, from pg_stat_activity's state and wait event.
LOCK = "waiting for the log's table lock"
WAL = "flushing the WAL (fsync)"
SERVER = "running a statement"
CLIENT = "waiting for the client (Python)"


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
    url: str, name: str, total: int, ready: ProcessEvent, results: Any, *, timeout: float
) -> None:
    bus = EventBus(history_limit=10)
    lags: list[float] = []
    positions: list[int] = []

    def handle(event: Event) -> None:
        lags.append(time.time() - event.timestamp)
        positions.append(event.metadata["notification_id"])

    bus.subscribe_all(handle)
    follower = StoreFollower(url, bus, name, from_start=True)  # the default settings
    ready.set()
    deadline = time.monotonic() + timeout
    while len(lags) < total and time.monotonic() < deadline:
        follower.run(limit=total - len(lags), timeout=1)
    follower.close()
    results.put(("follower", name, lags, len(set(positions)), len(positions)))


def measure(
    url: str, per_writer: int, *, writers: int = WRITERS, followers: int = FOLLOWERS, timeout: float = 600
) -> dict[str, float]:
    """Run ``writers`` writer and ``followers`` follower processes on ``url`` (an empty
    store); returns writes_per_s, errors, events and (with followers) lag_p50_ms and
    lag_p95_ms. Raises RuntimeError when a follower missed events or got one twice."""
    TemporalStore(url=url, snapshot_interval=0).close()  # tables first, outside the race
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    go = context.Event()
    total = writers * per_writer
    readies = [context.Event() for _ in range(followers)]
    following = [
        context.Process(
            target=_follow,
            args=(url, f"bench-{i}", total, readies[i], results),
            kwargs={"timeout": timeout},
        )
        for i in range(followers)
    ]
    writing = [
        context.Process(target=_write, args=(url, per_writer, go, results)) for _ in range(writers)
    ]
    for process in following + writing:
        process.start()
    try:
        for ready in readies:
            if not ready.wait(120):
                raise RuntimeError("a follower process did not start within 120 s")
        time.sleep(1.0)  # let every writer open its store
        go.set()
        outcomes = [results.get(timeout=timeout + 60) for _ in following + writing]
    finally:
        for process in following + writing:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    writes = [o for o in outcomes if o[0] == "writer"]
    follows = [o for o in outcomes if o[0] == "follower"]
    committed = sum(o[3] for o in writes)
    figures = {
        "writes_per_s": committed / (max(o[2] for o in writes) - min(o[1] for o in writes)),
        "errors": float(sum(o[4] for o in writes)),
        "events": float(committed),
    }
    for _, name, _lags, distinct, delivered in follows:
        if distinct != committed or delivered != committed:
            raise RuntimeError(
                f"follower {name} delivered {delivered} events ({distinct} distinct) of "
                f"{committed} committed"
            )
    if follows:
        lags_ms = sorted(lag * 1000 for o in follows for lag in o[2])
        figures["lag_p50_ms"] = statistics.median(lags_ms)
        figures["lag_p95_ms"] = statistics.quantiles(lags_ms, n=100)[94]
    return figures


class WaitSampler:
    """Samples what the writers' connections to ``database`` are doing, in a thread of
    this process, until :meth:`stop`; :meth:`shares` gives each activity's share."""

    def __init__(self, cluster: PostgresCluster, database: str) -> None:
        self.counts: Counter[str] = Counter()
        self._connection = cluster.connect(database)
        self._database = database
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        query = (
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
            "WHERE datname = %s AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND state IS NOT NULL"
        )
        while not self._stop.is_set():
            for state, kind, event in self._connection.execute(query, (self._database,)):
                self.counts[_activity(state, kind, event)] += 1
            time.sleep(SAMPLE_EVERY)

    def stop(self) -> dict[str, float]:
        """Stop sampling; each activity's share of the samples, in percent."""
        self._stop.set()
        self._thread.join()
        self._connection.close()
        total = sum(self.counts.values()) or 1
        return {what: 100 * self.counts[what] / total for what in (LOCK, WAL, SERVER, CLIENT)}


def _activity(state: str, kind: str | None, event: str | None) -> str:
    if state == "active" and kind == "Lock":
        return LOCK  # the table lock (relation), or the NOTIFY queue's (object)
    if state == "active" and (kind == "IO" or (kind == "LWLock" and event == "WALWrite")):
        return WAL  # its own fsync, or waiting for another backend's
    if state == "active":
        return SERVER
    return CLIENT  # idle, or idle in transaction: the client has the next word


def wal_sync_ms(cluster: PostgresCluster) -> float:
    """The server's mean time per WAL sync so far (track_wal_io_timing must be on)."""
    with cluster.connect() as connection:
        syncs, sync_ms = connection.execute(
            "SELECT wal_sync, wal_sync_time FROM pg_stat_wal"
        ).fetchone()
    return float(sync_ms) / syncs if syncs else float("nan")


def _postgres(cluster: PostgresCluster, per_writer: int) -> list[Row]:
    cluster.execute("ALTER SYSTEM SET track_wal_io_timing = on", "SELECT pg_reload_conf()")
    shares: dict[int, dict[str, float]] = {}
    rates: dict[int, float] = {}
    for writers in (1, WRITERS):
        database = cluster.create_database()
        sampler = WaitSampler(cluster, database)
        try:
            figures = measure(cluster.url(database), per_writer, writers=writers, followers=0)
        finally:
            shares[writers] = sampler.stop()
        rates[writers] = figures["writes_per_s"]
    followed = measure(cluster.url(cluster.create_database()), per_writer)
    rows = [
        Row(
            f"PostgreSQL follower lag p95, {WRITERS} writer processes, default settings",
            followed["lag_p95_ms"],
            "ms",
            LAG_TARGET,
            note=f"p50 {followed['lag_p50_ms']:.0f} ms; {followed['events']:,.0f} commits",
        ),
        Row(
            f"PostgreSQL writes/s, {WRITERS} writer processes / 1 writer process",
            rates[WRITERS] / rates[1],
            "x",
            SCALING_TARGET,
            note=f"{rates[WRITERS]:.0f}/s vs {rates[1]:.0f}/s, fsync on",
        ),
        Row("PostgreSQL: WAL sync per commit (server's own timing)", wal_sync_ms(cluster), "ms"),
    ]
    for writers in (1, WRITERS):
        rows += [
            Row(f"PostgreSQL, {writers} writer(s): time {what}", share, "%")
            for what, share in shares[writers].items()
        ]
    return rows


def run(config: Config) -> list[Row]:
    per_writer = 250 if config.quick else 1000
    rows: list[Row] = []
    try:
        cluster = start_cluster(durable=True)
    except PostgresUnavailableError as exc:
        rows.append(Row.failed("PostgreSQL scaling", str(exc)))
    else:
        with cluster:
            rows += _postgres(cluster, per_writer)
    with tempfile.TemporaryDirectory(prefix="atlas-bench-scaling-") as tmp:
        sqlite = measure(f"sqlite:///{Path(tmp).absolute() / 'store.db'}", per_writer)
    rows.append(
        Row(
            f"SQLite follower lag p95, {WRITERS} writer processes, default settings",
            sqlite["lag_p95_ms"],
            "ms",
            LAG_TARGET,
            note=f"p50 {sqlite['lag_p50_ms']:.0f} ms; {sqlite['writes_per_s']:.0f} writes/s",
        )
    )
    return rows


SECTION = Section(
    "scaling",
    f"Scaling: {WRITERS} writer and {FOLLOWERS} follower processes, PostgreSQL and SQLite",
    run,
)
