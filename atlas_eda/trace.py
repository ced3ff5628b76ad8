"""Per-event traces: what the bus did with one event — each delivery (handler, duration,
outcome), each effect performed during it (result or error), and the child events it
caused, recursively. While it works, the bus writes into each event's history record
(:data:`Record`), keeping the records under delivery on a stack held in a context
variable (:data:`RUNNING`) where effects are filed too; ``EventTrace`` is the immutable
view built only when somebody asks."""

from __future__ import annotations

import functools
import html
import operator
import sys
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from .checks import check_count
from .errors import QuerySideEffectError
from .events import Event, type_name
from .views import short, when

__all__ = [
    "Attempt",
    "Delivery",
    "EffectOutcome",
    "EventTrace",
    "Stack",
    "delivery_under_way",
    "handler_name",
]

DATA_WIDTH = 70
"""How much of an event's data (and of a command's result) a trace line shows by default."""

EFFECT_WIDTH = 80
"""How much of an effect a trace line shows by default."""

VALUE_WIDTH = 60
"""How much of an effect's result or of an error's message a trace line shows by default."""

MIN_WIDTH = 8
"""The narrowest ``width`` :meth:`EventTrace.tree` takes."""


Record = list[Any]
"""One history entry, and what the bus writes while it handles the event (internal).

Records are plain lists read by the named positions and tags below (a slotted class per
record would cost about 0.1 µs more per publish): the event and its log share one list,
so a publish allocates one container for both and pays for no bookkeeping beyond one
append per delivery. Every reader outside the dispatch loop goes through the functions of
this module; the loop itself (``dispatch.py``) writes the same layout inline, and
``tests/test_trace.py`` holds the two equal.

``[EVENT, OWNER]`` is every record: the event and the publishing bus's :class:`Owner`.
A tracing bus's record goes on with ``STARTED`` (the ``time.time()`` reading when the
deliveries started; for a published event, its timestamp) and ``NAMES`` (its receivers'
names, in delivery order), then, from ``LOG`` on, for each receiver the entries logged
while its handler ran — ``(EFFECT, EffectOutcome)`` for each effect performed,
``(CHILD, event_id)`` for each child event published, ``(RAISED, exception)`` if the
handler raised — followed by the ``time.time()`` reading (a float) when it ended (a
delivery lasted from the previous reading to its own), or by ``(SKIPPED, None)`` for a
receiver that went away before its turn. Entries after the last delivery (the bus's
``ERROR`` reports) belong to the event. Entries are attributed by position."""

EVENT = 0
"""Position of a record's :class:`~atlas_eda.events.Event`."""
OWNER = 1
"""Position of a record's :class:`Owner` (which bus published it)."""
STARTED = 2
"""Position, in a tracing bus's record, of the time its deliveries started."""
NAMES = 3
"""Position, in a tracing bus's record, of its receivers' names (a tuple of str)."""
LOG = 4
"""Where a tracing bus's record starts logging its deliveries."""

CHILD = "child"
"""Tags a log entry ``(CHILD, event_id)``: a child event published."""
EFFECT = "effect"
"""Tags a log entry ``(EFFECT, EffectOutcome)``: an effect performed."""
RAISED = "raised"
"""Tags a log entry ``(RAISED, exception)``: the running delivery's handler raised."""
SKIPPED = "skipped"
"""Tags the log entry ``(SKIPPED, None)``: a receiver gone before its turn."""
RESULT = "result"
"""Tags the log entry ``(RESULT, value)`` after a command's or query's delivery: what its
handler returned (the value of a returned ``EffectMonad``)."""

_SKIPPED_ENTRY = (SKIPPED, None)  # one tuple every record shares

Stack = tuple[Record, ...]
"""The records under delivery in one context, innermost last (see :data:`RUNNING`)."""


class EmitChecker(Protocol):
    """What checks a publish or send made inside a handler that declared ``emits=``
    (internal; :class:`atlas_eda.emits.EmitCheck`)."""

    def check(self, stack: Stack, message_type: Any, owner: Owner, verb: str) -> None:
        """Report ``message_type`` if the handler running now did not declare it."""


