"""EventBus: synchronous, thread-safe publish/subscribe over blinker signals, with
middleware, bounded history, causation tracking, failure isolation and a depth guard."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, MutableSet
from dataclasses import dataclass
from enum import Enum
from time import time
from typing import Any, Literal

from blinker import ANY, Signal
from blinker.base import ANY_ID

from .effects import EffectHandler, EffectMonad
from .errors import (
    AtlasEdaError,
    EventCycleError,
    HandlerFailures,
    InvalidEventError,
    MiddlewareError,
    NoEffectHandlerError,
    UnknownEventError,
)
from .events import (
    EMPTY_METADATA,
    Event,
    EventDraft,
    EventType,
    _short,
    frozen_metadata,
    new_event_id,
    type_name,
)
from .trace import RUNNING, EventTrace, Owner, Record, build_trace, handler_name, running

__all__ = ["DeadLetter", "EventBus", "FailurePolicy", "Handler", "Middleware"]

logger = logging.getLogger(__name__)

Handler = Callable[[Event], Any]
"""A subscriber: called as ``handler(event)``; may return an ``EffectMonad`` to be run."""

Middleware = Callable[[Event], "Event | None"]
"""Called as ``middleware(event)``: returns the event to continue with, or ``None`` to drop it."""

# Errors that must reach the publisher: isolating them would hide a cycle or a
# misconfigured bus behind an ERROR event nobody may be listening to.
_PROPAGATING = (EventCycleError, NoEffectHandlerError)

_FRAMES_PER_LEVEL = 8

FailurePolicy = Literal["isolate", "raise", "dead_letter"]
"""What a failing handler does to a publish (see :class:`EventBus`)."""

_POLICIES: tuple[FailurePolicy, ...] = ("isolate", "raise", "dead_letter")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One failed delivery kept for inspection and retry: the event, the handler that
    raised (held strongly until the letter is retried away or cleared), its name, the
    exception, when it failed (``time.time()``) and how many times it has been tried.
    ``handler_name`` is the handler's ``__qualname__``, as in traces."""

    event: Event
    handler: Callable[[Event], Any]
    handler_name: str
    error: Exception
    failed_at: float
    attempts: int = 1


class _Gone(Exception):
    """Raised in place of a delivery whose receiver went away after its plan was made."""


def _gone(event: Event) -> None:
    raise _Gone


class _WeakCall:
    """Delivers to a weakly held receiver, or raises :class:`_Gone` once it is collected."""

    __slots__ = ("ref",)

    def __init__(self, ref: Callable[[], Handler | None]) -> None:
        self.ref = ref

    def __call__(self, event: Event) -> Any:
        target = self.ref()
        if target is None:
            raise _Gone
        return target(event)


class _Receiver:
    """One connected receiver as delivery plans hold it (internal). ``call`` delivers to
    it; when blinker's registry drops the receiver (disconnect, or clean-up of a
    collected weak one), :meth:`gone` makes every plan that holds it, including one a
    publish is iterating over, skip it instead of asking the registry on every delivery."""

    __slots__ = ("call", "entry", "plans")

    def __init__(self, entry: Any) -> None:
        self.entry = entry  # what blinker's registry holds: the receiver or a weak ref
        self.call: Callable[[Event], Any] = (
            _WeakCall(entry) if isinstance(entry, weakref.ref) else entry
        )
        # The plans holding ``call`` (weakly: a plan lives while cached or in use).
        self.plans: list[weakref.ref[_Calls]] = []

    def planned_in(self, calls: _Calls) -> None:
        """Note that ``calls`` holds this receiver (under the plan lock)."""
        self.plans = [ref for ref in self.plans if ref() is not None]
        self.plans.append(weakref.ref(calls))

    def gone(self) -> None:
        """Replace this receiver by :func:`_gone` in every plan (under the plan lock).
        Item assignment is atomic, so a publish iterating a plan on another thread sees
        either the receiver or its replacement."""
        self.call = _gone
        for ref in self.plans:
            calls = ref()
            if calls is not None:
                for index, receiver in enumerate(calls.receivers):
                    if receiver is self:
                        calls[index] = _gone
        self.plans = []


class _Calls(list[Callable[[Event], Any]]):
    """What one event type is delivered to, ready to call in order (internal), and the
    :class:`_Receiver` behind each call. A publish iterates the list itself (a list
    iterator reads items as it goes), so a receiver made gone meanwhile is skipped."""

    __slots__ = ("__weakref__", "receivers")

    def __init__(self, receivers: Iterable[_Receiver]) -> None:
        self.receivers = tuple(receivers)
        super().__init__(receiver.call for receiver in self.receivers)


