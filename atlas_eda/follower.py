"""StoreFollower: another process's view of a store, as events on its own bus.

A follower reads the store's ordered log (eventsourcing's notification log: every stored
event, in commit order, numbered 1, 2, 3, ...) from its own position, republishes each
document event on a local :class:`EventBus` as ``DOCUMENT_CREATED``, ``DOCUMENT_UPDATED``
or ``DOCUMENT_DELETED``, and records its new position in eventsourcing's tracking table,
in the same database, under the follower's ``name``.

Delivery guarantee — **at least once, in order, with at most one page of repeats per
crash**: each event is published on the bus first and its position recorded after it (the
bus's handlers are not part of the database transaction, so no order of the two steps can
be exactly once for arbitrary handlers). So:

- nothing is ever skipped: a position is recorded only after its event was handled, or
  after its failure was saved as a dead letter (in the same transaction as the position);
- after a clean stop (``poll`` and ``run`` record the position before returning), or a
  crash between two recorded positions, nothing is delivered twice;
- a crash (even SIGKILL) before a position was recorded delivers the events since the last
  recorded one again on restart — at most one page (``page_size`` events, 100 by default)
  — with the same ``Event.id`` and the same ``metadata["notification_id"]``, so a handler
  that must not act twice can skip ids it has already seen. Every follower gives the same
  store event the same ``Event.id``.

By default (``commit_every=None``) the position is recorded once per page: each time
``page_size`` events were delivered since it was last recorded, when ``poll`` returns, and
when ``run`` has found nothing new for a whole wait. One durable commit (one fsync) per
page rather than per event, so a follower keeps up with several writers; on SQLite, where
each commit takes the file's one write lock away from the writers, the record is tried
again every millisecond rather than in SQLite's busy handler
(:func:`atlas_eda.store.positions.record_position`). ``commit_every=N`` records it every
N events instead (and when ``poll`` or ``run`` returns, or ``run`` found nothing new for a
whole wait): ``commit_every=1`` gives at most the one interrupted event again after a crash, at the
price of an fsync per event.

Failed deliveries (see :class:`StoreFollower`): under the bus's ``"dead_letter"`` policy
each failure is saved at once as a durable dead letter
(:class:`~atlas_eda.store.dead_letters.FollowerDeadLetter`, in the store's database) and
the follower goes on; under ``"raise"`` the failure reaches the caller and the event is
delivered again, up to ``max_attempts`` (counted in the database, across restarts), after
which it becomes a dead letter; an event that cannot be decoded becomes one at once.

There are no background threads: :meth:`StoreFollower.poll` delivers what is there and
returns; :meth:`StoreFollower.run` polls until a timeout, a limit or a ``stop_event``.
On PostgreSQL ``run`` sleeps on ``LISTEN``/``NOTIFY`` (woken as soon as a writer commits);
on SQLite it polls every ``interval`` seconds (:data:`POLL_INTERVAL`, 50 ms, by default).
The follower reads the store only through its log API (``last_position``,
``notifications``, ``decode``, ``tracking_recorder``, ``listen_connection``) and turns
each event into bus data with :mod:`atlas_eda.document_events`, as the store itself does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError, Notification, Tracking

from .bus import EventBus
from .checks import check_count, is_int
from .dead_letters import DeadLetter
from .document_events import KINDS, bus_event, cause_of
from .errors import FollowerError, HandlerFailures, StoreURLError, UnknownEventError
from .events import Event
from .store import ENV_VAR, TemporalStore, persistence_settings, redact_url
from .store.dead_letters import DeadLetterTable, Failure, FollowerDeadLetter
from .store.positions import record_position
from .store.postgres import wait_for_notify

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["FOLLOWER_SOURCE", "POLL_INTERVAL", "StoreFollower"]

logger = logging.getLogger(__name__)

FOLLOWER_SOURCE = "atlas_eda.follower"
"""The ``source`` of every event a follower publishes."""

POLL_INTERVAL = 0.05
"""How long :meth:`StoreFollower.run` waits, by default, after a poll that found nothing
before it polls again (on SQLite; on PostgreSQL it is woken by ``NOTIFY`` before). What an
event committed during that wait adds to its lag: at most this, half of it on average. A
poll of an idle SQLite store is one indexed query, so 20 a second cost little."""

_LISTEN_CHECK_SECONDS = 0.1  # how often a wait on LISTEN looks at the stop event

MAX_ATTEMPTS = 3
"""How many times a follower delivers an event whose handlers fail before it keeps the
failure as a dead letter and goes on (the default of ``max_attempts``)."""

UNKNOWN_HANDLER = "<unknown handler>"
"""The handler a dead letter names when the bus kept no trace of the failed delivery."""


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
    ``metadata`` ``{"notification_id", "follower"}`` (and the ``traceparent`` and
    ``tracestate`` its writer recorded in the event's cause, if any); each is a root whose
    ``correlation_id`` is its own id, as the bus gives its roots. See the module docstring
    for the delivery guarantee, ``page_size`` and ``commit_every`` (``None``, the default:
    the position is recorded once per page; ``N``: every ``N`` events). Not thread-safe:
    drive a follower from one thread.

    A delivery whose handlers fail is acknowledged only once it is kept: under the bus's
    ``"dead_letter"`` policy each failure is saved as a dead letter with the new position
    (one transaction); under ``"raise"`` the :class:`HandlerFailures` reaches the caller
    and the position stays, until the ``max_attempts``-th attempt (default 3, counted in
    the store's database) saves them as dead letters and goes on; under ``"isolate"`` the
    bus handled the failure and the position moves on. See :meth:`dead_letters`,
    :meth:`retry_dead_letters` and :meth:`discard_dead_letter`.

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
        commit_every: int | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check_arguments(bus, name, page_size, commit_every, max_attempts)
        self.url = _followable(url)
        self.bus = bus
        self.name = name
        self.page_size = page_size
        self.commit_every = commit_every
        self.max_attempts = max_attempts
        self._clock = clock
        self._sleep = sleep
        self._store = TemporalStore(url=self.url, snapshot_interval=0, sleep=sleep)
        self._listener: Connection[Any] | None = None
        try:
            self._tracking = self._store.tracking_recorder()
            self._letters = DeadLetterTable(self._tracking)
            self._position = self._start_position(from_start)
            self._recorded = self._position
            self._unrecorded = 0  # events delivered since the position was last recorded
            # Attempts at events whose handlers failed, by position: durable for a named
            # follower, so that a restart goes on counting.
            self._attempts = {} if name is None else self._letters.retrying(name)
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

    def poll(self, limit: int | None = None, *, stop_event: threading.Event | None = None) -> int:
        """Deliver every event committed past the position (at most ``limit``), in log
        order; returns how many were delivered. Never blocks waiting for new events. Once
        ``stop_event`` is set it delivers no further event (the one under way finishes).
        The position is recorded before it returns."""
        if limit is not None and not is_int(limit):
            raise TypeError(f"limit must be an int or None, got {limit!r}.")
        try:
            return self._deliver_pages(limit, stop_event)
        finally:
            # Even when a publication raised: what was delivered before it stays delivered.
            self._record()

    def _deliver_pages(self, limit: int | None, stop_event: threading.Event | None) -> int:
        """Deliver pages of the log past the position until its end (or ``limit``, or
        ``stop_event`` set); the position is recorded every ``commit_every`` events, by
        default every page, but not at the end: the caller records it when it has caught
        up."""
        every = self.page_size if self.commit_every is None else self.commit_every
        delivered = 0
        while limit is None or delivered < limit:
            size = self.page_size if limit is None else min(self.page_size, limit - delivered)
            if self.commit_every is None:
                # Never more than one page unrecorded: all that a crash can repeat.
                size = min(size, self.page_size - self._unrecorded)
            page = self._store.notifications(self._position + 1, size, kinds=KINDS)
            for notification in page:
                if stop_event is not None and stop_event.is_set():
                    return delivered
                self._deliver(notification)
                delivered += 1
                if self._unrecorded >= every:
                    self._record()
            if len(page) < size:
                break
        return delivered

    run_once = poll

    def run(
        self,
        *,
        timeout: float | None = None,
        limit: int | None = None,
        stop_event: threading.Event | None = None,
        interval: float = POLL_INTERVAL,
        idle_timeout: float | None = None,
    ) -> int:
        """Poll until ``timeout`` seconds have passed, ``limit`` events were delivered,
        ``stop_event`` is set (checked between events too), or nothing new came for
        ``idle_timeout`` seconds (whichever is first; with none of them, forever). Returns
        how many were delivered. Between polls it waits up to ``interval`` seconds (on
        PostgreSQL it wakes as soon as a writer commits). The position is recorded per
        page, once nothing new came for a whole wait, and before it returns (see the
        module docstring). Time is read from the follower's ``clock``, and on SQLite it
        waits with its ``sleep`` (or on ``stop_event``, when given)."""
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}.")
        if limit is not None and not is_int(limit):
            raise TypeError(f"limit must be an int or None, got {limit!r}.")
        started = last_delivery = self._clock()
        delivered = 0
        caught_up = False
        try:
            while limit is None or delivered < limit:
                count = self._deliver_pages(
                    None if limit is None else limit - delivered, stop_event
                )
                delivered += count
                if stop_event is not None and stop_event.is_set():
                    break
                now = self._clock()
                if count:
                    last_delivery = now
                    caught_up = False
                    continue
                if caught_up:
                    # Nothing new for a whole wait: record the position now. While writers
                    # keep writing it is recorded once per page only (on SQLite each record
                    # takes the file's one write lock away from the writers).
                    self._record()
                caught_up = True
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
        finally:
            self._record()
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
        """Publish the event at ``notification``; its position moves only once it was
        handled, or once its failure was kept as a dead letter (see :meth:`_failed`)."""
        try:
            event = self._event(notification)
        except Exception as exc:  # kept as a dead letter (and logged), never swallowed
            failure = Failure.of(f"<decoding position {notification.id}>", exc)
            self._failed(notification, "", [failure], exc, attempts=1)
            return
        failures, error = self._publish(event)
        if failures:
            self._failed(notification, event.id, failures, error)
            return
        if self._attempts.pop(notification.id, None) is not None and self.name is not None:
            self._letters.forget_retrying(self.name, notification.id)
        self._position = notification.id
        self._unrecorded += 1

    def _event(self, notification: Notification) -> Event:
        """The bus event of the stored event ``notification`` holds."""
        stored = self._store.decode(notification)
        event_type, data = bus_event(stored)
        event_id = event_id_for(str(notification.originator_id), notification.originator_version)
        metadata: dict[str, Any] = {"notification_id": notification.id, "follower": self.name}
        cause = cause_of(stored)
        if cause is not None and cause.traceparent is not None:
            # The writer's trace goes on here (atlas_eda.telemetry continues it).
            metadata["traceparent"] = cause.traceparent
            if cause.tracestate is not None:
                metadata["tracestate"] = cause.tracestate
        return Event(
            type=event_type,
            data=data,
            id=event_id,
            timestamp=stored.timestamp.timestamp(),
            source=FOLLOWER_SOURCE,
            metadata=metadata,
            # A root, as the bus makes its roots: its own tree's correlation id.
            correlation_id=event_id,
        )

    def _publish(self, event: Event) -> tuple[list[Failure], Exception | None]:
        """Publish ``event``; the failures of its handlers (none: it was handled) and the
        exception the publication raised, if any. Under the bus's ``"dead_letter"``
        policy the failures are the letters the bus kept for it; under ``"raise"`` those
        of the :class:`HandlerFailures` it raised; under ``"isolate"`` there are none (the
        bus handled the failures: logged them and published ``ERROR`` events)."""
        keeps_letters = self.bus.failure_policy == "dead_letter"
        newest = _newest(self.bus.dead_letters) if keeps_letters else None
        try:
            self.bus.publish_event(event)
        except HandlerFailures as group:
            return self._named(event, group.exceptions), group
        except Exception as exc:  # a middleware, an EventCycleError ...: the delivery failed
            return [Failure.of(UNKNOWN_HANDLER, exc)], exc
        if not keeps_letters:
            return [], None
        kept: list[Failure] = []
        for letter in reversed(self.bus.dead_letters):
            if letter is newest:
                break
            if letter.event.id == event.id:
                kept.append(Failure.of(letter.handler_name, letter.error))
        return kept[::-1], None

    def _named(self, event: Event, errors: Sequence[BaseException]) -> list[Failure]:
        """A failure per exception of ``errors``, named after its handler from the bus's
        trace of ``event`` (:data:`UNKNOWN_HANDLER` when it kept none)."""
        names: dict[int, str] = {}
        if self.bus.traces:
            try:
                trace = self.bus.trace(event.id)
            except UnknownEventError:
                pass
            else:
                names = {id(d.error): d.handler for d in trace.deliveries if d.error is not None}
        return [Failure.of(names.get(id(exc), UNKNOWN_HANDLER), exc) for exc in errors]

    def _failed(
        self,
        notification: Notification,
        event_id: str,
        failures: list[Failure],
        error: Exception | None,
        *,
        attempts: int | None = None,
    ) -> None:
        """Count a failed attempt at ``notification``'s event. Under ``max_attempts`` (and
        with an ``error`` raised by the publication) the error is raised again: the
        position stays, the next poll delivers the event again. At ``max_attempts``, or
        at once for failures the bus kept as dead letters (``error`` is ``None``) and for
        an event that cannot be decoded, the failures become dead letters and the position
        moves past the event, both in one transaction; the follower goes on."""
        position = notification.id
        limit = 1 if error is None or attempts == 1 else self.max_attempts
        if self.name is None:
            made = self._attempts.get(position, 0) + 1
        else:
            try:
                made = self._letters.fail(
                    self.name,
                    position,
                    event_id=event_id,
                    topic=notification.topic,
                    failures=failures,
                    failed_at=time.time(),
                    max_attempts=limit,
                    tracking=Tracking(self.name, position),
                )
            except IntegrityError:
                raise _name_taken(self.name, position) from None
        if made < limit and error is not None:
            self._attempts[position] = made
            logger.warning(
                "follower %r: attempt %d of %d at position %d failed; it is delivered again",
                self.name,
                made,
                limit,
                position,
            )
            raise error
        self._attempts.pop(position, None)
        for failure in failures:
            logger.error(
                "follower %r gave up on position %d after %d attempt(s), kept as a dead "
                "letter: %s raised %s: %s",
                self.name,
                position,
                made,
                failure.handler,
                failure.error_type,
                failure.error_message,
            )
        self._position = self._recorded = position
        self._unrecorded = 0

    def commit(self) -> int:
        """Record the position durably now (it is recorded once per page, or every
        ``commit_every`` events, and whenever a poll returns); returns it. A transient
        follower (``name=None``) keeps it in memory only."""
        self._record()
        return self._position

    def _record(self) -> None:
        """Record the position durably, if it moved since it was last recorded."""
        if self._recorded == self._position:
            return
        if self.name is not None:
            try:
                record_position(
                    self._tracking, Tracking(self.name, self._position), sleep=self._sleep
                )
            except IntegrityError:
                raise _name_taken(self.name, self._position) from None
        self._recorded = self._position
        self._unrecorded = 0

    # -- dead letters --------------------------------------------------------------------

    def dead_letters(self) -> list[FollowerDeadLetter]:
        """This follower's dead letters, kept in the store's database, oldest first."""
        return self._letters.letters(self._named_only("dead letters"))

    def discard_dead_letter(self, letter_id: int) -> bool:
        """Delete this follower's dead letter ``letter_id``; whether there was one."""
        name = self._named_only("discarding dead letters")
        letter = self._letters.get(letter_id)
        return letter is not None and letter.follower == name and self._letters.discard(letter_id)

    def retry_dead_letters(self, ids: Iterable[int] | None = None) -> int:
        """Deliver again, on this follower's bus, the events of its dead letters (``ids``,
        or all), oldest first, read again from the store's log with the same
        ``Event.id``: every handler of the event's type receives it again, so handlers
        skip ids they have already handled (as with any redelivery). A letter whose event
        is now handled is deleted; one that fails again stays, with its new error and one
        more attempt. Returns how many letters were deleted. The position is not moved."""
        name = self._named_only("retrying dead letters")
        wanted = None if ids is None else set(ids)
        letters = [
            letter
            for letter in self._letters.letters(name)
            if wanted is None or letter.id in wanted
        ]
        if wanted is not None and (unknown := wanted - {letter.id for letter in letters}):
            raise ValueError(
                f"Follower {name!r} has no dead letter {', '.join(map(str, sorted(unknown)))}; "
                f"list them with dead_letters() (or atlas-eda dead-letters)."
            )
        done = 0
        for letter in letters:
            failure = self._redeliver(letter)
            if failure is None:
                self._letters.discard(letter.id)
                done += 1
            else:
                self._letters.failed_again(letter.id, failure, time.time())
        return done

    def _redeliver(self, letter: FollowerDeadLetter) -> Failure | None:
        """Publish the event of ``letter`` again; its failure, or ``None`` when handled."""
        page = self._store.notifications(letter.position, 1, stop=letter.position)
        if not page:
            return Failure(
                letter.handler, "PositionError", f"no event at position {letter.position}"
            )
        try:
            event = self._event(page[0])
        except Exception as exc:  # still undecodable: the letter stays
            return Failure.of(letter.handler, exc)
        failures, _ = self._publish(event)
        if not failures:
            return None
        same = [failure for failure in failures if failure.handler == letter.handler]
        return (same or failures)[0]

    def _named_only(self, what: str) -> str:
        if self.name is None:
            raise FollowerError(
                f"A follower without a name keeps no dead letters: {what} needs the "
                f"follower's name (StoreFollower(url, bus, name))."
            )
        return self.name

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


def _name_taken(name: str | None, position: int) -> FollowerError:
    return FollowerError(
        f"Follower {name!r} could not record position {position}: another follower with "
        f"the same name has already recorded it (run one process per name). Its events "
        f"were delivered here as well."
    )


def _newest(letters: list[DeadLetter]) -> DeadLetter | None:
    return letters[-1] if letters else None


def _check_arguments(
    bus: EventBus, name: str | None, page_size: int, commit_every: int | None, max_attempts: int
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
    check_count("page_size", page_size, minimum=1, type_error=ValueError)
    check_count("max_attempts", max_attempts, minimum=1, type_error=ValueError)
    if commit_every is not None and not (is_int(commit_every) and commit_every >= 1):
        raise ValueError(
            f"commit_every must be a positive int (record the position every N events) or "
            f"None (once per page, the default), got {commit_every!r}."
        )


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
