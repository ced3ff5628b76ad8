"""EventBus figures: what per-event traces cost when nobody reads them (issue 3), and
``EventBus.publish`` beside a raw ``blinker.Signal.send`` (issue 5).

Every ratio compares two callables timed *interleaved* in the same run: for each repeat,
each callable runs a loop of ``number`` calls (the same ``number`` for both, calibrated
on the slower one) and the mean per call is one sample; the order alternates between
repeats so that machine noise falls on both alike. A figure is the ratio of the two
medians (at least :data:`~benchmarks._harness.MIN_REPEATS` samples each). The garbage
collector stays on, as in an application: traces allocate, and that cost is part of
what they cost.

Both buses of a trace row are at their history bound (1,000 events) before timing, so
each publish also evicts the oldest event, as it does in a long-running application.

Figures:

- ``publish`` (the default bus: traces on, history on, no middleware) / raw
  ``blinker.Signal.send``, 1 and 10 no-op receivers (issue 5's targets ≤ 1.0 and ≤ 0.6),
  and / ``pyee`` ``EventEmitter.emit`` with 10 listeners (target ≤ 1.0);
- ``publish`` of a 10-key dict payload, 1 subscriber, traces on / blinker ``send`` of the
  same dict (issue 15's target ≤ 1.0);
- for information: what the delivery stack's context variable costs a publish (issue 19
  moved the stack into ``contextvars`` so that ``copy_context()`` keeps causation; every
  delivery sets a new tuple and resets it), timed alone, and the ``publish`` ratios with
  that cost taken out;
- for information: the same beside PyPubSub ``sendMessage`` and ``zope.event.notify``;
  ``publish`` with ``traces=False`` beside pyee; traces on / off with no-op handlers
  (issue 3's target is measured on the main job, in the end-to-end section); the
  absolute per-call times behind the ratios; and what reading one trace costs
  (``bus.trace(event_id)`` with a full history).
"""

from __future__ import annotations

import enum
import functools
import gc
from collections.abc import Callable, Mapping
from typing import Any

import blinker
import pyee
import zope.event
from pubsub import pub

from atlas_eda import Event, EventBus
from atlas_eda.trace import RUNNING

from ._harness import (
    MIN_REPEATS,
    Config,
    Row,
    Section,
    Target,
    in_unit,
    interleaved_per_call,
    median,
    per_call,
    ratio_row,
    stats_note,
    time_row,
)

__all__ = ["SECTION", "run"]

HISTORY = 1000

"""The buses' ``history_limit`` (the default), filled before anything is timed."""

MANY = 10
"""The larger subscriber count measured (issue 5's pyee target is set at it)."""

PAYLOAD_KEYS = 10
"""The keys of the dict payload published beside blinker (issue 15's speed row)."""


class Bench(enum.Enum):
    """The benchmark's own event type."""

    TICK = "tick"


def _noop_handlers(count: int) -> list[Callable[[Any], None]]:
    """``count`` distinct no-op functions (blinker keys receivers by identity)."""

    def make() -> Callable[[Any], None]:
        def noop(event: Any) -> None:
            return None

        return noop

    return [make() for _ in range(count)]


def _bus(subscribers: int, *, traces: bool) -> tuple[EventBus, list[Callable[[Any], None]]]:
    bus = EventBus(HISTORY, traces=traces)
    handlers = _noop_handlers(subscribers)
    for handler in handlers:
        bus.subscribe(Bench.TICK, handler)
    for _ in range(HISTORY + 10):  # at the bound: every timed publish also evicts one
        bus.publish(Bench.TICK)
    return bus, handlers


_RECORD: list[Any] = []


