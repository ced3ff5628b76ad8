"""EventBus: subscriptions (strong and weak), order, failure isolation, the depth guard,
causation ids, thread safety, effects, bad input, middleware, history and blinker signals."""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import gc
import logging
import re
import signal
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import blinker
import effect as fx
import pytest
from conftest import Ping
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas_eda import (
    AtlasEdaError,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
    Event,
    EventBus,
    EventCycleError,
    EventTrace,
    EventType,
    HandlerFailures,
    InvalidEventError,
    MiddlewareError,
    NoEffectHandlerError,
    UnhandledEffectError,
)

WAIT = 10.0  # seconds: generous, only ever reached when something is broken
HANG = 60.0  # seconds a whole test may take before the watchdog fails it


class Hung(BaseException):
    """Raised in the main thread by the watchdog. A BaseException, so that the bus's
    failure isolation (which catches Exception) cannot swallow it."""


@pytest.fixture(autouse=True)
def _watchdog() -> Iterator[None]:
    """Fail a test that blocks instead of hanging the run: a bus that held its lock while
    handlers run would deadlock on the first nested publish, in the main thread."""
    if not hasattr(signal, "setitimer"):  # not POSIX: no watchdog
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"the test was still running after {HANG:.0f}s: a deadlock?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, HANG)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Recorder:
    """A handler that records the events it receives."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def handle(self, event: Event) -> None:
        self.events.append(event)

    @property
    def data(self) -> list[Any]:
        return [e.data for e in self.events]


def error_events(bus: EventBus) -> list[Event]:
    return bus.get_history(EventType.ERROR, limit=None)


def run_in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on another thread and return its result; a deadlock fails the test
    after ``WAIT`` seconds instead of hanging it."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "the call did not return: deadlock?"
    if errors:
        raise errors[0]
    return result[0]


# -- strong and weak subscriptions ---------------------------------------------------------


def test_lambda_subscriber_survives_garbage_collection(bus: EventBus) -> None:
    received: list[Any] = []
    bus.subscribe(Ping.PING, lambda event: received.append(event.data))
    bus.subscribe_all(lambda event: received.append(("all", event.data)))
    gc.collect()
    bus.publish(Ping.PING, 1)
    assert received == [1, ("all", 1)]


def test_temporary_bound_method_survives_garbage_collection(bus: EventBus) -> None:
    events: list[Event] = []

    class Listener:
        def on(self, event: Event) -> None:
            events.append(event)

    bus.subscribe(Ping.PING, Listener().on)
    gc.collect()
    bus.publish(Ping.PING)
    assert len(events) == 1


def test_weak_subscriber_is_gone_once_collected(bus: EventBus) -> None:
    received: list[Any] = []

    def handler(event: Event) -> None:
        received.append(event.data)

    probe = weakref.ref(handler)
    bus.subscribe(Ping.PING, handler, weak=True)
    bus.subscribe_all(handler, weak=True)
    bus.publish(Ping.PING, "alive")
    assert received == ["alive", "alive"]

    del handler
    gc.collect()
    assert probe() is None
    bus.publish(Ping.PING, "collected")
    assert received == ["alive", "alive"]


def test_weak_bound_method_subscriber(bus: EventBus) -> None:
    listener = Recorder()
    probe = weakref.ref(listener)
    # listener.handle is a new bound-method object every time: weak=True must track
    # the instance (WeakMethod), not the temporary method object.
    bus.subscribe(Ping.PING, listener.handle, weak=True)
    gc.collect()
    bus.publish(Ping.PING, 1)
    assert listener.data == [1]

    del listener
    gc.collect()
    assert probe() is None
    bus.publish(Ping.PING, 2)  # nothing left to call, nothing raised
    assert error_events(bus) == []


def test_unsubscribe_of_a_weak_subscription_does_not_keep_the_handler_alive(
    bus: EventBus,
) -> None:
    received: list[Any] = []

    def handler(event: Event) -> None:
        received.append(event.data)

    listener = Recorder()
    probe_function = weakref.ref(handler)
    probe_listener = weakref.ref(listener)
    unsubscribers = [
        bus.subscribe(Ping.PING, handler, weak=True),
        bus.subscribe_all(handler, weak=True),
        bus.subscribe(Ping.PING, listener.handle, weak=True),
    ]
    del handler, listener
    gc.collect()
    assert probe_function() is None
    assert probe_listener() is None
    for unsubscribe in unsubscribers:
        unsubscribe()  # a no-op now, and still harmless
        unsubscribe()
    bus.publish(Ping.PING)
    assert received == []


def test_unsubscribe_of_a_weak_subscription_while_alive(bus: EventBus) -> None:
    listener = Recorder()
    unsubscribe = bus.subscribe(Ping.PING, listener.handle, weak=True)
    unsubscribe_all = bus.subscribe_all(listener, weak=True)
    bus.publish(Ping.PING, 1)
    unsubscribe()
    bus.publish(Ping.PING, 2)
    unsubscribe_all()
    bus.publish(Ping.PING, 3)
    assert listener.data == [1, 1, 2]


def test_weak_subscription_of_something_not_weakly_referenceable(bus: EventBus) -> None:
    class Slotted:
        __slots__ = ()

        def __call__(self, event: Event) -> None:
            pass

    with pytest.raises(TypeError, match="weak=False"):
        bus.subscribe(Ping.PING, Slotted(), weak=True)
    bus.subscribe(Ping.PING, Slotted())  # strongly: fine


@pytest.mark.parametrize("not_callable", [None, 42, "handler"])
def test_a_handler_must_be_callable(bus: EventBus, not_callable: Any) -> None:
    with pytest.raises(TypeError, match="callable"):
        bus.subscribe(Ping.PING, not_callable)
    with pytest.raises(TypeError, match="callable"):
        bus.subscribe_all(not_callable)


# -- order ---------------------------------------------------------------------------------


def test_forty_subscribers_run_in_subscription_order(bus: EventBus) -> None:
    calls: list[int] = []
    for n in range(40):
        bus.subscribe(Ping.PING, lambda event, n=n: calls.append(n))
    for _ in range(3):
        calls.clear()
        bus.publish(Ping.PING)
        assert calls == list(range(40))


def test_order_after_unsubscribing_and_resubscribing(bus: EventBus) -> None:
    calls: list[int] = []
    handlers = [lambda event, n=n: calls.append(n) for n in range(40)]
    unsubscribe = [bus.subscribe(Ping.PING, h) for h in handlers]

    gone = list(range(0, 40, 3))
    for n in gone:
        unsubscribe[n]()
    bus.publish(Ping.PING)
    expected = [n for n in range(40) if n not in gone]
    assert calls == expected

    # Re-subscribing puts a handler last, in the order of re-subscription.
    back = [27, 3, 12]
    for n in back:
        unsubscribe[n] = bus.subscribe(Ping.PING, handlers[n])
    calls.clear()
    bus.publish(Ping.PING)
    expected += back
    assert calls == expected


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["subscribe", "unsubscribe"]), st.integers(0, 7)),
        max_size=40,
    )
)
def test_order_is_subscription_order_over_any_sequence(ops: list[tuple[str, int]]) -> None:
    bus = EventBus()
    calls: list[int] = []
    handlers = [lambda event, n=n: calls.append(n) for n in range(8)]
    unsubscribers: dict[int, Callable[[], None]] = {}
    model: list[int] = []  # the order the bus must call them in
    for op, n in ops:
        if op == "subscribe" and n not in unsubscribers:
            unsubscribers[n] = bus.subscribe(Ping.PING, handlers[n])
            model.append(n)
        elif op == "unsubscribe" and n in unsubscribers:
            unsubscribers.pop(n)()
            model.remove(n)
    bus.publish(Ping.PING)
    assert calls == model


def test_subscribe_all_handlers_run_after_the_types_own(bus: EventBus) -> None:
    calls: list[str] = []
    bus.subscribe_all(lambda event: calls.append(f"all-1 {event.type.name}"))
    bus.subscribe(Ping.PING, lambda event: calls.append("ping-1"))
    bus.subscribe_all(lambda event: calls.append(f"all-2 {event.type.name}"))
    bus.subscribe(Ping.PING, lambda event: calls.append("ping-2"))
    bus.subscribe(Ping.PONG, lambda event: calls.append("pong-1"))

    bus.publish(Ping.PING)
    assert calls == ["ping-1", "ping-2", "all-1 PING", "all-2 PING"]
    calls.clear()
    bus.publish(Ping.PONG)
    assert calls == ["pong-1", "all-1 PONG", "all-2 PONG"]
    calls.clear()
    bus.publish(Ping.OTHER)  # no subscriber of its own
    assert calls == ["all-1 OTHER", "all-2 OTHER"]


# -- failure isolation ---------------------------------------------------------------------


def failing(event: Event) -> None:
    raise ValueError(f"cannot handle {event.data}")


def test_a_failing_subscriber_is_isolated_reported_once_and_logged(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    before, after, everything, reports = Recorder(), Recorder(), Recorder(), Recorder()
    bus.subscribe(Ping.PING, before)
    bus.subscribe(Ping.PING, failing)
    bus.subscribe(Ping.PING, after)
    bus.subscribe_all(everything)
    bus.subscribe(EventType.ERROR, reports)

    with caplog.at_level(logging.ERROR, logger="atlas_eda.bus"):
        event_id = bus.publish(Ping.PING, "order-7")

    assert before.data == after.data == ["order-7"]
    assert [e.type for e in everything.events] == [Ping.PING, EventType.ERROR]

    assert len(reports.events) == 1
    report = reports.events[0]
    assert error_events(bus) == [report]
    assert report.data == {
        "event_id": event_id,
        "event_type": "Ping.PING",
        "handler": f"{__name__}.failing",
        "error_type": "ValueError",
        "error_message": "cannot handle order-7",
    }
    assert report.causation_id == event_id
    assert report.correlation_id == event_id
    assert report.source == "atlas_eda.bus"

    (event,) = bus.get_history(Ping.PING)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "atlas_eda.bus",
            logging.ERROR,
            f"handler {__name__}.failing failed on {event}: ValueError: cannot handle order-7",
        )
    ]
    (record,) = caplog.records
    assert record.exc_info is not None
    assert type(record.exc_info[1]) is ValueError
    assert str(record.exc_info[1]) == "cannot handle order-7"


def test_every_failure_of_one_event_is_reported(bus: EventBus) -> None:
    ok = Recorder()

    def also_failing(event: Event) -> None:
        raise KeyError("missing")

    bus.subscribe(Ping.PING, failing)
    bus.subscribe(Ping.PING, also_failing)
    bus.subscribe(Ping.PING, ok)
    event_id = bus.publish(Ping.PING, 1)

    assert ok.data == [1]
    reports = list(reversed(error_events(bus)))
    assert [r.data["error_type"] for r in reports] == ["ValueError", "KeyError"]
    assert {r.data["event_id"] for r in reports} == {event_id}


def test_a_failing_subscribe_all_handler_does_not_loop(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Event] = []

    def catch_all(event: Event) -> None:
        calls.append(event)
        raise RuntimeError("catch-all is broken")

    bus.subscribe_all(catch_all)
    with caplog.at_level(logging.ERROR, logger="atlas_eda.bus"):
        ids = [bus.publish(Ping.PING, n) for n in range(3)]

    errors = error_events(bus)
    assert len(errors) == 3  # exactly one per original failure
    assert sorted(e.data["event_id"] for e in errors) == sorted(ids)
    # the catch-all saw each event and each ERROR once, and failed on both: logged twice
    delivered = list(reversed(bus.get_history(limit=None)))  # in publish order
    assert [e.type for e in delivered] == [Ping.PING, EventType.ERROR] * 3
    assert calls == delivered
    name = f"{__name__}.test_a_failing_subscribe_all_handler_does_not_loop.<locals>.catch_all"
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "atlas_eda.bus",
            logging.ERROR,
            f"handler {name} failed on {event}: RuntimeError: catch-all is broken",
        )
        for event in delivered
    ]


def test_a_failing_error_handler_is_only_logged(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_reporter(event: Event) -> None:
        raise RuntimeError("reporter is down")

    later_reporter = Recorder()
    bus.subscribe(EventType.ERROR, broken_reporter)
    bus.subscribe(EventType.ERROR, later_reporter)
    bus.subscribe(Ping.PING, failing)

    with caplog.at_level(logging.ERROR, logger="atlas_eda.bus"):
        bus.publish(Ping.PING)

    (report,) = error_events(bus)
    assert later_reporter.events == [report]
    (event,) = bus.get_history(Ping.PING)
    reporter = f"{__name__}.test_a_failing_error_handler_is_only_logged.<locals>.broken_reporter"
    # The failure, then the reporter's failure on its ERROR event: logged, not published.
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "atlas_eda.bus",
            logging.ERROR,
            f"handler {__name__}.failing failed on {event}: ValueError: cannot handle None",
        ),
        (
            "atlas_eda.bus",
            logging.ERROR,
            f"handler {reporter} failed on {report}: RuntimeError: reporter is down",
        ),
    ]


def test_an_error_published_directly_reaches_its_subscribers(bus: EventBus) -> None:
    reports = Recorder()
    bus.subscribe(EventType.ERROR, reports)
    bus.publish(EventType.ERROR, {"reason": "manual"})
    assert reports.data == [{"reason": "manual"}]


# -- the depth guard -----------------------------------------------------------------------


def test_ping_pong_cycle_raises_event_cycle_error(bus: EventBus) -> None:
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG))
    bus.subscribe(Ping.PONG, lambda event: bus.publish(Ping.PING))

    with pytest.raises(EventCycleError) as info:
        bus.publish(Ping.PING)

    error = info.value
    assert not isinstance(error, RecursionError)
    assert isinstance(error, AtlasEdaError)
    assert len(error.chain) == bus.max_depth + 1 == 65
    assert error.chain[:4] == ("Ping.PING", "Ping.PONG", "Ping.PING", "Ping.PONG")
    assert all(
        name == ("Ping.PING" if n % 2 == 0 else "Ping.PONG") for n, name in enumerate(error.chain)
    )
    message = str(error)
    assert "Ping.PING" in message
    assert "Ping.PONG" in message
    assert "max_depth=64" in message
    assert "\n" not in message
    # The cycle is not hidden behind ERROR events.
    assert error_events(bus) == []


def test_the_bus_is_usable_after_a_cycle(bus: EventBus) -> None:
    unsubscribe = [
        bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG)),
        bus.subscribe(Ping.PONG, lambda event: bus.publish(Ping.PING)),
    ]
    for _ in range(2):
        with pytest.raises(EventCycleError):
            bus.publish(Ping.PING)
    for fn in unsubscribe:
        fn()

    received = Recorder()
    bus.subscribe(Ping.PING, received)
    event_id = bus.publish(Ping.PING)
    (event,) = received.events
    # A root event again: the per-thread nesting stack was unwound.
    assert event.id == event_id
    assert event.causation_id is None
    assert event.correlation_id == event_id


def test_the_other_handlers_of_an_event_run_before_a_cycle_error_propagates(
    bus: EventBus,
) -> None:
    later = Recorder()
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG))
    bus.subscribe(Ping.PONG, lambda event: bus.publish(Ping.PING))
    bus.subscribe(Ping.PING, later)
    with pytest.raises(EventCycleError):
        bus.publish(Ping.PING, "root")
    assert "root" in later.data


def test_a_base_exception_from_a_handler_propagates_and_leaves_the_bus_clean(
    bus: EventBus,
) -> None:
    def interrupted(event: Event) -> None:
        if event.data == "interrupt":
            raise KeyboardInterrupt

    bus.subscribe(Ping.PING, interrupted)
    bus.subscribe(Ping.PONG, lambda event: bus.publish(Ping.PING, "interrupt"))
    with pytest.raises(KeyboardInterrupt):
        bus.publish(Ping.PONG)
    assert error_events(bus) == []  # not a handler failure to report

    event_id = bus.publish(Ping.PING, "after")
    after = bus.get_history()[0]
    assert after.id == event_id
    assert after.causation_id is None  # a root again: the nesting stack was unwound
    assert after.correlation_id == event_id


def nesting_bus(max_depth: int) -> EventBus:
    """A bus whose PING handler publishes PING ``data - 1`` until data is 1: publishing
    ``PING n`` nests n events deep."""
    bus = EventBus(max_depth=max_depth)

    def deeper(event: Event) -> None:
        if event.data > 1:
            bus.publish(Ping.PING, event.data - 1)

    bus.subscribe(Ping.PING, deeper)
    return bus


def test_max_depth_is_honoured() -> None:
    bus = nesting_bus(max_depth=3)
    bus.publish(Ping.PING, 3)
    assert [e.data for e in bus.get_history()] == [1, 2, 3]

    bus.clear_history()
    with pytest.raises(EventCycleError) as info:
        bus.publish(Ping.PING, 4)
    assert info.value.chain == ("Ping.PING",) * 4
    assert "max_depth=3" in str(info.value)
    assert [e.data for e in bus.get_history()] == [2, 3, 4]  # the fourth was refused

    bus.publish(Ping.PING, 3)  # and the bus still nests 3 deep afterwards


def test_max_depth_one_allows_no_nesting() -> None:
    bus = nesting_bus(max_depth=1)
    bus.publish(Ping.PING, 1)
    with pytest.raises(EventCycleError):
        bus.publish(Ping.PING, 2)


def test_a_deep_but_finite_chain_within_max_depth_succeeds() -> None:
    bus = nesting_bus(max_depth=64)
    bus.publish(Ping.PING, 64)
    assert len(bus.get_history(limit=None)) == 64


# -- causation and correlation -------------------------------------------------------------


def test_causation_and_correlation_ids_of_nested_publishes(bus: EventBus) -> None:
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG, "child"))
    bus.subscribe(Ping.PONG, lambda event: bus.publish(Ping.OTHER, "grandchild"))
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.OTHER, "second child"))

    root_id = bus.publish(Ping.PING, "root")

    by_data = {e.data: e for e in bus.get_history()}
    root = by_data["root"]
    child = by_data["child"]
    grandchild = by_data["grandchild"]
    second = by_data["second child"]
    assert root.id == root_id
    assert root.correlation_id == root_id
    assert root.causation_id is None
    assert child.causation_id == root_id
    assert child.correlation_id == root_id
    assert grandchild.causation_id == child.id
    assert grandchild.correlation_id == root_id
    assert second.causation_id == root_id  # back at depth one after the child returned
    assert second.correlation_id == root_id
    assert len({root.id, child.id, grandchild.id, second.id}) == 4


def test_separate_publishes_are_separate_roots(bus: EventBus) -> None:
    first = bus.publish(Ping.PING)
    second = bus.publish(Ping.PING)
    for event, event_id in zip(bus.get_history(), (second, first), strict=True):
        assert event.id == event_id
        assert event.correlation_id == event_id
        assert event.causation_id is None


def test_nesting_is_per_thread(bus: EventBus) -> None:
    """A publish on another thread while a handler runs is a root, not a child."""
    other_thread_ids: list[str] = []

    def handler(event: Event) -> None:
        other_thread_ids.append(run_in_thread(lambda: bus.publish(Ping.PONG)))

    bus.subscribe(Ping.PING, handler)
    bus.publish(Ping.PING)
    (pong,) = bus.get_history(Ping.PONG)
    assert pong.id == other_thread_ids[0]
    assert pong.causation_id is None
    assert pong.correlation_id == pong.id


def test_work_handed_on_with_copy_context_keeps_causation(bus: EventBus) -> None:
    """A handler hands work to a thread pool through contextvars.copy_context(): what the
    work publishes is a child of the handled event, not a new root."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:

        def handler(event: Event) -> None:
            context = contextvars.copy_context()
            pool.submit(context.run, bus.publish, Ping.PONG).result(timeout=60)

        bus.subscribe(Ping.PING, handler)
        ping_id = bus.publish(Ping.PING)
    (pong,) = bus.get_history(Ping.PONG)
    assert pong.causation_id == ping_id
    assert pong.correlation_id == ping_id
    (delivery,) = bus.trace(ping_id).deliveries
    assert [child.event.id for child in delivery.children] == [pong.id]


