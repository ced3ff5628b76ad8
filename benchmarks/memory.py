"""Issue 6: memory stays bounded while 1,000,000 events go through the whole in-process
stack: the bus with its bounded history and per-event traces, middleware, a handler
woven with ``MetricsAspect`` whose ``EffectMonad`` is performed by an ``EffectHandler``,
a ``subscribe_all`` handler, and a child event published from a handler every tenth
event. (``bus.watch`` is left out: it indexes the whole history on every root event,
which would make this run take minutes; its memory is the history's.)

The measurement runs in a child process of its own (``python -m benchmarks.memory
measure N``) so that nothing else shares its heap. After a warm-up of ``WARM_UP`` events,
which fills the history (1,000 events) and the metric reservoir (1,024 samples), it
records its resident set (``VmRSS``), publishes ``N`` more events while sampling the
resident set every ``N / 10`` events, and reports the growth: the last sample and the
largest one, each less the post-warm-up figure. Target: ≤ 10 MB.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ._harness import Config, Row, Section, Target

__all__ = ["SECTION", "measure"]

WARM_UP = 100_000
LIMIT_MB = 10.0


def rss_mb() -> float:
    """This process's current resident set size in MB (2**20 bytes), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource  # noqa: PLC0415  (no /proc: the peak is the best there is)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(events: int) -> dict[str, Any]:
    """In this (fresh) process: build the stack, warm up, publish ``events`` events."""
    from atlas_eda import (  # noqa: PLC0415
        AspectWeaver,
        Effect,
        EffectHandler,
        EffectMonad,
        EffectType,
        Event,
        EventBus,
        EventType,
        MetricsAspect,
    )

    handler = EffectHandler()
    performed = [0]

    def perform(effect: Effect) -> int:
        performed[0] += 1
        return performed[0]

    handler.register_handler(EffectType.LOGGING, perform)
    bus = EventBus(history_limit=1000, effect_handler=handler)
    metrics = MetricsAspect()
    weaver = AspectWeaver()
    weaver.register_aspect("metrics", metrics)

    class Service:
        def on_command(self, event: Event) -> EffectMonad[None]:
            n = event.data["n"]
            if n % 10 == 0:
                bus.publish(EventType.QUERY_EXECUTED, {"parent": n})
            return EffectMonad.pure(None).with_effect(
                Effect(EffectType.LOGGING, {"n": n}, f"command {n}")
            )

        def on_query(self, event: Event) -> None:
            return None

    service = Service()
    weaver.apply_aspect("metrics", service.on_command)
    weaver.apply_aspect("metrics", service.on_query)
    bus.subscribe(EventType.COMMAND_EXECUTED, service.on_command)
    bus.subscribe(EventType.QUERY_EXECUTED, service.on_query)
    seen = [0]

    def count(event: Event) -> None:
        seen[0] += 1

    bus.subscribe_all(count)
    bus.add_middleware(lambda event: event)

    def publish(start: int, stop: int) -> None:
        for n in range(start, stop):
            bus.publish(
                EventType.COMMAND_EXECUTED,
                {"n": n, "text": f"event number {n}"},
                source="bench",
                metadata={"i": n},
            )

    publish(0, WARM_UP)
    gc.collect()
    baseline = rss_mb()
    samples = []
    step = max(events // 10, 1)
    started = time.perf_counter()
    for first in range(WARM_UP, WARM_UP + events, step):
        publish(first, min(first + step, WARM_UP + events))
        samples.append(rss_mb())
    seconds = time.perf_counter() - started
    gc.collect()
    final = rss_mb()
    stats = metrics.get_metrics()["Service.on_command"]
    total = WARM_UP + events
    if stats["count"] != total or performed[0] != total or seen[0] != total * 11 // 10:
        raise RuntimeError(
            f"not every event went through: {stats['count']} measured, {performed[0]} "
            f"effects, {seen[0]} delivered to subscribe_all, expected {total}"
        )
    return {
        "events": events,
        "baseline": baseline,
        "final": final,
        "max": max(samples),
        "samples": samples,
        "seconds": seconds,
        "history": len(bus.get_history(limit=None)),
        "delivered": seen[0],
    }


def _child(events: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "measure", str(events)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if result.returncode:
        raise RuntimeError(f"benchmarks.memory measure failed:\n{result.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def run(config: Config) -> list[Row]:
    events = 200_000 if config.quick else 1_000_000
    m = _child(events)
    growth = m["final"] - m["baseline"]
    trend = ", ".join(f"{s - m['baseline']:+.1f}" for s in m["samples"])
    return [
        Row(
            f"RSS growth over {m['events']:,} events after a {WARM_UP:,}-event warm-up",
            growth,
            "MB",
            Target("<=", LIMIT_MB, "MB"),
            note=f"bus + history + traces + middleware + MetricsAspect + effects; "
            f"growth at each tenth: {trend} MB",
        ),
        Row("  largest growth while publishing", m["max"] - m["baseline"], "MB"),
        Row("  RSS after the warm-up", m["baseline"], "MB"),
        Row("  publish, per event (whole stack)", m["seconds"] / m["events"] * 1e6, "µs"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="publish N events in this process, print JSON")
    m.add_argument("events", type=int)
    args = parser.parse_args(argv)
    json.dump(measure(args.events), sys.stdout)


SECTION = Section(
    "memory",
    "bounded memory (issue 6: 1M events through bus, traces, metrics), child process",
    run,
)

if __name__ == "__main__":
    main()
