"""Cross-cutting concerns woven onto services with aspectlib: ``LoggingAspect``,
``MetricsAspect``, and ``AspectWeaver``, which applies named aspects and can undo them.

Both aspects are aspectlib ``Aspect``s (generator advice, bound to the cut-point), so
``aspectlib.weave`` accepts them directly. Stacked aspects keep the woven method's real
``Class.method`` name in log lines and metrics keys, and two of them stacked directly
share one aspectlib layer (see ``_NamedAspect``).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import math
import operator
import reprlib
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from types import FunctionType
from typing import Any, Protocol

import aspectlib

from .checks import check_count
from .errors import UnknownAspectError
from .events import EventType
from .redaction import DEFAULT_SECRET_NAMES, REDACTED, normal_name, redact_text

__all__ = [
    "DEFAULT_SECRET_NAMES",
    "REDACTED",
    "AroundAspect",
    "AspectWeaver",
    "LoggingAspect",
    "MetricsAspect",
    "MetricsCollector",
    "qualified_name",
]

logger = logging.getLogger(__name__)

_NAME_ATTR = "__atlas_eda_name__"

MIN_REPR = 8
"""The smallest ``max_repr`` a :class:`LoggingAspect` takes: room for a short value and
its ellipsis."""


class _SafeRepr(reprlib.Repr):
    """reprlib's bounded repr, which also hides the values of mappings' secret keys (at
    any depth it shows) and cuts every result to ``limit`` characters."""

    def __init__(self, limit: int, secret: Callable[[object], bool]) -> None:
        super().__init__()
        self.maxstring = self.maxother = limit
        self.maxlevel = 3
        self.limit = limit
        self.secret = secret

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, Mapping):
            return self._mapping(x, level)
        return super().repr1(x, level)

    def _mapping(self, x: Mapping[Any, Any], level: int) -> str:
        try:
            items = list(itertools.islice(x.items(), self.maxdict + 1))
        except Exception:  # a hostile mapping: say what it is, not what it holds
            return f"<{type(x).__name__}>"
        if not items:
            return "{}"
        if level <= 0:
            return "{" + self.fillvalue + "}"
        pieces = [
            f"{self.repr1(k, level - 1)}: "
            + (REDACTED if self.secret(k) else self.repr1(v, level - 1))
            for k, v in items[: self.maxdict]
        ]
        if len(items) > self.maxdict:
            pieces.append(self.fillvalue)
        return "{" + ", ".join(pieces) + "}"

    def shown(self, value: object) -> str:
        return _clip(self.repr(value), self.limit)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


@functools.lru_cache(maxsize=512)
def _parameter_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The names of ``fn``'s positional parameters, in order (up to any ``*args``)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    names = []
    for parameter in parameters:
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            break
        names.append(parameter.name)
    return tuple(names)


def qualified_name(fn: Any) -> str:
    """``Class.method`` for a method, ``function`` for a function: the name aspects log
    and key metrics by (the innermost real function's, however many aspects wrap it)."""
    name = getattr(fn, _NAME_ATTR, None)
    if isinstance(name, str):
        return name
    if inspect.ismethod(fn):
        # The function's own qualified name, as when the method is woven through its class
        # or instance (a classmethod bound to its class must not come out as "type.m").
        return qualified_name(fn.__func__)
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    # A class defined inside a function has a qualname like "f.<locals>.Service.method".
    return str(qualname).rsplit(".<locals>.", 1)[-1]


class _NamedAspect(aspectlib.Aspect):  # type: ignore[misc]
    """An aspectlib ``Aspect`` whose per-call work is three hooks (``_enter``, ``_leave``,
    ``_fail``) and whose wrappers carry the wrapped function's qualified name onwards.

    Woven onto a wrapper that another of these aspects made (stacking, as ``AspectWeaver``
    and ``aspectlib.weave(target, [a, b])`` do), it has aspectlib weave one advice running
    both aspects' hooks around the original function instead of adding a second aspectlib
    layer: the same calls, log lines, metrics and exceptions, at about half the cost (one
    aspectlib layer costs several times a cheap method it wraps)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # aspectlib's Aspect.__new__ returns a partial when called without an advising
        # function; these aspects supply their own.
        return object.__new__(cls)

    def __init__(self) -> None:
        # aspectlib's own state; __call__ weaves through a per-cut-point Aspect instead.
        super().__init__(self._advise, bind=True)

    def __call__(self, cutpoint_function: Callable[..., Any]) -> Callable[..., Any]:
        layer = (
            _LAYERS.get(cutpoint_function) if isinstance(cutpoint_function, FunctionType) else None
        )
        if layer is not None and len(layer[1]) < _MAX_SHARED:
            # cutpoint_function is exactly a wrapper this module made (looked up by
            # identity, so a functools.wraps copy of it does not count): share its layer.
            base, inner = layer
            chain = (self, *inner)
        else:
            base, chain = cutpoint_function, (self,)
        name = qualified_name(base)
        # The advice gets the name worked out once here rather than on every call (it
        # costs as much as a whole pass-through aspect); aspectlib weaves as usual.
        bound = aspectlib.Aspect(_advice(name, chain), bind=True)
        wrapper: Callable[..., Any] = bound(base)
        setattr(wrapper, _NAME_ATTR, name)
        wrapper.__qualname__ = getattr(cutpoint_function, "__qualname__", name)
        # The chain of wrappers is as if each aspect had its own layer.
        wrapper.__wrapped__ = cutpoint_function  # type: ignore[attr-defined]
        if isinstance(wrapper, FunctionType):
            _LAYERS[wrapper] = (base, chain)
        return wrapper

    def _enter(
        self, name: str, cutpoint: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Before the call of ``cutpoint`` (named ``name``): returns what ``_leave`` or
        ``_fail`` get as ``token``."""
        return None

    def _leave(self, name: str, token: Any, start: float, end: float) -> None:
        """After the call returned; ``start`` and ``end`` are its ``time.perf_counter()``s."""

    def _fail(self, name: str, token: Any, start: float, end: float, exc: Exception) -> None:
        """After the call raised ``exc``, which is re-raised once this returns."""

    def _advise(
        self, cutpoint: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Generator[Any, Any, Any]:
        """This aspect's advice alone (what aspectlib's own ``Aspect.__call__`` would use)."""
        return (yield from _advice(qualified_name(cutpoint), (self,))(cutpoint, *args, **kwargs))


class AroundAspect(aspectlib.Aspect):  # type: ignore[misc]
    """An aspectlib ``Aspect`` that runs each call of the function it is woven onto
    itself: :meth:`around` gets the function's ``Class.method`` name and ``call``, which
    performs the call once with its arguments, and returns the call's result (it may call
    ``call`` again, or not at all). Woven, stacked and rolled back like
    :class:`LoggingAspect`, keeping the real method name for the aspects around it."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # As _NamedAspect: this aspect supplies its own advice.
        return object.__new__(cls)

    def __init__(self) -> None:
        super().__init__(self._advise, bind=True)

    def around(self, name: str, call: Callable[[], Any]) -> Any:
        """Run the call named ``name``: by default, ``call()`` once."""
        return call()

    def __call__(self, cutpoint_function: Callable[..., Any]) -> Callable[..., Any]:
        name = qualified_name(cutpoint_function)
        around = self.around

        def advise(
            cutpoint: Callable[..., Any], *args: Any, **kwargs: Any
        ) -> Generator[Any, Any, None]:
            yield aspectlib.Return(around(name, functools.partial(cutpoint, *args, **kwargs)))

        wrapper: Callable[..., Any] = aspectlib.Aspect(advise, bind=True)(cutpoint_function)
        setattr(wrapper, _NAME_ATTR, name)
        wrapper.__qualname__ = getattr(cutpoint_function, "__qualname__", name)
        wrapper.__wrapped__ = cutpoint_function  # type: ignore[attr-defined]
        return wrapper

    def _advise(
        self, cutpoint: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Generator[Any, Any, None]:
        name = qualified_name(cutpoint)
        yield aspectlib.Return(self.around(name, functools.partial(cutpoint, *args, **kwargs)))


_MAX_SHARED = 2
"""How many of these aspects one aspectlib layer runs: the pair a weaver usually stacks
(a third gets a layer of its own)."""

_LAYERS: weakref.WeakKeyDictionary[
    Callable[..., Any], tuple[Callable[..., Any], tuple[_NamedAspect, ...]]
]
_LAYERS = weakref.WeakKeyDictionary()
"""Each wrapper ``_NamedAspect`` made: the function it wraps and its aspects, outermost first."""


def _entry(aspect: _NamedAspect) -> Callable[..., Any] | None:
    """``aspect._enter``, or None when it is the base class's (a call saved per call)."""
    if type(aspect)._enter is _NamedAspect._enter:
        return None
    return aspect._enter


def _advice(name: str, chain: tuple[_NamedAspect, ...]) -> Callable[..., Generator[Any, Any, None]]:
    """aspectlib advice (``bind=True``) running ``chain``'s hooks, outermost first, around
    one call, as nested layers would: a hook's failure is the outer aspects' failure.
    One ``time.perf_counter()`` pair times the call for every aspect in the chain."""
    if len(chain) == 1:
        (aspect,) = chain
        enter, leave, fail = _entry(aspect), aspect._leave, aspect._fail

        def advise(
            cutpoint: Callable[..., Any], *args: Any, **kwargs: Any
        ) -> Generator[Any, Any, None]:
            token = enter and enter(name, cutpoint, args, kwargs)
            start = time.perf_counter()
            try:
                yield
            except Exception as exc:
                fail(name, token, start, time.perf_counter(), exc)
                raise
            leave(name, token, start, time.perf_counter())

        return advise
    outer, inner = chain
    outer_enter, outer_leave, outer_fail = _entry(outer), outer._leave, outer._fail
    inner_enter, inner_leave, inner_fail = _entry(inner), inner._leave, inner._fail

    def advise_both(
        cutpoint: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Generator[Any, Any, None]:
        outer_token = outer_enter and outer_enter(name, cutpoint, args, kwargs)
        start = time.perf_counter()
        try:
            inner_token = inner_enter and inner_enter(name, cutpoint, args, kwargs)
            try:
                yield
            except Exception as exc:
                inner_fail(name, inner_token, start, time.perf_counter(), exc)
                raise
            end = time.perf_counter()
            inner_leave(name, inner_token, start, end)
        except Exception as exc:
            outer_fail(name, outer_token, start, time.perf_counter(), exc)
            raise
        outer_leave(name, outer_token, start, end)

    return advise_both


def _takes_receiver(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` gets the instance (or class) as its first argument: an unbound
    ``self``/``cls`` method, or a wrapper around one. Bound methods, static methods and
    plain functions do not, and all their arguments are worth logging."""
    if inspect.ismethod(fn):
        return False
    try:
        fn = inspect.unwrap(fn)
    except ValueError:  # a __wrapped__ cycle: show every argument
        return False
    if inspect.ismethod(fn):
        return False
    code = getattr(fn, "__code__", None)
    return bool(code is not None and code.co_argcount and code.co_varnames[0] in ("self", "cls"))


class LoggingAspect(_NamedAspect):
    """Logs each call's entry, exit and duration (at ``level``, default INFO) and each
    failure (at ERROR), with a per-call request id. ``logger`` is a ``logging.Logger`` or
    any callable taking one string; with ``event_bus``, failures are also published as
    ``EventType.ERROR`` events.

    Secrets stay out of the logs: an argument whose parameter name contains one of
    ``secret_names`` (default :data:`DEFAULT_SECRET_NAMES`: password, token, secret,
    api_key, authorization, ...; compared case-insensitively, ignoring ``_`` and ``-``) is
    logged as ``***``, and so is the value of such a key in a mapping argument. Every
    argument's repr, and the failure's message, is cut to ``max_repr`` characters. The
    failure's message (logged and in the ``ERROR`` event) goes through
    :func:`atlas_eda.redaction.redact_text`: values after a secret name, URL passwords and
    the patterns added with :func:`atlas_eda.redaction.add_redaction_pattern` are hidden."""

    def __init__(
        self,
        logger: logging.Logger | Callable[[str], Any] | None = None,
        event_bus: Any = None,
        *,
        level: int = logging.INFO,
        secret_names: Iterable[str] = DEFAULT_SECRET_NAMES,
        max_repr: int = 80,
    ) -> None:
        super().__init__()
        if isinstance(secret_names, str):
            raise TypeError(
                f"secret_names must be a collection of names, not one str: use "
                f"({secret_names!r},) for a single name."
            )
        names = tuple(secret_names)
        if not all(isinstance(n, str) and normal_name(n) for n in names):
            raise TypeError(f"secret_names must hold non-empty strs, got {names!r}.")
        check_count("max_repr", max_repr, minimum=MIN_REPR, type_error=ValueError)
        self.logger = logger if logger is not None else logging.getLogger(__name__)
        self.event_bus = event_bus
        self.level = level
        self.secret_names = names
        self.max_repr = max_repr
        self._secret_parts = tuple(normal_name(n) for n in names)
        self._repr = _SafeRepr(max_repr, self.is_secret)
        self._ids = itertools.count(1)

    def is_secret(self, name: object) -> bool:
        """Whether an argument or key called ``name`` holds a secret (never logged)."""
        if not isinstance(name, str):
            return False
        normal = normal_name(name)
        return any(part in normal for part in self._secret_parts)

    def _format_call(
        self,
        cutpoint: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        skip: int,
    ) -> str:
        names: tuple[str, ...] = ()
        if self._secret_parts:
            # A bound method's names come from its function (cached per function, so no
            # instance is kept alive), less the receiver it is bound to.
            if inspect.ismethod(cutpoint):
                names = _parameter_names(cutpoint.__func__)[1:]
            else:
                names = _parameter_names(cutpoint)
        parts = []
        for index, value in enumerate(args):
            if index < skip:
                continue
            name = names[index] if index < len(names) else None
            parts.append(REDACTED if self.is_secret(name) else self._repr.shown(value))
        parts.extend(
            f"{k}={REDACTED if self.is_secret(k) else self._repr.shown(v)}"
            for k, v in kwargs.items()
        )
        return ", ".join(parts)

    def _emit(self, level: int, message: str) -> None:
        target = self.logger
        if isinstance(target, logging.Logger):
            target.log(level, message)
        else:
            target(message)

    def _publish_error(self, request_id: int, name: str, exc: Exception, elapsed: float) -> None:
        try:
            self.event_bus.publish(
                EventType.ERROR,
                {
                    "request_id": request_id,
                    "method": name,
                    "error_type": type(exc).__name__,
                    "error_message": _message(exc),
                    "execution_time": elapsed,
                },
                source="atlas_eda.aspects",
            )
        except Exception:
            # The woven call's own exception is what its caller must see; a bus that
            # cannot take the report (a failing middleware, a publish cycle) is logged.
            logger.exception("could not publish the ERROR event for %s [%s]", name, request_id)

    def _enter(
        self, name: str, cutpoint: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        # The token is the request id, negated when the call is below the level (ids
        # start at 1): cheaper per call than a (request_id, verbose) pair.
        request_id = next(self._ids)
        target = self.logger
        if isinstance(target, logging.Logger) and not target.isEnabledFor(self.level):
            # Below the level: nothing to format, and only a failure is logged.
            return -request_id
        # Instance methods receive self first: it says nothing a log reader needs.
        skip = 1 if args and _takes_receiver(cutpoint) else 0
        call = self._format_call(cutpoint, args, kwargs, skip)
        self._emit(self.level, f"[{request_id}] ENTER {name}({call})")
        return request_id

    def _leave(self, name: str, token: Any, start: float, end: float) -> None:
        if token > 0:
            self._emit(self.level, f"[{token}] EXIT {name} in {end - start:.4f}s")

    def _fail(self, name: str, token: Any, start: float, end: float, exc: Exception) -> None:
        request_id = abs(token)
        elapsed = end - start
        self._emit(
            logging.ERROR,
            f"[{request_id}] ERROR {name} after {elapsed:.4f}s: {type(exc).__name__}: "
            f"{_clip(_message(exc), self.max_repr)}",
        )
        if self.event_bus is not None:
            self._publish_error(request_id, name, exc, elapsed)


def _message(exc: BaseException) -> str:
    """The exception's message, secrets hidden (see :mod:`atlas_eda.redaction`)."""
    try:
        return redact_text(str(exc))
    except Exception:  # a hostile __str__ must not hide the real failure
        return f"<{type(exc).__name__} whose message cannot be shown>"


class MetricsCollector(Protocol):
    """Anything with ``record(key, seconds, success=...)``: receives every measured call."""

    def record(self, key: str, seconds: float, *, success: bool) -> Any:
        """Receive one call's duration and outcome."""


@dataclass(slots=True)
class _Stats:
    count: int = 0
    total_time: float = 0.0
    min_time: float = math.inf
    max_time: float = 0.0
    errors: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=1024))
    # Durations of successful calls not yet counted above. A call only appends here (one
    # list.append, atomic under the GIL: no lock per call); fold() counts them in batches.
    pending: list[float] = field(default_factory=list)

    def fold(self) -> None:
        """Count the pending durations (under the aspect's lock), in the order of the calls."""
        pending = self.pending
        taken = len(pending)
        if not taken:
            return
        # Concurrent calls only append: the first ``taken`` items are this batch's.
        batch = pending[:taken]
        del pending[:taken]
        self.count += taken
        # Added one by one, left to right, as ``+=`` per call would: the same rounding.
        self.total_time = functools.reduce(operator.add, batch, self.total_time)
        self.min_time = min(self.min_time, *batch)
        self.max_time = max(self.max_time, *batch)
        self.recent.extend(batch)


_FOLD_AT = 256
"""Pending successful calls per method that are counted at once (bounds the memory)."""


def _collect(collector: MetricsCollector, key: str, seconds: float, success: bool) -> None:
    try:
        collector.record(key, seconds, success=success)
    except Exception:
        # The measured call succeeded or failed on its own; a broken collector
        # must not change its outcome, but it must not go unnoticed either.
        logger.exception("metrics collector %r failed to record %s", collector, key)


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(math.ceil(fraction * len(ordered)) - 1, 0)
    return ordered[rank]


class MetricsAspect(_NamedAspect):
    """Counts calls, failures and durations per ``Class.method``. ``get_metrics`` reports
    count, total/min/max/avg time, errors, error rate and p50/p95/p99 over the most recent
    ``reservoir`` calls. Each call is also passed to ``metrics_collector.record`` when one
    is given."""

    def __init__(
        self, metrics_collector: MetricsCollector | None = None, *, reservoir: int = 1024
    ) -> None:
        super().__init__()
        if reservoir < 1:
            raise ValueError(f"reservoir must be at least 1, got {reservoir}.")
        self.metrics_collector = metrics_collector
        self._reservoir = reservoir
        self._stats: dict[str, _Stats] = {}
        self._retries: dict[str, int] = {}
        self._lock = threading.Lock()

    def record_retry(self, key: str) -> None:
        """Count one retry of the method ``key`` (``Class.method``): a
        :class:`~atlas_eda.resilience.RetryAspect` given this aspect calls it before each
        further attempt, and :meth:`get_metrics` reports the count as ``retries``."""
        with self._lock:
            self._retries[key] = self._retries.get(key, 0) + 1

    def _stats_of(self, key: str) -> _Stats:
        stats = self._stats.get(key)
        if stats is None:
            # setdefault is atomic: two first calls at once share one _Stats.
            stats = self._stats.setdefault(key, _Stats(recent=deque(maxlen=self._reservoir)))
        return stats

    def _leave(self, name: str, token: Any, start: float, end: float) -> None:
        seconds = end - start
        # The per-call work: one append, no lock (see _Stats.pending).
        stats = self._stats.get(name) or self._stats_of(name)
        pending = stats.pending
        pending.append(seconds)
        if len(pending) >= _FOLD_AT:
            with self._lock:
                stats.fold()
        collector = self.metrics_collector
        if collector is not None:
            _collect(collector, name, seconds, True)

    def _fail(self, name: str, token: Any, start: float, end: float, exc: Exception) -> None:
        seconds = end - start
        with self._lock:
            stats = self._stats_of(name)
            stats.fold()  # the successes before this failure come first in ``recent``
            stats.count += 1
            stats.total_time += seconds
            stats.min_time = min(stats.min_time, seconds)
            stats.max_time = max(stats.max_time, seconds)
            stats.recent.append(seconds)
            stats.errors += 1
        collector = self.metrics_collector
        if collector is not None:
            _collect(collector, name, seconds, False)

    def get_metrics(self) -> dict[str, dict[str, Any]]:
        """``{"Class.method": {count, total_time, min_time, max_time, errors, avg_time,
        error_rate, p50, p95, p99}}`` for every method measured so far, with ``retries``
        too for a method retried through :meth:`record_retry`."""
        with self._lock:
            for stats in self._stats.values():
                stats.fold()
            # A method whose first call is still under way has nothing to report yet.
            items = [(k, s, sorted(s.recent)) for k, s in self._stats.items() if s.count]
            result: dict[str, dict[str, Any]] = {}
            for key, stats, ordered in items:
                result[key] = {
                    "count": stats.count,
                    "total_time": stats.total_time,
                    "min_time": stats.min_time,
                    "max_time": stats.max_time,
                    "errors": stats.errors,
                    "avg_time": stats.total_time / stats.count,
                    "error_rate": stats.errors / stats.count,
                    "p50": _percentile(ordered, 0.50),
                    "p95": _percentile(ordered, 0.95),
                    "p99": _percentile(ordered, 0.99),
                }
                if key in self._retries:
                    result[key]["retries"] = self._retries[key]
        return result

    def reset(self) -> None:
        """Forget every measurement."""
        with self._lock:
            self._stats.clear()
            self._retries.clear()


@dataclass
class _Weaving:
    """The aspects applied to one target, innermost first, and how to undo each."""

    names: list[str] = field(default_factory=list)
    rollbacks: list[Callable[[], Any]] = field(default_factory=list)
    instance: Any = None
    attribute: str | None = None
    # Strong references keep the ids used as keys from being reused by new objects.
    keep: list[Any] = field(default_factory=list)


def _identity(target: Any) -> Any:
    # Bound methods are created anew on every attribute access: identify them by the
    # instance and function they bind.
    if inspect.ismethod(target):
        return ("method", id(target.__self__), id(target.__func__))
    return ("object", id(target))


class AspectWeaver:
    """Applies registered aspects by name with ``aspectlib.weave`` and remembers what it
    applied, so it can report and roll back the aspects on any target."""

    def __init__(self) -> None:
        self.aspects: dict[str, Any] = {}
        self._weavings: dict[Any, _Weaving] = {}
        self._lock = threading.Lock()

    def register_aspect(self, name: str, aspect: Any) -> None:
        """Make ``aspect`` (an aspectlib ``Aspect`` or any decorator) available as ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"An aspect name must be a non-empty str, got {name!r}.")
        if not callable(aspect):
            raise TypeError(
                f"Aspect {name!r} must be an aspectlib Aspect or a decorator, got {aspect!r}."
            )
        with self._lock:
            self.aspects[name] = aspect

    def apply_aspect(self, aspect_name: str, target: Any) -> Any:
        """Weave the aspect registered as ``aspect_name`` onto ``target`` and return the
        patched callable. A bound method is patched on its instance, a class in place; a
        plain function is returned wrapped, without patching its module. Aspects applied to
        the same bound method stack (through the original method or any patched one)."""
        try:
            aspect = self.aspects[aspect_name]
        except KeyError:
            known = ", ".join(sorted(self.aspects)) or "none registered yet"
            raise UnknownAspectError(
                f"Unknown aspect {aspect_name!r} (registered: {known}); register it first with "
                f"AspectWeaver.register_aspect(name, aspect)."
            ) from None
        if not callable(target):
            raise TypeError(f"Cannot weave {target!r}: it is not callable.")
        instance: Any = None
        attribute: str | None = None
        rollback: Callable[[], Any]
        if inspect.ismethod(target) and not inspect.isclass(target.__self__):
            instance, attribute = target.__self__, target.__name__
            current = getattr(instance, attribute, None)
            with self._lock:
                earlier = self._weavings.get(_identity(target))
                if earlier is not None and self._weavings.get(_identity(current)) is earlier:
                    # Given the method as it was before this weaver patched it (or any
                    # earlier layer): stack onto the patched method rather than replacing
                    # the aspects already applied.
                    target = current
            rollback = aspectlib.weave(target, aspect)
            patched = getattr(instance, attribute)
        elif inspect.isclass(target):
            rollback = aspectlib.weave(target, aspect)
            patched = target
        else:
            patched = aspect(target)

            def rollback() -> None:
                """Nothing was patched in place: the caller keeps the original."""

        with self._lock:
            weaving = self._weavings.get(_identity(target))
            if weaving is None:
                weaving = _Weaving(instance=instance, attribute=attribute)
            weaving.names.append(aspect_name)
            weaving.rollbacks.append(rollback)
            weaving.keep.extend((target, patched))
            self._weavings[_identity(target)] = weaving
            self._weavings[_identity(patched)] = weaving
        return patched

    def get_applied_aspects(self, target: Any) -> list[str]:
        """The names of the aspects applied to ``target`` (the original or any callable
        ``apply_aspect`` returned for it), innermost first."""
        with self._lock:
            weaving = self._weavings.get(_identity(target))
            return list(weaving.names) if weaving else []

    def rollback(self, target: Any) -> None:
        """Undo every aspect this weaver applied to ``target`` (original or patched)."""
        with self._lock:
            weaving = self._weavings.get(_identity(target))
            if weaving is None:
                return
            for key in [k for k, w in self._weavings.items() if w is weaving]:
                del self._weavings[key]
        for undo in reversed(weaving.rollbacks):
            # Each weave of a bound method sets the instance attribute and its rollback
            # deletes it: the outermost undo restores the class's method for all layers.
            if weaving.attribute is not None and weaving.attribute not in vars(weaving.instance):
                break
            undo()