def test_a_copied_context_keeps_the_stack_as_it_was_when_copied(bus: EventBus) -> None:
    """The copy is run after the handler returned, on another thread, while this thread
    publishes other roots: its publish is still the child of the event it was copied in."""
    copied: list[contextvars.Context] = []
    bus.subscribe(Ping.PING, lambda event: copied.append(contextvars.copy_context()))
    ping_id = bus.publish(Ping.PING)
    bus.publish(Ping.PONG)  # another root in between: the copy must not see it
    later: list[str] = []
    thread = threading.Thread(target=lambda: later.append(copied[0].run(bus.publish, Ping.PONG)))
    thread.start()
    thread.join(timeout=60)
    child = next(event for event in bus.get_history(Ping.PONG) if event.id == later[0])
    assert child.causation_id == ping_id
    root_id = bus.publish(Ping.PONG)  # this thread's stack is left empty by the copy
    assert bus.get_history(Ping.PONG, limit=1)[0].id == root_id
    assert bus.get_history(Ping.PONG, limit=1)[0].causation_id is None


# -- threads -------------------------------------------------------------------------------


def test_eight_threads_publishing_lose_nothing_and_history_stays_bounded() -> None:
    threads_count, per_thread, limit = 8, 2_000, 1_000
    bus = EventBus(history_limit=limit)
    delivered: list[str] = []
    delivered_all: list[str] = []
    bus.subscribe(Ping.PING, lambda event: delivered.append(event.id))
    bus.subscribe_all(lambda event: delivered_all.append(event.id))

    returned: list[list[str]] = [[] for _ in range(threads_count)]
    failures: list[BaseException] = []
    start = threading.Barrier(threads_count)

    def publisher(t: int) -> None:
        try:
            start.wait(timeout=WAIT)
            out = returned[t]
            for i in range(per_thread):
                out.append(bus.publish(Ping.PING, (t, i)))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=publisher, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []

    total = threads_count * per_thread
    ids = [i for out in returned for i in out]
    assert len(ids) == total
    assert len(set(ids)) == total
    assert len(delivered) == len(delivered_all) == total
    assert set(delivered) == set(delivered_all) == set(ids)

    history = bus.get_history(limit=None)
    assert len(history) == limit
    assert len({e.id for e in history}) == limit
    assert error_events(bus) == []
    # The deque drops the oldest first, so what is left of each thread's events is the
    # tail of its own sequence, newest first; some thread's very last event is the newest.
    for t in range(threads_count):
        mine = [e.data[1] for e in history if e.data[0] == t]
        assert mine == list(range(per_thread - 1, per_thread - 1 - len(mine), -1))
    assert history[0].data[1] == per_thread - 1
    assert history[0].id in {out[-1] for out in returned}


