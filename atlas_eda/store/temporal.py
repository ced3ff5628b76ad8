"""TemporalStore: versioned documents persisted through eventsourcing, addressed by URL.

The store holds an eventsourcing ``Application`` of its own (never handed out), so every
write goes through the store's commands, which check their input, retry lost races and
publish on the bus after the commit. What the timeline and followers need from the log is
a narrow read API: :meth:`TemporalStore.last_position`, :meth:`~TemporalStore.notifications`,
:meth:`~TemporalStore.decode`, :meth:`~TemporalStore.copy_until`,
:meth:`~TemporalStore.tracking_recorder` and :meth:`~TemporalStore.listen_connection`.

Reliability (see docs/reliability.md): a SQLite file is inspected before eventsourcing
touches it (:func:`check_sqlite_file`), so a foreign, truncated or read-only file is
refused unmodified; a write that loses a race raises :class:`ConcurrencyError` with
nothing saved (``retries=N`` re-reads and retries); ``cipher_key`` (or
``ATLAS_EDA_CIPHER_KEY``) encrypts every stored event with eventsourcing's AES cipher.
"""

from __future__ import annotations

import bisect
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, NoReturn, Self, TypeVar, cast
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.domain import AggregateEvent, Snapshot
from eventsourcing.persistence import (
    ApplicationRecorder,
    ConnectionUnavailableError,
    EventStore,
    IntegrityError,
    Mapper,
    MapperDeserialisationError,
    OperationalError,
    PersistenceError,
    StoredEvent,
    TrackingRecorder,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder

from ..bus import EventBus
from ..checks import as_uuid, check_count, is_int
from ..document import Document, check_text
from ..document_events import (
    KINDS,
    DocumentEvent,
    as_document_event,
    current_cause,
    live_bus_event,
    topics,
)
from ..effects import Effect
from ..errors import (
    AtlasEdaError,
    ConcurrencyError,
    CorruptStoreError,
    DeliveryAfterCommitError,
    EventCycleError,
    InvalidDocumentError,
    NoEffectHandlerError,
    PositionError,
    StoreClosedError,
    StoreOpenError,
    StoreReadError,
)
from ..resilience import Retry
from ..saga_events import SAGA_KIND, LogKind, SagaRecord, is_saga_event
from ..timeline import Timeline
from ..trace import EVENT, Attempt, Record, running
from ..views import short_repr
from .checkpoints import Checkpoints, StateCheckpoint, persisted_by
from .cipher import CIPHER_ENV_VAR, cipher_key_from_env, cipher_settings
from .outbox import Outbox, Performer, check_effects, outbox_entry
from .postgres import creation_lock
from .postgres import listen_connection as open_listen_connection
from .sqlite_guard import check_sqlite_file
from .topics import AllowListMapper, is_registered_topic, register_topic
from .urls import DEFAULT_URL, ENV_VAR, is_postgres, persistence_settings, redact_url
from .versions import ChangedDocument, TableReads, table_reads

if TYPE_CHECKING:
    from eventsourcing.domain import DomainEventProtocol
    from eventsourcing.persistence import Notification
    from psycopg import Connection

__all__ = [
    "DOCUMENT_ID_NAMESPACE",
    "StoredEventsView",
    "TemporalStore",
    "derived_document_id",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

_INDEX_PAGE = 500
_TRACKING_ATTEMPTS = 3
_TRACKING_RETRY_SECONDS = 0.05
_BACKOFF_FIRST, _BACKOFF_MOST = 0.002, 0.05  # seconds: the first retry's cap, every one's


DOCUMENT_ID_NAMESPACE = UUID("5d0c6a8e-2f4b-5e7a-9c1d-3b8f0a6e4c21")
"""The ``uuid5`` namespace of the document ids derived inside a delivery. Fixed for good:
changing it would give replayed creations other ids than the recorded ones."""

# The records under delivery that created documents, by id(record), each with how many it
# created and the threads that created some under it. Process-wide, not per thread: work a
# handler hands to another thread with contextvars.copy_context() is delivering the same
# record (trace.RUNNING), and must not derive the ids its handler derives. A thread forgets
# a record once it no longer delivers it; the entry goes when no thread delivers it, so a
# record delivered again (a dead letter retried: a new record) counts from 0 again.
_CREATIONS: dict[int, tuple[Record, list[int], set[int]]] = {}
_CREATIONS_LOCK = threading.Lock()


def derived_document_id() -> UUID | None:
    """The id of a document created now without a chosen one: inside a delivery,
    ``uuid5(DOCUMENT_ID_NAMESPACE, "<event id>/<n>")`` for the ``n``-th (from 0) creation
    while that event is being delivered (by any of its handlers, in their order, and by
    work they hand on with ``contextvars.copy_context()``), so that the same root events
    delivered again to the same handlers create the same ids; ``None`` outside any
    delivery (the document then gets a random uuid4). Each call counts one creation."""
    stack = running()
    if not stack:
        return None
    record = stack[-1]
    me = threading.get_ident()
    with _CREATIONS_LOCK:
        for key, (kept, _, threads) in list(_CREATIONS.items()):
            if me in threads and not any(r is kept for r in stack):
                threads.discard(me)
                if not threads:
                    del _CREATIONS[key]
        # The entry holds its record, so no other record can have its id meanwhile.
        entry = _CREATIONS.setdefault(id(record), (record, [0], set()))
        entry[2].add(me)
        ordinal = entry[1][0]
        entry[1][0] = ordinal + 1
    return uuid5(DOCUMENT_ID_NAMESPACE, f"{record[EVENT].id}/{ordinal}")


class Committed(NamedTuple):
    """A write the store committed: the document as saved, and its new event."""

    document: Document
    event: DocumentEvent
    outbox_entry: str | None
    """The id of the outbox entry saved with the write, if any."""
    positions: tuple[int, ...] = ()
    """The log positions of what the commit recorded (its event first)."""


class AfterCommit(NamedTuple):
    """What a write does after its commit, besides publishing: perform its outbox entry
    through ``performer`` (when given), then call ``then`` (when given)."""

    performer: Performer | None
    then: Callable[[], object] | None


_DOCUMENT_TOPICS = frozenset(topics(KINDS))

MAX_VERSION = 2**63 - 1
"""The largest version a store could hold (SQLite's INTEGER, PostgreSQL's bigint)."""


class _ClosedApplication:
    """What a closed store holds in place of its application: every use raises
    :class:`StoreClosedError`, but for what stays readable for inspection
    (``TemporalStore.recorder`` and ``snapshots``)."""

    def __init__(self, url: str, closed: _DocumentApplication) -> None:
        self._url = url
        self.closed_recorder = closed.recorder
        self.snapshots = closed.snapshots

    def __getattr__(self, name: str) -> Any:
        self.refuse()

    def refuse(self) -> NoReturn:
        """Raise the :class:`StoreClosedError` every use of a closed store raises."""
        raise StoreClosedError(
            f"The store {redact_url(self._url)} was closed; open a new "
            f"TemporalStore(url=...) to use it again."
        )


# The classes the store's rows may name: stored topics resolve to these and nothing else.
for _stored_class in (Document, Document.Created, Document.Updated, Document.Deleted, Snapshot):
    register_topic(_stored_class)

# Saga instances (atlas_eda.sagas) share the log: their rows are registered, and shown only
# to readers that ask for them (notifications(sagas=True), or kinds with "saga").
_SAGA_TOPICS = frozenset(
    register_topic(cls) for cls in (SagaRecord, SagaRecord.Started, SagaRecord.Changed)
)
_LOGGED_TOPICS = _DOCUMENT_TOPICS | _SAGA_TOPICS


class _DocumentApplication(Application[UUID]):
    """eventsourcing's application of the store's documents. Only the store holds it, so
    nothing can ``save`` behind the store's back (no checks, no bus notifications)."""

    # The settings' prefix and PostgreSQL's table names come from this name: it is the
    # one stores have always had.
    name = "TemporalStore"

    def __init__(self, env: Mapping[str, str]) -> None:
        try:
            super().__init__(env=dict(env))
        except BaseException:
            factory = getattr(self, "factory", None)
            if factory is not None:
                factory.close()  # a PostgreSQL pool would go on retrying in its threads
            raise

    def construct_mapper(self) -> Mapper[UUID]:
        """eventsourcing's mapper, resolving only the registered topics (never importing
        a module a stored row names)."""
        return self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=AllowListMapper
        )


class StoredEventsView:
    """Read-only access to one of eventsourcing's event stores (the store's events or
    its snapshots): :meth:`get` only, for inspection. ``reading`` turns the database's
    errors into the store's (a :class:`StoreReadError` naming the store)."""

    def __init__(
        self,
        events: EventStore[UUID],
        reading: Callable[[str], AbstractContextManager[None]] | None = None,
    ) -> None:
        self._events = events
        self._reading = reading

    def get(
        self,
        originator_id: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Iterator[DomainEventProtocol[UUID]]:
        """The decoded events of ``originator_id`` (versions above ``gt``, up to ``lte``),
        oldest first unless ``desc``, at most ``limit``: eventsourcing's ``EventStore.get``."""
        if self._reading is None:
            return self._events.get(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        with self._reading(f"the events of {originator_id}"):
            return self._events.get(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)


class TemporalStore:
    """Documents whose every version stays readable, persisted by eventsourcing.

    After each commit the store publishes ``DOCUMENT_CREATED``, ``DOCUMENT_UPDATED`` or
    ``DOCUMENT_DELETED`` on ``event_bus`` (when given). A snapshot is taken every
    ``snapshot_interval`` versions so old versions of long documents load quickly
    (``None`` or ``0`` turns snapshots off).

    ``cipher_key`` (default: ``ATLAS_EDA_CIPHER_KEY`` from the environment, else none)
    encrypts every stored event with eventsourcing's AES-GCM cipher; make one with
    :func:`create_cipher_key` (needs the ``crypto`` extra). A store written with a key
    opens only with that key (:class:`StoreOpenError` otherwise). A SQLite file that is
    not a store, truncated, or read-only is refused unmodified (:func:`check_sqlite_file`).
    A write that committed never raises as if it had failed: a failure after the commit
    (a bus subscriber under ``failure_policy="raise"``, a cycle, the caller's
    ``after_commit``) is raised as :class:`DeliveryAfterCommitError` carrying the committed
    result. Writes that lose a race with another writer raise :class:`ConcurrencyError`,
    nothing saved; the ``retries`` argument of each command retries them, waiting a random
    moment between attempts through ``sleep`` (default :func:`time.sleep`; tests pass
    their own so that nothing waits for real).
    """

    name: ClassVar[str] = _DocumentApplication.name
    """The name eventsourcing knows the store by (its settings' prefix, PostgreSQL's
    table names)."""

    env: ClassVar[dict[str, str]] = {}
    """Extra eventsourcing settings a subclass may give, keyed with the store's prefix
    (``{"TEMPORALSTORE_CREATE_TABLE": "n"}`` opens only a store that exists); the URL,
    snapshot and cipher settings the store derives win over them."""

    def __init__(
        self,
        event_bus: EventBus | None = None,
        *,
        url: str | None = None,
        snapshot_interval: int | None = 100,
        cipher_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if url is None:
            url = os.environ.get(ENV_VAR) or DEFAULT_URL
        _check_snapshot_interval(snapshot_interval)
        self.url = url
        self.event_bus = event_bus
        self.snapshot_interval = snapshot_interval or 0
        self._sleep = sleep
        self._index_lock = threading.Lock()
        self._known_ids: list[UUID] = []
        self._indexed_to = 0
        self._timeline: Timeline | None = None
        self._projections: list[Any] = []
        self._settings = self._eventsourcing_settings(cipher_key)
        try:
            with creation_lock(url, self._settings):
                self._application = _DocumentApplication(self._settings)
        except (PersistenceError, sqlite3.Error, OSError) as exc:
            raise StoreOpenError(_open_error_message(url, self._settings, exc)) from None
        self._outbox = Outbox(self._application)
        factory = self._application.factory
        creating = partial(creation_lock, url, self._settings)
        self._checkpoints = (
            Checkpoints(factory, self._application.mapper, creating)
            if persisted_by(factory)
            else None
        )
        mapper = self._application.mapper
        if isinstance(mapper, AllowListMapper):
            mapper.where = repr(redact_url(url))
        self._check_readable(cipher_key_from_env(cipher_key))
        logger.debug("opened store %s", redact_url(url))

    def _eventsourcing_settings(self, cipher_key: str | None) -> dict[str, str]:
        """Every setting eventsourcing is given, checked (URL, cipher key, SQLite file)."""
        settings = persistence_settings(self.url)
        settings.update(cipher_settings(self.url, cipher_key))
        if "SQLITE_DBNAME" in settings:
            check_sqlite_file(settings["SQLITE_DBNAME"], self.url)
        settings["IS_SNAPSHOTTING_ENABLED"] = "y" if self.snapshot_interval else "n"
        # eventsourcing reads os.environ too, and a key prefixed with the application's
        # name ("TEMPORALSTORE_...") would win over a plain one: prefix ours so that the
        # URL and snapshot_interval given here are the ones used.
        prefix = _DocumentApplication.name.upper() + "_"
        return {**type(self).env, **{prefix + key: value for key, value in settings.items()}}

    # -- commands ----------------------------------------------------------------------

    def create_document(
        self,
        title: str,
        content: str,
        author: str,
        *,
        document_id: str | None = None,
        retries: int = 0,
        effects: Sequence[Effect] = (),
        performer: Performer | None = None,
        after_commit: Callable[[], object] | None = None,
    ) -> str:
        """Create and persist a document (version 1); returns its id (in canonical form).

        The id is ``document_id`` when given (a str holding a UUID); else, inside a bus
        delivery, one derived from the event being delivered (see
        :func:`derived_document_id`: replaying the same events creates the same ids);
        else a random uuid4. Fields that cannot be stored, a ``document_id`` that is not
        a UUID string, and an id a document already has are refused with
        :class:`InvalidDocumentError`, nothing saved. A database locked by other writers
        past its timeout raises :class:`ConcurrencyError` (nothing saved) after
        ``retries`` further attempts. The event records its cause (see
        :class:`~atlas_eda.document.Document`).

        After the commit the bus event is published, then ``after_commit()`` is called
        (when given). If either fails, the write is still committed: the failure is raised
        as :class:`DeliveryAfterCommitError`, whose ``document_id``, ``version`` and
        ``result`` say what was committed (a retry must not write again)."""
        _check_retries(retries)
        check_text("title", title)
        check_text("content", content)
        check_text("author", author)
        chosen = _chosen_id(document_id)
        pending = check_effects(effects)
        key = chosen if chosen is not None else derived_document_id()
        cause = current_cause()

        def attempt() -> Committed:
            document = Document.create(title, content, author, document_id=key, cause=cause)
            return self._commit(document, pending, derived=chosen is None and key is not None)

        committed = self._retrying(None, "create", retries, attempt)
        document_id = committed.document.document_id
        self._after_commit(
            "create", committed, document_id, None, AfterCommit(performer, after_commit)
        )
        return document_id

    def update_document(
        self,
        document_id: str,
        title: str | None = None,
        content: str | None = None,
        editor: str | None = None,
        *,
        retries: int = 0,
        effects: Sequence[Effect] = (),
        performer: Performer | None = None,
        after_commit: Callable[[], object] | None = None,
    ) -> bool:
        """Persist a new version; ``None`` leaves a field unchanged. Returns ``False`` for
        an unknown id; raises :class:`DocumentDeletedError` for a deleted document.

        Concurrent writers are detected by eventsourcing's optimistic concurrency: when
        another writer saved a version first (or the database stays locked past its
        timeout) this raises :class:`ConcurrencyError` and saves nothing. With
        ``retries=N`` the document is read again and the change reapplied on top of the
        other writer's version, up to N more times. What fails after the commit (the bus,
        ``after_commit``) raises :class:`DeliveryAfterCommitError`, as for
        :meth:`create_document`.
        """
        _check_retries(retries)
        check_text("title", title, optional=True)
        check_text("content", content, optional=True)
        check_text("editor", editor, optional=True)
        pending = check_effects(effects)
        cause = current_cause()

        def attempt() -> Committed | None:
            document = self._load(document_id)
            if document is None:
                return None
            document.update(title=title, content=content, editor=editor, cause=cause)
            return self._commit(document, pending)

        committed = self._retrying(document_id, "update", retries, attempt)
        if committed is None:
            return False
        self._after_commit("update", committed, True, editor, AfterCommit(performer, after_commit))
        return True

    def delete_document(
        self,
        document_id: str,
        reason: str | None = None,
        *,
        retries: int = 0,
        effects: Sequence[Effect] = (),
        performer: Performer | None = None,
        after_commit: Callable[[], object] | None = None,
    ) -> bool:
        """Mark a document deleted (its versions stay readable). Returns ``False`` for an
        unknown id; raises :class:`DocumentDeletedError` if it is already deleted, and
        :class:`ConcurrencyError` (nothing saved) as :meth:`update_document` does, and
        :class:`DeliveryAfterCommitError` when what runs after the commit (the bus,
        ``after_commit``) fails."""
        _check_retries(retries)
        check_text("reason", reason, optional=True)
        pending = check_effects(effects)
        cause = current_cause()

        def attempt() -> Committed | None:
            document = self._load(document_id)
            if document is None:
                return None
            document.delete(reason=reason, cause=cause)
            return self._commit(document, pending)

        committed = self._retrying(document_id, "delete", retries, attempt)
        if committed is None:
            return False
        self._after_commit("delete", committed, True, None, AfterCommit(performer, after_commit))
        return True

    # -- queries -----------------------------------------------------------------------

    def get_document(self, document_id: str, version: int | None = None) -> Document | None:
        """The document as it is now, or as it was at ``version`` (1 = as created);
        ``None`` when there is no such document or no such version (one above the
        largest a database column holds, 2**63 - 1, included)."""
        if version is not None:
            if not is_int(version):
                raise TypeError(f"version must be an int, got {version!r}.")
            if version < 1:
                raise ValueError(f"Document versions start at 1, got {version}.")
            if version > MAX_VERSION:  # no database could store it: none such
                return None
        document = self._load(document_id, version)
        if document is None or (version is not None and document.version != version):
            return None
        return document

    def get_all_documents(self) -> list[Document]:
        """Every document that is not deleted, in creation order, at its latest version."""
        documents: list[Document] = []
        for aggregate_id in self._document_ids():
            document = self._load(aggregate_id)
            if document is not None and not document.is_deleted:
                documents.append(document)
        return documents

    def get_document_at(self, document_id: str, when: datetime) -> Document | None:
        """The document as it was at the moment ``when`` (an aware datetime): its last
        version recorded at or before then, or ``None`` if it did not exist yet."""
        if not isinstance(when, datetime):
            raise TypeError(f"when must be a datetime, got {type(when).__name__}.")
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                f"when must be timezone-aware (for example datetime.now(UTC)), got naive {when}."
            )
        key = as_uuid(document_id)
        if key is None:
            return None
        with self._reading(f"the events of document {key}"):
            stored_events = self._application.recorder.select_events(key)
            timestamps = [self.decode(stored).timestamp for stored in stored_events]
        version = bisect.bisect_right(timestamps, when)
        return self.get_document(str(key), version=version) if version else None

    def latest_version(self, document_id: str) -> int | None:
        """The version of the document's newest stored event (a deleted document's too),
        or ``None`` when no document has that id. Reads one row; decodes nothing."""
        key = as_uuid(document_id)
        if key is None:
            return None
        with self._reading(f"the newest event of document {key}"):
            newest = self._application.recorder.select_events(key, desc=True, limit=1)
        return newest[0].originator_version if newest else None

    def timeline(self, *, page_size: int | None = None) -> Timeline:
        """The store's global ordered log, for time travel (see :class:`Timeline`). The
        same object is returned each time, so its state checkpoints are built only once;
        a ``page_size`` gives a separate timeline that reads pages of that size."""
        if page_size is not None:
            return Timeline(self, page_size=page_size)
        with self._index_lock:
            if self._timeline is None:
                self._timeline = Timeline(self)
            return self._timeline

    def list_document_ids(self) -> list[str]:
        """The id of every document ever created here, deleted ones included, in creation
        order."""
        return [str(i) for i in self._document_ids()]

    def project(self, projection: Any) -> Callable[[], None]:
        """Keep ``projection`` (an :class:`atlas_eda.projections.Projection`) up to date in
        this process: it catches up now and after each commit of this store (no thread),
        its failures reported on this store's bus, never raised into the write. Returns
        the function that stops it."""
        if not callable(getattr(projection, "after_commit", None)):
            raise TypeError(
                f"store.project() takes an atlas_eda.projections.Projection, got "
                f"{type(projection).__name__}."
            )
        projection.catch_up(self)
        self._projections.append(projection)
        return lambda: self._projections.remove(projection)

    # -- the log: what timelines and followers read ------------------------------------

    def last_position(self) -> int:
        """The position of the newest event in the store's log (0: the store is empty).
        Positions are eventsourcing's notification ids: 1, 2, 3, ... in commit order."""
        with self._reading("the last position of the log"):
            return self._application.recorder.max_notification_id() or 0

    def notifications(
        self,
        start: int,
        limit: int,
        *,
        stop: int | None = None,
        kinds: Collection[LogKind] | None = None,
        sagas: bool = False,
    ) -> Sequence[Notification]:
        """At most ``limit`` stored events from position ``start`` on (included), in log
        order, up to position ``stop`` (included) when given, only those of ``kinds`` when
        given. Each is eventsourcing's ``Notification``: ``id`` is its position,
        ``originator_id`` and ``originator_version`` its document and version;
        :meth:`decode` gives the event it holds. Only document events are returned, and
        with ``sagas=True`` (or ``"saga"`` in ``kinds``) the versions of saga instances
        too (:meth:`decode_logged` decodes both): the records of the :attr:`outbox` share
        the log, so their positions are gaps here."""
        if kinds is not None and not kinds:
            return []
        recorder = self._application.recorder
        kept_topics = _LOGGED_TOPICS if sagas else _DOCUMENT_TOPICS
        with self._reading(f"the log from position {start}"):
            if kinds is not None:
                wanted = topics(k for k in kinds if k != SAGA_KIND)
                if SAGA_KIND in kinds:
                    wanted.extend(sorted(_SAGA_TOPICS))
                return recorder.select_notifications(
                    start=start, limit=limit, stop=stop, topics=wanted
                )
            # Read every topic, so that a row no atlas_eda class wrote is refused by
            # position rather than skipped unseen; drop the outbox's own rows. An empty
            # result still means the end of the log: a page of outbox rows only is read past.
            while True:
                page = recorder.select_notifications(start=start, limit=limit, stop=stop)
                kept = [n for n in page if n.topic in kept_topics]
                if len(kept) == len(page):
                    return page
                for notification in page:
                    if notification.topic not in kept_topics:
                        cast(AllowListMapper, self._application.mapper).check_topic(notification)
                if kept or len(page) < limit:
                    return kept
                start = page[-1].id + 1

    def decode(self, stored: StoredEvent) -> DocumentEvent:
        """The Document event a notification (or any stored event of this store) holds,
        decrypted and decoded by the store's own mapper. An event the store did not write
        (an unregistered topic, a state that cannot be decoded) is a
        :class:`CorruptStoreError` naming its position."""
        return as_document_event(self._application.mapper.to_domain_event(stored))

    def decode_logged(self, stored: StoredEvent) -> AggregateEvent:
        """As :meth:`decode`, but a saga instance's version is returned too (a
        ``SagaRecord`` event), for readers of ``notifications(sagas=True)``."""
        decoded = self._application.mapper.to_domain_event(stored)
        if is_saga_event(decoded):
            return cast(AggregateEvent, decoded)
        return as_document_event(decoded)

    # -- saga instances: what atlas_eda.sagas reads and writes --------------------------

    def save_saga(self, record: SagaRecord) -> None:
        """Save the pending versions of the saga instance ``record`` (one transaction).
        A version another writer saved first is a :class:`ConcurrencyError`, nothing
        saved."""
        try:
            self._attempt(str(record.id), lambda: self._application.save(record))
        except IntegrityError as exc:
            raise ConcurrencyError(
                f"Saga {record.id} was changed by another writer meanwhile (version "
                f"{record.version} already exists). Nothing was saved; handle the event "
                f"again to read the saga anew.",
                str(record.id),
            ) from exc

    def get_saga(self, saga_id: str | UUID, version: int | None = None) -> SagaRecord | None:
        """The saga instance ``saga_id`` now, or at ``version``; ``None`` when no saga has
        that id (a document's id included) or it has no such version."""
        key = as_uuid(saga_id)
        if key is None or (version is not None and not 1 <= version <= MAX_VERSION):
            return None
        try:
            with self._reading(f"saga {key}"):
                found: object = self.repository.get(key, version=version)
        except AggregateNotFoundError:
            return None
        if not isinstance(found, SagaRecord):
            return None
        return found if version is None or found.version == version else None

    def saga_ids(self) -> list[str]:
        """The id of every saga instance started in this store, in log order."""
        found: list[str] = []
        position = 1
        while True:
            page = self.notifications(position, _INDEX_PAGE, kinds=[SAGA_KIND])
            if not page:
                return found
            found.extend(str(n.originator_id) for n in page if n.originator_version == 1)
            position = page[-1].id + 1

    def copy_until(self, position: int, into: TemporalStore) -> None:
        """Write the events at positions 1 to ``position`` into the empty store ``into``,
        in one transaction (a failure leaves it empty), with their document ids, versions
        and timestamps; encoded by ``into``'s mapper, so its own cipher key applies. No bus
        event is published and no snapshot taken. Raises :class:`AtlasEdaError` when
        ``into`` already holds events, :class:`PositionError` for a position not in the log."""
        if not is_int(position):
            raise TypeError(f"A position must be an int, got {position!r}.")
        if not 0 <= position <= self.last_position():
            raise PositionError(
                f"Position {position} is not in the log of {self!r}: positions run from 0 to "
                f"{self.last_position()}."
            )
        if into.last_position():
            raise AtlasEdaError(
                f"Replay target {into!r} already holds events; replay into an empty store "
                f"(for instance 'memory://' or a new SQLite file)."
            )
        if position:
            stored = self.notifications(1, position, stop=position)
            into._application.events.put([self.decode(n) for n in stored])

    def changed_documents(self, after: int, upto: int) -> list[ChangedDocument] | None:
        """The documents with events at positions ``after + 1`` to ``upto``, in the order of
        their first event there, each with its newest version there (one query, see
        :mod:`atlas_eda.store.versions`); saga instances and outbox records are left out.
        ``None`` when this store is read by folding its log instead: a memory store, one
        with snapshots off or none taken, or a row there of a topic no atlas_eda class
        writes (the fold refuses it by position)."""
        reads = self._table_reads()
        if reads is None:
            return None
        with self._reading(f"the documents changed up to position {upto}"):
            if not reads.any_snapshot():
                return None
            changed = reads.changed(after, upto)
        if not all(is_registered_topic(document.topic) for document in changed):
            return None
        return [document for document in changed if document.topic in _DOCUMENT_TOPICS]

    def document_snapshots(
        self, wanted: Sequence[tuple[ChangedDocument, int]]
    ) -> dict[UUID, Document]:
        """For each ``(document, above)`` (``document`` from :meth:`changed_documents`):
        the document rebuilt from its newest snapshot of a version above ``above`` and at
        most ``document.version``, when it has one. Batched: one query per 300 documents."""
        reads = self._table_reads()
        if reads is None or not wanted:
            return {}
        with self._reading("the snapshots of the documents"):
            stored = reads.snapshots(wanted)
        found: dict[UUID, Document] = {}
        for row in stored:
            snapshot = self._application.mapper.to_domain_event(row)
            document = snapshot.mutate(None) if isinstance(snapshot, Snapshot) else None
            if not isinstance(document, Document):
                raise CorruptStoreError(
                    f"The snapshot of {row.originator_id} at version {row.originator_version} "
                    f"is not a document's: the store was changed by something other than "
                    f"atlas_eda; restore it from a backup.",
                    position=None,
                )
            found[document.id] = document
        return found

    def document_events(
        self, wanted: Sequence[tuple[ChangedDocument, int]]
    ) -> dict[UUID, list[DocumentEvent]]:
        """For each ``(document, above)`` (``document`` from :meth:`changed_documents`): its
        events of versions above ``above`` up to ``document.version``, decoded, oldest
        first. Batched: one query per 300 documents."""
        reads = self._table_reads()
        found: dict[UUID, list[DocumentEvent]] = {}
        if reads is None or not wanted:
            return found
        with self._reading("the events of the documents"):
            stored = reads.events(wanted)
        for row in stored:
            event = self.decode(row)
            found.setdefault(event.originator_id, []).append(event)
        for events in found.values():
            events.sort(key=_version)
        return found

    def state_checkpoint(self, upto: int, *, after: int = 0) -> StateCheckpoint | None:
        """The newest timeline checkpoint kept in this store's database (see
        :mod:`atlas_eda.store.checkpoints`) of a position in ``after + 1 .. upto``, or
        ``None``: always for a memory store, which keeps none."""
        checkpoints = self._open_checkpoints()
        if checkpoints is None:
            return None
        with self._reading(f"the timeline checkpoints up to position {upto}"):
            return checkpoints.latest(upto, after=after)

    def save_state_checkpoint(
        self, position: int, columns: Sequence[str], rows: list[list[Any]]
    ) -> bool:
        """Keep a timeline checkpoint: the documents' states right after ``position``, one
        row of ``columns`` values per document in creation order. ``False`` when it was not
        kept (a memory store; one of that position is kept already; the database refused,
        which is logged: a checkpoint only spares a later timeline its fold)."""
        checkpoints = self._open_checkpoints()
        return checkpoints is not None and checkpoints.save(position, columns, rows)

    def tracking_recorder(self) -> TrackingRecorder:
        """eventsourcing's tracking recorder in this store's database, its table created if
        need be: where followers record, by name, the position they have reached. Processes
        creating it at once collide (on SQLite both insert its migration marker): on
        PostgreSQL the store's creation lock serialises them, on SQLite the loser finds the
        table made and tries again."""
        for attempt in range(1, _TRACKING_ATTEMPTS + 1):
            try:
                with creation_lock(self.url, self._settings):
                    return self._application.factory.tracking_recorder()
            except IntegrityError:
                if attempt == _TRACKING_ATTEMPTS:
                    raise
                self._sleep(_TRACKING_RETRY_SECONDS)
        raise AssertionError("unreachable")  # pragma: no cover

    def listen_connection(self) -> Connection[Any] | None:
        """On PostgreSQL, a new connection that ``LISTEN``s on the channel each commit to
        this store ``NOTIFY``s (wait on it with
        :func:`atlas_eda.store.postgres.wait_for_notify`; the caller closes it); ``None``
        for SQLite and memory stores, which have no such channel."""
        return open_listen_connection(self._application.recorder)

    @property
    def outbox(self) -> Outbox:
        """The effects writes saved with ``effects=`` that are still to be performed
        (:meth:`Outbox.pending`, :meth:`Outbox.retry`, :meth:`Outbox.discard`)."""
        return self._outbox

    # -- eventsourcing's objects, for inspection ---------------------------------------

    @property
    def recorder(self) -> ApplicationRecorder:
        """eventsourcing's application recorder of this store (POPO, SQLite or PostgreSQL),
        for inspection: what is written through it bypasses the store's checks and bus.
        Still readable once the store is closed, but no longer usable."""
        application = self._application
        if isinstance(application, _ClosedApplication):
            return application.closed_recorder
        return application.recorder

    @property
    def mapper(self) -> Mapper[UUID]:
        """eventsourcing's mapper of this store (transcoder and cipher), for inspection."""
        return self._application.mapper

    @property
    def repository(self) -> Repository[UUID]:
        """eventsourcing's repository of this store: ``get(uuid, version=...)`` rebuilds a
        ``Document`` (from its nearest snapshot), for inspection and comparison."""
        return self._application.repository

    @property
    def events(self) -> StoredEventsView:
        """The stored document events, read-only (``events.get(uuid)``)."""
        return StoredEventsView(self._application.events, self._reading)

    @property
    def snapshots(self) -> StoredEventsView | None:
        """The stored snapshots, read-only (``snapshots.get(uuid)``); ``None`` when
        snapshots are off."""
        snapshots = self._application.snapshots
        return None if snapshots is None else StoredEventsView(snapshots, self._reading)

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Release the database connections (a PostgreSQL pool's threads included). The
        store is not usable afterwards: any use raises :class:`StoreClosedError` (closing
        again does nothing); what it stored stays."""
        application = self._application
        if isinstance(application, _ClosedApplication):
            return
        # Every use of the store goes through its application: a stand-in in its place
        # makes every later call raise the library's error, not eventsourcing's
        # ConnectionPoolClosedError (or, in memory, quietly work on a closed store).
        self._application = cast(_DocumentApplication, _ClosedApplication(self.url, application))
        application.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TemporalStore(url={redact_url(self.url)!r})"

    # -- internals ---------------------------------------------------------------------

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn the database's own errors while reading ``what`` into a
        :class:`StoreReadError` naming the store (a lock timeout is left as it is: the
        write paths retry it)."""
        try:
            yield
        except AtlasEdaError:
            raise
        except (PersistenceError, sqlite3.Error, UnicodeDecodeError) as exc:
            if isinstance(exc, OperationalError | sqlite3.OperationalError) and _is_lock_error(exc):
                raise
            raise StoreReadError(
                f"Could not read {what} from the store at {redact_url(self.url)!r}: "
                f"{_redacted(str(exc), self._settings)}. If the database is damaged, "
                f"restore it from a backup."
            ) from exc

    def _open_checkpoints(self) -> Checkpoints | None:
        application = self._application
        if isinstance(application, _ClosedApplication):
            application.refuse()
        return self._checkpoints

    def _table_reads(self) -> TableReads | None:
        snapshots = self._application.snapshots
        return table_reads(
            self._application.recorder, None if snapshots is None else snapshots.recorder
        )

    def _load(self, document_id: str | UUID, version: int | None = None) -> Document | None:
        key = as_uuid(document_id)
        if key is None:
            return None
        try:
            with self._reading(f"document {key}"):
                document: object = self.repository.get(
                    key, version=version, projector_func=_project
                )
        except AggregateNotFoundError:
            return None
        return document if isinstance(document, Document) else None

    def _commit(
        self, document: Document, effects: Sequence[Effect] = (), *, derived: bool = False
    ) -> Committed:
        """Save the document's one new event, and the outbox entry of ``effects`` (if any)
        in the same transaction; returns the event (as committed) with the document and
        the entry's id. A creation whose id is taken is refused (``derived``: the id was
        derived in a delivery)."""
        [pending] = document.collect_events()
        entry = outbox_entry(document.document_id, document.version, effects) if effects else None
        try:
            if entry is None:
                recordings = self._application.save(pending)
            else:
                recordings = self._application.save(pending, *entry.collect_events())
        except IntegrityError as exc:
            if document.version == Document.INITIAL_VERSION:
                raise _id_taken(document.document_id, derived=derived) from exc
            raise ConcurrencyError(
                f"Document {document.document_id} was changed by another writer while this "
                f"change was being made: version {document.version} already exists. Nothing "
                f"was saved; read the document again and retry (or pass retries=N).",
                document.document_id,
            ) from exc
        if self.snapshot_interval and document.version % self.snapshot_interval == 0:
            self._snapshot(document)
        entry_id = None if entry is None else str(entry.id)
        positions = tuple(r.notification.id for r in recordings)
        return Committed(document, as_document_event(pending), entry_id, positions)

    def _snapshot(self, document: Document) -> None:
        try:
            self._application.take_snapshot(
                document.id, version=document.version, projector_func=_project
            )
        except (PersistenceError, sqlite3.Error) as exc:
            # The version is committed: a missing snapshot only makes reads of this
            # document slower, so the write must not be reported as failed.
            logger.warning(
                "could not take the snapshot of %s at version %d: %s",
                document.document_id,
                document.version,
                exc,
            )

    def _retrying(
        self, document_id: str | None, action: str, retries: int, attempt: Callable[[], T]
    ) -> T:
        """Run ``attempt`` (read, change, commit), retrying it up to ``retries`` times
        when it loses a race; a database locked past its timeout counts as a lost race.
        The policy is a :class:`~atlas_eda.resilience.Retry`: between attempts it sleeps a
        random moment below a cap that doubles each time (tenacity's full jitter)."""
        policy = Retry(
            retries + 1,
            backoff=_BACKOFF_FIRST,
            max_wait=_BACKOFF_MOST,
            jitter=True,
            retry_on=ConcurrencyError,
            sleep=self._sleep,
        )

        def retrying(tried: Attempt) -> None:
            logger.debug("retrying %s of %s after: %s", action, document_id, tried.error)

        try:
            committed: T = policy.call(self._attempt, document_id, attempt, on_retry=retrying)
        except ConcurrencyError as exc:
            if not retries:
                raise
            raise ConcurrencyError(
                f"Could not {action} document {document_id or '(new)'} after "
                f"{retries + 1} attempts: {exc}",
                document_id,
            ) from exc
        return committed

    def _attempt(self, document_id: str | None, attempt: Callable[[], T]) -> T:
        """``attempt()``, with a database locked past its timeout as a
        :class:`ConcurrencyError`."""
        try:
            return attempt()
        except (OperationalError, sqlite3.OperationalError) as exc:
            if not _is_lock_error(exc):
                raise
            raise ConcurrencyError(
                f"The database of {redact_url(self.url)!r} stayed locked by other writers "
                f"past its lock timeout ({exc}). Nothing was saved; retry (or pass "
                f"retries=N).",
                document_id,
            ) from exc

    def _check_readable(self, cipher_key: str | None) -> None:
        """Decode the store's first event, so that a wrong or missing cipher key is
        refused now rather than at the first read."""
        try:
            first = self._first_stored_event()
            if first is not None:
                self._application.mapper.to_domain_event(first)
        except CorruptStoreError as exc:
            self.close()
            cause = exc.__cause__
            if not isinstance(cause, MapperDeserialisationError):
                raise StoreOpenError(str(exc)) from None
            given = "no cipher key was given" if cipher_key is None else "a cipher key was given"
            raise StoreOpenError(
                f"Could not read the store at {redact_url(self.url)!r}: {given}, and its "
                f"events cannot be decoded with it ({cause}). The store was written with a "
                f"different key, or with encryption when none is given now (or the "
                f"reverse): pass the cipher_key it was written with (or set {CIPHER_ENV_VAR})."
            ) from None
        except (PersistenceError, sqlite3.Error) as exc:
            self.close()
            raise StoreOpenError(
                f"Could not read the store at {redact_url(self.url)!r}: {exc}. Check that the "
                f"file is an intact atlas_eda store."
            ) from exc

    def _first_stored_event(self) -> StoredEvent | None:
        """The SQLite file's first stored event, as stored (``None`` elsewhere: a memory
        store starts empty, and a PostgreSQL store is checked when it is read)."""
        recorder = self.recorder
        if not isinstance(recorder, SQLiteApplicationRecorder):
            return None
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT * FROM {recorder.events_table_name} ORDER BY rowid LIMIT 1")
            row = cursor.fetchone()
        if row is None:
            return None
        return StoredEvent(
            originator_id=recorder.convert_originator_id(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=row["state"],
        )

    def _after_commit(
        self,
        action: str,
        committed: Committed,
        result: object,
        editor: str | None,
        steps: AfterCommit,
    ) -> None:
        """Publish the committed event on the bus, perform its outbox entry (when a
        performer is given) and call ``steps.then``: each runs even when one before it
        failed. The write is durable by now, so the first failure is raised as
        :class:`DeliveryAfterCommitError` carrying the committed result (the others are
        logged); inside a delivery an :class:`EventCycleError` or
        :class:`NoEffectHandlerError` passes unchanged, so that it reaches the outermost
        publisher (the outermost store write, if any, then wraps it)."""
        failures: list[Exception] = []
        for step in self._after_commit_steps(committed, editor, steps):
            try:
                step()
            except Exception as exc:  # the write committed: never report it as failed
                failures.append(exc)
        if not failures:
            return
        first, *others = failures
        for other in others:
            logger.error("after the %s of %s, also: %r", action, committed.event, other)
        if isinstance(first, (EventCycleError, NoEffectHandlerError)) and running():
            raise first
        raise _after_commit_error(action, committed, result, first) from first

    def _after_commit_steps(
        self, committed: Committed, editor: str | None, steps: AfterCommit
    ) -> list[Callable[[], object]]:
        bus, entry, performer = self.event_bus, committed.outbox_entry, steps.performer
        todo: list[Callable[[], object]] = []
        if bus is not None:
            event_type, data = live_bus_event(committed.event, editor=editor)
            todo.append(lambda: bus.publish(event_type, data, source="atlas_eda.store"))
        if entry is not None and performer is not None:
            todo.append(lambda: self._outbox.perform(entry, performer))
        todo.extend(
            partial(projection.after_commit, self, committed.event, committed.positions)
            for projection in self._projections
        )
        if steps.then is not None:
            todo.append(steps.then)
        return todo

    def _document_ids(self) -> list[UUID]:
        # The log is the global order of every stored event; scanning only creations
        # past the last position seen keeps this incremental, and picks up documents
        # created by other processes sharing the database.
        with self._index_lock:
            while True:
                page = self.notifications(self._indexed_to + 1, _INDEX_PAGE, kinds=["created"])
                if not page:
                    break
                self._known_ids.extend(UUID(str(n.originator_id)) for n in page)
                self._indexed_to = page[-1].id
            return list(self._known_ids)


def _redacted(text: str, settings: Mapping[str, str]) -> str:
    """``text`` without the store's PostgreSQL password (a driver may quote it)."""
    password = next((v for k, v in settings.items() if k.endswith("POSTGRES_PASSWORD")), "")
    return text.replace(password, "***") if password else text


def _open_error_message(url: str, settings: Mapping[str, str], exc: BaseException) -> str:
    """Why the store could not be opened, and what to do; never the password."""
    reason = _redacted(str(exc), settings)
    if not is_postgres(url):
        return (
            f"Could not open the store at {url!r}: {reason}. Check that the file is an "
            f"atlas_eda SQLite store and that its directory is writable."
        )
    timeout = next(v for k, v in settings.items() if k.endswith("POSTGRES_CONNECT_TIMEOUT"))
    return (
        f"Could not open the PostgreSQL store at {redact_url(url)!r}: {reason}. Check that "
        f"the server is running and reachable at that host and port (waited {timeout}s; "
        f"'?connect_timeout=N' changes that), that the user, password and database are "
        f"right, and that the schema, if one is given, exists (CREATE SCHEMA name)."
    )


def _after_commit_error(
    action: str, committed: Committed, result: object, failure: Exception
) -> DeliveryAfterCommitError:
    """The error of a committed write whose after-commit step raised ``failure``."""
    document = committed.document
    return DeliveryAfterCommitError(
        f"The {action} of document {document.document_id} was committed (version "
        f"{document.version}), but what ran after the commit failed: "
        f"{type(failure).__name__}: {failure}. Do not retry the write: it is durable; "
        f"the error's document_id, version and result say what was committed.",
        document_id=document.document_id,
        version=document.version,
        result=result,
        document=document,
    )


def _chosen_id(document_id: object) -> UUID | None:
    """The UUID a caller chose for a new document (``None``: none chosen)."""
    if document_id is None:
        return None
    if not isinstance(document_id, str):
        raise InvalidDocumentError(
            f"document_id must be a str holding a UUID (or None for an id made by the "
            f"store), got {type(document_id).__name__} ({short_repr(document_id)}); nothing "
            f"was saved. Pass str(uuid).",
            "document_id",
        )
    try:
        return UUID(document_id)
    except ValueError:
        raise InvalidDocumentError(
            f"document_id {short_repr(document_id)} is not a UUID (expected a form like "
            f"'12345678-1234-5678-1234-567812345678'); nothing was saved.",
            "document_id",
        ) from None


def _id_taken(document_id: str, *, derived: bool) -> InvalidDocumentError:
    if derived:
        how = (
            "its id was derived from the bus event being delivered, which already created "
            "it: the same event was delivered again to this store (replay into an empty "
            "store, or pass document_id= to choose another id)"
        )
    else:
        how = "choose another document_id, or update the existing document"
    return InvalidDocumentError(
        f"A document with id {document_id} already exists; nothing was saved: {how}.",
        "document_id",
    )


def _check_snapshot_interval(snapshot_interval: int | None) -> None:
    if snapshot_interval is not None and (not is_int(snapshot_interval) or snapshot_interval < 0):
        raise ValueError(
            f"snapshot_interval must be a positive int, or 0/None to disable snapshots; "
            f"got {snapshot_interval!r}."
        )


def _is_lock_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionUnavailableError):
        return True
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _check_retries(retries: int) -> None:
    check_count("retries", retries, type_error=ValueError)


def _version(event: DocumentEvent) -> int:
    return event.originator_version


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """eventsourcing's ``project_aggregate`` without its per-event protocol assert, which
    costs more than decoding the event on Python 3.11; every event here is a Document's."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate
