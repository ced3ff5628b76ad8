"""What a stored saga event is, written once: the eventsourcing aggregate that holds a
saga instance's state in the store, and what a timeline shows for each of its versions.

A :class:`SagaRecord` shares the store's log with the documents (one notification log per
eventsourcing application): the store registers its topics, ``store.save_saga`` writes
it, and a :class:`~atlas_eda.timeline.Timeline` shows each version as kind ``"saga"`` with
:func:`saga_changes`. :mod:`atlas_eda.sagas` (the saga manager) sits above the store and
is the only writer. Each version records its cause, as a Document event does
(:func:`atlas_eda.document_events.current_cause`).
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from .document_events import EventKind

__all__ = [
    "SAGA_KIND",
    "SAGA_STATUSES",
    "LogKind",
    "SagaRecord",
    "SagaStatus",
    "is_saga_event",
    "saga_changes",
]

SAGA_KIND: Literal["saga"] = "saga"
"""The kind a timeline and ``atlas-eda log`` give a saga's versions."""

LogKind: TypeAlias = EventKind | Literal["saga"]
"""A kind of stored event in the store's log: a document's ``created``, ``updated`` or
``deleted``, or a version of a saga instance (``saga``)."""

SagaStatus: TypeAlias = Literal[
    "running", "compensating", "completed", "failed", "compensation_failed"
]
"""Where a saga instance is: ``running`` (waiting for its next event or deadline),
``compensating`` (a step failed; its compensations are being run), ``completed``,
``failed`` (every compensation ran) or ``compensation_failed`` (one or more raised;
the others were still attempted)."""

SAGA_STATUSES: tuple[SagaStatus, ...] = (
    "running",
    "compensating",
    "completed",
    "failed",
    "compensation_failed",
)
"""Every status, the ended ones last."""

_INITIAL: dict[str, Any] = {
    "status": "running",
    "step": None,
    "steps": [],
    "data": {},
    "compensations": [],
    "deadline": None,
    "reason": None,
    "compensated": [],
    "failed_compensation": None,
}


class SagaRecord(Aggregate):
    """One saga instance's state, versioned by eventsourcing: ``saga`` (the Saga class's
    name), ``key`` (the correlation key's value), and ``fields``: ``status``, ``step``
    (what made the newest version), ``steps`` (the steps done), ``data`` (the saga's own
    JSON state), ``compensations`` (registered, not yet run), ``deadline``
    (``{"name", "at"}`` or ``None``), ``reason`` (why it failed), ``compensated`` (each
    compensation run, with its error) and ``failed_compensation``. ``cause`` is the bus
    context of the newest version."""

    class Started(Aggregate.Created):
        """The saga's start event arrived: its first step's outcome."""

        saga: str
        key: str
        what: dict[str, Any]
        cause: dict[str, Any] | None

    class Changed(Aggregate.Event):
        """A step, a deadline, a compensation or the end changed the fields in ``what``."""

        what: dict[str, Any]
        cause: dict[str, Any] | None

    @event(Started)
    def __init__(
        self, saga: str, key: str, what: dict[str, Any], cause: dict[str, Any] | None
    ) -> None:
        self.saga = saga
        self.key = key
        self.fields: dict[str, Any] = {**_INITIAL, **what}
        self.cause = cause

    @event(Changed)
    def change(self, what: dict[str, Any], cause: dict[str, Any] | None) -> None:
        """Record ``what`` changed (each field set to its new value)."""
        self.fields = {**self.fields, **what}
        self.cause = cause

    @classmethod
    def start(
        cls,
        saga_id: UUID,
        saga: str,
        key: str,
        what: dict[str, Any],
        cause: dict[str, Any] | None,
    ) -> SagaRecord:
        """A new instance (its creation pending, not saved) with the id ``saga_id``."""
        return cls._create(cls.Started, id=saga_id, saga=saga, key=key, what=what, cause=cause)


def is_saga_event(event: object) -> bool:
    """Whether ``event`` is a stored event of a :class:`SagaRecord`."""
    return isinstance(event, SagaRecord.Started | SagaRecord.Changed)


def saga_changes(event: object) -> dict[str, Any]:
    """What a saga event set, as a timeline shows it: for the first version ``saga`` and
    ``key``, then each field of ``what`` with its new value."""
    if isinstance(event, SagaRecord.Started):
        return {"saga": event.saga, "key": event.key, **event.what}
    if isinstance(event, SagaRecord.Changed):
        return dict(event.what)
    raise TypeError(f"{type(event).__qualname__} is not a saga event.")
