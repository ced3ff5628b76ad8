"""What a new user tripped on (issue 21, part 4): subscribing with a decorator and
``once=True``, ``EventTrace.tree(width=, full=)``, the cassette command's advice for an
unknown type, and scenario and replay failures that point at the test, not the library.
The CLI's ``--width`` / ``--full`` and prefix checks are in test_cli_time_travel.py, the
plot's in test_timeline.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import Ping

from atlas_eda import Event, EventBus, InvalidArgumentError
from atlas_eda.cli.cassette import for_the_command_line
from atlas_eda.errors import AsyncHandlerError, UndeclaredEmitError
from atlas_eda.testing.types import resolve_payload_type

pytest_plugins = ["pytester"]


def test_on_subscribes_the_decorated_function_and_returns_it_unchanged() -> None:
    bus = EventBus()
    seen: list[Any] = []

    def handler(event: Event) -> None:
        seen.append(event.data)

    decorated = bus.on(Ping.PING)(handler)
    assert decorated is handler
    bus.publish(Ping.PING, 1)
    assert seen == [1]


def test_subscribe_with_only_a_type_is_a_decorator() -> None:
    bus = EventBus()
    seen: list[Any] = []

    @bus.subscribe(Ping.PING)
    def handler(event: Event) -> None:
        seen.append(event.data)

    @bus.on(Ping.PONG, emits=())
    def other(event: Event) -> None:
        seen.append(("pong", event.data))

    bus.publish(Ping.PING, 1)
    bus.publish(Ping.PONG, 2)
    assert seen == [1, ("pong", 2)]
    handler(Event(type=Ping.PING, data=3))  # still the plain function
    assert seen[-1] == 3
    with pytest.raises(Exception, match="already subscribed"):
        bus.subscribe(Ping.PING, handler)


def test_once_delivers_one_event_then_unsubscribes() -> None:
    bus = EventBus()
    seen: list[Any] = []

    @bus.on(Ping.PING, once=True)
    def first(event: Event) -> None:
        seen.append(event.data)

    bus.publish(Ping.PING, 1)
    bus.publish(Ping.PING, 2)
    assert seen == [1]
    assert bus.trace(bus.get_history(limit=1)[0].id).deliveries == ()
    first_delivery = bus.trace(bus.get_history(limit=None)[-1].id).deliveries
    assert [d.handler for d in first_delivery] == [first.__qualname__]


def test_once_unsubscribes_even_when_the_handler_raises_and_the_letter_retries_it() -> None:
    bus = EventBus(failure_policy="dead_letter")
    calls: list[Any] = []

    def flaky(event: Event) -> None:
        calls.append(event.data)
        if len(calls) == 1:
            raise ValueError("first try fails")

    bus.subscribe(Ping.PING, flaky, once=True)
    bus.publish(Ping.PING, 1)
    bus.publish(Ping.PING, 2)
    assert calls == [1]
    [letter] = bus.dead_letters
    assert letter.handler is flaky
    assert bus.retry_dead_letters() == 1  # the retry calls the handler, not the used wrapper
    assert calls == [1, 1]


def test_once_returns_an_unsubscribe_that_works_before_the_event() -> None:
    bus = EventBus()
    seen: list[Any] = []
    unsubscribe = bus.subscribe(Ping.PING, seen.append, once=True)
    unsubscribe()
    bus.publish(Ping.PING, 1)
    assert seen == []


def test_once_runs_exactly_once_when_threads_publish_together() -> None:
    bus = EventBus()
    seen: list[Any] = []
    lock = threading.Lock()

    def record(event: Event) -> None:
        with lock:
            seen.append(event.data)

    bus.subscribe(Ping.PING, record, once=True)
    start = threading.Barrier(8)

    def publish(n: int) -> None:
        start.wait()
        for i in range(50):
            bus.publish(Ping.PING, (n, i))

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(seen) == 1


def test_once_keeps_the_declared_graph_working() -> None:
    bus = EventBus(strict_graph=True)

    @bus.on(Ping.PING, once=True, emits=(Ping.PONG,))
    def answers(event: Event) -> None:
        bus.publish(Ping.OTHER)

    [declared] = bus.graph().handlers
    assert (declared.name, declared.receives, declared.emits) == (
        answers.__qualname__,
        Ping.PING,
        (Ping.PONG,),
    )
    with pytest.raises(UndeclaredEmitError, match=r"answers of Ping\.PING published Ping\.OTHER"):
        bus.publish(Ping.PING)
    assert bus.graph().handlers == ()  # used: gone from the graph too


def test_once_with_weak_and_an_async_handler_are_refused_nothing_subscribed() -> None:
    bus = EventBus()

    def handler(event: Event) -> None:
        pass

    async def coroutine(event: Event) -> None:
        pass

    with pytest.raises(InvalidArgumentError, match="once=True with weak=True"):
        bus.subscribe(Ping.PING, handler, once=True, weak=True)
    with pytest.raises(AsyncHandlerError):
        bus.subscribe(Ping.PING, coroutine, once=True)
    for not_callable in (None, 42):
        with pytest.raises(TypeError, match="must be callable"):
            bus.subscribe(Ping.PING, not_callable, once=True)
    bus.publish(Ping.PING)
    assert bus.trace(bus.get_history(limit=1)[0].id).deliveries == ()


def test_the_cassette_command_tells_how_to_register_a_payload_class_by_option() -> None:
    with pytest.raises(KeyError) as caught:
        resolve_payload_type("NeverRegisteredPayload")
    message = for_the_command_line(f"x.jsonl, line 2: {caught.value.args[0]}")
    assert message.startswith("x.jsonl, line 2: unknown data type 'NeverRegisteredPayload'")
    assert message.endswith(
        "Name the module that defines it: --types MODULE:NeverRegisteredPayload (repeatable), "
        "or --app "
        "MODULE:FACTORY for a module that registers it."
    )
    assert "register_types" not in message
    assert for_the_command_line("x.jsonl, line 1: malformed JSON") == (
        "x.jsonl, line 1: malformed JSON"
    )


def test_trace_tree_cuts_values_by_default_and_width_or_full_show_more() -> None:
    bus = EventBus()
    bus.subscribe(Ping.PING, lambda event: None)
    data = {"note": "x" * 200}
    event_id = bus.publish(Ping.PING, data)
    trace = bus.trace(event_id)
    whole = str(data)

    default = trace.tree()
    assert whole not in default
    assert f"data={whole[:69]}…" in default.splitlines()[0]
    assert trace.tree(width=30).splitlines()[0].endswith(f"data={whole[:29]}…")
    assert trace.tree(full=True).splitlines()[0].endswith(f"data={whole}")
    assert trace.tree(full=True).splitlines()[1:] == default.splitlines()[1:]
    with pytest.raises(ValueError, match="width must be"):
        trace.tree(width=3)


FAILING_CHECKS = """
import enum

