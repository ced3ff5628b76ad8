"""Followers' durable dead letters: a table of the store's own database, next to
eventsourcing's tracking table, so that a letter and the follower's position are written in
one transaction (SQLite and PostgreSQL alike).

A row is one handler's failure on one event a follower delivered, keyed by the follower's
name and the event's position in the store's log: the log keeps the event itself (it is
append-only), so the position is enough to deliver it again. Rows are of two kinds: a
*dead letter* (the follower gave up and went on), and a failure still being *retried* (the
follower's ``max_attempts`` not reached yet), kept so that the attempts survive a restart.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from eventsourcing.persistence import Tracking, TrackingRecorder

from ..redaction import redact_text

__all__ = [
    "COLUMNS",
    "TABLE",
    "DeadLetterTable",
    "Failure",
    "FollowerDeadLetter",
    "tracked_names",
]

logger = logging.getLogger(__name__)

TABLE = "atlas_dead_letters"
"""The table's name (in the store's PostgreSQL schema, when it has one)."""

COLUMNS = (
    "id",
    "follower",
    "position",
    "event_id",
    "topic",
    "handler",
    "error_type",
    "error_message",
    "attempts",
    "failed_at",
    "dead",
)
"""The table's columns, in order (what a SQLite store's file check expects)."""

_CREATION_LOCK = 0x41746C6173444C  # any constant: the advisory lock of creating the table

_DEAD = 1
_RETRYING = 0

_SELECTED = ", ".join(COLUMNS[:-1])


@dataclass(frozen=True, slots=True)
class Failure:
    """One handler's failure on one event: the handler's qualified name, the exception's
    class name and its message (``error_type`` names the position for an event that
    could not be decoded)."""

    handler: str
    error_type: str
    error_message: str

    @classmethod
    def of(cls, handler: str, exc: BaseException) -> Failure:
        """The failure of ``handler`` with ``exc``, its message redacted as every message
        the library keeps is (:func:`~atlas_eda.redaction.redact_text`)."""
        return cls(handler, type(exc).__name__, redact_text(str(exc)))


@dataclass(frozen=True, slots=True)
class FollowerDeadLetter:
    """A delivery a follower gave up on, kept in the store's database: ``id`` (what
    ``retry`` and ``discard`` take), the follower's name, the event's ``position`` in the
    store's log (what redelivery reads again), the bus event id the follower gave it
    (empty when the stored event could not be decoded), its stored ``topic``, the failed
    ``handler`` (qualified name), the error's class and message, how many times it was
    tried, and when it last failed (``time.time()``)."""

    id: int
    follower: str
    position: int
    event_id: str
    topic: str
    handler: str
    error_type: str
    error_message: str
    attempts: int
    failed_at: float


class DeadLetterTable:
    """The dead-letter table of the database ``tracking`` (eventsourcing's tracking
    recorder of a SQLite or PostgreSQL store) writes to; created if need be."""

    def __init__(self, tracking: TrackingRecorder) -> None:
        self._tracking = tracking
        self._datastore: Any = cast(Any, tracking).datastore
        schema = getattr(self._datastore, "schema", None)
        self._postgres = schema is not None
        self._table = f'"{schema}"."{TABLE}"' if schema is not None else TABLE
        key = "BIGSERIAL PRIMARY KEY" if self._postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
        real = "DOUBLE PRECISION" if self._postgres else "REAL"
        with self._transaction() as cursor:
            if self._postgres:
                # Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's catalog:
                # followers starting at once take turns (the lock ends with the transaction).
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATION_LOCK,))
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self._table} (id {key}, follower TEXT NOT NULL, "
                f"position BIGINT NOT NULL, event_id TEXT NOT NULL, topic TEXT NOT NULL, "
                f"handler TEXT NOT NULL, error_type TEXT NOT NULL, error_message TEXT NOT "
                f"NULL, attempts INTEGER NOT NULL, failed_at {real} NOT NULL, dead INTEGER "
                f"NOT NULL)"
            )

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._datastore.transaction(commit=True) as cursor:
            yield cursor

    def _sql(self, text: str) -> str:
        """``text`` with ``:name`` parameters, in the backend's parameter style."""
        text = text.replace("{table}", self._table)
        return re.sub(r":(\w+)", r"%(\1)s", text) if self._postgres else text

    def _execute(self, cursor: Any, text: str, **params: Any) -> None:
        cursor.execute(self._sql(text), params)

    # -- what a follower writes --------------------------------------------------------

    def retrying(self, follower: str) -> dict[int, int]:
        """The positions whose failures ``follower`` is still retrying, with the attempts
        made so far."""
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "SELECT position, MAX(attempts) AS attempts FROM {table} WHERE "
                "follower = :follower AND dead = :dead GROUP BY position",
                follower=follower,
                dead=_RETRYING,
            )
            return {int(row["position"]): int(row["attempts"]) for row in cursor.fetchall()}

    def fail(
        self,
        follower: str,
        position: int,
        *,
        event_id: str,
        topic: str,
        failures: Sequence[Failure],
        failed_at: float,
        max_attempts: int,
        tracking: Tracking | None,
    ) -> int:
        """Count one more failed attempt at the event at ``position``, in one transaction;
        returns the attempts made. When they reach ``max_attempts`` the failures become
        dead letters and, with ``tracking`` (the follower's new position), the position is
        recorded in the same transaction; before, they are kept as being retried."""
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "SELECT MAX(attempts) AS attempts FROM {table} WHERE follower = :follower "
                "AND position = :position AND dead = :dead",
                follower=follower,
                position=position,
                dead=_RETRYING,
            )
            row = cursor.fetchone()
            attempts = (int(row["attempts"]) if row and row["attempts"] is not None else 0) + 1
            self._execute(
                cursor,
                "DELETE FROM {table} WHERE follower = :follower AND position = :position "
                "AND dead = :dead",
                follower=follower,
                position=position,
                dead=_RETRYING,
            )
            dead = attempts >= max_attempts
            for failure in failures:
                self._execute(
                    cursor,
                    "INSERT INTO {table} (follower, position, event_id, topic, handler, "
                    "error_type, error_message, attempts, failed_at, dead) VALUES (:follower, "
                    ":position, :event_id, :topic, :handler, :error_type, :error_message, "
                    ":attempts, :failed_at, :dead)",
                    follower=follower,
                    position=position,
                    event_id=event_id,
                    topic=topic,
                    handler=failure.handler,
                    error_type=failure.error_type,
                    error_message=failure.error_message,
                    attempts=attempts,
                    failed_at=failed_at,
                    dead=_DEAD if dead else _RETRYING,
                )
            if dead and tracking is not None:
                # eventsourcing's own process recorders write tracking this way, in the
                # transaction of what they record: the letter and the position together.
                cast(Any, self._tracking)._insert_tracking(cursor, tracking)
        return attempts

    def forget_retrying(self, follower: str, position: int) -> None:
        """Drop the failures being retried at ``position`` (its event was handled)."""
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "DELETE FROM {table} WHERE follower = :follower AND position = :position "
                "AND dead = :dead",
                follower=follower,
                position=position,
                dead=_RETRYING,
            )

    # -- what an operator reads and acts on --------------------------------------------

    def letters(self, follower: str | None = None) -> list[FollowerDeadLetter]:
        """The dead letters (of ``follower`` when given), oldest first."""
        where = "dead = :dead" + ("" if follower is None else " AND follower = :follower")
        with self._transaction() as cursor:
            self._execute(
                cursor,
                f"SELECT {_SELECTED} FROM {{table}} WHERE {where} ORDER BY id",
                dead=_DEAD,
                follower=follower,
            )
            return [_letter(row) for row in cursor.fetchall()]

    def get(self, letter_id: int) -> FollowerDeadLetter | None:
        """The dead letter ``letter_id``, or ``None``."""
        with self._transaction() as cursor:
            self._execute(
                cursor,
                f"SELECT {_SELECTED} FROM {{table}} WHERE id = :id AND dead = :dead",
                id=letter_id,
                dead=_DEAD,
            )
            row = cursor.fetchone()
        return None if row is None else _letter(row)

    def discard(self, letter_id: int) -> bool:
        """Delete the dead letter ``letter_id``; whether there was one."""
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "SELECT id FROM {table} WHERE id = :id AND dead = :dead",
                id=letter_id,
                dead=_DEAD,
            )
            if cursor.fetchone() is None:
                return False
            self._execute(cursor, "DELETE FROM {table} WHERE id = :id", id=letter_id)
            return True

    def failed_again(self, letter_id: int, failure: Failure, failed_at: float) -> None:
        """Record that redelivering ``letter_id`` failed again: its new error, one more
        attempt."""
        with self._transaction() as cursor:
            self._execute(
                cursor,
                "UPDATE {table} SET error_type = :error_type, error_message = :error_message, "
                "attempts = attempts + 1, failed_at = :failed_at WHERE id = :id",
                error_type=failure.error_type,
                error_message=failure.error_message,
                failed_at=failed_at,
                id=letter_id,
            )


