"""Cold time travel (issue 20): a timeline keeps whole-store checkpoints in the store's own
database, and a later timeline (another process, a restarted notebook) folds the log from
the nearest one instead of from position 1.

The reference for every state is the plain fold the timeline did before: every event from
position 1 on, applied with the rule below (kept here as it was, ``dataclasses.replace``
and all), checked in turn against eventsourcing's own rebuild of each document
(``get_document(id, version=v)``)."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_eda import (
    CorruptStoreError,
    DocumentState,
    RecordedEvent,
    StoreClosedError,
    TemporalStore,
    Timeline,
)
from atlas_eda.store import create_cipher_key
from atlas_eda.store.checkpoints import CHECKPOINTS_ID
from atlas_eda.testing.postgres import PostgresCluster
from atlas_eda.timeline import KEEP_SPACING, STATE_COLUMNS

FIXTURES = Path(__file__).parent / "fixtures"


def plain_apply(state: DocumentState | None, event: RecordedEvent) -> DocumentState:
    """What an event does to its document: the timeline's rule before issue 20."""
    moment = event.timestamp.timestamp()
    changes = event.changes
    if event.kind == "created":
        return DocumentState(
            document_id=event.document_id,
            version=event.version,
            title=changes["title"],
            content=changes["content"],
            author=changes["author"],
            last_editor=changes["author"],
            created_at=moment,
            modified_at=moment,
        )
    assert state is not None
    if event.kind == "updated":
        return dataclasses.replace(
            state,
            version=event.version,
            title=changes.get("title", state.title),
            content=changes.get("content", state.content),
            last_editor=changes.get("last_editor", state.author),
            modified_at=moment,
        )
    return dataclasses.replace(
        state,
        version=event.version,
        is_deleted=True,
        deleted_at=moment,
        deletion_reason=changes.get("deletion_reason"),
        modified_at=moment,
    )


def plain_fold(store: TemporalStore, position: int) -> dict[str, DocumentState]:
    """The whole store right after ``position``: every event from 1 on, folded."""
    state: dict[str, DocumentState] = {}
    for event in Timeline(store).iter_from(1, stop=position):
        if event.kind != "saga":
            state[event.document_id] = plain_apply(state.get(event.document_id), event)
    return state


def check_fold_is_the_aggregates(store: TemporalStore, state: dict[str, DocumentState]) -> None:
    """The reference itself agrees with eventsourcing's rebuild of each document."""
    for document_id, expected in state.items():
        document = store.get_document(document_id, version=expected.version)
        assert document is not None
        assert DocumentState.of(document) == expected


def kept_positions(path: Path) -> list[int]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT originator_version FROM stored_timeline_checkpoints ORDER BY 1"
        ).fetchall()
    finally:
        connection.close()
    return [row[0] for row in rows]


