"""Graph figure (issue 17): ``bus.check()`` on a bus of 1,000 event types and 5,000
subscribers, each declaring one to three emitted types, an absolute target of ≤ 50 ms
(the issue sets it so: a check belongs at start-up, and must not be felt there).

What is timed is the whole ``bus.check()``: gathering every declaration from the bus's
signals and command table into an :class:`~atlas_eda.graph.EventGraph`, and
``graphlib.TopologicalSorter`` proving it acyclic. For information, the same bus with ten
two-type loops added, each allowed (``allow_cycle=True``): then ``graphlib`` reports a
cycle and Johnson's algorithm enumerates them all before ``check`` lets them pass.
Seeded: the same graph every run."""

from __future__ import annotations

import dataclasses
import enum
import functools
import random
from typing import Any

from atlas_eda import EventBus

from ._harness import Config, Row, Section, Target, per_call, time_row

__all__ = ["SECTION", "run"]

TYPES = 1000
"""Event types of the benchmark bus."""

HANDLERS = 5000
"""Subscribers of the benchmark bus, each declaring what it emits."""

LOOPS = 10
"""Allowed two-type loops added for the information row."""

Many = enum.Enum("Many", [f"T{i}" for i in range(TYPES)])  # type: ignore[misc]
"""The benchmark's 1,000 event types."""


def _noop(index: int, event: Any) -> None:
    return None


def make_bus(loops: int = 0) -> EventBus:
    """A bus with :data:`HANDLERS` declaring subscribers over :data:`TYPES` types: each
    emits one to three types later in the Enum (so the graph is acyclic), then ``loops``
    allowed loops between consecutive types."""
    rng = random.Random(17)
    members = list(Many)
    bus = EventBus()
    for index in range(HANDLERS):
        receives = rng.randrange(TYPES - 1)
        later = members[receives + 1 :]
        emits = rng.sample(later, min(len(later), rng.randint(1, 3)))
        bus.subscribe(members[receives], functools.partial(_noop, index), emits=emits)
    for index in range(loops):
        first, second = members[index * 2], members[index * 2 + 1]
        forth = functools.partial(_noop, HANDLERS + 2 * index)
        back = functools.partial(_noop, HANDLERS + 2 * index + 1)
        bus.subscribe(first, forth, emits=(second,))
        bus.subscribe(second, back, emits=(first,), allow_cycle=True)
    return bus


def run(config: Config) -> list[Row]:
    """``bus.check()`` on the acyclic bus (target) and with allowed loops (information)."""
    repeats = 5 if config.quick else 11
    acyclic = make_bus()
    looping = make_bus(LOOPS)
    acyclic.check()
    looping.check()
    assert acyclic.graph().cycles() == [], "the benchmark graph must be acyclic"
    assert len(looping.graph().cycles()) >= LOOPS, "the loops were not found"
    plain = per_call(acyclic.check, repeats=repeats, min_time=0.2, disable_gc=False)
    loops = per_call(looping.check, repeats=repeats, min_time=0.2, disable_gc=False)
    return [
        dataclasses.replace(
            time_row(
                f"bus.check(), {TYPES:,} types, {HANDLERS:,} declaring handlers, acyclic",
                plain,
                "ms",
            ),
            target=Target("<=", 50, "ms"),
        ),
        time_row(f"  the same with {LOOPS} allowed loops (every cycle enumerated)", loops, "ms"),
    ]


SECTION = Section("graph", "Graph: bus.check() on 1,000 types and 5,000 handlers", run)
