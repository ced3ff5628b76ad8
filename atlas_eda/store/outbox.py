"""The outbox: the effects a store write must perform after its commit, saved in the same
eventsourcing transaction as the write, so that a crash between the commit and the
effects cannot lose them.

Each write given ``effects=`` saves an :class:`OutboxEntry` aggregate beside the document
(``Application.save(document_event, *entry_events)``: one transaction), performs the
effects after the commit and records the entry performed. An entry whose performer failed,
or whose process died first, stays pending: :meth:`Outbox.retry` performs it again (a
:class:`~atlas_eda.DocumentService` does so when it starts). Delivery is at least once:
a crash after an effect ran and before the entry was recorded performed runs it again, so
each effect has an idempotency key (:func:`current_outbox_key`, while it is performed)
that a performer can use to skip what it already did.

The outbox's events share the store's log (eventsourcing has one notification log per
application); every document reader (timelines, ``atlas-eda log``, followers, cassettes)
reads only document events, so outbox records are not shown and their positions are gaps.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, cast
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

from ..checks import as_uuid
from ..effects import Effect, EffectHandler, EffectMonad, EffectType
from ..errors import AtlasEdaError, InvalidEffectError, OutboxError
from ..views import short_repr
from .topics import register_topic

__all__ = [
    "OUTBOX_ID_NAMESPACE",
    "OUTBOX_TOPICS",
    "Outbox",
    "OutboxEntry",
    "PendingEffects",
    "current_outbox_key",
]

logger = logging.getLogger(__name__)

Performer = EffectHandler | Callable[[Any], Any]
"""What performs outbox effects: an :class:`EffectHandler`, or a callable ``fn(effect)``."""

OUTBOX_ID_NAMESPACE = UUID("8b0e3f7c-6a51-5d2e-b4c9-1f7a2d6e9c30")
"""The ``uuid5`` namespace of outbox entry ids: ``uuid5(ns, "<document id>/<version>")``,
one entry per document version."""

Status = Literal["pending", "performed", "discarded"]

_SCAN_PAGE = 500

_current_key: ContextVar[str | None] = ContextVar("atlas_eda_outbox_key", default=None)


def current_outbox_key() -> str | None:
    """The idempotency key of the outbox effect being performed on this thread now
    (``"<entry id>/<index of the effect>"``, the same at every attempt), or ``None``
    outside the outbox. A performer that must not act twice records the keys it has done."""
    return _current_key.get()


@contextmanager
def _performing(key: str) -> Iterator[None]:
    token = _current_key.set(key)
    try:
        yield
    finally:
        _current_key.reset(token)


class OutboxEntry(Aggregate):
    """The effects one document write must perform after its commit (an eventsourcing
    aggregate stored in the store's own database): ``document_id``, ``document_version``,
    ``effects`` (each ``{"type", "payload", "description"}``), ``status``, ``attempts``
    (failed ones) and ``last_error``."""

    class Created(Aggregate.Created):
        """The entry was saved with its write."""

        document_id: str
        document_version: int
        effects: list[dict[str, Any]]

    class Performed(Aggregate.Event):
        """Every effect of the entry was performed."""

    class Failed(Aggregate.Event):
        """A performer raised ``error``; the entry stays pending."""

        error: str

    class Discarded(Aggregate.Event):
        """Dropped by the user: it will not be performed."""

    @event(Created)
    def __init__(
        self, document_id: str, document_version: int, effects: list[dict[str, Any]]
    ) -> None:
        self.document_id = document_id
        self.document_version = document_version
        self.effects = effects
        self.status: Status = "pending"
        self.attempts = 0
        self.last_error: str | None = None

    @event(Performed)
    def mark_performed(self) -> None:
        """Record every effect performed."""
        self.status = "performed"

    @event(Failed)
    def mark_failed(self, error: str) -> None:
        """Record a failed attempt."""
        self.attempts += 1
        self.last_error = error

    @event(Discarded)
    def mark_discarded(self) -> None:
        """Record the entry dropped."""
        self.status = "discarded"


# Registered as the only classes outbox rows may name (stored topics resolve to nothing else).
OUTBOX_TOPICS: tuple[str, ...] = tuple(
    register_topic(cls)
    for cls in (
        OutboxEntry.Created,
        OutboxEntry.Performed,
        OutboxEntry.Failed,
        OutboxEntry.Discarded,
    )
)
"""The topics of the outbox's stored events (they share the store's log)."""
register_topic(OutboxEntry)


@dataclass(frozen=True)
class PendingEffects:
    """An outbox entry not yet performed: its ``id``, the ``document_id`` and ``version``
    whose write saved it, its ``effects``, how many ``attempts`` failed and the
    ``last_error``."""

    id: str
    document_id: str
    version: int
    effects: tuple[Effect, ...]
    attempts: int
    last_error: str | None

    def key(self, index: int) -> str:
        """The idempotency key of the effect at ``index`` (what
        :func:`current_outbox_key` says while it is performed)."""
        return f"{self.id}/{index}"


def outbox_entry(document_id: str, version: int, effects: Sequence[Effect]) -> OutboxEntry:
    """A new entry (its event pending, not saved) for the write of ``document_id`` at
    ``version``. Refuses, with :class:`InvalidEffectError` and before anything is saved,
    an effect whose type is not an :class:`EffectType` or whose payload is not JSON."""
    return OutboxEntry._create(
        OutboxEntry.Created,
        id=uuid5(OUTBOX_ID_NAMESPACE, f"{document_id}/{version}"),
        document_id=document_id,
        document_version=version,
        effects=[_as_record(effect) for effect in effects],
    )


def check_effects(effects: Sequence[object]) -> tuple[Effect, ...]:
    """``effects`` as a tuple, once each can wait in the outbox (an :class:`Effect` of an
    :class:`EffectType`, with a JSON payload); :class:`InvalidEffectError` otherwise."""
    if isinstance(effects, (str, bytes, Effect)) or not isinstance(effects, Sequence):
        raise InvalidEffectError(
            f"effects must be a sequence of Effect, got {type(effects).__name__}; nothing "
            f"was saved."
        )
    checked: list[Effect] = []
    for effect in effects:
        _as_record(effect)
        checked.append(cast(Effect, effect))
    return tuple(checked)


def _as_record(effect: object) -> dict[str, Any]:
    if not isinstance(effect, Effect) or not isinstance(effect.type, EffectType):
        raise InvalidEffectError(
            f"Only an Effect of an atlas_eda.EffectType can wait in the outbox, got "
            f"{short_repr(effect)}; nothing was saved."
        )
    try:
        json.dumps(effect.payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidEffectError(
            f"The payload of {effect!r} cannot be stored in the outbox ({exc}): use JSON "
            f"values (dict, list, str, int, float, bool, None); nothing was saved."
        ) from None
    return {"type": effect.type.name, "payload": effect.payload, "description": effect.description}


def _as_effect(record: dict[str, Any]) -> Effect:
    return Effect(EffectType[record["type"]], record["payload"], record["description"])


class Outbox:
    """The store's outbox (``store.outbox``): :meth:`pending` lists the entries not yet
    performed, :meth:`retry` performs them, :meth:`discard` drops one."""

    def __init__(self, application: Application[UUID]) -> None:
        self._application = application
        self._lock = threading.Lock()
        self._scanned_to = 0
        self._maybe_pending: dict[UUID, None] = {}  # ordered: log order

    def pending(self) -> list[PendingEffects]:
        """Every entry not yet performed nor discarded, oldest first (entries saved by
        other processes sharing the database included)."""
        entries = [self._get(key) for key in self._candidates()]
        with self._lock:
            for entry in entries:
                if entry.status != "pending":
                    self._maybe_pending.pop(entry.id, None)
        return [_view(entry) for entry in entries if entry.status == "pending"]

    def perform(self, entry_id: str, performer: Performer) -> None:
        """Perform the pending entry ``entry_id`` through ``performer`` (each effect with
        its idempotency key set) and record it performed. A performer's exception is
        recorded on the entry (which stays pending) and raised again."""
        entry = self._pending_entry(entry_id)
        try:
            for index, record in enumerate(entry.effects):
                with _performing(f"{entry.id}/{index}"):
                    EffectMonad.pure(None).with_effect(_as_effect(record)).run(performer)
        except Exception as exc:
            entry.mark_failed(error=f"{type(exc).__name__}: {exc}")
            self._save(entry)
            raise
        entry.mark_performed()
        self._save(entry)
        with self._lock:
            self._maybe_pending.pop(entry.id, None)

    def retry(self, performer: Performer, entry_id: str | None = None) -> list[str]:
        """Perform every pending entry (or only ``entry_id``) through ``performer``;
        returns the ids of those performed. An entry whose performer fails stays pending
        with its error (see :meth:`pending`) and is logged; the others go on."""
        ids = [entry_id] if entry_id is not None else [p.id for p in self.pending()]
        done: list[str] = []
        for key in ids:
            try:
                self.perform(key, performer)
            except OutboxError:
                raise
            except Exception as exc:
                logger.warning("outbox entry %s failed again: %s", key, exc)
                continue
            done.append(key)
        return done

    def discard(self, entry_id: str) -> None:
        """Drop the pending entry ``entry_id``: it will not be performed."""
        entry = self._pending_entry(entry_id)
        entry.mark_discarded()
        self._save(entry)
        with self._lock:
            self._maybe_pending.pop(entry.id, None)

    def _candidates(self) -> list[UUID]:
        """The entries that may be pending: every one saved since the last scan of the
        log, and those not known to be done."""
        recorder = self._application.recorder
        with self._lock:
            while True:
                page = recorder.select_notifications(
                    start=self._scanned_to + 1, limit=_SCAN_PAGE, topics=OUTBOX_TOPICS[:1]
                )
                if not page:
                    break
                for notification in page:
                    self._maybe_pending[UUID(str(notification.originator_id))] = None
                self._scanned_to = page[-1].id
            return list(self._maybe_pending)

    def _get(self, key: UUID) -> OutboxEntry:
        entry: object = self._application.repository.get(key)
        if not isinstance(entry, OutboxEntry):  # pragma: no cover  (ids come from the log)
            raise AtlasEdaError(f"{key} is not an outbox entry.")
        return entry

    def _pending_entry(self, entry_id: str) -> OutboxEntry:
        key = as_uuid(entry_id)
        entry: object = None
        if key is not None:
            try:
                entry = self._application.repository.get(key)
            except AggregateNotFoundError:
                entry = None
        if not isinstance(entry, OutboxEntry):
            raise OutboxError(
                f"No outbox entry has the id {short_repr(entry_id)}; store.outbox.pending() "
                f"lists those waiting."
            )
        if entry.status != "pending":
            raise OutboxError(f"Outbox entry {entry_id} is already {entry.status}.")
        return entry

    def _save(self, entry: OutboxEntry) -> None:
        try:
            self._application.save(entry)
        except IntegrityError:
            # Another process recorded this entry first (it performed or discarded it
            # too: at least once); its record stands.
            logger.info("outbox entry %s was recorded by another process meanwhile", entry.id)


def _view(entry: OutboxEntry) -> PendingEffects:
    return PendingEffects(
        id=str(entry.id),
        document_id=entry.document_id,
        version=entry.document_version,
        effects=tuple(_as_effect(record) for record in entry.effects),
        attempts=entry.attempts,
        last_error=entry.last_error,
    )
