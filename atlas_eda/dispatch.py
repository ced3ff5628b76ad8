"""Dispatch: how a bus delivers an event (internal; :class:`~atlas_eda.bus.EventBus` is
the public face). Every publish runs through here, so the speed tricks live here and
nowhere else, each commented, each with its plain equivalent in a test that holds the two
equal (as pluggy keeps its ``_multicall`` in ``_execution.py``):

- :class:`EventDraft` builds an event with plain slot assignments (tests/test_events.py:
  ``test_the_bus_builds_exactly_what_event_gives``);
- the delivery routine writes trace records inline, in the layout that
  :mod:`atlas_eda.trace` names and reads (tests/test_trace.py:
  ``test_the_dispatch_loop_writes_records_as_trace_defines_them``), and comes in two
  copies, so that an untraced bus tests nothing per delivery (tests/test_bus.py:
  ``test_traced_and_untraced_buses_deliver_alike``).

The two ways in, :meth:`Dispatcher.publish` (build the event) and
:meth:`Dispatcher.publish_event` (take it as it is), each hand the event to the delivery
routine, ``Dispatcher._deliver_traced`` or, on a bus without traces,
``Dispatcher._deliver_untraced``: no hidden modes."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from enum import Enum
from time import time
from typing import Any, Literal

from .dead_letters import DeadLetter, DeadLetters
from .effects import EffectHandler, EffectMonad
from .errors import (
    AsyncHandlerError,
    AtlasEdaError,
    BusClosedError,
    EventCycleError,
    HandlerFailures,
    InvalidEventError,
    MiddlewareError,
    NoEffectHandlerError,
    UndeclaredEmitError,
)
from .events import (
    EMPTY_METADATA,
    Event,
    EventId,
    EventSlots,
    EventType,
    check_event_type,
    frozen_metadata,
    new_event_id,
    type_name,
)
from .history import History, Watchers
from .payloads import FrozenDict, freeze_payload, is_tracked
from .redaction import redact_text
from .subscriptions import Gone, Plan, Subscriptions, handler_of
from .trace import (
    CHILD,
    EVENT,
    OWNER,
    RUNNING,
    Owner,
    Record,
    Stack,
    add_failure,
    add_interrupted,
    add_skipped,
    innermost_own,
    own_records,
    plain_record,
    qualified_name,
    record_event,
    refuse_if_read_only,
    running,
)

__all__ = [
    "POLICIES",
    "REQUEST_KIND",
    "Dispatcher",
    "EventDraft",
    "FailurePolicy",
    "Middleware",
    "refuse_request_type",
    "request_marker",
]

# The bus's logger: users (and the CLI) configure the bus's logging by this one name.
logger = logging.getLogger("atlas_eda.bus")

Middleware = Callable[[Event], "Event | None"]
"""Called as ``middleware(event)``: returns the event to continue with, or ``None`` to drop it."""

FailurePolicy = Literal["isolate", "raise", "dead_letter"]
"""What a failing handler does to a publish (see :class:`~atlas_eda.bus.EventBus`)."""

POLICIES: tuple[FailurePolicy, ...] = ("isolate", "raise", "dead_letter")
"""Every :data:`FailurePolicy`."""

# Errors that must reach the publisher: isolating them would hide a cycle, a misconfigured
# bus or (strict_graph=True) a handler emitting what it did not declare behind an ERROR
# event nobody may be listening to.
_PROPAGATING = (EventCycleError, NoEffectHandlerError, UndeclaredEmitError)

Failures = list[tuple[Callable[..., Any], Exception]]
"""The handlers that raised during one delivery, each with its exception."""


class EventDraft(EventSlots):
    """A mutable twin of :class:`~atlas_eda.events.Event` with the same slots, for
    building events fast (the hot path of :meth:`Dispatcher.publish`, which checks the
    fields itself).

    A frozen dataclass assigns each field through ``object.__setattr__``, which costs
    more than a whole blinker send; a draft takes plain slot assignments and, once every
    field is set, becomes an ``Event`` by ``draft.__class__ = Event`` (same layout, so
    Python allows it). The result is indistinguishable from ``Event(...)``: same class,
    fields, equality, repr, pickling and immutability.
    """

    __slots__ = ()

    type: Enum
    data: Any
    id: EventId
    timestamp: float
    source: str | None
    metadata: Mapping[str, Any]
    correlation_id: str | None
    causation_id: str | None


class Dispatcher:
    """The delivering half of :class:`~atlas_eda.bus.EventBus`: publishes events to the
    plans of its :class:`~atlas_eda.subscriptions.Subscriptions`, keeps them in its
    :class:`~atlas_eda.history.History`, tells its :class:`~atlas_eda.history.Watchers`
    and applies the failure policy. ``EventBus`` adds the ways to subscribe, add
    middleware and read what was kept."""

    def __init__(
        self,
        subscriptions: Subscriptions,
        history: History,
        dead_letters: DeadLetters,
        *,
        effect_handler: EffectHandler | None,
        max_depth: int,
        traces: bool,
        failure_policy: FailurePolicy,
    ) -> None:
        self.effect_handler = effect_handler  # public: users may set it after construction
        self._subscriptions = subscriptions
        self._plans = subscriptions.plans  # by id(event type): see Subscriptions
        self._history = history
        self._keep = history.keep
        self._dead_letters = dead_letters
        self._watchers = Watchers()
        self._middleware: tuple[Middleware, ...] = ()
        self._max_depth = max_depth
        self._policy: FailurePolicy = failure_policy
        # Marks this bus's records among those running in a context (see trace.RUNNING).
        self._owner = Owner(traces)
        # Set by EventBus.close: root publishes are refused from then on (one attribute
        # test per publish, the whole cost of closing on the hot path).
        self._closed = False

    @property
    def subscriptions(self) -> Subscriptions:
        """The bus's receivers and delivery plans (internal: what instrumentation such as
        :mod:`atlas_eda.telemetry` wraps with ``wrap_deliveries``)."""
        return self._subscriptions

    # The one function over ruff's statement limit, on purpose: a traced publish builds the
    # event and delivers it in this one frame, because the call into _deliver_traced costs
    # 3-4% of a whole publish (benchmarks.run --only bus, paired runs), more than the
    # pyee row's margin. publish_event takes the routine itself; tests hold the two equal.
    def publish(  # noqa: PLR0915
        self,
        event_type: Enum,
        data: Any = None,
        source: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Build an event and publish it; returns its id. Inside a handler, the new
        event is a child of the event being handled (causation and correlation ids)."""
        # The hot path: the event is built from fields checked here rather than through
        # Event()'s checks (see EventDraft; tests hold the two equal).
        stack: Stack = RUNNING.get()
        owner = self._owner
        parent: Record | None = None
        if stack:  # nested: the parent is this bus's innermost record in this context
            parent = stack[-1]
            if parent[OWNER] is not owner:  # a query's record is never the bus's own
                refuse_if_read_only(stack, "publish", event_type)
                parent = innermost_own(stack, owner)
            if owner.emits is not None:  # a handler declared emits= (see atlas_eda.emits)
                owner.emits.check(stack, event_type, owner, "published")
        if self._closed and parent is None:  # a handler's children finish its delivery
            raise self.closed_error("publish", event_type)
        try:
            plan: Plan | None = self._plans[id(event_type)]
        except KeyError:  # a type with a plan was checked when it was planned
            plan = None
            check_event_type(event_type)
            refuse_request_type(event_type)
        draft = EventDraft()
        draft.metadata = EMPTY_METADATA if metadata is None else frozen_metadata(metadata)
        draft.type = event_type
        # freeze_payload inlined (a call costs a fifth of the freeze): see its comment;
        # tests/test_payloads.py::test_publish_freezes_exactly_as_event_does.
        if is_tracked(data):
            draft.data = freeze_payload(data)
        else:
            draft.data = FrozenDict(data) if type(data) is dict else data
        draft.id = event_id = next(new_event_id.ids)
        draft.timestamp = now = time()
        draft.source = source
        if parent is None:
            draft.correlation_id = event_id
            draft.causation_id = None
        else:
            cause: Event = parent[EVENT]
            draft.correlation_id = cause.correlation_id or cause.id
            draft.causation_id = cause.id
        draft.__class__ = Event  # type: ignore[assignment]
        event: Event = draft  # type: ignore[assignment]
        if not owner.traces:
            return self._deliver_untraced(event, plan, now, parent, stack)
        # From here on, _deliver_traced line for line (see the comment above publish;
        # tests/test_bus.py::test_publish_and_publish_event_deliver_alike).
        if parent is not None and len(stack) >= self._max_depth:
            self._check_depth(stack, event_type)
        if self._middleware:
            transformed = self._through_middleware(event)
            if transformed is None:
                return event_id  # dropped: the id of the event received
            event, plan, now = transformed, None, time()
        if plan is None:
            plan = self._plans.get(id(event.type)) or self._subscriptions.plan(event.type)
        calls, names = plan
        record: Record = [event, owner, now, names]
        if parent is not None:
            parent.append((CHILD, event.id))
        self._keep(record)
        failures: Failures | None = None
        # A new tuple each delivery (not a shared list): see trace.RUNNING.
        token = RUNNING.set((*stack, record) if stack else (record,))
        try:
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
            receiver = result = None  # type: ignore[assignment]
            propagating = self._settle(event, failures) if failures else None
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: stop, say so
            add_interrupted(record, exc, time())
            raise
        finally:
            RUNNING.reset(token)
            if parent is None and self._watchers.callbacks:
                self._watchers.tell(self._history.trace_of(record))
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
        # As in publish: a type with a plan was checked when it was planned (replay
        # publishes every root event here, so the checks are not made again for each).
        plan = self._plans.get(id(event.type))
        if plan is None:
            check_event_type(event.type)
            refuse_request_type(event.type)
        stack = RUNNING.get()
        parent = None
        if stack:
            refuse_if_read_only(stack, "publish", event.type)
            if self._owner.emits is not None:
                self._owner.emits.check(stack, event.type, self._owner, "published")
            parent = innermost_own(stack, self._owner)
        if self._closed and parent is None:
            raise self.closed_error("publish", event.type)
        if self._owner.traces:
            return self._deliver_traced(event, plan, time(), parent, stack)
        return self._deliver_untraced(event, plan, time(), parent, stack)

    # The delivery routine, in two copies so that an untraced bus tests nothing per
    # delivery. Both: ``event`` starts being delivered at ``now``, to ``plan`` (or to
    # its type's plan, when None); ``parent`` is this bus's record of the event being
    # handled in this context (None for a root) and ``stack`` this context's records under
    # delivery. After the depth guard, the middleware may replace the event: it is then
    # planned anew (its type may have changed) and its deliveries start when the
    # middleware is done. In each loop a handler returning None takes the shortest way
    # round; the rare cases are calls out, which keeps the loop short enough for CPython
    # to jump back without an EXTENDED_ARG on every iteration.

    def _deliver_traced(
        self, event: Event, plan: Plan | None, now: float, parent: Record | None, stack: Stack
    ) -> str:
        """Deliver ``event`` as a tracing bus does (see above); returns its id."""
        if parent is not None and len(stack) >= self._max_depth:
            self._check_depth(stack, event.type)
        if self._middleware:
            transformed = self._through_middleware(event)
            if transformed is None:
                return event.id  # dropped: the id of the event received
            event, plan, now = transformed, None, time()
        if plan is None:
            plan = self._plans.get(id(event.type)) or self._subscriptions.plan(event.type)
        calls, names = plan
        # Written inline as trace.traced_record builds it (EVENT, OWNER, STARTED, NAMES):
        # a call costs a few percent of a publish. Tests hold the two equal.
        record: Record = [event, self._owner, now, names]
        if parent is not None:
            parent.append((CHILD, event.id))
        self._keep(record)
        failures: Failures | None = None
        # A new tuple each delivery (not a shared list): see trace.RUNNING.
        token = RUNNING.set((*stack, record) if stack else (record,))
        try:
            for receiver in calls:
                try:
                    result = receiver(event)
                    if result is None:
                        record.append(time())  # the delivery ended (see trace.Record)
                        continue
                    self._returned(receiver, event, result)
                except Exception as exc:
                    failures = _failed(failures, record, receiver, exc)
                    continue
                record.append(time())
            # An exception kept after the publish (in a trace, a dead letter or a raised
            # group) holds this frame in its traceback: pin no handler.
            receiver = result = None  # type: ignore[assignment]
            propagating = self._settle(event, failures) if failures else None
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: stop, say so
            add_interrupted(record, exc, time())
            raise
        finally:
            RUNNING.reset(token)
            if parent is None and self._watchers.callbacks:
                self._watchers.tell(self._history.trace_of(record))
        if propagating is not None:
            raise propagating
        return event.id

    def _deliver_untraced(
        self, event: Event, plan: Plan | None, now: float, parent: Record | None, stack: Stack
    ) -> str:
        """Deliver ``event`` as a bus without traces does (see above; ``now`` goes
        unused, and there are no watchers: watching needs traces); returns its id."""
        if parent is not None and len(stack) >= self._max_depth:
            self._check_depth(stack, event.type)
        if self._middleware:
            transformed = self._through_middleware(event)
            if transformed is None:
                return event.id  # dropped: the id of the event received
            event, plan = transformed, None
        if plan is None:
            plan = self._plans.get(id(event.type)) or self._subscriptions.plan(event.type)
        record: Record = [event, self._owner]  # as trace.plain_record builds it
        self._keep(record)
        failures: Failures | None = None
        # A new tuple each delivery (not a shared list): see trace.RUNNING.
        token = RUNNING.set((*stack, record) if stack else (record,))
        try:
            for receiver in plan[0]:
                try:
                    result = receiver(event)
                    if result is None:
                        continue
                    self._returned(receiver, event, result)
                except Exception as exc:
                    failures = _failed(failures, None, receiver, exc)
            # An exception kept after the publish (in a trace, a dead letter or a raised
            # group) holds this frame in its traceback: pin no handler.
            receiver = result = None  # type: ignore[assignment]
            propagating = self._settle(event, failures) if failures else None
        finally:
            RUNNING.reset(token)
        if propagating is not None:
            raise propagating
        return event.id

    def closed_error(self, action: str, message_type: Enum) -> BusClosedError:
        """The error of ``action`` (``"publish"``, ``"send"``...) of ``message_type``
        on this bus once it is closed."""
        return BusClosedError(
            f"Cannot {action} {type_name(message_type)}: this EventBus was closed; nothing "
            f"was recorded or delivered. Publish before closing the bus (or its Runtime), "
            f"or on a new EventBus."
        )

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

    def _check_depth(self, stack: Stack, event_type: Enum) -> None:
        """Raise :class:`EventCycleError` when this bus already has ``max_depth`` events
        under delivery in this context (other buses' deliveries do not count)."""
        own = own_records(stack, self._owner)
        if len(own) >= self._max_depth:
            chain = (*(type_name(record_event(r).type) for r in own), type_name(event_type))
            raise EventCycleError(
                f"Publishing {type_name(event_type)} would nest {len(chain)} events deep "
                f"(max_depth={self._max_depth}); handlers are publishing each other's events "
                f"in a loop: {_describe_chain(chain)}. Break the loop, or raise max_depth if "
                f"the nesting is intended.",
                chain,
            )

    def _returned(self, receiver: Callable[..., Any], event: Event, result: object) -> None:
        """Perform the effects of an ``EffectMonad`` a handler returned; any other value
        a handler returns is ignored, but an awaitable: the bus is synchronous and would
        never await it, so it is closed and the delivery fails with
        :class:`AsyncHandlerError`."""
        if isinstance(result, EffectMonad):
            self._run_effects(handler_of(receiver), event, result)
        elif inspect.isawaitable(result):
            raise _returned_awaitable(handler_of(receiver), result)

    def _run_effects(
        self, receiver: Callable[..., Any], event: Event, monad: EffectMonad[Any]
    ) -> None:
        handler = self.effect_handler
        if handler is None:
            raise NoEffectHandlerError(
                f"Handler {qualified_name(receiver)} returned an EffectMonad for {event!r}, "
                f"but this EventBus has no effect_handler to perform its effects. Create the bus "
                f"with EventBus(effect_handler=EffectHandler(...)) or set bus.effect_handler."
            )
        monad.run(handler)

    def _settle(self, event: Event, failures: Failures) -> Exception | None:
        """Deal with the handlers that raised while ``event`` was delivered; returns what
        publish must raise: the first error that always propagates (a cycle, a missing
        effect handler), else what the failure policy raises, else None."""
        propagating = next((exc for _, exc in failures if isinstance(exc, _PROPAGATING)), None)
        failed = [(handler, exc) for handler, exc in failures if not isinstance(exc, _PROPAGATING)]
        failures.clear()  # a traced exception's traceback keeps the list: pin no handler
        if not failed:
            return propagating
        reported = self._report(event, failed)
        group = self._apply_policy(event, failed)
        failed.clear()
        return propagating or reported or group

    def _report(self, event: Event, failures: Failures) -> Exception | None:
        """Log each failure, and publish each as an ``ERROR`` event (but failures while
        handling an ``ERROR`` event, which are only logged: no loops). The message, in the
        log line and the event, goes through :func:`~atlas_eda.redaction.redact_text`.
        Returns the first error that must reach the publisher (a cycle: say an ``ERROR``
        handler that publishes ``ERROR``) raised while delivering those ``ERROR`` events,
        else None."""
        propagating: Exception | None = None
        for receiver, exc in failures:
            name = qualified_name(receiver)
            message = redact_text(str(exc))
            logger.error(
                "handler %s failed on %s: %s: %s",
                name,
                event,
                type(exc).__name__,
                message,
                exc_info=exc,
            )
            if event.type is EventType.ERROR:
                continue
            try:
                self.publish(
                    EventType.ERROR,
                    {
                        "event_id": event.id,
                        "event_type": type_name(event.type),
                        "handler": name,
                        "error_type": type(exc).__name__,
                        "error_message": message,
                    },
                    source="atlas_eda.bus",
                )
            except _PROPAGATING as report_error:
                # A loop through the ERROR event is the publisher's to fix, as any loop.
                logger.error("could not publish the ERROR event for %s: %s", name, report_error)
                propagating = propagating or report_error
            except AtlasEdaError as report_error:
                logger.error("could not publish the ERROR event for %s: %s", name, report_error)
        return propagating

    def _apply_policy(self, event: Event, failures: Failures) -> HandlerFailures | None:
        """What the failure policy does with ``failures``: keeps dead letters, or returns
        the group of exceptions to raise."""
        if self._policy == "dead_letter":
            for receiver, exc in failures:
                self._dead_letters.add(event, receiver, exc)
            return None
        if self._policy == "raise":
            names = ", ".join(qualified_name(receiver) for receiver, _ in failures)
            return HandlerFailures(
                f"{len(failures)} handler(s) failed on {event!r}: {names}. Every other "
                f"handler ran; the failures were also published as ERROR events.",
                [exc for _, exc in failures],
                event.id,
            )
        return None

    def _redeliver(self, letter: DeadLetter) -> Exception | None:
        """Deliver a dead letter's event again to the handler that failed on it, as a
        publish delivers (events it publishes are children of that event, effects it
        returns are performed); returns its exception, or ``None`` if it succeeded."""
        stack = running()
        own = own_records(stack, self._owner)
        if self._closed and not own:
            raise self.closed_error("retry a dead letter of", letter.event.type)
        if len(own) >= self._max_depth:
            raise EventCycleError(
                f"Retrying a dead letter {len(own)} events deep exceeds max_depth="
                f"{self._max_depth}; retry dead letters outside handlers.",
                tuple(type_name(record_event(r).type) for r in own),
            )
        # A record of its own, not kept: the retried handler's children get the
        # letter's event as their parent, as they would have the first time.
        token = RUNNING.set((*stack, plain_record(letter.event, self._owner)))
        try:
            result = letter.handler(letter.event)
            if result is not None:
                self._returned(letter.handler, letter.event, result)
        except _PROPAGATING:
            raise
        except Exception as exc:
            return exc
        finally:
            RUNNING.reset(token)
        return None


