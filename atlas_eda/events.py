"""Events: the immutable messages the bus carries, the built-in event types, and ids."""

from __future__ import annotations

import itertools
import operator
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from types import MappingProxyType
from typing import Any

from .errors import InvalidEventError
from .payloads import freeze_payload
from .views import short_repr

__all__ = ["EMPTY_METADATA", "Event", "EventId", "EventType", "new_event_id", "type_name"]

EventId = str
"""An event id: a UUID version 4 in its canonical 36-character string form."""

EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})
"""The shared, read-only metadata of events published without any."""


class EventType(Enum):
    """The built-in event types. Applications bring their own ``Enum``s as well; any
    ``Enum`` member is a valid event type."""

    DOCUMENT_CREATED = "document.created"
    DOCUMENT_UPDATED = "document.updated"
    DOCUMENT_DELETED = "document.deleted"
    COMMAND_EXECUTED = "command.executed"
    QUERY_EXECUTED = "query.executed"
    ERROR = "error"
    # A circuit breaker changed state (atlas_eda.resilience); data names the dependency.
    CIRCUIT_OPENED = "circuit.opened"
    CIRCUIT_HALF_OPEN = "circuit.half_open"
    CIRCUIT_CLOSED = "circuit.closed"


class _IdSource:
    """Globally unique UUID4 strings at a fraction of ``str(uuid.uuid4())``'s cost.

    The first 80 bits (version and variant bits included) come from one real
    ``uuid4()`` per process; the last 48 bits count up, handed out in blocks of 4,096
    ready-made suffixes. A child process gets a fresh prefix at fork so parent and child
    never share one.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        prefix = str(uuid.uuid4())[:24]
        # Block n is a list of the 4,096 ids ending in n's 9 hex digits and 3 more, built
        # whole (about 0.3 MB, freed as the next one starts): handing out a ready string costs a
        # fraction of joining one per call. Everything here is C-level (no Python frame
        # runs inside next()), so under the GIL two threads can never share a block, and
        # blocks never repeat, so ids never do.
        heads = map(_HEAD.format, itertools.repeat(prefix), itertools.count())
        suffixed = map(
            map,
            itertools.repeat(operator.add),
            map(itertools.repeat, heads, itertools.repeat(len(_LOW))),
            itertools.repeat(_LOW),
        )
        self.ids = itertools.chain.from_iterable(map(list, suffixed))
        self.next_id = self.ids.__next__

    def __call__(self) -> str:
        return self.next_id()

    ids: Iterator[str]
    """The ids themselves: ``next(new_event_id.ids)`` is the cheapest way to draw one
    (the bus's hot path; read the attribute each time, as a fork replaces it)."""

    next_id: Callable[[], str]
    """The same as calling this object, one Python call cheaper."""


_LOW = tuple(f"{n:03x}" for n in range(4096))
_HEAD = "{}{:09x}"  # the prefix, then the block number (9 digits last 2**36 blocks)

new_event_id = _IdSource()
"""Return a new, globally unique event id (a canonical UUID4 string)."""


def type_name(event_type: Enum) -> str:
    """``EnumClass.MEMBER``: how event and effect types are named in messages and logs."""
    return f"{type(event_type).__name__}.{event_type.name}"


_FIELDS = (
    "type",
    "data",
    "id",
    "timestamp",
    "source",
    "metadata",
    "correlation_id",
    "causation_id",
)


class EventSlots:
    """The storage :class:`Event` and the bus's ``EventDraft`` share (internal; see
    ``dispatch.py``). With the slots on a common base and none added by either class,
    turning a draft into an event (``draft.__class__ = Event``) is Python's cheapest
    class change."""

    __slots__ = _FIELDS


@dataclass(frozen=True, kw_only=True, slots=True)
class Event(EventSlots):
    """One immutable event. ``type`` is any ``enum.Enum`` member; ``correlation_id`` is
    shared by every event caused (directly or not) by the same root event, and
    ``causation_id`` is the id of the event whose handler published this one.

    ``data`` follows the payload rule (:mod:`atlas_eda.payloads`; docs/architecture.md,
    "The payload rule"): dicts, lists, sets and tuples are frozen, nested all the way down,
    into read-only equivalents that compare equal to them (a handler changing them gets
    :class:`ImmutablePayloadError`); a dataclass that is not frozen, or data nested deeper
    than Python recurses, raises :class:`InvalidEventError`; everything else (scalars, enum
    members, frozen dataclasses, pydantic models, objects of other classes) is kept as it
    is, unguarded: the bus cannot see inside it. So every handler, the history, the trace
    and the recorder see JSON-like data as it was published.

    ``metadata`` is copied into a read-only mapping when the event is built, so neither
    the event nor a mapping the caller keeps can change the other afterwards. Building an
    event whose type is not an ``Enum`` member, or whose metadata is not a mapping, raises
    :class:`InvalidEventError`. Events pickle and deep-copy (their metadata travels as a
    plain dict and is made read-only again).
    """

    type: Enum
    data: Any = None
    id: EventId = field(default_factory=new_event_id)
    timestamp: float = field(default_factory=time.time)
    source: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: EMPTY_METADATA)
    correlation_id: str | None = None
    causation_id: str | None = None

    def __post_init__(self) -> None:
        check_event_type(self.type)
        data = freeze_payload(self.data)
        if data is not self.data:
            object.__setattr__(self, "data", data)
        if self.metadata is not EMPTY_METADATA:
            object.__setattr__(self, "metadata", frozen_metadata(self.metadata))

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only metadata view cannot be pickled; travel as plain fields.
        values = {name: getattr(self, name) for name in _FIELDS}
        values["metadata"] = dict(self.metadata)
        return (_event_from_fields, (values,))

    def __repr__(self) -> str:
        return (
            f"Event({type_name(self.type)}, id={self.id}, data={short_repr(self.data)}"
            + (f", source={short_repr(self.source, 40)}" if self.source else "")
            + ")"
        )


assert tuple(f.name for f in fields(Event)) == _FIELDS  # the slots are the fields


def check_event_type(event_type: object) -> None:
    """Raise :class:`InvalidEventError` unless ``event_type`` is an ``enum.Enum`` member
    (what every event type is)."""
    if not isinstance(event_type, Enum):
        raise InvalidEventError(
            f"An event type must be an enum.Enum member (for example EventType.DOCUMENT_CREATED "
            f"or a member of your own Enum), got {short_repr(event_type)} of type "
            f"{type(event_type).__name__}."
        )


def _event_from_fields(values: dict[str, Any]) -> Event:
    """Rebuild a pickled or deep-copied :class:`Event` from its fields."""
    return Event(**values)


def frozen_metadata(metadata: object) -> Mapping[str, Any]:
    """``metadata`` copied into a read-only mapping (the shared empty one when empty);
    :class:`InvalidEventError` when it is not a mapping or cannot be read as one."""
    if not isinstance(metadata, Mapping):
        raise InvalidEventError(
            f"Event metadata must be a mapping (for example a dict), got {type(metadata).__name__}."
        )
    try:
        return MappingProxyType(dict(metadata)) if metadata else EMPTY_METADATA
    except Exception as exc:  # a mapping whose len, keys or items raise
        raise InvalidEventError(
            f"Event metadata could not be read as a mapping ({type(exc).__name__}: "
            f"{short_repr(exc)}); pass a plain dict."
        ) from exc
