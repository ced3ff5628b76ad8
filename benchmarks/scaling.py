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
  milliseconds while the writers write; at each sample every writer is either inside the
  database — waiting for the log's table lock (eventsourcing serialises commits with it,
  so that the log's order is the commit order), flushing the WAL (the commit's fsync, done
  while the lock is held), running a statement, or holding a transaction open while the
  server waits for its next statement — or outside it: on a CPU running its own Python
  (its ``time.process_time``), or waiting for a CPU (the rest). And the server's own WAL
  sync time per commit (``pg_stat_wal`` with ``track_wal_io_timing``, a monitoring
  setting that changes nothing else).
- the best 4/1 ratio this machine allows (info), from the 1-writer run: the smaller of
  Amdahl's bound, 1 / (s + (1 - s) / 4) with s the share of a write during which the
  table lock is held (``pg_locks``, sampled with the activity), and the CPU bound, the
  machine's CPUs / CPUs one writer keeps busy (its own ``process_time`` plus the server's
  CPU time from ``/proc``, per second of writing; the CPUs other work kept busy are in the
  note). Below 2.5x, the target cannot be met here.
- the same 4/1 ratio with ``synchronous_commit = off`` on a database of its own (info,
  not durable: a commit no longer waits for its fsync under the lock; never a default).
