"""StoreFollower: other processes see the store's document events on their own bus, in
order, resuming from a durable position — nothing missed, and nothing delivered twice
except the one event a crash interrupted (which keeps its id, so it can be recognised)."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, sqlite_url
from eventsourcing.persistence import OperationalError

import atlas_eda
from atlas_eda import (
    Event,
    EventBus,
    EventType,
    FollowerError,
    HandlerFailures,
    StoreFollower,
    StoreURLError,
    TemporalStore,
)
from atlas_eda.follower import FOLLOWER_SOURCE, event_id_for
from atlas_eda.store.positions import RETRY_EVERY
from atlas_eda.testing.postgres import PostgresCluster

DOCUMENT_TYPES = (
    EventType.DOCUMENT_CREATED,
    EventType.DOCUMENT_UPDATED,
    EventType.DOCUMENT_DELETED,
)


@pytest.fixture
def writer(durable_url: str) -> Iterator[TemporalStore]:
    store = TemporalStore(EventBus(), url=durable_url)
    yield store
    store.close()


def collect(bus: EventBus) -> list[Event]:
    events: list[Event] = []
    bus.subscribe_all(events.append)
    return events


def follower_for(url: str, name: str | None, **kwargs: Any) -> tuple[StoreFollower, list[Event]]:
    bus = EventBus()
    return StoreFollower(url, bus, name, **kwargs), collect(bus)


def write_some(store: TemporalStore, count: int) -> list[str]:
    return [store.create_document(f"doc {i}", "c", "a") for i in range(count)]


# -- what is delivered -----------------------------------------------------------------


def test_follower_events_are_roots_correlated_as_bus_roots(writer: TemporalStore) -> None:
    """A followed event starts its own tree as a local root does: correlation id = its id;
    what a handler publishes in reply is correlated with it."""
    follower, events = follower_for(writer.url, None, from_start=True)
    replies: list[Event] = []
    follower.bus.subscribe(
        EventType.DOCUMENT_CREATED, lambda e: follower.bus.publish(EventType.COMMAND_EXECUTED)
    )
    follower.bus.subscribe(EventType.COMMAND_EXECUTED, replies.append)
    writer.create_document("T", "c", "a")
    follower.poll()
    created = next(e for e in events if e.type is EventType.DOCUMENT_CREATED)
    assert created.correlation_id == created.id
    assert created.causation_id is None
    assert [(r.correlation_id, r.causation_id) for r in replies] == [(created.id, created.id)]
    follower.close()


def test_each_committed_change_is_republished_like_the_store_publishes_it(
    writer: TemporalStore, durable_url: str
) -> None:
    assert writer.event_bus is not None
    published = collect(writer.event_bus)
    follower, seen = follower_for(durable_url, "mirror")
    document_id = writer.create_document("t", "c", "alice")
    writer.update_document(document_id, title="t2", editor="bob")
    writer.update_document(document_id, content="c3")
    writer.delete_document(document_id, reason="done")

    assert follower.poll() == 4
    assert follower.poll() == 0

    assert [(e.type, e.data) for e in seen] == [
        (EventType.DOCUMENT_CREATED, published[0].data),
        (EventType.DOCUMENT_UPDATED, published[1].data),
        # The stored event records the resolved editor: the author when none was given.
        (EventType.DOCUMENT_UPDATED, published[2].data | {"editor": "alice"}),
        (EventType.DOCUMENT_DELETED, published[3].data),
    ]
    assert [e.metadata["notification_id"] for e in seen] == [1, 2, 3, 4]
    assert {e.metadata["follower"] for e in seen} == {"mirror"}
    assert {e.source for e in seen} == {FOLLOWER_SOURCE}
    assert [e.id for e in seen] == [event_id_for(document_id, v) for v in (1, 2, 3, 4)]
    stored = [writer.get_document(document_id, version=v) for v in (1, 2, 3, 4)]
    assert [e.timestamp for e in seen] == [d.modified_at for d in stored if d is not None]
    assert follower.position == 4
    assert follower.backlog() == 0
    follower.close()


def test_a_new_follower_starts_at_the_end_unless_told_to_start_at_the_beginning(
    writer: TemporalStore, durable_url: str
) -> None:
    before = write_some(writer, 3)
    late, late_seen = follower_for(durable_url, "late")
    early, early_seen = follower_for(durable_url, "early", from_start=True)
    after = write_some(writer, 2)

    assert late.poll() == 2
    assert early.poll() == 5
    assert [e.data["id"] for e in late_seen] == after
    assert [e.data["id"] for e in early_seen] == before + after
    late.close()
    early.close()


def test_a_restarted_follower_resumes_after_its_recorded_position(
    writer: TemporalStore, durable_url: str
) -> None:
    ids = write_some(writer, 3)
    first, first_seen = follower_for(durable_url, "indexer", from_start=True)
    assert first.poll() == 3
    first.close()
    ids += write_some(writer, 2)

    # from_start does not rewind a follower that has a position.
    second, second_seen = follower_for(durable_url, "indexer", from_start=True)
    assert second.position == 3
    assert second.poll() == 2

    assert [e.data["id"] for e in first_seen + second_seen] == ids
    second.close()


def test_the_start_position_is_recorded_at_once(writer: TemporalStore, durable_url: str) -> None:
    write_some(writer, 2)
    follower, _ = follower_for(durable_url, "tail")
    follower.close()  # closed before it ever polled
    missed_otherwise = write_some(writer, 2)

    again, seen = follower_for(durable_url, "tail")
    assert again.poll() == 2
    assert [e.data["id"] for e in seen] == missed_otherwise
    again.close()


def test_followers_with_different_names_keep_separate_positions(
    writer: TemporalStore, durable_url: str
) -> None:
    a, a_seen = follower_for(durable_url, "a", from_start=True)
    b, b_seen = follower_for(durable_url, "b", from_start=True)
    write_some(writer, 3)
    assert a.poll() == 3
    write_some(writer, 1)
    assert b.poll() == 4
    assert a.poll() == 1
    assert [e.id for e in a_seen] == [e.id for e in b_seen]
    a.close()
    b.close()


def test_a_transient_follower_records_no_position(writer: TemporalStore, durable_url: str) -> None:
    write_some(writer, 2)
    follower, seen = follower_for(durable_url, None, from_start=True)
    assert follower.poll() == 2
    follower.close()

    again, _ = follower_for(durable_url, None, from_start=True)
    assert again.poll() == 2  # nothing was recorded: it starts over
    assert seen[0].metadata["follower"] is None
    again.close()


def test_with_commit_every_the_position_is_recorded_every_n_and_when_poll_returns(
    writer: TemporalStore, durable_url: str
) -> None:
    write_some(writer, 12)
    bus = EventBus()
    follower = StoreFollower(durable_url, bus, "batched", from_start=True, commit_every=5)
    recorded: list[int | None] = []
    bus.subscribe_all(lambda e: recorded.append(follower._tracking.max_tracking_id("batched")))

    assert follower.poll() == 12
    assert recorded == [0] * 5 + [5] * 5 + [10] * 2  # each handler runs before its record
    assert follower._tracking.max_tracking_id("batched") == 12
    follower.close()
    with pytest.raises(ValueError, match="commit_every must be a positive int"):
        StoreFollower(durable_url, EventBus(), "x", commit_every=0)


def test_by_default_the_position_is_recorded_once_per_page(
    writer: TemporalStore, durable_url: str
) -> None:
    write_some(writer, 10)
    bus = EventBus()
    follower = StoreFollower(durable_url, bus, "paged", from_start=True, page_size=4)
    recorded: list[int | None] = []
    bus.subscribe_all(lambda e: recorded.append(follower._tracking.max_tracking_id("paged")))

    assert follower.poll() == 10
    assert recorded == [0] * 4 + [4] * 4 + [8] * 2  # after each page, and when poll returns
    assert follower._tracking.max_tracking_id("paged") == 10
    follower.close()
    with pytest.raises(ValueError, match="or None"):
        StoreFollower(durable_url, EventBus(), "x", commit_every="page")  # type: ignore[arg-type]


def test_run_records_the_position_once_nothing_new_came_for_a_whole_wait(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path / "store.db")
    writer = TemporalStore(url=url)
    fake = FakeTime()
    follower, _ = follower_for(url, "idle", clock=fake.clock, sleep=fake.sleep)
    recorded_at_naps: list[int | None] = []

    def sleep(seconds: float) -> None:
        recorded_at_naps.append(follower._tracking.max_tracking_id("idle"))
        fake.sleep(seconds)

    follower._sleep = sleep
    write_some(writer, 2)
    assert follower.run(idle_timeout=0.3, interval=0.1) == 2
    # Caught up: not recorded before the first wait (writers may still be writing), but
    # after a wait that brought nothing; and when run returns.
    assert recorded_at_naps == [0, 2, 2]
    assert follower._tracking.max_tracking_id("idle") == 2
    follower.close()
    writer.close()


def test_a_position_is_recorded_between_two_writers_commits_on_sqlite(tmp_path: Path) -> None:
    # SQLite's busy handler sleeps up to 100 ms between tries, and busy writers take the
    # lock in between: a follower is not left waiting there; it tries every millisecond.
    path = tmp_path / "store.db"
    writer = TemporalStore(url=sqlite_url(path))
    write_some(writer, 3)
    other = sqlite3.connect(path, isolation_level=None)
    naps: list[float] = []

    def sleep(seconds: float) -> None:  # meanwhile, the other writer commits
        naps.append(seconds)
        if other.in_transaction:
            other.execute("COMMIT")

    follower, seen = follower_for(sqlite_url(path), "prompt", from_start=True, sleep=sleep)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock
    assert follower.poll() == 3
    assert len(seen) == 3
    assert naps == [RETRY_EVERY]
    follower.close()
    again, _ = follower_for(sqlite_url(path), "prompt")
    assert again.position == 3
    again.close()

    # A lock held past the store's lock timeout: refused as SQLite refuses it, nothing lost.
    stuck, _ = follower_for(sqlite_url(path), "stuck", from_start=True, sleep=naps.append)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(OperationalError, match="locked"):
        stuck.poll()
    other.execute("COMMIT")
    stuck.close()
    again, _ = follower_for(sqlite_url(path), "stuck")
    assert again.position == 0  # delivered, never recorded: the next run delivers it again
    assert again.poll() == 3
    again.close()
    other.close()
    writer.close()


def test_poll_limit_and_small_pages_deliver_everything_once_in_order(
    writer: TemporalStore, durable_url: str
) -> None:
    ids = write_some(writer, 23)
    follower, seen = follower_for(durable_url, "pages", from_start=True, page_size=4)

    assert follower.poll(limit=5) == 5
    assert follower.backlog() == 18
    assert follower.poll() == 18
    assert [e.data["id"] for e in seen] == ids
    follower.close()


def test_a_failing_handler_does_not_stop_the_follower(
    writer: TemporalStore, durable_url: str
) -> None:
    bus = EventBus()
    follower = StoreFollower(durable_url, bus, "brittle", from_start=True)
    errors = collect_errors(bus)

    def handler(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(EventType.DOCUMENT_CREATED, handler)
    write_some(writer, 2)

    assert follower.poll() == 2  # the bus isolates the failure; the position moves on
    assert follower.position == 2
    assert len(errors) == 2
    follower.close()


def collect_errors(bus: EventBus) -> list[Event]:
    errors: list[Event] = []
    bus.subscribe(EventType.ERROR, errors.append)
    return errors


def test_two_followers_with_one_name_are_told_apart(
    writer: TemporalStore, durable_url: str
) -> None:
    first, _ = follower_for(durable_url, "twin", from_start=True)
    second, _ = follower_for(durable_url, "twin", from_start=True)
    write_some(writer, 1)
    assert first.poll() == 1

    with pytest.raises(FollowerError, match="another follower with the same name"):
        second.poll()
    first.close()
    second.close()


class FakeTime:
    """A clock that moves only when slept on: ``run`` then waits without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.naps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds


