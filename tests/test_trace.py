"""Per-event traces (``EventBus.trace``): deliveries, effects, child events, nested buses,
threads, the history bound, weak handlers, and the text and HTML renderings."""

from __future__ import annotations

import functools
import gc
import logging
import re
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Ping

import atlas_eda.dispatch as dispatch_module
from atlas_eda import (
    AtlasEdaError,
    Delivery,
    DocumentService,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectOutcome,
    EffectType,
    Event,
    EventBus,
    EventTrace,
    EventType,
    TemporalStore,
    UnknownEventError,
)
from atlas_eda.trace import build_trace, delivery_under_way

WAIT = 10.0  # seconds: only ever reached when something is broken


class Outbox:
    """A performer that records what it performed and returns a result per effect."""

    def __init__(self) -> None:
        self.performed: list[Any] = []

    def __call__(self, effect: Effect) -> str:
        self.performed.append(effect.payload)
        return f"done {effect.payload}"


class DiskFull(OSError):
    pass


def disk_full(effect: Effect) -> None:
    raise DiskFull(f"no space for {effect.payload}")


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def effects(outbox: Outbox) -> EffectHandler:
    handler = EffectHandler()
    handler.register_handler(EffectType.DATABASE_WRITE, outbox)
    handler.register_handler(EffectType.NOTIFICATION, outbox)
    handler.register_handler(EffectType.FILE_OPERATION, disk_full)
    return handler


@pytest.fixture
def effect_bus(effects: EffectHandler) -> EventBus:
    return EventBus(effect_handler=effects)


def write(payload: Any) -> Effect:
    return Effect(EffectType.DATABASE_WRITE, payload, f"write {payload}")


def payloads(outcomes: tuple[EffectOutcome, ...]) -> list[Any]:
    return [outcome.effect.payload for outcome in outcomes]


def names(trace: EventTrace) -> list[str]:
    return [delivery.handler for delivery in trace.deliveries]


class ScriptedClock:
    """Stands in for ``time`` inside atlas_eda.dispatch: each call returns the next of
    ``readings``, so a trace's durations are known exactly. A call past the script fails
    the test (``pytest.fail`` raises a BaseException: the bus cannot isolate it as a
    handler failure)."""

    def __init__(self, *readings: float) -> None:
        self.readings = readings
        self.calls = 0

    def __call__(self) -> float:
        if self.calls == len(self.readings):
            pytest.fail(f"the bus read the clock more than the {len(self.readings)} times scripted")
        reading = self.readings[self.calls]
        self.calls += 1
        return reading


def scripted_clock(monkeypatch: pytest.MonkeyPatch, *readings: float) -> ScriptedClock:
    clock = ScriptedClock(*readings)
    monkeypatch.setattr(dispatch_module, "time", clock)
    return clock


# -- deliveries ----------------------------------------------------------------------------


def first(event: Event) -> None:
    pass


def second(event: Event) -> None:
    pass


def broken(event: Event) -> None:
    raise ValueError(f"cannot handle {event.data}")


class Listener:
    def on_ping(self, event: Event) -> None:
        pass