class Owner:
    """Marks the records of one bus (internal): which of the records running in a context
    are its own, and whether it traces. It holds no reference to the bus, so history
    records pin nothing."""

    __slots__ = ("emits", "read_only", "traces")

    def __init__(self, traces: bool, *, read_only: bool = False) -> None:
        self.traces = traces
        # Marks the records of queries under way: nothing may publish, send or write
        # inside them (see refuse_if_read_only).
        self.read_only = read_only
        # Set once a handler of the bus declares emits= (see atlas_eda.emits): until then
        # a nested publish tests this one attribute and nothing else.
        self.emits: EmitChecker | None = None


def plain_record(event: Event, owner: Owner) -> Record:
    """The record of ``event`` published by ``owner``'s bus without a trace."""
    return [event, owner]


def traced_record(event: Event, owner: Owner, started: float, names: tuple[str, ...]) -> Record:
    """The record of ``event`` whose deliveries to the receivers named ``names`` start
    at ``started``: a tracing bus's, with its log still empty. (The dispatch loop writes
    it inline; this is the plain version its test compares with.)"""
    return [event, owner, started, names]


record_event: Callable[[Record], Event] = operator.itemgetter(EVENT)
"""``record_event(record)``: the event ``record`` holds. An ``operator.itemgetter``, as
fast as indexing: readers of the history call it once per record."""


def find_record(newest_first: Iterable[Record], event_id: str) -> Record | None:
    """The first record in ``newest_first`` that holds the event ``event_id``, or ``None``."""
    for record in newest_first:
        if record[EVENT].id == event_id:
            return record
    return None


def records_by_id(records: Iterable[Record]) -> dict[str, Record]:
    """``records`` by the id of the event each holds (a later record wins)."""
    return {record[EVENT].id: record for record in records}


def owned_by(record: Record, owner: Owner) -> bool:
    """Whether ``record`` was written by the bus ``owner`` marks."""
    return record[OWNER] is owner


def own_records(stack: Stack, owner: Owner) -> list[Record]:
    """The records of ``owner``'s bus among ``stack``, outermost first."""
    return [record for record in stack if owned_by(record, owner)]


def innermost_own(stack: Stack, owner: Owner) -> Record | None:
    """``owner``'s innermost record on ``stack`` (another bus's delivery may be running
    inside it), or ``None``: then an event published now is a root for that bus."""
    for record in reversed(stack):
        if owned_by(record, owner):
            return record
    return None


def refuse_if_read_only(stack: Stack, action: str, message_type: object = None) -> None:
    """Raise :class:`~atlas_eda.errors.QuerySideEffectError` when the innermost delivery
    on ``stack`` is a query's: ``action`` (followed by ``message_type``'s name, when
    given) says what was tried, and is refused."""
    if stack and stack[-1][OWNER].read_only:
        if message_type is not None:
            action = f"{action} {type_name(message_type)}"  # type: ignore[arg-type]
        query = type_name(stack[-1][EVENT].type)
        raise QuerySideEffectError(
            f"Query {query} tried to {action}; a query only reads, so nothing was done. "
            f"Make it a command (bus.send) if it must change something."
        )


def add_failure(record: Record, error: BaseException, ended: float) -> None:
    """Log in ``record`` that the running delivery raised ``error`` and ended at ``ended``."""
    record.append((RAISED, error))
    record.append(ended)


def add_interrupted(record: Record, error: BaseException, ended: float) -> None:
    """Log in a traced ``record`` that ``error``, which the bus does not isolate
    (``SystemExit``, ``KeyboardInterrupt``), interrupted the delivery under way: its
    trace shows that delivery ``interrupted``, and none after it. Nothing is logged
    when no delivery was under way (the error struck between deliveries)."""
    done = sum(1 for entry in record[LOG:] if type(entry) is float or entry[0] == SKIPPED)
    if done < len(record[NAMES]):
        add_failure(record, error, ended)


def add_skipped(record: Record) -> None:
    """Log in ``record`` that the next receiver went away before its turn."""
    record.append(_SKIPPED_ENTRY)


