"""The classes a store's stored topics may name, and the mapper that resolves only those.

eventsourcing turns a stored event's topic (``"module:Class"``) into a class with
``resolve_topic``, which imports whatever module the topic names: a tampered row could run
any importable module's code just by being read. Every store reads through
:class:`AllowListMapper` instead, which resolves a topic only when a module registered its
class with :func:`register_topic` (the store registers its ``Document`` events and
snapshots; other aggregate kinds of the store register theirs where they are defined).
Any other topic is a :class:`CorruptStoreError` naming where it was read, and nothing is
imported.
"""

from __future__ import annotations

import functools
import threading
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic

from ..errors import CorruptStoreError
from ..views import short_repr

__all__ = ["AllowListMapper", "is_registered_topic", "register_topic", "registered_topics"]

_LOCK = threading.Lock()
_CLASSES: dict[str, type[Any]] = {}


def register_topic(cls: type[Any]) -> str:
    """Allow stored topics to name ``cls`` (an event, snapshot or aggregate class a store
    writes); returns its topic. Registering the same class again is harmless."""
    if not isinstance(cls, type):
        raise TypeError(f"register_topic takes a class, got {type(cls).__name__}.")
    topic = get_topic(cls)
    with _LOCK:
        _CLASSES[topic] = cls
    return topic


def is_registered_topic(topic: object) -> bool:
    """Whether ``topic`` names a class registered with :func:`register_topic`."""
    return isinstance(topic, str) and topic in _CLASSES


def registered_topics() -> frozenset[str]:
    """Every topic registered so far."""
    with _LOCK:
        return frozenset(_CLASSES)


@functools.cache
def _required_fields(cls: type[Any]) -> frozenset[str]:
    """The fields an event of ``cls`` must hold: those annotated on it (or a base) with
    no class-level default."""
    names = {name for base in cls.__mro__ for name in vars(base).get("__annotations__", {})}
    return frozenset(name for name in names if not hasattr(cls, name))


def where_stored(stored: StoredEvent) -> str:
    """Where a stored event sits, for messages: its log position when it was read from
    the log (a notification), its document id and version always."""
    position = getattr(stored, "id", None)
    at = f"position {position}, " if isinstance(position, int) else ""
    return f"{at}id {stored.originator_id} version {stored.originator_version}"


class AllowListMapper(Mapper[UUID]):
    """eventsourcing's mapper, resolving only registered topics (see the module's text).
    ``where`` names the store in messages (its URL without the password); the store sets
    it. A stored event that cannot be decoded (a damaged state, or one encrypted with
    another key) is a :class:`CorruptStoreError` too, whose ``__cause__`` is eventsourcing's
    ``MapperDeserialisationError``."""

    where: str = "the store"

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        """The event ``stored_event`` holds; refuses unregistered topics unresolved."""
        self._check(stored_event, stored_event.topic, "topic")
        try:
            event = super().to_domain_event(stored_event)
        except MapperDeserialisationError as exc:
            raise self._corrupt(stored_event, f"its state cannot be decoded ({exc})") from exc
        missing = _required_fields(type(event)) - vars(event).keys()
        if missing:
            raise self._corrupt(
                stored_event, f"its state lacks the fields {', '.join(sorted(missing))}"
            )
        # A creation names its aggregate's class, and a snapshot its aggregate's class,
        # inside the (decoded) state: resolved later, when the aggregate is rebuilt.
        self._check(stored_event, getattr(event, "originator_topic", None), "aggregate topic")
        if isinstance(event, Snapshot):
            self._check(stored_event, event.topic, "snapshot topic")
        return event

    def check_topic(self, stored: StoredEvent) -> None:
        """Raise :class:`CorruptStoreError` naming where ``stored`` sits unless its topic
        names a registered class (nothing is resolved or imported)."""
        self._check(stored, stored.topic, "topic")

    def _check(self, stored: StoredEvent, topic: object, what: str) -> None:
        if topic is None and what != "topic":
            return
        if not is_registered_topic(topic):
            raise self._corrupt(
                stored,
                f"its {what} {short_repr(topic)} names no class this store writes (nothing "
                f"was imported)",
            )

    def _corrupt(self, stored: StoredEvent, why: str) -> CorruptStoreError:
        position = getattr(stored, "id", None)
        return CorruptStoreError(
            f"The stored event at {where_stored(stored)} in {self.where} cannot be read: "
            f"{why}. The store was changed by something other than atlas_eda, or damaged; "
            f"restore it from a backup.",
            position=position if isinstance(position, int) else None,
        )