def test_run_waits_between_polls_with_its_sleep_until_its_limit(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "store.db")
    writer = TemporalStore(url=url)
    ids: list[str] = []
    naps: list[float] = []

    def sleep(seconds: float) -> None:  # meanwhile, another process commits a document
        naps.append(seconds)
        ids.extend(write_some(writer, 1))

    follower, seen = follower_for(url, "runner", sleep=sleep)
    delivered = follower.run(limit=3, timeout=30, interval=0.05)

    assert delivered == 3
    assert [e.data["id"] for e in seen] == ids
    assert naps == [0.05, 0.05, 0.05]  # one wait before each commit, none after the last
    follower.close()
    writer.close()


def test_run_on_postgresql_wakes_when_a_writer_commits(postgres_url: str) -> None:
    # LISTEN/NOTIFY is the server's: these waits are real ones.
    writer = TemporalStore(url=postgres_url)
    follower, seen = follower_for(postgres_url, "runner")
    ids: list[str] = []

    def write_later() -> None:
        for _ in range(3):
            time.sleep(0.1)
            ids.extend(write_some(writer, 1))

    thread = threading.Thread(target=write_later)
    thread.start()
    delivered = follower.run(limit=3, timeout=30, interval=0.05)
    thread.join()

    assert delivered == 3
    assert [e.data["id"] for e in seen] == ids
    started = time.monotonic()
    assert follower.run(timeout=0.3, interval=0.05) == 0
    assert 0.3 <= time.monotonic() - started < 10
    follower.close()
    writer.close()