def test_trace_lists_the_event_and_its_deliveries_in_subscription_order(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = Listener()
    bus.subscribe(Ping.PING, first)
    bus.subscribe(Ping.PING, listener.on_ping)
    bus.subscribe(Ping.PING, second)
    bus.subscribe(Ping.PONG, broken)  # another type: not delivered
    # One reading when the deliveries start (the event's timestamp), one as each ends;
    # binary fractions, so that the differences are exact.
    clock = scripted_clock(monkeypatch, 100.0, 100.25, 100.75, 101.5)
    event_id = bus.publish(Ping.PING, {"n": 1}, source="tests")
    assert clock.calls == 4

    trace = bus.trace(event_id)

    assert isinstance(trace, EventTrace)
    assert trace.event == bus.get_history(limit=1)[0]
    assert (trace.event.id, trace.event.data, trace.event.source) == (event_id, {"n": 1}, "tests")
    assert names(trace) == ["first", "Listener.on_ping", "second"]
    assert trace.event.timestamp == 100.0
    # A delivery lasts from the previous reading (the start, for the first) to its own.
    assert [delivery.duration for delivery in trace.deliveries] == [0.25, 0.5, 0.75]
    for delivery in trace.deliveries:
        assert isinstance(delivery, Delivery)
        assert delivery.outcome == "ok"
        assert delivery.error is None
        assert delivery.effects == ()
        assert delivery.children == ()
    assert trace.effects == ()
    assert trace.children == ()


def test_a_failing_delivery_keeps_its_exception_and_the_error_report_is_an_event_level_child(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    raised: list[BaseException] = []

    def keeps_its_error(event: Event) -> None:
        try:
            broken(event)
        except ValueError as exc:
            raised.append(exc)
            raise

    bus.subscribe(Ping.PING, first)
    bus.subscribe(Ping.PING, keeps_its_error)
    bus.subscribe(Ping.PING, second)
    # The event's start, the end of each of its three deliveries (the failed one's too),
    # then the start of the ERROR report, which has no subscribers.
    clock = scripted_clock(monkeypatch, 100.0, 100.25, 101.0, 101.125, 102.0)
    event_id = bus.publish(Ping.PING, "order-7")
    assert clock.calls == 5

    trace = bus.trace(event_id)

    before, failed, after = trace.deliveries
    assert (before.duration, failed.duration, after.duration) == (0.25, 0.75, 0.125)
    assert (before.outcome, after.outcome) == ("ok", "ok")
    assert failed.handler.endswith("keeps_its_error")
    assert failed.outcome == "error: ValueError: cannot handle order-7"
    assert failed.error is raised[0]  # the very exception object
    # The bus's own report is the event's child, not the failing delivery's.
    assert failed.children == ()
    (report,) = trace.children
    assert report.event.type is EventType.ERROR
    assert report.event.timestamp == 102.0
    assert report.deliveries == ()
    assert report.event.causation_id == event_id
    assert report.event.data["handler"].endswith("keeps_its_error")
    assert report.event == bus.get_history(EventType.ERROR, limit=1)[0]
    assert trace.all_children() == (report,)


def test_a_wall_clock_stepping_back_gives_a_zero_duration_not_a_negative_one(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus.subscribe(Ping.PING, first)
    bus.subscribe(Ping.PING, second)
    # time.time() may step back (NTP, a changed system clock) during a delivery.
    clock = scripted_clock(monkeypatch, 100.0, 99.5, 99.75)
    event_id = bus.publish(Ping.PING)
    assert clock.calls == 3
    assert [d.duration for d in bus.trace(event_id).deliveries] == [0.0, 0.25]


def test_subscribe_all_handlers_appear_after_the_types_own(bus: EventBus) -> None:
    def everything(event: Event) -> None:
        pass

    bus.subscribe_all(everything)
    bus.subscribe(Ping.PING, first)
    bus.subscribe(Ping.PING, second)
    assert names(bus.trace(bus.publish(Ping.PING))) == ["first", "second", everything.__qualname__]
    assert names(bus.trace(bus.publish(Ping.OTHER))) == [everything.__qualname__]


def test_callable_objects_and_partials_are_named_by_their_type(bus: EventBus) -> None:
    class Counter:
        def __call__(self, event: Event) -> None:
            pass

    def takes_two(event: Event, extra: int) -> None:
        pass

    bus.subscribe(Ping.PING, Counter())
    bus.subscribe(Ping.PING, functools.partial(takes_two, extra=1))
    trace = bus.trace(bus.publish(Ping.PING))
    assert names(trace) == [
        f"{Counter.__qualname__}.__call__",
        f"partial({takes_two.__qualname__})",
    ]


def test_an_event_without_subscribers_has_an_empty_trace(bus: EventBus) -> None:
    trace = bus.trace(bus.publish(Ping.PING))
    assert trace.deliveries == ()
    assert trace.effects == ()
    assert trace.children == ()
    assert trace.all_effects() == ()
    assert trace.all_children() == ()
    assert list(trace.walk()) == [trace]


# -- effects -------------------------------------------------------------------------------


def test_effects_of_a_returned_monad_are_listed_under_their_delivery(
    effect_bus: EventBus, outbox: Outbox
) -> None:
    def plan(event: Event) -> EffectMonad[str]:
        return (
            EffectMonad.pure("saved")
            .with_effect(write(event.data))
            .with_effect(Effect(EffectType.NOTIFICATION, "mail"))
        )

    effect_bus.subscribe(Ping.PING, first)
    effect_bus.subscribe(Ping.PING, plan)
    effect_bus.subscribe(Ping.PING, second)
    trace = effect_bus.trace(effect_bus.publish(Ping.PING, "row"))

    before, planned, after = trace.deliveries
    assert before.effects == after.effects == ()
    assert [o.effect for o in planned.effects] == [
        write("row"),
        Effect(EffectType.NOTIFICATION, "mail"),
    ]
    assert [o.result for o in planned.effects] == ["done row", "done mail"]
    assert all(o.ok and o.error is None for o in planned.effects)
    assert outbox.performed == ["row", "mail"]
    assert trace.effects == ()
    assert trace.all_effects() == planned.effects


def test_effects_a_handler_performs_itself_are_listed_under_its_delivery(
    effect_bus: EventBus, effects: EffectHandler
) -> None:
    def performs(event: Event) -> None:
        effects.handle(write("by handle"))
        EffectMonad.pure(None).with_effect(write("by run")).run(effects)
        # A second EffectHandler, not the bus's own, is observed as well.
        other = EffectHandler()
        other.register_handler(EffectType.LOGGING, lambda effect: "logged")
        other.handle(Effect(EffectType.LOGGING, "by another handler"))

    effect_bus.subscribe(Ping.PING, first)
    effect_bus.subscribe(Ping.PING, performs)
    trace = effect_bus.trace(effect_bus.publish(Ping.PING))

    assert trace.deliveries[0].effects == ()
    performed = trace.deliveries[1].effects
    assert payloads(performed) == ["by handle", "by run", "by another handler"]
    assert [o.result for o in performed] == ["done by handle", "done by run", "logged"]


def test_a_failing_performer_is_listed_with_its_error(effect_bus: EventBus) -> None:
    def writes_a_file(event: Event) -> EffectMonad[None]:
        return (
            EffectMonad.pure(None)
            .with_effect(write("first"))
            .with_effect(Effect(EffectType.FILE_OPERATION, "a.txt"))
            .with_effect(write("never"))
        )

    effect_bus.subscribe(Ping.PING, writes_a_file)
    trace = effect_bus.trace(effect_bus.publish(Ping.PING))

    (delivery,) = trace.deliveries
    done, failed = delivery.effects  # the effect after the failing one was not performed
    assert done.ok
    assert done.result == "done first"
    assert not failed.ok
    assert failed.result is None
    assert isinstance(failed.error, DiskFull)
    assert str(failed.error) == "no space for a.txt"
    assert delivery.error is failed.error  # the performer's error failed the handler
    assert delivery.outcome == "error: DiskFull: no space for a.txt"
    assert [child.event.type for child in trace.children] == [EventType.ERROR]


def test_a_performer_error_the_handler_catches_is_listed_and_the_delivery_is_ok(
    effect_bus: EventBus, effects: EffectHandler
) -> None:
    def tolerant(event: Event) -> None:
        try:
            effects.handle(Effect(EffectType.FILE_OPERATION, "b.txt"))
        except DiskFull:
            effects.handle(write("fallback"))

    effect_bus.subscribe(Ping.PING, tolerant)
    (delivery,) = effect_bus.trace(effect_bus.publish(Ping.PING)).deliveries
    assert delivery.outcome == "ok"
    failed, fallback = delivery.effects
    assert isinstance(failed.error, DiskFull)
    assert fallback.ok
    assert fallback.result == "done fallback"


def test_effects_performed_outside_any_handler_are_not_attributed(
    effect_bus: EventBus, effects: EffectHandler, outbox: Outbox
) -> None:
    effect_bus.subscribe(Ping.PING, first)
    effects.handle(write("before"))
    event_id = effect_bus.publish(Ping.PING)
    effects.handle(write("after"))
    EffectMonad.pure(None).with_effect(write("after, by run")).run(effects)

    assert outbox.performed == ["before", "after", "after, by run"]
    trace = effect_bus.trace(event_id)
    assert trace.all_effects() == ()


def test_a_services_effects_after_the_store_published_are_not_the_events(
    bus: EventBus, store: TemporalStore
) -> None:
    outbox = Outbox()
    handler = EffectHandler(temporal_store=store, event_bus=bus)
    for effect_type in EffectType:
        handler.register_handler(effect_type, outbox)
    service = DocumentService(bus, store, handler)
    try:
        document_id = service.create_document("Title", "Body", "ada")
    finally:
        service.close()

    assert len(outbox.performed) == 2  # the service performed its effects…
    (created,) = bus.get_history(EventType.DOCUMENT_CREATED)
    trace = bus.trace(created.id)
    assert document_id in str(created.data)
    assert len(trace.deliveries) == 1  # …the service's own handler ran…
    assert trace.all_effects() == ()  # …and none of the effects is the event's


def test_all_effects_collects_the_descendants_effects(effect_bus: EventBus) -> None:
    def publishes(event_type: Ping, payload: int) -> Callable[[Event], EffectMonad[int]]:
        def handler(event: Event) -> EffectMonad[int]:
            effect_bus.publish(event_type)
            return EffectMonad.pure(0).with_effect(write(payload))

        return handler

    effect_bus.subscribe(Ping.PING, publishes(Ping.PONG, 1))
    effect_bus.subscribe(Ping.PONG, publishes(Ping.OTHER, 2))
    effect_bus.subscribe(Ping.OTHER, lambda event: EffectMonad.pure(0).with_effect(write(3)))
    trace = effect_bus.trace(effect_bus.publish(Ping.PING))

    assert payloads(trace.deliveries[0].effects) == [1]
    assert payloads(trace.all_effects()) == [1, 2, 3]
    (child,) = trace.all_children()
    assert payloads(child.all_effects()) == [2, 3]


# -- child events --------------------------------------------------------------------------


def test_events_published_by_a_handler_are_its_delivery_s_children_recursively(
    bus: EventBus,
) -> None:
    def ping(event: Event) -> None:
        bus.publish(Ping.PONG, "pong-1")
        bus.publish(Ping.PONG, "pong-2")

    def pong(event: Event) -> None:
        bus.publish(Ping.OTHER, f"other of {event.data}")

    bus.subscribe(Ping.PING, first)
    bus.subscribe(Ping.PING, ping)
    bus.subscribe(Ping.PONG, pong)
    root_id = bus.publish(Ping.PING, "root")
    trace = bus.trace(root_id)

    quiet, publishing = trace.deliveries
    assert quiet.children == ()
    assert trace.children == ()  # all of them belong to the delivery that published them
    assert [c.event.data for c in publishing.children] == ["pong-1", "pong-2"]
    for child in publishing.children:
        assert child.event.causation_id == root_id
        assert child.event.correlation_id == root_id
        (delivery,) = child.deliveries
        assert delivery.handler == pong.__qualname__
        (grandchild,) = delivery.children
        assert grandchild.event.data == f"other of {child.event.data}"
        assert grandchild.event.causation_id == child.event.id
        assert grandchild.event.correlation_id == root_id
        assert grandchild.deliveries == ()
        assert grandchild.children == ()
        # A child's trace is the same as the trace asked for directly.
        assert bus.trace(child.event.id) == child

    assert trace.all_children() == publishing.children
    walked = [t.event.data for t in trace.walk()]
    assert walked == ["root", "pong-1", "other of pong-1", "pong-2", "other of pong-2"]


def test_all_children_lists_delivery_children_then_event_level_children(bus: EventBus) -> None:
    def publishes_then_fails(event: Event) -> None:
        bus.publish(Ping.PONG, "child")
        raise RuntimeError("after publishing")

    bus.subscribe(Ping.PING, publishes_then_fails)
    trace = bus.trace(bus.publish(Ping.PING))
    (delivery,) = trace.deliveries
    assert [c.event.type for c in delivery.children] == [Ping.PONG]
    assert [c.event.type for c in trace.children] == [EventType.ERROR]
    assert [c.event.type for c in trace.all_children()] == [Ping.PONG, EventType.ERROR]
    assert [t.event.type for t in trace.walk()] == [Ping.PING, Ping.PONG, EventType.ERROR]


def test_an_event_published_twice_is_traced_by_its_newest_publication(bus: EventBus) -> None:
    bus.subscribe(Ping.PING, first)
    event_id = bus.publish(Ping.PING)
    bus.subscribe(Ping.PING, second)
    (event,) = bus.get_history()
    bus.publish_event(event)  # a replay into the same bus: same id
    assert names(bus.trace(event_id)) == ["first", "second"]


# -- nested buses and threads --------------------------------------------------------------


def test_a_publish_on_another_bus_is_traced_there_and_attribution_resumes(
    effects: EffectHandler,
) -> None:
    a = EventBus(effect_handler=effects)
    b = EventBus(effect_handler=effects)

    def on_a(event: Event) -> None:
        effects.handle(write("a before"))
        b.publish(Ping.PING, "on b")
        effects.handle(write("a after"))

    def on_b(event: Event) -> EffectMonad[None]:
        effects.handle(write("b by handle"))
        return EffectMonad.pure(None).with_effect(write("b by monad"))

    a.subscribe(Ping.PING, on_a)
    b.subscribe(Ping.PING, on_b)
    a_trace = a.trace(a.publish(Ping.PING, "on a"))

    (a_delivery,) = a_trace.deliveries
    assert payloads(a_delivery.effects) == ["a before", "a after"]
    assert a_trace.all_children() == ()  # b's event is b's, not a child on a
    (b_event,) = b.get_history()
    b_trace = b.trace(b_event.id)
    assert b_event.causation_id is None
    assert payloads(b_trace.all_effects()) == ["b by handle", "b by monad"]
    with pytest.raises(UnknownEventError):
        a.trace(b_event.id)


def test_a_publish_back_onto_the_first_bus_is_traced_as_its_child(
    effects: EffectHandler,
) -> None:
    a = EventBus(effect_handler=effects)
    b = EventBus(effect_handler=effects)

    def on_a_ping(event: Event) -> None:
        b.publish(Ping.PING)
        effects.handle(write("a ping"))

    def on_b_ping(event: Event) -> None:
        effects.handle(write("b before"))
        a.publish(Ping.PONG)
        effects.handle(write("b after"))

    def on_a_pong(event: Event) -> None:
        effects.handle(write("a pong"))

    a.subscribe(Ping.PING, on_a_ping)
    b.subscribe(Ping.PING, on_b_ping)
    a.subscribe(Ping.PONG, on_a_pong)
    root = a.trace(a.publish(Ping.PING))

    (delivery,) = root.deliveries
    assert payloads(delivery.effects) == ["a ping"]
    (pong,) = delivery.children  # published on a while a's handler ran (through b)
    assert pong.event.type is Ping.PONG
    assert payloads(pong.all_effects()) == ["a pong"]
    (b_event,) = b.get_history()
    assert payloads(b.trace(b_event.id).all_effects()) == ["b before", "b after"]


def test_an_untraced_bus_inside_a_handler_leaves_the_effects_to_the_running_delivery(
    effects: EffectHandler,
) -> None:
    traced = EventBus(effect_handler=effects)
    untraced = EventBus(effect_handler=effects, traces=False)
    untraced.subscribe(Ping.PING, lambda event: effects.handle(write("inner")))
    traced.subscribe(Ping.PING, lambda event: untraced.publish(Ping.PING))
    trace = traced.trace(traced.publish(Ping.PING))
    # Performed while traced's handler ran: attributed to it (the untraced bus records none).
    assert payloads(trace.deliveries[0].effects) == ["inner"]


def test_an_effect_observer_a_tool_sets_is_told_and_the_trace_still_lists_the_effect(
    effect_bus: EventBus, effects: EffectHandler
) -> None:
    from atlas_eda.effects import effect_observer

    told: list[tuple[Any, Any, BaseException | None]] = []
    effect_bus.subscribe(Ping.PING, lambda event: effects.handle(write("in handler")))
    token = effect_observer.set(lambda effect, result, error: told.append((effect, result, error)))
    try:
        event_id = effect_bus.publish(Ping.PING)
        effects.handle(write("outside"))
    finally:
        effect_observer.reset(token)
    assert [(e.payload, r) for e, r, _ in told] == [
        ("in handler", "done in handler"),
        ("outside", "done outside"),
    ]
    assert payloads(effect_bus.trace(event_id).all_effects()) == ["in handler"]


def test_another_bus_s_nested_deliveries_do_not_count_towards_max_depth(
    effects: EffectHandler,
) -> None:
    outer = EventBus(effect_handler=effects, max_depth=2)
    inner = EventBus(effect_handler=effects, max_depth=10)

    def deeper(event: Event) -> None:
        if event.data < 5:
            inner.publish(Ping.PING, event.data + 1)
        else:
            outer.publish(Ping.PONG, "from five deep")

    outer.subscribe(Ping.PING, lambda event: inner.publish(Ping.PING, 0))
    inner.subscribe(Ping.PING, deeper)
    reached: list[Event] = []
    outer.subscribe(Ping.PONG, reached.append)
    root = outer.publish(Ping.PING)

    # Seven deliveries deep on this thread, but only the second of outer's own.
    (pong,) = reached
    assert pong.causation_id == root
    assert [e.data for e in reversed(inner.get_history())] == [0, 1, 2, 3, 4, 5]
    assert outer.trace(root).deliveries[0].children[0].event.id == pong.id


def test_buses_used_one_after_another_each_trace_their_own_effects(
    effects: EffectHandler, outbox: Outbox
) -> None:
    a = EventBus(effect_handler=effects)
    b = EventBus(effect_handler=effects)
    for each in (a, b):
        each.subscribe(Ping.PING, lambda event: effects.handle(write(event.data)))
    published = [
        (a, a.publish(Ping.PING, "a1")),
        (b, b.publish(Ping.PING, "b1")),
        (a, a.publish(Ping.PING, "a2")),
        (b, b.publish(Ping.PING, "b2")),
    ]
    effects.handle(write("outside"))

    assert outbox.performed == ["a1", "b1", "a2", "b2", "outside"]
    for each, event_id in published:
        trace = each.trace(event_id)
        assert payloads(trace.all_effects()) == [trace.event.data]


def test_a_traced_bus_that_is_gone_is_garbage_collected(effects: EffectHandler) -> None:
    bus = EventBus(effect_handler=effects)
    bus.subscribe(Ping.PING, lambda event: effects.handle(write("w")))
    bus.publish(Ping.PING)
    probe = weakref.ref(bus)
    del bus
    gc.collect()
    assert probe() is None
    effects.handle(write("after the bus is gone"))  # nothing left to tell: no error


def test_traces_of_events_published_concurrently_hold_only_their_own(
    effects: EffectHandler,
) -> None:
    threads_count = 4
    bus = EventBus(effect_handler=effects)
    together = threading.Barrier(threads_count, timeout=WAIT)

    def handler(event: Event) -> EffectMonad[None]:
        effects.handle(write((event.data, "before")))
        together.wait()  # every thread is inside a delivery at once
        bus.publish(Ping.PONG, event.data)
        effects.handle(write((event.data, "after")))
        return EffectMonad.pure(None).with_effect(write((event.data, "returned")))

    def child_handler(event: Event) -> None:
        effects.handle(write((event.data, "child")))

    bus.subscribe(Ping.PING, handler)
    bus.subscribe(Ping.PONG, child_handler)
    ids: dict[int, str] = {}
    failures: list[BaseException] = []

    def publisher(t: int) -> None:
        try:
            ids[t] = bus.publish(Ping.PING, t)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=publisher, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert bus.get_history(EventType.ERROR) == []

    for t in range(threads_count):
        trace = bus.trace(ids[t])
        (delivery,) = trace.deliveries
        assert delivery.outcome == "ok"
        assert payloads(delivery.effects) == [(t, "before"), (t, "after"), (t, "returned")]
        (child,) = delivery.children
        assert child.event.data == t
        assert child.event.causation_id == ids[t]
        assert payloads(child.all_effects()) == [(t, "child")]
        assert trace.children == ()
        assert trace.effects == ()


# -- the history bound ---------------------------------------------------------------------


def test_a_trace_is_kept_as_long_as_its_event_is_in_the_history() -> None:
    bus = EventBus(history_limit=3)
    bus.subscribe(Ping.PING, first)
    oldest = bus.publish(Ping.PING)
    assert names(bus.trace(oldest)) == ["first"]
    newer = [bus.publish(Ping.PING) for _ in range(3)]

    with pytest.raises(UnknownEventError) as caught:
        bus.trace(oldest)
    assert isinstance(caught.value, AtlasEdaError)
    assert isinstance(caught.value, KeyError)
    message = str(caught.value)
    assert oldest in message
    assert "newest 3 events" in message
    assert "history_limit" in message  # what to do about it
    for event_id in newer:
        assert names(bus.trace(event_id)) == ["first"]


def test_an_unknown_id_is_an_unknown_event_error(bus: EventBus) -> None:
    bus.publish(Ping.PING)
    with pytest.raises(KeyError, match="not in this bus's history"):
        bus.trace("no-such-event")


def test_children_that_left_the_history_are_left_out(bus: EventBus) -> None:
    # A child is always recorded after its parent, so through the public API a parent
    # leaves the history first (and an event published again, same id, is traced by its
    # newest record, whose children are newer still). What the bus does with a child
    # that is no longer there is therefore checked on the builder it uses, white-box.
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG, "kept"))
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG, "gone"))
    root_id = bus.publish(Ping.PING)
    full = bus.trace(root_id)
    gone_id = full.deliveries[1].children[0].event.id
    records = {record[0].id: record for record in bus._history}

    partial = build_trace(records[root_id], {k: v for k, v in records.items() if k != gone_id}.get)

    assert [len(d.children) for d in partial.deliveries] == [1, 0]
    assert [t.event.data for t in partial.walk()] == [None, "kept"]
    assert names(partial) == names(full)