def _handler_of(receiver: Callable[..., Any]) -> Callable[..., Any]:
    """The subscribed handler behind a plan's ``call`` (for reports and dead letters)."""
    if type(receiver) is _WeakCall:
        return receiver.ref() or receiver
    return receiver


def _failed(
    failures: list[tuple[Callable[..., Any], Exception]] | None,
    record: Record | None,
    receiver: Callable[..., Any],
    exc: Exception,
) -> list[tuple[Callable[..., Any], Exception]] | None:
    """What a delivery that raised ``exc`` leaves: ``failures`` (made if ``None``) with
    the handler behind ``receiver`` and ``exc`` added, and in a traced ``record`` the
    exception and the time the delivery ended; only ``("s", None)`` for a receiver that
    went away since the plan was made (unsubscribed or collected: not a failure)."""
    if type(exc) is _Gone:
        if record is not None:
            record.append(_SKIPPED)
        return failures
    if record is not None:
        record.append(("x", exc))
        record.append(time())
    if failures is None:
        failures = []
    failures.append((_handler_of(receiver), exc))
    return failures


Deliveries = tuple[tuple[_Receiver, str], ...]
"""A signal's ready-made delivery list: each receiver and its name, in connection order
(internal)."""

Plan = tuple[_Calls, tuple[str, tuple[str, ...]]]
"""What one event type is delivered to: its receivers, and the ``("n", names)`` entry
that trace logs carry (internal)."""

# Logged in place of a delivery that did not happen (its receiver went away meanwhile).
_SKIPPED = ("s", None)

_PREBUILT: Any = object()
"""What publish_event passes to publish as the event type, with the event as data."""


class _OrderedSet(MutableSet[Any]):
    """A set that iterates in insertion order; blinker's receiver buckets use it so that
    handlers run in subscription order (blinker's default ``set`` has no order)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items: dict[Any, None] = dict.fromkeys(items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, value: Any) -> None:
        self._items[value] = None

    def discard(self, value: Any) -> None:
        self._items.pop(value, None)

    def copy(self) -> _OrderedSet:
        # dict.copy is a single C call: a consistent snapshot even while another
        # thread subscribes, which is what blinker's receivers_for iterates over.
        new = _OrderedSet()
        new._items = self._items.copy()
        return new


class _PlanCache:
    """A bus's delivery plans, one per event type: the receivers of the type's signal and
    of the every-type signal, ready to call. Any change to either signal (connect,
    disconnect, blinker's clean-up of a collected weak receiver, mute) drops them all."""

    __slots__ = ("keep", "lock", "plans", "version")

    def __init__(self) -> None:
        self.plans: dict[int, Plan] = {}
        # The event types whose ids key ``plans``: alive, so that no id is reused.
        self.keep: dict[int, Enum] = {}
        self.version = 0
        # Re-entrant: dropping a plan may free a handler whose finaliser triggers
        # blinker's weak-reference clean-up, which invalidates again on this thread.
        self.lock = threading.RLock()

    def invalidate(self) -> None:
        with self.lock:
            self.version += 1
            self.plans.clear()
            self.keep.clear()


class _OrderedSignal(Signal):
    """A blinker ``Signal`` whose receivers are called in the order they connected, and
    which keeps a ready-made delivery list: blinker stays the registry of receivers (weak
    references, ``connected_to``, ``muted``), while a publish reuses the list instead of
    copying receiver sets and resolving ids on every send. Any connect or disconnect,
    including blinker's own clean-up of a collected weak receiver, and muting, drops the
    list and the plans of the bus that owns the signal."""

    set_class = _OrderedSet  # type: ignore[assignment]

    def __init__(self, plans: _PlanCache, doc: str | None = None) -> None:
        # Set before blinker's __init__, which assigns is_muted (see the property).
        self._plans = plans
        self._deliveries: Deliveries | None = None
        self._held: dict[Hashable, _Receiver] = {}
        self._version = 0
        self._muted = False
        super().__init__(doc)

    @property
    def is_muted(self) -> bool:
        """Whether blinker's ``muted()`` is in effect: nothing is delivered."""
        return self._muted

    @is_muted.setter
    def is_muted(self, value: bool) -> None:
        self._muted = value
        self._invalidate()

    def connect(self, receiver: Any, sender: Any = ANY, weak: bool = True) -> Any:
        try:
            return super().connect(receiver, sender, weak)
        finally:
            self._invalidate()

    def disconnect(self, receiver: Callable[..., Any], sender: Any = ANY) -> None:
        try:
            super().disconnect(receiver, sender)
        finally:
            self._invalidate()

    def _disconnect(self, receiver_id: Hashable, sender_id: Hashable) -> None:
        # Every removal from blinker's registry comes through here: disconnect() and the
        # weak-reference clean-up (which sends no receiver_disconnected).
        try:
            super()._disconnect(receiver_id, sender_id)
        finally:
            with self._plans.lock:  # not while deliveries() is building from the registry
                if receiver_id not in self.receivers:
                    held = self._held.pop(receiver_id, None)
                    if held is not None:
                        held.gone()
            self._invalidate()

    def _invalidate(self) -> None:
        self._version += 1
        self._deliveries = None
        self._plans.invalidate()

    def deliveries(self) -> Deliveries:
        """``(receiver, name)`` for each receiver connected for any sender, in
        connection order."""
        cached = self._deliveries
        if cached is None:
            version = self._version
            items = []
            receivers = self.receivers
            held = self._held
            # Under the lock _disconnect takes: a receiver it drops meanwhile is either
            # not seen here or made gone there, never kept in a plan as live.
            with self._plans.lock:
                for receiver_id in self._by_sender[ANY_ID].copy():
                    entry = receivers.get(receiver_id)
                    if entry is None:
                        continue
                    target = entry() if isinstance(entry, weakref.ref) else entry
                    if target is None:
                        continue
                    receiver = held.get(receiver_id)
                    if receiver is None or receiver.entry is not entry:
                        # New, or connected again (blinker then holds a new weak ref;
                        # the old one still reaches the same receiver: it is not gone).
                        receiver = held[receiver_id] = _Receiver(entry)
                    items.append((receiver, handler_name(target)))
            cached = tuple(items)
            if version == self._version:  # nothing connected meanwhile: safe to keep
                self._deliveries = cached
        return cached


def _callable_name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)


