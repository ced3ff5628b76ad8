"""Shutting down: EventBus.close (no new publishes, in-flight deliveries waited for),
TemporalStore as a context manager, and the long-running commands stopping on SIGTERM."""

from __future__ import annotations

import enum
import logging
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from atlas_eda import (
    BusClosedError,
    CommandType,
    Event,
    EventBus,
    EventType,
    InvalidArgumentError,
    QueryType,
    StoreClosedError,
    StoreFollower,
    TemporalStore,
)
from atlas_eda.projections import DocumentsByAuthor

WAIT = 60.0  # generous: a loaded 2-core machine


class Shop(enum.Enum):
    PLACED = "shop.placed"
    SHIPPED = "shop.shipped"


class Do(CommandType):
    SHIP = "do.ship"


class Ask(QueryType):
    COUNT = "ask.count"


def test_publishing_after_close_raises_and_records_nothing() -> None:
    bus = EventBus(failure_policy="dead_letter")
    seen: list[Event] = []
    bus.subscribe(Shop.PLACED, seen.append)
    bus.subscribe_all(seen.append)
    bus.handle(Do.SHIP, lambda message: "shipped")
    bus.handle(Ask.COUNT, lambda message: 1)
    bus.publish(Shop.PLACED, {"order": 1})
    history = bus.get_history(limit=None)
    assert bus.close() == 0
    assert bus.closed

    attempts = [
        lambda: bus.publish(Shop.PLACED, {"order": 2}),
        lambda: bus.publish_event(Event(type=Shop.PLACED, data={"order": 3})),
        lambda: bus.send(Do.SHIP, {"order": 2}),
        lambda: bus.ask(Ask.COUNT),
    ]
    for attempt in attempts:
        with pytest.raises(BusClosedError, match="this EventBus was closed; nothing was recorded"):
            attempt()
    assert bus.get_history(limit=None) == history
    assert len(seen) == 2  # the one event before close, to both handlers
    assert bus.dead_letters == []
    assert bus.get_history(EventType.ERROR) == []