def test_a_bus_without_traces_still_publishes_and_says_traces_are_off(
    effects: EffectHandler, outbox: Outbox
) -> None:
    bus = EventBus(effect_handler=effects, traces=False)
    assert bus.traces is False
    received: list[Any] = []
    bus.subscribe(Ping.PING, lambda event: received.append(event.data))
    bus.subscribe(Ping.PING, lambda event: EffectMonad.pure(0).with_effect(write("w")))
    bus.subscribe(Ping.PING, broken)
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG, "child"))
    event_id = bus.publish(Ping.PING, "data")

    assert received == ["data"]
    assert outbox.performed == ["w"]
    assert [e.type for e in bus.get_history(limit=None)] == [
        EventType.ERROR,
        Ping.PONG,
        Ping.PING,
    ]
    with pytest.raises(UnknownEventError, match=r"traces=False") as caught:
        bus.trace(event_id)
    assert isinstance(caught.value, AtlasEdaError)
    assert "traces=True" in str(caught.value)  # what to do about it


def test_history_limit_zero_delivers_and_keeps_no_trace(effects: EffectHandler) -> None:
    bus = EventBus(0, effect_handler=effects)
    received: list[Any] = []
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG, event.data))
    bus.subscribe(Ping.PONG, lambda event: received.append(event.data))
    bus.subscribe(Ping.PONG, lambda event: EffectMonad.pure(0).with_effect(write("w")))
    event_id = bus.publish(Ping.PING, "x")

    assert received == ["x"]
    assert bus.get_history(limit=None) == []
    with pytest.raises(UnknownEventError, match="history_limit=0"):
        bus.trace(event_id)


