"""Saga figures (issue 17): a 3-step saga (its start event and two more steps, each step
one SQLite save of the saga's version, each step publishing the event of the next) beside
the same three saves done by hand through ``TemporalStore`` (a document created, then
updated twice, each write announced on the bus as the store does). Target ≤ 1.3: keeping
a process manager's state as a stored aggregate should cost about what storing a document
costs. Both stores are SQLite files in the same temporary directory, both buses trace;
timed interleaved, as every ratio in ``benchmarks/`` (see ``benchmarks.bus``)."""

from __future__ import annotations

import enum
import gc
import itertools
import tempfile
from pathlib import Path

from atlas_eda import Event, EventBus, Publish, Saga, SagaManager, TemporalStore, step
from atlas_eda.sagas import StepResult

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


class Leg(enum.Enum):
    """The benchmark saga's events."""

    START = "leg.start"
    MIDDLE = "leg.middle"
    END = "leg.end"


class ThreeSteps(Saga):
    """Start, two more steps, done: three versions, one save each."""

    starts_with = Leg.START
    correlation_key = "id"

    @step(Leg.START, emits=(Leg.MIDDLE,))
    def start(self, event: Event) -> StepResult:
        self.data["n"] = 1
        return Publish(Leg.MIDDLE, {"id": event.data["id"]})

    @step(Leg.MIDDLE, emits=(Leg.END,))
    def middle(self, event: Event) -> StepResult:
        self.data["n"] = 2
        return Publish(Leg.END, {"id": event.data["id"]})

    @step(Leg.END)
    def end(self, event: Event) -> StepResult:
        self.data["n"] = 3
        self.complete()
        return None


def run(config: Config) -> list[Row]:
    """A 3-step saga / three document writes by hand, SQLite."""
    repeats = 5 if config.quick else 11
    min_time = 0.05 if config.quick else 0.2
    with tempfile.TemporaryDirectory(prefix="atlas-bench-sagas-") as tmp:
        saga_bus = EventBus()
        saga_store = TemporalStore(saga_bus, url=f"sqlite:///{Path(tmp) / 'sagas.db'}")
        manager = SagaManager(saga_bus, saga_store)
        manager.register(ThreeSteps)
        hand_store = TemporalStore(EventBus(), url=f"sqlite:///{Path(tmp) / 'hand.db'}")
        keys = itertools.count()

        def saga() -> None:
            saga_bus.publish(Leg.START, {"id": next(keys)})

        def by_hand() -> None:
            document = hand_store.create_document("order", "n=1", "bench")
            hand_store.update_document(document, content="n=2")
            hand_store.update_document(document, content="n=3")

        saga()
        state = manager.get(manager.instances()[0].id)
        assert state is not None, "the benchmark saga was not stored"
        assert (state.status, state.steps) == ("completed", ("start", "middle", "end"))
        by_hand()
        gc.collect()
        try:
            s = interleaved_per_call(
                {"saga": saga, "by hand": by_hand}, repeats=repeats, min_time=min_time
            )
        finally:
            saga_store.close()
            hand_store.close()
    return [
        ratio_row(
            "3-step saga (3 SQLite saves) / the 3 saves by hand through TemporalStore",
            median(s["saga"]),
            median(s["by hand"]),
            Target("<=", 1.3, "x"),
        ),
        time_row("  3-step saga", s["saga"], "ms"),
        time_row("  create + 2 updates by hand", s["by hand"], "ms"),
    ]


SECTION = Section("sagas", "Sagas: a 3-step saga beside the same saves by hand", run)
