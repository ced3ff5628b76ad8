"""Retries and circuit breakers: the :class:`Retry` and :class:`Breaker` policies (built on
``tenacity`` and ``pybreaker``), which effect performers take at registration
(``EffectHandler.register_handler(..., retry=, breaker=)``), and the aspects that give
services the same: :class:`RetryAspect` and :class:`CircuitBreakerAspect`.

The bus is synchronous: a retry's wait blocks the thread that publishes (the default
``sleep`` is :func:`time.sleep`). Tests pass their own ``sleep`` (and a breaker its own
``clock``), so that nothing waits for real."""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pybreaker
import tenacity

from .aspects import AroundAspect, MetricsAspect
from .checks import check_count
from .errors import CircuitOpenError
from .events import EventType
from .trace import Attempt

__all__ = [
    "Breaker",
    "CircuitBreakerAspect",
    "CircuitOpenError",
    "Guarded",
    "Retry",
    "RetryAspect",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _seconds(name: str, value: object) -> float:
    """``value`` when it is a finite number of seconds, 0 or more; else a clear error."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds (0 or more), got {value!r}.")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds, 0 or more, got {value!r}.")
    return float(value)


def _exception_classes(value: object) -> tuple[type[BaseException], ...]:
    classes = value if isinstance(value, tuple) else (value,)
    if not classes or not all(
        isinstance(c, type) and issubclass(c, BaseException) for c in classes
    ):
        raise TypeError(f"retry_on must be an exception class or a tuple of them, got {value!r}.")
    return classes


class Retry:
    """A retry policy: call at most ``attempts`` times (1 means no retry) while the call
    raises one of ``retry_on``, waiting between attempts.

    ``backoff``: seconds before the second attempt, doubling before each next one, at
    most ``max_wait``; with ``jitter``, each wait is a random moment below that
    (tenacity's ``wait_random_exponential``, else its ``wait_exponential``). A
    ``tenacity`` wait strategy (``tenacity.wait_fixed(0.5)``...) may be given instead.
    ``sleep(seconds)`` waits (default :func:`time.sleep`, which blocks the publishing
    thread). A :class:`CircuitOpenError` is never retried: an open breaker fails fast.
    Nonsense values are refused here, with what was wrong."""

    __slots__ = ("_wait", "attempts", "backoff", "jitter", "max_wait", "retry_on", "sleep")

    def __init__(
        self,
        attempts: int = 5,
        *,
        backoff: float | tenacity.wait.wait_base = 0.1,
        max_wait: float = 10.0,
        jitter: bool = False,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.attempts = check_count("attempts", attempts, minimum=1)
        self.max_wait = _seconds("max_wait", max_wait)
        if not isinstance(jitter, bool):
            raise TypeError(f"jitter must be True or False, got {jitter!r}.")
        self.jitter = jitter
        self.retry_on = _exception_classes(retry_on)
        if not callable(sleep):
            raise TypeError(f"sleep must be a callable sleep(seconds), got {sleep!r}.")
        self.sleep = sleep
        self.backoff = backoff
        if isinstance(backoff, tenacity.wait.wait_base):
            self._wait: tenacity.wait.wait_base = backoff
        else:
            first = _seconds("backoff", backoff)
            kind = tenacity.wait_random_exponential if jitter else tenacity.wait_exponential
            self._wait = kind(multiplier=first, max=self.max_wait)

    def _retryable(self, error: BaseException) -> bool:
        return isinstance(error, self.retry_on) and not isinstance(error, CircuitOpenError)

    def call(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_retry: Callable[[Attempt], None] | None = None,
        sleep: Callable[[float], None] | None = None,
        **kwargs: Any,
    ) -> T:
        """``fn(*args, **kwargs)`` under this policy: its result, or the last attempt's
        exception. ``on_retry(Attempt(error, wait))`` is told of each failed attempt
        about to be retried, before the wait; ``sleep`` overrides the policy's own."""
        try:
            return fn(*args, **kwargs)  # the common case: no tenacity machinery at all
        except BaseException as exc:
            return self.retry_after(exc, fn, *args, on_retry=on_retry, sleep=sleep, **kwargs)

    def retry_after(
        self,
        error: BaseException,
        fn: Callable[..., T],
        *args: Any,
        on_retry: Callable[[Attempt], None] | None = None,
        sleep: Callable[[float], None] | None = None,
        **kwargs: Any,
    ) -> T:
        """What :meth:`call` does once the first attempt of ``fn(*args, **kwargs)``
        failed with ``error``: raise it when it is not to be retried, else make the
        further attempts."""
        if self.attempts == 1 or not self._retryable(error):
            raise error
        # tenacity runs the attempts from here: its first is the failure already seen.
        calls = itertools.count()

        def attempt() -> T:
            if next(calls) == 0:
                raise error
            return fn(*args, **kwargs)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome is not None else None
            assert failure is not None  # tenacity sleeps only after a failed attempt
            logger.debug("retrying %r (attempt %d) after: %r", fn, state.attempt_number, failure)
            if on_retry is not None:
                on_retry(Attempt(failure, state.upcoming_sleep))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._retryable),
            sleep=self.sleep if sleep is None else sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(attempt)

    def __repr__(self) -> str:
        return (
            f"Retry(attempts={self.attempts}, backoff={self.backoff!r}, max_wait={self.max_wait})"
        )


def _no_sleep(_seconds: float) -> None:
    """Replay's sleep: recorded waits are not waited again."""


NO_SLEEP: Callable[[float], None] = _no_sleep
"""A ``sleep`` that does not wait (replay plays recorded attempts with it)."""


class _ClockStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker's in-memory state, timed by ``clock`` (seconds, monotonic by default):
    pybreaker compares ``datetime.now(UTC)`` with ``opened_at + reset_timeout``, so
    ``opened_at`` is reported as now minus the time ``clock`` says has passed since the
    breaker opened."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._clock = clock
        self._opened: float | None = None

    @property
    def opened_at(self) -> datetime | None:
        if self._opened is None:
            return None
        return datetime.now(UTC) - timedelta(seconds=self._clock() - self._opened)

    @opened_at.setter
    def opened_at(self, _when: datetime) -> None:
        self._opened = self._clock()


_STATE_EVENTS = {
    pybreaker.STATE_OPEN: EventType.CIRCUIT_OPENED,
    pybreaker.STATE_HALF_OPEN: EventType.CIRCUIT_HALF_OPEN,
    pybreaker.STATE_CLOSED: EventType.CIRCUIT_CLOSED,
}


class _Changes(pybreaker.CircuitBreakerListener):
    """Collects a breaker's state changes; they are published once the call that made
    them is over, so that no bus handler runs under pybreaker's lock."""

    def __init__(self, owner: Breaker) -> None:
        self.owner = owner

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        previous = None if old_state is None else old_state.name
        self.owner._changed(previous, new_state.name)


class Breaker:
    """A circuit breaker for one dependency (pybreaker's ``CircuitBreaker``): after
    ``fail_max`` failures in a row it opens, and every call fails fast with
    :class:`CircuitOpenError` (the dependency is not called) until ``reset_timeout``
    seconds have passed by ``clock``; then one trial call is let through (half-open),
    closing it on success and opening it again on failure. Exceptions of ``exclude``
    classes do not count as failures.

    Each state change is published on ``event_bus`` (when it has one: an
    ``EffectHandler`` gives it its own bus at registration) as ``CIRCUIT_OPENED``,
    ``CIRCUIT_HALF_OPEN`` or ``CIRCUIT_CLOSED`` with data ``{"dependency": name,
    "previous": state, "state": state, "failures": n}``, after the call that changed
    it. ``name`` defaults to what it guards (the effect type's name, the method's)."""

    def __init__(
        self,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        *,
        name: str | None = None,
        event_bus: Any = None,
        clock: Callable[[], float] = time.monotonic,
        exclude: tuple[type[BaseException], ...] = (),
    ) -> None:
        check_count("fail_max", fail_max, minimum=1)
        timeout = _seconds("reset_timeout", reset_timeout)
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty str (the dependency's), got {name!r}.")
        if event_bus is not None and not callable(getattr(event_bus, "publish", None)):
            raise TypeError(f"event_bus must be an EventBus (or None), got {event_bus!r}.")
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, got {clock!r}.")
        excluded = _exception_classes(exclude) if exclude != () else ()
        self.name = name
        self.event_bus = event_bus
        self._pending: list[tuple[str | None, str, int]] = []
        self._pending_lock = threading.Lock()
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=timeout,
            exclude=list(excluded),
            listeners=[_Changes(self)],
            state_storage=_ClockStorage(clock),
            name=name,
            # The failing call that opens the circuit raises its own error; only calls
            # refused while it is open raise CircuitOpenError.
            throw_new_error_on_trip=False,
        )

    @property
    def fail_max(self) -> int:
        """Failures in a row that open the circuit."""
        return int(self._breaker.fail_max)

    @property
    def reset_timeout(self) -> float:
        """Seconds the circuit stays open before a trial call."""
        return float(self._breaker.reset_timeout)

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (an open circuit whose timeout
        has passed turns half-open at its next call)."""
        return str(self._breaker.current_state)

    @property
    def failures(self) -> int:
        """Failures in a row counted so far."""
        return int(self._breaker.fail_counter)

    def bind(self, name: str, event_bus: Any) -> None:
        """Give the breaker a ``name`` and an ``event_bus`` where it has none (what it
        guards does so at registration)."""
        if self.name is None:
            self.name = name
            self._breaker.name = name
        if self.event_bus is None:
            self.event_bus = event_bus

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` through the breaker: its result or exception, or
        :class:`CircuitOpenError` at once while the circuit is open."""
        try:
            return self._breaker.call(fn, *args, **kwargs)
        except pybreaker.CircuitBreakerError:
            name = self.name or "?"
            raise CircuitOpenError(
                f"The circuit breaker of {name!r} is open after {self.fail_max} failures in "
                f"a row: the call was refused without calling it. It lets a trial call "
                f"through {self.reset_timeout:g} s after it opened.",
                name,
            ) from None
        finally:
            if self._pending:
                self._publish_changes()

    def _changed(self, previous: str | None, state: str) -> None:
        logger.info("circuit breaker %r: %s -> %s", self.name, previous, state)
        with self._pending_lock:
            self._pending.append((previous, state, int(self._breaker.fail_counter)))

    def _publish_changes(self) -> None:
        with self._pending_lock:
            changes, self._pending = self._pending, []
        bus = self.event_bus
        if bus is None:
            return
        for previous, state, failures in changes:
            data = {
                "dependency": self.name,
                "previous": previous,
                "state": state,
                "failures": failures,
            }
            bus.publish(_STATE_EVENTS[state], data, source="atlas_eda.resilience")

    def __repr__(self) -> str:
        return (
            f"Breaker(name={self.name!r}, state={self.state!r}, fail_max={self.fail_max}, "
            f"reset_timeout={self.reset_timeout:g})"
        )


def check_policies(retry: object, breaker: object) -> None:
    """Refuse a ``retry`` that is not a :class:`Retry` and a ``breaker`` that is not a
    :class:`Breaker` (``None`` is either's absence)."""
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"retry must be a Retry(attempts=..., backoff=...), got {retry!r}.")
    if breaker is not None and not isinstance(breaker, Breaker):
        raise TypeError(
            f"breaker must be a Breaker(fail_max=..., reset_timeout=...), got {breaker!r}."
        )


