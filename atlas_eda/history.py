"""A bus's memory (internal; :class:`~atlas_eda.bus.EventBus` is the public face): its
:class:`History`, the newest events it published, each in its trace record, and its
:class:`Watchers`, told of each root event's trace once everything it caused is handled."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from itertools import islice
from typing import Any

from .events import Event
from .trace import (
    EventTrace,
    Record,
    build_trace,
    find_record,
    qualified_name,
    record_event,
    records_by_id,
)

__all__ = ["History", "Watcher", "Watchers"]

# The bus's logger: users (and the CLI) configure the bus's logging by this one name.
logger = logging.getLogger("atlas_eda.bus")

Watcher = Callable[[EventTrace], Any]
"""Called as ``watcher(trace)`` with each root event's trace (see ``EventBus.watch``)."""


class History:
    """The newest ``limit`` records of a bus (see :data:`~atlas_eda.trace.Record`),
    oldest first, in a bounded deque: O(1) per publish, never over its bound.
    Publishers append without a lock (``deque.append`` is one C call, atomic under the
    GIL, or under the deque's own lock on free-threaded builds); readers work on a copy
    (:meth:`snapshot`)."""

    __slots__ = ("_records", "keep")

    def __init__(self, limit: int) -> None:
        self._records: deque[Record] = deque(maxlen=limit)
        # Keeps a record, dropping the oldest at the bound: the deque's own bound
        # method, so that the dispatch loop keeps a record with one C call.
        self.keep: Callable[[Record], None] = self._records.append

    @property
    def limit(self) -> int:
        """How many of the newest records are kept."""
        return self._records.maxlen or 0

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        """The records, oldest first, as they were when iteration began."""
        return iter(self.snapshot())

    def clear(self) -> None:
        """Forget every record."""
        self._records.clear()

    def snapshot(self) -> deque[Record]:
        """A consistent copy of the records, taken without stopping publishers."""
        while True:
            try:
                # One C call that runs no Python code: atomic under the GIL. Should an
                # interpreter ever interleave an append, the copy raises and is retried.
                return self._records.copy()
            except RuntimeError:  # pragma: no cover - "deque mutated during iteration"
                continue

    def events(self, event_type: Enum | None = None, limit: int | None = None) -> list[Event]:
        """The recorded events, newest first: at most ``limit`` (all with ``None``), only
        those of ``event_type`` when given."""
        newest_first: Iterable[Event] = map(record_event, reversed(self.snapshot()))
        if event_type is not None:
            newest_first = (e for e in newest_first if e.type == event_type)
        return list(newest_first if limit is None else islice(newest_first, max(limit, 0)))

    def trace(self, event_id: str) -> EventTrace | None:
        """The trace of the newest record of the event ``event_id`` (a tracing bus's),
        or ``None`` if it is no longer kept. Looked up when asked for, so publishing
        maintains no index."""
        snapshot = self.snapshot()
        record = find_record(reversed(snapshot), event_id)
        if record is None:
            return None
        return build_trace(record, self.newer_than(record, snapshot).get)

    def trace_of(self, record: Record) -> EventTrace:
        """The trace of ``record``, which may already have left a small history (its
        descendants that did are counted in the trace's ``missing``)."""
        return build_trace(record, self.newer_than(record).get)

    def newer_than(
        self, record: Record, snapshot: deque[Record] | None = None
    ) -> dict[str, Record]:
        """The records after ``record`` (in ``snapshot``, or in a new one), by event id:
        where its descendants are, since they are recorded after it (the newest entry
        wins should an event be published twice). All of them if ``record`` has left
        the history."""
        newer: list[Record] = []
        for candidate in reversed(self.snapshot() if snapshot is None else snapshot):
            if candidate is record:
                break
            newer.append(candidate)
        return records_by_id(reversed(newer))


class Watchers:
    """The callbacks of ``EventBus.watch``, told in the order they were added. Adding
    and removing replace the tuple :attr:`callbacks` under a lock, so telling them reads
    it without one."""

    __slots__ = ("_lock", "callbacks")

    def __init__(self) -> None:
        self.callbacks: tuple[Watcher, ...] = ()
        self._lock = threading.Lock()

    def add(self, callback: Watcher) -> Callable[[], None]:
        """Tell ``callback`` of each trace from now on; returns the function that stops
        it (calling that again does nothing)."""
        if not callable(callback):
            raise TypeError(f"watch needs a callable callback(trace), got {callback!r}.")
        with self._lock:
            self.callbacks = (*self.callbacks, callback)

        def stop() -> None:
            with self._lock:
                self.callbacks = tuple(w for w in self.callbacks if w is not callback)

        return stop

    def tell(self, trace: EventTrace) -> None:
        """Call every callback with ``trace``; one that raises is logged, and the others
        are still told."""
        for watcher in self.callbacks:
            try:
                watcher(trace)
            except Exception:
                logger.exception(
                    "bus watcher %s failed on %s", qualified_name(watcher), trace.event.id
                )
