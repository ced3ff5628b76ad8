"""Command figures (issue 17): ``bus.send`` of a command whose one handler returns a value
beside ``bus.publish`` of an event to one subscriber, both buses with traces and history
on and at their history bound (every call also evicts the oldest record). Target ≤ 1.2:
a command is a call with a result, recorded like an event, and should cost about what a
publish costs. Timed interleaved, as every ratio in ``benchmarks/`` (see
``benchmarks.bus``)."""

from __future__ import annotations

import enum
import functools
import gc
from typing import Any

from atlas_eda import CommandType, Event, EventBus

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
"""Both buses' ``history_limit`` (the default), filled before anything is timed."""


class Tick(enum.Enum):
    """The benchmark's event type."""

    TICK = "tick"


class Order(CommandType):
    """The benchmark's command type."""

    PLACE = "place"


def _answer(message: Event) -> int:
    return 1


def _noop(event: Event) -> None:
    return None


def run(config: Config) -> list[Row]:
    """``send`` / ``publish``, one handler each, traces on."""
    repeats = 7 if config.quick else 21
    min_time = 0.01 if config.quick else 0.03
    sending = EventBus(HISTORY)
    sending.handle(Order.PLACE, _answer)
    publishing = EventBus(HISTORY)
    publishing.subscribe(Tick.TICK, _noop)
    for _ in range(HISTORY + 10):  # at the bound
        sending.send(Order.PLACE)
        publishing.publish(Tick.TICK)
    assert sending.send(Order.PLACE) == 1, "the benchmark command returned no result"
    gc.collect()
    calls: dict[str, Any] = {
        "send": functools.partial(sending.send, Order.PLACE),
        "publish": functools.partial(publishing.publish, Tick.TICK),
    }
    s = interleaved_per_call(calls, repeats=repeats, min_time=min_time)
    return [
        ratio_row(
            "send (command, 1 handler returning a value) / publish (1 subscriber), traces on",
            median(s["send"]),
            median(s["publish"]),
            Target("<=", 1.2, "x"),
        ),
        time_row("  send, 1 handler", s["send"], "µs"),
        time_row("  publish, 1 subscriber", s["publish"], "µs"),
    ]


SECTION = Section("commands", "Commands: bus.send beside bus.publish", run)