def test_traces_are_forgotten_with_the_history(bus: EventBus) -> None:
    event_id = bus.publish(Ping.PING)
    bus.clear_history()
    with pytest.raises(UnknownEventError):
        bus.trace(event_id)


# -- weak handlers -------------------------------------------------------------------------


def test_a_traced_weak_handler_is_still_garbage_collected(bus: EventBus) -> None:
    class Owner:
        def on_ping(self, event: Event) -> None:
            pass

    def weak_function(event: Event) -> None:
        pass

    owner = Owner()
    probes: list[weakref.ref[Any]] = [weakref.ref(owner), weakref.ref(weak_function)]
    bus.subscribe(Ping.PING, owner.on_ping, weak=True)
    bus.subscribe(Ping.PING, weak_function, weak=True)
    event_id = bus.publish(Ping.PING)
    assert names(bus.trace(event_id)) == [
        f"{Owner.__qualname__}.on_ping",
        weak_function.__qualname__,
    ]

    del owner, weak_function
    gc.collect()
    assert [probe() for probe in probes] == [None, None]
    # The trace holds names, not handlers: it is still complete.
    assert names(bus.trace(event_id)) == [
        f"{Owner.__qualname__}.on_ping",
        "test_a_traced_weak_handler_is_still_garbage_collected.<locals>.weak_function",
    ]
    assert len(bus.trace(bus.publish(Ping.PING)).deliveries) == 0