def test_subscribing_while_other_threads_publish(bus: EventBus) -> None:
    steady = Recorder()
    bus.subscribe(Ping.PING, steady)
    stop = threading.Event()
    failures: list[BaseException] = []
    published: list[str] = []

    def publisher() -> None:
        try:
            while not stop.is_set() or len(published) < 200:
                published.append(bus.publish(Ping.PING))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=publisher) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(300):
            unsubscribe = [
                bus.subscribe(Ping.PING, lambda event: None),
                bus.subscribe_all(lambda event: None),
            ]
            for fn in unsubscribe:
                fn()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=WAIT)
    assert failures == []
    assert len(steady.events) == len(published)
    assert error_events(bus) == []


def test_a_slow_handler_does_not_block_publishes_on_other_threads(bus: EventBus) -> None:
    entered = threading.Event()
    release = threading.Event()
    slow_calls: list[str] = []
    quick = Recorder()

    def slow(event: Event) -> None:
        slow_calls.append(event.data)
        if event.data == "blocking":
            entered.set()
            assert release.wait(WAIT), "never released"

    bus.subscribe(Ping.PING, slow)
    bus.subscribe(Ping.PONG, quick)

    blocked = threading.Thread(target=lambda: bus.publish(Ping.PING, "blocking"), daemon=True)
    blocked.start()
    try:
        assert entered.wait(WAIT), "the slow handler never started"
        # Thread 1 is inside a handler now; publishing, subscribing, adding middleware
        # and reading history from here must all return.
        run_in_thread(lambda: bus.publish(Ping.PONG, "other type"))
        run_in_thread(lambda: bus.publish(Ping.PING, "same type"))
        run_in_thread(lambda: bus.subscribe(Ping.PONG, lambda event: None))
        run_in_thread(lambda: bus.add_middleware(lambda event: event))
        run_in_thread(bus.get_history)
        assert quick.data == ["other type"]
        assert slow_calls == ["blocking", "same type"]
        assert blocked.is_alive()  # still stuck in the slow handler
    finally:
        release.set()
        blocked.join(WAIT)
    assert not blocked.is_alive()
    assert [e.data for e in bus.get_history(Ping.PING)] == ["same type", "blocking"]


