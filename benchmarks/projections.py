"""Issue 18's projection figures, on SQLite files in a temporary directory.

- ``store.project()`` after each commit: ``create_document`` on a SQLite store (with a
  bus, default settings) that keeps a :class:`~atlas_eda.projections.DocumentsByAuthor`
  read model (its own SQLite file) up to date, over the same call on the same kind of
  store without it; the two timed interleaved, then again with the stores' roles swapped,
  the figure being the geometric mean of the two ratios (target ≤ 1.3 x).
- ``rebuild()`` of ``DocumentsByAuthor`` over the log of :func:`benchmarks.time_travel.build`
  (100,000 events over 1,000 documents; ``--quick``: 10,000 over 100): events applied
  per second, the median of 5 rebuilds (target ≥ 20,000 events/s). The read model is
  checked against the data set before anything is timed.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from atlas_eda import EventBus, TemporalStore
from atlas_eda.projections import DocumentsByAuthor

from ._harness import (
    Config,
    Row,
    Section,
    Target,
    in_unit,
    interleaved_per_call,
    median,
    stats_note,
)
from .time_travel import build, is_deleted_doc

__all__ = ["SECTION"]

REBUILDS = 5
PER_DOC = 100


def run(config: Config) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="atlas_eda_projections_") as scratch:
        directory = Path(scratch)
        return [*_after_commit(directory, config), *_rebuild(directory, config)]


def _after_commit(directory: Path, config: Config) -> list[Row]:
    first = TemporalStore(EventBus(), url=f"sqlite:///{directory}/first.db")
    second = TemporalStore(EventBus(), url=f"sqlite:///{directory}/second.db")
    try:
        # Two stores built alike still differ by a few percent (their files' places on
        # disk, their fsyncs): a good part of the target. So each takes a turn with the
        # projection, and the figure is the geometric mean of the two ratios, in which
        # what belongs to either store cancels out.
        one = _timed(first, second, directory / "views-first.db", config)
        two = _timed(second, first, directory / "views-second.db", config)
    finally:
        first.close()
        second.close()
    ratios = [median(s["projected"]) / median(s["plain"]) for s in (one, two)]
    with_projection = median([*one["projected"], *two["projected"]])
    without = median([*one["plain"], *two["plain"]])
    return [
        Row(
            "create_document with store.project(DocumentsByAuthor) / without (SQLite)",
            math.sqrt(ratios[0] * ratios[1]),
            "x",
            Target("<=", 1.3, "x"),
            note="geometric mean of the two ratios, each store with the projection in turn: "
            f"{ratios[0]:.3f} x and {ratios[1]:.3f} x",
        ),
        Row(
            "create_document without / with a projection",
            in_unit(without, "µs"),
            "µs",
            note=f"with: {in_unit(with_projection, 'µs'):.0f} µs; "
            + stats_note(one["projected"] + two["projected"], "µs"),
        ),
    ]


def _timed(
    projected: TemporalStore, plain: TemporalStore, home: Path, config: Config
) -> dict[str, list[float]]:
    """``create_document`` on ``projected`` keeping a read model at ``home`` up to date,
    and on ``plain`` without, timed interleaved; the read model checked after."""
    with DocumentsByAuthor(f"sqlite:///{home}") as view:
        stop = projected.project(view)  # catches up first: not timed
        try:

            def create_plain() -> object:
                return plain.create_document("Title", "content", "ada")

            def create_projected() -> object:
                return projected.create_document("Title", "content", "ada")

            samples = interleaved_per_call(
                {"plain": create_plain, "projected": create_projected},
                repeats=5 if config.quick else 9,
                min_time=0.1 if config.quick else 0.3,
            )
        finally:
            stop()
        created = projected.last_position()
        if view.position != created or view.by_author()[0]["documents"] != created:
            raise AssertionError("the read model missed some of the documents created")
    return samples


def _rebuild(directory: Path, config: Config) -> list[Row]:
    docs = 100 if config.quick else 1_000
    data = build(f"sqlite:///{directory}/log.db", docs, PER_DOC)
    store = TemporalStore(url=data.url, snapshot_interval=0)
    view = DocumentsByAuthor(f"sqlite:///{directory}/rebuilt.db")
    try:
        seconds: list[float] = []
        applied = 0
        for _ in range(REBUILDS):
            start = time.perf_counter()
            applied = view.rebuild(store)
            seconds.append(time.perf_counter() - start)
            _check(view, docs, applied, data.events)
        rate = applied / median(seconds)
        return [
            Row(
                f"rebuild() of DocumentsByAuthor over {applied:,} events",
                rate,
                "events/s",
                Target(">=", 20_000, "events/s"),
                note=stats_note(seconds, "ms"),
            )
        ]
    finally:
        view.close()
        store.close()


def _check(view: DocumentsByAuthor, docs: int, applied: int, events: int) -> None:
    """The rebuilt read model holds what the data set wrote."""
    live = sum(1 for i in range(docs) if not is_deleted_doc(i))
    counted = sum(row["documents"] for row in view.by_author())
    if applied != events or counted != live:
        raise AssertionError(
            f"rebuild applied {applied} of {events} events, counted {counted} of {live} "
            f"live documents"
        )


SECTION = Section(
    name="projections",
    title="Projections (issue 18): after each commit, rebuild",
    run=run,
)
