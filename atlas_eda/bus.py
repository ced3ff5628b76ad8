"""EventBus: synchronous, thread-safe publish/subscribe over blinker signals, with
middleware, bounded history, causation tracking, failure isolation and a depth guard.

The bus is a face over small parts, each in its own module: its receivers and delivery
plans (:mod:`~atlas_eda.subscriptions`), delivering an event (:mod:`~atlas_eda.dispatch`,
the hot path, whose ``publish`` and ``publish_event`` the bus inherits), its history and
watchers (:mod:`~atlas_eda.history`), its dead letters (:mod:`~atlas_eda.dead_letters`)
and the trace records they share (:mod:`~atlas_eda.trace`)."""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from types import FrameType
from typing import Any, TypeVar, overload

from blinker import Signal

from .checks import check_count
from .commands import Requests, request_kind
from .dead_letters import DeadLetter, DeadLetters
from .dispatch import POLICIES, Dispatcher, FailurePolicy, Middleware, refuse_request_type
from .effects import EffectHandler
from .emits import EmitCheck, declare
from .errors import InvalidArgumentError, UnknownEventError
from .events import Event, check_event_type, type_name
from .graph import EventGraph, GraphSource, graph_from
from .history import History, Watcher
from .subscriptions import Handler, Once, Subscriptions, check_synchronous
from .trace import EventTrace, Record, innermost_own, running
from .views import short_repr

__all__ = ["DeadLetter", "EventBus", "FailurePolicy", "Handler", "Middleware", "check_bus"]

# Each nesting level costs a handful of interpreter frames: max_depth may not exceed the
# recursion limit divided by this, or the interpreter's RecursionError would strike
# before the depth guard could.
FRAMES_PER_LEVEL = 8

MAX_DEPTH = 64
"""How deeply publishes may nest inside handlers by default before
:class:`EventCycleError`: far deeper than any intended chain of events, and reached by a
loop long before the interpreter's recursion limit."""

CLOSE_TIMEOUT = 10.0
"""How many seconds :meth:`EventBus.close` waits by default for the deliveries under way
on other threads."""

# How often close() looks again at the deliveries it waits for.
_CLOSE_POLL_SECONDS = 0.01

logger = logging.getLogger("atlas_eda.bus")

H = TypeVar("H", bound=Handler)

_DECORATE: Any = object()  # subscribe's handler when none is given: it is then a decorator


