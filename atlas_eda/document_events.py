"""What a stored Document event means outside the store, written once: the bus event that
announces it, and the field changes a timeline shows for it.

The store publishes :func:`live_bus_event` after each commit, a follower republishes
:func:`bus_event` for each event it reads from the log, and a timeline shows
:func:`kind_of` and :func:`field_changes`. The events themselves are eventsourcing's
``Document.Created``, ``Document.Updated`` and ``Document.Deleted``, as the store's mapper
decodes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeAlias

from eventsourcing.domain import AggregateEvent
from eventsourcing.utils import get_topic

from .document import Document
from .errors import AtlasEdaError
from .events import EventType, type_name
from .trace import delivery_under_way, refuse_if_read_only, running
from .tracecontext import TRACEPARENT, TRACESTATE, carrier_of, current_carrier
from .views import short_id

__all__ = [
    "KINDS",
    "UNKNOWN",
    "BusEvent",
    "Cause",
    "DocumentEvent",
    "EventKind",
    "as_document_event",
    "bus_event",
    "cause_of",
    "current_cause",
    "field_changes",
    "kind_of",
    "live_bus_event",
    "topics",
]

EventKind = Literal["created", "updated", "deleted"]
"""What a stored event did to its document."""

KINDS: tuple[EventKind, ...] = ("created", "updated", "deleted")
"""Every kind, in the order a document can go through them."""

DocumentEvent: TypeAlias = AggregateEvent
"""A decoded Document event (eventsourcing's aggregate event: ``originator_id``,
``originator_version``, ``timestamp`` and the fields of its kind)."""

# eventsourcing's @event decorator makes these classes at run time; mypy cannot see them.
_CLASSES: dict[EventKind, type[Any]] = {
    "created": Document.Created,
    "updated": getattr(Document, "Updated"),  # noqa: B009
    "deleted": getattr(Document, "Deleted"),  # noqa: B009
}
_KIND_OF_CLASS: dict[type[Any], EventKind] = {cls: kind for kind, cls in _CLASSES.items()}
_TOPICS: dict[EventKind, str] = {kind: get_topic(cls) for kind, cls in _CLASSES.items()}
_BUS_TYPES: dict[EventKind, EventType] = {
    "created": EventType.DOCUMENT_CREATED,
    "updated": EventType.DOCUMENT_UPDATED,
    "deleted": EventType.DOCUMENT_DELETED,
}


class BusEvent(NamedTuple):
    """The type and data of the bus event that announces a stored event."""

    type: EventType
    data: dict[str, Any]


def as_document_event(event: object) -> DocumentEvent:
    """``event`` itself when it is a Document event; :class:`AtlasEdaError` otherwise (the
    store holds another application's events)."""
    if type(event) not in _KIND_OF_CLASS or not isinstance(event, AggregateEvent):
        raise _not_a_document_event(event)
    return event


def kind_of(event: DocumentEvent) -> EventKind:
    """Whether ``event`` created, updated or deleted its document."""
    kind = _KIND_OF_CLASS.get(type(event))
    if kind is None:
        raise _not_a_document_event(event)
    return kind


def _not_a_document_event(event: object) -> AtlasEdaError:
    return AtlasEdaError(
        f"{type(event).__module__}.{type(event).__qualname__} is not a Document event: the "
        f"store holds events of another application. Open a store that holds only atlas_eda "
        f"documents."
    )


def topics(kinds: Iterable[EventKind]) -> list[str]:
    """The eventsourcing topics (stored class names) of the events of ``kinds``."""
    return [_TOPICS[kind] for kind in kinds]


def bus_event(event: DocumentEvent) -> BusEvent:
    """The bus event for ``event`` as it is recorded (what a follower publishes):
    created ``{"id", "title", "author", "version"}``; updated ``{"id", "title",
    "editor", "version"}`` (``title`` is ``None`` when unchanged, ``editor`` the recorded
    one: the author when none was given); deleted ``{"id", "reason", "version"}``."""
    kind = kind_of(event)
    fields: Any = event  # the kind's own fields are not visible to mypy
    data: dict[str, Any] = {"id": str(event.originator_id)}
    if kind == "created":
        data |= {"title": fields.title, "author": fields.author}
    elif kind == "updated":
        data |= {"title": fields.title, "editor": fields.editor}
    else:
        data["reason"] = fields.reason
    data["version"] = event.originator_version
    return BusEvent(_BUS_TYPES[kind], data)


def live_bus_event(event: DocumentEvent, *, editor: str | None) -> BusEvent:
    """The bus event the store publishes right after committing ``event``: the same as
    :func:`bus_event`, except that an update carries ``editor`` as the caller passed it
    (``None`` when none was), not the resolved one the event records."""
    announced = bus_event(event)
    if announced.type is EventType.DOCUMENT_UPDATED:
        announced.data["editor"] = editor
    return announced


def field_changes(event: DocumentEvent) -> dict[str, Any]:
    """Each document field ``event`` set, with its new value: created sets ``title``,
    ``content`` and ``author``; updated the fields given (``title``, ``content``) and
    ``last_editor``; deleted ``is_deleted`` and ``deletion_reason``."""
    kind = kind_of(event)
    fields: Any = event  # the kind's own fields are not visible to mypy
    if kind == "created":
        return {"title": fields.title, "content": fields.content, "author": fields.author}
    if kind == "deleted":
        return {"is_deleted": True, "deletion_reason": fields.reason}
    changes = {
        name: getattr(fields, name)
        for name in ("title", "content")
        if getattr(fields, name) is not None
    }
    if fields.editor is not None:
        changes["last_editor"] = fields.editor
    return changes


UNKNOWN = "(unknown)"
"""What a :class:`Cause` holds in place of a recorded value that is not a string (a
tampered or foreign store): shown, never trusted."""

_CAUSE_FIELDS = ("event_id", "event_type", "correlation_id", "handler")


@dataclass(frozen=True, slots=True)
class Cause:
    """The bus context a stored event was written in: the id and type (``"Enum.MEMBER"``)
    of the event being delivered, its correlation id (its root's id), and the qualified
    name of the handler it was being delivered to (``None`` on a bus without traces, which
    does not know it, or when the bus itself wrote while reporting a failure). A value
    recorded as something other than a string reads as :data:`UNKNOWN`. ``traceparent``
    and ``tracestate`` are the W3C trace context of the span current when it was written
    (with :mod:`atlas_eda.telemetry` on), which a follower in another process continues;
    ``None`` when none was recorded or what was recorded is malformed."""

    event_id: str
    event_type: str
    correlation_id: str | None
    handler: str | None
    traceparent: str | None = None
    tracestate: str | None = None

    def describe(self) -> str:
        """``Enum.MEMBER …1a2b3c4d by handler`` on one line (the event id cut to its end,
        where the ids one process makes differ)."""
        by = f" by {self.handler}" if self.handler is not None else ""
        return f"{self.event_type} {short_id(self.event_id, tail=True)}{by}"


def current_cause() -> dict[str, Any] | None:
    """The cause to record with an event written now in this context: a plain dict (what
    the store's JSON transcoder stores) of :class:`Cause`'s fields for the delivery under
    way, or ``None`` outside any delivery; :class:`~atlas_eda.errors.QuerySideEffectError`
    inside a query (which may not write). The correlation id of an event that has none
    (a root published prebuilt) is its own id, as the bus gives its children. With
    :mod:`atlas_eda.telemetry` on, the current span's ``traceparent`` (and
    ``tracestate``) are recorded too: the keys are only added to the dict, so causes
    recorded before read as they did (no new ``class_version`` is needed)."""
    # A write inside a query is refused here, before the store builds or commits anything.
    refuse_if_read_only(running(), "write the store")
    under_way = delivery_under_way()
    if under_way is None:
        return None
    event, handler = under_way
    return {
        "event_id": event.id,
        "event_type": type_name(event.type),
        # A root published prebuilt without one is its own tree's root, as for the bus.
        "correlation_id": event.correlation_id or event.id,
        "handler": handler,
        **current_carrier(),
    }


def cause_of(event: DocumentEvent) -> Cause | None:
    """The :class:`Cause` recorded with ``event``, or ``None`` for an event written outside
    any delivery (and for events stored before causes were recorded). Never raises: a
    cause that is not a dict, or a field that is not a string, reads as :data:`UNKNOWN`."""
    recorded = getattr(event, "cause", None)
    if recorded is None:
        return None
    if not isinstance(recorded, dict):
        return Cause(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)
    values = [_text_or_unknown(recorded.get(name)) for name in _CAUSE_FIELDS]
    event_id, event_type, correlation_id, handler = values
    carrier = carrier_of(recorded, "a stored cause")
    return Cause(
        event_id or UNKNOWN,
        event_type or UNKNOWN,
        correlation_id,
        handler,
        carrier.get(TRACEPARENT),
        carrier.get(TRACESTATE),
    )


def _text_or_unknown(value: object) -> str | None:
    if value is None or type(value) is str:
        return value
    return UNKNOWN
