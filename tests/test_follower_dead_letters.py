"""Followers acknowledge only what was handled: an event whose handlers fail becomes a
dead letter kept in the store's database (per follower name, with its position, handler,
error and attempts) in the transaction that moves the position past it; a poison event is
given up after ``max_attempts``; an undecodable stored event becomes a dead letter naming
its position. ``atlas-eda dead-letters`` lists, retries and discards them."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, sqlite_url
from test_follower import environment, write_some

from atlas_eda import (
    Event,
    EventBus,
    EventType,
    FollowerDeadLetter,
    FollowerError,
    HandlerFailures,
    StoreFollower,
    TemporalStore,
)
from atlas_eda.follower import MAX_ATTEMPTS, event_id_for


def poison(ids: list[str], bad: int, handled: list[int]) -> Any:
    """A handler that fails on the document ``ids[bad]`` and notes the positions it handled."""

    def index_document(event: Event) -> None:
        if event.data["id"] == ids[bad]:
            raise RuntimeError(f"cannot index {event.data['title']}")
        handled.append(event.metadata["notification_id"])

    return index_document


def test_a_dead_letter_policy_failure_is_kept_in_the_store_and_survives_a_restart(
    durable_url: str,
) -> None:
    writer = TemporalStore(url=durable_url)
    ids = write_some(writer, 3)
    handled: list[int] = []
    bus = EventBus(failure_policy="dead_letter")
    bus.subscribe(EventType.DOCUMENT_CREATED, poison(ids, 1, handled))
    with StoreFollower(durable_url, bus, "indexer", from_start=True) as follower:
        assert follower.poll() == 3
        assert handled == [1, 3]
        assert follower.position == 3  # past the failed event: its letter is saved

    # A new process (a new follower object) finds the letter in the store's database.
    with StoreFollower(durable_url, EventBus(), "indexer") as restarted:
        assert restarted.position == 3
        [letter] = restarted.dead_letters()
    assert isinstance(letter, FollowerDeadLetter)
    assert letter.follower == "indexer"
    assert letter.position == 2
    assert letter.event_id == event_id_for(ids[1], 1)
    assert letter.handler.endswith("index_document")
    assert (letter.error_type, letter.error_message) == ("RuntimeError", "cannot index doc 1")
    assert letter.attempts == 1
    assert letter.topic.startswith("atlas_eda.")
    with StoreFollower(durable_url, EventBus(), "other", from_start=True) as other:
        assert other.dead_letters() == []  # letters are per follower name
    writer.close()


def test_a_poison_event_is_given_up_after_max_attempts_counted_across_restarts(
    durable_url: str,
) -> None:
    writer = TemporalStore(url=durable_url)
    ids = write_some(writer, 3)
    handled: list[int] = []

    def follower() -> StoreFollower:
        bus = EventBus(failure_policy="raise")
        bus.subscribe(EventType.DOCUMENT_CREATED, poison(ids, 1, handled))
        return StoreFollower(durable_url, bus, "indexer", from_start=True, max_attempts=3)

    for _ in range(2):  # attempts 1 and 2: raised to the caller, the position stays
        with follower() as first, pytest.raises(HandlerFailures):
            first.poll()
        assert first.position == 1
    with follower() as last:
        assert last.dead_letters() == []  # still being retried: not a dead letter yet
        assert last.poll() == 2  # attempt 3 gives up, keeps the letter, goes on
        assert last.position == 3
        [letter] = last.dead_letters()
        assert last.poll() == 0
    assert handled == [1, 3]
    assert (letter.position, letter.attempts) == (2, 3)
    writer.close()


def test_an_event_handled_on_a_later_attempt_leaves_no_letter(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "store.db")
    writer = TemporalStore(url=url)
    write_some(writer, 2)
    calls: list[int] = []

    def flaky(event: Event) -> None:
        calls.append(event.metadata["notification_id"])
        if len(calls) == 1:
            raise ConnectionError("the index is restarting")

    bus = EventBus(failure_policy="raise")
    bus.subscribe(EventType.DOCUMENT_CREATED, flaky)
    with StoreFollower(url, bus, "indexer", from_start=True) as follower:
        with pytest.raises(HandlerFailures):
            follower.poll()
        assert follower.poll() == 2
        assert follower.dead_letters() == []
    assert calls == [1, 1, 2]
    with sqlite3.connect(tmp_path / "store.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM atlas_dead_letters").fetchone() == (0,)
    writer.close()


def test_an_undecodable_stored_event_becomes_a_dead_letter_naming_its_position(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    url = sqlite_url(path)
    writer = TemporalStore(url=url)
    write_some(writer, 3)
    writer.close()
    with sqlite3.connect(path) as connection:  # a damaged row: its state is not JSON
        connection.execute("UPDATE stored_events SET state = x'00ff' WHERE rowid = 2")
    seen: list[int] = []
    bus = EventBus(failure_policy="raise")
    bus.subscribe_all(lambda event: seen.append(event.metadata["notification_id"]))
    with StoreFollower(url, bus, "mirror", from_start=True) as follower:
        assert follower.poll() == 3
        assert seen == [1, 3]  # the follower went on
        [letter] = follower.dead_letters()
    assert letter.position == 2
    assert letter.handler == "<decoding position 2>"
    assert letter.event_id == ""
    assert letter.attempts == 1


def test_retry_redelivers_and_removes_what_is_handled_and_counts_what_fails(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path / "store.db")
    writer = TemporalStore(url=url)
    ids = write_some(writer, 3)
    bus = EventBus(failure_policy="dead_letter")
    bus.subscribe(EventType.DOCUMENT_CREATED, poison(ids, 1, []))
    bus.subscribe(EventType.DOCUMENT_CREATED, poison(ids, 2, []))
    with StoreFollower(url, bus, "indexer", from_start=True) as follower:
        follower.poll()
    fixed_bus = EventBus(failure_policy="dead_letter")
    redelivered: list[Event] = []
    fixed_bus.subscribe(EventType.DOCUMENT_CREATED, redelivered.append)
    fixed_bus.subscribe(EventType.DOCUMENT_CREATED, poison(ids, 2, []))  # still broken
    with StoreFollower(url, fixed_bus, "indexer") as retrying:
        first, second = retrying.dead_letters()
        with pytest.raises(ValueError, match="no dead letter 999"):
            retrying.retry_dead_letters([999])
        assert retrying.retry_dead_letters() == 1
        [left] = retrying.dead_letters()
        assert retrying.position == 3  # retrying does not move the position
    assert [e.id for e in redelivered] == [first.event_id, second.event_id]
    assert (left.id, left.position, left.attempts) == (second.id, 3, 2)
    with StoreFollower(url, EventBus(), "indexer") as operator:
        assert operator.discard_dead_letter(left.id)
        assert not operator.discard_dead_letter(left.id)
        assert operator.dead_letters() == []
    writer.close()


@pytest.mark.parametrize("max_attempts", [0, -1, "3", 2.0, True])
def test_a_bad_max_attempts_is_refused(tmp_path: Path, max_attempts: Any) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        StoreFollower(sqlite_url(tmp_path / "store.db"), EventBus(), "n", max_attempts=max_attempts)


def test_a_follower_without_a_name_keeps_no_dead_letters(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "store.db")
    TemporalStore(url=url).close()
    with StoreFollower(url, EventBus(), None) as transient, pytest.raises(FollowerError):
        transient.dead_letters()
    assert MAX_ATTEMPTS == 3


# -- a real process killed with SIGKILL ----------------------------------------------------

POISON_FOLLOWER = textwrap.dedent(
    """
    import os, signal, sys
    from atlas_eda import EventBus, HandlerFailures, StoreFollower

    url, out, kill_on_try, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    bus = EventBus(failure_policy="raise")
    follower = StoreFollower(url, bus, "indexer", from_start=True, max_attempts=3)

    def handle(event):
        position = event.metadata["notification_id"]
        with open(out, "a") as f:
            f.write(f"{position}\\n")
            f.flush()
            os.fsync(f.fileno())
        if position == 2:
            tries = open(out).read().split().count("2")
            if tries == kill_on_try:
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("poison")

    bus.subscribe_all(handle)
    while follower.position < total:
        try:
            follower.poll()
        except HandlerFailures:
            pass
    print(len(follower.dead_letters()))
    follower.close()
    """
)


def test_a_killed_follower_keeps_its_dead_letters_and_gives_up_on_a_poison_event(
    durable_url: str, tmp_path: Path
) -> None:
    writer = TemporalStore(url=durable_url)
    write_some(writer, 5)
    script = tmp_path / "follow.py"
    script.write_text(POISON_FOLLOWER)
    out = tmp_path / "delivered.txt"

    def run(kill_on_try: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), durable_url, str(out), str(kill_on_try), "5"],
            env=environment(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    killed = run(kill_on_try=2)  # killed inside the poison event's second attempt
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    restarted = run(kill_on_try=0)
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.split() == ["1"]  # its one dead letter
    again = run(kill_on_try=0)  # a third start: the poison event is not delivered again
    assert again.returncode == 0, again.stderr

    tries = out.read_text().split()
    # 1, then the poison event: tried once, killed inside the second try (not counted),
    # tried twice more after the restart (3 attempts counted), then 3, 4, 5.
    assert tries == ["1", "2", "2", "2", "2", "3", "4", "5"]
    with StoreFollower(durable_url, EventBus(), "indexer") as operator:
        [letter] = operator.dead_letters()
    assert (letter.position, letter.attempts, letter.error_message) == (2, 3, "poison")
    writer.close()


# -- the command line ------------------------------------------------------------------

APP = textwrap.dedent(
    """
    from atlas_eda import EventBus, EventType

    handled = []

    def make():
        bus = EventBus(failure_policy="dead_letter")
        bus.subscribe(EventType.DOCUMENT_CREATED, lambda event: handled.append(event.id))
        return bus
    """
)


def test_cli_dead_letters_lists_retries_and_discards(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "store.db")
    writer = TemporalStore(url=url)
    ids = write_some(writer, 3)
    bus = EventBus(failure_policy="dead_letter")
    bus.subscribe(EventType.DOCUMENT_CREATED, poison(ids, 0, []))
    bus.subscribe(EventType.DOCUMENT_CREATED, poison(ids, 2, []))
    with StoreFollower(url, bus, "indexer", from_start=True) as follower:
        follower.poll()
        first, second = follower.dead_letters()
    (tmp_path / "fixed_app.py").write_text(APP)

    listed = run_cli("dead-letters", "--store", url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "Dead letters: 2" in listed.stdout
    assert "RuntimeError: cannot index doc 0" in listed.stdout
    assert "RuntimeError: cannot index doc 2" in listed.stdout
    other = run_cli("dead-letters", "--store", url, "--follower", "nobody", cwd=tmp_path)
    assert "Dead letters of follower 'nobody': 0" in other.stdout

    retried = run_cli(
        "dead-letters", "--store", url, "--retry", str(first.id), "--app", "fixed_app:make",
        cwd=tmp_path,
    )  # fmt: skip
    assert retried.returncode == 0, retried.stderr
    assert "Follower 'indexer': 1 of 1 dead letters handled and removed." in retried.stdout
    discarded = run_cli("dead-letters", "--store", url, "--discard", str(second.id), cwd=tmp_path)
    assert discarded.returncode == 0, discarded.stderr
    assert "Dead letters: 0" in run_cli("dead-letters", "--store", url, cwd=tmp_path).stdout
    writer.close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--retry", "all"], "--retry needs --app"),
        (["--discard", "7"], "no dead letter 7"),
        (["--discard", "x"], "--discard must be a whole number"),
        (["--retry", "1", "--discard", "1"], "not both"),
        (["--app", "m:f"], "--app is only used with --retry"),
        (["--retry", "7", "--app", "m:f"], "no dead letter 7"),
    ],
)
def test_cli_dead_letters_refuses_bad_arguments_on_one_line(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    url = sqlite_url(tmp_path / "store.db")
    TemporalStore(url=url).close()
    result = run_cli("dead-letters", "--store", url, *arguments, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