class EventBus(Dispatcher):
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

    Handlers may declare what they publish or send (``emits=`` on :meth:`subscribe` and
    :meth:`handle`): :meth:`graph` draws the declarations, :meth:`check` finds their
    cycles before anything runs, and a declaring handler that emits another type is
    warned about once per type, or refused with :class:`UndeclaredEmitError` when
    ``strict_graph=True``.
    """

    def __init__(
        self,
        history_limit: int = 1000,
        *,
        effect_handler: EffectHandler | None = None,
        max_depth: int = MAX_DEPTH,
        traces: bool = True,
        failure_policy: FailurePolicy = "isolate",
        dead_letter_limit: int = 1000,
        strict_graph: bool = False,
    ) -> None:
        check_count("history_limit", history_limit)
        _check_max_depth(max_depth)
        if failure_policy not in POLICIES:
            raise ValueError(
                f"failure_policy must be one of {', '.join(map(repr, POLICIES))}, got "
                f"{failure_policy!r}."
            )
        check_count("dead_letter_limit", dead_letter_limit, minimum=1)
        if not isinstance(strict_graph, bool):
            raise InvalidArgumentError(
                f"strict_graph must be True or False, got {short_repr(strict_graph)}."
            )
        super().__init__(
            Subscriptions(),
            History(history_limit),
            DeadLetters(dead_letter_limit),
            effect_handler=effect_handler,
            max_depth=max_depth,
            traces=traces,
            failure_policy=failure_policy,
        )
        self._all = self._subscriptions.every
        self._lock = threading.Lock()  # middleware, record collectors
        self._collectors: tuple[list[Record], ...] = ()
        self._requests = Requests(self._owner, self._history, self._watchers, max_depth)
        self._emit_check = EmitCheck(strict_graph)
        self._graph_sources: tuple[GraphSource, ...] = ()

    @property
    def history_limit(self) -> int:
        """How many of the newest events the history keeps."""
        return self._history.limit

    @property
    def traces(self) -> bool:
        """Whether deliveries and effects are recorded for :meth:`trace`."""
        return self._owner.traces

    @property
    def failure_policy(self) -> FailurePolicy:
        """What a failing handler does to a publish: ``"isolate"``, ``"raise"`` or
        ``"dead_letter"`` (see the class docstring)."""
        return self._policy

    @property
    def max_depth(self) -> int:
        """How deeply publishes may nest inside handlers before :class:`EventCycleError`."""
        return self._max_depth

    # -- subscriptions ---------------------------------------------------------------

    def get_signal(self, event_type: Enum) -> Signal:
        """The blinker ``Signal`` behind ``event_type`` (created on first use); its
        ``connect``, ``connected_to`` and ``muted`` work as blinker documents, the
        receivers being called as ``receiver(event)`` in connection order. Two things
        are refused with :class:`SubscriptionError`, nothing connected: a ``sender``
        filter (``connect(r, sender=...)``, ``connected_to(r, sender=...)``,
        ``connect_via(sender)``), since the bus calls every receiver of the type with
        every event whatever its ``source`` (so ``has_receivers_for`` answers for any
        sender alike), and a receiver already connected. A coroutine function is refused
        with :class:`AsyncHandlerError`."""
        return self._subscriptions.signal(event_type)

    @overload
    def subscribe(
        self,
        event_type: Enum,
        handler: Handler,
        *,
        weak: bool = False,
        emits: Iterable[Enum] | None = None,
        allow_cycle: bool | Iterable[Enum] = False,
        once: bool = False,
    ) -> Callable[[], None]: ...

    @overload
    def subscribe(
        self,
        event_type: Enum,
        *,
        weak: bool = False,
        emits: Iterable[Enum] | None = None,
        allow_cycle: bool | Iterable[Enum] = False,
        once: bool = False,
    ) -> Callable[[H], H]: ...

    def subscribe(
        self,
        event_type: Enum,
        handler: Any = _DECORATE,
        *,
        weak: bool = False,
        emits: Iterable[Enum] | None = None,
        allow_cycle: bool | Iterable[Enum] = False,
        once: bool = False,
    ) -> Callable[[], None] | Callable[[H], H]:
        """Call ``handler(event)`` for every event of ``event_type``, after the handlers
        subscribed before it. Returns the function that unsubscribes it; calling that
        again does nothing (it never removes a later subscription of the same handler).
        The bus holds the handler strongly unless ``weak=True``. A handler subscribes
        once per type: subscribing it again while subscribed (weakly or not) raises
        :class:`SubscriptionError`; an ``async def`` handler raises
        :class:`AsyncHandlerError` (the bus is synchronous). A command or query type is
        refused (:class:`InvalidEventError`): it has one handler, see :meth:`handle`.

        Without ``handler`` it is a decorator (as :meth:`on`): ``@bus.subscribe(T.A)``
        subscribes the function it decorates and gives it back unchanged.

        ``once=True`` unsubscribes the handler before its first delivery, so it is called
        for one event only, even when several threads publish at once (it cannot be
        combined with ``weak=True``; each ``once`` subscription is its own, so the same
        function may hold several).

        ``emits`` declares the types the handler may publish or send (``None``: not
        declared, not checked; ``()``: nothing); ``allow_cycle`` (``True`` or a subset of
        ``emits``) marks a loop through them as intended (see :meth:`check`). A bad
        declaration raises :class:`InvalidArgumentError`, nothing subscribed."""
        if handler is _DECORATE:  # an explicit None is refused below, as any non-callable
            return self.on(event_type, weak=weak, emits=emits, allow_cycle=allow_cycle, once=once)
        refuse_request_type(event_type)
        signal = self.get_signal(event_type)
        if once:
            if weak:
                raise InvalidArgumentError(
                    f"once=True with weak=True for {short_repr(handler)}: a once handler is "
                    f"held until its event comes; subscribe it with weak=False."
                )
            if not callable(handler):  # the wrapper is callable: check what it wraps
                raise TypeError(f"A handler must be callable as handler(event), got {handler!r}.")
            check_synchronous(handler)
            handler = wrapper = Once(handler)
        declaration = declare(event_type, handler, emits, allow_cycle, request_kind)
        if declaration is not None:
            self._owner.emits = self._emit_check
        unsubscribe = self._subscriptions.connect(signal, handler, weak, declaration)
        if once:
            wrapper.attach(unsubscribe)
        return unsubscribe

    def on(
        self,
        event_type: Enum,
        *,
        weak: bool = False,
        emits: Iterable[Enum] | None = None,
        allow_cycle: bool | Iterable[Enum] = False,
        once: bool = False,
    ) -> Callable[[H], H]:
        """A decorator that subscribes the function it decorates to ``event_type`` (with
        :meth:`subscribe`'s options) and returns the function unchanged::

            @bus.on(OrderEvent.PLACED)
            def reserve_stock(event): ...

        To unsubscribe it later, use :meth:`subscribe`, which returns the function that
        does."""

        def decorator(handler: H) -> H:
            self.subscribe(
                event_type, handler, weak=weak, emits=emits, allow_cycle=allow_cycle, once=once
            )
            return handler

        return decorator

    def subscribe_all(self, handler: Handler, *, weak: bool = False) -> Callable[[], None]:
        """Call ``handler(event)`` for every event of any type, after that type's own
        subscribers. Returns the function that unsubscribes it. Refused as
        :meth:`subscribe` refuses (already subscribed to every event, ``async def``)."""
        return self._subscriptions.connect(self._all, handler, weak)

    # -- commands and queries (atlas_eda.commands) ------------------------------------------

    @property
    def requests(self) -> Requests:
        """The registry of this bus's command and query handlers (one per type)."""
        return self._requests

    def handle(
        self,
        request_type: Enum,
        handler: Handler,
        *,
        emits: Iterable[Enum] | None = None,
        allow_cycle: bool | Iterable[Enum] = False,
    ) -> Callable[[], None]:
        """Make ``handler(message)`` the one handler of a command or query type (a member
        of a ``CommandType`` or ``QueryType`` Enum); returns the function that removes it.
        A second handler for the same type raises :class:`HandlerConflictError`.
        ``emits`` and ``allow_cycle`` declare what it may publish or send, as for
        :meth:`subscribe` (a query's handler emits nothing)."""
        remove = self._requests.add(request_type, handler, emits, allow_cycle)
        if emits is not None:
            self._owner.emits = self._emit_check
        return remove

    # -- the declared graph (atlas_eda.graph) ---------------------------------------------

    @property
    def strict_graph(self) -> bool:
        """Whether a handler emitting a type it did not declare raises
        :class:`UndeclaredEmitError` (``True``) or is warned about once per type."""
        return self._emit_check.strict

    def add_graph_source(self, source: GraphSource) -> Callable[[], None]:
        """Add ``source`` to what :meth:`graph` draws: called by each :meth:`graph` (and
        :meth:`check`), it yields a :class:`~atlas_eda.graph.GraphHandler` per handler it
        runs that the bus did not register itself (a saga manager's steps). Returns the
        function that removes it."""
        if not callable(source):
            raise InvalidArgumentError(
                f"A graph source must be callable as source() -> iterable of GraphHandler, "
                f"got {short_repr(source)}."
            )
        with self._lock:
            self._graph_sources = (*self._graph_sources, source)

        def remove() -> None:
            with self._lock:
                self._graph_sources = tuple(s for s in self._graph_sources if s is not source)

        return remove

    def graph(self) -> EventGraph:
        """The declared graph as it stands: each subscriber of an event type (not
        ``subscribe_all``'s), each command and query handler, and each graph source's
        handlers, with the types they declared they emit."""
        return graph_from(
            self._subscriptions.declarations(),
            self._requests.declarations(),
            self._graph_sources,
        )

    def check(self) -> None:
        """Find every cycle of the declared graph before anything is published, and raise
        :class:`~atlas_eda.errors.GraphCycleError` (an :class:`EventCycleError`) naming
        each one no handler on it allows (``allow_cycle=``); return quietly when there is
        none. An allowed loop stays bounded by ``max_depth`` at run time."""
        self.graph().check()

    def send(
        self, command_type: Enum, data: Any = None, *, metadata: Mapping[str, Any] | None = None
    ) -> Any:
        """Call the handler of ``command_type`` with a message carrying ``data`` and return
        its result (an ``EffectMonad``'s value, once its effects are performed by
        :attr:`effect_handler`). Its exception propagates; :class:`NoHandlerError` if it has
        no handler. Recorded in the history and traces like an event."""
        if self._closed:
            self._refuse_closed("send", command_type)
        return self._requests.call("command", command_type, data, metadata, self.effect_handler)

    def ask(self, query_type: Enum, data: Any = None) -> Any:
        """As :meth:`send`, for a query: its handler may only read; publishing, sending a
        command or writing the store while it runs raises :class:`QuerySideEffectError`,
        with nothing done."""
        if self._closed:
            self._refuse_closed("ask", query_type)
        return self._requests.call("query", query_type, data, None, self.effect_handler)

    def _refuse_closed(self, action: str, message_type: Enum) -> None:
        """On a closed bus: raise :class:`BusClosedError` unless this thread is
        delivering one of the bus's messages (its handlers finish their work)."""
        if innermost_own(running(), self._owner) is None:
            raise self.closed_error(action, message_type)

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

    # -- history, traces and watchers -----------------------------------------------------

    def collect_records(self, into: list[Record]) -> Callable[[], None]:
        """Append to ``into``, from now on, each record the bus keeps in its history as it
        publishes (internal: how :func:`atlas_eda.testing.replay` gathers the events a root
        event causes, in publish order, and finds the one under delivery, at one call per
        event instead of a middleware pass and a fresh delivery plan). Only what
        :meth:`publish` and :meth:`publish_event` keep, as a middleware would see it:
        commands and queries are kept by :attr:`requests`. Returns the function that stops
        it (calling that again does nothing)."""
        with self._lock:
            self._collectors = (*self._collectors, into)
            self._keep = _keeper(self._history.keep, self._collectors)

        def stop() -> None:
            with self._lock:
                self._collectors = tuple(c for c in self._collectors if c is not into)
                self._keep = _keeper(self._history.keep, self._collectors)

        return stop

    def get_history(self, event_type: Enum | None = None, limit: int | None = 100) -> list[Event]:
        """The recorded events, newest first: at most ``limit`` (all with ``None``), only
        those of ``event_type`` when given. An ``event_type`` that is no ``Enum`` member
        raises :class:`InvalidEventError`, a ``limit`` that is no int (or is negative)
        :class:`InvalidArgumentError` (or ``ValueError``)."""
        if event_type is not None:
            check_event_type(event_type)
        if limit is not None:
            check_count("limit", limit, type_error=InvalidArgumentError)
        return self._history.events(event_type, limit)

    def clear_history(self) -> None:
        """Forget every recorded event and its trace."""
        self._history.clear()

    def trace(self, event_id: str) -> EventTrace:
        """What happened because of the event ``event_id``: each delivery (handler,
        duration, outcome), each effect performed during it (result or error), and the
        child events it caused, recursively. Traces are kept as long as the event is in
        the history; :class:`UnknownEventError` otherwise."""
        if not self.traces:
            raise UnknownEventError(
                f"No trace of event {event_id!r}: this bus records no traces (it was created "
                f"with EventBus(traces=False)). Create the bus with traces=True (the default) "
                f"to trace its events."
            )
        trace = self._history.trace(event_id)
        if trace is not None:
            return trace
        limit = self.history_limit
        kept = f"the newest {limit} events" if limit else "no events: history_limit=0"
        raise UnknownEventError(
            f"Event {event_id!r} is not in this bus's history (it keeps {kept}); traces "
            f"exist only for events still there. Read the trace sooner, or create the bus "
            f"with a larger history_limit."
        )

    def watch(self, callback: Watcher) -> Callable[[], None]:
        """Call ``callback(trace)`` each time a root event (one published outside any
        handler) and everything it caused have been handled, with the root's
        :class:`EventTrace`; returns the function that stops it. A callback that raises is
        logged and does not affect the publisher. Needs ``traces=True``."""
        if not self.traces:
            raise ValueError(
                "watch needs traces: this bus was created with EventBus(traces=False)."
            )
        return self._watchers.add(callback)

    # -- dead letters ------------------------------------------------------------------

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """The failed deliveries kept by ``failure_policy="dead_letter"``, oldest first
        (at most ``dead_letter_limit``: the oldest are dropped first)."""
        return self._dead_letters.letters()

    def clear_dead_letters(self) -> None:
        """Forget every dead letter."""
        self._dead_letters.clear()

    def retry_dead_letters(self) -> int:
        """Deliver each dead letter's event again to the handler that failed on it, as the
        bus delivers (events it publishes are children of that event, effects it returns
        are performed); returns how many succeeded. A letter that succeeds leaves the
        list; one that fails again stays, with its new error and one more attempt."""
        return self._dead_letters.retry(self._redeliver)

    # -- lifetime --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: publishes are then refused."""
        return self._closed

    def close(self, timeout: float = CLOSE_TIMEOUT) -> int:
        """Stop taking new publishes, then wait up to ``timeout`` seconds for the
        deliveries under way on other threads; returns how many were still under way
        when it stopped waiting (0: every one finished). Closing again does nothing and
        returns 0.

        From then on a publish, ``publish_event``, ``send``, ``ask`` or dead-letter retry
        raises :class:`BusClosedError` with nothing recorded (no history, no trace, no
        dead letter), but for those made by the handlers of a delivery still under way:
        they belong to it, and it finishes as it started. What it waits for (each
        thread's outermost delivery of this bus) is logged on the ``atlas_eda.bus``
        logger, and a warning names what was still running at the timeout. Called from
        a handler, it cannot wait for its own thread's delivery: that one finishes once
        the handler returns."""
        _check_timeout(timeout)
        if self._closed:
            return 0
        self._closed = True
        deadline = time.monotonic() + timeout
        under_way = _under_way(self)
        if not under_way:
            logger.info("bus closed; no delivery was under way")
            return 0
        logger.info(
            "bus closing: waiting up to %gs for %d delivery(ies) under way: %s",
            timeout,
            len(under_way),
            "; ".join(under_way),
        )
        while under_way and time.monotonic() < deadline:
            time.sleep(_CLOSE_POLL_SECONDS)
            under_way = _under_way(self)
        if under_way:
            logger.warning(
                "bus closed after waiting %gs; %d delivery(ies) still under way: %s",
                timeout,
                len(under_way),
                "; ".join(under_way),
            )
        else:
            logger.info("bus closed; every delivery under way finished")
        return len(under_way)

    def __repr__(self) -> str:
        return (
            f"EventBus(history={len(self._history)}/{self.history_limit}, "
            f"types={len(self._subscriptions)}, middleware={len(self._middleware)})"
        )


def check_bus(name: str, value: Any) -> EventBus:
    """``value`` when it is an :class:`EventBus`; otherwise :class:`InvalidArgumentError`
    naming the argument ``name`` and what was given (the one check of a bus given to
    ``DocumentService``, ``record`` and ``replay``)."""
    if not isinstance(value, EventBus):
        raise InvalidArgumentError(
            f"{name} must be an atlas_eda.EventBus, got {type(value).__name__} "
            f"{short_repr(value)}; pass the bus itself (e.g. system.bus), not its name."
        )
    return value


def _check_max_depth(max_depth: int) -> None:
    """Refuse a ``max_depth`` that is not a count of at least 1, or that is deeper than
    Python's recursion limit allows."""
    check_count("max_depth", max_depth, minimum=1)
    ceiling = sys.getrecursionlimit() // FRAMES_PER_LEVEL
    if max_depth > ceiling:
        raise ValueError(
            f"max_depth={max_depth} is deeper than Python's recursion limit "
            f"({sys.getrecursionlimit()}) allows; use at most {ceiling}, or raise the limit "
            f"with sys.setrecursionlimit first."
        )


def _check_timeout(timeout: float) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidArgumentError(
            f"timeout must be a number of seconds, got {short_repr(timeout)}."
        )
    if not 0 <= timeout < math.inf:
        raise InvalidArgumentError(
            f"timeout must be a non-negative, finite number of seconds, got {timeout!r}."
        )


# The frames of a bus delivering: a thread running one of them for a bus (``self`` being
# the bus, or its Requests for send and ask) is under way, from the moment it passed the
# closed test until it returns. Finding them in the threads' frames costs publishing
# nothing: counting deliveries in and out on the hot path would (see dispatch.py).
_DELIVERING = frozenset(
    code.__code__
    for code in (
        Dispatcher.publish,
        Dispatcher.publish_event,
        Dispatcher._redeliver,
        Requests.call,
        Requests.resend,
    )
)


def _keeper(
    keep: Callable[[Record], None], collectors: tuple[list[Record], ...]
) -> Callable[[Record], None]:
    """What the dispatch loop calls to keep a record: the history's own ``keep`` (one C
    call) while nothing collects, else ``keep`` followed by an append to each collector."""
    if not collectors:
        return keep
    if len(collectors) == 1:
        collect = collectors[0].append

        def keep_and_collect(record: Record) -> None:
            keep(record)
            collect(record)

        return keep_and_collect

    def keep_and_collect_all(record: Record) -> None:
        keep(record)
        for into in collectors:
            into.append(record)

    return keep_and_collect_all


def _under_way(bus: EventBus) -> list[str]:
    """What ``bus`` is delivering on threads other than this one: for each such thread,
    its name and the message of its outermost delivery of the bus."""
    mine = (bus, bus._requests)
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    this_thread = threading.get_ident()
    found: list[str] = []
    for ident, frame in sys._current_frames().items():
        if ident == this_thread:
            continue
        outermost: FrameType | None = None
        current: FrameType | None = frame
        while current is not None:
            if current.f_code in _DELIVERING and any(
                current.f_locals.get("self") is part for part in mine
            ):
                outermost = current
            current = current.f_back
        if outermost is not None:
            found.append(f"thread {names.get(ident, ident)!s}: {_delivering(outermost)}")
    return found


def _delivering(frame: FrameType) -> str:
    """The message a delivering frame is about, as a type name."""
    local = frame.f_locals
    for name in ("event", "message"):
        value = local.get(name)
        if isinstance(value, Event):
            return type_name(value.type)
    letter = local.get("letter")
    if isinstance(letter, DeadLetter):
        return f"dead letter of {type_name(letter.event.type)}"
    for name in ("event_type", "request_type"):
        value = local.get(name)
        if isinstance(value, Enum):
            return type_name(value)
    return "a delivery"
