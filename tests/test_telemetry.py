"""OpenTelemetry (extra ``otel``, atlas_eda/telemetry.py): with a tracer provider, every
publish, delivery, command, query, effect and store write is a span parented as the trace
tree is, with OpenTelemetry's messaging attributes; trace context travels in event
metadata, stored causes (a follower in another process continues the writer's trace) and
cassettes (CloudEvents' distributed-tracing extension); a malformed ``traceparent`` is
ignored with a debug line; without a provider nothing changes, and without the extra
nothing of OpenTelemetry is imported."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Ping, sqlite_url
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from atlas_eda import (
    CommandType,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
    Event,
    EventBus,
    EventType,
    QueryType,
    StoreFollower,
    TemporalStore,
    telemetry,
)
from atlas_eda.document_events import cause_of
from atlas_eda.testing import Cassette, record, register_types

ROOT = Path(__file__).resolve().parent.parent
VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
MALFORMED = ["garbage", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71-01", 42, "ff-" + VALID[3:]]


class Do(CommandType):
    SHIP = "ship"


class Ask(QueryType):
    STOCK = "stock"


register_types(Ping)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def bus(provider: TracerProvider) -> Iterator[EventBus]:
    handler = EffectHandler()
    handler.register_handler(EffectType.LOGGING, lambda effect: "logged")
    bus = EventBus(effect_handler=handler)
    assert telemetry.instrument(bus, tracer_provider=provider)
    yield bus
    telemetry.uninstrument(bus)


def spans(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    """The finished spans by name (each name once in these tests)."""
    finished = exporter.get_finished_spans()
    by_name = {span.name: span for span in finished}
    assert len(by_name) == len(finished), [span.name for span in finished]
    return by_name


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def traceparent_of(span: ReadableSpan) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def test_publish_delivery_child_effect_and_store_write_are_spans_of_one_tree(
    bus: EventBus, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    store = TemporalStore(url="memory://")
    assert telemetry.instrument(store, tracer_provider=provider)

    def on_ping(event: Event) -> EffectMonad[None]:
        store.create_document("T", "c", "ann")
        bus.publish(Ping.PONG)
        return EffectMonad.pure(None)

    def on_pong(event: Event) -> EffectMonad[None]:
        return EffectMonad.pure(None).with_effect(Effect(EffectType.LOGGING, "x"))

    bus.subscribe(Ping.PING, on_ping)
    bus.subscribe(Ping.PONG, on_pong)
    ping_id = bus.publish(Ping.PING, {"n": 1})
    pong = bus.get_history(Ping.PONG)[0]
    found = spans(exporter)
    publish, process = found["publish Ping.PING"], found["process Ping.PING"]
    write = found["create_document documents"]
    child, child_process = found["publish Ping.PONG"], found["process Ping.PONG"]
    effect = found["perform EffectType.LOGGING"]
    assert parent_of(publish) is None
    assert parent_of(process) == publish.context.span_id
    assert parent_of(write) == process.context.span_id
    assert parent_of(child) == process.context.span_id
    assert parent_of(child_process) == child.context.span_id
    # an effect a handler returns is performed once its call returned, in the publish
    assert parent_of(effect) == child.context.span_id
    assert len({span.context.trace_id for span in found.values()}) == 1
    assert publish.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert dict(publish.attributes or {}) == {
        "messaging.system": "atlas_eda",
        "messaging.operation.type": "publish",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "Ping.PING",
        "messaging.message.id": ping_id,
    }
    attributes = dict(child_process.attributes or {})
    assert attributes["messaging.message.id"] == pong.id
    assert attributes["messaging.message.conversation_id"] == ping_id
    assert attributes["atlas_eda.handler"] == on_pong.__qualname__
    assert dict(write.attributes or {})["db.operation.name"] == "create_document"
    # the event carries its publish span's context
    assert bus.get_history(Ping.PING)[0].metadata["traceparent"] == traceparent_of(publish)
    assert pong.metadata["traceparent"] == traceparent_of(child)
    telemetry.uninstrument(store)


def test_a_failing_handler_s_span_has_the_error(
    bus: EventBus, exporter: InMemorySpanExporter
) -> None:
    def fails(event: Event) -> None:
        raise ValueError("no stock")

    bus.subscribe(Ping.PING, fails)
    bus.publish(Ping.PING)
    process = spans(exporter)["process Ping.PING"]
    assert process.status.description == "ValueError: no stock"
    assert [event.name for event in process.events] == ["exception"]
    assert "publish EventType.ERROR" in spans(exporter)  # the bus's report, traced too


def test_commands_and_queries_are_spans(bus: EventBus, exporter: InMemorySpanExporter) -> None:
    bus.handle(Do.SHIP, lambda message: "shipped")
    bus.handle(Ask.STOCK, lambda message: 3)
    assert bus.send(Do.SHIP, {"order": 1}) == "shipped"
    assert bus.ask(Ask.STOCK) == 3
    found = spans(exporter)
    assert set(found) == {"send Do.SHIP", "ask Ask.STOCK"}
    assert bus.get_history(Do.SHIP)[0].metadata["traceparent"] == traceparent_of(
        found["send Do.SHIP"]
    )


def test_without_a_tracer_provider_instrument_changes_nothing() -> None:
    bus = EventBus()
    assert telemetry.instrument(bus) is False  # no provider configured in this process
    assert not telemetry.is_instrumented(bus)
    assert "publish" not in vars(bus)
    assert bus.publish(Ping.PING)
    assert bus.get_history()[0].metadata == {}


def test_uninstrument_restores_the_bus(
    bus: EventBus, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    assert telemetry.instrument(bus, tracer_provider=provider)  # twice: left as it is
    bus.subscribe(Ping.PING, lambda event: None)
    telemetry.uninstrument(bus)
    assert not telemetry.is_instrumented(bus)
    assert "publish" not in vars(bus)
    bus.publish(Ping.PING)
    assert exporter.get_finished_spans() == ()
    assert bus.get_history()[0].metadata == {}


def test_instrument_refuses_what_it_cannot_trace(provider: TracerProvider) -> None:
    with pytest.raises(TypeError, match=r"EventBus and TemporalStore.*got str"):
        telemetry.instrument("bus", tracer_provider=provider)  # type: ignore[arg-type]


def test_a_root_event_carrying_a_traceparent_continues_that_trace(
    bus: EventBus, exporter: InMemorySpanExporter
) -> None:
    bus.publish_event(Event(type=Ping.PING, metadata={"traceparent": VALID}))
    bus.publish(Ping.PONG, metadata={"traceparent": VALID, "tracestate": "k=v"})
    for span in exporter.get_finished_spans():
        assert f"{span.context.trace_id:032x}" == VALID.split("-")[1]
        assert span.parent is not None
        assert f"{span.parent.span_id:016x}" == VALID.split("-")[2]
    pong = bus.get_history(Ping.PONG)[0]
    assert pong.metadata["traceparent"] == traceparent_of(spans(exporter)["publish Ping.PONG"])
    assert pong.metadata["tracestate"] == "k=v"


def test_a_root_event_s_traceparent_wins_over_the_application_s_span(
    bus: EventBus, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A follower polled inside a span of the application's own: the event continues its
    producer's trace; what its handlers publish stays in that tree."""
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG, metadata={"x": 1}))
    with provider.get_tracer("app").start_as_current_span("poll loop"):
        bus.publish_event(Event(type=Ping.PING, metadata={"traceparent": VALID}))
    found = spans(exporter)
    assert f"{found['publish Ping.PING'].parent.span_id:016x}" == VALID.split("-")[2]  # type: ignore[union-attr]
    assert parent_of(found["publish Ping.PONG"]) == found["process Ping.PING"].context.span_id
    assert parent_of(found["poll loop"]) is None