def test_run_stops_at_its_timeout_and_idle_timeout_read_from_its_clock(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "store.db")
    writer = TemporalStore(url=url)
    fake = FakeTime()
    follower, seen = follower_for(url, "idle", clock=fake.clock, sleep=fake.sleep)

    assert follower.run(timeout=1.0, interval=0.25) == 0
    assert fake.naps == [0.25] * 4
    fake.naps.clear()
    assert follower.run(timeout=1.0, interval=0.75) == 0
    assert fake.naps == [0.75, 0.25]  # the last wait ends at the timeout

    write_some(writer, 2)
    fake.naps.clear()
    assert follower.run(idle_timeout=0.5, interval=0.25) == 2
    assert fake.naps == [0.25, 0.25]  # idle counted from the last delivery
    assert len(seen) == 2
    follower.close()
    writer.close()


def test_run_stops_at_its_stop_event(durable_url: str, writer: TemporalStore) -> None:
    # Another thread sets the event: this wait is a real one, on the event itself.
    follower, _ = follower_for(durable_url, "idle")
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert follower.run(stop_event=stop, interval=0.05) == 0
    assert time.monotonic() - started < 10
    follower.close()


# -- handlers that fail ----------------------------------------------------------------


@pytest.mark.parametrize("commit_every", [1, 10])
def test_an_event_whose_handler_raises_is_redelivered_after_a_restart(
    tmp_path: Path, commit_every: int
) -> None:
    url = sqlite_url(tmp_path / "store.db")
    writer = TemporalStore(url=url)
    failing = EventBus(failure_policy="raise")
    handled: list[str] = []

    def handler(event: Event) -> None:
        if event.data["id"] == ids[1]:
            raise RuntimeError("the search index is down")
        handled.append(event.data["id"])

    failing.subscribe(EventType.DOCUMENT_CREATED, handler)
    follower = StoreFollower(url, failing, "indexer", from_start=True, commit_every=commit_every)
    ids = write_some(writer, 3)

    with pytest.raises(HandlerFailures):
        follower.poll()
    assert handled == ids[:1]
    assert follower.position == 1  # the failed event is not passed over
    with pytest.raises(HandlerFailures):
        follower.poll()  # nor by the next poll
    follower.close()

    # A restart (the handler fixed) delivers the failed event first, then the rest.
    restarted, seen = follower_for(url, "indexer")
    assert restarted.position == 1
    assert restarted.poll() == 2
    assert [e.data["id"] for e in seen] == ids[1:]
    assert [e.id for e in seen] == [event_id_for(i, 1) for i in ids[1:]]
    restarted.close()
    writer.close()