def _letter(row: Any) -> FollowerDeadLetter:
    return FollowerDeadLetter(
        id=int(row["id"]),
        follower=str(row["follower"]),
        position=int(row["position"]),
        event_id=str(row["event_id"]),
        topic=str(row["topic"]),
        handler=str(row["handler"]),
        error_type=str(row["error_type"]),
        error_message=str(row["error_message"]),
        attempts=int(row["attempts"]),
        failed_at=float(row["failed_at"]),
    )


def tracked_names(tracking: TrackingRecorder) -> list[str]:
    """The names with a position in ``tracking``'s table (eventsourcing's tracking
    recorder of a SQLite or PostgreSQL store: durable followers), sorted; eventsourcing's
    own ``__migration__`` marker left out. eventsourcing has no call that lists them."""
    recorder: Any = tracking
    datastore = recorder.datastore
    table = getattr(recorder, "tracking_table_name", "tracking")  # SQLite's is fixed
    schema = getattr(datastore, "schema", None)
    qualified = f'"{schema}"."{table}"' if schema is not None else f'"{table}"'
    with datastore.transaction(commit=False) as cursor:
        cursor.execute(f"SELECT DISTINCT application_name FROM {qualified}")
        rows = cursor.fetchall()
    names = (row["application_name"] for row in rows)
    return sorted(name for name in names if not name.startswith("__"))
