"""Health checks and their registry: is the store reachable and where is its head, how far
behind is each follower (backlog and lag against thresholds), are there dead letters, is a
circuit breaker open. Each check answers ``ok``, ``degraded`` or ``failing`` with a reason;
:class:`Health` runs them all and its :class:`HealthReport` is as bad as its worst check.

Nothing here runs on its own: a check reads the store, the followers' tracking table, the
bus and the breakers when :meth:`Health.run` is called (by ``atlas-eda health``, a
readiness endpoint, or the :class:`~atlas_eda.prometheus.PrometheusMetrics` collector)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol, cast

from .bus import EventBus
from .effects import EffectHandler
from .follower import StoreFollower
from .resilience import Breaker
from .store import TemporalStore
from .store.dead_letters import DeadLetterTable, tracked_names
from .views import text_table

__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_LAG",
    "BreakerCheck",
    "Check",
    "CheckResult",
    "DeadLetterCheck",
    "FollowerCheck",
    "FollowerState",
    "Health",
    "HealthReport",
    "Status",
    "StoreCheck",
    "Thresholds",
    "breakers_of",
    "durable_followers",
    "follower_state",
]


class Status(IntEnum):
    """How healthy a part is. The value is ``atlas-eda health``'s exit status: 0, 1, 2."""

    OK = 0
    DEGRADED = 1
    FAILING = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check found: its ``name``, its :class:`Status`, a one-line ``reason``
    people read, and ``details`` (plain JSON values) machines read."""

    name: str
    status: Status
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON values (the status as ``"ok"``/``"degraded"``/
        ``"failing"``)."""
        return {
            "name": self.name,
            "status": str(self.status),
            "reason": self.reason,
            "details": dict(self.details),
        }


class Check(Protocol):
    """A health check: a ``name`` and a call that returns its :class:`CheckResult`
    (raising is reported as ``failing`` by :meth:`Health.run`)."""

    @property
    def name(self) -> str:
        """What the check looks at, unique in its registry (``store``,
        ``follower:NAME``, ...)."""
        ...

    def __call__(self) -> CheckResult:
        """Look, now."""
        ...


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where a measure (a backlog in events, a lag in seconds) turns a check ``degraded``
    (at ``degraded`` or more) and ``failing`` (at ``failing`` or more)."""

    degraded: float
    failing: float

    def __post_init__(self) -> None:
        for name in ("degraded", "failing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Thresholds.{name} must be a number, got {value!r}.")
            if not 0 < value < math.inf:
                raise ValueError(f"Thresholds.{name} must be positive and finite, got {value!r}.")
        if self.degraded > self.failing:
            raise ValueError(
                f"Thresholds.degraded ({self.degraded}) must not exceed Thresholds.failing "
                f"({self.failing}): a part degrades before it fails."
            )

    def status(self, value: float) -> Status:
        """The status ``value`` is at."""
        if value >= self.failing:
            return Status.FAILING
        if value >= self.degraded:
            return Status.DEGRADED
        return Status.OK


DEFAULT_BACKLOG = Thresholds(degraded=100, failing=10_000)
"""A follower more than 100 events behind is degraded, 10,000 failing."""

DEFAULT_LAG = Thresholds(degraded=30.0, failing=300.0)
"""A follower whose oldest undelivered event waits 30 s is degraded, 5 minutes failing."""


@dataclass(frozen=True, slots=True)
class FollowerState:
    """Where a follower is: ``position`` (the last event it delivered, 0: none), the
    store's ``head`` (its newest position), ``backlog`` (``head - position``) and ``lag``
    (seconds the oldest event it has not delivered has waited since its commit; 0.0 when
    it is caught up)."""

    name: str
    position: int
    head: int
    backlog: int
    lag: float


def follower_state(
    store: TemporalStore,
    follower: str | StoreFollower,
    *,
    clock: Callable[[], float] = time.time,
) -> FollowerState | None:
    """The state of ``follower`` (a :class:`StoreFollower` of ``store``'s log, or the
    name of a durable one, whose position is read from ``store``'s tracking table) at
    ``clock()``; ``None`` for a name with no recorded position."""
    if isinstance(follower, StoreFollower):
        name = follower.name or "(unnamed)"
        position: int | None = follower.position
    else:
        name = follower
        position = store.tracking_recorder().max_tracking_id(follower)
    if position is None:
        return None
    head = store.last_position()
    lag = 0.0
    # The log's first event past the position (outbox rows are gaps: read past them).
    waiting = store.notifications(position + 1, 1) if head > position else []
    if waiting:
        committed = store.decode(waiting[0]).timestamp.timestamp()
        lag = max(0.0, clock() - committed)
    return FollowerState(name, position, head, max(0, head - position), lag)


def breakers_of(effect_handler: EffectHandler) -> list[Breaker]:
    """The circuit breakers registered on ``effect_handler`` (one per guarded effect
    type), in registration order."""
    found: list[Breaker] = []
    for effect_type in effect_handler.registered_types():
        _, breaker = effect_handler.policies(effect_type)
        if breaker is not None and all(breaker is not b for b in found):
            found.append(breaker)
    return found


class StoreCheck:
    """``store``: ``ok`` when the store's log can be read (its head position in the
    reason), ``failing`` when it cannot."""

    def __init__(self, store: TemporalStore, *, name: str = "store") -> None:
        self.store = store
        self.name = name

    def __call__(self) -> CheckResult:
        """Read the head position of the store's log."""
        try:
            head = self.store.last_position()
        except Exception as exc:
            return CheckResult(
                self.name, Status.FAILING, f"unreachable: {type(exc).__name__}: {exc}"
            )
        return CheckResult(self.name, Status.OK, f"reachable, head position {head}", {"head": head})