def test_a_failing_handler_s_traced_error_keeps_no_other_weak_handler_alive(
    bus: EventBus,
) -> None:
    # The failure's traceback (kept in the trace) holds the bus's delivery frame: that
    # frame must not hold the other handlers.
    class Owner:
        def on_ping(self, event: Event) -> None:
            pass

    owner = Owner()
    probe = weakref.ref(owner)
    bus.subscribe(Ping.PING, broken)
    bus.subscribe(Ping.PING, owner.on_ping, weak=True)
    event_id = bus.publish(Ping.PING)
    assert bus.trace(event_id).deliveries[0].outcome == "error: ValueError: cannot handle None"

    del owner
    gc.collect()
    assert probe() is None
    assert names(bus.trace(event_id)) == ["broken", f"{Owner.__qualname__}.on_ping"]


# -- rendering -----------------------------------------------------------------------------


@pytest.fixture
def story(effect_bus: EventBus) -> EventTrace:
    """ORDER → [plan: 2 effects, publishes SHIPPED → [ship: 1 effect]], [broken], ERROR."""

    def plan(event: Event) -> EffectMonad[None]:
        effect_bus.publish(Ping.PONG, "shipped")
        return (
            EffectMonad.pure(None)
            .with_effect(write("order row"))
            .with_effect(Effect(EffectType.NOTIFICATION, "mail", "tell the customer"))
        )

    def ship(event: Event) -> EffectMonad[None]:
        return EffectMonad.pure(None).with_effect(write("shipment row"))

    effect_bus.subscribe(Ping.PING, plan)
    effect_bus.subscribe(Ping.PING, broken)
    effect_bus.subscribe(Ping.PONG, ship)
    return effect_bus.trace(effect_bus.publish(Ping.PING, "order 42", source="shop"))