def _stack_cost() -> None:
    """What a root publish does with the delivery stack (trace.RUNNING), and nothing else:
    read it, set a new one-record tuple, reset it. The stack lives in a context variable
    since issue 19, so that work handed on with ``contextvars.copy_context()`` keeps its
    causation; a copied context must keep the stack as it was, so every delivery sets a
    new value (a shared list pushed and popped would cost a third of it)."""
    stack = RUNNING.get()
    token = RUNNING.set((*stack, _RECORD) if stack else (_RECORD,))
    RUNNING.reset(token)


def _nothing() -> None:
    """An empty function: what calling ``_stack_cost`` costs beside what it does."""


def _signal(receivers: int) -> tuple[blinker.Signal, list[Callable[[Any], None]]]:
    signal = blinker.Signal("raw")
    handlers = _noop_handlers(receivers)
    for handler in handlers:
        signal.connect(handler, weak=False)
    return signal, handlers


def _check_deliveries(bus: EventBus, subscribers: int) -> None:
    """What is timed really delivers (and, with traces, really records)."""
    seen: list[Event] = []
    unsubscribe = bus.subscribe(Bench.TICK, seen.append)
    event_id = bus.publish(Bench.TICK)
    unsubscribe()
    assert [e.id for e in seen] == [event_id], "the benchmark bus did not deliver"
    if bus.traces:
        assert len(bus.trace(event_id).deliveries) == subscribers + 1


def _peers(count: int) -> tuple[dict[str, Callable[[], object]], list[Any]]:
    """The peers' publish calls with ``count`` no-op listeners each: pyee's ``emit``,
    PyPubSub's ``sendMessage`` and ``zope.event.notify``, each passing one event object."""
    payload = object()
    emitter = pyee.EventEmitter()
    h_pyee = _noop_handlers(count)
    for handler in h_pyee:
        emitter.on("tick", handler)
    topic = f"atlas_eda_bench_{count}"
    h_pubsub = _noop_handlers(count)  # PyPubSub holds listeners weakly: kept in keep
    for handler in h_pubsub:
        pub.subscribe(handler, topic)
    h_zope = _noop_handlers(count)
    zope_subscribers = list(h_zope)

    def zope_notify() -> None:
        # zope.event's registry is one global list: ours is swapped in for each call
        # so that the figure holds exactly ``count`` subscribers.
        saved = zope.event.subscribers
        zope.event.subscribers = zope_subscribers
        try:
            zope.event.notify(payload)
        finally:
            zope.event.subscribers = saved

    fns: dict[str, Callable[[], object]] = {
        "pyee": functools.partial(emitter.emit, "tick", payload),
        "pubsub": functools.partial(pub.sendMessage, topic, event=payload),
        "zope": zope_notify,
    }
    return fns, [emitter, h_pyee, h_pubsub, h_zope]


def _peer_rows(count: int, m: Mapping[str, float], s: Mapping[str, list[float]]) -> list[Row]:
    plural = "subscriber" if count == 1 else "subscribers"
    rows = [
        ratio_row(
            f"publish, {count} {plural} / pyee emit, {count} listener{'s' if count > 1 else ''}",
            m["traced"],
            m["pyee"],
            Target("<=", 1.0, "x"),
        ),
        ratio_row(
            f"  publish with traces=False, {count} {plural} / pyee emit",
            m["untraced"],
            m["pyee"],
            None,
        ),
        ratio_row(
            f"publish, {count} {plural} / PyPubSub sendMessage", m["traced"], m["pubsub"], None
        ),
        ratio_row(f"publish, {count} {plural} / zope.event notify", m["traced"], m["zope"], None),
    ]
    for name, label in (
        ("pyee", "pyee emit"),
        ("pubsub", "PyPubSub sendMessage"),
        ("zope", "zope.event notify"),
    ):
        rows.append(
            Row(
                f"  ref: {label}, {count} listener{'s' if count > 1 else ''}",
                in_unit(m[name], "µs"),
                "µs",
                note=stats_note(s[name], "µs"),
            )
        )
    return rows


