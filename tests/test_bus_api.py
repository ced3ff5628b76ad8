"""The bus's own API holes (issue 16, items 12-16): sender-filtered blinker receivers,
async handlers, unsubscribe functions that remove exactly their own subscription, an
ERROR handler publishing ERROR, SystemExit in a handler, and wrong types given to the
bus, ``record``, ``replay`` and ``DocumentService``."""

from __future__ import annotations

import functools
import gc
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Ping
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_eda import (
    AsyncHandlerError,
    DocumentService,
    EffectHandler,
    Event,
    EventBus,
    EventCycleError,
    EventType,
    HandlerFailures,
    InvalidArgumentError,
    InvalidEventError,
    SubscriptionError,
    TemporalStore,
)
from atlas_eda.testing import Cassette, record, replay


class Recorder:
    """A handler that records the data of the events it receives."""

    def __init__(self) -> None:
        self.data: list[Any] = []

    def __call__(self, event: Event) -> None:
        self.data.append(event.data)

    def handle(self, event: Event) -> None:
        self.data.append(event.data)


# -- item 12: sender-filtered receivers are refused, never silently never called ------------


def test_a_sender_filtered_receiver_is_refused_by_every_blinker_way_in(bus: EventBus) -> None:
    signal = bus.get_signal(Ping.PING)
    received = Recorder()
    with pytest.raises(SubscriptionError, match=r"sender 'shop'.*test event\.source"):
        signal.connect(received, sender="shop")
    with (
        pytest.raises(SubscriptionError, match="sender 'shop'"),
        signal.connected_to(received, sender="shop"),
    ):
        pass  # pragma: no cover - refused on entry
    with pytest.raises(SubscriptionError, match="sender 'shop'"):
        signal.connect_via("shop")(received)
    # Nothing was connected, and blinker says so for any sender.
    assert not signal.has_receivers_for("shop")
    bus.publish(Ping.PING, 1, source="shop")
    assert received.data == []


def test_a_receiver_connected_for_any_sender_gets_every_source_and_blinker_says_so(
    bus: EventBus,
) -> None:
    signal = bus.get_signal(Ping.PING)
    received = Recorder()
    with signal.connected_to(received):
        assert signal.has_receivers_for("shop")
        bus.publish(Ping.PING, 1, source="shop")
        bus.publish(Ping.PING, 2, source="elsewhere")
    assert received.data == [1, 2]
    assert not signal.has_receivers_for("shop")


# -- item 13: the bus is synchronous: async handlers are refused ------------------------


async def async_handler(event: Event) -> None:
    """Never run by a synchronous bus."""


class AsyncCallable:
    async def __call__(self, event: Event) -> None:
        """Never run by a synchronous bus."""

    async def handle(self, event: Event) -> None:
        """Never run by a synchronous bus."""


ASYNC_HANDLERS: dict[str, Callable[[], Any]] = {
    "async def": lambda: async_handler,
    "partial of async def": lambda: functools.partial(async_handler),
    "object with async __call__": AsyncCallable,
    "async method": lambda: AsyncCallable().handle,
    "partial of an async callable": lambda: functools.partial(AsyncCallable()),
}


@pytest.mark.parametrize("make", ASYNC_HANDLERS.values(), ids=list(ASYNC_HANDLERS))
def test_a_coroutine_function_is_refused_at_subscribe(
    bus: EventBus, make: Callable[[], Any]
) -> None:
    handler = make()
    signal = bus.get_signal(Ping.PING)
    for subscribe in (
        lambda: bus.subscribe(Ping.PING, handler),
        lambda: bus.subscribe(Ping.PING, handler, weak=True),
        lambda: bus.subscribe_all(handler),
        lambda: signal.connect(handler),
    ):
        with pytest.raises(AsyncHandlerError, match="the bus is synchronous"):
            subscribe()
    assert not signal.receivers
    assert not bus.get_signal(Ping.PONG).receivers