def depth(line: str) -> int:
    """How deep a tree line is: its branch's column, in 3-character steps."""
    match = re.search(r"[├└]─ ", line)
    assert match is not None, line
    return match.start() // 3 + 1


def test_tree_is_one_line_per_event_delivery_and_effect(story: EventTrace) -> None:
    lines = story.tree().splitlines()

    # root; plan, its 2 effects, its child, the child's delivery and effect; broken;
    # the ERROR child.
    assert len(lines) == 9
    root, plan, eff1, eff2, child, ship, eff3, failed, report = lines
    assert root.startswith("Ping.PING ")
    assert story.event.id in root
    assert "shop" in root
    assert "order 42" in root
    assert not re.match(r"[│├└ ]", root)

    assert [depth(line) for line in lines[1:]] == [1, 2, 2, 2, 3, 4, 1, 1]
    assert "handler " in plan
    assert "plan" in plan
    assert plan.endswith("ok")
    assert "effect " in eff1
    assert "order row" in eff1
    assert "→ done order row" in eff1
    assert "mail" in eff2
    assert "done mail" in eff2
    assert "child Ping.PONG" in child
    assert "shipped" in child
    assert "handler " in ship
    assert "ship" in ship
    assert "shipment row" in eff3
    assert "broken" in failed
    assert "error: ValueError: cannot handle order 42" in failed
    assert "child EventType.ERROR" in report

    # Siblings before the last of their level branch with ├─, the last with └─, and the
    # lines under a non-last sibling carry its │ rail.
    assert plan.startswith("├─ ")
    assert failed.startswith("├─ ")
    assert report.startswith("└─ ")
    assert eff1.startswith("│  ├─ ")
    assert child.startswith("│  └─ ")
    assert ship.startswith("│     └─ ")
    assert eff3.startswith("│        └─ ")