class Guarded:
    """A performer under policies (what ``EffectHandler.register_handler`` keeps when
    given ``retry`` or ``breaker``): each attempt goes through the breaker (when given),
    and the attempts are made by the retry policy (when given)."""

    __slots__ = ("breaker", "function", "retry")

    def __init__(
        self, function: Callable[[Any], Any], retry: Retry | None, breaker: Breaker | None
    ) -> None:
        self.function, self.retry, self.breaker = function, retry, breaker

    def perform(self, intent: object, retried: list[Attempt]) -> Any:
        """Perform ``intent``; each failed attempt that was retried is appended to
        ``retried``."""
        breaker, retry = self.breaker, self.retry
        if breaker is None:
            if retry is None:
                return self.function(intent)
            return retry.call(self.function, intent, on_retry=retried.append)
        if retry is None:
            return breaker.call(self.function, intent)
        return retry.call(breaker.call, self.function, intent, on_retry=retried.append)

    def __call__(self, intent: object) -> Any:
        """Perform ``intent`` under the policies, as a plain performer ``fn(effect)``."""
        return self.perform(intent, [])

    def __repr__(self) -> str:
        return f"Guarded({self.function!r}, retry={self.retry!r}, breaker={self.breaker!r})"


class RetryAspect(AroundAspect):
    """Retries each call of the woven method under ``retry`` (a :class:`Retry`); each
    retry is logged and, given ``metrics`` (a :class:`~atlas_eda.aspects.MetricsAspect`),
    counted in its ``retries``. Stacks with the other aspects: woven inside a
    ``LoggingAspect`` it is one logged call, outside it each attempt is logged."""

    def __init__(self, retry: Retry, *, metrics: MetricsAspect | None = None) -> None:
        if not isinstance(retry, Retry):
            raise TypeError(f"RetryAspect needs a Retry(attempts=..., backoff=...), got {retry!r}.")
        if metrics is not None and not isinstance(metrics, MetricsAspect):
            raise TypeError(f"metrics must be a MetricsAspect, got {metrics!r}.")
        super().__init__()
        self.retry, self.metrics = retry, metrics

    def around(self, name: str, call: Callable[[], Any]) -> Any:
        metrics = self.metrics

        def on_retry(attempt: Attempt) -> None:
            logger.info(
                "retrying %s in %.3f s after %s: %s",
                name,
                attempt.wait,
                type(attempt.error).__name__,
                attempt.error,
            )
            if metrics is not None:
                metrics.record_retry(name)

        return self.retry.call(call, on_retry=on_retry)


class CircuitBreakerAspect(AroundAspect):
    """Calls the woven method through ``breaker`` (a :class:`Breaker`, named after the
    method unless it has a name): while it is open, calls raise
    :class:`CircuitOpenError` without running the method."""

    def __init__(self, breaker: Breaker) -> None:
        if not isinstance(breaker, Breaker):
            raise TypeError(
                f"CircuitBreakerAspect needs a Breaker(fail_max=..., reset_timeout=...), "
                f"got {breaker!r}."
            )
        super().__init__()
        self.breaker = breaker

    def around(self, name: str, call: Callable[[], Any]) -> Any:
        breaker = self.breaker
        if breaker.name is None:
            breaker.bind(name, None)
        return breaker.call(call)
