"""OpenTelemetry figures (issue 19): what the ``otel`` extra costs a publish.

- ``publish`` on a bus that ``telemetry.instrument(bus)`` was called for with no tracer
  provider configured (the extra installed and imported, OpenTelemetry's default proxy
  provider in place) / ``publish`` on a bus never instrumented: target ≤ 1.05. Without a
  provider ``instrument`` leaves the bus as it is, so the two run the same code;
- for information: ``publish`` on a bus instrumented with the SDK's ``TracerProvider``,
  a ``SimpleSpanProcessor`` and an exporter that drops every span / ``publish`` on a bus
  never instrumented (two spans per publish with one subscriber: the publish and the
  delivery), and the absolute times.

Each bus has traces and history on, one no-op subscriber, and is at its history bound
before timing. Timed interleaved, as every ratio in ``benchmarks/`` (see
``benchmarks.bus``)."""

from __future__ import annotations

import enum
import functools
import gc
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from atlas_eda import Event, EventBus, telemetry

from ._harness import (
    Config,
    Row,
    Section,
    Target,
    interleaved_per_call,
    median,
    ratio_row,
    time_row,
)

__all__ = ["SECTION", "run"]

HISTORY = 1000
"""Each bus's ``history_limit`` (the default), filled before anything is timed."""


class Tick(enum.Enum):
    """The benchmark's event type."""

    TICK = "tick"


class _Dropping(SpanExporter):
    """An exporter that drops every span: what the SDK costs without any I/O."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _noop(event: Event) -> None:
    return None


def _bus() -> EventBus:
    bus = EventBus(HISTORY)
    bus.subscribe(Tick.TICK, _noop)
    return bus


def run(config: Config) -> list[Row]:
    """Instrumented without a provider / plain; with the SDK / plain (info)."""
    repeats = 7 if config.quick else 21
    min_time = 0.01 if config.quick else 0.03
    plain, unconfigured, sdk = _bus(), _bus(), _bus()
    assert not telemetry.instrument(unconfigured), "a tracer provider is configured globally"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_Dropping()))
    assert telemetry.instrument(sdk, tracer_provider=provider)
    for bus in (plain, unconfigured, sdk):
        for _ in range(HISTORY + 10):  # at the bound
            bus.publish(Tick.TICK)
    gc.collect()
    # Two interleaved pairs: timed together, the SDK's 100-fold slower publish would set
    # the loop length and leave the µs-scale pair a handful of calls per sample.
    s = interleaved_per_call(
        {
            "plain": functools.partial(plain.publish, Tick.TICK),
            "unconfigured": functools.partial(unconfigured.publish, Tick.TICK),
        },
        repeats=repeats,
        min_time=min_time,
    )
    s |= {
        f"{name} (sdk pair)": samples
        for name, samples in interleaved_per_call(
            {
                "plain": functools.partial(plain.publish, Tick.TICK),
                "sdk": functools.partial(sdk.publish, Tick.TICK),
            },
            repeats=repeats,
            min_time=min_time,
        ).items()
    }
    telemetry.uninstrument(sdk)
    return [
        ratio_row(
            "publish, otel extra, instrument() without a tracer provider / never instrumented",
            median(s["unconfigured"]),
            median(s["plain"]),
            Target("<=", 1.05, "x"),
        ),
        ratio_row(
            "publish, instrumented with the SDK, spans dropped / never instrumented",
            median(s["sdk (sdk pair)"]),
            median(s["plain (sdk pair)"]),
        ),
        time_row("  publish, never instrumented, 1 subscriber", s["plain"], "µs"),
        time_row("  publish, instrument() without a provider", s["unconfigured"], "µs"),
        time_row("  publish, SDK provider, spans dropped (2 spans)", s["sdk (sdk pair)"], "µs"),
    ]


SECTION = Section("telemetry", "OpenTelemetry: what the otel extra costs a publish", run)