# -- refused ---------------------------------------------------------------------------


def test_a_memory_store_cannot_be_followed() -> None:
    with pytest.raises(StoreURLError, match="cannot be followed"):
        StoreFollower("memory://", EventBus(), "x")
    with pytest.raises(StoreURLError, match="unknown scheme"):
        StoreFollower("mysql://x/y", EventBus(), "x")


@pytest.mark.parametrize("name", ["", "  ", "__migration__", 3])
def test_a_bad_name_is_refused(tmp_path: Path, name: Any) -> None:
    with pytest.raises(ValueError, match="follower name"):
        StoreFollower(f"sqlite:///{tmp_path}/x.db", EventBus(), name)


# -- other processes, and crashes ------------------------------------------------------

FOLLOWER_SCRIPT = """
import os, signal, sys
from atlas_eda import EventBus, StoreFollower

url, name, out, mode, crash_at, total, commit_every = sys.argv[1:8]
crash_at, total = int(crash_at), int(total)
bus = EventBus()
follower = StoreFollower(
    url,
    bus,
    name,
    from_start=True,
    page_size=7,
    commit_every=None if commit_every == "page" else int(commit_every),
)

def handle(event):
    position = event.metadata["notification_id"]
    if mode == "kill-before" and position == crash_at:
        os.kill(os.getpid(), signal.SIGKILL)
    with open(out, "a") as f:
        f.write(f"{position} {event.id}\\n")
        f.flush()
        os.fsync(f.fileno())
    if mode == "kill-after" and position == crash_at:
        os.kill(os.getpid(), signal.SIGKILL)

bus.subscribe_all(handle)
while follower.position < total:
    follower.run(timeout=1, interval=0.02)
follower.close()
"""