def test_a_plain_callable_is_not_mistaken_for_a_coroutine_function(bus: EventBus) -> None:
    received = Recorder()
    bus.subscribe(Ping.PING, received)
    bus.subscribe(Ping.PING, received.handle)
    bus.subscribe(Ping.PING, functools.partial(Recorder.handle, received))
    bus.publish(Ping.PING, 1)
    assert received.data == [1, 1, 1]


def test_a_handler_returning_a_coroutine_fails_loudly_and_the_coroutine_is_closed() -> None:
    bus = EventBus(failure_policy="raise")
    later = Recorder()

    def returns_a_coroutine(event: Event) -> Any:
        return async_handler(event)

    bus.subscribe(Ping.PING, returns_a_coroutine)
    bus.subscribe(Ping.PING, later)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... was never awaited"
        with pytest.raises(HandlerFailures) as raised:
            bus.publish(Ping.PING, 1)
        gc.collect()
    (error,) = raised.value.exceptions
    assert isinstance(error, AsyncHandlerError)
    assert "returned coroutine, an awaitable; the bus is synchronous" in str(error)
    assert later.data == [1]  # isolated like any failure
    (report,) = bus.get_history(EventType.ERROR)
    assert report.data["error_type"] == "AsyncHandlerError"
    root = bus.get_history(Ping.PING)[0]
    assert bus.trace(root.id).deliveries[0].outcome.startswith("error: AsyncHandlerError")


def test_a_dead_letter_whose_handler_returns_a_coroutine_still_fails() -> None:
    bus = EventBus(failure_policy="dead_letter")

    def returns_a_coroutine(event: Event) -> Any:
        return async_handler(event)

    bus.subscribe(Ping.PING, returns_a_coroutine)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        bus.publish(Ping.PING, 1)
        assert bus.retry_dead_letters() == 0
        gc.collect()
    (letter,) = bus.dead_letters
    assert isinstance(letter.error, AsyncHandlerError)


# -- item 14: each unsubscribe function removes exactly its own subscription -------------


def test_subscribing_a_subscribed_handler_again_is_refused(bus: EventBus) -> None:
    received = Recorder()
    first = bus.subscribe(Ping.PING, received)
    with pytest.raises(SubscriptionError, match=r"already subscribed to events of Ping\.PING"):
        bus.subscribe(Ping.PING, received)
    first()
    second = bus.subscribe(Ping.PING, received)
    first()  # spent: must not remove the second subscription
    bus.publish(Ping.PING, 1)
    second()
    bus.publish(Ping.PING, 2)
    assert received.data == [1]


def test_a_strong_subscription_is_not_turned_weak_by_subscribing_again(bus: EventBus) -> None:
    received = Recorder()
    kept = weakref.ref(received)
    unsubscribe = bus.subscribe(Ping.PING, received.handle)
    with pytest.raises(SubscriptionError, match="weak="):
        bus.subscribe(Ping.PING, received.handle, weak=True)
    bus.subscribe_all(received.handle)  # another signal: a subscription of its own
    with pytest.raises(SubscriptionError, match="already subscribed to every event"):
        bus.subscribe_all(received.handle)
    del received
    gc.collect()
    bus.publish(Ping.PING, 1)
    recorder = kept()
    assert recorder is not None  # still held strongly: the weak subscription was refused
    assert recorder.data == [1, 1]  # its own subscription, and the subscribe_all one
    unsubscribe()
    bus.publish(Ping.PING, 2)
    assert recorder.data == [1, 1, 2]  # only the subscribe_all one is left


def test_a_weak_subscription_is_not_made_strong_by_subscribing_again(bus: EventBus) -> None:
    received = Recorder()
    bus.subscribe(Ping.PING, received.handle, weak=True)
    with pytest.raises(SubscriptionError):
        bus.subscribe(Ping.PING, received.handle)
    kept = weakref.ref(received)
    del received
    gc.collect()
    assert kept() is None  # nothing holds it strongly
    bus.publish(Ping.PING, 1)  # and its collected subscription is gone


