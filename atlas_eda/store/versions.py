"""Batched reads of many documents at chosen versions, straight from the store's tables
(SQLite and PostgreSQL), for a timeline's first question on a store (issue 20).

The state of the store at a position is each document at its last version at or before
it. One query on the events table lists the documents with events in a range of positions
(their newest version there, how many events, where the first one is); one query finds the
newest snapshot of each at or below that version; one query reads the events after it.
All three run through the recorder's own datastore (its connection pool, its tables), so
nothing is read through a second database handle. Each query takes at most ``CHUNK``
documents, its values bound as parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import AggregateRecorder, ApplicationRecorder, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

if TYPE_CHECKING:  # psycopg comes with the 'postgres' extra: imported only when used
    from eventsourcing.postgres import PostgresApplicationRecorder

__all__ = ["CHUNK", "ChangedDocument", "TableReads", "table_reads"]

CHUNK = 300
"""At most this many documents per query (three parameters each: far below the limits of
SQLite's and PostgreSQL's bound parameters)."""


class ChangedDocument(NamedTuple):
    """A document (or another aggregate) with events in a range of positions: its newest
    ``version`` there, how many ``events``, the position of the ``first`` one and its
    ``topic``; ``key`` is its id as the table stores it."""

    document_id: UUID
    version: int
    events: int
    first: int
    topic: str
    key: object


class _Dialect(NamedTuple):
    param: str  # the driver's placeholder
    position: str  # the events table's position column
    events: str  # the events table's name, qualified
    snapshots: str  # the snapshots table's name, qualified
    bigint: str  # how a bound integer is cast in a VALUES list


class TableReads:
    """The three batched reads over one recorder's datastore (see the module docstring)."""

    def __init__(
        self, recorder: SQLiteApplicationRecorder | PostgresApplicationRecorder, dialect: _Dialect
    ) -> None:
        self._recorder = recorder
        self._sql = dialect

    def any_snapshot(self) -> bool:
        """Whether the snapshots table holds a row at all (a store written without
        snapshots has none, and then a fold reads no more than these reads would)."""
        with self._cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {self._sql.snapshots} LIMIT 1")
            return cursor.fetchone() is not None

    def changed(self, after: int, upto: int) -> list[ChangedDocument]:
        """Every aggregate with events at positions ``after + 1`` to ``upto``, in the order
        of its first event there."""
        sql, p = self._sql, self._sql.param
        with self._cursor() as cursor:
            position = sql.position
            if sql.position == "rowid":
                # Over most of the log, SQLite scans the (id, version) index, which holds the
                # rowid, faster than the rows themselves in their range: "+rowid" lets it.
                cursor.execute(f"SELECT MAX(rowid) AS last FROM {sql.events}")
                last = cursor.fetchone()["last"] or 0
                position = "+rowid" if 2 * (upto - after) > last else "rowid"
            cursor.execute(
                f"SELECT g.originator_id AS id, g.version AS version, g.events AS events, "
                f"g.first AS first, e.topic AS topic FROM (SELECT originator_id, "
                f"MAX(originator_version) AS version, COUNT(*) AS events, MIN({sql.position}) "
                f"AS first FROM {sql.events} WHERE {position} > {p} AND {position} <= {p} "
                f"GROUP BY originator_id) AS g JOIN {sql.events} AS e "
                f"ON e.{sql.position} = g.first ORDER BY g.first",
                (after, upto),
            )
            return [
                ChangedDocument(
                    document_id=_uuid(row["id"]),
                    version=row["version"],
                    events=row["events"],
                    first=row["first"],
                    topic=row["topic"],
                    key=row["id"],
                )
                for row in cursor.fetchall()
            ]

    def snapshots(self, wanted: Sequence[tuple[ChangedDocument, int]]) -> list[StoredEvent]:
        """For each ``(document, above)``: its newest snapshot of a version above ``above``
        and at most ``document.version``, when there is one."""
        table = self._sql.snapshots
        return self._joined(
            wanted,
            f"SELECT s.originator_id, s.originator_version, s.topic, s.state FROM w JOIN "
            f"{table} AS s ON s.originator_id = w.id AND s.originator_version = (SELECT "
            f"MAX(x.originator_version) FROM {table} AS x WHERE x.originator_id = w.id AND "
            f"x.originator_version > w.lo AND x.originator_version <= w.hi)",
        )

    def events(self, wanted: Sequence[tuple[ChangedDocument, int]]) -> list[StoredEvent]:
        """For each ``(document, above)``: its events of versions above ``above`` up to
        ``document.version``, in no particular order (sorting them costs the database more
        than the caller)."""
        return self._joined(
            wanted,
            f"SELECT e.originator_id, e.originator_version, e.topic, e.state FROM w JOIN "
            f"{self._sql.events} AS e ON e.originator_id = w.id AND e.originator_version > "
            f"w.lo AND e.originator_version <= w.hi",
        )

    def _joined(
        self, wanted: Sequence[tuple[ChangedDocument, int]], select: str
    ) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        ids = {document.key: document.document_id for document, _ in wanted}
        row_values = f"({self._sql.param}, {self._sql.param}{self._sql.bigint}, "
        row_values += f"{self._sql.param}{self._sql.bigint})"
        with self._cursor() as cursor:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                values = ", ".join([row_values] * len(chunk))
                params: list[Any] = []
                for document, above in chunk:
                    params += [document.key, above, document.version]
                cursor.execute(f"WITH w(id, lo, hi) AS (VALUES {values}) {select}", params)
                found.extend(
                    StoredEvent(
                        originator_id=ids[row["originator_id"]],
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=row["state"],
                    )
                    for row in cursor.fetchall()
                )
        return found

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        # A read-only transaction of the recorder's own datastore (rolled back at the end).
        with self._recorder.datastore.transaction(commit=False) as cursor:
            yield cursor


def table_reads(
    recorder: ApplicationRecorder, snapshots: AggregateRecorder | None
) -> TableReads | None:
    """The batched reads of a SQLite or PostgreSQL store with snapshots on (``snapshots``
    is the snapshots' recorder), or ``None``: a memory store, or snapshots off, is read by
    folding its log."""
    if isinstance(recorder, SQLiteApplicationRecorder) and snapshots is not None:
        return TableReads(
            recorder,
            _Dialect(
                param="?",
                position="rowid",
                events=recorder.events_table_name,
                snapshots=_name_of(snapshots),
                bigint="",
            ),
        )
    if snapshots is None or not type(recorder).__module__.startswith("eventsourcing.postgres"):
        return None
    # Only a PostgreSQL store's recorder comes from that module: psycopg is installed.
    from eventsourcing.postgres import PostgresApplicationRecorder  # noqa: PLC0415

    if isinstance(recorder, PostgresApplicationRecorder):
        schema = _quoted(recorder.datastore.schema)
        return TableReads(
            recorder,
            _Dialect(
                param="%s",
                position="notification_id",
                events=f"{schema}.{_quoted(recorder.events_table_name)}",
                snapshots=f"{schema}.{_quoted(_name_of(snapshots))}",
                bigint="::bigint",
            ),
        )
    return None


def _name_of(recorder: AggregateRecorder) -> str:
    name = getattr(recorder, "events_table_name", None)
    if not isinstance(name, str):
        raise TypeError(f"{type(recorder).__name__} names no events table.")
    return name


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)
