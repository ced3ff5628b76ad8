"""Issue 21: the inspector on a 1,000,000-event store, measured through its HTTP endpoints.

The store is the timeline section's cached SQLite file (``benchmarks.timeline_memory``:
1,000,000 events over 10,000 documents, ``--quick``: 100,000), built once and reused.
The app (``atlas_eda.inspector.app``) is served by uvicorn on 127.0.0.1 in a thread of
this process and asked over real HTTP (urllib), as the page asks it:

- the first page: on a freshly opened store and a fresh server, ``GET /api/summary`` then
  ``GET /api/events`` (the log's last 50 events, what the page shows first), timed
  together; five fresh servers, median (target ≤ 300 ms);
- scrubbing: ``GET /api/state?position=p`` for 20 random positions after the first, to
  the last position, where the page's state view opens (reported alone as info: on a
  file no timeline has read it folds the whole log, keeping checkpoints in the file; on
  later runs it starts from the nearest kept one, and so does each scrub after it); the
  slowest of the 20 (target ≤ 500 ms), and their median as info;
- the sagas view: ``GET /api/sagas?position=p`` for 5 random positions (info): the file
  holds no saga, so this is what finding the saga rows of a big log costs.

Every answer is checked (its position, its length) before a figure is kept.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._harness import Config, Row, Section, Target, median
from .timeline_memory import cached_file

__all__ = ["SECTION"]

FRESH_SERVERS = 5
SCRUBS = 20
SAGA_VIEWS = 5
FIRST_PAGE = 50


@contextmanager
def _served(path: Path) -> Iterator[str]:
    """The inspector of the store at ``path`` on a free port of 127.0.0.1."""
    import uvicorn  # noqa: PLC0415

    from atlas_eda import TemporalStore  # noqa: PLC0415
    from atlas_eda.inspector.app import create_app  # noqa: PLC0415

    store = TemporalStore(url=f"sqlite:///{path.absolute()}")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(store.timeline()), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the inspector's server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
        store.close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=600) as answer:
        return json.loads(answer.read())


def _first_page(path: Path, events: int) -> float:
    with _served(path) as base:
        start = time.perf_counter()
        summary = _get(f"{base}/api/summary")
        page = _get(f"{base}/api/events?limit={FIRST_PAGE}")
        seconds = time.perf_counter() - start
    positions = [e["position"] for e in page["events"]]
    if summary["last_position"] != events or positions != list(
        range(events - FIRST_PAGE + 1, events + 1)
    ):
        raise RuntimeError(f"the first page is not the log's last {FIRST_PAGE} events")
    return seconds


def _scrub(base: str, position: int) -> float:
    start = time.perf_counter()
    state = _get(f"{base}/api/state?position={position}")
    seconds = time.perf_counter() - start
    if state["position"] != position or state["event"]["position"] != position:
        raise RuntimeError(f"the state at {position} is not the state at {position}")
    return seconds


def _sagas(base: str, position: int) -> float:
    start = time.perf_counter()
    answer = _get(f"{base}/api/sagas?position={position}")
    seconds = time.perf_counter() - start
    if answer["position"] != position or answer["count"] != 0:
        raise RuntimeError(f"the sagas view at {position} is not the (empty) sagas at {position}")
    return seconds


def run(config: Config) -> list[Row]:
    events = 100_000 if config.quick else 1_000_000
    path = cached_file(config.cache_dir, events)
    rows: list[Row] = []
    if not path.exists():
        from .timeline_memory import run as build_through_timeline_section  # noqa: PLC0415

        start = time.perf_counter()
        build_through_timeline_section(config)  # builds and caches the same file
        rows.append(
            Row(
                f"build the {events:,}-event file (one-off, cached)",
                time.perf_counter() - start,
                "s",
            )
        )
    firsts = [_first_page(path, events) for _ in range(FRESH_SERVERS)]
    kept = _has_kept_checkpoints(path, events)
    rng = random.Random(config.seed)
    with _served(path) as base:
        index_seconds = _scrub(base, events)
        scrubs = [_scrub(base, rng.randint(1, events)) for _ in range(SCRUBS)]
        sagas = [_sagas(base, rng.randint(1, events)) for _ in range(SAGA_VIEWS)]
    label = f"{events:,}-event store"
    rows += [
        Row(
            f"inspector, {label}: first page (summary + last {FIRST_PAGE} events, fresh server)",
            median(firsts) * 1e3,
            "ms",
            Target("<=", 300, "ms"),
            note=f"median of {FRESH_SERVERS} fresh servers; slowest {max(firsts) * 1e3:.0f} ms",
        ),
        Row(
            f"inspector, {label}: scrub to a random position, slowest of {SCRUBS}",
            max(scrubs) * 1e3,
            "ms",
            Target("<=", 500, "ms"),
            note="GET /api/state after the first; each folds from the nearest checkpoint, "
            "in the server's memory or kept in the store's database",
        ),
        Row(f"  median scrub of {SCRUBS}", median(scrubs) * 1e3, "ms"),
        Row(
            "  the first scrub, to the end: "
            + (
                "from the nearest checkpoint kept in the file"
                if kept
                else "no checkpoint kept yet: folds the whole log, keeping them"
            ),
            index_seconds,
            "s",
        ),
        Row(
            f"inspector, {label}: sagas view at a random position, median of {SAGA_VIEWS}",
            median(sagas) * 1e3,
            "ms",
            note=f"GET /api/sagas (no saga in this log); slowest {max(sagas) * 1e3:.0f} ms",
        ),
    ]
    return rows


def _has_kept_checkpoints(path: Path, events: int) -> bool:
    """Whether a timeline has read the cached file before (in an earlier run) and kept
    checkpoints in it, which the first scrub then starts from."""
    from atlas_eda import TemporalStore  # noqa: PLC0415

    with TemporalStore(url=f"sqlite:///{path.absolute()}") as store:
        return store.state_checkpoint(events) is not None


SECTION = Section("inspector", "Inspector over HTTP (issue 21)", run)