def test_an_unsubscribe_after_another_disconnect_does_not_remove_a_later_subscription(
    bus: EventBus,
) -> None:
    received = Recorder()
    first = bus.subscribe(Ping.PING, received)
    bus.get_signal(Ping.PING).disconnect(received)  # blinker's own way out
    bus.subscribe(Ping.PING, received)
    first()  # its subscription is gone already: nothing to remove
    bus.publish(Ping.PING, 1)
    assert received.data == [1]


def test_connected_to_refuses_a_subscribed_handler_and_leaves_its_subscription(
    bus: EventBus,
) -> None:
    received = Recorder()
    bus.subscribe(Ping.PING, received)
    with pytest.raises(SubscriptionError), bus.get_signal(Ping.PING).connected_to(received):
        pass  # pragma: no cover - refused on entry
    bus.publish(Ping.PING, 1)
    assert received.data == [1]


def test_one_handler_may_subscribe_to_several_types_and_to_every_event(bus: EventBus) -> None:
    received = Recorder()
    bus.subscribe(Ping.PING, received)
    bus.subscribe(Ping.PONG, received)
    bus.subscribe_all(received)
    bus.publish(Ping.PING, "ping")
    bus.publish(Ping.PONG, "pong")
    assert received.data == ["ping", "ping", "pong", "pong"]


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("subscribe"), st.booleans()),
        st.tuples(st.just("unsubscribe"), st.integers(min_value=0, max_value=5)),
    ),
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(OPERATIONS)
def test_every_sequence_of_subscribes_and_unsubscribes_follows_the_model(
    operations: list[tuple[str, Any]],
) -> None:
    """Model: a handler is subscribed or not; subscribing it while subscribed is refused;
    only the unsubscribe function of the live subscription removes it."""
    bus = EventBus()
    received = Recorder()
    unsubscribes: list[Callable[[], None]] = []
    live: int | None = None
    for number, (operation, argument) in enumerate(operations):
        if operation == "subscribe":
            if live is None:
                unsubscribes.append(bus.subscribe(Ping.PING, received.handle, weak=argument))
                live = len(unsubscribes) - 1
            else:
                with pytest.raises(SubscriptionError):
                    bus.subscribe(Ping.PING, received.handle, weak=argument)
        elif argument < len(unsubscribes):
            unsubscribes[argument]()
            if argument == live:
                live = None
        received.data.clear()
        bus.publish(Ping.PING, number)
        assert received.data == ([] if live is None else [number])


# -- item 15: ERROR handlers publishing ERROR; SystemExit in a handler --------------------


def _fail(event: Event) -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize("policy", ["isolate", "raise", "dead_letter"])
def test_an_error_handler_publishing_error_raises_the_cycle_to_the_publisher(
    policy: Any,
) -> None:
    bus = EventBus(failure_policy=policy)
    bus.subscribe(Ping.PING, _fail)

    def republish(event: Event) -> None:
        bus.publish(EventType.ERROR, {"again": event.data})

    bus.subscribe(EventType.ERROR, republish)
    with pytest.raises(EventCycleError) as raised:
        bus.publish(Ping.PING, 1)
    assert raised.value.chain[:2] == ("Ping.PING", "EventType.ERROR")
    assert set(raised.value.chain[1:]) == {"EventType.ERROR"}
    if policy == "dead_letter":  # the failure that started it is still kept
        (letter,) = bus.dead_letters
        assert isinstance(letter.error, RuntimeError)
    # The nesting stack was unwound: the next event is a root again.
    bus.subscribe(Ping.PONG, lambda event: None)
    bus.publish(Ping.PONG)
    assert bus.get_history(Ping.PONG)[0].causation_id is None


