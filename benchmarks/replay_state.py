"""Store state in cassettes (issue 15): what recording the store changes costs, and
check-mode replay with state beside the live rate.

The workload is a :class:`~atlas_eda.service.DocumentService` on a real SQLite file store
(a fresh file for every sample), driven through the bus: each root event
(``BenchDoc.REQUESTED``) is delivered to a handler that creates a document through the
service (the store publishes ``DOCUMENT_CREATED``) and publishes ``BenchDoc.EDITED``, whose
handler updates the document through the service (``DOCUMENT_UPDATED``): four events per
root, every store write made inside a delivery, so a recorder given the store captures
each event's changes (``atlasstate``). Document ids are derived from the events, so a
replay into an empty store writes the recorded changes again.

Figures:

- **recording with state**: the workload recorded with ``record(bus, path, store=store)``
  / the same workload recorded with ``record(bus, path)`` (issue 15: ≤ 1.25). Both are
  sampled alternately (which goes first alternates), a fresh system and file each time;
  what is timed is publishing under the recorder and closing it; the ratio is of the two
  medians;
- **check-mode replay with state**: 10,000 store-backed events (2,000 with ``--quick``)
  recorded with state once per run into the cache directory; then, alternately, *live*
  (a fresh system publishing the same root events) and ``replay(cassette, bus, "check",
  store=store)`` into a fresh system with an empty store, the cassette already loaded
  (issue 15: replay rate / live rate ≥ 0.5). Building the systems is not timed. Every
  replay must report ``ok`` with every event matched, or the section fails.
"""

from __future__ import annotations

import enum
import gc
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas_eda import EffectHandler, EffectType, Event, EventBus, TemporalStore
from atlas_eda.service import DocumentService
from atlas_eda.testing import Cassette, record, register_types, replay

from ._harness import MIN_REPEATS, Config, Row, Section, Target, median, ratio_row, stats_note

__all__ = ["SECTION", "StoreSystem", "make_system", "run"]

EVENTS_PER_ROOT = 4
"""Each root event causes three more: DOCUMENT_CREATED, EDITED, DOCUMENT_UPDATED."""

RECORDING_ROOTS = 1_000
RECORDING_ROOTS_QUICK = 150
REPLAY_EVENTS = 10_000
REPLAY_EVENTS_QUICK = 2_000


class BenchDoc(enum.Enum):
    """The workload's own events."""

    REQUESTED = "bench.doc_requested"
    EDITED = "bench.doc_edited"


register_types(BenchDoc)


@dataclass
class StoreSystem:
    """A fresh system under test: its bus and the SQLite store its handlers write to."""

    bus: EventBus
    store: TemporalStore


def make_system(path: Path) -> StoreSystem:
    """A DocumentService on a new SQLite file ``path``, driven by ``BenchDoc`` events."""
    handler = EffectHandler()
    bus = EventBus(effect_handler=handler)
    handler.event_bus = bus
    store = TemporalStore(bus, url=f"sqlite:///{path}")
    for effect_type in EffectType:
        handler.register_handler(effect_type, lambda effect: {"success": True})
    service = DocumentService(bus, store, handler)

    def on_requested(event: Event) -> None:
        data = event.data
        document = service.create_document(data["title"], data["content"], data["author"])
        bus.publish(BenchDoc.EDITED, {"document": document, "n": data["n"]})

    def on_edited(event: Event) -> None:
        service.update_document(
            event.data["document"], content=f"edited {event.data['n']}", editor="bench"
        )

    bus.subscribe(BenchDoc.REQUESTED, on_requested)
    bus.subscribe(BenchDoc.EDITED, on_edited)
    return StoreSystem(bus, store)


def _roots(count: int) -> list[dict[str, Any]]:
    return [
        {"n": n, "title": f"Document {n}", "content": f"draft {n}", "author": "bench"}
        for n in range(count)
    ]


def _publish_all(bus: EventBus, roots: list[dict[str, Any]]) -> None:
    publish, requested = bus.publish, BenchDoc.REQUESTED
    for data in roots:
        publish(requested, data, "web")


