"""TemporalStore: versioned documents persisted through eventsourcing, addressed by URL.

``memory://`` keeps events in memory (eventsourcing's POPO recorders); ``sqlite:///path``
is a durable file (eventsourcing's SQLite recorders; three slashes and a relative path,
four slashes for an absolute one, as in SQLAlchemy);
``postgresql://user:password@host:port/database`` is a PostgreSQL server (eventsourcing's
PostgreSQL recorders; install the ``postgres`` extra), with optional query parameters
``schema`` (an existing schema; default ``public``), ``pool_size`` (connections kept
open, default 5), ``max_overflow`` (extra connections under load, default 10),
``connect_timeout`` (seconds, default 5) and ``lock_timeout`` (seconds, 0 = none).
``ATLAS_EDA_STORE_URL`` supplies the URL when none is given.

Reliability (see docs/reliability.md): a SQLite file is inspected before eventsourcing
touches it (:func:`check_sqlite_file`), so a foreign, truncated or read-only file is
refused unmodified; a write that loses a race raises :class:`ConcurrencyError` with
nothing saved (``retries=N`` re-reads and retries); ``cipher_key`` (or
``ATLAS_EDA_CIPHER_KEY``) encrypts every stored event with eventsourcing's AES cipher.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import importlib.util
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    ConnectionUnavailableError,
    IntegrityError,
    MapperDeserialisationError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic

from .bus import EventBus
from .document import Document, check_text
from .errors import ConcurrencyError, StoreOpenError, StoreURLError
from .events import EventType
from .timeline import Timeline

__all__ = [
    "CIPHER_ENV_VAR",
    "DEFAULT_URL",
    "ENV_VAR",
    "TemporalStore",
    "check_sqlite_file",
    "create_cipher_key",
    "persistence_settings",
    "redact_url",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

ENV_VAR = "ATLAS_EDA_STORE_URL"
"""The environment variable that supplies the store URL when none is passed."""

DEFAULT_URL = "memory://"
"""The store used when neither a URL nor ``ATLAS_EDA_STORE_URL`` is given."""

CIPHER_ENV_VAR = "ATLAS_EDA_CIPHER_KEY"
"""The environment variable that supplies the cipher key when none is passed."""

_SQLITE_PREFIX = "sqlite:///"


def persistence_settings(url: str) -> dict[str, str]:
    """The eventsourcing environment settings for a store URL; raises
    :class:`StoreURLError` for a URL no store can be made from, before anything is created."""
    if not isinstance(url, str):
        raise StoreURLError(f"A store URL must be a str, got {type(url).__name__}.")
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise StoreURLError(
            f"{redact_url(url)!r} is not a store URL: expected 'memory://', "
            f"'sqlite:///path/to/file.db' or 'postgresql://user:password@host:port/database'."
        )
    scheme = scheme.lower()
    if scheme == "memory":
        if url[len("memory://") :]:
            raise StoreURLError(f"{url!r}: a memory store takes no path; use 'memory://'.")
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if scheme == "sqlite":
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": _sqlite_path(url)}
    if scheme in ("postgresql", "postgres"):
        return _postgres_settings(url)
    raise StoreURLError(
        f"{redact_url(url)!r} has an unknown scheme {scheme!r}: use 'memory://' (in memory), "
        f"'sqlite:///path/to/file.db' (a durable SQLite file) or "
        f"'postgresql://user:password@host:port/database' (a PostgreSQL server)."
    )


_POSTGRES_QUERY: dict[str, tuple[str, int | None]] = {
    # URL query key: (eventsourcing setting, smallest int allowed or None for text)
    "pool_size": ("POSTGRES_POOL_SIZE", 1),
    "max_overflow": ("POSTGRES_MAX_OVERFLOW", 0),
    "connect_timeout": ("POSTGRES_CONNECT_TIMEOUT", 1),
    "lock_timeout": ("POSTGRES_LOCK_TIMEOUT", 0),
    "schema": ("POSTGRES_SCHEMA", None),
}
# Every PostgreSQL setting is given explicitly, so none comes from os.environ.
_POSTGRES_DEFAULTS = {
    "POSTGRES_POOL_SIZE": "5",
    "POSTGRES_MAX_OVERFLOW": "10",
    "POSTGRES_CONNECT_TIMEOUT": "5",
    "POSTGRES_LOCK_TIMEOUT": "0",
    "POSTGRES_SCHEMA": "",
    "POSTGRES_GET_PASSWORD_TOPIC": "",
    "POSTGRES_PRE_PING": "y",
    "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
}


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``: safe for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{host}{slash}{tail}"


def _postgres_settings(url: str) -> dict[str, str]:
    shown = redact_url(url)
    expected = "expected 'postgresql://user:password@host:port/database?schema=...&pool_size=...'"
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError as exc:
        raise StoreURLError(
            f"{shown!r} is not a valid PostgreSQL URL ({exc}): {expected}."
        ) from None
    if parts.fragment:
        raise StoreURLError(f"{shown!r}: a PostgreSQL URL takes no '#fragment'; {expected}.")
    if not parts.hostname:
        raise StoreURLError(f"{shown!r} names no host: {expected}.")
    if parts.username is None or not unquote(parts.username):
        raise StoreURLError(f"{shown!r} names no user: {expected}.")
    database = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not database or "/" in database:
        raise StoreURLError(f"{shown!r} must name exactly one database after the host: {expected}.")
    settings = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        **_POSTGRES_DEFAULTS,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(port),
        "POSTGRES_USER": unquote(parts.username),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_DBNAME": database,
    }
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise StoreURLError(
            f"{shown!r}: the query {parts.query!r} is not 'key=value&key=value'."
        ) from None
    seen: set[str] = set()
    for key, value in query:
        if key not in _POSTGRES_QUERY:
            raise StoreURLError(
                f"{shown!r}: unknown query parameter {key!r}; the ones understood are "
                f"{', '.join(sorted(_POSTGRES_QUERY))}."
            )
        if key in seen:
            raise StoreURLError(f"{shown!r}: query parameter {key!r} is given twice.")
        seen.add(key)
        setting, minimum = _POSTGRES_QUERY[key]
        if minimum is None:
            if not value or len(value.encode()) > 63 or "\x00" in value:
                raise StoreURLError(
                    f"{shown!r}: {key} must be a PostgreSQL identifier of 1 to 63 bytes, "
                    f"got {value!r}."
                )
        elif not value.isascii() or not value.isdigit() or int(value) < minimum:
            raise StoreURLError(
                f"{shown!r}: {key} must be an integer of at least {minimum}, got {value!r}."
            )
        settings[setting] = value
    return settings


def _sqlite_path(url: str) -> str:
    if not url.lower().startswith(_SQLITE_PREFIX):
        raise StoreURLError(
            f"{url!r}: a SQLite URL has three slashes before the path: "
            f"'sqlite:///relative/file.db' or 'sqlite:////absolute/file.db'."
        )
    raw = url[len(_SQLITE_PREFIX) :]
    if not raw:
        raise StoreURLError(f"{url!r} names no file: use 'sqlite:///path/to/file.db'.")
    if "\x00" in raw:
        raise StoreURLError(f"{url!r}: a file path cannot contain a NUL character.")
    if raw == ":memory:" or raw.startswith("file:"):
        return raw
    path = Path(raw)
    directory = path.parent.absolute()
    if not directory.exists():
        raise StoreURLError(
            f"{url!r}: directory {str(directory)!r} does not exist; create it first or choose "
            f"another path (three slashes mean a path relative to {os.getcwd()!r}, four an "
            f"absolute one)."
        )
    if not directory.is_dir():
        raise StoreURLError(f"{url!r}: {str(directory)!r} is not a directory.")
    if path.is_dir():
        raise StoreURLError(f"{url!r}: {str(path)!r} is a directory, not a database file.")
    return str(path)


class TemporalStore(Application[UUID]):
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
    Writes that lose a race with another writer raise :class:`ConcurrencyError`, nothing
    saved; the ``retries`` argument of each command retries them.
    """

    name = "TemporalStore"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # eventsourcing names each Application subclass after itself and reads settings
        # under that name; a subclass of the store is still the same store.
        super().__init_subclass__(**kwargs)
        cls.name = TemporalStore.name

    def __init__(
        self,
        event_bus: EventBus | None = None,
        *,
        url: str | None = None,
        snapshot_interval: int | None = 100,
        cipher_key: str | None = None,
    ) -> None:
        if url is None:
            url = os.environ.get(ENV_VAR) or DEFAULT_URL
        if snapshot_interval is not None and (
            isinstance(snapshot_interval, bool)
            or not isinstance(snapshot_interval, int)
            or snapshot_interval < 0
        ):
            raise ValueError(
                f"snapshot_interval must be a positive int, or 0/None to disable snapshots; "
                f"got {snapshot_interval!r}."
            )
        settings = persistence_settings(url)
        settings.update(_cipher_settings(url, cipher_key))
        if "SQLITE_DBNAME" in settings:
            check_sqlite_file(settings["SQLITE_DBNAME"], url)
        self.url = url
        self.event_bus = event_bus
        self.snapshot_interval = snapshot_interval or 0
        settings["IS_SNAPSHOTTING_ENABLED"] = "y" if self.snapshot_interval else "n"
        # eventsourcing reads os.environ too, and a key prefixed with the application's
        # name ("TEMPORALSTORE_...") would win over a plain one: prefix ours so that the
        # URL and snapshot_interval given here are the ones used.
        prefix = self.name.upper() + "_"
        settings = {prefix + key: value for key, value in settings.items()}
        self._index_lock = threading.Lock()
        self._known_ids: list[UUID] = []
        self._indexed_to = 0
        self._timeline: Timeline | None = None
        try:
            with _creation_lock(url, settings):
                super().__init__(env=settings)
        except (PersistenceError, sqlite3.Error, OSError) as exc:
            factory = getattr(self, "factory", None)
            if factory is not None:
                factory.close()  # a PostgreSQL pool would go on retrying in its threads
            raise StoreOpenError(_open_error_message(url, settings, exc)) from None
        self._check_readable(cipher_key or os.environ.get(CIPHER_ENV_VAR) or None)
        logger.debug("opened store %s", redact_url(url))

    # -- commands ----------------------------------------------------------------------

    def create_document(self, title: str, content: str, author: str, *, retries: int = 0) -> str:
        """Create and persist a document (version 1); returns its id. Fields that cannot
        be stored are refused with :class:`InvalidDocumentError` before anything is saved.
        A database locked by other writers past its timeout raises
        :class:`ConcurrencyError` (nothing saved) after ``retries`` further attempts."""
        _check_retries(retries)
        check_text("title", title)
        check_text("content", content)
        check_text("author", author)

        def attempt() -> Document:
            document = Document(title=title, content=content, author=author)
            self._commit(document)
            return document

        document = self._retrying(None, "create", retries, attempt)
        self._notify_bus(
            EventType.DOCUMENT_CREATED,
            {"id": document.document_id, "title": title, "author": author, "version": 1},
        )
        return document.document_id

    def update_document(
        self,
        document_id: str,
        title: str | None = None,
        content: str | None = None,
        editor: str | None = None,
        *,
        retries: int = 0,
    ) -> bool:
        """Persist a new version; ``None`` leaves a field unchanged. Returns ``False`` for
        an unknown id; raises :class:`DocumentDeletedError` for a deleted document.

        Concurrent writers are detected by eventsourcing's optimistic concurrency: when
        another writer saved a version first (or the database stays locked past its
        timeout) this raises :class:`ConcurrencyError` and saves nothing. With
        ``retries=N`` the document is read again and the change reapplied on top of the
        other writer's version, up to ``N`` more times, with a short random back-off."""
        _check_retries(retries)
        check_text("title", title, optional=True)
        check_text("content", content, optional=True)
        check_text("editor", editor, optional=True)

        def attempt() -> Document | None:
            document = self._load(document_id)
            if document is None:
                return None
            document.update(title=title, content=content, editor=editor)
            self._commit(document)
            return document

        document = self._retrying(document_id, "update", retries, attempt)
        if document is None:
            return False
        self._notify_bus(
            EventType.DOCUMENT_UPDATED,
            {
                "id": document.document_id,
                "title": title,
                "editor": editor,
                "version": document.version,
            },
        )
        return True

    def delete_document(
        self, document_id: str, reason: str | None = None, *, retries: int = 0
    ) -> bool:
        """Mark a document deleted (its versions stay readable). Returns ``False`` for an
        unknown id; raises :class:`DocumentDeletedError` if it is already deleted, and
        :class:`ConcurrencyError` (nothing saved) as :meth:`update_document` does."""
        _check_retries(retries)
        check_text("reason", reason, optional=True)

        def attempt() -> Document | None:
            document = self._load(document_id)
            if document is None:
                return None
            document.delete(reason=reason)
            self._commit(document)
            return document

        document = self._retrying(document_id, "delete", retries, attempt)
        if document is None:
            return False
        self._notify_bus(
            EventType.DOCUMENT_DELETED,
            {"id": document.document_id, "reason": reason, "version": document.version},
        )
        return True

    # -- queries -----------------------------------------------------------------------

    def get_document(self, document_id: str, version: int | None = None) -> Document | None:
        """The document as it is now, or as it was at ``version`` (1 = as created);
        ``None`` when there is no such document or no such version."""
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int):
                raise TypeError(f"version must be an int, got {version!r}.")
            if version < 1:
                raise ValueError(f"Document versions start at 1, got {version}.")
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
        key = _uuid_or_none(document_id)
        if key is None:
            return None
        timestamps: list[datetime] = [
            getattr(self.mapper.to_domain_event(stored), "timestamp")  # noqa: B009
            for stored in self.recorder.select_events(key)
        ]
        version = bisect.bisect_right(timestamps, when)
        return self.get_document(str(key), version=version) if version else None

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

    # -- internals ---------------------------------------------------------------------

    def _load(self, document_id: str | UUID, version: int | None = None) -> Document | None:
        key = _uuid_or_none(document_id)
        if key is None:
            return None
        try:
            document: object = self.repository.get(key, version=version, projector_func=_project)
        except AggregateNotFoundError:
            return None
        return document if isinstance(document, Document) else None

    def _commit(self, document: Document) -> None:
        try:
            self.save(document)
        except IntegrityError as exc:
            raise ConcurrencyError(
                f"Document {document.document_id} was changed by another writer while this "
                f"change was being made: version {document.version} already exists. Nothing "
                f"was saved; read the document again and retry (or pass retries=N).",
                document.document_id,
            ) from exc
        if self.snapshot_interval and document.version % self.snapshot_interval == 0:
            try:
                self.take_snapshot(document.id, version=document.version, projector_func=_project)
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
        when it loses a race; a database locked past its timeout counts as a lost race."""
        tries = 0
        while True:
            try:
                try:
                    return attempt()
                except (OperationalError, sqlite3.OperationalError) as exc:
                    if not _is_lock_error(exc):
                        raise
                    raise ConcurrencyError(
                        f"The database of {redact_url(self.url)!r} stayed locked by other "
                        f"writers past its lock timeout ({exc}). Nothing was saved; retry (or "
                        f"pass retries=N).",
                        document_id,
                    ) from exc
            except ConcurrencyError as exc:
                if tries >= retries:
                    if retries:
                        raise ConcurrencyError(
                            f"Could not {action} document {document_id or '(new)'} after "
                            f"{tries + 1} attempts: {exc}",
                            document_id,
                        ) from exc
                    raise
                logger.debug("retrying %s of %s after: %s", action, document_id, exc)
                time.sleep(random.uniform(0, min(0.05, 0.002 * 2**tries)))
                tries += 1

    def _check_readable(self, cipher_key: str | None) -> None:
        """Decode the store's first event, so that a wrong or missing cipher key is
        refused now rather than at the first read."""
        recorder = self.recorder
        if not isinstance(recorder, SQLiteApplicationRecorder):
            return  # a memory store starts empty
        try:
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(f"SELECT * FROM {recorder.events_table_name} ORDER BY rowid LIMIT 1")
                row = cursor.fetchone()
            if row is not None:
                self.mapper.to_domain_event(
                    StoredEvent(
                        originator_id=recorder.convert_originator_id(row["originator_id"]),
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=row["state"],
                    )
                )
        except MapperDeserialisationError as exc:
            self.close()
            given = "no cipher key was given" if cipher_key is None else "a cipher key was given"
            raise StoreOpenError(
                f"Could not read the store at {redact_url(self.url)!r}: {given}, and its "
                f"events cannot be decoded with it ({exc}). The store was written with a "
                f"different key, or with encryption when none is given now (or the "
                f"reverse): pass the cipher_key it was written with (or set {CIPHER_ENV_VAR})."
            ) from None
        except (PersistenceError, sqlite3.Error) as exc:
            self.close()
            raise StoreOpenError(
                f"Could not read the store at {redact_url(self.url)!r}: {exc}. Check that the "
                f"file is an intact atlas_eda store."
            ) from exc

    def _notify_bus(self, event_type: EventType, data: Mapping[str, Any]) -> None:
        if self.event_bus is not None:
            self.event_bus.publish(event_type, dict(data), source="atlas_eda.store")

    def _document_ids(self) -> list[UUID]:
        # The notification log is the global order of every stored event; scanning only
        # creations past the last position seen keeps this incremental, and picks up
        # documents created by other processes sharing the database.
        topic = get_topic(Document.Created)
        with self._index_lock:
            while True:
                page = self.recorder.select_notifications(
                    start=self._indexed_to,
                    limit=500,
                    topics=[topic],
                    inclusive_of_start=False,
                )
                if not page:
                    break
                self._known_ids.extend(UUID(str(n.originator_id)) for n in page)
                self._indexed_to = page[-1].id
            return list(self._known_ids)

    def __repr__(self) -> str:
        return f"TemporalStore(url={redact_url(self.url)!r})"


def _open_error_message(url: str, settings: Mapping[str, str], exc: BaseException) -> str:
    """Why the store could not be opened, and what to do; never the password."""
    reason = str(exc)
    password = next((v for k, v in settings.items() if k.endswith("POSTGRES_PASSWORD")), "")
    if password:
        reason = reason.replace(password, "***")
    if not url.lower().startswith(("postgresql:", "postgres:")):
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


def create_cipher_key() -> str:
    """A new random AES-256 key, base64-encoded, for ``TemporalStore(cipher_key=...)`` or
    ``ATLAS_EDA_CIPHER_KEY``. Keep it safe: a store cannot be read without it. Needs the
    ``crypto`` extra (``pip install atlas_eda[crypto]``)."""
    _require_crypto()
    from eventsourcing.cipher import AESCipher  # noqa: PLC0415  (optional dependency)

    return AESCipher.create_key(32)


def _require_crypto() -> None:
    if importlib.util.find_spec("Crypto") is None:
        raise StoreOpenError(
            "Encryption at rest needs pycryptodome: install atlas_eda with its crypto extra "
            "(pip install 'atlas_eda[crypto]')."
        )


def _cipher_settings(url: str, cipher_key: str | None) -> dict[str, str]:
    """eventsourcing's cipher settings for ``cipher_key`` (or ``ATLAS_EDA_CIPHER_KEY``).
    Without a key they are set empty, so eventsourcing's own ``CIPHER_KEY`` or
    ``CIPHER_TOPIC`` in the environment cannot turn a cipher on behind the store's back."""
    if cipher_key is None:
        cipher_key = os.environ.get(CIPHER_ENV_VAR) or None
    if cipher_key is None:
        return {"CIPHER_TOPIC": "", "CIPHER_KEY": "", "COMPRESSOR_TOPIC": ""}
    if not isinstance(cipher_key, str):
        raise StoreOpenError(
            f"cipher_key must be a str (base64, as create_cipher_key() returns), got "
            f"{type(cipher_key).__name__}; nothing was opened."
        )
    try:
        size = len(base64.b64decode(cipher_key.encode("ascii"), validate=True))
    except (binascii.Error, UnicodeEncodeError):
        size = -1
    if size not in (16, 24, 32):
        raise StoreOpenError(
            f"The cipher key for {redact_url(url)!r} is not a base64-encoded 16, 24 or 32-byte "
            f"AES key; nothing was opened. Create one with atlas_eda.store.create_cipher_key()."
        )
    _require_crypto()
    return {
        "CIPHER_TOPIC": "eventsourcing.cipher:AESCipher",
        "CIPHER_KEY": cipher_key,
        "COMPRESSOR_TOPIC": "",
    }


