"""Prometheus collection on and off: the end-to-end row of ``benchmarks.end_to_end``
(``DocumentService`` create + update with aspects, effects, the bus and a SQLite store)
with a :class:`~atlas_eda.prometheus.PrometheusMetrics` watching its bus and timing its
effects and store writes, against the same system without one (issue 19: at most 1.05x). The
registry is scraped once after timing, to show the counted work was real.

Figures:

- create + update with Prometheus collection on / off (target ≤ 1.05);
- for information: the absolute time of one create + update each way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from prometheus_client import generate_latest

from atlas_eda.prometheus import PrometheusMetrics

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
from .end_to_end import system

__all__ = ["SECTION", "run"]


def run(config: Config) -> list[Row]:
    repeats = 7 if config.quick else 41
    min_time = 0.05 if config.quick else 0.2
    with tempfile.TemporaryDirectory(prefix="atlas_eda_bench_") as tmp:
        on, store_a, bus_a, handler_a = system(Path(tmp) / "on.db", traces=True)
        off, store_b, _, _ = system(Path(tmp) / "off.db", traces=True)
        metrics = PrometheusMetrics(bus=bus_a, store=store_a, effect_handler=handler_a)
        try:
            s = interleaved_per_call({"on": on, "off": off}, repeats=repeats, min_time=min_time)
            exposed = generate_latest(metrics.registry).decode()
            assert 'command="update_document"' in exposed  # what was timed was counted
        finally:
            metrics.close()
            store_a.close()
            store_b.close()
    m = {name: median(values) for name, values in s.items()}
    return [
        ratio_row(
            "DocumentService create + update (aspects, effects, bus, SQLite): "
            "Prometheus collection on / off",
            m["on"],
            m["off"],
            Target("<=", 1.05, "x"),
        ),
        time_row("  create + update, Prometheus collection on", s["on"], "ms"),
        time_row("  create + update, Prometheus collection off", s["off"], "ms"),
    ]


SECTION = Section("prometheus", "Prometheus collection on the end-to-end system", run)
