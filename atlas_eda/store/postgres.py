"""PostgreSQL helpers of the store: the advisory lock that serialises table creation, and
the ``LISTEN`` connection a follower sleeps on until a writer commits.

psycopg comes with the ``postgres`` extra; it is imported only when a PostgreSQL store is
used, so SQLite and memory stores run without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import OperationalError

from .urls import is_postgres

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["CREATION_LOCK_KEY", "creation_lock", "listen_connection", "wait_for_notify"]

CREATION_LOCK_KEY = 0x61746C61735F6564
"""The advisory lock every store holds while creating its tables ("atlas_ed" in ASCII)."""


@contextmanager
def creation_lock(url: str, settings: Mapping[str, str]) -> Iterator[None]:
    """On PostgreSQL, hold an advisory lock while eventsourcing creates its tables, types
    and function: run concurrently by several processes, those statements fail with
    "tuple concurrently updated". The lock's own connection also gives the precise reason
    (refused, wrong password, no such database) when the server cannot be reached; the
    connection pool would only report a timeout. ``settings`` are the store's
    eventsourcing settings (``POSTGRES_*`` keys, prefixed or not). Elsewhere, nothing."""
    if not is_postgres(url):
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
        connection.execute("SELECT pg_advisory_lock(%s)", (CREATION_LOCK_KEY,))
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (CREATION_LOCK_KEY,))


def listen_connection(recorder: Any) -> Connection[Any] | None:
    """A new connection, made with the settings of ``recorder``'s pool, that ``LISTEN``s on
    the channel eventsourcing's PostgreSQL recorder ``NOTIFY``s after each commit; ``None``
    for a recorder that has no such channel (SQLite, memory). The caller closes it."""
    channel = getattr(recorder, "channel_name", None)
    if channel is None:
        return None
    import psycopg  # noqa: PLC0415  (only reached on PostgreSQL)
    from psycopg.sql import SQL, Identifier  # noqa: PLC0415

    kwargs = dict(recorder.datastore.pool.kwargs)
    kwargs.pop("row_factory", None)
    connection = psycopg.connect(**kwargs, autocommit=True)
    connection.execute(SQL("LISTEN {0}").format(Identifier(channel)))
    return connection


def wait_for_notify(connection: Connection[Any], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for a ``NOTIFY`` on a :func:`listen_connection`;
    ``True`` when one came. When the server went away (or restarted) the connection is
    closed and :class:`ConnectionError` raised: listen again with a new connection."""
    import psycopg  # noqa: PLC0415  (only reached on PostgreSQL)

    try:
        for _ in connection.notifies(timeout=timeout, stop_after=1):
            return True
    except psycopg.OperationalError as exc:
        with contextlib.suppress(psycopg.Error):  # it is being thrown away already
            connection.close()
        raise ConnectionError(
            f"the LISTEN connection to PostgreSQL was lost ({' '.join(str(exc).split())}); "
            f"open a new one to go on listening"
        ) from exc
    return False