class FollowerCheck:
    """``follower:NAME``: the follower's backlog (events) and lag (seconds) against
    ``backlog`` and ``lag`` thresholds; the worse of the two decides. A name with no
    recorded position in the store is ``failing``."""

    def __init__(
        self,
        store: TemporalStore,
        follower: str | StoreFollower,
        *,
        backlog: Thresholds = DEFAULT_BACKLOG,
        lag: Thresholds = DEFAULT_LAG,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(follower, str | StoreFollower):
            raise TypeError(f"follower must be a name or a StoreFollower, got {follower!r}.")
        self.store = store
        self.follower = follower
        self.backlog = backlog
        self.lag = lag
        self._clock = clock
        label = follower if isinstance(follower, str) else follower.name or "(unnamed)"
        self.name = f"follower:{label}"

    def __call__(self) -> CheckResult:
        """Read the follower's position, the store's head and the oldest waiting event."""
        state = follower_state(self.store, self.follower, clock=self._clock)
        if state is None:
            return CheckResult(
                self.name,
                Status.FAILING,
                f"no position recorded for follower {self.follower!r} in this store: it "
                f"never ran here (check the name)",
            )
        by_backlog = self.backlog.status(state.backlog)
        by_lag = self.lag.status(state.lag)
        status = max(by_backlog, by_lag)
        reason = (
            f"position {state.position} of {state.head}: backlog {state.backlog}, "
            f"lag {state.lag:.1f} s"
        )
        if by_backlog:
            reason += f"; backlog at or over {self.backlog_limit(by_backlog):g}"
        if by_lag:
            reason += f"; lag at or over {self.lag_limit(by_lag):g} s"
        details = {
            "position": state.position,
            "head": state.head,
            "backlog": state.backlog,
            "lag_seconds": round(state.lag, 3),
        }
        return CheckResult(self.name, status, reason, details)

    def backlog_limit(self, status: Status) -> float:
        """The backlog threshold that ``status`` means."""
        return self.backlog.failing if status is Status.FAILING else self.backlog.degraded

    def lag_limit(self, status: Status) -> float:
        """The lag threshold that ``status`` means."""
        return self.lag.failing if status is Status.FAILING else self.lag.degraded


class DeadLetterCheck:
    """``dead letters``: ``degraded`` while any dead letter is kept, by ``bus``
    (``failure_policy="dead_letter"``) or in ``store``'s database (followers' durable
    letters; only ``follower``'s when given). Nothing is lost while a letter waits, but
    somebody must retry or discard it."""

    def __init__(
        self,
        *,
        bus: EventBus | None = None,
        store: TemporalStore | None = None,
        follower: str | None = None,
        name: str = "dead letters",
    ) -> None:
        if bus is None and store is None:
            raise ValueError("DeadLetterCheck needs a bus, a store, or both, to count letters.")
        self.bus = bus
        self.store = store
        self.follower = follower
        self.name = name

    def __call__(self) -> CheckResult:
        """Count the letters kept now."""
        on_bus = len(self.bus.dead_letters) if self.bus is not None else 0
        durable = 0
        if self.store is not None:
            durable = len(DeadLetterTable(self.store.tracking_recorder()).letters(self.follower))
        details = {"bus": on_bus, "durable": durable}
        if not on_bus and not durable:
            return CheckResult(self.name, Status.OK, "none", details)
        parts = [f"{on_bus} on the bus"] if self.bus is not None else []
        if self.store is not None:
            parts.append(f"{durable} durable")
        reason = f"{', '.join(parts)}: retry or discard them (atlas-eda dead-letters)"
        return CheckResult(self.name, Status.DEGRADED, reason, details)


class BreakerCheck:
    """``breakers``: ``degraded`` while any of ``breakers`` is open or half-open (its
    dependency fails fast, the rest of the app goes on), naming them."""

    def __init__(self, breakers: Iterable[Breaker], *, name: str = "breakers") -> None:
        self.breakers = list(breakers)
        for breaker in self.breakers:
            if not isinstance(breaker, Breaker):
                raise TypeError(f"BreakerCheck takes Breakers, got {breaker!r}.")
        self.name = name

    def __call__(self) -> CheckResult:
        """Read each breaker's state."""
        states = {b.name or f"breaker {n}": b.state for n, b in enumerate(self.breakers, 1)}
        not_closed = {name: state for name, state in states.items() if state != "closed"}
        if not not_closed:
            return CheckResult(self.name, Status.OK, f"{len(states)} closed", states)
        listed = ", ".join(f"{name} {state}" for name, state in not_closed.items())
        return CheckResult(self.name, Status.DEGRADED, listed, states)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The results of every check, in registration order; :attr:`status` is the worst."""

    results: tuple[CheckResult, ...]

    @property
    def status(self) -> Status:
        """The worst status of any check (``ok`` with no checks)."""
        return max((r.status for r in self.results), default=Status.OK)

    @property
    def exit_code(self) -> int:
        """0, 1 or 2 for ``ok``, ``degraded``, ``failing``."""
        return int(self.status)

    def as_dict(self) -> dict[str, Any]:
        """``{"status": ..., "checks": [...]}`` in plain JSON values."""
        return {"status": str(self.status), "checks": [r.as_dict() for r in self.results]}

    def to_json(self) -> str:
        """:meth:`as_dict` as one line of JSON."""
        return json.dumps(self.as_dict(), sort_keys=False)

    def table(self) -> str:
        """A plain-text table: one row per check (name, status, reason)."""
        rows = [[r.name, str(r.status), r.reason] for r in self.results]
        return text_table(
            f"Health: {self.status}", ["check", "status", "reason"], rows, max_width=100
        )

    def __str__(self) -> str:
        return self.table()


class Health:
    """A registry of health checks, run together by :meth:`run`. Build one with
    :meth:`add` or, for the usual parts, :meth:`of`; there is no global registry."""

    def __init__(self, checks: Iterable[Check] = ()) -> None:
        self._checks: list[Check] = []
        for check in checks:
            self.add(check)

    @classmethod
    def of(
        cls,
        *,
        store: TemporalStore | None = None,
        followers: Iterable[str | StoreFollower] = (),
        bus: EventBus | None = None,
        breakers: Iterable[Breaker] = (),
        effect_handler: EffectHandler | None = None,
        backlog: Thresholds = DEFAULT_BACKLOG,
        lag: Thresholds = DEFAULT_LAG,
    ) -> Health:
        """The checks of the parts given: the store (reachable, head), each follower
        (needs ``store``), dead letters (the bus's and the store's), and the breakers
        (those given and those registered on ``effect_handler``)."""
        health = cls()
        followed = list(followers)
        if followed and store is None:
            raise ValueError("Follower checks read the store's log: pass store= too.")
        if store is not None:
            health.add(StoreCheck(store))
            for follower in followed:
                health.add(FollowerCheck(store, follower, backlog=backlog, lag=lag))
        if bus is not None or store is not None:
            health.add(DeadLetterCheck(bus=bus, store=store))
        guarded = list(breakers)
        if effect_handler is not None:
            guarded.extend(b for b in breakers_of(effect_handler) if b not in guarded)
        if guarded:
            health.add(BreakerCheck(guarded))
        return health

    @property
    def checks(self) -> list[Check]:
        """The registered checks, in order."""
        return list(self._checks)

    def add(self, check: Check) -> Callable[[], None]:
        """Register ``check`` (its name must be new); returns the function that removes it."""
        name = getattr(check, "name", None)
        if not isinstance(name, str) or not name or not callable(check):
            raise TypeError(
                f"A health check is a callable with a non-empty str name, got {check!r}."
            )
        if any(c.name == name for c in self._checks):
            raise ValueError(f"A health check named {name!r} is already registered.")
        self._checks.append(check)

        def remove() -> None:
            if check in self._checks:
                self._checks.remove(check)

        return remove

    def run(self) -> HealthReport:
        """Run every check now. A check that raises is ``failing`` with the error as its
        reason; the others still run."""
        results: list[CheckResult] = []
        for check in self._checks:
            found: object
            try:
                found = cast(object, check())  # a user's check may return anything
            except Exception as exc:
                found = CheckResult(
                    check.name, Status.FAILING, f"check raised {type(exc).__name__}: {exc}"
                )
            if not isinstance(found, CheckResult):
                found = CheckResult(
                    check.name,
                    Status.FAILING,
                    f"check returned {type(found).__name__}, not a CheckResult",
                )
            results.append(found)
        return HealthReport(tuple(results))


def durable_followers(store: TemporalStore) -> list[str]:
    """The names with a position recorded in ``store``'s tracking table (durable
    followers), sorted."""
    return tracked_names(store.tracking_recorder())
