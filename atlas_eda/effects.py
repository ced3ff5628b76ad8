"""Effects as data: ``Effect`` intents, the immutable ``EffectMonad`` that carries them
next to a value, and ``EffectHandler``, an ``effect``-library dispatcher that performs them."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any, Generic, TypeVar, cast

import effect as fx

from .errors import InvalidEffectError, PendingResultError, UnhandledEffectError
from .events import type_name
from .resilience import NO_SLEEP, Breaker, Guarded, Retry, check_policies
from .trace import RUNNING, Attempt, file_effect
from .views import short

__all__ = [
    "Effect",
    "EffectHandler",
    "EffectMonad",
    "EffectObserver",
    "EffectType",
    "EffectWrapper",
    "KnownOutcome",
    "Performer",
    "effect_observer",
    "effect_stub",
    "set_effect_wrapper",
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
    # A call to another service: the usual effect to guard with a Retry and a Breaker.
    HTTP_CALL = auto()


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
    if not RUNNING.get():  # no bus is delivering in this context
        return told
    if told is None:
        return file_effect
    return functools.partial(_tell_both, told)


def _tell_both(
    told: EffectObserver, effect: object, result: Any, error: BaseException | None
) -> None:
    file_effect(effect, result, error)
    told(effect, result, error)


EffectWrapper = Callable[[object, Callable[[], Any]], Any]
"""Called as ``wrapper(intent, perform)`` around each effect an ``EffectHandler``'s
registered function performs: must call ``perform()`` once and return what it returns
(:mod:`atlas_eda.telemetry` makes a span of it)."""

_wrappers: list[EffectWrapper] = []  # at most one: see set_effect_wrapper


def set_effect_wrapper(wrapper: EffectWrapper | None) -> None:
    """Perform every effect of a registered function through ``wrapper`` from now on
    (``None``: directly again), whatever ``EffectHandler`` performs it."""
    _wrappers.clear()
    if wrapper is not None:
        _wrappers.append(wrapper)


def _observed(intent: object, function: Callable[[Any], Any]) -> Any:
    """``function(intent)``, with its result or exception told to whoever listens (see
    :func:`_observer`), through the effect wrapper if one is set."""
    if _wrappers:
        return _wrappers[0](intent, functools.partial(_observed_now, intent, function))
    return _observed_now(intent, function)


def _observed_now(intent: object, function: Callable[[Any], Any]) -> Any:
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


def _report(
    intent: object, result: Any, error: BaseException | None, retried: list[Attempt]
) -> None:
    """Tell whoever listens (see :func:`_observer`) of an effect's outcome; the trace is
    also told of the attempts retried before it."""
    if not retried:
        observer = _observer()
        if observer is not None:
            observer(intent, result, error)
        return
    if RUNNING.get():
        file_effect(intent, result, error, tuple(retried))
    told = effect_observer.get()
    if told is not None:
        told(intent, result, error)


def _guarded(intent: object, guard: Guarded) -> Any:
    """Perform ``intent`` under ``guard``'s policies, reporting its outcome and attempts
    (through the effect wrapper if one is set: one span for every attempt)."""
    if _wrappers:
        return _wrappers[0](intent, functools.partial(_guarded_now, intent, guard))
    return _guarded_now(intent, guard)


def _guarded_now(intent: object, guard: Guarded) -> Any:
    retry = guard.retry
    if guard.breaker is None and retry is not None:
        # A retry policy alone: the first attempt costs no more than a bare performer's.
        try:
            result = guard.function(intent)
        except Exception as exc:
            return _retrying(intent, guard.function, retry, exc)
        observer = _observer()
        if observer is not None:
            observer(intent, result, None)
        return result
    retried: list[Attempt] = []
    try:
        result = guard.perform(intent, retried)
    except Exception as exc:
        _report(intent, None, exc, retried)
        raise
    _report(intent, result, None, retried)
    return result


def _retrying(
    intent: object, function: Callable[[Any], Any], retry: Retry, error: Exception
) -> Any:
    """Go on performing ``intent`` under ``retry`` after its first attempt failed with
    ``error``, reporting its outcome and attempts."""
    retried: list[Attempt] = []
    try:
        result = retry.retry_after(error, function, intent, on_retry=retried.append)
    except Exception as exc:
        _report(intent, None, exc, retried)
        raise
    _report(intent, result, None, retried)
    return result


class KnownOutcome:
    """An ``effect`` performer whose outcome is settled before it runs: it succeeds with
    ``result``, or, when ``error`` is given, fails with the exception ``error()`` makes
    (a fresh one each time). Stubs made of these (the replay harness's are) are
    performed by :class:`EffectHandler` without filling a box, with the same result,
    exception and effect-observer report.

    ``earlier``: when given (check-mode replay), the failures of the attempts recorded
    before that outcome, one ``error()`` each: an :class:`EffectHandler` plays them,
    then the outcome, through the retry policy registered for the effect's type (none:
    one attempt), without waiting, so the trace shows how many attempts that policy
    makes of them. ``None``: the outcome is given at once."""

    __slots__ = ("earlier", "error", "result")

    def __init__(
        self,
        result: Any = None,
        error: Callable[[], BaseException] | None = None,
        earlier: tuple[Callable[[], BaseException], ...] | None = None,
    ) -> None:
        self.result = result
        self.error = error
        self.earlier = earlier

    def outcome(self) -> Any:
        """The result, or raise the error, telling nobody."""
        if self.error is None:
            return self.result
        raise self.error()

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


def _unhandled(missing: list[object], *, reached: bool = False) -> UnhandledEffectError:
    """The error for intents without a performer; ``reached``: found only when a step that
    depends on an earlier effect's result was reached, so earlier effects were performed."""
    names = ", ".join(
        type_name(i.type) if isinstance(i, Effect) else type(i).__name__ for i in missing
    )
    done = (
        "it was reached after an earlier effect's result was known, so the effects before "
        "it were performed"
        if reached
        else "nothing was performed"
    )
    return UnhandledEffectError(
        f"No handler registered for effect type(s): {names}. Register one with "
        f"EffectHandler.register_handler(effect_type, fn) before running; {done}.",
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
        self._functions: dict[Enum, Performer | Guarded] = {}
        self._performers: dict[Enum, Any] = {}
        self._lock = threading.Lock()
        # Library intents (Func, Constant, Error) are performed by effect's own dispatcher.
        self.dispatcher: Any = fx.ComposedDispatcher([self, _observed_base_dispatcher])
        # A subclass that changes how performers are found keeps the library's path.
        cls = type(self)
        self._direct = (
            cls.__call__ is EffectHandler.__call__ and cls._lookup is EffectHandler._lookup
        )

    def register_handler(
        self,
        effect_type: Enum,
        handler: Performer,
        *,
        retry: Retry | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        """Perform every effect of ``effect_type`` with ``handler(effect)``; its return
        value is the effect's result. Registering a type again replaces its handler.

        ``retry`` (a :class:`~atlas_eda.resilience.Retry`) calls ``handler`` again while
        it fails, waiting between attempts (blocking the publishing thread); the trace
        shows each failed attempt with its error and wait. ``breaker`` (a
        :class:`~atlas_eda.resilience.Breaker`, named after the effect type and
        publishing on this handler's ``event_bus`` unless it has its own) guards each
        attempt: while it is open the effect fails at once with
        :class:`~atlas_eda.resilience.CircuitOpenError`, ``handler`` not called."""
        check_policies(retry, breaker)
        if not isinstance(effect_type, Enum):
            raise InvalidEffectError(
                f"register_handler needs an enum.Enum member as effect type, got {effect_type!r}."
            )
        if not callable(handler):
            raise TypeError(
                f"register_handler needs a callable handler(effect) for "
                f"{type_name(effect_type)}, got {handler!r}."
            )

        function: Any = handler
        if retry is not None or breaker is not None:
            if breaker is not None:
                breaker.bind(type_name(effect_type), self.event_bus)
            function = Guarded(handler, retry, breaker)

            @fx.sync_performer  # type: ignore[untyped-decorator]
            def perform(dispatcher: Any, intent: Effect) -> Any:
                return _guarded(intent, function)

        else:

            @fx.sync_performer  # type: ignore[untyped-decorator]
            def perform(dispatcher: Any, intent: Effect) -> Any:
                return _observed(intent, handler)

        with self._lock:
            self._functions[effect_type] = function
            self._performers[effect_type] = perform

    def policies(self, effect_type: Enum) -> tuple[Retry | None, Breaker | None]:
        """The ``(retry, breaker)`` registered for ``effect_type`` (``None`` for each
        it has not, or for a type without a handler)."""
        function = self._functions.get(effect_type)
        if type(function) is Guarded:
            return function.retry, function.breaker
        return None, None

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
                if (
                    type(performer).__call__ is KnownOutcome.__call__
                    and performer.earlier is not None
                    and isinstance(intent, Effect)
                ):
                    known: KnownOutcome = performer
                    return fx.sync_performer(
                        lambda _dispatcher, effect: self._replay_attempts(effect, known)
                    )
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
                    if type(function) is Guarded:
                        return _guarded(intent, function)
                    return _observed(intent, function)
            else:
                performer = stub(intent)  # once: a stub may consume what it hands out
                if performer is not None:
                    if type(performer).__call__ is KnownOutcome.__call__:
                        if performer.earlier is not None:
                            return self._replay_attempts(intent, performer)
                        return performer.settle(intent)
                    return self._fill(performer, intent, observed=True)
                performer = self._lookup(intent)
                if performer is None:
                    raise fx.NoPerformerFoundError(intent)
                return self._fill(performer, intent)
        return fx.sync_perform(self.dispatcher, fx.Effect(intent))

    def _replay_attempts(self, intent: Effect, known: KnownOutcome) -> Any:
        """``known``'s recorded attempts played through the retry policy registered for
        ``intent``'s type (see :class:`KnownOutcome`), reported as performing it would."""
        earlier = iter(known.earlier or ())

        def attempt(_intent: object) -> Any:
            error = next(earlier, None)
            if error is not None:
                raise error()
            return known.outcome()

        function = self._functions.get(intent.type)
        retry = function.retry if type(function) is Guarded else None
        retried: list[Attempt] = []
        try:
            if retry is None:
                result = attempt(intent)
            else:
                result = retry.call(attempt, intent, on_retry=retried.append, sleep=NO_SLEEP)
        except Exception as exc:
            _report(intent, None, exc, retried)
            raise
        _report(intent, result, None, retried)
        return result

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


# -- steps that depend on an effect's result ------------------------------------------------
#
# A monad whose value depends on an effect's result holds that part as an ``effect.Effect``
# with callbacks (``Effect(intent).on(success=...)``): ``map``, ``bind`` and ``with_effect``
# add one callback each, and ``run`` performs it with ``effect.sync_perform``. The
# callbacks below are small classes rather than closures so that two monads built the same
# way compare equal.


@dataclass(frozen=True, slots=True)
class _Map:
    """``map``'s step: the next value is ``fn(result)``."""

    fn: Callable[[Any], Any]

    def __call__(self, result: Any) -> Any:
        return self.fn(result)


@dataclass(frozen=True, slots=True)
class _Bind:
    """``bind``'s step: the monad ``fn(result)`` is performed next (see :func:`_program`)."""

    fn: Callable[[Any], EffectMonad[Any]]

    def __call__(self, result: Any) -> Any:
        return _program(_bound(self.fn, result))


@dataclass(frozen=True, slots=True)
class _Append:
    """``with_effect``'s step: ``effect`` is performed, the value passed on unchanged."""

    effect: object

    def __call__(self, result: Any) -> Any:
        return fx.Effect(self.effect).on(success=_Then(result))


@dataclass(frozen=True, slots=True, eq=False)
class _Then:
    """A step giving ``value`` whatever the previous one gave (``effect`` performs it
    first if it is an ``effect.Effect``)."""

    value: Any

    def __call__(self, _previous: Any) -> Any:
        return self.value


@dataclass(frozen=True, slots=True, eq=False)
class _Reached:
    """An intent performed by the run's own dispatcher (:class:`_Steps`), never by a
    handler: every effect ``monad`` knows of is checked for a performer, then ``monad`` is
    performed. A step's monad becomes this once the result it was made from is known."""

    monad: EffectMonad[Any]


def _bound(fn: Callable[[Any], EffectMonad[U]], value: Any) -> EffectMonad[U]:
    """``fn(value)``, which ``bind`` requires to be an :class:`EffectMonad`."""
    result = fn(value)
    if not isinstance(result, EffectMonad):
        raise TypeError(
            f"bind expects a function returning an EffectMonad, got {type(result).__name__}; "
            f"use map for plain values."
        )
    return result


def _program(monad: EffectMonad[Any]) -> Any:
    """What a step returns to ``effect`` for ``monad``: its value when it has no effects
    (then it depends on no result either), else a :class:`_Reached` effect."""
    if not monad._effects:
        return monad._value
    return fx.Effect(_Reached(monad))


def _chain(monad: EffectMonad[Any]) -> Any:
    """``monad`` as one ``effect.Effect``: the effects it performs before the part that
    depends on a result, one after the other, then that part (or its value)."""
    effects, pending = monad._effects, monad._pending
    last = monad._value if pending is None else pending
    ahead = effects[: len(effects) - monad._later]
    if not ahead:
        return last
    chain = fx.Effect(ahead[0])
    for intent in ahead[1:]:
        chain = chain.on(success=_Then(fx.Effect(intent)))
    return chain.on(success=_Then(last))


class _Steps:
    """The ``effect`` dispatcher a monad that depends on a result is performed through
    (:meth:`run`): the run's handler as a dispatcher (``dispatch``), each intent checked for
    a performer when it is reached (``missing`` lists the intents without one), and
    :class:`_Reached` intents performed by itself. ``consumes``: ``dispatch`` is a library
    dispatcher, which may hand a performer out only once (``effect.testing``'s
    ``SequenceDispatcher`` in a ``ComposedDispatcher``), so it is asked once per reached
    intent, and the result is the check."""

    __slots__ = ("_consumes", "_dispatch", "_missing")

    def __init__(
        self,
        dispatch: Callable[[object], Any],
        missing: Callable[[Iterable[object]], list[object]],
        *,
        consumes: bool = False,
    ) -> None:
        self._dispatch, self._missing, self._consumes = dispatch, missing, consumes

    @classmethod
    def of(cls, handler: Any) -> _Steps:
        """The dispatcher for ``handler`` as :meth:`EffectMonad.run` accepts it."""
        if isinstance(handler, EffectHandler):
            return cls(handler.dispatcher, handler.unhandled)
        if isinstance(handler, _LIBRARY_DISPATCHERS):
            return cls(handler, functools.partial(_without_performer, handler), consumes=True)
        if callable(handler):
            performer = fx.sync_performer(lambda _dispatcher, intent: handler(intent))
            return cls(lambda _intent: performer, _none_missing)
        raise TypeError(f"run needs an EffectHandler or a callable fn(effect), got {handler!r}.")

    def run(self, monad: EffectMonad[Any]) -> Any:
        """Check every effect ``monad`` knows of has a performer, then perform it through
        ``effect.sync_perform``; its value."""
        missing = self._missing(monad._effects)
        if missing:
            raise _unhandled(missing)
        return fx.sync_perform(self, _chain(monad))

    def __call__(self, intent: object) -> Any:
        if type(intent) is _Reached:
            return self._reach
        if self._consumes:
            performer = self._dispatch(intent)
            if performer is None:
                raise _unhandled([intent], reached=True)
            return performer
        missing = self._missing((intent,))
        if missing:
            raise _unhandled(missing, reached=True)
        return self._dispatch(intent)

    def _reach(self, _dispatcher: Any, intent: _Reached, box: Any) -> None:
        monad = intent.monad
        if not self._consumes:
            missing = self._missing(monad._effects)
            if missing:
                box.fail(_unhandled(missing, reached=True))
                return
        box.succeed(_chain(monad))


def _without_performer(
    dispatcher: Callable[[object], Any], intents: Iterable[object]
) -> list[object]:
    """The intents ``dispatcher`` has no performer for."""
    return [intent for intent in intents if dispatcher(intent) is None]


def _none_missing(_intents: Iterable[object]) -> list[object]:
    """A plain callable performs every intent."""
    return []


class EffectMonad(Generic[T]):
    """An immutable value paired with the effects that producing it requires.
    ``map``/``bind``/``with_effect`` return new monads; ``run`` performs the effects.

    A monad made with :meth:`perform` (or built from one) *depends on an effect's
    result*: its value is that result, known only when the monad is run, and ``map`` and
    ``bind`` on it are steps given that result when it is known. Such a monad is an
    ``effect.Effect`` with ``on(success=...)`` callbacks inside, performed by
    ``effect.sync_perform`` through the run's handler."""

    __slots__ = ("_effects", "_later", "_pending", "_value")

    def __init__(self, value: T, effects: Iterable[object] = ()) -> None:
        self._value = value
        self._effects: tuple[object, ...] = tuple(effects)
        # The part that depends on a result (an effect.Effect with callbacks), or None;
        # how many of the known effects it performs (the last ones).
        self._pending: Any = None
        self._later = 0

    @staticmethod
    def _awaiting(effects: tuple[object, ...], later: int, pending: Any) -> EffectMonad[Any]:
        """A monad depending on a result: ``pending``, after ``effects`` but the ``later``
        last ones, which ``pending`` performs."""
        monad: EffectMonad[Any] = EffectMonad(None, ())
        monad._effects, monad._later, monad._pending = effects, later, pending
        return monad

    @property
    def value(self) -> T:
        """The wrapped value. A monad whose value depends on an effect's result has none
        before it is run: :class:`PendingResultError` (``run`` returns the value)."""
        if self._pending is not None:
            raise PendingResultError(
                f"{self!r} has no value before it is run: it depends on the result of "
                f"{short(self._pending.intent, 80)}. Run it (monad.run(handler)) and use "
                f"what run returns, or keep deciding inside map/bind."
            )
        return self._value

    @property
    def effects(self) -> tuple[object, ...]:
        """The effects known before the run, in the order they are performed; effects a
        ``bind`` step returns after an effect's result is known are not among them."""
        return self._effects

    @property
    def depends_on_result(self) -> bool:
        """Whether the value depends on an effect's result (see :meth:`perform`), so that
        it is known only when the monad is run."""
        return self._pending is not None

    @classmethod
    def pure(cls, value: U) -> EffectMonad[U]:
        """A monad holding ``value`` and no effects."""
        return EffectMonad(value)

    @classmethod
    def perform(cls, effect: object) -> EffectMonad[Any]:
        """A monad performing ``effect`` whose value is its result: ``map`` and ``bind``
        on it (and on what is built from it) are given that result when the monad is run,
        so a step can decide what to do next on it. ``effect`` is an intent (an
        :class:`Effect` or an ``effect``-library intent), or an ``effect.Effect`` (with
        callbacks, or a ``@do`` program), whose final result is the value. As everywhere in
        ``effect``, a step that returns an ``effect.Effect`` has it performed: its result
        is what the next step is given."""
        if isinstance(effect, fx.Effect):
            return EffectMonad._awaiting((effect.intent,), 1, effect)
        return EffectMonad._awaiting((effect,), 1, fx.Effect(effect))

    def with_effect(self, effect: object) -> EffectMonad[T]:
        """A new monad with ``effect`` appended."""
        pending = self._pending
        if pending is None:
            return EffectMonad(self._value, (*self._effects, effect))
        return EffectMonad._awaiting(
            (*self._effects, effect), self._later + 1, pending.on(success=_Append(effect))
        )

    def map(self, fn: Callable[[T], U]) -> EffectMonad[U]:
        """A new monad holding ``fn(value)`` and the same effects: computed now, or, when
        the value depends on an effect's result, when the monad is run."""
        pending = self._pending
        if pending is None:
            return EffectMonad(fn(self._value), self._effects)
        return EffectMonad._awaiting(self._effects, self._later, pending.on(success=_Map(fn)))

    def bind(self, fn: Callable[[T], EffectMonad[U]]) -> EffectMonad[U]:
        """Chain an effectful step: its value, and this monad's effects followed by its own.
        When this monad's value depends on an effect's result, ``fn`` is called with that
        result when the monad is run, and the monad it returns is checked (every effect it
        holds has a performer, else :class:`UnhandledEffectError`) and performed then."""
        pending = self._pending
        if pending is None:
            result = _bound(fn, self._value)
            if result._pending is None:
                return EffectMonad(result._value, (*self._effects, *result._effects))
            return EffectMonad._awaiting(
                (*self._effects, *result._effects), result._later, result._pending
            )
        return EffectMonad._awaiting(self._effects, self._later, pending.on(success=_Bind(fn)))

    def run(self, handler: EffectHandler | Callable[[Any], Any]) -> T:
        """Perform every effect in order and return the value.

        With an :class:`EffectHandler` (or one of the ``effect`` library's dispatcher
        classes, ``ComposedDispatcher`` and ``TypeDispatcher``), every effect known before
        the run (:attr:`effects`) is checked for a performer *before* any is performed
        (:class:`UnhandledEffectError` otherwise), then each is performed through
        ``effect.sync_perform``. Any other callable is called once per effect as
        ``fn(effect)``.

        Effects that a ``bind`` step returns once an effect's result is known are checked
        when that step is reached, all of the step's before any of them is performed: a
        missing performer there raises :class:`UnhandledEffectError` *after* the earlier
        effects were performed. A performer's exception stops the run where it is raised.
        """
        if self._pending is not None:
            return cast(T, _Steps.of(handler).run(self))
        if isinstance(handler, EffectHandler):
            handler.ensure_handled(self._effects)
            handler.perform_all(self._effects)
        elif isinstance(handler, _LIBRARY_DISPATCHERS):
            # Called with an intent, a dispatcher only looks a performer up: treating it
            # as a plain fn(effect) would silently perform nothing.
            missing = _without_performer(handler, self._effects)
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
        # Monads that depend on a result are equal when built alike: the same effects and
        # the same steps (the same functions given to map and bind).
        return bool(
            self._value == other._value
            and self._effects == other._effects
            and self._later == other._later
            and self._pending == other._pending
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value, so not hashable

    def __repr__(self) -> str:
        pending = self._pending
        if pending is None:
            return f"EffectMonad({self._value!r}, effects={list(self._effects)!r})"
        steps = len(pending.callbacks)
        then = f", then {steps} step{'s' if steps != 1 else ''}" if steps else ""
        return f"EffectMonad(<result of {pending.intent!r}{then}>, effects={list(self._effects)!r})"
