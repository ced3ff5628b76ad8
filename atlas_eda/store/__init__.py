"""The document store: :class:`TemporalStore` and what opening one takes.

A store is addressed by URL: ``memory://`` keeps events in memory (eventsourcing's POPO
recorders); ``sqlite:///path`` is a durable file (eventsourcing's SQLite recorders; three
slashes and a relative path, four slashes for an absolute one, as in SQLAlchemy);
``postgresql://user:password@host:port/database`` is a PostgreSQL server (eventsourcing's
PostgreSQL recorders; install the ``postgres`` extra), with optional query parameters
``schema`` (an existing schema; default ``public``), ``pool_size`` (connections kept
open, default 5), ``max_overflow`` (extra connections under load, default 10),
``connect_timeout`` (seconds, default 5) and ``lock_timeout`` (seconds, 0 = none).
``ATLAS_EDA_STORE_URL`` supplies the URL when none is given.

Modules: :mod:`.urls` (URLs and their settings), :mod:`.sqlite_guard` (refusing a file
that must not become a store), :mod:`.cipher` (encryption at rest), :mod:`.postgres`
(the creation lock and the ``LISTEN`` connection), :mod:`.pg_recorder` (eventsourcing's
PostgreSQL recorder, each write sent in one round trip), :mod:`.positions` (recording a
follower's position), :mod:`.outbox` (the effects a write performs after its commit, saved
with it) and :mod:`.temporal` (the store).
"""

from __future__ import annotations

from .cipher import CIPHER_ENV_VAR, create_cipher_key
from .outbox import Outbox, PendingEffects, current_outbox_key
from .sqlite_guard import check_sqlite_file
from .temporal import DOCUMENT_ID_NAMESPACE, TemporalStore, derived_document_id
from .urls import DEFAULT_URL, ENV_VAR, persistence_settings, redact_url

__all__ = [
    "CIPHER_ENV_VAR",
    "DEFAULT_URL",
    "DOCUMENT_ID_NAMESPACE",
    "ENV_VAR",
    "Outbox",
    "PendingEffects",
    "TemporalStore",
    "check_sqlite_file",
    "create_cipher_key",
    "current_outbox_key",
    "derived_document_id",
    "persistence_settings",
    "redact_url",
]
