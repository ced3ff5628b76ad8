"""The SQLite file guard: a path that must not become a store is refused before
eventsourcing touches it (creating its tables would modify another application's
database, and switching a file to WAL mode writes to it)."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from ..errors import StoreOpenError
from .dead_letters import COLUMNS as _DEAD_LETTER_COLUMNS
from .dead_letters import TABLE as _DEAD_LETTER_TABLE
from .urls import sqlite_uri_file

__all__ = ["check_sqlite_file"]

logger = logging.getLogger(__name__)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_SIZE = 100
# Timelines keep their checkpoints (store/checkpoints.py) in a table of the same shape.
_STORE_TABLES = {"stored_events", "stored_snapshots", "stored_timeline_checkpoints"}
_STORE_COLUMNS = ["originator_id", "originator_version", "topic", "state"]
# Followers (atlas_eda.follower) keep their positions in the store's own file, in
# eventsourcing's tracking table.
_TRACKING_TABLE = "tracking"
_TRACKING_COLUMNS = ["application_name", "notification_id"]
_OBJECTS_SHOWN = 5
_WRITE_BITS = 0o222
# A rollback journal's header (sqlite.org/fileformat.html#the_rollback_journal): its
# magic, then the record count, the nonce and (bytes 16-20) the database's page count when
# the transaction began.
_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
_JOURNAL_HEADER_SIZE = 28
_JOURNAL_INITIAL_PAGES = slice(16, 20)
_RECOVERY_TIMEOUT_SECONDS = 30.0
# The header's page size field: 1 stands for 65536, which does not fit its two bytes.
_LARGEST_PAGE_CODE, _LARGEST_PAGE = 1, 65536


def check_sqlite_file(path: str, url: str) -> None:
    """Refuse, with :class:`StoreOpenError` and before anything is written, a SQLite path
    that must not become a store: a file that is not a SQLite database (a text file, a
    file cut short), a SQLite database of another application (tables that are not a
    store's), a read-only file, or a read-only directory (SQLite writes its ``-wal`` and
    ``-shm`` files beside the store). A missing or empty file, an empty database and an
    atlas_eda store pass. The file is only read, through a read-only connection, except
    for the hot journal of an interrupted first open, which SQLite rolls back (the file
    was empty, so it becomes empty again; see docs/reliability.md). A SQLite
    URI filename (``file:path?mode=...``) is checked as the file it names."""
    if path.startswith("file:"):
        named = sqlite_uri_file(path)
        if named is None:
            return
        path = named
    if path == ":memory:":
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
    _recover_first_open(file, url)
    if file.stat().st_size == 0:
        return
    _check_header(file, url)
    _check_schema(file, url)


def _recover_first_open(file: Path, url: str) -> None:
    """Roll back the hot journal of a database that was empty when its interrupted
    transaction began: what a process killed during the first open of a new store leaves
    (page 1 half made, a ``-journal`` beside it), which the read-only checks below cannot
    roll back. Its journal's header says the database had 0 pages, so rolling back (done
    by SQLite itself, through a plain read on a read-write connection) empties the file
    and touches nobody's data; the file then becomes a new store. A journal of a database
    that held pages is left alone."""
    journal = file.with_name(file.name + "-journal")
    try:
        with journal.open("rb") as stream:
            header = stream.read(_JOURNAL_HEADER_SIZE)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreOpenError(f"Could not open the store at {url!r}: {exc}.") from exc
    if len(header) < _JOURNAL_HEADER_SIZE or not header.startswith(_JOURNAL_MAGIC):
        return  # empty or zeroed: not a hot journal, SQLite ignores it
    if int.from_bytes(header[_JOURNAL_INITIAL_PAGES], "big") != 0:
        return
    try:
        # A journal still in use by a live writer holds its lock: SQLite then only reads.
        connection = sqlite3.connect(file, timeout=_RECOVERY_TIMEOUT_SECONDS)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise StoreOpenError(
            f"Could not open the store at {url!r}: rolling back the journal a crash left "
            f"beside it ({str(journal)!r}) failed: {exc}. Remove both files if the store "
            f"is new, or restore it from a backup."
        ) from exc
    logger.info("rolled back the first open interrupted by a crash: %s", journal)


def _read_only(path: Path) -> bool:
    """Whether ``path`` must not be written: no write permission for this process, or no
    write bit for anybody (honoured for root too, who would otherwise write anyway)."""
    return not os.access(path, os.W_OK) or not path.stat().st_mode & _WRITE_BITS


def _check_header(file: Path, url: str) -> None:
    """Refuse a file that is not a SQLite database, or is shorter than its header says."""
    size = file.stat().st_size
    with file.open("rb") as stream:
        header = stream.read(_HEADER_SIZE)
    if len(header) < _HEADER_SIZE or not header.startswith(_SQLITE_MAGIC):
        raise StoreOpenError(
            f"Could not open the store at {url!r}: {str(file)!r} is not a SQLite database "
            f"(or is cut short). It was left as it was; choose another path for the store."
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = _LARGEST_PAGE if page_size == _LARGEST_PAGE_CODE else page_size
    pages = int.from_bytes(header[28:32], "big")
    # With a write-ahead log beside it, the file may be shorter than its header says: a
    # checkpoint interrupted by a crash has written page 1 but not yet every page after
    # it, which the log still holds. SQLite recovers that; only a file without a log
    # is measured here. The page count is valid only while the change counter (24:28)
    # equals the version-valid-for number (92:96).
    wal = file.with_name(file.name + "-wal")
    logged = wal.exists() and wal.stat().st_size > 0
    if not logged and pages and header[92:96] == header[24:28] and size < pages * page_size:
        raise StoreOpenError(
            f"Could not open the store at {url!r}: the file is truncated ({size} bytes, its "
            f"header says {pages * page_size}). It was left as it was; restore it from a "
            f"backup."
        )


def _check_schema(file: Path, url: str) -> None:
    """Refuse a SQLite database whose tables or events are not an atlas_eda store's."""
    try:
        connection = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreOpenError(f"Could not open the store at {url!r}: {exc}.") from exc
    try:
        tables = _check_objects(connection, url)
        _check_columns(connection, tables, url)
        if "stored_events" in tables:
            _check_first_topic(connection, url)
    except sqlite3.Error as exc:
        raise StoreOpenError(
            f"Could not open the store at {url!r}: {exc} (the file is damaged or truncated). "
            f"It was left as it was; restore it from a backup."
        ) from exc
    finally:
        connection.close()


