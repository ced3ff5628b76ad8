"""The first ``state_at`` on a store no timeline has read (issue 20): each document changed
since the nearest checkpoint is read from its newest snapshot at or below its version there,
and the events after it, instead of folding the whole log.

The reference is the plain fold of every event from position 1 on
(``test_timeline_checkpoints.plain_fold``, the timeline's rule before issue 20)."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_timeline_checkpoints import (
    CREATE,
    DELETE,
    UPDATE,
    Reads,
    plain_fold,
    play_document_step,
    rounds,
)

from atlas_eda import CorruptStoreError, TemporalStore, Timeline
from atlas_eda.saga_events import SagaRecord
from atlas_eda.store import create_cipher_key
from atlas_eda.testing.postgres import PostgresCluster

FIXTURES = Path(__file__).parent / "fixtures"

SAGA = st.tuples(st.just("saga"), st.integers(0, 3))
CHANGE = st.integers(0, 11).flatmap(
    lambda k: DELETE if k == 0 else CREATE if k == 1 else SAGA if k == 2 else UPDATE
)
STEPS = st.builds(
    lambda first, then: first + then,
    st.lists(CREATE, min_size=1, max_size=8),
    st.lists(CHANGE, min_size=10, max_size=120),
)


def play(store: TemporalStore, steps: list[tuple[Any, ...]]) -> None:
    """The steps as a user makes them, saga instances' versions among the documents' (a
    change to a deleted document is skipped)."""
    ids: list[str] = []
    sagas: dict[int, SagaRecord] = {}
    for step in steps:
        if step[0] != "saga":
            play_document_step(store, ids, step)
            continue
        record = sagas.get(step[1])
        if record is None:
            record = SagaRecord.start(uuid4(), "Trip", f"key {step[1]}", {"n": 0}, None)
            sagas[step[1]] = record
        else:
            record.change({"n": record.version}, None)
        store.save_saga(record)


@pytest.fixture
def new_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], str]]:
    """Makes a fresh, empty store URL of a backend ("sqlite" or "postgresql") each call."""
    schemas: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('first') / 'store.db'}"
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        schemas.append(cluster.create_schema())
        return cluster.url(schema=schemas[-1], pool_size=1)

    yield make
    if schemas:
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        for schema in schemas:
            cluster.drop_schema(schema)


class DocumentReads:
    """A spy on the store's batched document reads: how many times they were used."""

    def __init__(self, store: TemporalStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real: Callable[..., Any] = store.document_events

        def counting(wanted: Sequence[Any]) -> Any:
            self.calls += 1
            return real(wanted)

        monkeypatch.setattr(store, "document_events", counting)


# -- the property --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend",
    [("sqlite", False), ("sqlite", True), ("postgresql", False), ("postgresql", True)],
    ids=["sqlite", "sqlite-encrypted", "postgresql", "postgresql-encrypted"],
)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS, sizes=st.tuples(st.integers(1, 4), st.integers(1, 4)), data=st.data())
def test_the_first_call_is_the_plain_fold(
    new_url: Callable[[str], str],
    backend: tuple[str, bool],
    steps: list[tuple[Any, ...]],
    sizes: tuple[int, int],
    data: st.DataObject,
) -> None:
    snapshot_interval, every = sizes
    url = new_url(backend[0])
    key = create_cipher_key() if backend[1] else None

    def opened() -> TemporalStore:
        return TemporalStore(url=url, snapshot_interval=snapshot_interval, cipher_key=key)

    with opened() as store:
        play(store, steps)
        last = store.last_position()
        positions = data.draw(st.lists(st.integers(0, last), min_size=1, max_size=6))
        expected = {p: plain_fold(store, p) for p in positions}
    for position in positions:  # the first ever, then each of a new timeline
        with opened() as store:
            reads = DocumentReads(store, pytest.MonkeyPatch())
            state = Timeline(store, checkpoint_every=every).state_at(position)
            hypothesis.event("read by document" if reads.calls else "folded")
            assert state == expected[position], position
            assert list(state) == list(expected[position])  # creation order
    with opened() as store:  # and the later calls of one timeline, in any order
        timeline = Timeline(store, checkpoint_every=every)
        for position in reversed(positions):
            assert timeline.state_at(position) == expected[position], position


# -- what it spares ------------------------------------------------------------------------