def test_handlers_may_subscribe_and_add_middleware_while_running(bus: EventBus) -> None:
    late = Recorder()
    seen_by_middleware: list[Any] = []

    def reconfigure(event: Event) -> None:
        if event.data == 1:
            bus.subscribe(Ping.PING, late)
            bus.add_middleware(lambda e: seen_by_middleware.append(e.data) or e)

    bus.subscribe(Ping.PING, reconfigure)
    run_in_thread(lambda: bus.publish(Ping.PING, 1))
    bus.publish(Ping.PING, 2)
    assert late.data == [2]
    assert seen_by_middleware == [2]


# -- effects -------------------------------------------------------------------------------


@pytest.fixture
def performed() -> list[tuple[str, Any]]:
    return []


@pytest.fixture
def effect_bus(performed: list[tuple[str, Any]]) -> EventBus:
    handler = EffectHandler()
    handler.register_handler(
        EffectType.DATABASE_WRITE, lambda effect: performed.append(("write", effect.payload))
    )
    handler.register_handler(
        EffectType.NOTIFICATION, lambda effect: performed.append(("notify", effect.payload))
    )
    return EventBus(effect_handler=handler)


def test_a_returned_effect_monad_is_performed_in_order(
    effect_bus: EventBus, performed: list[tuple[str, Any]]
) -> None:
    def plan(event: Event) -> EffectMonad[str]:
        return (
            EffectMonad.pure("saved")
            .with_effect(Effect(EffectType.DATABASE_WRITE, event.data))
            .with_effect(Effect(EffectType.NOTIFICATION, "mail"))
            .with_effect(Effect(EffectType.DATABASE_WRITE, "audit"))
        )

    effect_bus.subscribe(Ping.PING, plan)
    effect_bus.subscribe(Ping.PING, lambda event: performed.append(("next handler", None)))
    effect_bus.publish(Ping.PING, "row")

    assert performed == [
        ("write", "row"),
        ("notify", "mail"),
        ("write", "audit"),
        ("next handler", None),
    ]
    assert error_events(effect_bus) == []


def test_effect_library_intents_returned_by_a_handler_are_performed(
    effect_bus: EventBus,
) -> None:
    results: list[int] = []
    effect_bus.subscribe(
        Ping.PING, lambda event: EffectMonad.pure(0).with_effect(fx.Func(results.append, 7))
    )
    effect_bus.publish(Ping.PING)
    assert results == [7]


def test_a_failing_performer_is_reported_as_a_handler_failure(
    effect_bus: EventBus, performed: list[tuple[str, Any]]
) -> None:
    def disk_full(effect: Effect) -> None:
        raise OSError("disk full")

    assert effect_bus.effect_handler is not None
    effect_bus.effect_handler.register_handler(EffectType.FILE_OPERATION, disk_full)

    def writes_a_file(event: Event) -> EffectMonad[None]:
        return EffectMonad.pure(None).with_effect(Effect(EffectType.FILE_OPERATION, "a.txt"))

    after = Recorder()
    effect_bus.subscribe(Ping.PING, writes_a_file)
    effect_bus.subscribe(Ping.PING, after)
    event_id = effect_bus.publish(Ping.PING, 1)

    assert after.data == [1]
    (report,) = error_events(effect_bus)
    assert report.data["event_id"] == event_id
    assert report.data["handler"].endswith("writes_a_file")
    assert report.data["error_type"] == "OSError"
    assert report.data["error_message"] == "disk full"
    assert report.causation_id == event_id


def test_an_effect_without_performer_is_reported_and_nothing_is_performed(
    effect_bus: EventBus, performed: list[tuple[str, Any]]
) -> None:
    effect_bus.subscribe(
        Ping.PING,
        lambda event: (
            EffectMonad.pure(None)
            .with_effect(Effect(EffectType.DATABASE_WRITE, "row"))
            .with_effect(Effect(EffectType.LOGGING, "no performer"))
        ),
    )
    effect_bus.publish(Ping.PING)
    assert performed == []  # checked before performing any
    (report,) = error_events(effect_bus)
    assert report.data["error_type"] == UnhandledEffectError.__name__
    assert "EffectType.LOGGING" in report.data["error_message"]


def test_an_effect_monad_without_effect_handler_raises_from_publish(bus: EventBus) -> None:
    before, after = Recorder(), Recorder()
    bus.subscribe(Ping.PING, before)
    bus.subscribe(Ping.PING, lambda event: EffectMonad.pure(1).with_effect(Effect(Ping.OTHER)))
    bus.subscribe(Ping.PING, after)

    with pytest.raises(NoEffectHandlerError, match="effect_handler") as info:
        bus.publish(Ping.PING, "x")
    assert isinstance(info.value, AtlasEdaError)
    assert before.data == after.data == ["x"]  # every subscriber still got the event
    assert error_events(bus) == []  # raised, not reported

    seen: list[Effect] = []
    handler = EffectHandler()
    handler.register_handler(Ping.OTHER, seen.append)
    bus.effect_handler = handler  # configured afterwards: works from then on
    bus.publish(Ping.PING, "y")
    assert seen == [Effect(Ping.OTHER)]


def test_plain_return_values_are_ignored(bus: EventBus) -> None:
    bus.subscribe(Ping.PING, lambda event: "a value")
    bus.subscribe(Ping.PING, lambda event: 42)
    bus.publish(Ping.PING)
    assert error_events(bus) == []


# -- bad input -----------------------------------------------------------------------------


NOT_EVENT_TYPES = ["ping", 1, None, Ping, EventType, object()]


@pytest.mark.parametrize("bad_type", NOT_EVENT_TYPES)
def test_publishing_a_type_that_is_not_an_enum_member(bus: EventBus, bad_type: Any) -> None:
    everything = Recorder()
    bus.subscribe_all(everything)
    with pytest.raises(InvalidEventError, match=r"enum\.Enum member") as info:
        bus.publish(bad_type, "data")
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, AtlasEdaError)
    assert bus.get_history() == []
    assert everything.events == []


@pytest.mark.parametrize("bad_type", NOT_EVENT_TYPES)
def test_subscribing_to_a_type_that_is_not_an_enum_member(bus: EventBus, bad_type: Any) -> None:
    with pytest.raises(InvalidEventError, match=r"enum\.Enum member"):
        bus.subscribe(bad_type, lambda event: None)
    with pytest.raises(InvalidEventError):
        bus.get_signal(bad_type)


@pytest.mark.parametrize("bad", [None, {"type": "PING"}, "event", Ping.PING])
def test_publish_event_with_something_that_is_not_an_event(bus: EventBus, bad: Any) -> None:
    with pytest.raises(InvalidEventError, match="Event") as info:
        bus.publish_event(bad)
    assert isinstance(info.value, TypeError)
    assert bus.get_history() == []


@pytest.mark.parametrize("bad_metadata", [[("tenant", "acme")], "tenant=acme", 0, [], ""])
def test_metadata_that_is_not_a_mapping(bus: EventBus, bad_metadata: Any) -> None:
    everything = Recorder()
    bus.subscribe_all(everything)
    with pytest.raises(InvalidEventError, match="mapping"):
        bus.publish(Ping.PING, metadata=bad_metadata)
    assert bus.get_history() == []
    assert everything.events == []


def test_a_raising_middleware(bus: EventBus) -> None:
    everything = Recorder()
    bus.subscribe(Ping.PING, everything)
    bus.subscribe_all(everything)
    original = LookupError("no tenant")

    def strict(event: Event) -> Event:
        raise original

    bus.add_middleware(strict)
    with pytest.raises(MiddlewareError) as info:
        bus.publish(Ping.PING)
    assert info.value.__cause__ is original
    assert "strict" in str(info.value)
    assert "LookupError" in str(info.value)
    assert bus.get_history() == []
    assert everything.events == []


@pytest.mark.parametrize(
    "result",
    [{"type": Ping.PING}, "event", 0, lambda e: dataclasses.replace(e, type="ping")],
    ids=["dict", "str", "zero", "event-with-bad-type"],
)
def test_a_middleware_returning_something_other_than_an_event(bus: EventBus, result: Any) -> None:
    everything = Recorder()
    bus.subscribe_all(everything)
    bus.add_middleware(result if callable(result) else (lambda event: result))
    with pytest.raises(MiddlewareError):
        bus.publish(Ping.PING)
    with pytest.raises(MiddlewareError):
        bus.publish_event(Event(type=Ping.PING))
    assert bus.get_history() == []
    assert everything.events == []


