"""Effects as data: ``Effect`` intents, the immutable ``EffectMonad`` that carries them
next to a value, and ``EffectHandler``, an ``effect``-library dispatcher that performs them."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any, Generic, TypeVar

import effect as fx

from .errors import InvalidEffectError, UnhandledEffectError
from .events import type_name
from .trace import RUNNING, file_effect

__all__ = [
    "Effect",
    "EffectHandler",
    "EffectMonad",
    "EffectObserver",
    "EffectType",
    "KnownOutcome",
    "Performer",
    "effect_observer",
    "effect_stub",
]

T = TypeVar("T")
U = TypeVar("U")

Performer = Callable[["Effect"], Any]
"""A function that performs one effect and returns its result: ``fn(effect) -> result``."""


class EffectType(Enum):
    """The built-in effect types; any ``enum.Enum`` member may be an effect type."""

    DATABASE_WRITE = auto()
    DATABASE_READ = auto()
    NOTIFICATION = auto()
    LOGGING = auto()
    FILE_OPERATION = auto()


@dataclass(frozen=True, slots=True)
class Effect:
    """A description of one side effect (an ``effect``-library intent): what kind of
    effect, its payload, and a human-readable description."""

    type: Enum
    payload: Any = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.type, Enum):
            raise InvalidEffectError(
                f"Effect type must be an enum.Enum member (for example EffectType.LOGGING), "
                f"got {self.type!r} of type {type(self.type).__name__}."
            )

    def __repr__(self) -> str:
        desc = f", {self.description!r}" if self.description else ""
        return f"Effect({type_name(self.type)}, {self.payload!r}{desc})"


EffectObserver = Callable[[object, Any, "BaseException | None"], None]
"""Told of each effect an ``EffectHandler`` performs: ``observer(effect, result, error)``."""

effect_observer: ContextVar[EffectObserver | None] = ContextVar(
    "atlas_eda_effect_observer", default=None
)
"""Who else is told of the effects performed in this context (tests and tools set it).
Traces need none of it: an effect performed while a tracing bus delivers an event on this
thread is filed under that delivery whatever this holds (see :func:`_observer`)."""

effect_stub: ContextVar[Callable[[object], Any] | None] = ContextVar(
    "atlas_eda_effect_stub", default=None
)
"""An ``effect`` dispatcher every ``EffectHandler`` consults first in this context (replay
sets it): a performer it returns is used instead of the registered one, and what that
performer returns or raises is still told to :data:`effect_observer`. Checking for
performers (``EffectHandler.unhandled``) never consults it."""

_LIBRARY_DISPATCHERS = (fx.ComposedDispatcher, fx.TypeDispatcher)


def _observer() -> EffectObserver | None:
    """Who is told of an effect performed now: the trace of the delivery running on this
    thread, if a bus is delivering one, and :data:`effect_observer`, if set; ``None``
    when nobody listens (then an effect is performed with no reporting at all)."""
    told = effect_observer.get()
    if not getattr(RUNNING, "stack", None):  # no bus is delivering on this thread
        return told
    if told is None:
        return file_effect
    return functools.partial(_tell_both, told)


def _tell_both(
    told: EffectObserver, effect: object, result: Any, error: BaseException | None
) -> None:
    file_effect(effect, result, error)
    told(effect, result, error)


def _observed(intent: object, function: Callable[[Any], Any]) -> Any:
    """``function(intent)``, with its result or exception told to whoever listens (see
    :func:`_observer`)."""
    observer = _observer()
    if observer is None:
        return function(intent)
    try:
        result = function(intent)
    except Exception as exc:
        observer(intent, None, exc)
        raise
    observer(intent, result, None)
    return result


class KnownOutcome:
    """An ``effect`` performer whose outcome is settled before it runs: it succeeds with
    ``result``, or, when ``error`` is given, fails with the exception ``error()`` makes
    (a fresh one each time). Stubs made of these (the replay harness's are) are
    performed by :class:`EffectHandler` without filling a box, with the same result,
    exception and effect-observer report."""

    __slots__ = ("error", "result")

    def __init__(
        self, result: Any = None, error: Callable[[], BaseException] | None = None
    ) -> None:
        self.result = result
        self.error = error

    def __call__(self, dispatcher: Any, intent: object, box: Any) -> None:
        if self.error is None:
            box.succeed(self.result)
        else:
            box.fail(self.error())

    def settle(self, intent: object) -> Any:
        """Return the result (or raise the error) as performing ``intent`` with this
        performer would, telling whoever listens (see :func:`_observer`)."""
        observer = _observer()
        if self.error is None:
            if observer is not None:
                observer(intent, self.result, None)
            return self.result
        error = self.error()
        if observer is not None:
            observer(intent, None, error)
        raise error


def _stubbed(performer: Any) -> Any:
    """A performer running the stub's ``performer`` with the effect observer told of its
    outcome (through the box it fills: no second ``sync_perform``, replay's hot path)."""

    def perform(dispatcher: Any, intent: object, box: Any) -> Any:
        observer = _observer()
        if observer is not None:
            box = _ObservedBox(box, intent, observer)
        return performer(dispatcher, intent, box)

    return perform


def _unhandled(missing: list[object]) -> UnhandledEffectError:
    names = ", ".join(
        type_name(i.type) if isinstance(i, Effect) else type(i).__name__ for i in missing
    )
    return UnhandledEffectError(
        f"No handler registered for effect type(s): {names}. Register one with "
        f"EffectHandler.register_handler(effect_type, fn) before running; "
        f"nothing was performed.",
        tuple(missing),
    )


def _perform_all(dispatcher: Any, intents: Iterable[object]) -> None:
    for intent in intents:
        fx.sync_perform(dispatcher, fx.Effect(intent))


class _SyncBox:
    """The box a performer fills when performed without the trampoline."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome: tuple[bool, Any] | None = None

    def succeed(self, result: Any) -> None:
        self.outcome = (False, result)

    def fail(self, error: BaseException) -> None:
        self.outcome = (True, error)


class _ObservedBox:
    """Passes a library performer's outcome on, telling the effect observer first."""

    __slots__ = ("_box", "_intent", "_observer")

    def __init__(self, box: Any, intent: object, observer: EffectObserver) -> None:
        self._box, self._intent, self._observer = box, intent, observer

    def succeed(self, result: Any) -> None:
        self._observer(self._intent, result, None)
        self._box.succeed(result)

    def fail(self, error: BaseException) -> None:
        self._observer(self._intent, None, error)
        self._box.fail(error)


def _observed_base_dispatcher(intent: object) -> Any:
    """``effect.base_dispatcher`` (``Func``, ``Constant``, ``Error``, …), its performers
    reporting to the effect observer as an ``EffectHandler``'s own do, so library intents
    show in traces and recordings too."""
    performer = fx.base_dispatcher(intent)
    if performer is None:
        return None

    def perform(dispatcher: Any, intent: object, box: Any) -> Any:
        observer = _observer()
        if observer is not None:
            box = _ObservedBox(box, intent, observer)
        return performer(dispatcher, intent, box)

    return perform


class EffectHandler:
    """Performs effects by type. It is an ``effect`` dispatcher: called with an intent it
    returns a performer (or ``None``), so it composes with ``effect.ComposedDispatcher``,
    ``effect.base_dispatcher`` and ``effect.testing``. ``temporal_store`` and ``event_bus``
    are kept for performers that need them."""

    def __init__(self, temporal_store: Any = None, event_bus: Any = None) -> None:
        self.temporal_store = temporal_store
        self.event_bus = event_bus
        self._functions: dict[Enum, Performer] = {}
        self._performers: dict[Enum, Any] = {}
        self._lock = threading.Lock()
        # Library intents (Func, Constant, Error) are performed by effect's own dispatcher.
        self.dispatcher: Any = fx.ComposedDispatcher([self, _observed_base_dispatcher])
        # A subclass that changes how performers are found keeps the library's path.
        cls = type(self)
        self._direct = (
            cls.__call__ is EffectHandler.__call__ and cls._lookup is EffectHandler._lookup
        )

    def register_handler(self, effect_type: Enum, handler: Performer) -> None:
        """Perform every effect of ``effect_type`` with ``handler(effect)``; its return
        value is the effect's result. Registering a type again replaces its handler."""
        if not isinstance(effect_type, Enum):
            raise InvalidEffectError(
                f"register_handler needs an enum.Enum member as effect type, got {effect_type!r}."
            )
        if not callable(handler):
            raise TypeError(
                f"register_handler needs a callable handler(effect) for "
                f"{type_name(effect_type)}, got {handler!r}."
            )

        @fx.sync_performer  # type: ignore[untyped-decorator]
        def perform(dispatcher: Any, intent: Effect) -> Any:
            return _observed(intent, handler)

        with self._lock:
            self._functions[effect_type] = handler
            self._performers[effect_type] = perform

    def registered_types(self) -> list[Enum]:
        """The effect types that have a handler, in registration order."""
        return list(self._functions)

    def __call__(self, intent: object) -> Any:
        """The ``effect`` dispatcher protocol: a performer for ``intent``, or ``None``.
        A stub dispatcher set in :data:`effect_stub` is asked first."""
        stub = effect_stub.get()
        if stub is not None:
            performer = stub(intent)
            if performer is not None:
                return _stubbed(performer)
        return self._lookup(intent)

    def _lookup(self, intent: object) -> Any:
        if isinstance(intent, Effect):
            return self._performers.get(intent.type)
        return None

    def unhandled(self, intents: Iterable[object]) -> list[object]:
        """The intents among ``intents`` that nothing here (nor ``effect``'s base
        dispatcher, for library intents) can perform."""
        lookup, base = self._lookup, fx.base_dispatcher
        return [intent for intent in intents if lookup(intent) is None and base(intent) is None]

    def ensure_handled(self, intents: Iterable[object]) -> None:
        """Raise :class:`UnhandledEffectError` naming every intent without a performer."""
        missing = self.unhandled(intents)
        if missing:
            raise _unhandled(missing)

    def handle(self, effect: object) -> Any:
        """Perform one effect now and return its result (as ``effect.sync_perform``
        through :attr:`dispatcher` would)."""
        self.ensure_handled((effect,))
        return self._perform(effect)

    def perform_all(self, intents: Iterable[object]) -> None:
        """Perform ``intents`` in order, as ``effect.sync_perform`` of each through
        :attr:`dispatcher` would: same performers, results, exceptions and observer
        reports. The first exception stops the rest."""
        for intent in intents:
            self._perform(intent)

    def _perform(self, intent: object) -> Any:
        # An Effect is performed here without effect's trampoline, exactly as the
        # trampoline would perform it through this dispatcher (at a fraction of the
        # cost): with no stub in force, a registered function is simply called; with a
        # stub, the performer it (or, failing it, this handler) gives fills a box.
        # Anything else, or a subclass that finds performers its own way, goes through
        # the library.
        if type(intent) is Effect and self._direct:
            stub = effect_stub.get()
            if stub is None:
                function = self._functions.get(intent.type)
                if function is not None:
                    return _observed(intent, function)
            else:
                performer = stub(intent)  # once: a stub may consume what it hands out
                if performer is not None:
                    if type(performer).__call__ is KnownOutcome.__call__:
                        return performer.settle(intent)
                    return self._fill(performer, intent, observed=True)
                performer = self._lookup(intent)
                if performer is None:
                    raise fx.NoPerformerFoundError(intent)
                return self._fill(performer, intent)
        return fx.sync_perform(self.dispatcher, fx.Effect(intent))

    def _fill(self, performer: Any, intent: object, *, observed: bool = False) -> Any:
        """What ``effect.sync_perform`` returns or raises for a performer's outcome; with
        ``observed``, the outcome is also told to the effect observer (as ``_stubbed``
        does for a stub's performer)."""
        box = _SyncBox()
        observer = _observer() if observed else None
        performer(
            self.dispatcher,
            intent,
            box if observer is None else _ObservedBox(box, intent, observer),
        )
        if box.outcome is None:
            raise fx.NotSynchronousError(f"Performing {intent!r} was not synchronous!")
        failed, value = box.outcome
        if failed:
            raise value
        if type(value) is fx.Effect:  # a performer may hand on another effect
            return fx.sync_perform(self.dispatcher, value)
        return value

    def __repr__(self) -> str:
        types = ", ".join(type_name(t) for t in self._functions)
        return f"EffectHandler([{types}])"


class EffectMonad(Generic[T]):
    """An immutable value paired with the effects that producing it requires.
    ``map``/``bind``/``with_effect`` return new monads; ``run`` performs the effects."""

    __slots__ = ("_effects", "_value")

    def __init__(self, value: T, effects: Iterable[object] = ()) -> None:
        self._value = value
        self._effects: tuple[object, ...] = tuple(effects)

    @property
    def value(self) -> T:
        """The wrapped value."""
        return self._value

    @property
    def effects(self) -> tuple[object, ...]:
        """The effects to perform, in order."""
        return self._effects

    @classmethod
    def pure(cls, value: U) -> EffectMonad[U]:
        """A monad holding ``value`` and no effects."""
        return EffectMonad(value)

    def with_effect(self, effect: object) -> EffectMonad[T]:
        """A new monad with ``effect`` appended."""
        return EffectMonad(self._value, (*self._effects, effect))

    def map(self, fn: Callable[[T], U]) -> EffectMonad[U]:
        """A new monad holding ``fn(value)`` (computed now) and the same effects."""
        return EffectMonad(fn(self._value), self._effects)

    def bind(self, fn: Callable[[T], EffectMonad[U]]) -> EffectMonad[U]:
        """Chain an effectful step: its value, and this monad's effects followed by its own."""
        result = fn(self._value)
        if not isinstance(result, EffectMonad):
            raise TypeError(
                f"bind expects a function returning an EffectMonad, got {type(result).__name__}; "
                f"use map for plain values."
            )
        return EffectMonad(result._value, (*self._effects, *result._effects))

    def run(self, handler: EffectHandler | Callable[[Any], Any]) -> T:
        """Perform every effect in order and return the value.

        With an :class:`EffectHandler` (or one of the ``effect`` library's dispatcher
        classes, ``ComposedDispatcher`` and ``TypeDispatcher``), every effect is checked for
        a performer *before* any is performed (:class:`UnhandledEffectError` otherwise),
        then each is performed through ``effect.sync_perform``. Any other callable is
        called once per effect as ``fn(effect)``.
        """
        if isinstance(handler, EffectHandler):
            handler.ensure_handled(self._effects)
            handler.perform_all(self._effects)
        elif isinstance(handler, _LIBRARY_DISPATCHERS):
            # Called with an intent, a dispatcher only looks a performer up: treating it
            # as a plain fn(effect) would silently perform nothing.
            missing = [intent for intent in self._effects if handler(intent) is None]
            if missing:
                raise _unhandled(missing)
            _perform_all(handler, self._effects)
        elif callable(handler):
            for intent in self._effects:
                handler(intent)
        else:
            raise TypeError(
                f"run needs an EffectHandler or a callable fn(effect), got {handler!r}."
            )
        return self._value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EffectMonad):
            return NotImplemented
        return bool(self._value == other._value and self._effects == other._effects)

    __hash__ = None  # type: ignore[assignment]  # equal by value, so not hashable

    def __repr__(self) -> str:
        return f"EffectMonad({self._value!r}, effects={list(self._effects)!r})"