def _check_objects(connection: sqlite3.Connection, url: str) -> set[str]:
    """The database's tables, once every object in it is known to be a store's."""
    objects = connection.execute("SELECT type, name FROM sqlite_master").fetchall()
    others = [
        f"{kind} {name}"
        for kind, name in objects
        if name not in _STORE_TABLES
        and name not in {_TRACKING_TABLE, _DEAD_LETTER_TABLE, "sqlite_sequence"}
        and not name.startswith("sqlite_autoindex_stored_")
    ]
    if others:
        raise StoreOpenError(
            f"Could not open the store at {url!r}: the file is a SQLite database of "
            f"another application (it has {', '.join(sorted(others)[:_OBJECTS_SHOWN])}). It "
            f"was left as it was; choose another path for the store."
        )
    return {name for kind, name in objects if kind == "table"}


def _check_columns(connection: sqlite3.Connection, tables: set[str], url: str) -> None:
    for table in tables:
        columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
        expected = {
            _TRACKING_TABLE: _TRACKING_COLUMNS,
            _DEAD_LETTER_TABLE: list(_DEAD_LETTER_COLUMNS),
        }.get(table, _STORE_COLUMNS)
        if table == "sqlite_sequence":  # the dead letters' AUTOINCREMENT ids
            continue
        if columns != expected:
            raise StoreOpenError(
                f"Could not open the store at {url!r}: its table {table!r} has the columns "
                f"{columns}, not an atlas_eda store's. It was left as it was."
            )


def _check_first_topic(connection: sqlite3.Connection, url: str) -> None:
    row = connection.execute("SELECT topic FROM stored_events ORDER BY rowid LIMIT 1").fetchone()
    if row is not None and not str(row[0]).startswith("atlas_eda."):
        raise StoreOpenError(
            f"Could not open the store at {url!r}: it holds the events of another "
            f"eventsourcing application (topic {row[0]!r}), not atlas_eda documents. "
            f"It was left as it was."
        )