WRITER_SCRIPT = """
import sys, time
from atlas_eda import TemporalStore

store = TemporalStore(url=sys.argv[1])
for i in range(int(sys.argv[2])):
    store.create_document(f"doc {i}", "c", "w")
    time.sleep(0.002)
store.close()
"""


def python(script: Path, *args: str) -> list[str]:
    return [sys.executable, str(script), *args]


def environment() -> dict[str, str]:
    package_root = str(Path(atlas_eda.__file__).resolve().parents[1])
    return {k: v for k, v in os.environ.items() if k != "ATLAS_EDA_STORE_URL"} | {
        "PYTHONPATH": package_root
    }


def delivered_lines(path: Path) -> list[tuple[int, str]]:
    return [(int(p), i) for p, i in (line.split() for line in path.read_text().splitlines())]


@pytest.fixture
def scripts(tmp_path: Path) -> tuple[Path, Path]:
    follower = tmp_path / "follow.py"
    follower.write_text(FOLLOWER_SCRIPT)
    writer = tmp_path / "write.py"
    writer.write_text(WRITER_SCRIPT)
    return follower, writer


@pytest.mark.parametrize(
    "case",
    # mode, commit_every, the last event handled before the crash, the first one after it
    # (pages of 7: the default records positions 7, 14, 20, so a crash at 9 repeats 8 and 9)
    [
        ("kill-after", 1, 9, 9),
        ("kill-before", 1, 8, 9),
        ("kill-after", 5, 9, 6),
        ("kill-after", "page", 9, 8),
        ("kill-before", "page", 8, 8),
        ("kill-after", "page", 14, 8),
    ],
    ids=[
        "killed-after-handling",
        "killed-before-handling",
        "killed-committing-every-5",
        "default-killed-inside-a-page",
        "default-killed-before-handling",
        "default-killed-at-a-page-end",
    ],
)
def test_a_follower_killed_while_handling_an_event_resumes_without_losing_any(
    writer: TemporalStore,
    tmp_path: Path,
    scripts: tuple[Path, Path],
    case: tuple[str, int | str, int, int],
) -> None:
    mode, commit_every, handled, resumed = case
    ids = write_some(writer, 20)
    out = tmp_path / "delivered.txt"
    script = scripts[0]
    durable_url = writer.url

    crash_at = str(handled if mode == "kill-after" else handled + 1)
    crashed = subprocess.run(
        python(script, durable_url, "crashy", str(out), mode, crash_at, "20", str(commit_every)),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    restarted = subprocess.run(
        python(script, durable_url, "crashy", str(out), "none", "0", "20", "1"),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert restarted.returncode == 0, restarted.stderr

    lines = delivered_lines(out)
    positions = [p for p, _ in lines]
    # Nothing missed; repeated: only what was handled after the last recorded position.
    assert positions == list(range(1, handled + 1)) + list(range(resumed, 21))
    expected_ids = {n: event_id_for(ids[n - 1], 1) for n in range(1, 21)}
    assert all(event_id == expected_ids[p] for p, event_id in lines)  # a repeat keeps its id


@pytest.mark.parametrize(
    ("commit_every", "most_repeated"),
    [("1", 1), ("page", 7)],  # the event in hand; the page in hand (pages of 7)
    ids=["committing-every-event", "default-committing-every-page"],
)
def test_a_follower_killed_mid_stream_by_another_process_misses_nothing(
    durable_url: str,
    tmp_path: Path,
    scripts: tuple[Path, Path],
    commit_every: str,
    most_repeated: int,
) -> None:
    follower_script, writer_script = scripts
    out = tmp_path / "delivered.txt"
    total = 150
    TemporalStore(url=durable_url).close()  # create the tables before the race starts
    writing = subprocess.Popen(
        python(writer_script, durable_url, str(total)), env=environment(), text=True
    )
    following = subprocess.Popen(
        python(
            follower_script, durable_url, "tail", str(out), "none", "0", str(total), commit_every
        ),
        env=environment(),
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while (not out.exists() or len(out.read_text().splitlines()) < 20) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.01)
    following.send_signal(signal.SIGKILL)
    following.wait(timeout=30)
    killed_after = len(delivered_lines(out))

    restarted = subprocess.run(
        python(follower_script, durable_url, "tail", str(out), "none", "0", str(total), "1"),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert writing.wait(timeout=120) == 0
    assert restarted.returncode == 0, restarted.stderr

    positions = [p for p, _ in delivered_lines(out)]
    assert 20 <= killed_after < total, "the follower was not killed mid-stream"
    assert sorted(set(positions)) == list(range(1, total + 1))
    # Before the crash each once, in order; after it, in order from the first position
    # not recorded: what is repeated is at most the event (or page) in hand.
    assert positions[:killed_after] == list(range(1, killed_after + 1))
    resumed = positions[killed_after]
    assert positions[killed_after:] == list(range(resumed, total + 1))
    assert killed_after + 1 - resumed <= most_repeated


# -- the command line ------------------------------------------------------------------


def test_cli_follow_prints_events_as_they_arrive_and_resumes_by_name(
    writer: TemporalStore, durable_url: str, tmp_path: Path
) -> None:
    ids = write_some(writer, 2)
    writer.update_document(ids[0], title="renamed", editor="bob")

    first = run_cli(
        "follow",
        "--store",
        durable_url,
        "--name",
        "cli",
        "--from-start",
        "--limit",
        "2",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 2
    assert "DOCUMENT_CREATED" in lines[0]
    assert ids[0] in lines[0]
    assert "title='doc 0'" in lines[0]

    second = run_cli(
        "follow", "--store", durable_url, "--name", "cli", "--timeout", "1", cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr
    [line] = second.stdout.splitlines()
    assert line.split()[0] == "3"
    assert "DOCUMENT_UPDATED" in line
    assert "title='renamed'" in line
    assert "editor='bob'" in line


def test_cli_follow_refuses_bad_arguments(tmp_path: Path) -> None:
    missing = run_cli("follow", "--store", f"sqlite:///{tmp_path}/none.db", cwd=tmp_path)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    TemporalStore(url=f"sqlite:///{tmp_path}/s.db").close()
    for flag, value in (("--limit", "0"), ("--timeout", "soon"), ("--timeout", "-1")):
        bad = run_cli("follow", "--store", f"sqlite:///{tmp_path}/s.db", flag, value, cwd=tmp_path)
        assert bad.returncode == 2
        assert flag in bad.stderr


STARTER_SCRIPT = """
import sys, time
from atlas_eda import EventBus, StoreFollower

time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all start at the same moment
follower = StoreFollower(sys.argv[1], EventBus(), sys.argv[2], from_start=True)
sys.stdout.write(str(follower.poll()))
follower.close()
"""


def test_several_follower_processes_can_start_at_once_on_a_new_store(
    writer: TemporalStore, tmp_path: Path
) -> None:
    write_some(writer, 3)
    script = tmp_path / "start.py"
    script.write_text(STARTER_SCRIPT)
    start_at = str(time.time() + 3)
    processes = [
        subprocess.Popen(
            python(script, writer.url, f"f{i}", start_at),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        for i in range(4)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]

    assert [p.returncode for p in processes] == [0] * 4, [err for _, err in outputs]
    assert [out for out, _ in outputs] == ["3"] * 4


def test_a_postgresql_follower_survives_losing_its_listen_connection(
    postgres_url: str, pg_cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    writer = TemporalStore(url=postgres_url)
    follower, seen = follower_for(postgres_url, "steady")
    listener = follower._listen()
    assert listener is not None
    with pg_cluster.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (listener.info.backend_pid,))

    def write_later() -> None:
        time.sleep(0.5)
        writer.create_document("after", "the", "outage")

    thread = threading.Thread(target=write_later)
    thread.start()
    with caplog.at_level("WARNING", logger="atlas_eda.follower"):
        delivered = follower.run(limit=1, timeout=30, interval=0.05)
    thread.join()

    assert delivered == 1
    assert seen[0].data["title"] == "after"
    assert [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "atlas_eda.follower"
    ] == [(logging.WARNING, "follower 'steady' lost its LISTEN connection; reconnecting")]
    follower.close()
    writer.close()
