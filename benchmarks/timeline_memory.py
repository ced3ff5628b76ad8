"""Issue 3: a Timeline over 1,000,000 events opens and pages within 100 MB RSS.

The SQLite file is built once and cached under ``config.cache_dir``, keyed by the
versions of everything that decides its bytes (atlas_eda, eventsourcing, the source of
``atlas_eda/document.py`` and this module's format number), so reruns skip the build.
It is written in big transactions straight through eventsourcing's recorder
(``store.recorder.insert_events``) with events encoded by ``store.mapper.to_stored_event``
from real ``Document`` aggregates updated in memory.

The measurement runs in a child process of its own, so that its resident set holds only
``import atlas_eda`` and the Timeline: it records its memory after the import (the
baseline), opens the store, reads ``len(timeline)``, 50 random 200-row pages and the last
page, and reports its peak. Run as ``python -m benchmarks.timeline_memory build|measure``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ._harness import Config, Row, Section, Target, median, rss_peak_mb

__all__ = ["SECTION", "cached_file"]

FORMAT = 1
"""Bump when the way the file is built changes, so that old cached files are not reused."""

PAGE = 200
PAGES = 50
DOCS_PER_MILLION = 10_000
EVENTS_PER_DOC = 100
BATCH = 50_000


def cache_key() -> str:
    """What decides the cached file's bytes, hashed."""
    import atlas_eda  # noqa: PLC0415
    from atlas_eda import document  # noqa: PLC0415

    es_version = metadata.version("eventsourcing")
    digest = hashlib.sha256()
    digest.update(f"{FORMAT}|{atlas_eda.__version__}|{es_version}|".encode())
    digest.update(Path(document.__file__).read_bytes())
    return digest.hexdigest()[:12]


def cached_file(cache_dir: Path, events: int) -> Path:
    return cache_dir / f"timeline-{events}-{cache_key()}.db"