def test_a_middleware_error_inside_a_handler_is_a_handler_failure(bus: EventBus) -> None:
    def refuse_pong(event: Event) -> Event:
        if event.type is Ping.PONG:
            raise PermissionError("no pongs")
        return event

    bus.add_middleware(refuse_pong)
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG))
    event_id = bus.publish(Ping.PING)
    (report,) = error_events(bus)
    assert report.data["event_id"] == event_id
    assert report.data["error_type"] == "MiddlewareError"
    assert bus.get_history(Ping.PONG) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"history_limit": -1}, ValueError),
        ({"history_limit": "10"}, TypeError),
        ({"history_limit": 1.5}, TypeError),
        ({"history_limit": True}, TypeError),
        ({"history_limit": None}, TypeError),
        ({"max_depth": 0}, ValueError),
        ({"max_depth": -3}, ValueError),
        ({"max_depth": "3"}, TypeError),
        ({"max_depth": 2.0}, TypeError),
        ({"max_depth": True}, TypeError),
    ],
)
def test_constructor_arguments_are_checked(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        EventBus(**kwargs)


def test_constructor_defaults_and_keyword_only_arguments() -> None:
    bus = EventBus()
    assert bus.history_limit == 1000
    assert bus.max_depth == 64
    assert bus.effect_handler is None
    assert EventBus(5).history_limit == 5
    handler = EffectHandler()
    assert EventBus(effect_handler=handler, max_depth=3).effect_handler is handler
    with pytest.raises(TypeError):
        EventBus(10, handler)  # type: ignore[misc]


# -- subscribe / publish / publish_event ---------------------------------------------------


def test_unsubscribe_is_idempotent(bus: EventBus) -> None:
    received = Recorder()
    unsubscribe = bus.subscribe(Ping.PING, received)
    unsubscribe_all = bus.subscribe_all(received)
    bus.publish(Ping.PING, 1)
    for _ in range(3):
        unsubscribe()
        unsubscribe_all()
    bus.publish(Ping.PING, 2)
    assert received.data == [1, 1]


def test_a_stale_unsubscribe_does_not_remove_a_later_subscription(bus: EventBus) -> None:
    received = Recorder()
    first = bus.subscribe(Ping.PING, received)
    first()
    bus.subscribe(Ping.PING, received)
    first()  # already used: must not undo the new subscription
    bus.publish(Ping.PING, 1)
    assert received.data == [1]


def test_unsubscribe_removes_only_that_handler(bus: EventBus) -> None:
    a, b = Recorder(), Recorder()
    unsubscribe_a = bus.subscribe(Ping.PING, a)
    bus.subscribe(Ping.PING, b)
    bus.subscribe(Ping.PONG, a)
    unsubscribe_a()
    bus.publish(Ping.PING, "ping")
    bus.publish(Ping.PONG, "pong")
    assert a.data == ["pong"]
    assert b.data == ["ping"]


def test_publish_returns_the_event_id_and_builds_the_event(bus: EventBus) -> None:
    received = Recorder()
    bus.subscribe(Ping.PING, received)
    event_id = bus.publish(Ping.PING, {"n": 1}, "tests", metadata={"tenant": "acme"})

    assert uuid.UUID(event_id).version == 4
    (event,) = received.events
    assert event.id == event_id
    assert event.type is Ping.PING
    assert event.data == {"n": 1}
    assert event.source == "tests"
    assert event.metadata == {"tenant": "acme"}
    assert bus.get_history() == [event]
    assert bus.get_history()[0] is event  # the handler got the recorded event itself


def test_publish_with_keyword_arguments(bus: EventBus) -> None:
    event_id = bus.publish(event_type=Ping.PING, data=1, source="kw")
    (event,) = bus.get_history()
    assert (event.id, event.data, event.source) == (event_id, 1, "kw")
    with pytest.raises(TypeError):
        bus.publish(Ping.PING, 1, "src", {"meta": 1})  # type: ignore[misc]


def test_metadata_is_read_only_in_the_event(bus: EventBus) -> None:
    given = {"tenant": "acme"}
    bus.publish(Ping.PING, metadata=given)
    given["tenant"] = "changed"
    (event,) = bus.get_history()
    assert event.metadata == {"tenant": "acme"}
    with pytest.raises(TypeError):
        event.metadata["tenant"] = "x"  # type: ignore[index]
    bus.publish(Ping.PING)
    assert bus.get_history()[0].metadata == {}


def test_publish_event_keeps_a_prebuilt_event_as_it_is(bus: EventBus) -> None:
    received = Recorder()
    bus.subscribe(Ping.PING, received)
    recorded = Event(
        type=Ping.PING,
        data={"n": 1},
        id=str(uuid.uuid4()),
        timestamp=1_000.0,
        source="recording",
        metadata={"session": 3},
        correlation_id="root-of-the-recording",
        causation_id="its-parent",
    )
    assert bus.publish_event(recorded) == recorded.id
    assert received.events == [recorded]
    assert received.events[0] is recorded
    assert bus.get_history() == [recorded]


def test_publish_event_inside_a_handler_keeps_the_events_own_ids(bus: EventBus) -> None:
    replayed = Event(type=Ping.PONG, correlation_id="old-root", causation_id="old-parent")
    bus.subscribe(Ping.PING, lambda event: bus.publish_event(replayed))
    bus.publish(Ping.PING)
    (pong,) = bus.get_history(Ping.PONG)
    assert pong is replayed
    assert (pong.correlation_id, pong.causation_id) == ("old-root", "old-parent")


def test_replaying_a_history_into_a_fresh_bus(bus: EventBus) -> None:
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG, event.data))
    for n in range(3):
        bus.publish(Ping.PING, n)
    recorded = list(reversed(bus.get_history(limit=None)))

    fresh = EventBus()
    received = Recorder()
    fresh.subscribe_all(received)
    for event in recorded:
        fresh.publish_event(event)
    assert received.events == recorded
    assert list(reversed(fresh.get_history(limit=None))) == recorded


# -- middleware ----------------------------------------------------------------------------


def test_middleware_runs_in_registration_order(bus: EventBus) -> None:
    calls: list[str] = []

    def named(name: str) -> Callable[[Event], Event]:
        def middleware(event: Event) -> Event:
            calls.append(name)
            return event

        return middleware

    for name in ("first", "second", "third"):
        bus.add_middleware(named(name))
    bus.subscribe(Ping.PING, lambda event: calls.append("handler"))
    bus.publish(Ping.PING)
    assert calls == ["first", "second", "third", "handler"]


def test_collect_records_gathers_what_the_history_keeps_in_publish_order(bus: EventBus) -> None:
    """What replay relies on (EventBus.collect_records): each collector gets the very
    records the history keeps, children included, in publish order, after the middleware
    (a dropped event is not collected; a transformed one is, as transformed), until its
    stop function is called; the history is kept as before."""
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG, event.data))
    bus.add_middleware(lambda e: None if e.type is Ping.OTHER else e)
    bus.add_middleware(lambda e: dataclasses.replace(e, source="tagged"))
    first: list[list[Any]] = []
    second: list[list[Any]] = []
    stop_first = bus.collect_records(first)
    stop_second = bus.collect_records(second)

    root = bus.publish(Ping.PING, 1)
    bus.publish(Ping.OTHER)
    stop_second()
    stop_second()  # a second call does nothing
    bus.publish(Ping.PONG, 2)
    stop_first()
    bus.publish(Ping.PONG, 3)

    events = [record[0] for record in first]
    assert [(e.type, e.data, e.source) for e in events] == [
        (Ping.PING, 1, "tagged"),
        (Ping.PONG, 1, "tagged"),
        (Ping.PONG, 2, "tagged"),
    ]
    assert events[1].causation_id == root
    assert [record[0] for record in second] == events[:2]
    assert list(reversed(bus.get_history(limit=None)))[:3] == events
    assert [e.data for e in bus.get_history(limit=None)] == [3, 2, 1, 1]
    # The very records the history keeps (their traces are read from them).
    assert bus.trace(root).deliveries[0].children[0].event is events[1]


def test_middleware_can_transform_the_event(bus: EventBus) -> None:
    received = Recorder()
    bus.subscribe(Ping.PING, received)
    bus.add_middleware(lambda e: dataclasses.replace(e, metadata={**e.metadata, "tenant": "acme"}))
    bus.add_middleware(lambda e: dataclasses.replace(e, data=e.data * 10))

    event_id = bus.publish(Ping.PING, 4, metadata={"user": "ada"})

    (event,) = received.events
    assert event.data == 40
    assert event.metadata == {"user": "ada", "tenant": "acme"}
    assert event.id == event_id
    assert bus.get_history() == [event]
    with pytest.raises(TypeError):
        event.metadata["tenant"] = "other"  # type: ignore[index]


