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

- ``publish`` with traces on / with ``traces=False``, 1 and 10 no-op subscribers
  (issue 3: traces must cost nothing measurable when nobody reads them; target ≤ 1.05);
- ``publish`` (traces on, history on, no middleware) / raw ``blinker.Signal.send``, 1 and
  10 no-op receivers (issue 5's targets ≤ 1.0 and ≤ 0.6);
- for information: the absolute per-call times behind those ratios, and what reading one
  trace costs (``bus.trace(event_id)`` with a full history).
"""

from __future__ import annotations

import enum
import functools
import gc
import time
from collections.abc import Callable, Mapping
from typing import Any

import blinker

from atlas_eda import Event, EventBus

from ._harness import (
    MIN_REPEATS,
    Config,
    Row,
    Section,
    Target,
    in_unit,
    median,
    per_call,
    ratio_row,
    stats_note,
)

__all__ = ["SECTION", "interleaved_per_call", "run"]

HISTORY = 1000
"""The buses' ``history_limit`` (the default), filled before anything is timed."""


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


def _loop(fn: Callable[[], object], number: int) -> float:
    clock = time.perf_counter
    start = clock()
    for _ in range(number):
        fn()
    return clock() - start


def interleaved_per_call(
    fns: Mapping[str, Callable[[], object]], *, repeats: int, min_time: float
) -> dict[str, list[float]]:
    """Seconds per call of each function: ``repeats`` samples each, every sample the mean
    over a loop of the same ``number`` of calls, the functions alternating which goes first.
    ``number`` is calibrated so that the slowest function's loop lasts ``min_time``."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS}")
    names = list(fns)
    number = 1
    while max(_loop(fns[name], number) for name in names) < min_time and number < 10_000_000:
        number *= 2
    samples: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(repeats):
        order = names if turn % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(_loop(fns[name], number) / number)
    return samples


def _bus(subscribers: int, *, traces: bool) -> tuple[EventBus, list[Callable[[Any], None]]]:
    bus = EventBus(HISTORY, traces=traces)
    handlers = _noop_handlers(subscribers)
    for handler in handlers:
        bus.subscribe(Bench.TICK, handler)
    for _ in range(HISTORY + 10):  # at the bound: every timed publish also evicts one
        bus.publish(Bench.TICK)
    return bus, handlers


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


def run(config: Config) -> list[Row]:
    repeats = 7 if config.quick else 21
    min_time = 0.01 if config.quick else 0.03
    rows: list[Row] = []
    keep: list[Any] = []  # handlers stay alive while timed
    for count in (1, 10):
        plural = "subscriber" if count == 1 else "subscribers"
        traced, h1 = _bus(count, traces=True)
        untraced, h2 = _bus(count, traces=False)
        signal, h3 = _signal(count)
        keep += [h1, h2, h3]
        _check_deliveries(traced, count)
        _check_deliveries(untraced, count)
        fns: dict[str, Callable[[], object]] = {
            "traced": functools.partial(traced.publish, Bench.TICK),
            "untraced": functools.partial(untraced.publish, Bench.TICK),
            "blinker": signal.send,
        }
        gc.collect()
        s = interleaved_per_call(fns, repeats=repeats, min_time=min_time)
        m = {name: median(values) for name, values in s.items()}
        paired = sorted(a / b for a, b in zip(s["traced"], s["untraced"], strict=True))
        rows += [
            ratio_row(
                f"publish, traces on / traces=False, {count} no-op {plural}",
                m["traced"],
                m["untraced"],
                Target("<=", 1.05, "x"),
            ),
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
            Row(
                f"  publish, traces=False, {count} {plural}",
                in_unit(m["untraced"], "µs"),
                "µs",
                note=stats_note(s["untraced"], "µs"),
            ),
            Row(
                f"  ref: blinker Signal.send, {count} receiver{'s' if count > 1 else ''}",
                in_unit(m["blinker"], "µs"),
                "µs",
                note=stats_note(s["blinker"], "µs"),
            ),
            ratio_row(
                f"publish (traces, history) / blinker send, {count} {plural}",
                m["traced"],
                m["blinker"],
                Target("<=", 1.0 if count == 1 else 0.6, "x"),
            ),
        ]
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


SECTION = Section("bus", "EventBus: trace overhead (issue 3), publish vs blinker (issue 5)", run)