def _failed(
    failures: Failures | None,
    record: Record | None,
    receiver: Callable[..., Any],
    exc: Exception,
) -> Failures | None:
    """What a delivery that raised ``exc`` leaves: ``failures`` (made if ``None``) with
    the handler behind ``receiver`` and ``exc`` added, and in a traced ``record`` the
    exception and the time the delivery ended; only a skipped entry for a receiver that
    went away since the plan was made (unsubscribed or collected: not a failure)."""
    if type(exc) is Gone:
        if record is not None:
            add_skipped(record)
        return failures
    if record is not None:
        add_failure(record, exc, time())
    if failures is None:
        failures = []
    failures.append((handler_of(receiver), exc))
    return failures


def _returned_awaitable(handler: Callable[..., Any], result: object) -> AsyncHandlerError:
    """The error of a handler that returned ``result``, an awaitable, which is closed
    first when it is a coroutine (so Python does not warn that it was never awaited)."""
    if inspect.iscoroutine(result):
        result.close()
    return AsyncHandlerError(
        f"Handler {qualified_name(handler)} returned {type(result).__name__}, an awaitable; "
        f"the bus is synchronous and never awaits what handlers return, so the work it "
        f"stands for was not done (a coroutine is closed). Make the handler do its work "
        f"when called, or hand the awaitable to your event loop yourself."
    )