from atlas_eda import EffectHandler, EventBus
from atlas_eda.testing import Cassette, Scenario, record, register_types, replay


class Flow(enum.Enum):
    A = "a"
    B = "b"


class Mail(enum.Enum):
    SEND = "send"


register_types(Flow, Mail)


def make(answers=True):
    bus = EventBus(effect_handler=EffectHandler())
    if answers:
        bus.subscribe(Flow.A, lambda event: bus.publish(Flow.B, event.data))
    return bus


def test_scenario_events(): Scenario(make).when((Flow.A, 1)).then_events((Flow.A, 1))


def test_scenario_effects(): Scenario(make).when((Flow.A, 1)).then_effects((Mail.SEND, 1))


def test_replay(tmp_path):
    bus = make()
    with record(bus, tmp_path / "flow.jsonl"):
        bus.publish(Flow.A, 1)
    report = replay(Cassette.load(tmp_path / "flow.jsonl"), make(answers=False))
    report.assert_no_divergence()
"""


def test_failed_checks_show_the_test_s_frame_not_the_library_s(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_checks=FAILING_CHECKS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tb=long")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 3, result.stdout.str()
    output = result.stdout.str()
    assert "diverged after" in output
    assert "then_events: the events published" in output
    assert "then_effects: " in output
    for test in ("events", "effects"):
        assert f"def test_scenario_{test}(): Scenario(" in output
    assert "report.assert_no_divergence()" in output
    assert "atlas_eda/testing/scenario.py" not in output
    assert "atlas_eda/testing/replay.py" not in output
    assert "raise AssertionError(" not in output
