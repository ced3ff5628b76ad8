"""The main job end to end: ``DocumentService`` create + update, woven with
``LoggingAspect`` + ``MetricsAspect``, effects performed by an ``EffectHandler``, events on
the bus (with a subscriber that reads each document back), the store on a SQLite file.

Figures:

- create + update with traces on / with ``traces=False`` (issue 3: traces cost nothing
  measurable when nobody reads them; target ≤ 1.05);
- for information: the absolute time of one create + update each way.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atlas_eda import (
    AspectWeaver,
    DocumentService,
    EffectHandler,
    EffectType,
    EventBus,
    EventType,
    LoggingAspect,
    MetricsAspect,
    TemporalStore,
)

from ._harness import (
    Config,
    Row,
    Section,
    Target,
    in_unit,
    interleaved_per_call,
    median,
    ratio_row,
    stats_note,
    time_row,
)

__all__ = ["SECTION", "run", "system"]


def system(
    path: Path, *, traces: bool
) -> tuple[Callable[[], object], TemporalStore, EventBus, EffectHandler]:
    """A demo-like system on a SQLite file; returns the create-and-update step, its store,
    bus and effect handler."""
    bus = EventBus(traces=traces)
    store = TemporalStore(bus, url=f"sqlite:///{path}")
    handler = EffectHandler(temporal_store=store, event_bus=bus)
    for effect_type in EffectType:
        handler.register_handler(effect_type, lambda effect: {"success": True})
    service = DocumentService(bus, store, handler)
    quiet = logging.getLogger("atlas_eda.bench.end_to_end")
    quiet.setLevel(logging.WARNING)
    quiet.propagate = False
    weaver = AspectWeaver()
    weaver.register_aspect("logging", LoggingAspect(quiet, event_bus=bus))
    weaver.register_aspect("metrics", MetricsAspect())
    for method in ("create_document", "update_document"):
        woven = weaver.apply_aspect("logging", getattr(service, method))
        setattr(service, method, weaver.apply_aspect("metrics", woven))
    seen: list[Any] = []
    bus.subscribe(EventType.DOCUMENT_UPDATED, lambda event: seen.append(event.data))

    def step() -> object:
        document_id = service.create_document("Title", "Some content", "author@example.com")
        return service.update_document(document_id, content="Edited content", editor="editor")

    step()
    assert seen, "the benchmark system delivered no DOCUMENT_UPDATED event"
    seen.clear()
    return step, store, bus, handler


def run(config: Config) -> list[Row]:
    # SQLite's commits make single samples vary by ±20% while traces cost a few µs of
    # 2 ms: many repeats, so that the medians settle.
    repeats = 7 if config.quick else 41
    min_time = 0.05 if config.quick else 0.2
    with tempfile.TemporaryDirectory(prefix="atlas_eda_bench_") as tmp:
        traced, store_a, bus_a, _ = system(Path(tmp) / "traced.db", traces=True)
        untraced, store_b, _, _ = system(Path(tmp) / "untraced.db", traces=False)
        try:
            s = interleaved_per_call(
                {"traced": traced, "untraced": untraced}, repeats=repeats, min_time=min_time
            )
            last = bus_a.get_history(limit=1)[0]
            assert bus_a.trace(last.id).event == last  # what was timed really recorded
        finally:
            store_a.close()
            store_b.close()
    m = {name: median(values) for name, values in s.items()}
    paired = sorted(a / b for a, b in zip(s["traced"], s["untraced"], strict=True))
    return [
        ratio_row(
            "DocumentService create + update (aspects, effects, bus, SQLite): "
            "traces on / traces=False",
            m["traced"],
            m["untraced"],
            Target("<=", 1.05, "x"),
        ),
        Row(
            "  create + update, traces on",
            in_unit(m["traced"], "ms"),
            "ms",
            note=stats_note(
                s["traced"],
                "ms",
                f"paired traced/untraced ratios {paired[0]:.3f} to {paired[-1]:.3f}",
            ),
        ),
        time_row("  create + update, traces=False", s["untraced"], "ms"),
    ]


SECTION = Section(
    "end_to_end",
    "End to end: DocumentService on SQLite with aspects, effects and bus",
    run,
)