def build(path: Path, events: int) -> None:
    """Write ``events`` events (``EVENTS_PER_DOC`` per document, rounds interleaving the
    documents as a live store would) into a new SQLite store at ``path``."""
    from atlas_eda import Document, TemporalStore  # noqa: PLC0415

    docs = max(events // EVENTS_PER_DOC, 1)
    rng = random.Random(events)
    store = TemporalStore(url=f"sqlite:///{path.absolute()}", snapshot_interval=0)
    try:
        to_stored = store.mapper.to_stored_event
        documents = [
            Document(title=f"Document {i}", content=f"{i}.1", author=f"author-{i % 7}")
            for i in range(docs)
        ]
        pending: list[Any] = []
        written = 0

        def collect(aggregates: list[Any]) -> None:
            nonlocal written
            for aggregate in aggregates:
                for domain_event in aggregate.collect_events():
                    pending.append(to_stored(domain_event))
            if len(pending) >= BATCH:
                store.recorder.insert_events(pending)
                written += len(pending)
                pending.clear()

        collect(documents)
        version = 1
        while written + len(pending) < events:
            version += 1
            order = documents[:]
            rng.shuffle(order)
            remaining = events - written - len(pending)
            order = order[:remaining]
            for document in order:
                document.update(
                    title=f"Document rev {version}" if version % 10 == 0 else None,
                    content=f"{version} The quick brown fox jumps over the lazy dog.",
                    editor=f"editor-{version % 5}",
                )
            collect(order)
        if pending:
            store.recorder.insert_events(pending)
        length = store.recorder.max_notification_id()
        if length != events:
            raise RuntimeError(f"built {length} events, expected {events}")
    finally:
        store.close()


def measure(path: Path, pages: int) -> dict[str, Any]:
    """In this (fresh) process: memory after ``import atlas_eda``, then open and page."""
    before = rss_peak_mb()
    import atlas_eda  # noqa: PLC0415

    baseline = rss_peak_mb()
    start = time.perf_counter()
    store = atlas_eda.TemporalStore(url=f"sqlite:///{path.absolute()}")
    timeline = store.timeline()
    length = len(timeline)
    open_seconds = time.perf_counter() - start
    rng = random.Random(length)
    durations = []
    for _ in range(pages):
        i = rng.randrange(length - PAGE)
        begin = time.perf_counter()
        page = timeline[i : i + PAGE]
        durations.append(time.perf_counter() - begin)
        if [e.position for e in page] != list(range(i + 1, i + PAGE + 1)):
            raise RuntimeError(f"page at {i} is not {PAGE} contiguous events")
    begin = time.perf_counter()
    last = timeline[-PAGE:]
    last_seconds = time.perf_counter() - begin
    if len(last) != PAGE or last[-1].position != length:
        raise RuntimeError("the last page does not end at the last event")
    peak = rss_peak_mb()
    store.close()
    return {
        "before_import": before,
        "baseline": baseline,
        "peak": peak,
        "length": length,
        "open_seconds": open_seconds,
        "page_seconds": durations,
        "last_page_seconds": last_seconds,
    }


def _child(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.timeline_memory", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if result.returncode:
        raise RuntimeError(
            f"benchmarks.timeline_memory {' '.join(args)} failed:\n{result.stderr[-2000:]}"
        )
    return result.stdout


def run(config: Config) -> list[Row]:
    events = 100_000 if config.quick else 1_000_000
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    path = cached_file(config.cache_dir, events)
    rows: list[Row] = []
    if path.exists():
        build_note = f"reused {path}"
    else:
        for stale in config.cache_dir.glob(f"timeline-{events}-*.db*"):
            stale.unlink()
        partial = path.with_name(path.name + ".partial")
        start = time.perf_counter()
        _child("build", str(partial), str(events))
        os.replace(partial, path)
        for leftover in config.cache_dir.glob(f"{partial.name}-*"):  # -wal, -shm
            leftover.unlink()
        seconds = time.perf_counter() - start
        build_note = f"built {path} in {seconds:.0f} s ({events / seconds:,.0f} events/s)"
        rows.append(Row(f"build the {events:,}-event file (one-off, cached)", seconds, "s"))
    m = json.loads(_child("measure", str(path), str(PAGES)))
    # VmHWM is this child's own peak; ru_maxrss can carry the parent's across exec.
    peak = m["peak"].get("VmHWM", m["peak"]["ru_maxrss"])
    base = m["baseline"].get("VmHWM", m["baseline"]["ru_maxrss"])
    size = path.stat().st_size / 2**20
    label = f"{m['length']:,}-event timeline"
    rows += [
        Row(
            f"{label}: peak RSS, open + {PAGES} pages + last",
            peak,
            "MB",
            Target("<=", 100, "MB"),
            note=(
                f"{build_note}; file {size:,.0f} MB; ru_maxrss {m['peak']['ru_maxrss']:.1f} MB "
                f"(includes what exec inherits)"
            ),
        ),
        Row("  baseline: import atlas_eda alone", base, "MB"),
        Row("  growth over the baseline", peak - base, "MB"),
        Row(f"  open + len(timeline) over {m['length']:,}", m["open_seconds"] * 1e3, "ms"),
        Row(
            f"  timeline[i:i+{PAGE}] at {m['length']:,}, random i",
            median(m["page_seconds"]) * 1e3,
            "ms",
        ),
    ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write a new SQLite store of N events at PATH")
    b.add_argument("path", type=Path)
    b.add_argument("events", type=int)
    m = sub.add_parser("measure", help="open PATH in this process and page through it")
    m.add_argument("path", type=Path)
    m.add_argument("pages", type=int, nargs="?", default=PAGES)
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.path, args.events)
    else:
        json.dump(measure(args.path, args.pages), sys.stdout)


SECTION = Section(
    "timeline-memory", "large-timeline memory (issue 3: 1M events), child process", run
)

if __name__ == "__main__":
    main()