class Reads:
    """A spy on the store's real recorder: how many log rows a timeline reads."""

    def __init__(self, store: TemporalStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows = 0
        real: Callable[..., Sequence[Any]] = store.recorder.select_notifications

        def counting(*args: Any, **kwargs: Any) -> Sequence[Any]:
            page = real(*args, **kwargs)
            self.rows += len(page)
            return page

        monkeypatch.setattr(store.recorder, "select_notifications", counting)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def opened(path: Path) -> Iterator[Callable[[], TemporalStore]]:
    """Opens the store at ``path`` (as often as asked), closing each at the end."""
    stores: list[TemporalStore] = []

    def open_store() -> TemporalStore:
        stores.append(TemporalStore(url=f"sqlite:///{path}", snapshot_interval=0))
        return stores[-1]

    yield open_store
    for store in stores:
        store.close()


def rounds(store: TemporalStore, docs: int, per_doc: int) -> list[str]:
    """``docs`` documents, each changed ``per_doc - 1`` times in rounds that interleave
    them; the last of every third document is its deletion."""
    ids = [store.create_document(f"doc {i}", f"{i}.1", f"author {i % 3}") for i in range(docs)]
    for version in range(2, per_doc + 1):
        for i, document_id in enumerate(ids):
            if version == per_doc and i % 3 == 0:
                store.delete_document(document_id, reason=f"round {version}")
            else:
                store.update_document(
                    document_id,
                    title=f"doc {i} r{version}" if version % 4 == 0 else None,
                    content=f"{i}.{version}",
                    editor=None if version % 5 == 0 else f"editor {version % 2}",
                )
    return ids


# -- the property --------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=6)
CREATE = st.tuples(st.just("create"), TEXT, TEXT, st.sampled_from(["ann", "bob", ""]))
UPDATE = st.tuples(st.just("update"), st.integers(0, 30), st.none() | TEXT, st.none() | TEXT)
DELETE = st.tuples(st.just("delete"), st.integers(0, 30), st.none() | TEXT)
# A few documents first, then changes (some creations among them): documents with many
# versions, so that checkpoints get kept (every 4 positions per document at the most).
CHANGE = st.integers(0, 9).flatmap(lambda k: DELETE if k == 0 else CREATE if k == 1 else UPDATE)
STEPS = st.builds(
    lambda first, then: first + then,
    st.lists(CREATE, min_size=1, max_size=6),
    st.lists(CHANGE, min_size=20, max_size=120),
)


def play(store: TemporalStore, steps: list[tuple[Any, ...]]) -> None:
    """The steps, as a user would make them; a change to a deleted document is skipped."""
    ids: list[str] = []
    for step in steps:
        play_document_step(store, ids, step)


def play_document_step(store: TemporalStore, ids: list[str], step: tuple[Any, ...]) -> None:
    """One create, update or delete step (``ids``: the documents created so far, in order);
    a change to a deleted document is skipped."""
    if step[0] == "create":
        ids.append(store.create_document(step[1], step[2], step[3]))
        return
    target = ids[step[1] % len(ids)]
    document = store.get_document(target)
    if document is None or document.is_deleted:
        return
    if step[0] == "update":
        store.update_document(target, title=step[2], content=step[3], editor=step[2])
    else:
        store.delete_document(target, reason=step[2])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=STEPS,
    sizes=st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 5)),
    data=st.data(),
)
def test_states_from_kept_checkpoints_are_those_of_the_plain_fold(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[Any, ...]],
    sizes: tuple[int, int, int],
    data: st.DataObject,
) -> None:
    first_every, later_every, page_size = sizes  # checkpoint intervals, then page size
    path = tmp_path_factory.mktemp("prop") / "store.db"
    url = f"sqlite:///{path}"
    with TemporalStore(url=url, snapshot_interval=0) as store:
        play(store, steps)
        last = len(store.timeline())
        positions = data.draw(st.lists(st.integers(0, last), min_size=1, max_size=12))
        expected = {p: plain_fold(store, p) for p in {*positions, last}}
        check_fold_is_the_aggregates(store, expected[last])
        # The first timeline folds from position 1 and keeps checkpoints on its way...
        first = Timeline(store, page_size=page_size, checkpoint_every=first_every)
        assert first.state_at(last) == expected[last]
        kept = store.state_checkpoint(last)
        hypothesis.event("a checkpoint was kept" if kept else "none was kept")
    # ...which a timeline of another interval, on the store opened again, starts from.
    with TemporalStore(url=url, snapshot_interval=0) as reopened:
        later = Timeline(reopened, page_size=page_size, checkpoint_every=later_every)
        for position in positions:
            assert later.state_at(position) == expected[position], position
            assert list(later.state_at(position)) == list(expected[position])  # creation order


# -- what is kept, and what it spares ------------------------------------------------------


