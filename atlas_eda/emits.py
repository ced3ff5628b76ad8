"""Declared emits: what a handler registered with ``emits=`` may publish or send, checked
at run time (the graph built from the declarations is :mod:`atlas_eda.graph`).

``emits=None`` (the default) declares nothing: nothing the handler does is checked.
``emits=()`` declares that it emits nothing. ``allow_cycle=True`` (or a subset of
``emits``) marks the loops through the handler as intended (see
:meth:`atlas_eda.graph.EventGraph.check`).

A declaring handler is called through :class:`Declaring`, which notes its declaration on
the thread while it runs; the bus's :class:`EmitCheck` (held by its
:class:`~atlas_eda.trace.Owner` from the first declaration on) compares each publish or
send made inside it with the declaration: an :class:`UndeclaredEmitWarning` once per
handler and type, or, on a bus created with ``strict_graph=True``, an
:class:`UndeclaredEmitError` with nothing published. A bus where no handler declared
anything pays nothing on a root publish and one attribute test on a nested one."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from enum import Enum
from typing import Any

from .errors import InvalidArgumentError, UndeclaredEmitError, UndeclaredEmitWarning
from .events import Event, type_name
from .trace import OWNER, RUNNING, Owner, Record, Stack, handler_name
from .views import short_repr

__all__ = ["DECLARING", "Declaration", "Declaring", "EmitCheck", "KindOf", "declare"]

KindOf = Callable[[object], "str | None"]
"""Tells a command type (``"command"``) or a query type (``"query"``) from an event type
(``None``): :func:`atlas_eda.commands.request_kind`."""


# -- declarations ------------------------------------------------------------------------


class Declaration:
    """What one registration declared (internal): the types its handler may emit and those
    of them through which a loop is intended. Keeps the types already warned about."""

    __slots__ = ("allow_cycle", "emits", "lock", "name", "node", "receives", "warned")

    def __init__(
        self, receives: Enum, name: str, emits: tuple[Enum, ...], allow_cycle: tuple[Enum, ...]
    ) -> None:
        self.receives = receives
        self.name = name
        self.emits = emits
        self.allow_cycle = allow_cycle
        self.warned: set[Enum] = set()
        self.node: Any = None  # its atlas_eda.graph.GraphHandler, made on first use
        self.lock = threading.Lock()


def _members(value: object, what: str, receives: Enum) -> tuple[Enum, ...]:
    """``value`` as a tuple of distinct Enum members (in order), or a clear error."""
    name = type_name(receives)
    if isinstance(value, (Enum, str, bytes, type)):
        raise InvalidArgumentError(
            f"{what} for {name} must be an iterable of Enum members, got "
            f"{short_repr(value)}; write {what}=(Member,) for a single type."
        )
    try:
        items = list(value)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidArgumentError(
            f"{what} for {name} must be an iterable of Enum members (e.g. a tuple), got "
            f"{short_repr(value)} of type {type(value).__name__}."
        ) from None
    for item in items:
        if not isinstance(item, Enum):
            raise InvalidArgumentError(
                f"{what} for {name} names {short_repr(item)} of type {type(item).__name__}, "
                f"not a message type: give members of your event or command Enums."
            )
    return tuple(dict.fromkeys(items))


def declare(
    receives: Enum, handler: object, emits: object, allow_cycle: object, kind_of: KindOf
) -> Declaration | None:
    """Check a registration's ``emits=`` and ``allow_cycle=`` (see the module) and return
    its :class:`Declaration`, or ``None`` when it declares nothing; ``kind_of`` tells
    command and query types from event types. Bad input raises
    :class:`InvalidArgumentError` naming the argument, before anything is registered."""
    name = type_name(receives)
    if emits is None:
        if allow_cycle is not False:
            raise InvalidArgumentError(
                f"allow_cycle={short_repr(allow_cycle)} for {name} without emits=: a loop "
                f"goes through what a handler emits, so declare emits=(...) first."
            )
        return None
    declared = _members(emits, "emits", receives)
    for item in declared:
        if kind_of(item) == "query":
            raise InvalidArgumentError(
                f"emits for {name} names the query {type_name(item)}: a query is asked, not "
                f"emitted (it changes nothing); leave it out of emits."
            )
    if kind_of(receives) == "query" and declared:
        raise InvalidArgumentError(
            f"{name} is a query: its handler may not publish or send, so it emits nothing; "
            f"give emits=() or leave emits out."
        )
    if allow_cycle is True:
        allowed = declared
    elif allow_cycle is False:
        allowed = ()
    else:
        allowed = _members(allow_cycle, "allow_cycle", receives)
        stray = [type_name(item) for item in allowed if item not in declared]
        if stray:
            raise InvalidArgumentError(
                f"allow_cycle for {name} names {', '.join(stray)}, which its emits do not "
                f"declare; allow_cycle is True, False, or a subset of emits."
            )
    if allow_cycle is True and not declared:
        raise InvalidArgumentError(
            f"allow_cycle=True for {name} with emits=(): a handler that emits nothing "
            f"closes no loop; drop allow_cycle or declare what it emits."
        )
    return Declaration(receives, handler_name(handler), declared, allowed)


# -- the run-time check ----------------------------------------------------------------

DECLARING: ContextVar[tuple[tuple[Record, Declaration], ...]] = ContextVar(
    "atlas_eda_declaring", default=()
)
"""In this context, for each declaring handler running, the record it is delivering (the
top of :data:`~atlas_eda.trace.RUNNING` when it was called) and its :class:`Declaration`,
innermost last: a context variable, as ``RUNNING`` is, so that work handed on with
``contextvars.copy_context()`` is checked against the handler that handed it on."""


class Declaring:
    """Calls a handler that declared ``emits`` (internal): notes the declaration on this
    thread while it runs, so that a publish or send inside it can be checked. Only
    declaring handlers are called through one: nobody else pays for it."""

    __slots__ = ("call", "declaration")

    def __init__(self, call: Callable[[Event], Any], declaration: Declaration) -> None:
        self.call = call
        self.declaration = declaration

    def __call__(self, event: Event) -> Any:
        token = DECLARING.set((*DECLARING.get(), (RUNNING.get()[-1], self.declaration)))
        try:
            return self.call(event)
        finally:
            DECLARING.reset(token)


class EmitCheck:
    """A bus's check that declaring handlers emit only what they declared (internal). The
    bus's :class:`~atlas_eda.trace.Owner` holds it (``owner.emits``) from the first
    declaration on; until then a nested publish tests one attribute and a root publish
    nothing."""

    __slots__ = ("strict",)

    def __init__(self, strict: bool) -> None:
        self.strict = strict

    def check(self, stack: Stack, message_type: Enum, owner: Owner, verb: str) -> None:
        """Report ``message_type`` about to be published or sent (``verb``) with
        ``stack`` under delivery in this context, if the handler running the innermost
        delivery declared emits without it."""
        declaring = DECLARING.get()
        if not declaring:
            return
        record, declaration = declaring[-1]
        # Only the handler whose call is running right now: a deeper delivery (another
        # handler's, another bus's) has its own record on top of the stack.
        if record is not stack[-1] or record[OWNER] is not owner:
            return
        if message_type in declaration.emits:
            return
        self._undeclared(declaration, message_type, verb)

    def _undeclared(self, declaration: Declaration, message_type: Enum, verb: str) -> None:
        declared = ", ".join(type_name(item) for item in declaration.emits) or "nothing"
        name = type_name(message_type)
        text = (
            f"Handler {declaration.name} of {type_name(declaration.receives)} {verb} {name}, "
            f"which it did not declare (emits: {declared}). Add {name} to its emits=, or "
            f"make it stop."
        )
        if self.strict:
            raise UndeclaredEmitError(f"{text} Nothing was {verb} (the bus has strict_graph=True).")
        with declaration.lock:
            if message_type in declaration.warned:
                return
            declaration.warned.add(message_type)
        # stacklevel: this frame, check, publish or send (send: the Requests call too).
        warnings.warn(text, UndeclaredEmitWarning, stacklevel=4 if verb == "published" else 5)