def test_middleware_returning_none_drops_the_event(bus: EventBus) -> None:
    everything = Recorder()
    bus.subscribe(Ping.PING, everything)
    bus.subscribe_all(everything)
    seen: list[str] = []

    def drop_pings(event: Event) -> Event | None:
        seen.append(event.id)
        return None if event.type is Ping.PING else event

    later: list[Event] = []
    bus.add_middleware(drop_pings)
    bus.add_middleware(lambda e: later.append(e) or e)

    event_id = bus.publish(Ping.PING)
    assert seen == [event_id]  # the id publish returned is the dropped event's
    assert uuid.UUID(event_id).version == 4
    assert everything.events == []
    assert bus.get_history() == []
    assert later == []  # later middleware never saw it

    kept = bus.publish(Ping.PONG)
    assert [e.id for e in bus.get_history()] == [kept]
    assert [e.id for e in everything.events] == [kept]


def test_middleware_remover(bus: EventBus) -> None:
    calls: list[str] = []
    remove_a = bus.add_middleware(lambda e: calls.append("a") or e)
    bus.add_middleware(lambda e: calls.append("b") or e)
    bus.publish(Ping.PING)
    remove_a()
    remove_a()  # idempotent
    bus.publish(Ping.PING)
    assert calls == ["a", "b", "b"]


def test_middleware_sees_nested_events_with_their_ids(bus: EventBus) -> None:
    seen: list[Event] = []
    bus.add_middleware(lambda e: seen.append(e) or e)
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG))
    root_id = bus.publish(Ping.PING)
    assert [e.type for e in seen] == [Ping.PING, Ping.PONG]
    assert seen[1].causation_id == root_id


def test_a_middleware_must_be_callable(bus: EventBus) -> None:
    with pytest.raises(TypeError, match="callable"):
        bus.add_middleware("not a function")  # type: ignore[arg-type]


# -- history -------------------------------------------------------------------------------


def test_history_is_newest_first_filtered_and_limited(bus: EventBus) -> None:
    for n in range(150):
        bus.publish(Ping.PING if n % 3 else Ping.PONG, n)

    default = bus.get_history()
    assert len(default) == 100  # limit=100 by default
    assert [e.data for e in default] == list(range(149, 49, -1))

    assert [e.data for e in bus.get_history(limit=3)] == [149, 148, 147]
    assert len(bus.get_history(limit=None)) == 150
    assert bus.get_history(limit=0) == []

    pongs = bus.get_history(Ping.PONG, limit=None)
    assert [e.data for e in pongs] == list(range(147, -1, -3))
    assert [e.data for e in bus.get_history(Ping.PONG, limit=2)] == [147, 144]
    assert [e.data for e in bus.get_history(event_type=Ping.PING, limit=2)] == [149, 148]
    assert bus.get_history(Ping.OTHER) == []


def test_history_is_a_copy(bus: EventBus) -> None:
    bus.publish(Ping.PING)
    history = bus.get_history()
    history.clear()
    assert len(bus.get_history()) == 1


def test_history_keeps_only_the_newest_events() -> None:
    bus = EventBus(history_limit=5)
    ids = [bus.publish(Ping.PING, n) for n in range(12)]
    history = bus.get_history(limit=None)
    assert [e.id for e in history] == ids[::-1][:5]
    assert bus.history_limit == 5


def test_clear_history(bus: EventBus) -> None:
    for n in range(5):
        bus.publish(Ping.PING, n)
    bus.clear_history()
    assert bus.get_history(limit=None) == []
    bus.publish(Ping.PING, "after")
    assert [e.data for e in bus.get_history()] == ["after"]


def test_history_limit_zero_records_nothing_but_still_delivers() -> None:
    bus = EventBus(history_limit=0)
    received = Recorder()
    bus.subscribe(Ping.PING, received)
    bus.subscribe(Ping.PING, failing)
    bus.publish(Ping.PING, 1)
    assert received.data == [1]
    assert bus.get_history(limit=None) == []
    assert bus.history_limit == 0


# -- blinker signals -----------------------------------------------------------------------


def test_get_signal_returns_the_blinker_signal_of_the_type(bus: EventBus) -> None:
    signal = bus.get_signal(Ping.PING)
    assert isinstance(signal, blinker.Signal)
    assert bus.get_signal(Ping.PING) is signal
    assert bus.get_signal(Ping.PONG) is not signal


def test_muted_signal_delivers_nothing_for_its_type(bus: EventBus) -> None:
    pings, pongs = Recorder(), Recorder()
    bus.subscribe(Ping.PING, pings)
    bus.subscribe(Ping.PONG, pongs)
    with bus.get_signal(Ping.PING).muted():
        bus.publish(Ping.PING, "muted")
        bus.publish(Ping.PONG, "not muted")
    bus.publish(Ping.PING, "unmuted")
    assert pings.data == ["unmuted"]
    assert pongs.data == ["not muted"]


def test_connected_to_subscribes_for_the_block(bus: EventBus) -> None:
    order: list[str] = []
    bus.subscribe(Ping.PING, lambda event: order.append("subscriber"))
    temporary = Recorder()
    with bus.get_signal(Ping.PING).connected_to(temporary):
        bus.publish(Ping.PING, "inside")
        order.append("-")
    bus.publish(Ping.PING, "outside")
    assert temporary.data == ["inside"]  # called as handler(event)
    assert order == ["subscriber", "-", "subscriber"]


def test_receivers_connected_on_the_signal_are_called_like_subscribers(bus: EventBus) -> None:
    received = Recorder()
    bus.get_signal(Ping.PING).connect(received, weak=False)
    bus.publish(Ping.PING, 1)
    assert received.data == [1]


def test_repr_is_one_line(bus: EventBus) -> None:
    bus.publish(Ping.PING)
    assert "\n" not in repr(bus)
    assert "EventBus" in repr(bus)


# -- delivery plans follow every change to the signals -------------------------------------


def test_muting_after_events_were_delivered_still_mutes(bus: EventBus) -> None:
    pings = Recorder()
    bus.subscribe(Ping.PING, pings)
    everything = Recorder()
    bus.subscribe_all(everything)
    bus.publish(Ping.PING, "before")  # the plan for PING exists now
    with bus.get_signal(Ping.PING).muted():
        bus.publish(Ping.PING, "muted type")
    with bus._all.muted():
        bus.publish(Ping.PING, "muted all")
    bus.publish(Ping.PING, "after")
    assert pings.data == ["before", "muted all", "after"]
    assert everything.data == ["before", "muted type", "after"]


def test_subscribers_added_after_a_publish_receive_the_next_one(bus: EventBus) -> None:
    first, every, direct = Recorder(), Recorder(), Recorder()
    bus.subscribe(Ping.PING, first)
    bus.publish(Ping.PING, 1)
    bus.subscribe_all(every)
    bus.publish(Ping.PING, 2)
    bus.get_signal(Ping.PING).connect(direct, weak=False)  # straight through blinker
    bus.publish(Ping.PING, 3)
    bus.get_signal(Ping.PING).disconnect(first)
    bus.publish(Ping.PING, 4)
    assert first.data == [1, 2, 3]
    assert every.data == [2, 3, 4]
    assert direct.data == [3, 4]
    assert [d.handler for d in bus.trace(bus.get_history(limit=1)[0].id).deliveries] == [
        "Recorder.__call__",
        "Recorder.__call__",
    ]


def test_a_type_first_seen_by_subscribe_all_only_is_delivered(bus: EventBus) -> None:
    class Fresh(enum.Enum):
        NEW = "new"

    every = Recorder()
    bus.subscribe_all(every)
    bus.publish(Fresh.NEW, 1)  # a plan for a type that has no signal of its own
    late = Recorder()
    bus.subscribe(Fresh.NEW, late)
    bus.publish(Fresh.NEW, 2)
    assert every.data == [1, 2]
    assert late.data == [2]


def test_a_handler_unsubscribed_by_an_earlier_one_is_skipped_in_that_publish(
    bus: EventBus,
) -> None:
    later, every = Recorder(), Recorder()
    removers: dict[str, Callable[[], None]] = {}

    def remove_the_others(event: Event) -> None:
        if event.data == "remove":
            removers["later"]()
            removers["every"]()

    bus.subscribe(Ping.PING, remove_the_others)
    removers["later"] = bus.subscribe(Ping.PING, later)
    removers["every"] = bus.subscribe_all(every)
    bus.publish(Ping.PING, "keep")  # the plan for PING exists now
    event_id = bus.publish(Ping.PING, "remove")
    bus.publish(Ping.PING, "after")
    assert later.data == every.data == ["keep"]
    assert [d.handler for d in bus.trace(event_id).deliveries] == [remove_the_others.__qualname__]