def test_a_later_timeline_reads_only_the_events_after_the_nearest_kept_checkpoint(
    opened: Callable[[], TemporalStore], path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened()
    rounds(store, docs=16, per_doc=8)  # 128 events
    assert KEEP_SPACING == 0.5
    assert Timeline(store, checkpoint_every=2).state_at(128) == plain_fold(store, 128)
    # Kept at a multiple of 2 once at least half a position per document lies since the
    # last one kept: every 8 positions once the 16 documents are created.
    assert kept_positions(path) == [2, 4, *range(8, 129, 8)]

    later = opened()
    reads = Reads(later, monkeypatch)
    state = Timeline(later, checkpoint_every=2).state_at(125)
    assert state == plain_fold(store, 125)
    assert reads.rows == 125 - 120  # from the kept checkpoint at 120, not from 1


def test_a_store_that_grew_keeps_checkpoints_past_the_last_kept(
    opened: Callable[[], TemporalStore], path: Path
) -> None:
    store = opened()
    ids = rounds(store, docs=4, per_doc=6)  # 24 events: kept every 2 once there are 4
    Timeline(store, checkpoint_every=1).state_at(24)
    assert kept_positions(path) == [1, 2, *range(4, 25, 2)]
    for round_ in range(5):
        store.update_document(ids[1], content=f"more {round_}")
    timeline = Timeline(opened(), checkpoint_every=1)
    assert timeline.state_at(29) == plain_fold(store, 29)
    assert kept_positions(path) == [1, 2, *range(4, 29, 2)]


def test_two_timelines_keeping_the_same_checkpoint_keep_it_once(
    opened: Callable[[], TemporalStore], path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened()
    rounds(store, docs=2, per_doc=10)
    assert Timeline(store, checkpoint_every=4).state_at(20) == plain_fold(store, 20)
    assert kept_positions(path) == [4, 8, 12, 16, 20]
    # Another process that folded at the same time: it saw no checkpoint, folds from 1,
    # and finds each position it keeps already taken.
    racing = opened()
    monkeypatch.setattr(racing, "state_checkpoint", lambda *_args, **_kwargs: None)
    assert Timeline(racing, checkpoint_every=4).state_at(20) == plain_fold(store, 20)
    assert kept_positions(path) == [4, 8, 12, 16, 20]
    assert not racing.save_state_checkpoint(8, STATE_COLUMNS, [])


def test_a_memory_store_keeps_no_checkpoint() -> None:
    with TemporalStore(url="memory://") as store:
        rounds(store, docs=2, per_doc=10)
        assert Timeline(store, checkpoint_every=2).state_at(20) == plain_fold(store, 20)
        assert store.state_checkpoint(20) is None
        assert not store.save_state_checkpoint(20, STATE_COLUMNS, [])


def test_checkpoints_are_encrypted_with_the_store(tmp_path: Path) -> None:
    path = tmp_path / "secret.db"
    key = create_cipher_key()
    with TemporalStore(url=f"sqlite:///{path}", cipher_key=key) as store:
        ids = [store.create_document(f"Secret title {i}", "secret body", "ann") for i in range(2)]
        for i in range(10):
            store.update_document(ids[i % 2], content=f"secret body {i}")
        Timeline(store, checkpoint_every=4).state_at(12)
    assert kept_positions(path) == [4, 8, 12]
    assert b"Secret title" not in path.read_bytes()
    with TemporalStore(url=f"sqlite:///{path}", cipher_key=key) as reopened:
        assert Timeline(reopened, checkpoint_every=4).state_at(11) == plain_fold(reopened, 11)


def test_an_old_store_file_without_the_table_still_time_travels(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(FIXTURES / "store_v1.db", path)
    connection = sqlite3.connect(path)
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert "stored_timeline_checkpoints" not in tables
    with TemporalStore(url=f"sqlite:///{path}") as store:
        last = len(store.timeline())
        assert last > 0
        for every in (1, 2):
            timeline = Timeline(store, checkpoint_every=every)
            for position in range(last + 1):
                assert timeline.state_at(position) == plain_fold(store, position)


def test_a_checkpoint_of_other_columns_is_not_used(
    opened: Callable[[], TemporalStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened()
    rounds(store, docs=2, per_doc=10)
    wrong = [["x"] * 3 for _ in range(2)]
    assert store.save_state_checkpoint(16, ("document_id", "version", "title"), wrong)
    later = opened()
    reads = Reads(later, monkeypatch)
    assert Timeline(later, checkpoint_every=4).state_at(18) == plain_fold(store, 18)
    assert reads.rows == 18  # folded from 1: a checkpoint written for another layout


def test_a_damaged_checkpoint_is_a_corrupt_store_error(
    opened: Callable[[], TemporalStore],
) -> None:
    store = opened()
    rounds(store, docs=2, per_doc=10)
    assert store.save_state_checkpoint(16, STATE_COLUMNS, [["too", "short"]])
    with pytest.raises(CorruptStoreError, match="checkpoint of position 16 cannot be read"):
        Timeline(opened(), checkpoint_every=4).state_at(18)


def test_a_checkpoint_row_of_another_topic_is_a_corrupt_store_error(
    opened: Callable[[], TemporalStore], path: Path
) -> None:
    store = opened()
    rounds(store, docs=2, per_doc=10)
    Timeline(store, checkpoint_every=4).state_at(20)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "UPDATE stored_timeline_checkpoints SET topic = 'os:system' WHERE originator_id = ?",
            (CHECKPOINTS_ID.hex,),
        )
    connection.close()
    with pytest.raises(CorruptStoreError, match="names no class this store writes"):
        Timeline(opened(), checkpoint_every=4).state_at(18)


def test_a_closed_store_refuses_checkpoints(opened: Callable[[], TemporalStore]) -> None:
    store = opened()
    store.close()
    with pytest.raises(StoreClosedError):
        store.state_checkpoint(10)
    with pytest.raises(StoreClosedError):
        store.save_state_checkpoint(10, STATE_COLUMNS, [])


# -- PostgreSQL ------------------------------------------------------------------------------


def test_checkpoints_are_kept_and_used_on_postgresql(
    pg_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = pg_cluster.create_schema()
    try:
        url = pg_cluster.url(schema=schema, pool_size=1)
        with TemporalStore(url=url, snapshot_interval=0) as store:
            rounds(store, docs=2, per_doc=10)
            assert Timeline(store, checkpoint_every=4).state_at(20) == plain_fold(store, 20)
            kept = store.state_checkpoint(20)
            assert kept is not None
            assert kept.originator_version == 20
            expected = plain_fold(store, 19)
        with TemporalStore(url=url, snapshot_interval=0) as reopened:
            reads = Reads(reopened, monkeypatch)
            assert Timeline(reopened, checkpoint_every=4).state_at(19) == expected
            assert reads.rows == 3
    finally:
        pg_cluster.drop_schema(schema)