_SQLITE_MAGIC = b"SQLite format 3\x00"
_STORE_TABLES = {"stored_events", "stored_snapshots"}
_STORE_COLUMNS = ["originator_id", "originator_version", "topic", "state"]
# Followers (atlas_eda.follower) keep their positions in the store's own file, in
# eventsourcing's tracking table.
_TRACKING_TABLE = "tracking"
_TRACKING_COLUMNS = ["application_name", "notification_id"]


def _read_only(path: Path) -> bool:
    """Whether ``path`` must not be written: no write permission for this process, or no
    write bit for anybody (honoured for root too, who would otherwise write anyway)."""
    return not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222


def check_sqlite_file(path: str, url: str) -> None:
    """Refuse, with :class:`StoreOpenError` and before anything is written, a SQLite path
    that must not become a store: a file that is not a SQLite database (a text file, a
    file cut short), a SQLite database of another application (tables that are not a
    store's), a read-only file, or a read-only directory (SQLite writes its ``-wal`` and
    ``-shm`` files beside the store). A missing or empty file, an empty database and an
    atlas_eda store pass. The file is only read, through a read-only connection."""
    if path == ":memory:" or path.startswith("file:"):
        return
    file = Path(path)
    directory = file.parent.absolute()
    if directory.exists() and _read_only(directory):
        raise StoreOpenError(
            f"Could not open the store at {url!r}: the directory {str(directory)!r} is "
            f"read-only, and SQLite needs to create the store's journal files (-wal, -shm) "
            f"beside it. Nothing was written; make the directory writable or copy the store "
            f"to a writable place."
        )
    if not file.exists() or file.stat().st_size == 0:
        return
    if _read_only(file):
        raise StoreOpenError(
            f"Could not open the store at {url!r}: the file is read-only. Nothing was "
            f"written; make it writable (chmod u+w) or open a copy."
        )
    size = file.stat().st_size
    with file.open("rb") as stream:
        header = stream.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise StoreOpenError(
            f"Could not open the store at {url!r}: {str(file)!r} is not a SQLite database "
            f"(or is cut short). It was left as it was; choose another path for the store."
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # With a write-ahead log beside it, the file may be shorter than its header says: a
    # checkpoint interrupted by a crash has written page 1 but not yet every page after
    # it, which the log still holds. SQLite recovers that; only a file without a log
    # is measured here.
    wal = file.with_name(file.name + "-wal")
    logged = wal.exists() and wal.stat().st_size > 0
    if not logged and pages and header[92:96] == header[24:28] and size < pages * page_size:
        raise StoreOpenError(
            f"Could not open the store at {url!r}: the file is truncated ({size} bytes, its "
            f"header says {pages * page_size}). It was left as it was; restore it from a "
            f"backup."
        )
    _check_schema(file, url)


def _check_schema(file: Path, url: str) -> None:
    try:
        connection = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreOpenError(f"Could not open the store at {url!r}: {exc}.") from exc
    try:
        objects = connection.execute("SELECT type, name FROM sqlite_master").fetchall()
        tables = {name for kind, name in objects if kind == "table"}
        others = [
            f"{kind} {name}"
            for kind, name in objects
            if name not in _STORE_TABLES
            and name != _TRACKING_TABLE
            and not name.startswith("sqlite_autoindex_stored_")
        ]
        if others:
            raise StoreOpenError(
                f"Could not open the store at {url!r}: the file is a SQLite database of "
                f"another application (it has {', '.join(sorted(others)[:5])}). It was left "
                f"as it was; choose another path for the store."
            )
        for table in tables:
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            expected = _TRACKING_COLUMNS if table == _TRACKING_TABLE else _STORE_COLUMNS
            if columns != expected:
                raise StoreOpenError(
                    f"Could not open the store at {url!r}: its table {table!r} has the columns "
                    f"{columns}, not an atlas_eda store's. It was left as it was."
                )
        if "stored_events" in tables:
            row = connection.execute(
                "SELECT topic FROM stored_events ORDER BY rowid LIMIT 1"
            ).fetchone()
            if row is not None and not str(row[0]).startswith("atlas_eda."):
                raise StoreOpenError(
                    f"Could not open the store at {url!r}: it holds the events of another "
                    f"eventsourcing application (topic {row[0]!r}), not atlas_eda documents. "
                    f"It was left as it was."
                )
    except sqlite3.Error as exc:
        raise StoreOpenError(
            f"Could not open the store at {url!r}: {exc} (the file is damaged or truncated). "
            f"It was left as it was; restore it from a backup."
        ) from exc
    finally:
        connection.close()


def _is_lock_error(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionUnavailableError):
        return True
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _check_retries(retries: int) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int of 0 or more, got {retries!r}.")


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """eventsourcing's ``project_aggregate`` without its per-event protocol assert, which
    costs more than decoding the event on Python 3.11; every event here is a Document's."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _uuid_or_none(value: object) -> UUID | None:
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str):  # no document has such an id (and its str() may fail)
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


_CREATION_LOCK_KEY = 0x61746C61735F6564  # "atlas_ed": one advisory lock for every store


@contextmanager
def _creation_lock(url: str, settings: Mapping[str, str]) -> Iterator[None]:
    """On PostgreSQL, hold an advisory lock while eventsourcing creates its tables, types
    and function: run concurrently by several processes, those statements fail with
    "tuple concurrently updated". The lock's own connection also gives the precise reason
    (refused, wrong password, no such database) when the server cannot be reached; the
    connection pool would only report a timeout. Elsewhere, nothing."""
    if not url.lower().startswith(("postgresql:", "postgres:")):
        yield
        return
    import psycopg  # noqa: PLC0415  (the 'postgres' extra; only reached with it installed)

    value = {k.rpartition("POSTGRES_")[2]: v for k, v in settings.items() if "POSTGRES_" in k}
    try:
        connection = psycopg.connect(
            host=value["HOST"],
            port=int(value["PORT"]),
            user=value["USER"],
            password=value["PASSWORD"],
            dbname=value["DBNAME"],
            connect_timeout=int(value["CONNECT_TIMEOUT"]),
            autocommit=True,
        )
    except psycopg.Error as exc:
        raise OperationalError(" ".join(str(exc).split())) from None
    with connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (_CREATION_LOCK_KEY,))
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_CREATION_LOCK_KEY,))