def test_tree_shows_a_failed_effect_with_its_error(effect_bus: EventBus) -> None:
    effect_bus.subscribe(
        Ping.PING,
        lambda event: EffectMonad.pure(None).with_effect(
            Effect(EffectType.FILE_OPERATION, "a.txt")
        ),
    )
    lines = effect_bus.trace(effect_bus.publish(Ping.PING)).tree().splitlines()
    assert len(lines) == 4  # event, delivery, effect, ERROR child
    assert "✗ DiskFull: no space for a.txt" in lines[2]
    assert depth(lines[2]) == 2


def test_repr_is_one_short_line(story: EventTrace) -> None:
    text = repr(story)
    assert "\n" not in text
    assert len(text) < 150
    assert text.startswith("EventTrace(Ping.PING ")
    assert story.event.id in text
    assert "2 deliveries" in text
    assert "2 descendant events" in text


def test_html_is_a_nested_list(story: EventTrace) -> None:
    page = story._repr_html_()
    assert page.count("<ul>") == page.count("</ul>") == 4  # root, plan, child, ship
    assert page.count("<li>") == page.count("</li>") == 8  # every line but the root
    assert "plan" in page
    assert "shipment row" in page
    assert "child" in page


def test_html_escapes_every_value(bus: EventBus) -> None:
    hostile = "<script>alert('x')</script>"

    def handler(event: Event) -> None:
        bus.publish(Ping.PONG, hostile)
        raise ValueError(hostile)

    effects = EffectHandler()
    effects.register_handler(EffectType.LOGGING, lambda effect: hostile)
    bus.effect_handler = effects
    bus.subscribe(Ping.PING, handler)
    bus.subscribe(
        Ping.PING,
        lambda event: EffectMonad.pure(0).with_effect(Effect(EffectType.LOGGING, hostile, hostile)),
    )
    trace = bus.trace(bus.publish(Ping.PING, hostile, source=hostile))

    page = trace._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "<lambda>" not in page
    assert "&lt;lambda&gt;" in page
    assert "<script>" in trace.tree()  # plain text stays plain


def test_effect_outcome_and_delivery_describe_themselves() -> None:
    done = EffectOutcome(write("x"), result="ok")
    failed = EffectOutcome(write("y"), error=DiskFull("full"))
    assert done.ok
    assert not failed.ok
    assert done.describe() == "Effect(EffectType.DATABASE_WRITE, 'x', 'write x') → ok"
    assert failed.describe().endswith("✗ DiskFull: full")
    delivery = Delivery("h", 0.0, KeyError("k"), (), ())
    assert delivery.outcome == "error: KeyError: 'k'"


def test_a_trace_is_an_immutable_snapshot(bus: EventBus) -> None:
    bus.subscribe(Ping.PING, first)
    event_id = bus.publish(Ping.PING)
    trace = bus.trace(event_id)
    with pytest.raises(AttributeError):
        trace.deliveries = ()  # type: ignore[misc]
    bus.subscribe(Ping.PING, second)
    bus.publish(Ping.PING)
    assert bus.trace(event_id) == trace


def test_watch_is_told_each_root_trace_once_everything_is_handled() -> None:
    import enum as _enum

    class Flow(_enum.Enum):
        START = "start"
        NEXT = "next"

    bus = EventBus()
    seen: list[EventTrace] = []
    bus.subscribe(Flow.START, lambda e: bus.publish(Flow.NEXT, e.data))
    stop = bus.watch(seen.append)

    root = bus.publish(Flow.START, 1)
    bus.publish(Flow.NEXT, 2)

    assert seen[0].event.id == root
    assert len(seen) == 2  # one per root: the nested NEXT is inside the first trace
    assert seen[0].deliveries[0].children[0].event.type is Flow.NEXT
    stop()
    bus.publish(Flow.START, 3)
    assert len(seen) == 2


def test_a_failing_watcher_is_logged_and_the_publish_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import enum as _enum

    class One(_enum.Enum):
        A = "a"

    bus = EventBus()

    def broken(trace: EventTrace) -> None:
        raise RuntimeError("disk full")

    bus.watch(broken)
    with caplog.at_level(logging.ERROR, logger="atlas_eda.bus"):
        event_id = bus.publish(One.A)
    assert bus.get_history()[0].id == event_id
    name = f"{__name__}.test_a_failing_watcher_is_logged_and_the_publish_stands.<locals>.broken"
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("atlas_eda.bus", logging.ERROR, f"bus watcher {name} failed on {event_id}")
    ]
    (record,) = caplog.records
    assert record.exc_info is not None
    assert type(record.exc_info[1]) is RuntimeError
    assert str(record.exc_info[1]) == "disk full"
    with pytest.raises(ValueError, match="traces=False"):
        EventBus(traces=False).watch(broken)


def test_effect_library_intents_are_traced_with_their_results(tmp_path: Any) -> None:
    import effect as fx

    from atlas_eda.testing import Cassette, record, register_types

    register_types(Ping)
    handler = EffectHandler()
    bus = EventBus(effect_handler=handler)
    bus.subscribe(Ping.PING, lambda e: EffectMonad.pure(None).with_effect(fx.Func(lambda: 7)))
    path = tmp_path / "library.jsonl"
    with record(bus, path):
        event_id = bus.publish(Ping.PING)

    [outcome] = bus.trace(event_id).deliveries[0].effects
    assert isinstance(outcome.effect, fx.Func)
    assert outcome.result == 7
    [entry] = Cassette.load(path).entries
    [recorded] = entry.effects
    assert (recorded.type, recorded.result) == ("Func", 7)


