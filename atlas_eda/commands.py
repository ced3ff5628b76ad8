"""Commands and queries: request/response on the bus, next to publish/subscribe.

A command or query type is a member of an ``Enum`` derived from :class:`CommandType` or
:class:`QueryType` (the base marks the whole Enum). Each type has at most one handler,
registered with ``bus.handle(type, handler)``; ``bus.send(command, data)`` and
``bus.ask(query, data)`` call it with an :class:`~atlas_eda.events.Event` of that type and
return what it returned (the value of a returned ``EffectMonad``, run through the bus's
effect handler). The handler's exception reaches the caller: a command is a call, not a
broadcast. Commands and queries are recorded like events: in the bus's history, with a
trace (the delivery, its duration, its error or the result), as the parent of the events
their handler publishes, and as roots for ``bus.watch`` (and so for cassettes).

A query only reads: while its handler runs, publishing an event, sending a command or
writing the store raises :class:`~atlas_eda.errors.QuerySideEffectError` before anything is
published, sent or written (its record on the thread's delivery stack is marked
read-only; see :func:`atlas_eda.trace.refuse_if_read_only`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from enum import Enum
from time import time
from typing import Any, Literal

from .dispatch import EventDraft, request_marker
from .effects import EffectHandler, EffectMonad
from .emits import Declaration, Declaring, declare
from .errors import (
    EventCycleError,
    HandlerConflictError,
    InvalidEventError,
    NoEffectHandlerError,
    NoHandlerError,
)
from .events import EMPTY_METADATA, Event, frozen_metadata, new_event_id, type_name
from .history import History, Watchers
from .payloads import FrozenDict, freeze_payload, is_tracked
from .subscriptions import Handler
from .trace import (
    CHILD,
    EVENT,
    OWNER,
    RESULT,
    RUNNING,
    Owner,
    Record,
    Stack,
    add_failure,
    handler_name,
    qualified_name,
    refuse_if_read_only,
    running,
)
from .views import short_repr

__all__ = ["CommandType", "QueryType", "RequestKind", "Requests", "request_kind"]

RequestKind = Literal["command", "query"]
"""What a request type is: a ``"command"`` (sent; may change things) or a ``"query"``
(asked; only reads)."""


class CommandType(Enum):
    """Base of an Enum of command types: ``class Checkout(CommandType): PLACE = "place"``.
    Its members are sent (``bus.send``) to their one handler, never published."""

    __atlas_request__ = "command"  # read as dispatch.REQUEST_KIND


class QueryType(Enum):
    """Base of an Enum of query types: ``class Catalog(QueryType): PRICE = "price"``.
    Its members are asked (``bus.ask``) of their one handler, which may only read."""

    __atlas_request__ = "query"  # read as dispatch.REQUEST_KIND


def request_kind(message_type: object) -> RequestKind | None:
    """``"command"`` or ``"query"`` for a member of a :class:`CommandType` or
    :class:`QueryType` Enum; ``None`` for anything else (an event type, say)."""
    kind: RequestKind | None = request_marker(message_type)
    return kind


_VERBS: dict[RequestKind, str] = {"command": "send", "query": "ask"}

# One registration: the type, its handler, the handler's name in traces, its kind, what
# to call (the handler, or a Declaring around it: see atlas_eda.emits) and what it
# declared it emits.
_Entry = tuple[Enum, Handler, str, RequestKind, Handler, Declaration | None]


class Requests:
    """The one place a bus keeps its command and query handlers (``bus.requests``): at
    most one handler per type, and what ``send`` and ``ask`` do with it. Registration
    replaces the table under a lock, so a call reads it without one."""

    def __init__(self, owner: Owner, history: History, watchers: Watchers, max_depth: int) -> None:
        self._entries: dict[int, _Entry] = {}  # by id(type): an Enum's hash is Python code
        self._lock = threading.Lock()
        self._owner = owner
        self._query_owner = Owner(owner.traces, read_only=True)
        self._keep = history.keep
        self._history = history
        self._watchers = watchers
        self._max_depth = max_depth

    def add(
        self,
        request_type: Enum,
        handler: Handler,
        emits: object = None,
        allow_cycle: object = False,
    ) -> Callable[[], None]:
        """Register ``handler`` as the one handler of ``request_type``, declaring what it
        ``emits`` (see :mod:`atlas_eda.emits`); returns the function that removes it
        (calling that again, or after another handler took its place, does nothing)."""
        kind = _checked_kind(request_type, "handle")
        if not callable(handler):
            raise TypeError(
                f"The handler of {type_name(request_type)} must be callable as "
                f"handler(message), got {short_repr(handler)}."
            )
        declaration = declare(request_type, handler, emits, allow_cycle, request_kind)
        call: Handler = handler if declaration is None else Declaring(handler, declaration)
        name = handler_name(handler)
        entry: _Entry = (request_type, handler, name, kind, call, declaration)
        with self._lock:
            held = self._entries.get(id(request_type))
            if held is not None:
                raise HandlerConflictError(
                    f"{type_name(request_type)} already has its handler "
                    f"{qualified_name(held[1])}; a {kind} has exactly one. Call the "
                    f"function bus.handle returned to remove it first."
                )
            self._entries = {**self._entries, id(request_type): entry}

        def remove() -> None:
            with self._lock:
                if self._entries.get(id(request_type)) is entry:
                    entries = dict(self._entries)
                    del entries[id(request_type)]
                    self._entries = entries

        return remove

    def handler(self, request_type: Enum) -> Handler | None:
        """The handler registered for ``request_type``, or ``None``."""
        entry = self._entries.get(id(request_type))
        return None if entry is None else entry[1]

    def items(self) -> list[tuple[Enum, Handler]]:
        """Every registered ``(type, handler)``, in registration order."""
        return [(entry[0], entry[1]) for entry in self._entries.values()]

    def declarations(self) -> list[tuple[Enum, str, Declaration | None, RequestKind]]:
        """Every registration: its type, its handler's name, what it declared it emits
        (``None``: nothing) and its kind, in registration order."""
        return [(entry[0], entry[2], entry[5], entry[3]) for entry in self._entries.values()]

    def __len__(self) -> int:
        return len(self._entries)

    # Over ruff's statement limit on purpose: the message is built and delivered in this
    # one frame, as Dispatcher.publish does (the calls into a builder and into _deliver
    # cost ~10% of a send: benchmarks.run --only commands). resend takes _deliver, the
    # same steps; tests/test_commands.py holds the two equal.
    def call(  # noqa: PLR0915
        self,
        kind: RequestKind,
        request_type: Enum,
        data: Any,
        metadata: Mapping[str, Any] | None,
        effect_handler: EffectHandler | None,
    ) -> Any:
        """Send (``kind="command"``) or ask (``"query"``) ``request_type`` with ``data``:
        call its handler with the message and return its result (see the module)."""
        entry = self._entries.get(id(request_type))
        if entry is None or entry[3] != kind:
            raise self._unanswerable(kind, request_type)
        stack: Stack = RUNNING.get()
        parent: Record | None = None
        if stack:
            if kind == "command":
                refuse_if_read_only(stack, "send", request_type)
                if self._owner.emits is not None:  # see atlas_eda.emits
                    self._owner.emits.check(stack, request_type, self._owner, "sent")
            parent = self._parent(stack)
        # Built as Dispatcher.publish builds events (see dispatch.EventDraft).
        draft = EventDraft()
        draft.metadata = EMPTY_METADATA if metadata is None else frozen_metadata(metadata)
        draft.type = request_type
        # freeze_payload inlined as Dispatcher.publish does (see its comment there).
        if is_tracked(data):
            draft.data = freeze_payload(data)
        else:
            draft.data = FrozenDict(data) if type(data) is dict else data
        draft.id = event_id = next(new_event_id.ids)
        draft.timestamp = now = time()
        draft.source = None
        if parent is None:
            draft.correlation_id = event_id
            draft.causation_id = None
        else:
            cause: Event = parent[EVENT]
            draft.correlation_id = cause.correlation_id or cause.id
            draft.causation_id = cause.id
        draft.__class__ = Event  # type: ignore[assignment]
        message: Event = draft  # type: ignore[assignment]
        # From here on, _deliver line for line
        # (tests/test_commands.py::test_send_and_resend_record_alike holds them equal).
        owner = self._owner
        traces = owner.traces
        record: Record = (
            [message, owner if kind == "command" else self._query_owner, now, (entry[2],)]
            if traces
            else [message, owner if kind == "command" else self._query_owner]
        )
        if parent is not None and traces:
            parent.append((CHILD, event_id))
        self._keep(record)
        token = RUNNING.set((*stack, record) if stack else (record,))  # see trace.RUNNING
        try:
            result = entry[4](message)
            if isinstance(result, EffectMonad):
                result = _run_monad(entry[1], message, result, effect_handler)
        except Exception as exc:
            if traces:
                add_failure(record, exc, time())
            raise
        else:
            if traces:
                record.append(time())
                record.append((RESULT, result))
        finally:
            RUNNING.reset(token)
            if parent is None and traces and self._watchers.callbacks:
                self._watchers.tell(self._history.trace_of(record))
        return result

    def resend(self, message: Event, effect_handler: EffectHandler | None) -> Any:
        """Send or ask a recorded ``message`` as it is (its id, timestamp and ids kept), as
        replay does; otherwise as :meth:`call`."""
        request_type = message.type
        kind = _checked_kind(request_type, "resend")
        entry = self._entries.get(id(request_type))
        if entry is None:
            raise self._unanswerable(kind, request_type)
        stack = running()
        parent: Record | None = None
        if stack:
            if kind == "command":
                refuse_if_read_only(stack, "send", request_type)
            parent = self._parent(stack)
        return self._deliver(entry, message, time(), parent, stack, effect_handler=effect_handler)

    def _deliver(
        self,
        entry: _Entry,
        message: Event,
        started: float,
        parent: Record | None,
        stack: Stack,
        *,
        effect_handler: EffectHandler | None,
    ) -> Any:
        """Call ``entry``'s handler with ``message``, from ``started`` on (a child of
        ``parent``, the record of this bus's innermost delivery on ``stack``), recording
        it as the bus records an event; returns the handler's result."""
        owner = self._owner
        traces = owner.traces
        record_owner = owner if entry[3] == "command" else self._query_owner
        # Laid out as trace.Record describes: one delivery, then (RESULT, value).
        record: Record = (
            [message, record_owner, started, (entry[2],)] if traces else [message, record_owner]
        )
        if parent is not None and traces:
            parent.append((CHILD, message.id))
        self._keep(record)
        token = RUNNING.set((*stack, record) if stack else (record,))  # see trace.RUNNING
        try:
            result = entry[4](message)
            if isinstance(result, EffectMonad):
                result = _run_monad(entry[1], message, result, effect_handler)
        except Exception as exc:
            if traces:
                add_failure(record, exc, time())
            raise
        else:
            if traces:
                record.append(time())
                record.append((RESULT, result))
        finally:
            RUNNING.reset(token)
            if parent is None and traces and self._watchers.callbacks:
                self._watchers.tell(self._history.trace_of(record))
        return result

    def _parent(self, stack: Stack) -> Record | None:
        """This bus's innermost record (an event's, a command's or a query's) on
        ``stack``, or ``None``; :class:`EventCycleError` when this bus already has
        ``max_depth`` of them under way."""
        mine = (self._owner, self._query_owner)
        if len(stack) >= self._max_depth:
            own = [record for record in stack if record[OWNER] in mine]
            if len(own) >= self._max_depth:
                chain = " → ".join(type_name(record[EVENT].type) for record in own[-6:])
                raise EventCycleError(
                    f"A command or query {len(own) + 1} messages deep exceeds max_depth="
                    f"{self._max_depth} (innermost: … {chain}); handlers are calling each "
                    f"other in a loop. Break the loop, or raise max_depth if it is intended.",
                    tuple(type_name(record[EVENT].type) for record in own),
                )
        for record in reversed(stack):
            if record[OWNER] in mine:
                return record
        return None

    def _unanswerable(self, kind: RequestKind, request_type: object) -> Exception:
        """The error for a call that has no handler to go to."""
        _checked_kind(request_type, _VERBS[kind], kind)
        return NoHandlerError(
            f"No handler for the {kind} {type_name(request_type)} "  # type: ignore[arg-type]
            f"(registered: {self._names()}). Register one with bus.handle(type, handler)."
        )

    def _names(self) -> str:
        names = [type_name(entry[0]) for entry in self._entries.values()]
        return ", ".join(names) if names else "none"