@pytest.mark.parametrize("malformed", MALFORMED)
def test_a_malformed_traceparent_in_metadata_is_ignored_with_a_debug_line(
    bus: EventBus,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    malformed: Any,
) -> None:
    caplog.set_level(logging.DEBUG, logger="atlas_eda.tracecontext")
    bus.publish_event(Event(type=Ping.PING, metadata={"traceparent": malformed}))
    bus.publish(Ping.PONG, metadata={"traceparent": malformed})
    for span in exporter.get_finished_spans():
        assert span.parent is None  # new roots
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert all(m.startswith("ignoring a malformed traceparent in event metadata") for m in messages)


def test_the_stored_cause_records_the_write_span(
    bus: EventBus, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    store = TemporalStore(bus, url="memory://")
    telemetry.instrument(store, tracer_provider=provider)
    bus.subscribe(Ping.PING, lambda event: store.create_document("T", "c", "ann"))
    bus.publish(Ping.PING)
    (cause,) = [entry.cause for entry in store.timeline()]
    assert cause is not None
    assert cause.traceparent == traceparent_of(spans(exporter)["create_document documents"])
    telemetry.uninstrument(store)


@pytest.mark.parametrize("malformed", MALFORMED)
def test_a_malformed_stored_traceparent_reads_as_none(
    malformed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="atlas_eda.tracecontext")
    event: Any = type("Stored", (), {})()
    event.cause = {
        "event_id": "e",
        "event_type": "Ping.PING",
        "correlation_id": "e",
        "handler": "h",
        "traceparent": malformed,
        "tracestate": "k=v",
    }
    cause = cause_of(event)
    assert cause is not None
    assert cause.traceparent is None
    assert cause.tracestate is None
    assert "malformed traceparent in a stored cause" in caplog.text


def test_cassettes_carry_trace_context_as_the_cloudevents_extension(
    bus: EventBus, tmp_path: Path
) -> None:
    path = tmp_path / "traced.jsonl"
    with record(bus, path):
        bus.publish(Ping.PING, metadata={"user": "ann", "tracestate": "k=v"})
    line = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    event = bus.get_history()[0]
    assert line["traceparent"] == event.metadata["traceparent"]
    assert line["tracestate"] == "k=v"
    assert json.loads(line["atlasmetadata"]) == {"user": "ann"}
    (entry,) = Cassette.load(path)
    assert entry.event == event


@pytest.mark.parametrize("malformed", MALFORMED)
def test_a_malformed_traceparent_in_a_cassette_is_ignored_with_a_debug_line(
    tmp_path: Path, malformed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="atlas_eda.tracecontext")
    line = {
        "specversion": "1.0",
        "id": "e1",
        "source": "test",
        "type": "Ping.PING",
        "time": "2026-01-01T00:00:00Z",
        "traceparent": malformed,
    }
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    (entry,) = Cassette.load(path)
    assert "traceparent" not in entry.event.metadata
    assert "malformed traceparent in line 1" in caplog.text


WRITER = """
import json, sys, enum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from atlas_eda import EventBus, TemporalStore, telemetry

class Shop(enum.Enum):
    ORDER_PLACED = "order.placed"

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
bus = EventBus()
store = TemporalStore(bus, url=sys.argv[1])
assert telemetry.instrument(bus, store, tracer_provider=provider)
bus.subscribe(Shop.ORDER_PLACED, lambda event: store.create_document("Order", "1", "ann"))
bus.publish(Shop.ORDER_PLACED)
store.close()
spans = [
    {"name": s.name, "trace_id": s.context.trace_id, "span_id": s.context.span_id,
     "parent": s.parent.span_id if s.parent else None}
    for s in exporter.get_finished_spans()
]
with open(sys.argv[2], "w") as out:
    json.dump(spans, out)
"""


def test_a_follower_in_another_process_continues_the_writer_s_trace(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A real writer process with an SDK provider writes to a SQLite file and dumps its
    spans; this process follows the file: its spans are in the writer's trace, the
    follower's publish a child of the writer's store-write span."""
    url = sqlite_url(tmp_path / "store.db")
    dumped = tmp_path / "writer_spans.json"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(script), url, str(dumped)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    writer = {span["name"]: span for span in json.loads(dumped.read_text(encoding="utf-8"))}
    write = writer["create_document documents"]
    assert write["parent"] == writer["process Shop.ORDER_PLACED"]["span_id"]

    bus = EventBus()
    follower = StoreFollower(url, bus, None, from_start=True)
    assert telemetry.instrument(bus, tracer_provider=provider)
    bus.subscribe(EventType.DOCUMENT_CREATED, lambda event: bus.publish(Ping.PONG))
    try:
        assert follower.poll() == 1
    finally:
        follower.close()
        telemetry.uninstrument(bus)
    found = spans(exporter)
    publish = found["publish EventType.DOCUMENT_CREATED"]
    assert {span.context.trace_id for span in found.values()} == {write["trace_id"]}
    assert parent_of(publish) == write["span_id"]
    assert parent_of(found["process EventType.DOCUMENT_CREATED"]) == publish.context.span_id
    assert parent_of(found["publish Ping.PONG"]) == (
        found["process EventType.DOCUMENT_CREATED"].context.span_id
    )


def test_importing_and_publishing_never_imports_opentelemetry(tmp_path: Path) -> None:
    script = (
        "import sys, enum\n"
        "import atlas_eda\n"
        "class T(enum.Enum):\n    A = 'a'\n"
        "bus = atlas_eda.EventBus()\n"
        "bus.subscribe(T.A, lambda event: None)\n"
        "bus.publish(T.A)\n"
        "store = atlas_eda.TemporalStore(bus, url='memory://')\n"
        "store.create_document('T', 'c', 'a')\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