def test_the_first_call_ever_reads_the_snapshots_not_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with TemporalStore(url=url, snapshot_interval=5) as store:
        rounds(store, docs=10, per_doc=20)  # 200 events, snapshots at versions 5, 10, ...
        expected = {p: plain_fold(store, p) for p in (200, 187, 43)}
    with TemporalStore(url=url, snapshot_interval=5) as store:
        log, documents = Reads(store, monkeypatch), DocumentReads(store, monkeypatch)
        assert Timeline(store, checkpoint_every=10).state_at(200) == expected[200]
        assert documents.calls == 1
        assert log.rows == 0  # every document at version 20: its snapshot, nothing after
        kept = store.state_checkpoint(200)
        assert kept is not None  # for the timelines after it
    with TemporalStore(url=url, snapshot_interval=5) as store:
        log, documents = Reads(store, monkeypatch), DocumentReads(store, monkeypatch)
        # 187 = 180 + 7 (folded from the state at 180: version 18 of each document, read
        # from its snapshot at 15 and three events after it)
        assert Timeline(store, checkpoint_every=10).state_at(187) == expected[187]
        assert documents.calls == 1
        assert log.rows == 7
        assert Timeline(store, checkpoint_every=10).state_at(43) == expected[43]


def test_a_store_without_snapshots_is_folded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Snapshots off, or on with none taken yet (no document reached version 100).
    for interval in (0, 100):
        url = f"sqlite:///{tmp_path / f'store-{interval}.db'}"
        with TemporalStore(url=url, snapshot_interval=interval) as store:
            rounds(store, docs=4, per_doc=10)
            expected = plain_fold(store, 40)
        with TemporalStore(url=url, snapshot_interval=interval) as store:
            log, documents = Reads(store, monkeypatch), DocumentReads(store, monkeypatch)
            assert Timeline(store, checkpoint_every=4).state_at(40) == expected
            assert documents.calls == 0
            assert log.rows == 40


def test_a_memory_store_is_folded(monkeypatch: pytest.MonkeyPatch) -> None:
    with TemporalStore(url="memory://", snapshot_interval=2) as store:
        rounds(store, docs=3, per_doc=8)
        assert store.changed_documents(0, 24) is None
        documents = DocumentReads(store, monkeypatch)
        assert Timeline(store, checkpoint_every=2).state_at(24) == plain_fold(store, 24)
        assert documents.calls == 0


def test_an_old_store_file_is_read_by_document_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    shutil.copy(FIXTURES / "store_v1.db", path)
    url = f"sqlite:///{path}"
    with TemporalStore(url=url, snapshot_interval=2) as store:
        old = store.list_document_ids()
        assert old
        documents = [store.get_document(i) for i in old]
        live = [d.document_id for d in documents if d is not None and not d.is_deleted]
        for round_ in range(4):  # new versions, snapshots on top of the old file's events
            for document_id in live:
                store.update_document(document_id, content=f"round {round_}")
        store.create_document("new", "after the old ones", "ann")
        last = store.last_position()
        expected = {p: plain_fold(store, p) for p in range(last + 1)}
    used = 0
    for position in reversed(range(last + 1)):  # the latest first: no checkpoint kept below
        with TemporalStore(url=url, snapshot_interval=2) as store:
            documents = DocumentReads(store, monkeypatch)
            state = Timeline(store, checkpoint_every=1).state_at(position)
            assert state == expected[position], position
            assert list(state) == list(expected[position])
            used += documents.calls
    assert used  # the old events were read through the document reads, not only folded


def test_a_row_no_atlas_eda_class_wrote_is_refused_as_the_fold_refuses_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with TemporalStore(url=url, snapshot_interval=2) as store:
        rounds(store, docs=3, per_doc=6)
        saga = SagaRecord.start(uuid4(), "Trip", "k", {}, None).collect_events()[0]
        stored = store.mapper.to_stored_event(saga)
        store.recorder.insert_events([dataclasses.replace(stored, topic="os:system")])
        ids = store.list_document_ids()
        for i in (1, 2, 4):  # three more document events after it: positions 20 to 22
            store.update_document(ids[i % 3], content=f"after {i}")
    with TemporalStore(url=url, snapshot_interval=2) as store:
        assert store.changed_documents(0, 18) is not None
        assert store.changed_documents(0, 22) is None
        with pytest.raises(CorruptStoreError) as raised:
            Timeline(store, checkpoint_every=2).state_at(22)
        assert raised.value.position == 19
