"""Opening the store a command reads: the ``--store`` option (or ``$ATLAS_EDA_STORE_URL``),
refusing a SQLite file that does not exist, reading without creating tables, and finding a
document by its id or a prefix of it."""

from __future__ import annotations

import argparse
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from eventsourcing.domain import EventSourcingError

from ..store import ENV_VAR, TemporalStore, persistence_settings, redact_url
from .command import CommandError

__all__ = ["add_store_option", "check_existing", "open_store", "resolve_document", "store_url"]

PREFIX_LENGTH = 4
"""The shortest prefix of a document id that names the document."""

STORE_HELP = (
    f"store URL, e.g. sqlite:///atlas-demo.db (default: ${ENV_VAR} when set; the file "
    f"must exist, it is never created)"
)
"""The ``--store`` option's help for the commands that read an existing store."""


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--store URL`` (an existing store) to a command's parser."""
    parser.add_argument("--store", metavar="URL", help=STORE_HELP)


def store_url(given: str | None) -> str:
    """The ``--store`` URL, else ``$ATLAS_EDA_STORE_URL``; a clear error when neither."""
    url = given if given is not None else os.environ.get(ENV_VAR)
    if not url:
        raise CommandError(
            f"no store given: pass --store URL (for example --store sqlite:///atlas-demo.db) "
            f"or set {ENV_VAR}."
        )
    return url


def check_existing(url: str) -> None:
    """Refuse a URL whose SQLite file does not exist (opening it would create an empty
    database); unknown schemes and missing directories are refused by the store's own
    URL check, before anything is created."""
    settings = persistence_settings(url)
    name = settings.get("SQLITE_DBNAME")
    if name is None or name == ":memory:":
        return
    if name.startswith("file:"):
        parts = urlsplit(name)
        if parse_qs(parts.query).get("mode") == ["memory"]:
            return
        path = Path(parts.path)
    else:
        path = Path(name)
    if not path.is_file():
        raise CommandError(
            f"the SQLite file {str(path)!r} (from {url!r}) does not exist; check the path "
            f"(three slashes mean a path relative to {os.getcwd()!r}, four an absolute one)."
        )


class _ExistingStore(TemporalStore):
    """A store opened only to read what is already there: eventsourcing is told not to
    create its tables, so a SQLite file that is not an atlas_eda store is reported
    rather than having empty tables added to it."""

    name = TemporalStore.name  # the same configuration keys and tables as the store's
    env: ClassVar[dict[str, str]] = {f"{TemporalStore.name.upper()}_CREATE_TABLE": "n"}


@contextmanager
def open_store(given: str | None) -> Iterator[TemporalStore]:
    """An existing store, opened for reading and closed afterwards. Database errors while
    reading become one clear :class:`CommandError`."""
    url = store_url(given)
    check_existing(url)
    store = _ExistingStore(url=url)
    try:
        yield store
    except (sqlite3.Error, EventSourcingError) as exc:
        raise CommandError(
            f"could not read the store at {redact_url(url)!r}: {exc}. Is it an atlas_eda store?"
        ) from exc
    finally:
        store.close()


def resolve_document(store: TemporalStore, given: str) -> tuple[str, int]:
    """The full id of the document ``given`` names (its id, or a unique prefix of it of at
    least :data:`PREFIX_LENGTH` characters, such as the 8 characters the demo prints) and
    its latest version; a :class:`CommandError` saying what to give instead if none."""
    key: UUID | None
    try:
        key = UUID(given)
    except ValueError:
        if len(given.strip()) < PREFIX_LENGTH:
            raise CommandError(
                f"{given.strip()!r} is shorter than the {PREFIX_LENGTH} characters a prefix "
                f"needs; give at least {PREFIX_LENGTH} characters of the id (list the ids "
                f"with: atlas-eda log --store {redact_url(store.url)})."
            ) from None
        key = _by_prefix(store, given)
    version = store.latest_version(str(key)) if key is not None else None
    if version is None:
        raise CommandError(
            f"no document has id {given!r} in {redact_url(store.url)}; list the document ids "
            f"with: atlas-eda log --store {redact_url(store.url)}"
        )
    return str(key), version


def _by_prefix(store: TemporalStore, given: str) -> UUID | None:
    """The id of the one document whose id starts with ``given`` (at least
    :data:`PREFIX_LENGTH` characters); ``None`` when none does; a :class:`CommandError`
    when several do."""
    prefix = given.strip().lower()
    matches = [i for i in store.list_document_ids() if i.startswith(prefix)]
    if len(matches) > 1:
        raise CommandError(
            f"{given!r} is the start of {len(matches)} document ids; give more of the id "
            f"(list them with: atlas-eda log --store {redact_url(store.url)})."
        )
    return UUID(matches[0]) if matches else None
