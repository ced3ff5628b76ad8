"""Retries and circuit breakers (atlas_eda.resilience): policies on effect performers and
as aspects on services, every attempt visible in traces, breaker state changes on the bus,
fail-fast while open, cassettes recording attempts, and bad policies refused. Nothing
here sleeps for real: every policy gets an injected sleep (and breakers a fake clock)."""

from __future__ import annotations

import enum
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
import tenacity

from atlas_eda import (
    AspectWeaver,
    Attempt,
    Breaker,
    CircuitBreakerAspect,
    CircuitOpenError,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
    Event,
    EventBus,
    EventType,
    LoggingAspect,
    MetricsAspect,
    Retry,
    RetryAspect,
    TemporalStore,
)
from atlas_eda.effects import effect_observer
from atlas_eda.testing import Cassette, record, register_types, replay


class Net(enum.Enum):
    FETCH = "fetch"


class Cmd(enum.Enum):
    GO = "go"


register_types(Net, Cmd)


class Flaky:
    """A performer failing ``failures`` times with ConnectionError, then returning "ok"."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, effect: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"down {self.calls}")
        return "ok"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


FETCH = Effect(Net.FETCH, {"url": "https://example.test/a"})


def run_once(handler: EffectHandler) -> Any:
    return EffectMonad.perform(FETCH).run(handler)


# -- Retry on effect performers ------------------------------------------------------


def test_a_retry_policy_calls_again_until_success_waiting_with_exponential_backoff() -> None:
    naps: list[float] = []
    flaky = Flaky(3)
    handler = EffectHandler()
    handler.register_handler(
        Net.FETCH, flaky, retry=Retry(attempts=5, backoff=0.1, sleep=naps.append)
    )

    assert run_once(handler) == "ok"
    assert flaky.calls == 4
    assert naps == pytest.approx([0.1, 0.2, 0.4])


def test_the_last_attempts_error_is_raised_when_every_attempt_fails() -> None:
    naps: list[float] = []
    flaky = Flaky(10)
    handler = EffectHandler()
    handler.register_handler(Net.FETCH, flaky, retry=Retry(attempts=3, sleep=naps.append))

    with pytest.raises(ConnectionError, match="down 3"):
        run_once(handler)
    assert flaky.calls == 3
    assert len(naps) == 2


def test_waits_are_capped_and_jitter_stays_below_the_cap() -> None:
    naps: list[float] = []
    handler = EffectHandler()
    handler.register_handler(
        Net.FETCH,
        Flaky(5),
        retry=Retry(attempts=6, backoff=1.0, max_wait=3.0, sleep=naps.append),
    )
    run_once(handler)
    assert naps == [1.0, 2.0, 3.0, 3.0, 3.0]

    jittered: list[float] = []
    handler.register_handler(
        Net.FETCH,
        Flaky(5),
        retry=Retry(attempts=6, backoff=1.0, max_wait=3.0, jitter=True, sleep=jittered.append),
    )
    run_once(handler)
    assert all(0 <= wait <= cap for wait, cap in zip(jittered, [1, 2, 3, 3, 3], strict=True))


def test_a_tenacity_wait_strategy_may_be_the_backoff() -> None:
    naps: list[float] = []
    handler = EffectHandler()
    policy = Retry(attempts=3, backoff=tenacity.wait_fixed(0.25), sleep=naps.append)
    handler.register_handler(Net.FETCH, Flaky(2), retry=policy)
    assert run_once(handler) == "ok"
    assert naps == [0.25, 0.25]


def test_only_the_errors_of_retry_on_are_retried() -> None:
    def broken(effect: Any) -> None:
        raise ValueError("bad request")

    naps: list[float] = []
    handler = EffectHandler()
    handler.register_handler(
        Net.FETCH, broken, retry=Retry(attempts=4, retry_on=ConnectionError, sleep=naps.append)
    )
    with pytest.raises(ValueError, match="bad request"):
        run_once(handler)
    assert naps == []


def test_the_default_sleep_is_time_sleep() -> None:
    assert Retry().sleep is time.sleep


def test_an_effect_observer_is_told_the_final_outcome_once() -> None:
    told: list[tuple[Any, Any, Any]] = []
    handler = EffectHandler()
    handler.register_handler(Net.FETCH, Flaky(2), retry=Retry(3, sleep=lambda s: None))
    token = effect_observer.set(lambda e, r, x: told.append((e, r, x)))
    try:
        run_once(handler)
    finally:
        effect_observer.reset(token)
    assert told == [(FETCH, "ok", None)]


# -- every attempt in the trace ----------------------------------------------------------


def system() -> tuple[EffectHandler, EventBus]:
    """An effect handler and its bus (breakers registered with it publish there)."""
    bus = EventBus()
    handler = EffectHandler(event_bus=bus)
    bus.effect_handler = handler
    return handler, bus


def bus_with(handler: EffectHandler, *, pending: bool = True) -> EventBus:
    """A bus whose Cmd.GO handler performs FETCH: as a monad depending on its result
    (``pending``), or as a plain effect appended to a value."""
    bus = handler.event_bus if handler.event_bus is not None else EventBus()
    bus.effect_handler = handler
    if pending:
        bus.subscribe(Cmd.GO, lambda event: EffectMonad.perform(FETCH))
    else:
        bus.subscribe(Cmd.GO, lambda event: EffectMonad.pure(None).with_effect(FETCH))
    return bus


def test_the_trace_shows_each_attempt_with_its_error_and_wait() -> None:
    handler = EffectHandler()
    handler.register_handler(
        Net.FETCH, Flaky(2), retry=Retry(attempts=3, backoff=0.1, sleep=lambda s: None)
    )
    bus = bus_with(handler)

    event_id = bus.publish(Cmd.GO)

    [outcome] = bus.trace(event_id).all_effects()
    assert (outcome.result, outcome.error, outcome.attempts) == ("ok", None, 3)
    assert [(str(a.error), a.wait) for a in outcome.retried] == [
        ("down 1", pytest.approx(0.1)),
        ("down 2", pytest.approx(0.2)),
    ]
    assert all(isinstance(a, Attempt) for a in outcome.retried)
    tree = bus.trace(event_id).tree()
    assert "→ ok after 3 attempts" in tree
    assert "attempt 1 ✗ ConnectionError: down 1, waited 0.100 s" in tree
    assert "attempt 2 ✗ ConnectionError: down 2, waited 0.200 s" in tree


def test_an_effect_that_succeeds_at_once_shows_one_attempt() -> None:
    handler = EffectHandler()
    handler.register_handler(Net.FETCH, Flaky(0), retry=Retry(sleep=lambda s: None))
    bus = bus_with(handler)
    [outcome] = bus.trace(bus.publish(Cmd.GO)).all_effects()
    assert (outcome.retried, outcome.attempts) == ((), 1)
    assert "attempt" not in bus.trace(bus.get_history(limit=1)[0].id).tree()


# -- Breaker on effect performers ----------------------------------------------------------


def circuit_events(bus: EventBus) -> list[tuple[EventType, dict[str, Any]]]:
    circuit = {EventType.CIRCUIT_OPENED, EventType.CIRCUIT_HALF_OPEN, EventType.CIRCUIT_CLOSED}
    return [
        (e.type, dict(e.data))
        for e in reversed(bus.get_history(limit=None))
        if e.type in circuit  # type: ignore[comparison-overlap]
    ]


def test_a_breaker_opens_fails_fast_half_opens_and_closes_publishing_each_change() -> None:
    clock = Clock()
    flaky = Flaky(2)
    handler, _ = system()
    breaker = Breaker(fail_max=2, reset_timeout=30, name="inventory", clock=clock)
    handler.register_handler(Net.FETCH, flaky, breaker=breaker)
    bus = bus_with(handler)

    bus.publish(Cmd.GO)
    bus.publish(Cmd.GO)
    assert breaker.state == "open"
    assert flaky.calls == 2

    # Open: refused without calling the performer; the failure is isolated as usual.
    delivered: list[Event] = []
    bus.subscribe(Cmd.GO, delivered.append)
    bus.publish(Cmd.GO)
    assert flaky.calls == 2
    assert len(delivered) == 1  # the next subscriber still got the event
    [error] = bus.get_history(EventType.ERROR, limit=1)
    assert error.data["error_type"] == "CircuitOpenError"
    with pytest.raises(CircuitOpenError) as excinfo:
        run_once(handler)
    assert excinfo.value.dependency == "inventory"
    assert "open after 2 failures" in str(excinfo.value)

    clock.now += 29.0
    with pytest.raises(CircuitOpenError):
        run_once(handler)
    clock.now += 2.0  # past reset_timeout: one trial call goes through, and succeeds
    assert run_once(handler) == "ok"
    assert breaker.state == "closed"
    assert flaky.calls == 3

    assert circuit_events(bus) == [
        (
            EventType.CIRCUIT_OPENED,
            {"dependency": "inventory", "previous": "closed", "state": "open", "failures": 2},
        ),
        (
            EventType.CIRCUIT_HALF_OPEN,
            {"dependency": "inventory", "previous": "open", "state": "half-open", "failures": 2},
        ),
        (
            EventType.CIRCUIT_CLOSED,
            {"dependency": "inventory", "previous": "half-open", "state": "closed", "failures": 0},
        ),
    ]


def test_a_failed_trial_call_opens_the_circuit_again() -> None:
    clock = Clock()
    handler, _ = system()
    breaker = Breaker(fail_max=1, reset_timeout=5, clock=clock)
    handler.register_handler(Net.FETCH, Flaky(5), breaker=breaker)
    bus = bus_with(handler)
    bus.publish(Cmd.GO)
    clock.now += 6
    bus.publish(Cmd.GO)
    assert breaker.state == "open"
    assert [t for t, _ in circuit_events(bus)] == [
        EventType.CIRCUIT_OPENED,
        EventType.CIRCUIT_HALF_OPEN,
        EventType.CIRCUIT_OPENED,
    ]
    # Named after the effect type when not given a name.
    assert circuit_events(bus)[0][1]["dependency"] == "Net.FETCH"


def test_retry_stops_at_an_open_circuit_and_each_attempt_counts_as_a_failure() -> None:
    naps: list[float] = []
    flaky = Flaky(10)
    handler = EffectHandler()
    handler.register_handler(
        Net.FETCH,
        flaky,
        retry=Retry(attempts=5, backoff=0, sleep=naps.append),
        breaker=Breaker(fail_max=2, clock=Clock()),
    )
    with pytest.raises(CircuitOpenError):
        run_once(handler)
    assert flaky.calls == 2  # two failures opened it; the third attempt was refused
    assert len(naps) == 2  # CircuitOpenError itself is not retried


# -- aspects on services -----------------------------------------------------------------


class Inventory:
    def __init__(self, failures: int) -> None:
        self.flaky = Flaky(failures)

    def stock(self, sku: str) -> str:
        return f"{sku}:{self.flaky(None)}"


def test_retry_aspect_stacks_with_logging_and_metrics_count_retries() -> None:
    lines: list[str] = []
    metrics = MetricsAspect()
    weaver = AspectWeaver()
    weaver.register_aspect("logging", LoggingAspect(logger=lines.append))
    weaver.register_aspect("metrics", metrics)
    weaver.register_aspect("retry", RetryAspect(Retry(3, sleep=lambda s: None), metrics=metrics))
    service = Inventory(failures=2)
    service.stock = weaver.apply_aspect("retry", service.stock)  # type: ignore[method-assign]
    service.stock = weaver.apply_aspect("logging", service.stock)  # type: ignore[method-assign]
    service.stock = weaver.apply_aspect("metrics", service.stock)  # type: ignore[method-assign]

    assert service.stock("A1") == "A1:ok"

    assert service.flaky.calls == 3
    assert [line.split(" in ")[0] for line in lines] == [
        "[1] ENTER Inventory.stock('A1')",
        "[1] EXIT Inventory.stock",
    ]
    stats = metrics.get_metrics()["Inventory.stock"]
    assert (stats["count"], stats["errors"], stats["retries"]) == (1, 0, 2)
    assert weaver.get_applied_aspects(service.stock) == ["retry", "logging", "metrics"]
    weaver.rollback(service.stock)
    service.flaky = Flaky(1)
    with pytest.raises(ConnectionError):
        service.stock("A1")  # woven no more: no retry


def test_logging_woven_inside_the_retry_aspect_logs_every_attempt() -> None:
    lines: list[str] = []
    service = Inventory(failures=1)
    weaver = AspectWeaver()
    weaver.register_aspect("logging", LoggingAspect(logger=lines.append))
    weaver.register_aspect("retry", RetryAspect(Retry(3, sleep=lambda s: None)))
    service.stock = weaver.apply_aspect("logging", service.stock)  # type: ignore[method-assign]
    service.stock = weaver.apply_aspect("retry", service.stock)  # type: ignore[method-assign]

    assert service.stock("B2") == "B2:ok"
    assert [line.split(" ")[1] for line in lines] == ["ENTER", "ERROR", "ENTER", "EXIT"]
    assert all("Inventory.stock" in line for line in lines)


def test_circuit_breaker_aspect_fails_fast_without_running_the_method() -> None:
    bus = EventBus()
    breaker = Breaker(fail_max=1, reset_timeout=60, event_bus=bus, clock=Clock())
    service = Inventory(failures=5)
    weaver = AspectWeaver()
    weaver.register_aspect("breaker", CircuitBreakerAspect(breaker))
    weaver.register_aspect("logging", LoggingAspect(logger=lambda line: None))
    service.stock = weaver.apply_aspect("breaker", service.stock)  # type: ignore[method-assign]
    service.stock = weaver.apply_aspect("logging", service.stock)  # type: ignore[method-assign]

    with pytest.raises(ConnectionError):
        service.stock("C3")
    with pytest.raises(CircuitOpenError) as excinfo:
        service.stock("C3")
    assert service.flaky.calls == 1
    assert excinfo.value.dependency == "Inventory.stock"
    assert [(e.type, e.data["dependency"]) for e in bus.get_history()] == [
        (EventType.CIRCUIT_OPENED, "Inventory.stock")
    ]


# -- replay: cassettes record attempts ------------------------------------------------------


def recorded_system(
    policy: Retry | None, failures: int, *, pending: bool = True
) -> tuple[EventBus, Flaky]:
    flaky = Flaky(failures)
    handler = EffectHandler()
    handler.register_handler(Net.FETCH, flaky, retry=policy)
    return bus_with(handler, pending=pending), flaky


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"replay slept {seconds} s")


@pytest.fixture
def cassette_with_attempts(tmp_path: Path) -> Path:
    path = tmp_path / "attempts.jsonl"
    bus, _ = recorded_system(Retry(3, backoff=0.5, sleep=lambda s: None), failures=2)
    with record(bus, path):
        bus.publish(Cmd.GO)
    return path


def test_a_cassette_records_the_attempts_of_an_effect(cassette_with_attempts: Path) -> None:
    line = json.loads(cassette_with_attempts.read_text().splitlines()[0])
    [effect] = json.loads(line["atlaseffects"])  # a CloudEvents extension: JSON text
    assert effect["result"] == "ok"
    assert effect["retried"] == [
        {"error": {"type": "builtins.ConnectionError", "message": "down 1"}, "wait": 0.5},
        {"error": {"type": "builtins.ConnectionError", "message": "down 2"}, "wait": 1.0},
    ]
    [entry] = Cassette.load(cassette_with_attempts)
    [recorded] = entry.effects
    assert recorded.attempts == 3
    assert recorded.retried[1].error.message == "down 2"


def test_a_cassette_without_attempts_loads_as_one_attempt(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    bus, _ = recorded_system(None, failures=0)
    with record(bus, path):
        bus.publish(Cmd.GO)
    assert "retried" not in path.read_text()  # the cassette's shape before attempts
    [entry] = Cassette.load(path)
    assert entry.effects[0].attempts == 1


def test_stub_replay_returns_the_final_outcome_without_calling_or_sleeping(
    cassette_with_attempts: Path,
) -> None:
    bus, flaky = recorded_system(Retry(3, sleep=no_sleep), failures=2)
    report = replay(Cassette.load(cassette_with_attempts), bus, mode="stub")
    assert report.ok, report
    assert flaky.calls == 0


@pytest.mark.parametrize("pending", [True, False])
def test_check_replay_compares_the_number_of_attempts(
    cassette_with_attempts: Path, pending: bool
) -> None:
    cassette = Cassette.load(cassette_with_attempts)
    same, flaky = recorded_system(Retry(3, sleep=no_sleep), failures=2, pending=pending)
    assert replay(cassette, same, mode="check").ok
    assert flaky.calls == 0

    fewer, _ = recorded_system(Retry(2, sleep=no_sleep), failures=2, pending=pending)
    report = replay(cassette, fewer, mode="check")
    assert report.divergence is not None
    assert report.divergence.reason == "Cmd.GO effect 1 (Net.FETCH): expected 3 attempt(s), got 2"

    unguarded, _ = recorded_system(None, failures=2, pending=pending)
    report = replay(cassette, unguarded, mode="check")
    assert report.divergence is not None
    assert report.divergence.reason.endswith("expected 3 attempt(s), got 1")


def test_a_cassette_with_a_malformed_attempt_is_refused(
    cassette_with_attempts: Path, tmp_path: Path
) -> None:
    line = json.loads(cassette_with_attempts.read_text().splitlines()[0])
    effects = json.loads(line["atlaseffects"])
    effects[0]["retried"][0]["wait"] = -1
    line["atlaseffects"] = json.dumps(effects)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(line) + "\n")
    with pytest.raises(Exception, match=r"retried\[0\] must be"):
        Cassette.load(broken)


# -- the store's own retries --------------------------------------------------------------


def test_the_store_retries_with_the_same_policy(tmp_path: Path) -> None:
    """A lock held past the timeout, on every attempt: the store's Retry makes
    ``retries + 1`` attempts, with full-jitter waits below the doubling cap."""
    naps: list[float] = []
    store = TemporalStore(url=f"sqlite:///{tmp_path / 's.db'}", sleep=naps.append)
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise __import__("sqlite3").OperationalError("database is locked")

    with pytest.raises(Exception, match="after 4 attempts"):
        store._retrying(None, "create", 3, attempt)
    store.close()
    assert len(calls) == 4
    assert len(naps) == 3
    assert all(0 <= nap <= cap for nap, cap in zip(naps, [0.002, 0.004, 0.008], strict=True))


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"attempts": 0}, ValueError, "attempts must be a positive int, got 0"),
        ({"attempts": -3}, ValueError, "attempts must be a positive int, got -3"),
        ({"attempts": True}, TypeError, "attempts must be a positive int, got True"),
        ({"attempts": "5"}, TypeError, "attempts must be a positive int"),
        ({"backoff": -0.1}, ValueError, "backoff must be a finite number of seconds"),
        ({"backoff": "1s"}, TypeError, "backoff must be a number of seconds"),
        ({"max_wait": math.inf}, ValueError, "max_wait must be a finite number"),
        ({"jitter": "yes"}, TypeError, "jitter must be True or False"),
        ({"retry_on": int}, TypeError, "retry_on must be an exception class"),
        ({"retry_on": ()}, TypeError, "retry_on must be an exception class"),
        ({"sleep": 0.5}, TypeError, "sleep must be a callable"),
    ],
)
def test_a_retry_with_nonsense_values_is_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Retry(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fail_max": 0}, ValueError, "fail_max must be a positive int, got 0"),
        ({"fail_max": 2.5}, TypeError, "fail_max must be a positive int"),
        ({"reset_timeout": -1}, ValueError, "reset_timeout must be a finite number"),
        ({"reset_timeout": math.nan}, ValueError, "reset_timeout must be a finite number"),
        ({"reset_timeout": None}, TypeError, "reset_timeout must be a number of seconds"),
        ({"name": ""}, TypeError, "name must be a non-empty str"),
        ({"event_bus": object()}, TypeError, "event_bus must be an EventBus"),
        ({"clock": 3.0}, TypeError, "clock must be a callable"),
        ({"exclude": "ValueError"}, TypeError, "must be an exception class"),
    ],
)
def test_a_breaker_with_nonsense_values_is_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Breaker(**kwargs)


def test_registration_refuses_what_is_not_a_policy_and_keeps_the_old_handler() -> None:
    handler = EffectHandler()
    handler.register_handler(EffectType.HTTP_CALL, lambda e: "old")
    with pytest.raises(TypeError, match=r"retry must be a Retry\(attempts=..., backoff=...\)"):
        handler.register_handler(EffectType.HTTP_CALL, lambda e: "new", retry=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="breaker must be a Breaker"):
        handler.register_handler(EffectType.HTTP_CALL, lambda e: "new", breaker=Retry())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RetryAspect needs a Retry"):
        RetryAspect(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="CircuitBreakerAspect needs a Breaker"):
        CircuitBreakerAspect("inventory")  # type: ignore[arg-type]
    assert handler.handle(Effect(EffectType.HTTP_CALL)) == "old"