class _Scratch:
    """Fresh file names in one temporary directory (a new SQLite file per sample)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def next(self, suffix: str) -> Path:
        self.count += 1
        return self.root / f"{self.count}{suffix}"


def _record_once(
    scratch: _Scratch, cassette: Path, roots: list[dict[str, Any]], *, state: bool
) -> tuple[int, float]:
    """Record ``roots`` published into a fresh system: the lines written and the seconds
    the recording took (publishing under the recorder and closing it; building the
    system is not timed)."""
    system = make_system(scratch.next(".db"))
    try:
        store = system.store if state else None
        gc.collect()
        start = time.perf_counter()
        with record(system.bus, cassette, store=store) as recorder:
            _publish_all(system.bus, roots)
        return recorder.lines, time.perf_counter() - start
    finally:
        system.store.close()


def _recording_rows(config: Config, scratch: _Scratch) -> list[Row]:
    roots = _roots(RECORDING_ROOTS_QUICK if config.quick else RECORDING_ROOTS)
    expected = len(roots) * EVENTS_PER_ROOT
    samples: dict[str, list[float]] = {"state": [], "plain": []}
    for turn in range(MIN_REPEATS):
        order = ["state", "plain"] if turn % 2 == 0 else ["plain", "state"]
        for name in order:
            cassette = scratch.next(".jsonl")
            lines, seconds = _record_once(scratch, cassette, roots, state=name == "state")
            if lines != expected:
                raise AssertionError(f"recorded {lines} events, expected {expected}")
            if name == "state" and '"atlasstate"' not in cassette.read_text(encoding="utf-8"):
                raise AssertionError("the recording with a store holds no state")
            samples[name].append(seconds)
    size = f"{len(roots):,} roots, {expected:,} events"
    paired = sorted(a / b for a, b in zip(samples["state"], samples["plain"], strict=True))
    return [
        ratio_row(
            f"recorded DocumentService workload on SQLite, with state / without, {size}",
            median(samples["state"]),
            median(samples["plain"]),
            Target("<=", 1.25, "x"),
        ),
        Row(
            f"  recording with state (store=store), {size}",
            expected / median(samples["state"]),
            "events/s",
            note=stats_note(
                samples["state"],
                "s",
                f"paired with/without ratios {paired[0]:.3f} to {paired[-1]:.3f}",
            ),
        ),
        Row(
            f"  recording without state, {size}",
            expected / median(samples["plain"]),
            "events/s",
            note=stats_note(samples["plain"], "s", "a fresh SQLite file each sample"),
        ),
    ]


def _replay_rows(config: Config, scratch: _Scratch) -> list[Row]:
    events = REPLAY_EVENTS_QUICK if config.quick else REPLAY_EVENTS
    roots = _roots(events // EVENTS_PER_ROOT)
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    path = config.cache_dir / f"replay-state-{events}.jsonl"
    lines, _ = _record_once(scratch, path, roots, state=True)
    if lines != events:
        raise AssertionError(f"recorded {lines} events, expected {events}")
    cassette = Cassette.load(path)

    def live() -> float:
        system = make_system(scratch.next(".db"))
        gc.collect()
        start = time.perf_counter()
        _publish_all(system.bus, roots)
        seconds = time.perf_counter() - start
        system.store.close()
        return seconds

    def check_replay() -> float:
        system = make_system(scratch.next(".db"))
        gc.collect()
        start = time.perf_counter()
        report = replay(cassette, system.bus, "check", store=system.store)
        seconds = time.perf_counter() - start
        system.store.close()
        if not report.ok or report.events_matched != lines:
            raise AssertionError(f"the benchmark's replay with state diverged: {report}")
        return seconds

    samples: dict[str, list[float]] = {"live": [], "check": []}
    for turn in range(MIN_REPEATS):
        order = ["live", "check"] if turn % 2 == 0 else ["check", "live"]
        for name in order:
            samples[name].append(live() if name == "live" else check_replay())
    replays = samples["check"]
    live_rate = lines / median(samples["live"])
    replay_rate = lines / median(replays)
    paired = sorted(s / r for r, s in zip(replays, samples["live"], strict=True))
    size = f"{lines:,} store-backed events"
    return [
        ratio_row(
            f"check replay with state rate / live publish rate, {size}",
            replay_rate,
            live_rate,
            Target(">=", 0.5, "x"),
        ),
        Row(
            f"  live publish (DocumentService on SQLite), {size}",
            live_rate,
            "events/s",
            note=stats_note(samples["live"], "s", f"{len(roots):,} root events"),
        ),
        Row(
            f"  replay(cassette, bus, 'check', store=store), {size}",
            replay_rate,
            "events/s",
            note=stats_note(
                replays,
                "s",
                f"the cassette already loaded, an empty store; paired replay/live rate "
                f"ratios {paired[0]:.3f} to {paired[-1]:.3f}",
            ),
        ),
    ]


def run(config: Config) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="atlas_eda_bench_state_") as workdir:
        scratch = _Scratch(Path(workdir))
        return _recording_rows(config, scratch) + _replay_rows(config, scratch)


SECTION = Section(
    "replay_state",
    "Store state in cassettes: recording with state, check replay with state (issue 15)",
    run,
)