RUNNING: ContextVar[Stack] = ContextVar("atlas_eda_running", default=())
"""The records of the deliveries under way in this context, innermost last (internal;
see :func:`running`). One stack serves every bus, so that an effect performed anywhere in
a handler is filed under the delivery running at the time, and a publish finds its
parent there.

A context variable, not a ``threading.local``: work a handler hands on with
``contextvars.copy_context().run(...)`` (an executor that copies the context, asyncio's
tasks) sees the deliveries under way where it was handed on, so what it publishes is a
child of the handled event. A thread started plainly starts with an empty context: what it
publishes is a root (docs/observability.md). Each delivery sets a new tuple and resets it
after, so a copied context keeps the stack as it was when copied, whatever the thread that
copied it does next (a shared list would be pushed and popped by two threads at once)."""


def running() -> Stack:
    """The records under delivery in this context (see :data:`RUNNING`)."""
    return RUNNING.get()


def delivery_under_way() -> tuple[Event, str | None] | None:
    """What is being delivered in this context right now: ``(event, handler)`` for the
    innermost delivery under way (of any bus), ``handler`` being the name (as
    :func:`handler_name` gives it) of the receiver whose call is running; ``None`` outside
    any delivery. ``handler`` is ``None`` when the bus keeps no traces (its records do not
    say which receiver runs), and when every receiver has had its turn (the bus's own
    reports of failures are running)."""
    stack = RUNNING.get()
    if not stack:
        return None
    record = stack[-1]
    if not record[OWNER].traces:
        return record[EVENT], None
    names: tuple[str, ...] = record[NAMES]
    # Each finished delivery logged one float, each skipped receiver one SKIPPED entry:
    # the delivery under way is the one after them.
    index = sum(1 for entry in record[LOG:] if type(entry) is float or entry[0] == SKIPPED)
    return record[EVENT], (names[index] if index < len(names) else None)


