"""The PostgreSQL write path (atlas_eda/store/pg_recorder.py), on a real server: a write is
one transaction sent in one round trip, so the log's table lock is never held while the
server waits for the writer, and a failed write leaves nothing behind."""

from __future__ import annotations

import logging
import tempfile
import uuid
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from atlas_eda import TemporalStore
from atlas_eda.store.pg_recorder import OneTripRecorder
from atlas_eda.testing.postgres import PostgresCluster


def _protocol_of_one_create(store: TemporalStore, trace_file: Path) -> list[str]:
    """The client/server protocol messages of one ``create_document`` (libpq's trace of
    the pool's only connection): ``F``/``B`` (sent/received), length, message, contents."""
    from psycopg import pq

    pool = store.recorder.datastore.pool  # type: ignore[attr-defined]
    with trace_file.open("w") as trace:
        with pool.connection() as connection:
            connection.pgconn.trace(trace.fileno())
            connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        store.create_document("title", "body", "author")
        with pool.connection() as connection:
            connection.pgconn.untrace()  # flushes the trace
    return trace_file.read_text().splitlines()


def test_a_postgresql_write_reaches_the_server_in_one_round_trip(
    pg_cluster: PostgresCluster,
) -> None:
    schema = pg_cluster.create_schema()
    store = TemporalStore(url=pg_cluster.url(schema=schema, pool_size=1, max_overflow=0))
    try:
        assert isinstance(store.recorder, OneTripRecorder)
        with tempfile.TemporaryDirectory() as tmp:
            messages = _protocol_of_one_create(store, Path(tmp) / "trace")
        lock = next(i for i, line in enumerate(messages) if "LOCK TABLE" in line)
        ready = next(i for i in range(lock, len(messages)) if "ReadyForQuery" in messages[i])
        # The lock, NOTIFY and INSERT in the one message sent; nothing else is sent until
        # the server has committed (ReadyForQuery): the server never waits for the writer
        # while it holds the lock.
        assert messages[lock].startswith("F")
        assert "INSERT INTO" in messages[lock]
        assert [line for line in messages[lock + 1 : ready] if line.startswith("F")] == []
        assert messages[ready].split()[-1] == "I"  # idle: committed, no transaction open
        assert store.get_all_documents()[0].title == "title"
    finally:
        store.close()
        pg_cluster.drop_schema(schema)


def test_a_failed_postgresql_write_leaves_nothing_and_a_clean_connection(
    pg_cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    schema = pg_cluster.create_schema()
    # One connection: the write after the failed one needs it back, out of any transaction.
    store = TemporalStore(url=pg_cluster.url(schema=schema, pool_size=1, max_overflow=0))
    try:
        taken = store.create_document("title", "body", "author")
        [first] = store.notifications(1, 10)
        new = StoredEvent(uuid.uuid4(), 1, first.topic, first.state)
        clash = StoredEvent(first.originator_id, 1, first.topic, first.state)
        with caplog.at_level(logging.WARNING), pytest.raises(IntegrityError):
            store.recorder.insert_events([new, clash])  # one fails: neither is written
        assert not caplog.records  # the pool had no open transaction to roll back
        assert [n.originator_id for n in store.notifications(1, 10)] == [first.originator_id]
        assert store.update_document(taken, content="again")
        assert [n.originator_version for n in store.notifications(1, 10)] == [1, 2]
    finally:
        store.close()
        pg_cluster.drop_schema(schema)


def test_writes_of_several_stores_on_postgresql_get_positions_in_commit_order(
    postgres_url: str,
) -> None:
    """Positions stay gapless and in write order across stores taking turns (each
    write's one message holds the table lock until its commit)."""
    stores = [TemporalStore(url=postgres_url, snapshot_interval=0) for _ in range(3)]
    try:
        ids = [store.create_document(f"doc {i}", "body", "a") for i, store in enumerate(stores)]
        for round_ in range(5):
            for store, document_id in zip(stores, ids, strict=True):
                assert store.update_document(document_id, content=f"v{round_}")
        positions = [n.id for n in stores[0].notifications(1, 100)]
        assert positions == list(range(1, 19))
    finally:
        for store in stores:
            store.close()