class EventBus:
    """Publishes events synchronously to the handlers subscribed to their type.

    Handlers run in subscription order on the publishing thread, with no lock held; one
    handler's failure is logged and published once as an ``EventType.ERROR`` event while
    the others still run. Then ``failure_policy`` decides: ``"isolate"`` (the default)
    returns normally; ``"raise"`` raises :class:`HandlerFailures`, an ``ExceptionGroup``
    of every failure, once all handlers have run; ``"dead_letter"`` returns normally and
    keeps each failed delivery in :attr:`dead_letters` (the newest
    ``dead_letter_limit``) for inspection and :meth:`retry_dead_letters`.

    Events published from inside a handler carry the parent's id as ``causation_id``
    and the root's ``correlation_id``; nesting deeper than ``max_depth`` raises
    :class:`EventCycleError`. The newest ``history_limit`` events are kept, each with its
    trace (see :meth:`trace`) unless ``traces=False``.
    """

    def __init__(
        self,
        history_limit: int = 1000,
        *,
        effect_handler: EffectHandler | None = None,
        max_depth: int = 64,
        traces: bool = True,
        failure_policy: FailurePolicy = "isolate",
        dead_letter_limit: int = 1000,
    ) -> None:
        if isinstance(history_limit, bool) or not isinstance(history_limit, int):
            raise TypeError(f"history_limit must be an int, got {history_limit!r}.")
        if history_limit < 0:
            raise ValueError(f"history_limit must be 0 or more, got {history_limit}.")
        if isinstance(max_depth, bool) or not isinstance(max_depth, int):
            raise TypeError(f"max_depth must be an int, got {max_depth!r}.")
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, got {max_depth}.")
        # Each nesting level costs a handful of interpreter frames: past this ceiling the
        # interpreter's RecursionError would strike before the depth guard could.
        ceiling = sys.getrecursionlimit() // _FRAMES_PER_LEVEL
        if max_depth > ceiling:
            raise ValueError(
                f"max_depth={max_depth} is deeper than Python's recursion limit "
                f"({sys.getrecursionlimit()}) allows; use at most {ceiling}, or raise the limit "
                f"with sys.setrecursionlimit first."
            )
        if failure_policy not in _POLICIES:
            raise ValueError(
                f"failure_policy must be one of {', '.join(map(repr, _POLICIES))}, got "
                f"{failure_policy!r}."
            )
        if isinstance(dead_letter_limit, bool) or not isinstance(dead_letter_limit, int):
            raise TypeError(f"dead_letter_limit must be an int, got {dead_letter_limit!r}.")
        if dead_letter_limit < 1:
            raise ValueError(f"dead_letter_limit must be at least 1, got {dead_letter_limit}.")
        self.effect_handler = effect_handler
        self._max_depth = max_depth
        self._policy: FailurePolicy = failure_policy
        self._dead_letters: deque[DeadLetter] = deque(maxlen=dead_letter_limit)
        self._traces = traces
        self._history: deque[Record] = deque(maxlen=history_limit)
        self._signals: dict[Enum, _OrderedSignal] = {}
        # Plans are keyed by id(event type): an int hashes far faster than an Enum member
        # (whose __hash__ is Python code).
        self._plan_cache = _PlanCache()
        self._plans = self._plan_cache.plans
        self._all = _OrderedSignal(self._plan_cache, "every event, whatever its type")
        self._middleware: tuple[Middleware, ...] = ()
        self._watchers: tuple[Callable[[EventTrace], Any], ...] = ()
        self._lock = threading.Lock()  # subscriptions, middleware and signal creation
        # Marks this bus's records among those running on a thread (see trace.RUNNING).
        self._owner = Owner(traces)

    @property
    def history_limit(self) -> int:
        """How many of the newest events the history keeps."""
        return self._history.maxlen or 0

    @property
    def traces(self) -> bool:
        """Whether deliveries and effects are recorded for :meth:`trace`."""
        return self._traces

    @property
    def failure_policy(self) -> FailurePolicy:
        """What a failing handler does to a publish: ``"isolate"``, ``"raise"`` or
        ``"dead_letter"`` (see the class docstring)."""
        return self._policy

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """The failed deliveries kept by ``failure_policy="dead_letter"``, oldest first
        (at most ``dead_letter_limit``: the oldest are dropped first)."""
        return list(self._dead_letters)

    def clear_dead_letters(self) -> None:
        """Forget every dead letter."""
        self._dead_letters.clear()

    def retry_dead_letters(self) -> int:
        """Deliver each dead letter's event again to the handler that failed on it, as the
        bus delivers (events it publishes are children of that event, effects it returns
        are performed); returns how many succeeded. A letter that succeeds leaves the
        list; one that fails again stays, with its new error and one more attempt."""
        letters = list(self._dead_letters)
        done = 0
        for letter in letters:
            stack = running()
            own = self._own_records(stack)
            if len(own) >= self._max_depth:
                raise EventCycleError(
                    f"Retrying a dead letter {len(own)} events deep exceeds max_depth="
                    f"{self._max_depth}; retry dead letters outside handlers.",
                    tuple(type_name(r[0].type) for r in own),
                )
            # A record of its own, not kept: the retried handler's children get the
            # letter's event as their parent, as they would have the first time.
            stack.append([letter.event, self._owner])
            try:
                result = letter.handler(letter.event)
                if result is not None and isinstance(result, EffectMonad):
                    self._run_effects(letter.handler, letter.event, result)
            except _PROPAGATING:
                raise
            except Exception as exc:
                logger.warning("dead letter retry: %s failed again: %s", letter.handler_name, exc)
                replaced = dataclasses.replace(letter, error=exc, attempts=letter.attempts + 1)
                self._replace_letter(letter, replaced)
                continue
            finally:
                stack.pop()
            self._replace_letter(letter, None)
            done += 1
        return done

    def _replace_letter(self, letter: DeadLetter, replacement: DeadLetter | None) -> None:
        letters = self._dead_letters
        for index, candidate in enumerate(letters):
            if candidate is letter:
                if replacement is None:
                    del letters[index]
                else:
                    letters[index] = replacement
                return

    def _apply_policy(
        self, event: Event, failures: list[tuple[Callable[..., Any], Exception]]
    ) -> HandlerFailures | None:
        if self._policy == "dead_letter":
            for receiver, exc in failures:
                self._dead_letters.append(
                    DeadLetter(event, receiver, handler_name(receiver), exc, time())
                )
            return None
        if self._policy == "raise":
            names = ", ".join(_callable_name(receiver) for receiver, _ in failures)
            return HandlerFailures(
                f"{len(failures)} handler(s) failed on {event!r}: {names}. Every other "
                f"handler ran; the failures were also published as ERROR events.",
                [exc for _, exc in failures],
                event.id,
            )
        return None

    @property
    def max_depth(self) -> int:
        """How deeply publishes may nest inside handlers before :class:`EventCycleError`."""
        return self._max_depth

    # -- subscriptions ---------------------------------------------------------------

    def get_signal(self, event_type: Enum) -> Signal:
        """The blinker ``Signal`` behind ``event_type`` (created on first use); its
        ``connected_to`` and ``muted`` context managers work as blinker documents."""
        _check_type(event_type)
        signal = self._signals.get(event_type)
        if signal is None:
            with self._lock:
                signal = self._signals.get(event_type)
                if signal is None:
                    signal = _OrderedSignal(
                        self._plan_cache, f"atlas_eda events of type {type_name(event_type)}"
                    )
                    self._signals[event_type] = signal
                    self._plan_cache.invalidate()
        return signal

    def subscribe(
        self, event_type: Enum, handler: Handler, *, weak: bool = False
    ) -> Callable[[], None]:
        """Call ``handler(event)`` for every event of ``event_type``, after the handlers
        subscribed before it. Returns the function that unsubscribes it; calling that
        again does nothing (it never removes a later subscription of the same handler).
        The bus holds the handler strongly unless ``weak=True``."""
        return self._connect(self.get_signal(event_type), handler, weak)

    def subscribe_all(self, handler: Handler, *, weak: bool = False) -> Callable[[], None]:
        """Call ``handler(event)`` for every event of any type, after that type's own
        subscribers. Returns the function that unsubscribes it."""
        return self._connect(self._all, handler, weak)

    def _connect(self, signal: Signal, handler: Handler, weak: bool) -> Callable[[], None]:
        if not callable(handler):
            raise TypeError(f"A handler must be callable as handler(event), got {handler!r}.")
        if weak:
            try:
                ref: Callable[[], Handler | None] = (
                    weakref.WeakMethod(handler)
                    if inspect.ismethod(handler)
                    else weakref.ref(handler)
                )
            except TypeError:
                raise TypeError(
                    f"{handler!r} cannot be weakly referenced; subscribe it with weak=False."
                ) from None
        with self._lock:
            signal.connect(handler, weak=weak)
        if not weak:
            ref = _StrongRef(handler)
        del handler  # the unsubscribe closure must not keep a weak handler alive
        subscribed = [True]  # unsubscribing twice must not undo a later re-subscription

        def unsubscribe() -> None:
            with self._lock:
                if not subscribed:
                    return
                subscribed.clear()
                target = ref()
                if target is not None:
                    signal.disconnect(target)

        return unsubscribe

    # -- middleware --------------------------------------------------------------------

    def add_middleware(self, middleware: Middleware) -> Callable[[], None]:
        """Run ``middleware(event)`` on every event before it is recorded or delivered,
        after the middleware added earlier. Returning ``None`` drops the event. Returns
        the function that removes it."""
        if not callable(middleware):
            raise TypeError(f"Middleware must be callable as fn(event), got {middleware!r}.")
        with self._lock:
            self._middleware = (*self._middleware, middleware)

        def remove() -> None:
            with self._lock:
                items = list(self._middleware)
                if middleware in items:
                    items.remove(middleware)
                    self._middleware = tuple(items)

        return remove

    # -- publishing --------------------------------------------------------------------

    def publish(
        self,
        event_type: Enum,
        data: Any = None,
        source: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Build an event and publish it; returns its id. Inside a handler, the new
        event is a child of the event being handled (causation and correlation ids)."""
        # The hot path, kept in one frame: publish_event passes _PREBUILT and its event
        # as ``data`` rather than calling a shared helper, as a call costs a few percent of
        # a whole publish. Events are built from fields checked here rather than through
        # Event()'s checks (see events.EventDraft; tests hold the two equal).
        try:
            stack: list[Record] = RUNNING.stack
        except AttributeError:
            stack = running()
        owner = self._owner
        parent: Record | None = None
        if stack:  # nested: the parent is this bus's innermost record on this thread
            parent = stack[-1]
            if parent[1] is not owner:
                parent = self._own_parent(stack)
        if event_type is _PREBUILT:
            event: Event = data
            plan = None
            now = time()
        else:
            try:
                plan = self._plans[id(event_type)]
            except KeyError:  # a type with a plan was checked when it was planned
                plan = None
                _check_type(event_type)
            if metadata is None:
                meta: Mapping[str, Any] = EMPTY_METADATA
            elif isinstance(metadata, Mapping):
                meta = frozen_metadata(metadata)
            else:
                raise InvalidEventError(
                    f"metadata must be a mapping (for example a dict), got "
                    f"{type(metadata).__name__}."
                )
            draft = EventDraft()
            draft.type = event_type
            draft.data = data
            draft.id = next(new_event_id.ids)
            draft.timestamp = now = time()
            draft.source = source
            draft.metadata = meta
            if parent is None:
                draft.correlation_id = draft.id
                draft.causation_id = None
            else:
                cause = parent[0]
                draft.correlation_id = cause.correlation_id or cause.id
                draft.causation_id = cause.id
            draft.__class__ = Event  # type: ignore[assignment]
            event = draft  # type: ignore[assignment]
        if parent is not None and len(stack) >= self._max_depth:
            self._check_depth(stack, event.type)
        if self._middleware:
            transformed = self._through_middleware(event)
            if transformed is None:
                return event.id  # dropped: the id of the event received
            event = transformed
            now = time()  # the first delivery's time leaves the middleware's out
            plan = None  # planned after the middleware ran (it may have changed the type)
        if plan is None:
            plan = self._plans.get(id(event.type)) or self._plan(event.type)
        calls, names = plan
        tracing = owner.traces
        if tracing:
            # When the deliveries started (the event's own timestamp, unless prebuilt),
            # then who they are; each delivery logs the time it ended.
            record: Record = [event, owner, now, names]
            if parent is not None:
                parent.append(("c", event.id))
        else:
            record = [event, owner]
        # deque.append is atomic (one C call under the GIL, or the deque's own lock on
        # free-threaded builds): publishers need no lock, readers copy (see _snapshot).
        self._history.append(record)
        failures: list[tuple[Callable[..., Any], Exception]] | None = None
        propagating: Exception | None = None
        stack.append(record)
        try:
            # Two copies of the loop, so that an untraced bus tests nothing per delivery.
            # A handler returning None takes the shortest way round; the rare cases are
            # calls out, which keeps each loop short enough for CPython to jump back
            # without an EXTENDED_ARG on every iteration.
            if tracing:
                for receiver in calls:
                    try:
                        result = receiver(event)
                        if result is None:
                            record.append(time())
                            continue
                        self._returned(receiver, event, result)
                    except Exception as exc:
                        failures = _failed(failures, record, receiver, exc)
                        continue
                    record.append(time())
            else:
                for receiver in calls:
                    try:
                        result = receiver(event)
                        if result is None:
                            continue
                        self._returned(receiver, event, result)
                    except Exception as exc:
                        failures = _failed(failures, None, receiver, exc)
            # A traced exception's traceback keeps this frame and its locals: pin no handler.
            receiver = result = None  # type: ignore[assignment]
            if failures:
                propagating = self._settle(event, failures)
        finally:
            stack.pop()
            if parent is None and self._watchers:
                self._tell_watchers(record)
        if propagating is not None:
            raise propagating
        return event.id

    def publish_event(self, event: Event) -> str:
        """Publish a prebuilt event as it is (id, timestamp and ids kept, as replay
        needs); returns its id."""
        if not isinstance(event, Event):
            raise InvalidEventError(
                f"publish_event needs an atlas_eda.Event, got {type(event).__name__}; "
                f"use publish(event_type, data) to build one."
            )
        _check_type(event.type)
        return self.publish(_PREBUILT, event)

    def _through_middleware(self, event: Event) -> Event | None:
        """``event`` as the middleware leaves it, in order; ``None`` if one dropped it."""
        received_id = event.id
        for middleware in self._middleware:
            try:
                transformed = middleware(event)
            except Exception as exc:
                raise _middleware_raised(middleware, event, exc) from exc
            if transformed is not event:  # the common pass-through needs no check
                if transformed is None:
                    logger.debug("event %s dropped by middleware %s", received_id, middleware)
                    return None
                if not isinstance(transformed, Event):
                    raise _middleware_returned(middleware, transformed)
                event = transformed
        return event

    def _own_parent(self, stack: list[Record]) -> Record | None:
        """This bus's innermost record on ``stack`` (another bus's delivery may be running
        inside it), or ``None``: then an event published now is a root for this bus."""
        owner = self._owner
        for record in reversed(stack):
            if record[1] is owner:
                return record
        return None

    def _own_records(self, stack: list[Record]) -> list[Record]:
        return [record for record in stack if record[1] is self._owner]

    def _check_depth(self, stack: list[Record], event_type: Enum) -> None:
        """Raise :class:`EventCycleError` when this bus already has ``max_depth`` events
        under delivery on this thread (other buses' deliveries do not count)."""
        own = self._own_records(stack)
        if len(own) >= self._max_depth:
            raise self._too_deep(own, event_type)

    def _too_deep(self, stack: list[Record], event_type: Enum) -> EventCycleError:
        chain = (*(type_name(r[0].type) for r in stack), type_name(event_type))
        return EventCycleError(
            f"Publishing {type_name(event_type)} would nest {len(chain)} events deep "
            f"(max_depth={self._max_depth}); handlers are publishing each other's events "
            f"in a loop: {_describe_chain(chain)}. Break the loop, or raise max_depth if "
            f"the nesting is intended.",
            chain,
        )

    def watch(self, callback: Callable[[EventTrace], Any]) -> Callable[[], None]:
        """Call ``callback(trace)`` each time a root event (one published outside any
        handler) and everything it caused have been handled, with the root's
        :class:`EventTrace`; returns the function that stops it. A callback that raises is
        logged and does not affect the publisher. Needs ``traces=True``."""
        if not self._traces:
            raise ValueError(
                "watch needs traces: this bus was created with EventBus(traces=False)."
            )
        if not callable(callback):
            raise TypeError(f"watch needs a callable callback(trace), got {callback!r}.")
        with self._lock:
            self._watchers = (*self._watchers, callback)

        def stop() -> None:
            with self._lock:
                self._watchers = tuple(w for w in self._watchers if w is not callback)

        return stop

    def _tell_watchers(self, record: Record) -> None:
        # Built from the root's own record: it may already have left a small history,
        # and descendants that did are counted in the trace's ``missing``.
        trace = build_trace(record, self._newer_than(record).get)
        event_id = record[0].id
        for watcher in self._watchers:
            try:
                watcher(trace)
            except Exception:
                logger.exception("bus watcher %s failed on %s", _callable_name(watcher), event_id)

    def _plan(self, event_type: Enum) -> Plan:
        """Who receives events of ``event_type``: the type's own subscribers, then the
        every-type subscribers, leaving out a muted signal's. Kept until a signal changes.
        Built under the plan lock, which removals take too: a receiver dropped meanwhile
        is either left out here or made gone in the plan (see _Receiver.gone)."""
        cache = self._plan_cache
        with cache.lock:
            version = cache.version
            receivers: list[_Receiver] = []
            names: list[str] = []
            for signal in (self._signals.get(event_type), self._all):
                if signal is None or signal.is_muted:
                    continue
                for receiver, name in signal.deliveries():
                    receivers.append(receiver)
                    names.append(name)
            calls = _Calls(receivers)
            for receiver in receivers:
                receiver.planned_in(calls)
            plan: Plan = (calls, ("n", tuple(names)))
            if cache.version == version:  # nothing changed meanwhile: safe to keep
                cache.plans[id(event_type)] = plan
                cache.keep[id(event_type)] = event_type
        return plan

    def _settle(
        self, event: Event, failures: list[tuple[Callable[..., Any], Exception]]
    ) -> Exception | None:
        """Deal with the handlers that raised while ``event`` was delivered; returns what
        publish must raise: the first error that always propagates (a cycle, a missing
        effect handler), else what the failure policy raises, else None."""
        propagating = next((exc for _, exc in failures if isinstance(exc, _PROPAGATING)), None)
        failed = [(handler, exc) for handler, exc in failures if not isinstance(exc, _PROPAGATING)]
        failures.clear()  # a traced exception's traceback keeps the list: pin no handler
        if not failed:
            return propagating
        self._report(event, failed)
        group = self._apply_policy(event, failed)
        failed.clear()
        return propagating if propagating is not None else group

    def _returned(self, receiver: Callable[..., Any], event: Event, result: object) -> None:
        """Perform the effects of an ``EffectMonad`` a handler returned; any other value
        a handler returns is ignored."""
        if isinstance(result, EffectMonad):
            self._run_effects(_handler_of(receiver), event, result)

    def _run_effects(
        self, receiver: Callable[..., Any], event: Event, monad: EffectMonad[Any]
    ) -> None:
        handler = self.effect_handler
        if handler is None:
            raise NoEffectHandlerError(
                f"Handler {_callable_name(receiver)} returned an EffectMonad for {event!r}, "
                f"but this EventBus has no effect_handler to perform its effects. Create the bus "
                f"with EventBus(effect_handler=EffectHandler(...)) or set bus.effect_handler."
            )
        monad.run(handler)

    def _report(self, event: Event, failures: list[tuple[Callable[..., Any], Exception]]) -> None:
        for receiver, exc in failures:
            name = _callable_name(receiver)
            logger.error(
                "handler %s failed on %s: %s: %s",
                name,
                event,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            if event.type is EventType.ERROR:
                continue  # a failure while handling an ERROR is only logged: no loops
            try:
                self.publish(
                    EventType.ERROR,
                    {
                        "event_id": event.id,
                        "event_type": type_name(event.type),
                        "handler": name,
                        "error_type": type(exc).__name__,
                        "error_message": str(exc),
                    },
                    source="atlas_eda.bus",
                )
            except AtlasEdaError as report_error:
                logger.error("could not publish the ERROR event for %s: %s", name, report_error)

    # -- history -----------------------------------------------------------------------

    def get_history(self, event_type: Enum | None = None, limit: int | None = 100) -> list[Event]:
        """The recorded events, newest first: at most ``limit`` (all with ``None``), only
        those of ``event_type`` when given."""
        snapshot = self._snapshot()
        newest_first: Iterable[Event] = (r[0] for r in reversed(snapshot))
        if event_type is not None:
            newest_first = (e for e in newest_first if e.type == event_type)
        result = list(newest_first)
        return result if limit is None else result[: max(limit, 0)]

    def clear_history(self) -> None:
        """Forget every recorded event and its trace."""
        self._history.clear()

    def _snapshot(self) -> deque[Record]:
        """A consistent copy of the history, taken without stopping publishers."""
        while True:
            try:
                # One C call that runs no Python code: atomic under the GIL. Should an
                # interpreter ever interleave an append, the copy raises and is retried.
                return self._history.copy()
            except RuntimeError:  # pragma: no cover - "deque mutated during iteration"
                continue

    def trace(self, event_id: str) -> EventTrace:
        """What happened because of the event ``event_id``: each delivery (handler,
        duration, outcome), each effect performed during it (result or error), and the
        child events it caused, recursively. Traces are kept as long as the event is in
        the history; :class:`UnknownEventError` otherwise."""
        if not self._traces:
            raise UnknownEventError(
                f"No trace of event {event_id!r}: this bus records no traces (it was created "
                f"with EventBus(traces=False)). Create the bus with traces=True (the default) "
                f"to trace its events."
            )
        # Looked up when asked for, so publishing maintains no index.
        snapshot = self._snapshot()
        for record in reversed(snapshot):
            if record[0].id == event_id:
                return build_trace(record, self._newer_than(record, snapshot).get)
        limit = self.history_limit
        kept = f"the newest {limit} events" if limit else "no events: history_limit=0"
        raise UnknownEventError(
            f"Event {event_id!r} is not in this bus's history (it keeps {kept}); traces "
            f"exist only for events still there. Read the trace sooner, or create the bus "
            f"with a larger history_limit."
        )

    def _newer_than(
        self, record: Record, snapshot: deque[Record] | None = None
    ) -> dict[str, Record]:
        """The records after ``record`` in the history (or in ``snapshot`` of it), by
        event id: where its descendants are, since they are recorded after it (the newest
        entry wins should an event be published twice). All of them if ``record`` has
        left the history."""
        newer: list[Record] = []
        for candidate in reversed(self._snapshot() if snapshot is None else snapshot):
            if candidate is record:
                break
            newer.append(candidate)
        return {r[0].id: r for r in reversed(newer)}

    def __repr__(self) -> str:
        return (
            f"EventBus(history={len(self._history)}/{self.history_limit}, "
            f"types={len(self._signals)}, middleware={len(self._middleware)})"
        )


class _StrongRef:
    """Quacks like a weak reference but holds its target strongly."""

    __slots__ = ("_target",)

    def __init__(self, target: Handler) -> None:
        self._target = target

    def __call__(self) -> Handler:
        return self._target


def _middleware_raised(middleware: Middleware, event: Event, exc: Exception) -> MiddlewareError:
    return MiddlewareError(
        f"Middleware {_callable_name(middleware)} raised {type(exc).__name__}: {exc} "
        f"on {event!r}; the event was neither recorded nor delivered. Fix or remove "
        f"the middleware (add_middleware returns its remover)."
    )


def _middleware_returned(middleware: Middleware, result: object) -> MiddlewareError:
    return MiddlewareError(
        f"Middleware {_callable_name(middleware)} returned {type(result).__name__}; a "
        f"middleware must return an Event (e.g. dataclasses.replace(event, ...)) or None "
        f"to drop it. The event was neither recorded nor delivered."
    )


def _check_type(event_type: object) -> None:
    if not isinstance(event_type, Enum):
        raise InvalidEventError(
            f"An event type must be an enum.Enum member (for example EventType.DOCUMENT_CREATED "
            f"or a member of your own Enum), got {_short(event_type)} of type "
            f"{type(event_type).__name__}."
        )


def _describe_chain(chain: tuple[str, ...]) -> str:
    """The chain as ``A → B → A → …``, shortened to its repeating cycle when it has one."""
    for period in range(1, len(chain) // 2 + 1):
        tail = chain[-period:]
        if chain[-2 * period : -period] == tail:
            cycle = " → ".join((*tail, tail[0]))
            return f"cycle {cycle} (chain of {len(chain)}: {' → '.join(chain[:6])} …)"
    return " → ".join(chain)