def file_effect(
    effect: object,
    result: Any,
    error: BaseException | None,
    retried: tuple[Attempt, ...] = (),
) -> None:
    """File an effect's outcome (and the failed attempts ``retried`` before it) under the
    innermost delivery of a tracing bus running in this context; with none running, do
    nothing."""
    for record in reversed(RUNNING.get()):
        if record[OWNER].traces:
            record.append((EFFECT, EffectOutcome(effect, result, error, retried)))
            return


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt of an effect (or call) that a retry policy tried again: the
    error it raised and the seconds waited before the next attempt."""

    error: BaseException
    wait: float

    def describe(self, width: int | None = None) -> str:
        """``✗ Error: message, waited 0.100 s`` on one line, the message cut at 60
        characters (at ``width`` when given)."""
        message = short(self.error, width or VALUE_WIDTH)
        return f"✗ {type(self.error).__name__}: {message}, waited {self.wait:.3f} s"


@dataclass(frozen=True, slots=True)
class EffectOutcome:
    """One effect performed through an ``EffectHandler``: its result, or its error, and
    the failed attempts a retry policy made before that final one (``retried``, oldest
    first; empty when the first attempt was the last)."""

    effect: Any
    result: Any = None
    error: BaseException | None = None
    retried: tuple[Attempt, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the effect was performed without raising (at its last attempt)."""
        return self.error is None

    @property
    def attempts(self) -> int:
        """How many times the effect's performer was called: the retried attempts and
        the final one."""
        return len(self.retried) + 1

    def describe(self, width: int | None = None) -> str:
        """``effect → result`` or ``effect ✗ Error: message`` on one line, followed by
        ``after N attempts`` when the effect was retried. The effect is cut at 80
        characters and the result or message at 60, or each at ``width`` when given."""
        outcome = (
            f"→ {short(self.result, width or VALUE_WIDTH)}"
            if self.error is None
            else f"✗ {type(self.error).__name__}: {short(self.error, width or VALUE_WIDTH)}"
        )
        tries = f" after {self.attempts} attempts" if self.retried else ""
        return f"{short(self.effect, width or EFFECT_WIDTH)} {outcome}{tries}"

    def attempt_lines(self, width: int | None = None) -> list[str]:
        """One line per retried attempt: ``attempt 1 ✗ Error: message, waited 0.100 s``
        (each message cut as :meth:`Attempt.describe` cuts it)."""
        return [f"attempt {n} {a.describe(width)}" for n, a in enumerate(self.retried, 1)]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One handler's call with the event: which handler, how long it took, its error (if
    it raised), the effects performed while it ran, and the events it published."""

    handler: str
    duration: float
    error: BaseException | None
    effects: tuple[EffectOutcome, ...]
    children: tuple[EventTrace, ...]

    @property
    def outcome(self) -> str:
        """``"ok"``, ``"error: Type: message"``, or ``"interrupted: Type: message"``
        when the handler raised what stops a publish (``SystemExit``,
        ``KeyboardInterrupt``: the handlers after it were not called)."""
        if self.error is None:
            return "ok"
        kind = "error" if isinstance(self.error, Exception) else "interrupted"
        return f"{kind}: {type(self.error).__name__}: {self.error}"


@dataclass(frozen=True, slots=True)
class EventTrace:
    """What happened because of ``event``: its deliveries in order, the effects performed
    outside any delivery, and the child events published outside any delivery (such as the
    bus's own ``ERROR`` reports). Every child is itself an ``EventTrace``. ``missing``
    counts the child events (at any depth) that had already left the bus's history when
    the trace was built, and so are not in it. For a command or query (see
    :mod:`atlas_eda.commands`) that returned, ``answered`` is true and ``result`` is what
    its handler returned; one that raised has the error in its delivery."""

    event: Event
    deliveries: tuple[Delivery, ...]
    effects: tuple[EffectOutcome, ...]
    children: tuple[EventTrace, ...]
    missing: int = 0
    result: Any = None
    answered: bool = False

    @property
    def complete(self) -> bool:
        """Whether every event this one caused, at any depth, is in the trace."""
        return self.missing == 0

    def all_children(self) -> tuple[EventTrace, ...]:
        """Every direct child, whichever delivery (if any) published it."""
        nested = tuple(child for d in self.deliveries for child in d.children)
        return nested + self.children

    def all_effects(self) -> tuple[EffectOutcome, ...]:
        """Every effect performed because of this event, its descendants' included."""
        own = tuple(e for d in self.deliveries for e in d.effects) + self.effects
        return own + tuple(e for child in self.all_children() for e in child.all_effects())

    def walk(self) -> Iterator[EventTrace]:
        """This trace and every descendant, depth first."""
        yield self
        for child in self.all_children():
            yield from child.walk()

    def _headline(self, width: int | None = None) -> str:
        event = self.event
        source = f" from {event.source}" if event.source else ""
        return (
            f"{type_name(event.type)} {event.id}{source} at {when(event.timestamp)} "
            f"data={short(event.data, width or DATA_WIDTH)}"
        )

    def _lines(self, width: int | None = None) -> list[tuple[str, list[Any]]]:
        """(line, sub-items) pairs: a generic tree both renderers walk."""
        items: list[tuple[str, list[Any]]] = []
        for delivery in self.deliveries:
            sub: list[Any] = [_effect_item(e, width) for e in delivery.effects]
            sub.extend(child for child in delivery.children)
            items.append(
                (
                    f"handler {delivery.handler}  {delivery.duration * 1000:.3f} ms  "
                    f"{delivery.outcome}",
                    sub,
                )
            )
        items.extend(_effect_item(e, width) for e in self.effects)
        items.extend((child, []) for child in self.children)  # type: ignore[misc]
        if self.answered:
            items.append((f"result → {short(self.result, width or DATA_WIDTH)}", []))
        return items

    def tree(self, *, width: int | None = None, full: bool = False) -> str:
        """The trace as an indented text tree, one line per event, delivery and effect.
        Values are cut short by default (event data and results at 70 characters, effects
        at 80, their results and errors at 60); ``width`` cuts each at that many
        characters instead (at least 8), ``full=True`` shows every value whole."""
        if width is not None:
            check_count("width", width, minimum=MIN_WIDTH)
        cut = sys.maxsize if full else width
        lines = [self._headline(cut)]
        _render_text(self._lines(cut), "", lines, cut)
        return "\n".join(lines)

    def __repr__(self) -> str:
        count = sum(1 for _ in self.walk()) - 1
        return (
            f"EventTrace({type_name(self.event.type)} {self.event.id}, "
            f"{len(self.deliveries)} deliveries, {count} descendant events)"
        )

    def _repr_html_(self) -> str:
        return f'<div style="font-family:monospace;font-size:12px">{_render_html(self)}</div>'


def _effect_item(outcome: EffectOutcome, width: int | None = None) -> tuple[str, list[Any]]:
    """An effect's line in a trace, with a line under it for each retried attempt."""
    lines = outcome.attempt_lines(width)
    return f"effect {outcome.describe(width)}", [(line, []) for line in lines]


def _render_text(
    items: list[tuple[Any, list[Any]]], prefix: str, out: list[str], width: int | None = None
) -> None:
    for index, item in enumerate(items):
        last = index == len(items) - 1
        branch, extension = ("└─ ", "   ") if last else ("├─ ", "│  ")
        label, sub = (item, []) if isinstance(item, EventTrace) else item
        if isinstance(label, EventTrace):
            out.append(f"{prefix}{branch}child {label._headline(width)}")
            _render_text(label._lines(width), prefix + extension, out, width)
        else:
            out.append(f"{prefix}{branch}{label}")
            _render_text(sub, prefix + extension, out, width)


def _render_html(trace: EventTrace) -> str:
    def items_html(items: list[tuple[Any, list[Any]]]) -> str:
        if not items:
            return ""
        parts = ["<ul>"]
        for item in items:
            label, sub = (item, []) if isinstance(item, EventTrace) else item
            if isinstance(label, EventTrace):
                parts.append(f"<li>child {_render_html(label)}</li>")
            else:
                parts.append(f"<li>{html.escape(label)}{items_html(sub)}</li>")
        parts.append("</ul>")
        return "".join(parts)

    return f"<b>{html.escape(trace._headline())}</b>{items_html(trace._lines())}"


def handler_name(handler: object) -> str:
    """A handler's ``__qualname__``; for callables without one, a name made from their
    type: ``Class.__call__`` for an instance of a class with ``__call__``,
    ``partial(function)`` for a ``functools.partial``. Never raises."""
    try:
        name = getattr(handler, "__qualname__", None)
        if isinstance(name, str):
            return name
        if isinstance(handler, functools.partial):
            return f"partial({handler_name(handler.func)})"
        return f"{type(handler).__qualname__}.__call__"
    except Exception:
        return type(handler).__qualname__


MAX_TRACE_DEPTH = 256
"""How many generations of child events a trace follows; deeper ones are left out
(more than any ``max_depth`` a bus allows under Python's default recursion limit)."""


def qualified_name(fn: object) -> str:
    """``module.qualname`` of a function or class (its ``repr`` when it has no name):
    how log lines and error messages name handlers, middleware and watchers."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def _text(value: object) -> str:
    if type(value) is str:
        return value
    try:
        return str(value)
    except Exception:
        return type(value).__qualname__


def build_trace(
    record: Record, lookup: Callable[[str], Record | None], depth: int = 0
) -> EventTrace:
    """The immutable trace of a tracing bus's ``record``; children that ``lookup`` (event
    id to record) no longer finds are left out and counted in ``missing``."""
    names: tuple[str, ...] = record[NAMES]
    previous: float = record[STARTED]
    index = 0  # the receiver whose delivery is under way
    missing = 0
    deliveries: list[Delivery] = []
    # What the delivery under way logged (once every receiver had its turn, the event's own).
    effects: list[EffectOutcome] = []
    children: list[EventTrace] = []
    error: BaseException | None = None
    result: Any = None
    answered = False
    for entry in record[LOG:]:  # a copy: the bus may still be appending
        if type(entry) is float:  # a delivery ended
            name = names[index] if index < len(names) else "?"
            index += 1
            duration = max(entry - previous, 0.0)
            deliveries.append(
                Delivery(_text(name), duration, error, tuple(effects), tuple(children))
            )
            error, effects, children = None, [], []
            previous = entry
            continue
        tag, value = entry
        if tag == EFFECT:
            effects.append(value)
        elif tag == CHILD and depth < MAX_TRACE_DEPTH:
            child = lookup(value)
            if child is None:
                missing += 1
            else:
                built = build_trace(child, lookup, depth + 1)
                missing += built.missing
                children.append(built)
        elif tag == RAISED:
            error = value
        elif tag == SKIPPED:
            index += 1
        elif tag == RESULT:
            result, answered = value, True
    return EventTrace(
        record[EVENT],
        tuple(deliveries),
        tuple(effects),
        tuple(children),
        missing,
        result,
        answered,
    )
