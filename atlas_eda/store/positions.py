"""Recording a follower's position: eventsourcing's tracking record, inserted so that a
follower is not starved by busy writers on SQLite.

SQLite has one write lock per file. A connection that finds it taken waits in SQLite's
busy handler, which sleeps 1, 2, 5, 10, ... and then 100 ms between its tries; writers that
commit every few milliseconds keep taking the lock in between, so a follower recording its
position waited there for up to a second (measured with 4 writer processes; see
docs/scaling.md), and every event committed meanwhile waited with it. Here the insert is
tried without the busy handler and tried again every millisecond, for as long as the busy
handler would have waited (the store's lock timeout): the lock is free between two writers'
commits, and the follower takes it then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from eventsourcing.persistence import OperationalError, Tracking, TrackingRecorder
from eventsourcing.sqlite import SQLITE3_DEFAULT_LOCK_TIMEOUT, SQLiteTrackingRecorder

__all__ = ["RETRY_EVERY", "record_position"]

RETRY_EVERY = 0.001
"""Seconds between two tries at SQLite's write lock when recording a position."""

_MS = 1000


def record_position(
    recorder: TrackingRecorder, tracking: Tracking, *, sleep: Callable[[float], None]
) -> None:
    """Insert ``tracking`` through ``recorder`` (eventsourcing's
    :class:`~eventsourcing.persistence.IntegrityError` when that position of that name is
    already recorded). On SQLite, while the write lock is taken the insert is tried again
    every :data:`RETRY_EVERY` seconds (waiting with ``sleep``) up to the store's lock
    timeout, after which the :class:`~eventsourcing.persistence.OperationalError` "database
    is locked" is raised, as eventsourcing raises it; nothing is half-written."""
    if not isinstance(recorder, SQLiteTrackingRecorder):
        recorder.insert_tracking(tracking)
        return
    datastore = recorder.datastore
    timeout = datastore.pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT
    tries = max(1, round(timeout / RETRY_EVERY))
    with datastore.get_connection(commit=True) as connection:
        _busy_timeout(connection, 0)
        try:
            for tried in range(1, tries + 1):
                try:
                    with connection.transaction(commit=True) as cursor:
                        # eventsourcing's own insert of a tracking record, in this transaction
                        cast(Any, recorder)._insert_tracking(cursor, tracking)
                except OperationalError as exc:
                    if "locked" not in str(exc).lower() or tried == tries:
                        raise
                    sleep(RETRY_EVERY)
                else:
                    return
        finally:
            # The pool gives this connection to the store's other work: its busy handler back.
            _busy_timeout(connection, round(timeout * _MS))


def _busy_timeout(connection: Any, milliseconds: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")
