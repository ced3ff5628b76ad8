"""Store URLs: which eventsourcing persistence a URL names, and how to show one safely.

``memory://`` is eventsourcing's POPO recorders; ``sqlite:///path`` a SQLite file (three
slashes and a relative path, four slashes for an absolute one, as in SQLAlchemy);
``postgresql://user:password@host:port/database`` a PostgreSQL server, with optional query
parameters ``schema``, ``pool_size``, ``max_overflow``, ``connect_timeout`` and
``lock_timeout``. Every bad URL is refused here, before anything is created.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from ..errors import StoreURLError
from ..redaction import redact_url

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "PG_RECORDER_TOPIC",
    "is_postgres",
    "persistence_settings",
    "redact_url",
    "sqlite_uri_file",
]

ENV_VAR = "ATLAS_EDA_STORE_URL"
"""The environment variable that supplies the store URL when none is passed."""

PG_RECORDER_TOPIC = "atlas_eda.store.pg_recorder:OneTripRecorder"
"""The application recorder of a PostgreSQL store, by topic: eventsourcing imports it (and
psycopg) only when a PostgreSQL store is opened."""

DEFAULT_URL = "memory://"
"""The store used when neither a URL nor ``ATLAS_EDA_STORE_URL`` is given."""

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_PORT = 5432
_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1

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
_POSTGRES_EXPECTED = (
    "expected 'postgresql://user:password@host:port/database?schema=...&pool_size=...'"
)


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


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL store (either spelling of the scheme)."""
    return url.lower().startswith(("postgresql:", "postgres:"))


def _postgres_settings(url: str) -> dict[str, str]:
    parts = _split_postgres(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        # eventsourcing's recorder, its writes sent in one round trip (see pg_recorder).
        "APPLICATION_RECORDER_TOPIC": PG_RECORDER_TOPIC,
        **_POSTGRES_DEFAULTS,
        **_postgres_connection(url, parts),
        **_postgres_query(url, parts.query),
    }


def _split_postgres(url: str) -> SplitResult:
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is not a number raises only when read)
    except ValueError as exc:
        raise StoreURLError(
            f"{shown!r} is not a valid PostgreSQL URL ({exc}): {_POSTGRES_EXPECTED}."
        ) from None
    if parts.fragment:
        raise StoreURLError(
            f"{shown!r}: a PostgreSQL URL takes no '#fragment'; {_POSTGRES_EXPECTED}."
        )
    return parts


def _postgres_connection(url: str, parts: SplitResult) -> dict[str, str]:
    """The host, port, user, password and database settings of a split PostgreSQL URL."""
    shown = redact_url(url)
    if not parts.hostname:
        raise StoreURLError(f"{shown!r} names no host: {_POSTGRES_EXPECTED}.")
    if parts.username is None or not unquote(parts.username):
        raise StoreURLError(f"{shown!r} names no user: {_POSTGRES_EXPECTED}.")
    database = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not database or "/" in database:
        raise StoreURLError(
            f"{shown!r} must name exactly one database after the host: {_POSTGRES_EXPECTED}."
        )
    return {
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(parts.port or _POSTGRES_PORT),
        "POSTGRES_USER": unquote(parts.username),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_DBNAME": database,
    }


def _postgres_query(url: str, query: str) -> dict[str, str]:
    """The settings given as query parameters, each checked."""
    shown = redact_url(url)
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise StoreURLError(
            f"{shown!r}: the query {query!r} is not 'key=value&key=value'."
        ) from None
    settings: dict[str, str] = {}
    for key, value in pairs:
        if key not in _POSTGRES_QUERY:
            raise StoreURLError(
                f"{shown!r}: unknown query parameter {key!r}; the ones understood are "
                f"{', '.join(sorted(_POSTGRES_QUERY))}."
            )
        setting, minimum = _POSTGRES_QUERY[key]
        if setting in settings:
            raise StoreURLError(f"{shown!r}: query parameter {key!r} is given twice.")
        _check_query_value(shown, key, value, minimum)
        settings[setting] = value
    return settings


def _check_query_value(shown: str, key: str, value: str, minimum: int | None) -> None:
    if minimum is None:
        if not value or len(value.encode()) > _MAX_IDENTIFIER_BYTES or "\x00" in value:
            raise StoreURLError(
                f"{shown!r}: {key} must be a PostgreSQL identifier of 1 to "
                f"{_MAX_IDENTIFIER_BYTES} bytes, got {value!r}."
            )
    elif not value.isascii() or not value.isdigit() or int(value) < minimum:
        raise StoreURLError(
            f"{shown!r}: {key} must be an integer of at least {minimum}, got {value!r}."
        )


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
    if raw == ":memory:":
        return raw
    if raw.startswith("file:"):
        try:
            file = sqlite_uri_file(raw)
        except ValueError as exc:
            raise StoreURLError(f"{url!r}: {exc}") from None
        if file is not None:
            _check_directory(url, Path(file))
        return raw
    path = Path(raw)
    _check_directory(url, path)
    return str(path)


def _check_directory(url: str, path: Path) -> None:
    """Refuse a database path whose directory is missing, or that is a directory."""
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


def sqlite_uri_file(name: str) -> str | None:
    """The file a SQLite URI filename (``file:path?query``, as in
    ``sqlite:///file:data.db?mode=rwc``) opens, percent-decoded and relative to the current
    directory when relative, so that it gets the same checks as a plain path; ``None`` for
    an in-memory database (``file::memory:``, ``mode=memory``). Raises ``ValueError`` for
    an authority other than ``localhost``, which SQLite refuses too."""
    rest = name[len("file:") :].partition("#")[0]
    path, _, query = rest.partition("?")
    if path.startswith("//"):
        authority, slash, tail = path[2:].partition("/")
        if authority not in ("", "localhost"):
            raise ValueError(
                f"the URI filename names the host {authority!r}; SQLite opens local files "
                f"only: use 'file:/absolute/path.db' or 'file:relative.db'."
            )
        path = slash + tail
    params = dict(parse_qsl(query, keep_blank_values=True))
    path = unquote(path)
    if not path or path == ":memory:" or params.get("mode") == "memory":
        return None
    return path