def test_a_failing_error_handler_is_logged_and_not_published_again(bus: EventBus) -> None:
    bus.subscribe(Ping.PING, _fail)
    bus.subscribe(EventType.ERROR, _fail)
    bus.publish(Ping.PING, 1)
    assert len(bus.get_history(EventType.ERROR)) == 1


@pytest.mark.parametrize("interruption", [SystemExit(3), KeyboardInterrupt()])
def test_system_exit_in_a_handler_stops_the_publish_and_the_trace_says_so(
    bus: EventBus, interruption: BaseException
) -> None:
    before, after = Recorder(), Recorder()

    def interrupt(event: Event) -> None:
        raise interruption

    bus.subscribe(Ping.PING, before)
    bus.subscribe(Ping.PING, interrupt)
    bus.subscribe(Ping.PING, after)
    with pytest.raises(type(interruption)):
        bus.publish(Ping.PING, 1)
    assert before.data == [1]
    assert after.data == []  # the handlers after it are not called
    assert bus.get_history(EventType.ERROR) == []  # not a handler failure: not reported
    (event,) = bus.get_history(Ping.PING)
    deliveries = bus.trace(event.id).deliveries
    assert [d.outcome for d in deliveries] == [
        "ok",
        f"interrupted: {type(interruption).__name__}: {interruption}",
    ]
    bus.publish(Ping.PONG)  # the bus goes on, with no parent left behind
    assert bus.get_history(Ping.PONG)[0].causation_id is None


def test_an_interruption_in_a_child_event_shows_in_every_trace_it_crossed(bus: EventBus) -> None:
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG))

    def interrupt(event: Event) -> None:
        raise KeyboardInterrupt

    bus.subscribe(Ping.PONG, interrupt)
    with pytest.raises(KeyboardInterrupt):
        bus.publish(Ping.PING)
    root = bus.get_history(Ping.PING)[0]
    trace = bus.trace(root.id)
    (delivery,) = trace.deliveries
    assert delivery.outcome == "interrupted: KeyboardInterrupt: "
    (child,) = delivery.children
    assert [d.outcome for d in child.deliveries] == ["interrupted: KeyboardInterrupt: "]


# -- item 16: wrong types get the library's errors -----------------------------------------


def test_get_history_refuses_a_limit_that_is_not_a_count(bus: EventBus) -> None:
    bus.publish(Ping.PING)
    for limit in ("x", 2.0, True):
        with pytest.raises(InvalidArgumentError, match="limit must be an int"):
            bus.get_history(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be an int of 0 or more, got -1"):
        bus.get_history(limit=-1)
    assert len(bus.get_history(limit=None)) == 1
    assert bus.get_history(limit=0) == []


def test_get_history_refuses_an_event_type_that_is_not_an_enum_member(bus: EventBus) -> None:
    bus.publish(Ping.PING)
    with pytest.raises(InvalidEventError, match="got 'PING'"):
        bus.get_history(event_type="PING")  # type: ignore[arg-type]
    assert len(bus.get_history(event_type=Ping.PING)) == 1


def test_record_refuses_a_str_for_a_bus_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    with pytest.raises(InvalidArgumentError, match="the bus to record must be an atlas_eda"):
        record("bus", path)  # type: ignore[arg-type]
    assert not path.exists()


def test_replay_refuses_a_str_for_a_bus(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    bus = EventBus()
    with record(bus, path):
        bus.publish(EventType.QUERY_EXECUTED, 1)
    with pytest.raises(InvalidArgumentError, match="the bus to replay into must be"):
        replay(Cassette.load(path), "bus")  # type: ignore[arg-type]


def test_document_service_refuses_a_str_for_a_bus() -> None:
    with (
        TemporalStore(url="memory://") as store,
        pytest.raises(InvalidArgumentError, match="DocumentService's event_bus must be"),
    ):
        DocumentService("bus", store, EffectHandler())  # type: ignore[arg-type]
