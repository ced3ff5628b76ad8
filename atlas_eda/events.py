"""Events: the immutable messages the bus carries, the built-in event types, and ids."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

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


class _IdSource:
    """Globally unique UUID4 strings at a fraction of ``str(uuid.uuid4())``'s cost.

    The first 80 bits (version and variant bits included) come from one real
    ``uuid4()`` per process; the last 48 bits count up. A child process gets a fresh
    prefix at fork so parent and child never share one.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._counter = itertools.count()

    def __call__(self) -> str:
        # next() on itertools.count is atomic under the GIL: no lock needed.
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


new_event_id = _IdSource()
"""Return a new, globally unique event id (a canonical UUID4 string)."""


def type_name(event_type: Enum) -> str:
    """``EnumClass.MEMBER``: how event and effect types are named in messages and logs."""
    return f"{type(event_type).__name__}.{event_type.name}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One immutable event. ``type`` is any ``enum.Enum`` member; ``correlation_id`` is
    shared by every event caused (directly or not) by the same root event, and
    ``causation_id`` is the id of the event whose handler published this one."""

    type: Enum
    data: Any = None
    id: EventId = field(default_factory=new_event_id)
    timestamp: float = field(default_factory=time.time)
    source: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: EMPTY_METADATA)
    correlation_id: str | None = None
    causation_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"Event({type_name(self.type)}, id={self.id}, data={_short(self.data)}"
            + (f", source={self.source!r}" if self.source else "")
            + ")"
        )


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
