"""Issue 18's projection figures, on SQLite files in a temporary directory.

- ``store.project()`` after each commit: ``create_document`` on a SQLite store (with a
  bus, default settings) that keeps a :class:`~atlas_eda.projections.DocumentsByAuthor`
  read model (its own SQLite file) up to date, over the same call on the same kind of
  store without it; the two timed interleaved (target ≤ 1.3 x).
- ``rebuild()`` of ``DocumentsByAuthor`` over the log of :func:`benchmarks.time_travel.build`
  (100,000 events over 1,000 documents; ``--quick``: 10,000 over 100): events applied
  per second, the median of 5 rebuilds (target ≥ 20,000 events/s). The read model is
  checked against the data set before anything is timed.
"""

from __future__ import annotations

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
    ratio_row,
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
    plain = TemporalStore(EventBus(), url=f"sqlite:///{directory}/plain.db")
    projected = TemporalStore(EventBus(), url=f"sqlite:///{directory}/projected.db")
    view = DocumentsByAuthor(f"sqlite:///{directory}/views.db")
    try:
        projected.project(view)

        def create_plain() -> object:
            return plain.create_document("Title", "content", "ada")

        def create_projected() -> object:
            return projected.create_document("Title", "content", "ada")

        samples = interleaved_per_call(
            {"plain": create_plain, "projected": create_projected},
            repeats=5 if config.quick else 9,
            min_time=0.1 if config.quick else 0.3,
        )
        created = projected.last_position()
        if view.position != created or view.by_author()[0]["documents"] != created:
            raise AssertionError("the read model missed some of the documents created")
        with_projection, without = median(samples["projected"]), median(samples["plain"])
        return [
            ratio_row(
                "create_document with store.project(DocumentsByAuthor) / without (SQLite)",
                with_projection,
                without,
                Target("<=", 1.3, "x"),
            ),
            Row(
                "create_document without / with a projection",
                in_unit(without, "µs"),
                "µs",
                note=f"with: {in_unit(with_projection, 'µs'):.0f} µs; "
                + stats_note(samples["projected"], "µs"),
            ),
        ]
    finally:
        view.close()
        plain.close()
        projected.close()


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
