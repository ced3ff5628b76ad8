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
on SQLite it polls every ``interval`` seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from eventsourcing.persistence import IntegrityError, Notification, Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from .bus import EventBus
from .document import Document
from .errors import FollowerError, StoreURLError
from .events import Event, EventType
from .store import ENV_VAR, TemporalStore, _creation_lock, persistence_settings, redact_url

__all__ = ["FOLLOWER_SOURCE", "StoreFollower"]

logger = logging.getLogger(__name__)

FOLLOWER_SOURCE = "atlas_eda.follower"
"""The ``source`` of every event a follower publishes."""

_TOPICS = {
    get_topic(Document.Created): EventType.DOCUMENT_CREATED,
    get_topic(getattr(Document, "Updated")): EventType.DOCUMENT_UPDATED,  # noqa: B009
    get_topic(getattr(Document, "Deleted")): EventType.DOCUMENT_DELETED,  # noqa: B009
}


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
    ) -> None:
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
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ValueError(f"{label} must be a positive int, got {number!r}.")
        if url is None:
            url = os.environ.get(ENV_VAR) or ""
        module = persistence_settings(url)["PERSISTENCE_MODULE"]
        if module == "eventsourcing.popo":
            raise StoreURLError(
                f"{url!r}: a memory store lives inside one process and cannot be followed; "
                f"use a 'sqlite:///path/to/file.db' or 'postgresql://...' store."
            )
        self.url = url
        self.bus = bus
        self.name = name
        self.page_size = page_size
        self.commit_every = commit_every
        self._store = TemporalStore(url=url, snapshot_interval=0)
        self._listener: Any = None
        try:
            self._tracking = self._tracking_recorder(url)
            recorded = self._tracking.max_tracking_id(name) if name is not None else None
            if recorded is not None:
                self._position = recorded
            else:
                self._position = (
                    0 if from_start else self._store.recorder.max_notification_id() or 0
                )
                if name is not None:
                    self._tracking.insert_tracking(Tracking(name, self._position))
            self._recorded = self._position
        except BaseException:
            self._store.close()
            raise
        logger.info(
            "follower %r on %s starts after notification %d",
            name,
            redact_url(url),
            self._position,
        )

    def _tracking_recorder(self, url: str) -> TrackingRecorder:
        """eventsourcing's tracking recorder on the store's database, its table created
        if need be. Processes creating it at once collide (on SQLite both insert its
        migration marker): on PostgreSQL the store's creation lock serialises them, on
        SQLite the loser finds the table made and tries once more."""
        for attempt in range(3):
            try:
                with _creation_lock(url, persistence_settings(url)):
                    return self._store.factory.tracking_recorder()
            except IntegrityError:
                if attempt == 2:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- position ----------------------------------------------------------------------

    @property
    def position(self) -> int:
        """The notification id of the last event delivered (0: none yet)."""
        return self._position

    def backlog(self) -> int:
        """How many notifications the log holds past this follower's position."""
        return max(0, (self._store.recorder.max_notification_id() or 0) - self._position)

    # -- delivering ----------------------------------------------------------------------

    def poll(self, limit: int | None = None) -> int:
        """Deliver every event committed past the position (at most ``limit``), in log
        order; returns how many were delivered. Never blocks waiting for new events."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int or None, got {limit!r}.")
        delivered = 0
        try:
            while limit is None or delivered < limit:
                size = self.page_size if limit is None else min(self.page_size, limit - delivered)
                page = self._store.recorder.select_notifications(
                    start=self._position,
                    limit=size,
                    topics=list(_TOPICS),
                    inclusive_of_start=False,
                )
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
        wakes as soon as a writer commits)."""
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}.")
        started = last_delivery = time.monotonic()
        delivered = 0
        while True:
            remaining = None if limit is None else limit - delivered
            if remaining is not None and remaining <= 0:
                break
            count = self.poll(remaining)
            delivered += count
            now = time.monotonic()
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
                time.sleep(seconds)
            return
        import psycopg  # noqa: PLC0415  (only reached on PostgreSQL)

        try:
            # The stop event is checked at least every 0.1 s.
            for _ in listener.notifies(timeout=min(seconds, 0.1), stop_after=1):
                break
        except psycopg.OperationalError:
            # The server went away or restarted: listen again on the next wait; the
            # next poll goes through the store's pool, which reconnects (or raises).
            logger.warning("follower %r lost its LISTEN connection; reconnecting", self.name)
            with contextlib.suppress(psycopg.Error):
                listener.close()
            self._listener = None
            time.sleep(min(seconds, 0.1))

    def _listen(self) -> Any:
        """A PostgreSQL connection that LISTENs on the store's channel (None on SQLite)."""
        if self._listener is not None:
            return self._listener
        recorder: Any = self._store.recorder
        channel = getattr(recorder, "channel_name", None)
        if channel is None:
            return None
        import psycopg  # noqa: PLC0415  (only reached on PostgreSQL)
        from psycopg.sql import SQL, Identifier  # noqa: PLC0415

        kwargs = dict(recorder.datastore.pool.kwargs)
        kwargs.pop("row_factory", None)
        self._listener = psycopg.connect(**kwargs, autocommit=True)
        self._listener.execute(SQL("LISTEN {0}").format(Identifier(channel)))
        return self._listener

    def _deliver(self, notification: Notification) -> None:
        domain_event: Any = self._store.mapper.to_domain_event(notification)
        event_type = _TOPICS[notification.topic]
        document_id = str(notification.originator_id)
        version = notification.originator_version
        data: Mapping[str, Any]
        if event_type is EventType.DOCUMENT_CREATED:
            data = {
                "id": document_id,
                "title": domain_event.title,
                "author": domain_event.author,
                "version": version,
            }
        elif event_type is EventType.DOCUMENT_UPDATED:
            data = {
                "id": document_id,
                "title": domain_event.title,
                "editor": domain_event.editor,
                "version": version,
            }
        else:
            data = {"id": document_id, "reason": domain_event.reason, "version": version}
        event = Event(
            type=event_type,
            data=dict(data),
            id=event_id_for(document_id, version),
            timestamp=domain_event.timestamp.timestamp(),
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