def test_a_handler_unsubscribed_and_subscribed_again_mid_publish_gets_the_next_event(
    bus: EventBus,
) -> None:
    # Subscribing again is a new subscription: like any made while a publish is under
    # way, it receives the events published after it.
    later = Recorder()
    removers: list[Callable[[], None]] = []

    def resubscribe(event: Event) -> None:
        if event.data == 1:
            removers.pop()()
            removers.append(bus.subscribe(Ping.PING, later))

    bus.subscribe(Ping.PING, resubscribe)
    removers.append(bus.subscribe(Ping.PING, later))
    bus.publish(Ping.PING, 0)
    bus.publish(Ping.PING, 1)
    bus.publish(Ping.PING, 2)
    assert later.data == [0, 2]


def test_a_handler_unsubscribed_after_the_plan_changed_mid_publish_is_still_skipped(
    bus: EventBus,
) -> None:
    # The outer publish iterates a plan the cache has already dropped (a subscription
    # made a new one, which the nested publish uses): the removal reaches both.
    later, extra = Recorder(), Recorder()
    removers: dict[str, Callable[[], None]] = {}

    def churn(event: Event) -> None:
        if event.data == "churn":
            removers["extra"] = bus.subscribe(Ping.PING, extra)
            bus.publish(Ping.PING, "nested")
            removers["later"]()

    bus.subscribe(Ping.PING, churn)
    removers["later"] = bus.subscribe(Ping.PING, later)
    bus.publish(Ping.PING, "keep")
    event_id = bus.publish(Ping.PING, "churn")
    bus.publish(Ping.PING, "after")
    assert later.data == ["keep", "nested"]
    assert extra.data == ["nested", "after"]
    assert [d.handler for d in bus.trace(event_id).deliveries] == [churn.__qualname__]


def test_subscribing_and_unsubscribing_over_and_over_keeps_memory_flat() -> None:
    import tracemalloc

    bus = EventBus(history_limit=10)
    bus.subscribe(Ping.PING, lambda event: None)  # long-lived: in every plan made meanwhile

    def churn(times: int) -> None:
        for _ in range(times):
            remove = bus.subscribe(Ping.PING, lambda event: None)
            bus.publish(Ping.PING)
            remove()

    churn(500)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        churn(20_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Event ids come in blocks of 4,096 (about 0.37 MB); a plan kept per cycle would
    # add over 2 MB here.
    assert grown < 600_000, f"{grown} bytes kept after 20,000 plans"


def test_a_weak_handler_collected_by_an_earlier_handler_is_skipped(bus: EventBus) -> None:
    seen: list[Any] = []

    class Owner:
        def on_ping(self, event: Event) -> None:
            seen.append(event.data)

    owners = [Owner()]
    probe = weakref.ref(owners[0])
    bus.subscribe(Ping.PING, lambda event: owners.clear() if event.data == 2 else None)
    bus.subscribe(Ping.PING, owners[0].on_ping, weak=True)
    bus.publish(Ping.PING, 1)
    event_id = bus.publish(Ping.PING, 2)  # the first handler drops the only reference
    bus.publish(Ping.PING, 3)
    assert probe() is None
    assert seen == [1]
    assert len(bus.trace(event_id).deliveries) == 1


def test_a_failing_weak_handler_is_reported_and_dead_lettered_as_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus(failure_policy="dead_letter")
    calls: list[Any] = []

    class Owner:
        def on_ping(self, event: Event) -> None:
            calls.append(event.data)
            if len(calls) == 1:
                raise ValueError("first try fails")

    owner = Owner()
    bus.subscribe(Ping.PING, owner.on_ping, weak=True)
    with caplog.at_level(logging.ERROR, logger="atlas_eda.bus"):
        bus.publish(Ping.PING, 5)
    [letter] = bus.dead_letters
    assert letter.handler == owner.on_ping
    assert letter.handler_name == f"{Owner.__qualname__}.on_ping"
    name = f"{__name__}.{Owner.__qualname__}.on_ping"
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "atlas_eda.bus",
            logging.ERROR,
            f"handler {name} failed on {letter.event}: ValueError: first try fails",
        )
    ]
    assert bus.retry_dead_letters() == 1
    assert calls == [5, 5]


# -- handler failure policies --------------------------------------------------------------


def _failing(message: str) -> Callable[[Event], None]:
    def fail(event: Event) -> None:
        raise ValueError(f"{message} {event.data}")

    return fail


def test_isolate_is_the_default_policy(bus: EventBus) -> None:
    assert bus.failure_policy == "isolate"
    after = Recorder()
    bus.subscribe(Ping.PING, _failing("one"))
    bus.subscribe(Ping.PING, after)
    bus.publish(Ping.PING, 1)
    assert after.data == [1]
    assert bus.dead_letters == []


def test_raise_policy_raises_every_failure_after_all_handlers_ran() -> None:
    bus = EventBus(failure_policy="raise")
    after, errors = Recorder(), Recorder()
    bus.subscribe(EventType.ERROR, errors)
    bus.subscribe(Ping.PING, _failing("first"))
    bus.subscribe(Ping.PING, after)
    bus.subscribe(Ping.PING, _failing("second"))
    with pytest.raises(HandlerFailures) as caught:
        bus.publish(Ping.PING, 7)
    group = caught.value
    assert isinstance(group, ExceptionGroup)
    assert [str(e) for e in group.exceptions] == ["first 7", "second 7"]
    assert after.data == [7]  # every handler ran before the group was raised
    assert group.event_id == bus.get_history(Ping.PING, limit=1)[0].id
    assert "2 handler(s) failed" in str(group)
    assert len(errors.events) == 2  # still reported as ERROR events
    matched: list[BaseExceptionGroup[ValueError]] = []
    try:
        bus.publish(Ping.PING, 8)
    except* ValueError as group_of_values:  # except* works, and keeps the class
        matched.append(group_of_values)
    [values] = matched
    assert isinstance(values, HandlerFailures)
    assert len(values.exceptions) == 2


def test_raise_policy_returns_normally_when_nothing_fails() -> None:
    bus = EventBus(failure_policy="raise")
    delivered: list[Event] = []
    bus.subscribe(Ping.PING, delivered.append)
    event_id = bus.publish(Ping.PING)
    assert [event.id for event in delivered] == [event_id]
    assert error_events(bus) == []


def test_dead_letters_keep_failed_deliveries_and_retry_them() -> None:
    bus = EventBus(failure_policy="dead_letter")
    broken = {"yes": True}
    seen: list[Any] = []

    def flaky(event: Event) -> None:
        if broken["yes"]:
            raise ConnectionError("down")
        seen.append(event.data)
        bus.publish(Ping.PONG, "child")

    bus.subscribe(Ping.PING, flaky)
    first = bus.publish(Ping.PING, 1)
    bus.publish(Ping.PING, 2)
    letters = bus.dead_letters
    assert [letter.event.data for letter in letters] == [1, 2]
    assert letters[0].event.id == first
    assert letters[0].handler_name.endswith(".flaky")
    assert isinstance(letters[0].error, ConnectionError)
    assert letters[0].attempts == 1

    assert bus.retry_dead_letters() == 0  # still broken: kept, one more attempt each
    assert [letter.attempts for letter in bus.dead_letters] == [2, 2]

    broken["yes"] = False
    assert bus.retry_dead_letters() == 2
    assert bus.dead_letters == []
    assert seen == [1, 2]
    children = bus.get_history(Ping.PONG, limit=None)
    assert {c.causation_id for c in children} == {letters[0].event.id, letters[1].event.id}


def test_dead_letters_are_bounded_and_clearable() -> None:
    bus = EventBus(failure_policy="dead_letter", dead_letter_limit=3)
    bus.subscribe(Ping.PING, _failing("x"))
    for n in range(5):
        bus.publish(Ping.PING, n)
    assert [letter.event.data for letter in bus.dead_letters] == [2, 3, 4]
    bus.clear_dead_letters()
    assert bus.dead_letters == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"failure_policy": "ignore"}, ValueError),
        ({"dead_letter_limit": 0}, ValueError),
        ({"dead_letter_limit": "10"}, TypeError),
    ],
)
def test_bad_failure_settings_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match=r"failure_policy|dead_letter_limit"):
        EventBus(**kwargs)