def run(config: Config) -> list[Row]:
    repeats = 7 if config.quick else 21
    min_time = 0.01 if config.quick else 0.03
    rows: list[Row] = []
    keep: list[Any] = []  # handlers stay alive while timed
    for count in (1, MANY):
        plural = "subscriber" if count == 1 else "subscribers"
        traced, h1 = _bus(count, traces=True)
        untraced, h2 = _bus(count, traces=False)
        signal, h3 = _signal(count)
        peers, h4 = _peers(count)
        keep += [h1, h2, h3, h4]
        _check_deliveries(traced, count)
        _check_deliveries(untraced, count)
        fns: dict[str, Callable[[], object]] = {
            "traced": functools.partial(traced.publish, Bench.TICK),
            "untraced": functools.partial(untraced.publish, Bench.TICK),
            "blinker": signal.send,
            "stack": _stack_cost,
            "call": _nothing,
            **peers,
        }
        gc.collect()
        s = interleaved_per_call(fns, repeats=repeats, min_time=min_time)
        m = {name: median(values) for name, values in s.items()}
        paired = sorted(a / b for a, b in zip(s["traced"], s["untraced"], strict=True))
        per_delivery = (m["traced"] - m["untraced"]) / count
        stack_cost = m["stack"] - m["call"]
        rows += [
            ratio_row(
                f"publish (traces, history) / blinker send, {count} {plural}",
                m["traced"],
                m["blinker"],
                Target("<=", 1.0 if count == 1 else 0.6, "x"),
            ),
            *_peer_rows(count, m, s),
            Row(
                f"  publish, traces on, {count} {plural}",
                in_unit(m["traced"], "µs"),
                "µs",
                note=stats_note(
                    s["traced"],
                    "µs",
                    f"paired traced/untraced ratios {paired[0]:.3f} to {paired[-1]:.3f}",
                ),
            ),
            time_row(f"  publish, traces=False, {count} {plural}", s["untraced"], "µs"),
            time_row(
                f"  ref: blinker Signal.send, {count} receiver{'s' if count > 1 else ''}",
                s["blinker"],
                "µs",
            ),
            ratio_row(
                f"  publish, traces on / traces=False, {count} no-op {plural}",
                m["traced"],
                m["untraced"],
                None,
            ),
            Row(
                f"  what traces add per delivery (one clock read), {count} {plural}",
                in_unit(per_delivery, "µs"),
                "µs",
                note="(traced - untraced) / deliveries: the clock read and append that time "
                "each delivery (the start is the event's timestamp); see the end-to-end section "
                "for what that is in a workload",
            ),
            Row(
                "  the delivery stack's context variable, per published event",
                in_unit(stack_cost, "µs"),
                "µs",
                note="what publish does with trace.RUNNING (get, set a new tuple, reset), "
                "timed alone, less an empty function's call",
            ),
            ratio_row(
                f"  publish without that / blinker send, {count} {plural}",
                m["traced"] - stack_cost,
                m["blinker"],
                None,
            ),
            ratio_row(
                f"  publish without that / pyee emit, {count} {plural}",
                m["traced"] - stack_cost,
                m["pyee"],
                None,
            ),
        ]
    rows += _payload_rows(repeats, min_time)
    rows += _history_rows(config, repeats, min_time)
    rows += _middleware_rows(repeats, min_time)
    # Reading a trace: built on demand from the history (copied under its lock).
    reader, h4 = _bus(1, traces=True)
    keep.append(h4)
    newest = reader.get_history(limit=1)[0].id
    samples = per_call(lambda: reader.trace(newest), repeats=max(MIN_REPEATS, repeats // 3))
    rows.append(
        Row(
            f"bus.trace(event_id), 1 subscriber, history full ({HISTORY})",
            in_unit(median(samples), "µs"),
            "µs",
            note=stats_note(samples, "µs", "what a reader pays; publishing pays none of it"),
        )
    )
    del keep
    return rows


def _payload_rows(repeats: int, min_time: float) -> list[Row]:
    """Publishing a 10-key dict payload to 1 subscriber (traces and history on, the bus at
    its bound) beside blinker ``send`` of the same dict (issue 15: ≤ 1.0): what the bus
    does with an event's data must not cost it its lead."""
    payload = {f"field_{n}": n for n in range(PAYLOAD_KEYS)}
    bus, h1 = _bus(1, traces=True)
    signal, h2 = _signal(1)
    seen: list[Event] = []
    unsubscribe = bus.subscribe(Bench.TICK, seen.append)
    bus.publish(Bench.TICK, payload)
    unsubscribe()
    assert seen[0].data == payload, "the benchmark bus did not deliver the payload"
    gc.collect()
    s = interleaved_per_call(
        {
            "traced": functools.partial(bus.publish, Bench.TICK, payload),
            "blinker": functools.partial(signal.send, payload),
        },
        repeats=repeats,
        min_time=min_time,
    )
    del h1, h2
    return [
        ratio_row(
            f"publish {PAYLOAD_KEYS}-key dict (traces, history) / blinker send, 1 subscriber",
            median(s["traced"]),
            median(s["blinker"]),
            Target("<=", 1.0, "x"),
        ),
        time_row(f"  publish, {PAYLOAD_KEYS}-key dict payload, 1 subscriber", s["traced"], "µs"),
        time_row(
            f"  ref: blinker Signal.send, {PAYLOAD_KEYS}-key dict, 1 receiver", s["blinker"], "µs"
        ),
    ]


def _history_rows(config: Config, repeats: int, min_time: float) -> list[Row]:
    """Publishing with the history full at 1,000 events vs at 1,000,000 (100,000 with
    --quick): the bound is a deque, so the size of the history must not matter."""
    big = 100_000 if config.quick else 1_000_000
    small_bus, h1 = _bus(1, traces=True)
    big_bus = EventBus(big)
    h2 = _noop_handlers(1)
    big_bus.subscribe(Bench.TICK, h2[0])
    publish = big_bus.publish
    for _ in range(big + 10):
        publish(Bench.TICK)
    assert len(big_bus.get_history(limit=None)) == big
    gc.collect()
    s = interleaved_per_call(
        {
            "big": functools.partial(big_bus.publish, Bench.TICK),
            "small": functools.partial(small_bus.publish, Bench.TICK),
        },
        repeats=repeats,
        min_time=min_time,
    )
    del h1, h2
    return [
        ratio_row(
            f"publish, history full at {big:,} / full at {HISTORY:,}",
            median(s["big"]),
            median(s["small"]),
            Target("<=", 1.1, "x"),
        )
    ]


def _pass(event: Event) -> Event:
    return event


def _middleware_rows(repeats: int, min_time: float) -> list[Row]:
    """What each middleware adds to a publish (1 no-op subscriber, traces on)."""
    buses: dict[str, Callable[[], object]] = {}
    keep = []
    for n in (0, 1, 5):
        bus, handlers = _bus(1, traces=True)
        for _ in range(n):
            bus.add_middleware(_pass)
        keep.append(handlers)
        buses[str(n)] = functools.partial(bus.publish, Bench.TICK)
    gc.collect()
    s = interleaved_per_call(buses, repeats=repeats, min_time=min_time)
    m = {name: median(values) for name, values in s.items()}
    per_middleware = (m["5"] - m["0"]) / 5
    del keep
    return [
        Row(
            "middleware: what each pass-through middleware adds to a publish",
            in_unit(per_middleware, "µs"),
            "µs",
            note=stats_note(
                s["5"], "µs", f"with 5: median; with 0: {in_unit(m['0'], 'µs'):.2f} µs"
            ),
        ),
        ratio_row("  publish with 1 middleware / with none", m["1"], m["0"], None),
    ]


SECTION = Section(
    "bus", "EventBus: publish vs blinker, pyee, PyPubSub, zope.event; history; middleware", run
)