REQUEST_KIND = "__atlas_request__"
"""The class attribute that marks an Enum of command or query types (its value says
which; see :mod:`atlas_eda.commands`): such types are sent or asked, never published."""


def request_marker(message_type: object) -> Any:
    """The :data:`REQUEST_KIND` attribute of ``message_type``'s class, ``None`` when it
    has none: what ``getattr(type(message_type), REQUEST_KIND, None)`` gives, read from
    the class dictionaries along its MRO. Why not ``getattr``: an Enum class answers a
    name it lacks from ``EnumType.__getattr__``, which raises ``AttributeError`` for
    ``getattr`` to catch, about 1 µs per call, paid by every ``publish_event`` (replay
    publishes each root event so). tests/test_commands.py holds the two equal."""
    for cls in type(message_type).__mro__:
        namespace = cls.__dict__
        if REQUEST_KIND in namespace:
            return namespace[REQUEST_KIND]
    return None


def refuse_request_type(event_type: object) -> None:
    """Raise :class:`InvalidEventError` when ``event_type`` is a command or query type
    (checked when a type is first planned, and by each ``publish_event``)."""
    kind = request_marker(event_type)
    if kind is not None:
        verb = "send" if kind == "command" else "ask"
        name = type_name(event_type)  # type: ignore[arg-type]
        raise InvalidEventError(
            f"{name} is a {kind} type: it goes to its one handler with "
            f"bus.{verb}({name}, data), not to subscribers with publish."
        )


def _middleware_raised(middleware: Middleware, event: Event, exc: Exception) -> MiddlewareError:
    return MiddlewareError(
        f"Middleware {qualified_name(middleware)} raised {type(exc).__name__}: {exc} "
        f"on {event!r}; the event was neither recorded nor delivered. Fix or remove "
        f"the middleware (add_middleware returns its remover)."
    )


def _middleware_returned(middleware: Middleware, result: object) -> MiddlewareError:
    return MiddlewareError(
        f"Middleware {qualified_name(middleware)} returned {type(result).__name__}; a "
        f"middleware must return an Event (e.g. dataclasses.replace(event, ...)) or None "
        f"to drop it. The event was neither recorded nor delivered."
    )


def _describe_chain(chain: tuple[str, ...]) -> str:
    """The chain as ``A → B → A → …``, shortened to its repeating cycle when it has one."""
    for period in range(1, len(chain) // 2 + 1):
        tail = chain[-period:]
        if chain[-2 * period : -period] == tail:
            cycle = " → ".join((*tail, tail[0]))
            return f"cycle {cycle} (chain of {len(chain)}: {' → '.join(chain[:6])} …)"
    return " → ".join(chain)