# -- the delivery routine's two copies (dispatch.py) ----------------------------------------


def _comparable(event: Event) -> Any:
    """An event's data, but only the message of an ERROR report (its ids vary)."""
    return event.data["error_message"] if event.type is EventType.ERROR else event.data


def _run_the_same_session(traces: bool, policy: Any) -> list[Any]:
    """Everything a user can observe of one session on a bus with or without traces:
    each handler's calls, the effects performed, what each publish returned or raised,
    the history (ids as positions in it) and the dead letters."""
    seen: list[Any] = []
    performed: list[Any] = []
    effects = EffectHandler()
    effects.register_handler(EffectType.NOTIFICATION, performed.append)
    bus = EventBus(effect_handler=effects, traces=traces, failure_policy=policy)
    removers: dict[str, Callable[[], None]] = {}

    def publishes(event: Event) -> None:
        seen.append(("publishes", event.type, event.data))
        if event.type is Ping.PING:
            bus.publish(Ping.PONG, f"child of {event.data}")

    def returns_effects(event: Event) -> EffectMonad[None]:
        seen.append(("returns_effects", event.type, event.data))
        return EffectMonad.pure(None).with_effect(Effect(EffectType.NOTIFICATION, event.data))

    def fails_and_removes(event: Event) -> None:
        seen.append(("fails_and_removes", event.type, event.data))
        if event.data == "remove":
            removers["removed"]()
        raise ValueError(f"cannot handle {event.data}")

    def removed(event: Event) -> None:
        seen.append(("removed", event.type, event.data))

    bus.subscribe(Ping.PING, publishes)
    bus.subscribe(Ping.PING, returns_effects)
    bus.subscribe(Ping.PING, fails_and_removes)
    removers["removed"] = bus.subscribe(Ping.PING, removed)
    bus.subscribe_all(lambda event: seen.append(("every", event.type, _comparable(event))))
    bus.add_middleware(lambda event: None if event.data == "drop" else event)
    outcomes: list[Any] = []
    for publish in (
        lambda: bus.publish(Ping.PING, "first", "tests", metadata={"n": 1}),
        lambda: bus.publish(Ping.PING, "drop"),
        lambda: bus.publish_event(Event(type=Ping.PING, data="prebuilt")),
        lambda: bus.publish(Ping.PING, "remove"),
        lambda: bus.publish(Ping.PONG, "plain"),
    ):
        try:
            outcomes.append(type(publish()).__name__)
        except HandlerFailures as group:
            outcomes.append([str(exc) for exc in group.exceptions])
    history = list(reversed(bus.get_history(limit=None)))
    position = {event.id: index for index, event in enumerate(history)}
    kept = [
        (
            e.type,
            _comparable(e),
            e.source,
            dict(e.metadata),
            position.get(e.causation_id),  # type: ignore[arg-type]
            position.get(e.correlation_id),  # type: ignore[arg-type]
        )
        for e in history
    ]
    letters = [(letter.handler_name, str(letter.error)) for letter in bus.dead_letters]
    return [seen, [e.payload for e in performed], outcomes, kept, letters]


@pytest.mark.parametrize("policy", ["isolate", "raise", "dead_letter"])
def test_traced_and_untraced_buses_deliver_alike(policy: Any) -> None:
    # dispatch.py keeps the delivery loop in two copies, one per kind of bus, so that an
    # untraced bus tests nothing per delivery; what a user sees must not depend on it.
    traced = _run_the_same_session(True, policy)
    untraced = _run_the_same_session(False, policy)
    assert traced == untraced
    seen, performed, outcomes, kept, letters = traced
    assert ("removed", Ping.PING, "first") in seen
    assert ("removed", Ping.PING, "remove") not in seen  # gone before its turn
    assert performed == ["first", "prebuilt", "remove"]
    assert [event_type for event_type, *_ in kept].count(EventType.ERROR) == 3
    if policy == "raise":
        assert outcomes[0] == ["cannot handle first"]
    else:
        assert outcomes == ["str"] * 5
    assert len(letters) == (3 if policy == "dead_letter" else 0)


# -- publish's inline copy of the traced delivery (dispatch.py) ------------------------------


def _without_ids(value: Any) -> Any:
    """``value``, or an ERROR report's message with the event ids in it left out."""
    return re.sub(r"id=[0-9a-f-]{36}", "id=…", value) if isinstance(value, str) else value


def _shape(trace: EventTrace) -> Any:
    """A trace with what varies between two runs (ids, times) left out."""
    return (
        trace.event.type,
        _without_ids(_comparable(trace.event)),
        [
            (
                delivery.handler,
                None if delivery.error is None else _without_ids(str(delivery.error)),
                [(outcome.effect.payload, outcome.result) for outcome in delivery.effects],
                [_shape(child) for child in delivery.children],
            )
            for delivery in trace.deliveries
        ],
        [_shape(child) for child in trace.children],
        trace.missing,
    )


def _traced_session(prebuilt: bool, policy: Any) -> list[Any]:
    """One session on a traced bus, every event published with ``publish`` or, when
    ``prebuilt``, built first and published with ``publish_event``: the traces of its
    roots (in publish order), what each publish returned or raised, and its history's
    types and data."""
    effects = EffectHandler()
    effects.register_handler(EffectType.NOTIFICATION, lambda effect: f"sent {effect.payload}")
    bus = EventBus(effect_handler=effects, failure_policy=policy, max_depth=3)

    def send(event_type: Ping, data: Any) -> str:
        if prebuilt:
            return bus.publish_event(Event(type=event_type, data=data, source="tests"))
        return bus.publish(event_type, data, "tests")

    def publishes(event: Event) -> None:
        if event.type is Ping.PING:
            send(Ping.PONG, f"child of {event.data}")

    def notifies(event: Event) -> EffectMonad[None]:
        return EffectMonad.pure(None).with_effect(Effect(EffectType.NOTIFICATION, event.data))

    def fails(event: Event) -> None:
        raise ValueError(f"cannot handle {event.data}")

    def loops(event: Event) -> None:
        if event.data == "loop":
            send(Ping.OTHER, "loop")

    bus.subscribe(Ping.PING, publishes)
    bus.subscribe(Ping.PING, notifies)
    bus.subscribe(Ping.PONG, fails)
    bus.subscribe(Ping.OTHER, loops)
    bus.add_middleware(lambda event: None if event.data == "drop" else event)
    outcomes: list[Any] = []
    roots: list[Event] = []  # a prebuilt event made in a handler has no causation_id
    for event_type, data in ((Ping.PING, "first"), (Ping.PING, "drop"), (Ping.OTHER, "loop")):
        before = len(bus.get_history(limit=None))
        try:
            send(event_type, data)
            outcomes.append("ok")
        except (HandlerFailures, EventCycleError) as exc:
            outcomes.append(type(exc).__name__)
        added = list(reversed(bus.get_history(limit=None)))[before:]
        roots.extend(added[:1])  # the root is recorded before anything it causes
    history = list(reversed(bus.get_history(limit=None)))
    kept = [(e.type, _without_ids(_comparable(e))) for e in history]
    traces = [_shape(bus.trace(root.id)) for root in roots]
    return [traces, outcomes, kept]


@pytest.mark.parametrize("policy", ["isolate", "raise", "dead_letter"])
def test_publish_and_publish_event_deliver_alike(policy: Any) -> None:
    # publish keeps its own copy of the traced delivery routine that publish_event calls
    # (one frame per publish: see the comment above Dispatcher.publish). Every path through
    # it: effects, a child event, a failing handler, middleware dropping an event, the depth
    # guard, and the failure policies.
    built = _traced_session(False, policy)
    prebuilt = _traced_session(True, policy)
    assert built == prebuilt
    traces, outcomes, kept = built
    assert outcomes == (
        ["HandlerFailures", "ok", "EventCycleError"]
        if policy == "raise"
        else ["ok", "ok", "EventCycleError"]
    )
    first, loop = traces
    publishes, notifies = first[2]
    assert publishes[0] == "_traced_session.<locals>.publishes"
    assert notifies == ("_traced_session.<locals>.notifies", None, [("first", "sent first")], [])
    [child] = publishes[3]
    assert child[:3] == (
        Ping.PONG,
        "child of first",
        [("_traced_session.<locals>.fails", "cannot handle child of first", [], [])],
    )
    assert [event_type for event_type, _ in kept].count(Ping.OTHER) == 3  # max_depth=3
    assert loop[2][0][1].startswith("Publishing Ping.OTHER would nest 4 events deep")
