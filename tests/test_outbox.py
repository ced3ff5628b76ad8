"""The outbox (issue 16 item 2): a write's effects are saved in the write's own transaction,
performed after the commit, recorded performed, and performed again after a crash or a
failing performer, at least once with an idempotency key. See docs/reliability.md,
"Writes: no failure after commit, outbox, first open"."""

from __future__ import annotations

import enum
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, sqlite_url

from atlas_eda import (
    DeliveryAfterCommitError,
    DocumentService,
    Effect,
    EffectHandler,
    EffectType,
    EventBus,
    InvalidDocumentError,
    InvalidEffectError,
    OutboxError,
    StoreFollower,
    TemporalStore,
)
from atlas_eda.store.outbox import current_outbox_key

NOTE = Effect(EffectType.NOTIFICATION, {"recipient": "ann"}, "tell ann")
AUDIT = Effect(EffectType.LOGGING, {"action": "update"}, "audit")


class Performed:
    """A performer that keeps each effect with the idempotency key it was performed under."""

    def __init__(self, failing: bool = False) -> None:
        self.done: list[tuple[str, Any, str | None]] = []
        self.failing = failing

    def __call__(self, effect: Effect) -> None:
        if self.failing:
            raise ConnectionError("mail server down")
        self.done.append((effect.type.name, effect.payload, current_outbox_key()))


def test_effects_wait_in_the_outbox_until_performed(tmp_path: Path) -> None:
    store = TemporalStore(url=sqlite_url(tmp_path / "s.db"))
    doc_id = store.create_document("T", "v1", "ann", effects=[NOTE, AUDIT])
    [pending] = store.outbox.pending()
    assert (pending.document_id, pending.version) == (doc_id, 1)
    assert pending.effects == (NOTE, AUDIT)
    assert (pending.attempts, pending.last_error) == (0, None)
    # Another store on the same file sees it: it is in the database, not in memory.
    other = TemporalStore(url=sqlite_url(tmp_path / "s.db"))
    assert [p.id for p in other.outbox.pending()] == [pending.id]
    performer = Performed()
    assert other.outbox.retry(performer) == [pending.id]
    assert performer.done == [
        ("NOTIFICATION", {"recipient": "ann"}, pending.key(0)),
        ("LOGGING", {"action": "update"}, pending.key(1)),
    ]
    assert store.outbox.pending() == []
    assert other.outbox.retry(performer) == []
    assert current_outbox_key() is None


def test_a_write_with_a_performer_performs_its_effects_after_the_commit() -> None:
    store = TemporalStore()
    performer = Performed()
    doc_id = store.create_document("T", "v1", "ann")
    assert store.update_document(doc_id, content="v2", effects=[NOTE], performer=performer)
    assert store.delete_document(doc_id, effects=[AUDIT], performer=performer)
    assert [name for name, _, _ in performer.done] == ["NOTIFICATION", "LOGGING"]
    assert store.outbox.pending() == []


def test_a_failing_performer_leaves_the_entry_pending_with_its_error() -> None:
    store = TemporalStore()
    with pytest.raises(DeliveryAfterCommitError) as caught:
        store.create_document("T", "v1", "ann", effects=[NOTE], performer=Performed(True))
    assert isinstance(caught.value.__cause__, ConnectionError)
    [pending] = store.outbox.pending()
    assert pending.document_id == caught.value.document_id
    assert pending.attempts == 1
    assert pending.last_error == "ConnectionError: mail server down"
    assert store.outbox.retry(Performed(True)) == []  # logged, recorded, kept
    assert store.outbox.pending()[0].attempts == 2
    performer = Performed()
    assert store.outbox.retry(performer, pending.id) == [pending.id]
    assert performer.done[0][2] == pending.key(0)  # the same key at every attempt


def test_discard_drops_an_entry_and_unknown_or_finished_ones_are_refused() -> None:
    store = TemporalStore()
    store.create_document("T", "v1", "ann", effects=[NOTE])
    [pending] = store.outbox.pending()
    store.outbox.discard(pending.id)
    assert store.outbox.pending() == []
    with pytest.raises(OutboxError, match="already discarded"):
        store.outbox.discard(pending.id)
    with pytest.raises(OutboxError, match="No outbox entry"):
        store.outbox.retry(Performed(), "not-an-id")
    with pytest.raises(OutboxError, match="No outbox entry"):
        store.outbox.discard("12345678-1234-5678-1234-567812345678")


class Color(enum.Enum):
    RED = 1


@pytest.mark.parametrize(
    "effects",
    [
        [Effect(Color.RED, {})],
        [Effect(EffectType.NOTIFICATION, {"when": object()})],
        [Effect(EffectType.NOTIFICATION, float("nan"))],
        ["not an effect"],
        NOTE,
    ],
)
def test_effects_that_cannot_wait_in_the_outbox_are_refused_before_writing(
    effects: Any,
) -> None:
    store = TemporalStore()
    with pytest.raises(InvalidEffectError, match="nothing was saved"):
        store.create_document("T", "v1", "ann", effects=effects)
    assert store.last_position() == 0
    assert store.outbox.pending() == []


def test_a_refused_write_saves_no_outbox_entry() -> None:
    store = TemporalStore()
    doc_id = store.create_document("T", "v1", "ann")
    with pytest.raises(InvalidDocumentError):
        store.create_document("T", "again", "ann", document_id=doc_id, effects=[NOTE])
    assert store.outbox.pending() == []
    assert store.recorder.max_notification_id() == 1  # one transaction: nothing of it


