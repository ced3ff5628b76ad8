"""Prometheus collection on and off: the end-to-end row of ``benchmarks.end_to_end``
(``DocumentService`` create + update with aspects, effects, the bus and a SQLite store)
with a :class:`~atlas_eda.prometheus.PrometheusMetrics` watching its bus and timing its
effects and store writes, against a system built alike without one (issue 19: at most
1.05x). Two systems built alike differ by a few percent themselves, so each takes a turn
with the collector and the figure is the geometric mean of the two on/off ratios. The
registry is scraped after each timing, to show the counted work was real.

Figures:

- create + update with Prometheus collection on / off (target ≤ 1.05);
- for information: the absolute time of one create + update each way.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from prometheus_client import generate_latest

from atlas_eda import EffectHandler, EventBus, TemporalStore
from atlas_eda.prometheus import PrometheusMetrics

from ._harness import (
    Config,
    Row,
    Section,
    Target,
    interleaved_per_call,
    median,
    time_row,
)
from .end_to_end import system

__all__ = ["SECTION", "run"]


def run(config: Config) -> list[Row]:
    repeats = 7 if config.quick else 41
    min_time = 0.05 if config.quick else 0.2
    with tempfile.TemporaryDirectory(prefix="atlas_eda_bench_") as tmp:
        first = system(Path(tmp) / "first.db", traces=True)
        second = system(Path(tmp) / "second.db", traces=True)
        try:
            # Two systems built alike still differ by a few percent (their files, their
            # place in memory): as much as the target. So each takes a turn with the
            # collector, and the figure is the geometric mean of the two on/off ratios,
            # in which what belongs to either system cancels out.
            one = _timed(first, second, repeats, min_time)
            two = _timed(second, first, repeats, min_time)
        finally:
            first[1].close()
            second[1].close()
    on = [*one["on"], *two["on"]]
    off = [*one["off"], *two["off"]]
    ratio = math.sqrt(
        median(one["on"]) / median(one["off"]) * median(two["on"]) / median(two["off"])
    )
    return [
        Row(
            "DocumentService create + update (aspects, effects, bus, SQLite): "
            "Prometheus collection on / off",
            ratio,
            "x",
            Target("<=", 1.05, "x"),
            note="geometric mean of the two ratios, each system with the collector in turn: "
            f"{median(one['on']) / median(one['off']):.3f} x and "
            f"{median(two['on']) / median(two['off']):.3f} x",
        ),
        time_row("  create + update, Prometheus collection on", on, "ms"),
        time_row("  create + update, Prometheus collection off", off, "ms"),
    ]


def _timed(
    watched: tuple[Callable[[], object], TemporalStore, EventBus, EffectHandler],
    plain: tuple[Callable[[], object], TemporalStore, EventBus, EffectHandler],
    repeats: int,
    min_time: float,
) -> dict[str, list[float]]:
    """``watched``'s step with a collector on its bus, store and effect handler, and
    ``plain``'s without, timed interleaved; the registry scraped after."""
    step, store, bus, handler = watched
    metrics = PrometheusMetrics(bus=bus, store=store, effect_handler=handler)
    try:
        samples = interleaved_per_call(
            {"on": step, "off": plain[0]}, repeats=repeats, min_time=min_time
        )
        exposed = generate_latest(metrics.registry).decode()
        assert 'command="update_document"' in exposed  # what was timed was counted
    finally:
        metrics.close()
    return samples


SECTION = Section("prometheus", "Prometheus collection on the end-to-end system", run)