def test_closing_twice_does_nothing(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    with caplog.at_level(logging.INFO, logger="atlas_eda.bus"):
        assert bus.close() == 0
        closing = len(caplog.records)
        assert bus.close() == 0
    assert closing == 1
    assert len(caplog.records) == closing


@pytest.mark.parametrize("timeout", [-1, float("inf"), float("nan"), "5", True])
def test_close_refuses_a_timeout_that_is_not_seconds(timeout: object) -> None:
    bus = EventBus()
    with pytest.raises(InvalidArgumentError, match="timeout must be"):
        bus.close(timeout)  # type: ignore[arg-type]
    assert not bus.closed


def test_close_waits_for_a_delivery_under_way_on_another_thread_and_its_children(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    entered, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def slow(event: Event) -> None:
        entered.set()
        release.wait(WAIT)
        bus.publish(Shop.SHIPPED, event.data)  # a child: part of the delivery under way
        finished.append("placed")

    bus.subscribe(Shop.PLACED, slow)
    bus.subscribe(Shop.SHIPPED, lambda event: finished.append("shipped"))
    publisher = threading.Thread(
        target=bus.publish, args=(Shop.PLACED, {"order": 7}), name="publisher"
    )
    publisher.start()
    assert entered.wait(WAIT)

    def release_once_closed() -> None:
        while not bus.closed:
            time.sleep(0.001)
        release.set()

    releaser = threading.Thread(target=release_once_closed)
    releaser.start()
    with caplog.at_level(logging.INFO, logger="atlas_eda.bus"):
        still = bus.close(timeout=WAIT)
    publisher.join(WAIT)
    releaser.join(WAIT)

    assert still == 0
    assert finished == ["shipped", "placed"]  # both done before close returned
    assert [e.type for e in bus.get_history(limit=None)] == [Shop.SHIPPED, Shop.PLACED]
    messages = [record.getMessage() for record in caplog.records]
    assert (
        "waiting up to 60s for 1 delivery(ies) under way: thread publisher: Shop.PLACED"
        in (messages[0])
    )
    assert messages[-1] == "bus closed; every delivery under way finished"


def test_close_gives_up_at_its_timeout_and_says_what_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    entered, release = threading.Event(), threading.Event()

    def stuck(event: Event) -> None:
        entered.set()
        release.wait(WAIT)

    bus.subscribe(Shop.PLACED, stuck)
    publisher = threading.Thread(target=bus.publish, args=(Shop.PLACED,), name="stuck-one")
    publisher.start()
    assert entered.wait(WAIT)
    try:
        with caplog.at_level(logging.INFO, logger="atlas_eda.bus"):
            assert bus.close(timeout=0.05) == 1
    finally:
        release.set()
        publisher.join(WAIT)
    warning = caplog.records[-1]
    assert warning.levelno == logging.WARNING
    assert "still under way: thread stuck-one: Shop.PLACED" in warning.getMessage()


def test_a_handler_closing_its_own_bus_does_not_wait_for_itself() -> None:
    bus = EventBus()
    returned: list[int] = []
    bus.subscribe(Shop.PLACED, lambda event: returned.append(bus.close(timeout=WAIT)))
    bus.publish(Shop.PLACED)
    assert returned == [0]
    with pytest.raises(BusClosedError):
        bus.publish(Shop.PLACED)


def test_a_temporal_store_is_a_context_manager(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with TemporalStore(url=url) as store:
        document_id = store.create_document("t", "c", "ann")
    with pytest.raises(StoreClosedError):
        store.get_document(document_id)
    with TemporalStore(url=url) as again:
        assert again.get_document(document_id) is not None


# -- the long-running commands stop on SIGTERM, positions recorded --------------------


def _command(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "atlas_eda.cli", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str], number: int = signal.SIGTERM) -> tuple[str, str]:
    process.send_signal(number)
    try:
        return process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()


def _store_with(url: str, documents: int) -> int:
    with TemporalStore(url=url) as store:
        for n in range(documents):
            store.create_document(f"t{n}", "c", "ann")
        return store.last_position()


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_follow_stops_on_a_signal_with_its_position_recorded(tmp_path: Path, number: int) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    last = _store_with(url, 3)
    process = _command("follow", "--store", url, "--name", "mailer", "--from-start")
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]  # every event delivered
    assert all("DOCUMENT_CREATED" in line for line in lines), lines
    _, err = _stop(process, number)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    with StoreFollower(url, EventBus(), "mailer") as follower:
        assert follower.position == last


def test_project_stops_on_sigterm_with_its_position_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    last = _store_with(url, 4)
    app = tmp_path / "read_app.py"
    view = tmp_path / "view.db"
    app.write_text(
        "from atlas_eda.projections import DocumentsByAuthor\n"
        f"def make():\n    return DocumentsByAuthor('sqlite:///{view}')\n"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "atlas_eda.cli",
            "project",
            "--store",
            url,
            "--app",
            "read_app:make",
            "--timeout",
            "600",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + WAIT
    while _applied(view) < last and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    out, err = _stop(process)  # caught up, polling for more
    assert process.returncode == 0, err
    assert f"applied {last} events, position {last} of {last}" in out
    with DocumentsByAuthor(f"sqlite:///{view}") as reopened:
        assert reopened.position == last
        assert len(reopened.rows()) == last


def _applied(view: Path) -> int:
    """The position a running projection has recorded in its read model (read-only)."""
    try:
        with closing(sqlite3.connect(f"file:{view}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT MAX(notification_id) FROM tracking").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0
    return int(row[0] or 0)


def test_inspect_stops_on_sigterm_with_exit_status_zero(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _store_with(url, 1)
    process = _command("inspect", "--store", url, "--port", "0")
    assert process.stdout is not None
    assert "read-only; Ctrl-C to stop" in process.stdout.readline()
    _, err = _stop(process)
    assert process.returncode == 0, err
    assert "Traceback" not in err