def _checked_kind(
    request_type: object, verb: str, expected: RequestKind | None = None
) -> RequestKind:
    """``request_type``'s kind; :class:`InvalidEventError` saying what to do when it is not
    a command or query type (or not of the ``expected`` kind)."""
    if not isinstance(request_type, Enum):
        raise InvalidEventError(
            f"bus.{verb} needs a member of an Enum derived from CommandType or QueryType, "
            f"got {short_repr(request_type)} of type {type(request_type).__name__}."
        )
    kind = request_kind(request_type)
    name = type_name(request_type)
    if kind is None:
        raise InvalidEventError(
            f"{name} is an event type: publish it with bus.publish({name}, data). For a "
            f"command or query, derive its Enum from atlas_eda.CommandType or QueryType."
        )
    if expected is not None and kind != expected:
        raise InvalidEventError(
            f"{name} is a {kind} type: {_VERBS[kind]} it with bus.{_VERBS[kind]}({name}, data)."
        )
    return kind


def _run_monad(
    handler: Handler, message: Event, monad: EffectMonad[Any], effect_handler: EffectHandler | None
) -> Any:
    """The value of ``monad``, which ``handler`` returned for ``message``, once its effects
    are performed by ``effect_handler``."""
    if effect_handler is None:
        raise NoEffectHandlerError(
            f"Handler {qualified_name(handler)} returned an EffectMonad for {message!r}, but "
            f"this EventBus has no effect_handler to perform its effects. Create the bus with "
            f"EventBus(effect_handler=EffectHandler(...)) or set bus.effect_handler."
        )
    return monad.run(effect_handler)