def test_the_timeline_log_and_followers_skip_outbox_records(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "s.db")
    store = TemporalStore(url=url)
    doc_id = store.create_document("T", "v1", "ann", effects=[NOTE])  # positions 1, 2
    store.update_document(doc_id, content="v2", effects=[NOTE], performer=Performed())  # 3-5
    timeline = store.timeline()
    assert [(e.position, e.kind) for e in timeline] == [(1, "created"), (3, "updated")]
    assert timeline.state_at(4)[doc_id].content == "v2"
    assert store.last_position() == 5
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe_all(lambda event: seen.append(event.type.name))
    follower = StoreFollower(url, bus, name="reader", from_start=True)
    follower.poll()
    follower.close()
    assert seen == ["DOCUMENT_CREATED", "DOCUMENT_UPDATED"]
    shown = run_cli("log", "--store", url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "created" in shown.stdout
    assert "updated" in shown.stdout
    assert "outbox" not in shown.stdout.lower()


def test_a_run_of_outbox_records_longer_than_a_page_does_not_end_the_log() -> None:
    store = TemporalStore()
    doc_id = store.create_document("T", "v1", "ann", effects=[NOTE])  # positions 1, 2
    for _ in range(3):  # each a failed attempt of the pending entry: positions 3, 4, 5
        assert store.outbox.retry(Performed(True)) == []
    store.update_document(doc_id, content="v2")  # position 6
    assert [n.id for n in store.notifications(2, 1)] == [6]  # not [] (the end)
    assert [n.id for n in store.notifications(1, 2)] == [1]  # a short page, not the end
    assert [(e.position, e.kind) for e in store.timeline(page_size=1)] == [
        (1, "created"),
        (6, "updated"),
    ]
    store.close()


def _handler(performer: Performed) -> EffectHandler:
    handler = EffectHandler()
    for kind in (EffectType.DATABASE_WRITE, EffectType.LOGGING, EffectType.NOTIFICATION):
        handler.register_handler(kind, performer)
    return handler


def test_a_service_starting_performs_what_an_earlier_one_left_pending() -> None:
    store = TemporalStore()
    failing = DocumentService(EventBus(), store, _handler(Performed(True)))
    with pytest.raises(DeliveryAfterCommitError):
        failing.create_document("T", "v1", "ann")
    assert len(store.outbox.pending()) == 1
    performer = Performed()
    DocumentService(EventBus(), store, _handler(performer))
    assert [name for name, _, _ in performer.done] == ["DATABASE_WRITE", "LOGGING"]
    assert store.outbox.pending() == []


# A real process: a DocumentService over a SQLite file whose NOTIFICATION performer appends
# each idempotency key it has not seen yet to a file (what a real idempotent consumer does).
# CRASH=commit SIGKILLs the process right after the update's commit, before any effect
# (from a bus subscriber, which runs between the two); CRASH=effect right after the
# notification was sent and before the outbox recorded it performed.
_CHILD = """
import os, signal, sys
from pathlib import Path
from atlas_eda import DocumentService, EffectHandler, EffectType, EventBus, EventType
from atlas_eda import TemporalStore
from atlas_eda.store.outbox import current_outbox_key

url, sent, crash, action = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]

def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)

def notify(effect):
    key = current_outbox_key()
    if key not in sent.read_text().split():
        with sent.open("a") as stream:
            stream.write(key + "\\n")
            stream.flush()
            os.fsync(stream.fileno())
    if crash == "effect":
        die()

handler = EffectHandler()
handler.register_handler(EffectType.DATABASE_WRITE, lambda effect: None)
handler.register_handler(EffectType.LOGGING, lambda effect: None)
handler.register_handler(EffectType.NOTIFICATION, notify)
bus = EventBus()
store = TemporalStore(bus, url=url)
service = DocumentService(bus, store, handler)  # performs what is pending
if action == "update":
    [doc_id] = store.list_document_ids()
    if crash == "commit":
        bus.subscribe(EventType.DOCUMENT_UPDATED, die)
    service.update_document(doc_id, content="v2", editor="bob")
print(len(store.outbox.pending()), flush=True)
"""


def _run(url: str, sent: Path, crash: str, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CHILD, url, str(sent), crash, action],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("crash", ["commit", "effect"])
def test_an_effect_cut_off_by_sigkill_is_performed_exactly_once_after_restart(
    tmp_path: Path, crash: str
) -> None:
    url = sqlite_url(tmp_path / "s.db")
    sent = tmp_path / "sent.txt"
    sent.write_text("")
    with TemporalStore(url=url) as store:
        doc_id = store.create_document("T", "v1", "ann")
    killed = _run(url, sent, crash, "update")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with TemporalStore(url=url) as store:
        assert store.latest_version(doc_id) == 2
        [pending] = store.outbox.pending()  # not recorded performed
        key = pending.key(1)  # the NOTIFICATION, after the DATABASE_WRITE
    assert sent.read_text().split() == ([] if crash == "commit" else [key])
    restarted = _run(url, sent, "none", "start")
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout == "0\n"
    assert sent.read_text().split() == [key]  # performed, once
    again = _run(url, sent, "none", "start")
    assert again.stdout == "0\n"
    assert sent.read_text().split() == [key]
