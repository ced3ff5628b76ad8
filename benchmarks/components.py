"""Effects, aspects and store beside the raw libraries they stand on (issue 5).

Figures (each a ratio of two medians measured interleaved in the same run):

- ``EffectMonad.run`` of 3 effects through an ``EffectHandler`` / 3 x ``effect.sync_perform``
  of the same intents through the same handler's dispatcher (target ≤ 0.2); for
  information, / the 3 performer functions called directly;
- a method woven with ``LoggingAspect`` + ``MetricsAspect`` (logging below its level) / the
  same method woven with one aspectlib pass-through aspect (target ≤ 2.5); for
  information, / the plain call;
- ``TemporalStore.create_document`` / eventsourcing ``Application.save`` of an equivalent
  bare aggregate, on a SQLite file (target ≥ 0.8, as a rate: creates per second over
  saves per second) and in memory (information);
- ``get_document(id, version=9_999)`` of a 10,000-version document (1,000 with --quick)
  without snapshots / with snapshots every 100 (target ≥ 20).
"""

from __future__ import annotations

import functools
import gc
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aspectlib
import effect as fx
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from atlas_eda import (
    AspectWeaver,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
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
    per_call,
    ratio_row,
    stats_note,
    time_row,
)

__all__ = ["SECTION", "run"]


# -- effects -----------------------------------------------------------------------------


def _effect_rows(repeats: int, min_time: float) -> list[Row]:
    handler = EffectHandler()
    performed: list[Any] = []
    write, read, notify = performed.append, lambda e: e.payload, lambda e: None
    handler.register_handler(EffectType.DATABASE_WRITE, write)
    handler.register_handler(EffectType.DATABASE_READ, read)
    handler.register_handler(EffectType.NOTIFICATION, notify)
    intents = (
        Effect(EffectType.DATABASE_WRITE, 1),
        Effect(EffectType.DATABASE_READ, 2),
        Effect(EffectType.NOTIFICATION, 3),
    )
    monad = EffectMonad("value", intents)
    dispatcher = handler.dispatcher

    def run_monad() -> object:
        return monad.run(handler)

    def sync_perform_each() -> None:
        for intent in intents:
            fx.sync_perform(dispatcher, fx.Effect(intent))

    def direct() -> None:
        write(intents[0])
        read(intents[1])
        notify(intents[2])

    # What is timed really performs, and both ways give the same results.
    performed.clear()
    assert run_monad() == "value"
    sync_perform_each()
    assert performed == [intents[0], intents[0]]
    assert [fx.sync_perform(dispatcher, fx.Effect(i)) for i in intents] == [
        handler.handle(i) for i in intents
    ]
    s = interleaved_per_call(
        {"run": run_monad, "sync_perform": sync_perform_each, "direct": direct},
        repeats=repeats,
        min_time=min_time,
    )
    performed.clear()
    m = {name: median(values) for name, values in s.items()}
    return [
        ratio_row(
            "EffectMonad.run (3 effects) / 3 x effect.sync_perform",
            m["run"],
            m["sync_perform"],
            Target("<=", 0.2, "x"),
        ),
        ratio_row("  EffectMonad.run (3 effects) / the 3 performers called", m["run"], m["direct"]),
        time_row("  EffectMonad.run, 3 effects", s["run"], "µs"),
        time_row("  ref: 3 x effect.sync_perform", s["sync_perform"], "µs"),
    ]


# -- aspects -----------------------------------------------------------------------------


class _Service:
    """The woven target: one cheap method."""

    def total(self, a: int, b: int) -> int:
        return a + b


@aspectlib.Aspect  # type: ignore[misc]
def _pass_through(*args: Any, **kwargs: Any) -> Iterator[Any]:
    """An aspectlib aspect that only proceeds: the cost of weaving itself."""
    yield aspectlib.Proceed


def _aspect_rows(repeats: int, min_time: float) -> list[Row]:
    quiet = logging.getLogger("atlas_eda.bench.aspects")
    quiet.setLevel(logging.WARNING)  # the calls log at INFO and DEBUG: below the level
    quiet.propagate = False
    weaver = AspectWeaver()
    weaver.register_aspect("logging", LoggingAspect(quiet))
    metrics = MetricsAspect()
    weaver.register_aspect("metrics", metrics)
    woven = _Service()
    woven.total = weaver.apply_aspect("logging", woven.total)  # type: ignore[method-assign]
    woven.total = weaver.apply_aspect("metrics", woven.total)  # type: ignore[method-assign]
    plain = _Service()
    passed = _pass_through(_Service().total)
    assert woven.total(1, 2) == plain.total(1, 2) == passed(1, 2) == 1 + 2
    assert metrics.get_metrics()["_Service.total"]["count"] == 1
    s = interleaved_per_call(
        {
            "woven": functools.partial(woven.total, 1, 2),
            "pass": functools.partial(passed, 1, 2),
            "plain": functools.partial(plain.total, 1, 2),
        },
        repeats=repeats,
        min_time=min_time,
    )
    m = {name: median(values) for name, values in s.items()}
    return [
        ratio_row(
            "logging + metrics woven / one aspectlib pass-through",
            m["woven"],
            m["pass"],
            Target("<=", 2.5, "x"),
        ),
        ratio_row("  logging + metrics woven / plain call", m["woven"], m["plain"]),
        time_row("  woven call (logging below its level + metrics)", s["woven"], "µs"),
        time_row("  ref: aspectlib pass-through call", s["pass"], "µs"),
    ]


