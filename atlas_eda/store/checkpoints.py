"""Timeline checkpoints: the whole store's document states right after one position, kept
in the store's own database, so that a timeline opened later (another process, a restarted
notebook, a fresh inspector) folds the log from the nearest checkpoint instead of from
position 1.

A checkpoint is eventsourcing data like the rest of the store: a :class:`StateCheckpoint`
domain event, encoded by the store's transcoder, compressed with zlib and encrypted by
the store's cipher when it has one (eventsourcing's ``Mapper``), recorded by an
eventsourcing aggregate recorder in a table of its own (``stored_timeline_checkpoints`` in
SQLite, ``temporalstore_timeline_checkpoints`` in PostgreSQL), outside the notification
log: checkpoints take no positions. Each is one insert, so one transaction: it is there
whole or not at all. Its version is the position it describes, which the log never
changes once recorded; two readers saving the same position at once are told apart by the
table's key, and the second insert is dropped. Checkpoints are derived data: a store
without them (a memory store, a file written before they existed) reads the same, only the
first fold is longer.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any
from uuid import UUID

from eventsourcing.compressor import ZlibCompressor
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import (
    AggregateRecorder,
    InfrastructureFactory,
    IntegrityError,
    Mapper,
    PersistenceError,
)
from eventsourcing.popo import POPOFactory

from ..errors import CorruptStoreError
from .topics import AllowListMapper, register_topic

__all__ = ["CHECKPOINTS_ID", "Checkpoints", "StateCheckpoint", "persisted_by"]

logger = logging.getLogger(__name__)

CHECKPOINTS_ID = UUID("3f9b6c1e-8d2a-5b47-a0e3-7c5d9f1b2e64")
"""The originator id of every checkpoint row (its version is the position)."""

PURPOSE = "timeline_checkpoints"
"""eventsourcing's ``purpose`` of the checkpoints' recorder: it names their table."""


class StateCheckpoint(DomainEvent):
    """The documents' states right after position ``originator_version``: one row per
    document in creation order, each the values of ``columns`` (the fields of
    :class:`~atlas_eda.timeline.DocumentState`, named so that a row written by another
    version of the class is recognised and not misread)."""

    columns: list[str]
    rows: list[list[Any]]


register_topic(StateCheckpoint)


class Checkpoints:
    """The store's checkpoint table: :meth:`latest` reads, :meth:`save` writes. The table
    is made (by eventsourcing's ``aggregate_recorder``) on first use, under ``creating``
    (the store's creation lock); a store whose settings turn table creation off uses the
    table only if it exists."""

    def __init__(
        self,
        factory: InfrastructureFactory[Any],
        mapper: Mapper[UUID],
        creating: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self._factory = factory
        # The store's transcoder and cipher, and zlib: a checkpoint repeats the documents'
        # texts, which compress well, so the kept states stay a fraction of the log's size.
        self._mapper = AllowListMapper(
            transcoder=mapper.transcoder, compressor=ZlibCompressor(), cipher=mapper.cipher
        )
        self._mapper.where = getattr(mapper, "where", AllowListMapper.where)
        self._creating = creating
        self._recorder: AggregateRecorder | None = None
        self._lock = threading.Lock()

    def latest(self, upto: int, *, after: int = 0) -> StateCheckpoint | None:
        """The checkpoint of the highest position in ``after + 1 .. upto``, or ``None``."""
        if upto <= after:
            return None
        found = self._table().select_events(CHECKPOINTS_ID, gt=after, lte=upto, desc=True, limit=1)
        if not found:
            return None
        checkpoint = self._mapper.to_domain_event(found[0])
        if not isinstance(checkpoint, StateCheckpoint):
            raise CorruptStoreError(
                f"The timeline checkpoint at position {found[0].originator_version} holds a "
                f"{type(checkpoint).__name__}, not a checkpoint: the store was changed by "
                f"something other than atlas_eda; restore it from a backup.",
                position=None,
            )
        return checkpoint

    def save(self, position: int, columns: Sequence[str], rows: list[list[Any]]) -> bool:
        """Record the checkpoint of ``position``; ``False`` when it could not be (one of
        that position is there already, or the database refused: logged, since the
        checkpoint only spares a later fold)."""
        # eventsourcing's metaclass makes the class a dataclass: mypy cannot see its fields.
        make: Any = StateCheckpoint
        checkpoint = make(
            originator_id=CHECKPOINTS_ID,
            originator_version=position,
            timestamp=StateCheckpoint.create_timestamp(),
            columns=list(columns),
            rows=rows,
        )
        try:
            self._table().insert_events([self._mapper.to_stored_event(checkpoint)])
        except IntegrityError:
            return False  # another timeline saved this position first: the same states
        except (PersistenceError, sqlite3.Error) as exc:
            logger.warning(
                "could not save the timeline checkpoint of position %d: %s", position, exc
            )
            return False
        return True

    def _table(self) -> AggregateRecorder:
        with self._lock:
            if self._recorder is None:
                with self._creating():
                    self._recorder = self._factory.aggregate_recorder(purpose=PURPOSE)
            return self._recorder


def persisted_by(factory: InfrastructureFactory[Any]) -> bool:
    """Whether a store of ``factory`` keeps checkpoints: not in memory (eventsourcing's POPO
    recorders: a checkpoint would only double what the timeline holds), and not when its
    settings turn table creation off (eventsourcing's ``CREATE_TABLE``), which opens only
    the tables a store has."""
    if isinstance(factory, POPOFactory):
        return False
    create_table = getattr(factory, "env_create_table", None)
    return bool(create_table()) if callable(create_table) else True
