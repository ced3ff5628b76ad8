"""The store's PostgreSQL application recorder: eventsourcing's, with each write sent to
the server in one round trip, so that the log's table lock is never held while the server
waits for the writer.

eventsourcing's :class:`~eventsourcing.postgres.PostgresApplicationRecorder` takes
``LOCK TABLE … IN EXCLUSIVE MODE`` in every write transaction and holds it until the
commit has flushed the WAL: positions are handed out in commit order, so a follower never
passes a gap that an earlier transaction fills later. That lock stays. But its
``insert_events`` makes two round trips while holding it: it syncs after the ``INSERT``
(to see a duplicate version there), then sends ``COMMIT``. Between the two the server
holds the lock and waits for the writer process to be scheduled again, read the reply and
send the ``COMMIT`` ("idle in transaction"); with several writers on a busy machine every
other writer waits for that too. Here the parameters are bound first, and the lock,
``NOTIFY`` and ``INSERT … RETURNING`` are sent as one query string: PostgreSQL runs the
statements of one query string as one transaction, committed after the last, so the
server goes from lock to commit without waiting for the client. A failed statement (a
version that exists) rolls the whole transaction back: nothing is written, as before, and
the same :class:`~eventsourcing.persistence.IntegrityError` is raised.

This module imports psycopg (the ``postgres`` extra); eventsourcing loads it by topic
(``APPLICATION_RECORDER_TOPIC``, set by :func:`~atlas_eda.store.urls.persistence_settings`)
only for a PostgreSQL store.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import ClientCursor
from psycopg.sql import SQL, Composed, Identifier

__all__ = ["OneTripRecorder"]


class OneTripRecorder(PostgresApplicationRecorder):
    """eventsourcing's PostgreSQL application recorder whose ``insert_events`` sends the
    whole write transaction (lock, ``NOTIFY``, insert; the commit implied) in one message; it
    returns the new events' notification ids, in order, as eventsourcing's does."""

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert ``stored_events`` in one transaction under the log's table lock and
        return their notification ids; nothing is written when any of them fails."""
        if not stored_events or self.datastore.enable_db_functions:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        # Built before anything is sent (ClientCursor binds them before sending, too).
        rows = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        with self.datastore.get_connection() as conn, ClientCursor(conn) as curs:
            curs.execute(self._one_trip_statement, (rows,))
            while curs.nextset():  # the lock's and NOTIFY's results, then the INSERT's
                pass
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)

    @cached_property
    def _one_trip_statement(self) -> Composed:
        """The write's statements in one query string: PostgreSQL runs a query string of
        several statements as one transaction (an error in any rolls back all of them),
        and LOCK TABLE may be used in it."""
        notify = SQL("NOTIFY {0}").format(Identifier(self.channel_name))
        return SQL("; ").join([*self.lock_table_statements, notify, self.insert_events_statement])