def test_a_watched_trace_counts_the_events_that_left_the_history() -> None:
    bus = EventBus(history_limit=3)
    bus.subscribe(Ping.PING, lambda e: [bus.publish(Ping.PONG, n) for n in range(5)])
    seen: list[EventTrace] = []
    bus.watch(seen.append)

    bus.publish(Ping.PING)

    [trace] = seen
    assert trace.event.type is Ping.PING  # the root itself had left the history
    assert (trace.missing, trace.complete) == (2, False)  # PONG 0 and 1 were evicted
    assert [c.event.data for c in trace.all_children()] == [2, 3, 4]


# -- the records the bus writes: trace.py's layout, written inline by the dispatch loop -----


def test_the_dispatch_loop_writes_records_as_trace_defines_them(effects: EffectHandler) -> None:
    # dispatch.py builds records with list displays and appends (a call per record would
    # cost a few percent of a publish); this holds them equal to what trace.py defines.
    from atlas_eda.trace import (
        CHILD,
        EFFECT,
        LOG,
        OWNER,
        RAISED,
        SKIPPED,
        owned_by,
        plain_record,
        record_event,
        traced_record,
    )

    bus = EventBus(effect_handler=effects)
    other = EventBus()
    unsubscribe_last: list[Callable[[], None]] = []

    def publishes(event: Event) -> EffectMonad[None]:
        bus.publish(Ping.PONG, "child")
        return EffectMonad.pure(None).with_effect(write("row"))

    def fails(event: Event) -> None:
        unsubscribe_last[0]()  # the next receiver goes away before its turn
        raise ValueError("no")

    def gone(event: Event) -> None:
        raise AssertionError("unsubscribed: never called")

    bus.subscribe(Ping.PING, publishes)
    bus.subscribe(Ping.PING, fails)
    unsubscribe_last.append(bus.subscribe(Ping.PING, gone))
    event_id = bus.publish(Ping.PING)

    records = {record_event(r).id: r for r in bus._history}
    record = records[event_id]
    event = record_event(record)
    owner = record[OWNER]
    (child,) = bus.get_history(Ping.PONG)
    (report,) = bus.get_history(EventType.ERROR)
    assert event.id == event_id
    assert owned_by(record, owner)
    assert all(owned_by(r, owner) for r in records.values())
    other.publish(Ping.OTHER)
    (elsewhere,) = other._history
    assert not owned_by(elsewhere, owner)
    names = (publishes.__qualname__, fails.__qualname__, gone.__qualname__)
    assert record[:LOG] == traced_record(event, owner, event.timestamp, names)
    log = record[LOG:]
    assert [entry if type(entry) is float else entry[0] for entry in log] == [
        CHILD,  # publishes: its child event,
        EFFECT,  # the effect it returned,
        log[2],  # the time it ended;
        RAISED,  # fails: its exception,
        log[4],  # the time it ended;
        SKIPPED,  # gone: skipped;
        CHILD,  # the event's own: the ERROR report of fails
    ]
    assert log[0] == (CHILD, child.id)
    assert log[1][1].effect == write("row")
    assert event.timestamp <= log[2] <= log[4]
    assert str(log[3][1]) == "no"
    assert log[5] == (SKIPPED, None)
    assert log[6] == (CHILD, report.id)

    untraced = EventBus(traces=False)
    untraced.subscribe(Ping.PING, first)
    untraced.publish(Ping.PING)
    (plain,) = untraced._history
    assert plain == plain_record(record_event(plain), plain[OWNER])


# -- what is being delivered right now (the cause the store records) -----------------


def test_delivery_under_way_names_the_event_and_the_running_handler() -> None:
    bus = EventBus()
    seen: list[tuple[str, tuple[Event, str | None] | None]] = []
    removers: dict[str, Callable[[], None]] = {}

    def first(event: Event) -> None:
        seen.append(("first", delivery_under_way()))
        if event.type is Ping.PING:
            bus.publish(Ping.PONG, "nested")
            seen.append(("first, after its child", delivery_under_way()))

    def failing(event: Event) -> None:
        seen.append(("failing", delivery_under_way()))
        removers["gone"]()  # the next receiver is skipped in this publish
        raise RuntimeError("boom")

    def gone(event: Event) -> None:
        raise AssertionError("unsubscribed before its turn")

    def every(event: Event) -> None:
        seen.append(("every", delivery_under_way()))

    bus.subscribe(Ping.PING, first)
    bus.subscribe(Ping.PING, failing)
    removers["gone"] = bus.subscribe(Ping.PING, gone)
    bus.subscribe(Ping.PONG, first)
    bus.subscribe_all(every)
    assert delivery_under_way() is None
    event_id = bus.publish(Ping.PING, "root")
    assert delivery_under_way() is None
    ping = bus.get_history(Ping.PING)[0]
    pong = bus.get_history(Ping.PONG)[0]
    assert ping.id == event_id
    error = bus.get_history(EventType.ERROR)[0]
    name = first.__qualname__
    assert seen == [
        ("first", (ping, name)),
        ("first", (pong, name)),
        ("every", (pong, every.__qualname__)),
        ("first, after its child", (ping, name)),
        ("failing", (ping, failing.__qualname__)),
        # past the failure and the skipped receiver: the every-type handler's own turn
        ("every", (ping, every.__qualname__)),
        ("every", (error, every.__qualname__)),  # the bus's report of the failure
    ]


def test_delivery_under_way_on_a_bus_without_traces_has_no_handler_name() -> None:
    bus = EventBus(traces=False)
    seen: list[tuple[Event, str | None] | None] = []
    bus.subscribe(Ping.PING, lambda event: seen.append(delivery_under_way()))
    bus.publish(Ping.PING)
    [event] = bus.get_history()
    assert seen == [(event, None)]
