"""Projections: read models folded from the store's log, their position tracked by
eventsourcing in the same transaction as each change to them.

A :class:`Projection` is an eventsourcing projection (``eventsourcing.projection.Projection``,
whose ``view`` is a ``TrackingRecorder``): it declares the document event ``kinds`` it
handles and the SQL ``tables`` it owns, and folds each event into them in :meth:`~Projection.
apply`. Its home is a URL: ``sqlite:///views.db`` (its own SQLite file),
``postgresql://...`` (the store's PostgreSQL database) or ``memory://`` (an in-memory SQLite
database, for tests and :meth:`~Projection.as_of`). The same SQL runs in all three.

Exactly once: each event's changes and eventsourcing's tracking record of its position
(``Tracking(projection.name, position)``) are committed in one transaction of the read
model's database, and a tracking record never moves backwards (eventsourcing refuses it),
so after any crash, or with two processes on the same read model, every event is applied
exactly once.

Three ways to run the same projection, none with a thread of its own:
``store.project(projection)`` (after each commit of that store),
:meth:`Projection.run` / ``atlas-eda project`` (another process, polling the log), and
:meth:`Projection.rebuild` (from the start into an emptied read model).

A failing event (``apply`` raised) leaves the read model and the position as they were:
the failure is logged and published as an ``ERROR`` event on the store's bus (when it has
one), and the event is tried again on the next pass; after ``max_attempts`` passes it
becomes a durable dead letter (the followers' table, :mod:`atlas_eda.store.dead_letters`,
in the read model's database, written with the new position) and the projection goes on.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

from eventsourcing.persistence import (
    InfrastructureFactory,
    InterfaceError,
    Notification,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.projection import Projection as EventsourcingProjection
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
    SQLiteTrackingRecorder,
)
from eventsourcing.utils import Environment

from .checks import check_count, is_int
from .document_events import KINDS, DocumentEvent, EventKind, kind_of
from .errors import AtlasEdaError, PositionError
from .events import EventType
from .redaction import redact_url
from .store.dead_letters import TABLE as LETTERS
from .store.dead_letters import DeadLetterTable, Failure, FollowerDeadLetter
from .store.urls import persistence_settings

if TYPE_CHECKING:
    from .store import TemporalStore

__all__ = [
    "MEMORY_URL",
    "DocumentsByAuthor",
    "Projection",
    "ProjectionError",
    "Sql",
    "Table",
]

logger = logging.getLogger(__name__)

MEMORY_URL = "memory://"
"""The home of an in-memory read model (an in-memory SQLite database of its own)."""

TYPES = {"TEXT": "text", "INTEGER": "bigint", "REAL": "double precision"}
"""The portable column types a :class:`Table` may declare, with what PostgreSQL calls
them (SQLite keeps the declared name)."""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
_PAGE_SIZE = 500
_STATEMENT_CACHE = 64
STORE_NAME = "TemporalStore"  # TemporalStore.name: eventsourcing's prefix of its tables


class ProjectionError(AtlasEdaError):
    """A projection cannot use its home as asked (a table of another schema is there)."""


@dataclass(frozen=True)
class Table:
    """A read-model table: its ``name``, its ``columns`` (name to ``"TEXT"``,
    ``"INTEGER"`` or ``"REAL"``, in order) and its primary ``key`` (column names).
    Names are lower-case SQL identifiers."""

    name: str
    columns: Mapping[str, str]
    key: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in (self.name, *self.columns):
            if not isinstance(name, str) or not _IDENTIFIER.match(name):
                raise ValueError(
                    f"Table {self.name!r}: {name!r} is not a lower-case SQL identifier "
                    f"(letters, digits and '_', not starting with a digit)."
                )
        for column, kind in self.columns.items():
            if kind not in TYPES:
                raise ValueError(
                    f"Table {self.name!r}: column {column!r} has type {kind!r}; use one of "
                    f"{', '.join(TYPES)} (the same SQL then runs on SQLite and PostgreSQL)."
                )
        if not self.key or any(column not in self.columns for column in self.key):
            raise ValueError(
                f"Table {self.name!r}: key {self.key!r} must name one or more of its "
                f"columns {tuple(self.columns)!r}."
            )

    def create_statement(self, postgres: bool) -> str:
        """The ``CREATE TABLE`` statement of this table on SQLite or PostgreSQL."""
        columns = ", ".join(
            f"{name} {TYPES[kind].upper() if postgres else kind}"
            for name, kind in self.columns.items()
        )
        # On SQLite the rows are stored in their key's B-tree (not in a rowid table plus
        # an index of the key): one page fewer to write per change.
        rowid = "" if postgres else " WITHOUT ROWID"
        return f"CREATE TABLE {self.name} ({columns}, PRIMARY KEY ({', '.join(self.key)})){rowid}"

    def expected_types(self, postgres: bool) -> list[tuple[str, str]]:
        """Each column with the type its database reports for it, lower-cased."""
        return [
            (name, TYPES[kind] if postgres else kind.lower()) for name, kind in self.columns.items()
        ]


class Sql:
    """One transaction of a read model: what :meth:`Projection.apply` writes through.
    Statements take ``:name`` parameters on every backend."""

    def __init__(self, cursor: Any, postgres: bool) -> None:
        self.cursor = cursor
        self._postgres = postgres

    def _text(self, text: str) -> str:
        return re.sub(r"(?<!:):(\w+)", r"%(\1)s", text) if self._postgres else text

    def execute(self, text: str, **params: Any) -> None:
        """Run one statement."""
        self.cursor.execute(self._text(text), params)

    def all(self, text: str, **params: Any) -> list[dict[str, Any]]:
        """Run a query; its rows as dicts."""
        self.cursor.execute(self._text(text), params)
        return [dict(row) for row in self.cursor.fetchall()]

    def one(self, text: str, **params: Any) -> dict[str, Any] | None:
        """Run a query; its first row as a dict, or ``None``."""
        self.cursor.execute(self._text(text), params)
        row = self.cursor.fetchone()
        return None if row is None else dict(row)


@dataclass
class _Pass:
    """What one pass over the log did: how many events it applied, and whether it
    stopped at a failing event."""

    applied: int = 0
    stopped: bool = False
    failures: list[str] = field(default_factory=list)


class Projection(EventsourcingProjection[TrackingRecorder]):
    """A read model folded from the store's document events (see the module docstring).

    Subclasses set ``kinds`` (the :data:`~atlas_eda.document_events.EventKind` s they
    handle; default all), ``tables`` (the :class:`Table` s they own) and implement
    :meth:`apply`; they keep this constructor. ``url`` is the read model's home;
    ``name`` (default: the class name) keys its position and dead letters there;
    ``max_attempts`` is how many passes an event that fails gets before it becomes a
    dead letter; ``page_size`` how many events one transaction applies when catching up.
    A table already there with other columns is refused (:class:`ProjectionError`),
    nothing created or dropped.
    """

    kinds: ClassVar[tuple[EventKind, ...]] = KINDS
    tables: ClassVar[tuple[Table, ...]] = ()

    def __init__(
        self,
        url: str = MEMORY_URL,
        *,
        name: str | None = None,
        max_attempts: int = 3,
        page_size: int = _PAGE_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_class(type(self))
        check_count("max_attempts", max_attempts, minimum=1, type_error=ValueError)
        check_count("page_size", page_size, minimum=1, type_error=ValueError)
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"A projection name must be a non-empty str, got {name!r}.")
        self.name = name or type(self).__name__
        self.url = url
        self.max_attempts = max_attempts
        self.page_size = page_size
        self._sleep = sleep
        self._clock = clock
        self._store: TemporalStore | None = None
        # The log position up to which nothing is left for this projection in its store
        # (None: unknown); what lets after_commit skip reading the log.
        self._seen: int | None = None
        view = _open_view(url)
        super().__init__(view)
        datastore: Any = cast(Any, view).datastore
        self._datastore = datastore
        self._schema: str | None = getattr(datastore, "schema", None)
        self._postgres = self._schema is not None
        pool = getattr(datastore, "pool", None)
        self._writer: sqlite3.Connection | None = None
        self._writer_lock = threading.Lock()
        if isinstance(pool, _ReadModelPool) and not pool.is_sqlite_memory_mode:
            self._writer = pool.connect()
        try:
            self._check_and_create_tables()
            self._letters = DeadLetterTable(view)
            self._retrying = self._letters.retrying(self.name)
            self._position = self.view.max_tracking_id(self.name) or 0
        except BaseException:
            self.close()
            raise

    # -- what a subclass writes --------------------------------------------------------

    def apply(self, event: DocumentEvent, sql: Sql) -> None:
        """Fold ``event`` (one of :attr:`kinds`) into the read model through ``sql``, the
        transaction its position is recorded in. Raising rolls the event back."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply(event, sql).")

    # -- eventsourcing's projection API ------------------------------------------------

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Apply ``domain_event`` and record ``tracking`` in one transaction (what
        eventsourcing's projection runners call)."""
        with self._transaction() as sql:
            self.apply(domain_event, sql)
            cast(Any, self.view)._insert_tracking(sql.cursor, tracking)
        self._position = max(self._position, tracking.notification_id)

    # -- position and reading ----------------------------------------------------------

    @property
    def position(self) -> int:
        """The store position of the last event applied (or dead-lettered); 0: none."""
        return self._position

    def rows(self, table: str | None = None) -> list[dict[str, Any]]:
        """Every row of ``table`` (default: the first of :attr:`tables`), ordered by its
        key."""
        chosen = self._table(table)
        return self.query(f"SELECT * FROM {chosen.name} ORDER BY {', '.join(chosen.key)}")

    def query(self, text: str, **params: Any) -> list[dict[str, Any]]:
        """The rows of a plain SQL query on the read model (``:name`` parameters)."""
        with self._transaction(commit=False) as sql:
            return sql.all(text, **params)

    def diff(
        self, other: Projection, table: str | None = None
    ) -> dict[tuple[Any, ...], tuple[dict[str, Any] | None, dict[str, Any] | None]]:
        """The rows of ``table`` that differ between this read model and ``other`` (say
        the same one :meth:`as_of` another position), by key: ``(here, there)``, ``None``
        where a side has no such row."""
        chosen = self._table(table)

        def keyed(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
            return {tuple(row[k] for k in chosen.key): row for row in rows}

        here, there = keyed(self.rows(chosen.name)), keyed(other.rows(chosen.name))
        return {
            key: (here.get(key), there.get(key))
            for key in sorted(here.keys() | there.keys(), key=repr)
            if here.get(key) != there.get(key)
        }

    def dead_letters(self) -> list[FollowerDeadLetter]:
        """The events this projection gave up on, oldest first (``follower`` holds the
        projection's name, ``handler`` its class)."""
        return self._letters.letters(self.name)

    # -- running -----------------------------------------------------------------------

    def catch_up(self, store: TemporalStore, *, limit: int | None = None) -> int:
        """Apply the store's events past :attr:`position` (at most ``limit``), a page per
        transaction; returns how many were applied. An event whose ``apply`` raises stops
        the pass (reported, see the module docstring) and is tried on the next one."""
        if limit is not None and (not is_int(limit) or limit < 1):
            raise ValueError(f"limit must be a positive int or None, got {limit!r}.")
        self._store = store
        self._seen = None
        done = self._pass(store, limit=limit, until=None)
        if not done.stopped and limit is None:
            self._seen = self._position
        return done.applied

    def after_commit(
        self, store: TemporalStore, event: DocumentEvent, positions: Sequence[int]
    ) -> None:
        """What ``store.project`` calls after each commit of ``store``: ``event`` was
        committed at ``positions[0]`` (and the rest of ``positions`` in the same
        transaction). When this projection is known to have handled everything before it,
        the event is applied as it is, without reading the log; else it catches up."""
        seen = self._seen
        self._seen = None
        if self._store is not store or seen is None or not positions or positions[0] != seen + 1:
            self.catch_up(store)
            return
        if kind_of(event) in self.kinds:
            try:
                self.process_event(event, Tracking(self.name, positions[0]))
            except Exception:  # the log's way, which counts and reports the failure
                self.catch_up(store)
                return
        self._seen = max(positions)

    def run(
        self,
        store: TemporalStore,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        interval: float = 0.2,
        stop_event: threading.Event | None = None,
    ) -> int:
        """Catch up, then poll every ``interval`` seconds until ``timeout`` seconds have
        passed, nothing new came for ``idle_timeout`` seconds or ``stop_event`` is set
        (with none of them: forever); returns how many events were applied. Waits with
        the projection's ``sleep``, or on ``stop_event`` when given. Each page is applied
        with its position in one transaction, so a stop loses nothing."""
        for label, value in (("timeout", timeout), ("idle_timeout", idle_timeout)):
            if value is not None and not 0 <= value < math.inf:
                raise ValueError(f"{label} must be a non-negative number, got {value!r}.")
        if not 0 < interval < math.inf:
            raise ValueError(f"interval must be a positive number, got {interval!r}.")
        started = last = self._clock()
        applied = 0
        while True:
            count = self.catch_up(store)
            applied += count
            now = self._clock()
            if count:
                last = now
            waits = [interval]
            if timeout is not None:
                waits.append(started + timeout - now)
            if idle_timeout is not None:
                waits.append(last + idle_timeout - now)
            wait = min(waits)
            if wait <= 0 or (stop_event is not None and stop_event.is_set()):
                return applied
            if stop_event is None:
                self._sleep(wait)
            elif stop_event.wait(wait):
                return applied

    def rebuild(self, store: TemporalStore | None = None) -> int:
        """Empty the read model (its tables, its position and its dead letters, in one
        transaction) and apply the store's log from the start; returns how many events
        were applied."""
        store = self._bound(store)
        tracking_table = getattr(self.view, "tracking_table_name", "tracking")
        with self._transaction() as sql:
            for table in self.tables:
                sql.execute(f"DELETE FROM {table.name}")
            sql.execute(
                f"DELETE FROM {tracking_table} WHERE application_name = :name", name=self.name
            )
            sql.execute(f"DELETE FROM {LETTERS} WHERE follower = :name", name=self.name)
        self._position = 0
        self._retrying = {}
        return self.catch_up(store)

    def as_of(self, position: int, store: TemporalStore | None = None) -> Self:
        """A new in-memory read model of this class, as it stood once the store's events
        up to ``position`` were applied (an event that fails raises here)."""
        store = self._bound(store)
        if not is_int(position):
            raise TypeError(f"A position must be an int, got {position!r}.")
        last = store.last_position()
        if not 0 <= position <= last:
            raise PositionError(
                f"Position {position} is not in the log of {store!r}: positions run from 0 "
                f"to {last}."
            )
        past = type(self)(MEMORY_URL, name=self.name, max_attempts=1, page_size=self.page_size)
        past._store = store
        done = past._pass(store, limit=None, until=position)
        if done.failures:
            past.close()
            raise ProjectionError(
                f"{self.name} could not be built as of position {position}: "
                f"{'; '.join(done.failures)}."
            )
        return past

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Release the read model's database connections; what it holds stays."""
        with self._writer_lock:
            writer, self._writer = self._writer, None  # reads go to the closed pool: its error
        if writer is not None:
            writer.close()
        self._datastore.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={redact_url(self.url)!r}, name={self.name!r}, "
            f"position={self._position})"
        )

    # -- internals ---------------------------------------------------------------------

    def _bound(self, store: TemporalStore | None) -> TemporalStore:
        store = store or self._store
        if store is None:
            raise ProjectionError(
                f"{self.name} has no store yet: pass one (rebuild(store), as_of(p, store)) "
                f"or run it first (store.project(projection), projection.catch_up(store))."
            )
        return store

    def _table(self, name: str | None) -> Table:
        if name is None:
            return self.tables[0]
        for table in self.tables:
            if table.name == name:
                return table
        raise ValueError(
            f"{self.name} has no table {name!r}; its tables: "
            f"{', '.join(t.name for t in self.tables)}."
        )

    @contextmanager
    def _transaction(self, *, commit: bool = True) -> Iterator[Sql]:
        writer = self._writer
        if writer is not None:
            # The read model's own SQLite file: one kept connection, BEGIN and COMMIT on
            # it directly. eventsourcing's pooled transaction (a connection taken and
            # returned under the pool's locks, a cursor wrapper, a transaction object)
            # is a third of what store.project() adds to each commit; see
            # benchmarks/projections.py. Errors are sqlite3's own.
            with self._writer_lock:
                writer.execute("BEGIN")
                try:
                    yield Sql(writer.cursor(), postgres=False)
                except BaseException:
                    writer.rollback()
                    raise
                if commit:
                    writer.commit()
                else:
                    writer.rollback()
            return
        if self._schema is not None:
            with self._datastore.transaction(commit=commit) as cursor:
                # The user's SQL names tables plainly: they live in the store's schema.
                cursor.execute(f'SET LOCAL search_path TO "{self._schema}"')
                yield Sql(cursor, postgres=True)
            return
        with self._datastore.transaction(commit=commit) as cursor:
            yield Sql(cursor, postgres=False)

    def _check_and_create_tables(self) -> None:
        """Create the tables that are missing, in one transaction, after checking that
        those already there have the declared columns (else refuse, creating nothing)."""
        with self._transaction() as sql:
            missing = []
            for table in self.tables:
                found = self._columns(sql, table.name)
                if not found:
                    missing.append(table)
                elif found != table.expected_types(self._postgres):
                    declared = _shown(table.expected_types(self._postgres))
                    raise ProjectionError(
                        f"Table {table.name!r} in {redact_url(self.url)!r} already exists with "
                        f"columns {_shown(found)}, not the {declared} "
                        f"{self.name} declares; nothing was changed or dropped. Give the "
                        f"projection another home, or drop that table yourself if it is a "
                        f"stale read model."
                    )
            for table in missing:
                sql.execute(table.create_statement(self._postgres))

    def _columns(self, sql: Sql, table: str) -> list[tuple[str, str]]:
        if self._postgres:
            rows = sql.all(
                "SELECT column_name, data_type FROM information_schema.columns WHERE "
                "table_schema = :schema AND table_name = :table ORDER BY ordinal_position",
                schema=self._schema,
                table=table,
            )
            return [(str(r["column_name"]), str(r["data_type"]).lower()) for r in rows]
        rows = sql.all(f"PRAGMA table_info({table})")
        return [(str(r["name"]), str(r["type"]).lower()) for r in rows]

    def _pass(self, store: TemporalStore, *, limit: int | None, until: int | None) -> _Pass:
        done = _Pass()
        while limit is None or done.applied < limit:
            size = self.page_size if limit is None else min(self.page_size, limit - done.applied)
            page = store.notifications(self._position + 1, size, stop=until, kinds=self.kinds)
            if not page:
                break
            if not self._apply_page(store, page, done):
                break
            if len(page) < size:
                break
        return done

    def _apply_page(self, store: TemporalStore, page: Sequence[Notification], done: _Pass) -> bool:
        """Apply ``page`` in one transaction; if an event fails, apply the page event by
        event up to it instead. Whether the pass may go on."""
        try:
            with self._transaction() as sql:
                for notification in page:
                    self.apply(store.decode(notification), sql)
                cast(Any, self.view)._insert_tracking(sql.cursor, Tracking(self.name, page[-1].id))
        except Exception:  # rolled back
            # Another process got there first (its changes may break the read model's
            # keys before eventsourcing refuses the tracking record), or find the
            # failing event one by one.
            return self._overtaken() or self._apply_one_by_one(store, page, done)
        self._position = page[-1].id
        done.applied += len(page)
        self._forget_retrying(page)
        return True

    def _apply_one_by_one(
        self, store: TemporalStore, page: Sequence[Notification], done: _Pass
    ) -> bool:
        for notification in page:
            try:
                self.process_event(store.decode(notification), Tracking(self.name, notification.id))
            except Exception as exc:
                if self._overtaken():
                    return True
                if not self._failed(store, notification, exc, done):
                    return False
                continue  # kept as a dead letter: the pass goes on past it
            done.applied += 1
            self._forget_retrying([notification])
        return True

    def _overtaken(self) -> bool:
        """Whether another process recorded a later position first: then nothing of this
        page was kept, and the pass goes on from that position."""
        recorded = self.view.max_tracking_id(self.name) or 0
        if recorded <= self._position:
            return False
        self._position = recorded
        logger.info("projection %s was overtaken; going on from %d", self.name, recorded)
        return True

    def _forget_retrying(self, page: Sequence[Notification]) -> None:
        for notification in page:
            if self._retrying.pop(notification.id, None) is not None:
                self._letters.forget_retrying(self.name, notification.id)

    def _failed(
        self, store: TemporalStore, notification: Notification, exc: Exception, done: _Pass
    ) -> bool:
        """Report the failure; count the attempt (durably); at ``max_attempts`` keep it
        as a dead letter and move the position past it, in one transaction. Whether it
        became a dead letter."""
        handler = f"{type(self).__module__}.{type(self).__qualname__}.apply"
        failure = Failure.of(handler, exc)
        attempts = self._letters.fail(
            self.name,
            notification.id,
            event_id=f"{notification.originator_id}:{notification.originator_version}",
            topic=notification.topic,
            failures=[failure],
            failed_at=time.time(),
            max_attempts=self.max_attempts,
            tracking=Tracking(self.name, notification.id),
        )
        dead = attempts >= self.max_attempts
        logger.error(
            "projection %s failed on position %d (attempt %d of %d%s): %s: %s",
            self.name,
            notification.id,
            attempts,
            self.max_attempts,
            ", kept as a dead letter" if dead else "",
            failure.error_type,
            failure.error_message,
        )
        done.failures.append(
            f"position {notification.id}: {failure.error_type}: {failure.error_message}"
        )
        if dead:
            self._retrying.pop(notification.id, None)
            self._position = notification.id
        else:
            self._retrying[notification.id] = attempts
            done.stopped = True
        bus = store.event_bus
        if bus is not None:
            bus.publish(
                EventType.ERROR,
                {
                    "event_id": f"{notification.originator_id}:{notification.originator_version}",
                    "event_type": "projection",
                    "handler": handler,
                    "error_type": failure.error_type,
                    "error_message": failure.error_message,  # redacted by Failure.of
                    "position": notification.id,
                    "attempts": attempts,
                    "dead_letter": dead,
                },
                source="atlas_eda.projections",
            )
        return dead


class DocumentsByAuthor(Projection):
    """The example read model: one row per document with its author, title, version
    count, last change (time and editor) and whether it is deleted, so that documents by
    author, with counts and last change, are one plain SQL query away
    (:attr:`BY_AUTHOR`, what :meth:`by_author` runs)::

        SELECT author, COUNT(*) AS documents, SUM(versions) AS changes,
               MAX(last_change) AS last_change
        FROM documents_by_author WHERE deleted = 0 GROUP BY author ORDER BY author

    One statement per event (plus the tracking record): cheap enough to run after each
    commit."""

    tables: ClassVar[tuple[Table, ...]] = (
        Table(
            "documents_by_author",
            {
                "document_id": "TEXT",
                "author": "TEXT",
                "title": "TEXT",
                "versions": "INTEGER",
                "last_change": "REAL",
                "last_editor": "TEXT",
                "deleted": "INTEGER",
            },
            key=("document_id",),
        ),
    )

    BY_AUTHOR: ClassVar[str] = (
        "SELECT author, COUNT(*) AS documents, SUM(versions) AS changes, "
        "MAX(last_change) AS last_change FROM documents_by_author WHERE deleted = 0 "
        "GROUP BY author ORDER BY author"
    )
    """Documents (not deleted) by author: how many, their versions in all, the last
    change (``time.time()`` seconds)."""

    def apply(self, event: DocumentEvent, sql: Sql) -> None:
        """Insert the document's row on creation; update it on each change."""
        kind = kind_of(event)
        fields: Any = event  # the kind's own fields are not visible to mypy
        params = {
            "id": str(event.originator_id),
            "version": event.originator_version,
            "when": event.timestamp.timestamp(),
        }
        if kind == "created":
            sql.execute(
                "INSERT INTO documents_by_author VALUES "
                "(:id, :author, :title, :version, :when, :author, 0)",
                author=fields.author,
                title=fields.title,
                **params,
            )
        elif kind == "updated":
            sql.execute(
                "UPDATE documents_by_author SET title = COALESCE(:title, title), "
                "versions = :version, last_change = :when, "
                "last_editor = COALESCE(:editor, last_editor) WHERE document_id = :id",
                title=fields.title,
                editor=fields.editor,
                **params,
            )
        else:
            sql.execute(
                "UPDATE documents_by_author SET deleted = 1, versions = :version, "
                "last_change = :when WHERE document_id = :id",
                **params,
            )

    def by_author(self) -> list[dict[str, Any]]:
        """Documents by author (:attr:`BY_AUTHOR`): ``author``, ``documents``,
        ``changes``, ``last_change``."""
        return self.query(self.BY_AUTHOR)


def _open_view(url: str) -> TrackingRecorder:
    """eventsourcing's tracking recorder of the read model's home ``url``: its own SQLite
    file, the store's PostgreSQL database, or an in-memory SQLite database."""
    if not isinstance(url, str):
        raise TypeError(f"A projection's url must be a str, got {type(url).__name__}.")
    if url == MEMORY_URL:
        name = f"file:atlas_eda_projection_{uuid.uuid4().hex}?mode=memory&cache=shared"
    else:
        settings = persistence_settings(url)
        if settings["PERSISTENCE_MODULE"] == "eventsourcing.popo":
            raise ValueError(f"{url!r}: use {MEMORY_URL!r} for an in-memory read model.")
        if "SQLITE_DBNAME" not in settings:
            # The store's name: on PostgreSQL the tracking table is the store's own
            # (followers' positions beside projections' positions, keyed by name).
            factory = InfrastructureFactory[TrackingRecorder].construct(
                env=Environment(STORE_NAME, settings)
            )
            return factory.tracking_recorder()
        name = settings["SQLITE_DBNAME"]
    datastore = SQLiteDatastore(name)
    datastore.pool.close()
    datastore.pool = _ReadModelPool(db_name=name)
    recorder = SQLiteTrackingRecorder(datastore)
    recorder.create_table()
    return recorder


class _ReadModelPool(SQLiteConnectionPool):
    """eventsourcing's SQLite connection pool, whose connections differ in two ways, both
    for the cost of the transaction ``store.project()`` adds to each commit (see
    ``benchmarks/projections.py``): they keep a cache of prepared statements
    (eventsourcing's keep one, so each statement of a transaction is prepared again:
    half its time), and they commit with ``synchronous = NORMAL``: a read model is
    derived, so a commit a power cut loses is lost together with its tracking record and
    applied again (a killed process loses nothing: the WAL is in the OS's hands)."""

    def _create_connection(self) -> SQLiteConnection:
        return SQLiteConnection(sqlite_conn=self.connect(), max_age=self.max_age)

    def connect(self) -> sqlite3.Connection:
        """A new connection to the read model's database, set up as described above."""
        try:
            connection = sqlite3.connect(
                database=self.db_name,
                uri=True,
                check_same_thread=False,
                isolation_level=None,  # eventsourcing's transactions BEGIN themselves
                cached_statements=_STATEMENT_CACHE,
                timeout=self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT,
            )
        except (sqlite3.Error, TypeError) as exc:
            raise InterfaceError(exc) from exc
        if not self.is_sqlite_memory_mode:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
        connection.row_factory = sqlite3.Row
        return connection


def _check_class(cls: type[Projection]) -> None:
    if not cls.tables or not all(isinstance(t, Table) for t in cls.tables):
        raise TypeError(f"{cls.__name__}.tables must be a non-empty tuple of Table.")
    if not cls.kinds or any(kind not in KINDS for kind in cls.kinds):
        raise TypeError(f"{cls.__name__}.kinds must be some of {KINDS!r}, got {cls.kinds!r}.")
    if cls.apply is Projection.apply:
        raise TypeError(f"{cls.__name__} must implement apply(event, sql).")


def _shown(columns: Sequence[tuple[str, str]]) -> str:
    return "(" + ", ".join(f"{name} {kind}" for name, kind in columns) + ")"
