"""The store's narrow log API (what timelines and followers read through), and the write
paths it does not offer: everything written goes through its commands."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any, ClassVar
from uuid import uuid4

import pytest
from conftest import sqlite_url

from atlas_eda import AtlasEdaError, EventBus, PositionError, StoreOpenError, TemporalStore
from atlas_eda.document_events import field_changes, kind_of


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TemporalStore]:
    url = "memory://" if request.param == "memory" else sqlite_url(tmp_path / "log.db")
    opened = TemporalStore(url=url)
    yield opened
    opened.close()


def three_events(store: TemporalStore) -> tuple[str, str]:
    """Positions 1-3: two documents created, the first updated; 4: the second deleted."""
    first = store.create_document("one", "c", "ann")
    second = store.create_document("two", "c", "bob")
    store.update_document(first, content="c2", editor="cy")
    store.delete_document(second, reason="gone")
    return first, second


def test_the_store_offers_no_write_path_around_its_commands(store: TemporalStore) -> None:
    for name in ("save", "take_snapshot", "notify", "factory"):
        assert not hasattr(store, name), name
    assert not hasattr(store.events, "put")
    assert store.snapshots is not None
    assert not hasattr(store.snapshots, "put")
    with pytest.raises(AttributeError):
        store.recorder = store.recorder  # type: ignore[misc]


def test_last_position_and_notifications_follow_the_log(store: TemporalStore) -> None:
    assert store.last_position() == 0
    assert list(store.notifications(1, 10)) == []
    first, second = three_events(store)

    assert store.last_position() == 4
    page = store.notifications(1, 10)
    assert [(n.id, str(n.originator_id), n.originator_version) for n in page] == [
        (1, first, 1),
        (2, second, 1),
        (3, first, 2),
        (4, second, 2),
    ]
    assert [n.id for n in store.notifications(2, 2)] == [2, 3]
    assert [n.id for n in store.notifications(2, 10, stop=3)] == [2, 3]
    assert [n.id for n in store.notifications(1, 10, kinds=["created"])] == [1, 2]
    assert [n.id for n in store.notifications(1, 10, kinds=["updated", "deleted"])] == [3, 4]
    assert list(store.notifications(1, 10, kinds=[])) == []


def test_decode_gives_the_document_event_a_notification_holds(store: TemporalStore) -> None:
    first, _ = three_events(store)
    updated = store.notifications(3, 1)[0]

    event = store.decode(updated)
    assert (str(event.originator_id), event.originator_version) == (first, 2)
    assert kind_of(event) == "updated"
    assert field_changes(event) == {"content": "c2", "last_editor": "cy"}
    document = store.get_document(first)
    assert document is not None
    assert event.timestamp.astimezone(UTC).timestamp() == document.modified_at


def test_latest_version_reads_the_newest_stored_version(store: TemporalStore) -> None:
    first, second = three_events(store)

    assert store.latest_version(first) == 2
    assert store.latest_version(second) == 2  # deleted documents too
    assert store.latest_version(str(uuid4())) is None
    assert store.latest_version("not an id") is None


def test_copy_until_copies_a_prefix_and_publishes_nothing(store: TemporalStore) -> None:
    first, second = three_events(store)
    heard: list[Any] = []
    bus = EventBus()
    bus.subscribe_all(heard.append)
    target = TemporalStore(bus, url="memory://")

    store.copy_until(3, target)

    assert heard == []
    assert target.last_position() == 3
    assert [(n.originator_id, n.originator_version) for n in target.notifications(1, 10)] == [
        (n.originator_id, n.originator_version) for n in store.notifications(1, 3)
    ]
    copied = target.get_document(first)
    assert copied is not None
    assert copied.as_dict() == store.get_document(first).as_dict()  # type: ignore[union-attr]
    assert target.get_document(second).is_deleted is False  # type: ignore[union-attr]
    target.close()


def test_copy_until_refuses_a_busy_target_or_a_position_not_in_the_log(
    store: TemporalStore,
) -> None:
    three_events(store)
    busy = TemporalStore(url="memory://")
    kept = busy.create_document("mine", "keep me", "me")

    with pytest.raises(AtlasEdaError, match="already holds events"):
        store.copy_until(2, busy)
    assert busy.list_document_ids() == [kept]
    empty = TemporalStore(url="memory://")
    for position in (5, -1):
        with pytest.raises(PositionError, match="positions run from 0 to 4"):
            store.copy_until(position, empty)
    with pytest.raises(TypeError, match="must be an int"):
        store.copy_until(True, empty)
    assert empty.last_position() == 0
    busy.close()
    empty.close()


def test_a_sqlite_store_has_no_listen_connection_and_a_tracking_recorder(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tracked.db"
    store = TemporalStore(url=sqlite_url(path))
    assert store.listen_connection() is None
    recorder = store.tracking_recorder()
    assert recorder.max_tracking_id("nobody") is None
    store.close()
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert "tracking" in tables


class _OnlyExisting(TemporalStore):
    """As the command line opens a store: eventsourcing must not create its tables."""

    env: ClassVar[dict[str, str]] = {f"{TemporalStore.name.upper()}_CREATE_TABLE": "n"}


def test_a_subclass_keeps_its_eventsourcing_settings(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with pytest.raises(StoreOpenError, match="no such table"):
        _OnlyExisting(url=sqlite_url(path))
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []

    TemporalStore(url=sqlite_url(path)).close()  # now the store exists
    with _OnlyExisting(url=sqlite_url(path)) as existing:
        assert isinstance(existing, TemporalStore)
        assert existing.list_document_ids() == []