# -- store -------------------------------------------------------------------------------


class _Bare(Aggregate):
    """The bare eventsourcing aggregate a document's creation compares with."""

    @event("Created")
    def __init__(self, title: str, content: str, author: str) -> None:
        self.title = title
        self.content = content
        self.author = author


def _save_bare(app: Application) -> object:
    return app.save(_Bare("title", "content", "author"))


def _sqlite_env(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}


def _store_rows(config: Config, repeats: int, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    for where in ("SQLite file", "memory"):
        on_file = where == "SQLite file"
        store = TemporalStore(url=f"sqlite:///{workdir / 'store.db'}" if on_file else "memory://")
        bare = Application(env=_sqlite_env(workdir / "bare.db") if on_file else {})

        create = functools.partial(store.create_document, "title", "content", "author")
        save = functools.partial(_save_bare, bare)

        number = 200 if config.quick else 500
        s: dict[str, list[float]] = {"create": [], "save": []}
        for turn in range(repeats):
            order = (("create", create), ("save", save))
            for name, fn in order if turn % 2 == 0 else order[::-1]:
                s[name].extend(per_call(fn, number=number, repeats=5, disable_gc=False)[2:3])
        m = {name: median(values) for name, values in s.items()}
        target = Target(">=", 0.8, "x") if on_file else None
        rows += [
            ratio_row(
                f"create_document per second / bare eventsourcing save per second, {where}",
                m["save"],
                m["create"],
                target,
            ),
            time_row(f"  create_document, {where}", s["create"], "µs"),
            time_row(f"  ref: Application.save of a bare aggregate, {where}", s["save"], "µs"),
        ]
        store.close()
        bare.close()
    return rows


def _version_rows(config: Config, repeats: int, workdir: Path) -> list[Row]:
    versions = 1_000 if config.quick else 10_000
    url = f"sqlite:///{workdir / 'versions.db'}"
    with_snapshots = TemporalStore(url=url, snapshot_interval=100)
    doc_id = with_snapshots.create_document("t", "v1", "a")
    for n in range(2, versions + 1):
        with_snapshots.update_document(doc_id, content=f"v{n}")
    # The same file opened with snapshots off: its reads replay every event (building
    # the document through such a store would cost O(n²) reads).
    without = TemporalStore(url=url, snapshot_interval=None)
    ids = [doc_id, doc_id]
    wanted = versions - 1
    a = with_snapshots.get_document(ids[0], version=wanted)
    b = without.get_document(ids[1], version=wanted)
    assert a is not None
    assert b is not None
    assert (a.content, a.version) == (b.content, b.version) == (f"v{wanted}", wanted)
    samples_with = per_call(
        lambda: with_snapshots.get_document(ids[0], version=wanted), repeats=repeats
    )
    samples_without = per_call(
        lambda: without.get_document(ids[1], version=wanted), repeats=max(5, repeats // 3)
    )
    with_snapshots.close()
    without.close()
    return [
        ratio_row(
            f"get_document(version={wanted:,}) of a {versions:,}-version document: "
            f"without snapshots / with",
            median(samples_without),
            median(samples_with),
            Target(">=", 20, "x"),
        ),
        Row(
            "  with snapshots every 100",
            in_unit(median(samples_with), "ms"),
            "ms",
            note=stats_note(samples_with, "ms"),
        ),
        Row(
            "  without snapshots",
            in_unit(median(samples_without), "ms"),
            "ms",
            note=stats_note(samples_without, "ms"),
        ),
    ]


def run(config: Config) -> list[Row]:
    repeats = 7 if config.quick else 15
    min_time = 0.01 if config.quick else 0.03
    rows = _effect_rows(repeats, min_time) + _aspect_rows(repeats, min_time)
    with tempfile.TemporaryDirectory(prefix="atlas_eda_bench_") as tmp:
        gc.collect()
        rows += _store_rows(config, repeats, Path(tmp))
        rows += _version_rows(config, repeats, Path(tmp))
    return rows


SECTION = Section(
    "components", "Effects, aspects and store vs effect, aspectlib, eventsourcing", run
)