- what the lag is made of (info): the writers' own call time (``create_document`` /
  ``update_document``, p95), which the lag includes because the event's timestamp is
  taken before the commit waits for its lock, and the lag counted from the end of that
  call (commit → follower's handler, p95).
"""

from __future__ import annotations

import multiprocessing
import os
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
CPU_EVERY = 20  # samples between two readings of the CPU time used

LAG_TARGET = Target("<=", 100, "ms")
SCALING_TARGET = Target(">=", 2.5, "x")

# What a writer is doing: inside the database, from pg_stat_activity's state and wait
# event; outside it, from its own CPU time.
LOCK = "waiting for the log's table lock"
WAL = "flushing the WAL (fsync)"
SERVER = "running a statement"
IN_TRANSACTION = "in a transaction, the server waiting for it"
PYTHON = "on a CPU, running its Python"
NO_CPU = "waiting for a CPU"
HOLDING = "holding the log's table lock"  # counted beside the activities, not one of them


def _write(url: str, count: int, go: ProcessEvent, results: Any) -> None:
    store = TemporalStore(url=url, snapshot_interval=0)
    errors = 0
    committed: dict[tuple[str, int], float] = {}  # (document, version): when the call ended
    calls: list[float] = []
    go.wait()
    started, cpu = time.time(), time.process_time()
    document_id = ""
    done = 0
    while done < count:
        version = done % (UPDATES_PER_DOC + 1) + 1
        called = time.time()
        try:
            if version == 1:
                document_id = store.create_document(f"doc {done}", "body", "writer")
            else:
                store.update_document(document_id, content=f"body {done}", editor="writer")
        except Exception:  # counted and reported: a benchmark must not hide failures
            errors += 1
        else:
            committed[(document_id, version)] = ended = time.time()
            calls.append(ended - called)
        done += 1
    ended, cpu = time.time(), time.process_time() - cpu
    store.close()
    results.put(("writer", started, ended, count - errors, errors, cpu, committed, calls))


def _follow(
    url: str, name: str, total: int, ready: ProcessEvent, results: Any, *, timeout: float
) -> None:
    bus = EventBus(history_limit=10)
    lags: list[float] = []
    positions: list[int] = []
    handled: dict[tuple[str, int], float] = {}

    def handle(event: Event) -> None:
        now = time.time()
        lags.append(now - event.timestamp)
        positions.append(event.metadata["notification_id"])
        handled[(event.data["id"], event.data["version"])] = now

    bus.subscribe_all(handle)
    follower = StoreFollower(url, bus, name, from_start=True)  # the default settings
    ready.set()
    deadline = time.monotonic() + timeout
    while len(lags) < total and time.monotonic() < deadline:
        follower.run(limit=total - len(lags), timeout=1)
    follower.close()
    results.put(("follower", name, lags, len(set(positions)), len(positions), handled))


def measure(
    url: str,
    per_writer: int,
    *,
    writers: int = WRITERS,
    followers: int = FOLLOWERS,
    timeout: float = 600,
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
    started, ended = min(o[1] for o in writes), max(o[2] for o in writes)
    figures = {
        "started": started,
        "ended": ended,
        "writes_per_s": committed / (ended - started),
        "errors": float(sum(o[4] for o in writes)),
        "events": float(committed),
        "cpu_share": sum(o[5] / (o[2] - o[1]) for o in writes) / len(writes),
        "call_p95_ms": _p95([call * 1000 for o in writes for call in o[7]]),
    }
    for _, name, _lags, distinct, delivered, _handled in follows:
        if distinct != committed or delivered != committed:
            raise RuntimeError(
                f"follower {name} delivered {delivered} events ({distinct} distinct) of "
                f"{committed} committed"
            )
    if follows:
        lags_ms = [lag * 1000 for o in follows for lag in o[2]]
        figures["lag_p50_ms"] = statistics.median(lags_ms)
        figures["lag_p95_ms"] = _p95(lags_ms)
        ends = {key: when for o in writes for key, when in o[6].items()}
        figures["after_commit_p95_ms"] = _p95(
            [(when - ends[key]) * 1000 for o in follows for key, when in o[5].items()]
        )
    return figures


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[94]


class WaitSampler:
    """Samples what the connections to ``database`` are doing, in a thread of this
    process, until :meth:`stop`: at each sample, how many are in each state of
    :func:`_activity` (idle connections, in a pool or between two writes, count in none),
    and every ``CPU_EVERY`` samples the CPU seconds the server (this sampler's own server
    process left out) and the whole machine have used so far."""

    def __init__(self, cluster: PostgresCluster, database: str) -> None:
        self.samples: list[tuple[float, Counter[str]]] = []  # (when, activities)
        self.cpu: list[tuple[float, float, float]] = []  # (when, server, machine)
        self._connection = cluster.connect(database)
        [(self.pid,)] = self._connection.execute("SELECT pg_backend_pid()").fetchall()
        self._postmaster = _proc_stat(self.pid)[1]
        self._database = database
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        query = (
            "SELECT a.state, a.wait_event_type, a.wait_event, EXISTS (SELECT FROM pg_locks l "
            "WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.mode = 'ExclusiveLock' "
            "AND l.granted) FROM pg_stat_activity a "
            "WHERE a.datname = %s AND a.backend_type = 'client backend' "
            "AND a.pid <> pg_backend_pid() AND a.state <> 'idle'"
        )
        while not self._stop.is_set():
            if len(self.samples) % CPU_EVERY == 0:
                server = server_cpu_seconds(self._postmaster) - self.cpu_seconds()
                self.cpu.append((time.time(), server, machine_cpu_seconds()))
            rows = self._connection.execute(query, (self._database,)).fetchall()
            activities = Counter(_activity(*row[:3]) for row in rows)
            activities[HOLDING] = sum(bool(row[3]) for row in rows)
            self.samples.append((time.time(), activities))
            time.sleep(SAMPLE_EVERY)

    def cpu_seconds(self) -> float:
        """CPU seconds the server's process answering this sampler has used so far (the
        server's CPU time for the writers leaves it out)."""
        return sum(_proc_stat(self.pid)[2:4]) / os.sysconf("SC_CLK_TCK")

    def cpu_shares(self, figures: dict[str, float]) -> tuple[float, float]:
        """CPUs (seconds per second) the server and the whole machine kept busy while
        the writers wrote (``figures`` from :func:`measure`)."""
        inside = [c for c in self.cpu if figures["started"] <= c[0] <= figures["ended"]]
        if len(inside) < 2:  # noqa: PLR2004  (a difference needs two readings)
            return float("nan"), float("nan")
        (start, server, machine), (end, server_end, machine_end) = inside[0], inside[-1]
        return (server_end - server) / (end - start), (machine_end - machine) / (end - start)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._connection.close()

    def shares(self, figures: dict[str, float], writers: int) -> dict[str, float]:
        """The share of ``writers``' time (percent) in each activity while they wrote
        (``figures`` from :func:`measure`), the time outside the database split by their
        CPU time / wall time."""
        counts: Counter[str] = Counter()
        taken = 0
        for when, activities in self.samples:
            if figures["started"] <= when <= figures["ended"]:
                counts.update(activities)
                taken += 1
        inside = {
            what: 100 * counts[what] / (max(taken, 1) * writers)
            for what in (LOCK, WAL, SERVER, IN_TRANSACTION)
        }
        outside = max(0.0, 100 - sum(inside.values()))
        python = min(outside, 100 * figures["cpu_share"])
        return inside | {PYTHON: python, NO_CPU: outside - python}

    def held(self, figures: dict[str, float]) -> float:
        """The share (0-1) of the writing time (``figures`` from :func:`measure`) during
        which some writer held the log's table lock: for one writer, the serial fraction
        of its writes."""
        held = [
            activities[HOLDING] > 0
            for when, activities in self.samples
            if figures["started"] <= when <= figures["ended"]
        ]
        return sum(held) / max(len(held), 1)


def _activity(state: str, kind: str | None, event: str | None) -> str:
    """What a connection that is not idle is doing."""
    if state == "active" and kind == "Lock":
        return LOCK  # the table lock (relation), or the NOTIFY queue's (object)
    if state == "active" and (kind == "IO" or (kind == "LWLock" and event == "WALWrite")):
        return WAL  # its own fsync, or waiting for another backend's
    if state == "active":
        return SERVER
    return IN_TRANSACTION  # idle in transaction: the client has the next word


def server_cpu_seconds(postmaster: int) -> float:
    """CPU seconds the server's processes have used so far (the postmaster, its live
    children, and the children it has reaped: ended backends), from ``/proc``."""
    total = sum(_proc_stat(postmaster)[2:6])  # its own and its reaped children's
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = _proc_stat(int(entry.name))
            except (OSError, IndexError):  # ended meanwhile
                continue
            if stat[1] == postmaster:
                total += stat[2] + stat[3]
    return total / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds all of this machine's CPUs have been busy so far (``/proc/stat``)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[int]:
    """pid, parent pid, user and system CPU ticks, and those of reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return [pid, int(fields[1]), *(int(f) for f in fields[11:15])]


def ceiling(one: dict[str, float], held: float, writers: int) -> tuple[float, str]:
    """The best ``writers``/1 ratio of writes/s this machine allows, from the one-writer
    run ``one``: the smaller of Amdahl's bound (``held``, the share of a write spent
    holding the table lock, is serial) and the CPU bound (the machine's CPUs / the CPUs
    one writer's writes keep busy: its own Python and the server's work for it). What
    else ran on the machine meanwhile is in the note: it slows one writer and four alike,
    and four win a larger share of the CPUs from it, so it is left out of the bound."""
    amdahl = 1 / (held + (1 - held) / writers)
    busy = one["cpu_share"] + one["server_cpu_share"]
    cpus = len(os.sched_getaffinity(0))
    cpu = cpus / busy if busy else float("inf")
    note = (
        f"Amdahl {amdahl:.2f}x (lock held {100 * held:.0f}% of a write), CPU {cpu:.2f}x "
        f"({cpus} CPUs / {busy:.2f} busy per writer; other work kept "
        f"{max(0.0, one['machine_cpu_share'] - busy):.2f} CPUs busy)"
    )
    return min(amdahl, cpu, writers), note


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
            sampler.stop()
        shares[writers] = sampler.shares(figures, writers)
        rates[writers] = figures["writes_per_s"]
        if writers == 1:
            figures["server_cpu_share"], figures["machine_cpu_share"] = sampler.cpu_shares(figures)
            best, best_note = ceiling(figures, sampler.held(figures), WRITERS)
    relaxed = {
        writers: _writes_per_s_without_waiting_for_fsync(cluster, per_writer, writers)
        for writers in (1, WRITERS)
    }
    followed = measure(cluster.url(cluster.create_database()), per_writer)
    rows = [
        Row(
            f"PostgreSQL follower lag p95, {WRITERS} writer processes, default settings",
            followed["lag_p95_ms"],
            "ms",
            LAG_TARGET,
            note=f"p50 {followed['lag_p50_ms']:.0f} ms; {followed['events']:,.0f} commits",
        ),
        *_lag_parts("PostgreSQL", followed),
        Row(
            f"PostgreSQL writes/s, {WRITERS} writer processes / 1 writer process",
            rates[WRITERS] / rates[1],
            "x",
            SCALING_TARGET,
            note=f"{rates[WRITERS]:.0f}/s vs {rates[1]:.0f}/s, fsync on",
        ),
        Row(
            f"PostgreSQL: best {WRITERS}/1 writers ratio this machine allows (from 1 writer)",
            best,
            "x",
            note=best_note,
        ),
        Row(
            f"PostgreSQL writes/s, {WRITERS}/1 writers, synchronous_commit off (not durable)",
            relaxed[WRITERS] / relaxed[1],
            "x",
            note=f"{relaxed[WRITERS]:.0f}/s vs {relaxed[1]:.0f}/s; a crash loses the last commits",
        ),
        Row("PostgreSQL: WAL sync per commit (server's own timing)", wal_sync_ms(cluster), "ms"),
    ]
    for writers in (1, WRITERS):
        rows += [
            Row(f"PostgreSQL, {writers} writer(s): time {what}", share, "%")
            for what, share in shares[writers].items()
        ]
    return rows


def _writes_per_s_without_waiting_for_fsync(
    cluster: PostgresCluster, per_writer: int, writers: int
) -> float:
    """Writes/s of ``writers`` on a fresh database whose commits do not wait for their WAL
    flush (``synchronous_commit = off`` for that database only: the server and the other
    rows stay durable), to show what the fsync under the table lock costs."""
    database = cluster.create_database()
    cluster.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
    return measure(cluster.url(database), per_writer, writers=writers, followers=0)["writes_per_s"]


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
    rows += _lag_parts("SQLite", sqlite)
    return rows


def _lag_parts(label: str, figures: dict[str, float]) -> list[Row]:
    return [
        Row(
            f"{label}: writer's call p95 (create/update, in the lag)", figures["call_p95_ms"], "ms"
        ),
        Row(
            f"{label}: lag p95 from the end of the writer's call",
            figures["after_commit_p95_ms"],
            "ms",
        ),
    ]


SECTION = Section(
    "scaling",
    f"Scaling: {WRITERS} writer and {FOLLOWERS} follower processes, PostgreSQL and SQLite",
    run,
)
