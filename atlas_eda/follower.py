"""StoreFollower: another process's view of a store, as events on its own bus.

A follower reads the store's ordered log (eventsourcing's notification log: every stored
event, in commit order, numbered 1, 2, 3, ...) from its own position, republishes each
document event on a local :class:`EventBus` as ``DOCUMENT_CREATED``, ``DOCUMENT_UPDATED``
or ``DOCUMENT_DELETED``, and records its new position in eventsourcing's tracking table,
in the same database, under the follower's ``name``.

Delivery guarantee — **at least once, in order, with at most ``commit_every`` repeats
per crash** (default 1): each event is published on the bus first and its position
recorded after it (the bus's handlers are not part of the database transaction, so no
order of the two steps can be exactly once for arbitrary handlers). So:

- nothing is ever skipped: a position is recorded only after its event was published;
- after a clean stop (``poll`` and ``run`` record the position before returning), or a
  crash between two recorded events, nothing is delivered twice;
- a crash (even SIGKILL) *while* an event is being handled, or before its position was
  recorded, delivers the events since the last recorded position again on restart — one
  event with the default ``commit_every=1`` — with the same ``Event.id`` and the same
  ``metadata["notification_id"]``, so a handler that must not act twice can skip ids it
  has already seen. Every follower gives the same store event the same ``Event.id``.

Recording a position is a durable commit (an fsync) per event by default: that, not
reading, bounds a follower's rate. ``commit_every=N`` records every N events (and at the
end of each poll), trading up to N repeats after a crash for far fewer commits.

There are no background threads: :meth:`StoreFollower.poll` delivers what is there and
returns; :meth:`StoreFollower.run` polls until a timeout, a limit or a ``stop_event``.
On PostgreSQL ``run`` sleeps on ``LISTEN``/``NOTIFY`` (woken as soon as a writer commits);
on SQLite it polls every ``interval`` seconds. The follower reads the store only through
its log API (``last_position``, ``notifications``, ``decode``, ``tracking_recorder``,
``listen_connection``) and turns each event into bus data with
:mod:`atlas_eda.document_events`, as the store itself does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError, Notification, Tracking

from .bus import EventBus
from .checks import check_count, is_int
from .document_events import KINDS, bus_event
from .errors import FollowerError, StoreURLError
from .events import Event
from .store import ENV_VAR, TemporalStore, persistence_settings, redact_url
from .store.postgres import wait_for_notify

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["FOLLOWER_SOURCE", "StoreFollower"]

logger = logging.getLogger(__name__)

FOLLOWER_SOURCE = "atlas_eda.follower"
"""The ``source`` of every event a follower publishes."""

_LISTEN_CHECK_SECONDS = 0.1  # how often a wait on LISTEN looks at the stop event


def event_id_for(document_id: str, version: int) -> str:
    """The bus event id a follower gives version ``version`` of a document: the same in
    every follower and on every redelivery (a UUID4-shaped hash of the two)."""
    digest = hashlib.blake2b(f"{document_id}:{version}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


class StoreFollower:
    """Tails the store at ``url`` from ``name``'s durable position onto ``bus``.

    ``url`` is a ``sqlite:///...`` or ``postgresql://...`` store URL (``None``: the
    ``ATLAS_EDA_STORE_URL`` variable); a ``memory://`` store lives in one process and
    cannot be followed. ``name`` keys the position in the store's database: a follower
    made again with the same name resumes where the last one stopped. Run one process
    per name. ``name=None`` makes a transient follower whose position lives only in
    memory (``atlas-eda follow`` without ``--name``).

    A follower without a recorded position starts at the current end of the log (only
    what is committed from now on) or, with ``from_start=True``, at its beginning; the
    start is recorded at once, so what is committed between construction and the first
    poll is never missed. A recorded position always wins over ``from_start``.

    Each published event has the data the store's own publication has — created:
    ``{"id", "title", "author", "version"}``; updated: ``{"id", "title", "editor",
    "version"}`` (``title`` is ``None`` when unchanged; ``editor`` is the recorded one,
    the author when no editor was given); deleted: ``{"id", "reason", "version"}`` — with
    ``source="atlas_eda.follower"``, the event's commit time as ``timestamp``, and
    ``metadata`` ``{"notification_id", "follower"}``. See the module docstring for the
    delivery guarantee and ``commit_every``. Not thread-safe: drive a follower from one
    thread.

    ``clock`` (default :func:`time.monotonic`) is what :meth:`run` reads its timeouts
    from, and ``sleep`` (default :func:`time.sleep`) how it waits between polls on
    SQLite (on PostgreSQL it waits on ``LISTEN``); tests pass their own so that nothing
    waits for real.
    """

    def __init__(
        self,
        url: str | None,
        bus: EventBus,
        name: str | None,
        *,
        from_start: bool = False,
        page_size: int = 100,
        commit_every: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check_arguments(bus, name, page_size, commit_every)
        self.url = _followable(url)
        self.bus = bus
        self.name = name
        self.page_size = page_size
        self.commit_every = commit_every
        self._clock = clock
        self._sleep = sleep
        self._store = TemporalStore(url=self.url, snapshot_interval=0, sleep=sleep)
        self._listener: Connection[Any] | None = None
        try:
            self._tracking = self._store.tracking_recorder()
            self._position = self._start_position(from_start)
            self._recorded = self._position
        except BaseException:
            self._store.close()
            raise
        logger.info(
            "follower %r on %s starts after notification %d",
            name,
            redact_url(self.url),
            self._position,
        )

    def _start_position(self, from_start: bool) -> int:
        """The recorded position, or (recorded at once) the start of the log or its end."""
        if self.name is not None:
            recorded = self._tracking.max_tracking_id(self.name)
            if recorded is not None:
                return recorded
        position = 0 if from_start else self._store.last_position()
        if self.name is not None:
            self._tracking.insert_tracking(Tracking(self.name, position))
        return position

    # -- position ----------------------------------------------------------------------

    @property
    def position(self) -> int:
        """The notification id of the last event delivered (0: none yet)."""
        return self._position

    def backlog(self) -> int:
        """How many notifications the log holds past this follower's position."""
        return max(0, self._store.last_position() - self._position)

    # -- delivering ----------------------------------------------------------------------

    def poll(self, limit: int | None = None) -> int:
        """Deliver every event committed past the position (at most ``limit``), in log
        order; returns how many were delivered. Never blocks waiting for new events."""
        if limit is not None and not is_int(limit):
            raise TypeError(f"limit must be an int or None, got {limit!r}.")
        delivered = 0
        try:
            while limit is None or delivered < limit:
                size = self.page_size if limit is None else min(self.page_size, limit - delivered)
                page = self._store.notifications(self._position + 1, size, kinds=KINDS)
                for notification in page:
                    self._deliver(notification)
                    delivered += 1
                    if self._position - self._recorded >= self.commit_every:
                        self._record()
                if len(page) < size:
                    break
        finally:
            # Even when a publication raised: what was delivered before it stays delivered.
            self._record()
        return delivered

    run_once = poll

    def run(
        self,
        *,
        timeout: float | None = None,
        limit: int | None = None,
        stop_event: threading.Event | None = None,
        interval: float = 0.2,
        idle_timeout: float | None = None,
    ) -> int:
        """Poll until ``timeout`` seconds have passed, ``limit`` events were delivered,
        ``stop_event`` is set, or nothing new came for ``idle_timeout`` seconds
        (whichever is first; with none of them, forever). Returns how many were
        delivered. Between polls it waits up to ``interval`` seconds (on PostgreSQL it
        wakes as soon as a writer commits). Time is read from the follower's ``clock``,
        and on SQLite it waits with its ``sleep`` (or on ``stop_event``, when given)."""
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}.")
        started = last_delivery = self._clock()
        delivered = 0
        while True:
            remaining = None if limit is None else limit - delivered
            if remaining is not None and remaining <= 0:
                break
            count = self.poll(remaining)
            delivered += count
            now = self._clock()
            if count:
                last_delivery = now
                continue
            deadlines = [interval]
            if timeout is not None:
                deadlines.append(started + timeout - now)
            if idle_timeout is not None:
                deadlines.append(last_delivery + idle_timeout - now)
            wait = min(deadlines)
            if wait <= 0 or (stop_event is not None and stop_event.is_set()):
                break
            self._wait(wait, stop_event)
            if stop_event is not None and stop_event.is_set():
                break
        return delivered

    def _wait(self, seconds: float, stop_event: threading.Event | None) -> None:
        listener = self._listen()
        if listener is None:
            if stop_event is not None:
                stop_event.wait(seconds)
            else:
                self._sleep(seconds)
            return
        try:
            # The stop event is checked at least every _LISTEN_CHECK_SECONDS.
            wait_for_notify(listener, min(seconds, _LISTEN_CHECK_SECONDS))
        except ConnectionError:
            # The server went away or restarted: listen again on the next wait; the
            # next poll goes through the store's pool, which reconnects (or raises).
            logger.warning("follower %r lost its LISTEN connection; reconnecting", self.name)
            self._listener = None
            self._sleep(min(seconds, _LISTEN_CHECK_SECONDS))

    def _listen(self) -> Connection[Any] | None:
        """A PostgreSQL connection that LISTENs on the store's channel (None on SQLite)."""
        if self._listener is None:
            self._listener = self._store.listen_connection()
        return self._listener

    def _deliver(self, notification: Notification) -> None:
        stored = self._store.decode(notification)
        event_type, data = bus_event(stored)
        event = Event(
            type=event_type,
            data=data,
            id=event_id_for(str(notification.originator_id), notification.originator_version),
            timestamp=stored.timestamp.timestamp(),
            source=FOLLOWER_SOURCE,
            metadata={"notification_id": notification.id, "follower": self.name},
        )
        self.bus.publish_event(event)
        self._position = notification.id

    def _record(self) -> None:
        """Record the position durably, if it moved since it was last recorded."""
        if self._recorded == self._position:
            return
        if self.name is not None:
            try:
                self._tracking.insert_tracking(Tracking(self.name, self._position))
            except IntegrityError:
                raise FollowerError(
                    f"Follower {self.name!r} could not record position {self._position}: "
                    f"another follower with the same name has already recorded it (run one "
                    f"process per name). Its events were delivered here as well."
                ) from None
        self._recorded = self._position

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the database connections; the recorded position stays."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._store.close()

    def __enter__(self) -> StoreFollower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"StoreFollower(url={redact_url(self.url)!r}, name={self.name!r}, "
            f"position={self._position})"
        )


def _check_arguments(bus: EventBus, name: str | None, page_size: int, commit_every: int) -> None:
    if not isinstance(bus, EventBus):
        raise TypeError(f"bus must be an atlas_eda.EventBus, got {type(bus).__name__}.")
    if name is not None and (
        not isinstance(name, str) or not name.strip() or name.startswith("__")
    ):
        raise ValueError(
            f"A follower name must be a non-empty str not starting with '__' (or None "
            f"for a follower that records no position), got {name!r}."
        )
    for label, number in (("page_size", page_size), ("commit_every", commit_every)):
        check_count(label, number, minimum=1, type_error=ValueError)


def _followable(url: str | None) -> str:
    """``url`` (``None``: ``ATLAS_EDA_STORE_URL``), refused unless a follower can read it
    from another process."""
    if url is None:
        url = os.environ.get(ENV_VAR) or ""
    if persistence_settings(url)["PERSISTENCE_MODULE"] == "eventsourcing.popo":
        raise StoreURLError(
            f"{url!r}: a memory store lives inside one process and cannot be followed; "
            f"use a 'sqlite:///path/to/file.db' or 'postgresql://...' store."
        )
    return url
