"""Issue 3's store and time-travel figures, on a SQLite file in a temporary directory.

The data set: ``docs`` documents with ``EVENTS_PER_DOC`` events each (100,000 events over
1,000 documents; ``--quick``: 10,000 over 100). It is written through the store's own
eventsourcing application (``store._application``, which the store holds and never hands
out), in the shape a live store would have: every document is created, then each round
updates every document once in a random order and saves the round in one
``save(*documents)`` (so the global log interleaves documents); every tenth version
also renames the document; one document in a hundred is deleted as its last event.
Snapshots are taken with ``take_snapshot(id, version=v)`` at every multiple of
``store.snapshot_interval``, exactly as ``TemporalStore`` does after each commit.

Everything read back is checked against the values written before anything is timed.

Figures (targets from issue 3, absolute, printed as such) and their same-run references:

- ``get_document(id, version=v)`` for random documents and versions, with snapshots
  (≤ 2 ms) and from the same file without snapshots, each beside eventsourcing's raw
  ``repository.get(uuid, version=v)`` on the same pairs, interleaved;
- the first ``timeline.state_at(p)`` (issue 20): on the store as built, which no timeline
  has read (≤ 500 ms: it reads each document from its newest snapshot, keeping a
  checkpoint in the store's database), beside eventsourcing reading and decoding the whole
  log, which any fold from position 1 costs at least; then the first call of a new
  timeline in a freshly opened store, at the end and at random positions (≤ 500 ms, the
  slowest);
- ``timeline.state_at(p)`` for random p after the first (≤ 250 ms); the reference decodes
  the same events since the last checkpoint with eventsourcing's recorder and mapper;
- one 200-row page ``timeline[i:i+200]`` (≤ 20 ms) beside eventsourcing's
  ``select_notifications`` + ``mapper.to_domain_event`` of the same 200 events.
"""

from __future__ import annotations

import gc
import inspect
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from atlas_eda import Document, DocumentState, TemporalStore, Timeline
from atlas_eda.timeline import KEEP_SPACING

from ._harness import (
    Config,
    Row,
    Section,
    Target,
    in_unit,
    median,
    ratio_row,
    sample_interleaved,
    stats_note,
)

__all__ = ["EVENTS_PER_DOC", "SECTION", "DataSet", "build", "content_at", "title_at"]

EVENTS_PER_DOC = 100
CHECKPOINT_EVERY: int = inspect.signature(Timeline).parameters["checkpoint_every"].default
"""``Timeline``'s default ``checkpoint_every``: how far back the state index's last
checkpoint can be, hence how many events ``state_at`` decodes at most (less one)."""

PAGE = 200

_FILLER = (
    "The quick brown fox jumps over the lazy dog while the event log keeps every version "
    "of this paragraph readable, so that time travel has something real to read."
)


RENAME_EVERY = 10
"""Each document is renamed at every tenth version."""

DELETE_ONE_IN = 100
"""One document in this many is deleted as its last event."""


def title_at(i: int, version: int) -> str:
    """Document ``i``'s title at ``version``: renamed every :data:`RENAME_EVERY` versions."""
    if version < RENAME_EVERY:
        return f"Document {i}"
    return f"Document {i} (rev {version // RENAME_EVERY * RENAME_EVERY})"


def content_at(i: int, version: int) -> str:
    """Document ``i``'s content at ``version``."""
    return f"{i}.{version} {_FILLER}"


def is_deleted_doc(i: int) -> bool:
    """One document in a hundred is deleted as its last event."""
    return i % DELETE_ONE_IN == DELETE_ONE_IN - 1


@dataclass
class DataSet:
    """What was written: the documents' ids in creation order and how long it took."""

    url: str
    ids: list[str]
    per_doc: int
    write_seconds: float
    snapshot_seconds: float

    @property
    def events(self) -> int:
        return len(self.ids) * self.per_doc

    def expected(self, i: int, version: int) -> tuple[str, str, bool]:
        """(title, content, is_deleted) of document ``i`` at ``version``."""
        deleted = is_deleted_doc(i) and version == self.per_doc
        fields_at = version - 1 if deleted else version
        return title_at(i, fields_at), content_at(i, fields_at), deleted


SNAPSHOT_INTERVAL = 20
"""The store's snapshot interval here. Each document has 100 versions: at the default
interval (100) only v=100 would have a snapshot, and the "no snapshots" rows show that case."""


def build(url: str, docs: int, per_doc: int = EVENTS_PER_DOC, seed: int = 0) -> DataSet:
    """Write ``docs x per_doc`` events into the (empty) store at ``url`` in rounds of one
    event per document, one transaction per round; snapshots as ``TemporalStore`` takes
    them. Returns the :class:`DataSet` describing what was written."""
    rng = random.Random(seed)
    store = TemporalStore(url=url, snapshot_interval=SNAPSHOT_INTERVAL)
    try:
        interval = store.snapshot_interval
        snapshot_seconds = 0.0
        start = time.perf_counter()
        documents = [
            Document(title=title_at(i, 1), content=content_at(i, 1), author=f"author-{i % 7}")
            for i in range(docs)
        ]
        index = {document.id: i for i, document in enumerate(documents)}
        store._application.save(*documents)
        for version in range(2, per_doc + 1):
            order = documents[:]
            rng.shuffle(order)
            for document in order:
                i = index[document.id]
                if version == per_doc and is_deleted_doc(i):
                    document.delete(reason="benchmark: deleted as its last event")
                else:
                    document.update(
                        title=title_at(i, version) if version % 10 == 0 else None,
                        content=content_at(i, version),
                        editor=f"editor-{version % 5}",
                    )
            store._application.save(*order)
            if interval and version % interval == 0:
                begin = time.perf_counter()
                for document in order:
                    store._application.take_snapshot(document.id, version=version)
                snapshot_seconds += time.perf_counter() - begin
        write_seconds = time.perf_counter() - start - snapshot_seconds
        return DataSet(
            url=url,
            ids=[document.document_id for document in documents],
            per_doc=per_doc,
            write_seconds=write_seconds,
            snapshot_seconds=snapshot_seconds,
        )
    finally:
        store.close()


# -- verification --------------------------------------------------------------------------


class VerificationError(AssertionError):
    """What was read back is not what was written: no figure would mean anything."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise VerificationError(message)


def verify(
    data: DataSet, store: TemporalStore, plain: TemporalStore, timeline: Timeline, rng: Any
) -> None:
    """Read back a sample of versions (with and without snapshots), the whole store's final
    state, a few past states and a page, and compare them with what was written."""
    _check(len(timeline) == data.events, f"timeline has {len(timeline)} events, not {data.events}")
    interval = store.snapshot_interval
    if interval and data.per_doc >= interval:
        for i in rng.sample(range(len(data.ids)), 5):
            found = (
                store.snapshots.get(UUID(data.ids[i]), desc=True, limit=1)
                if store.snapshots
                else []
            )
            versions = [s.originator_version for s in found]
            want = data.per_doc // interval * interval
            _check(versions == [want], f"document {i}: snapshot at {versions}, expected {want}")
    for _ in range(100):
        i = rng.randrange(len(data.ids))
        version = rng.randint(1, data.per_doc)
        title, content, deleted = data.expected(i, version)
        for source in (store, plain):
            document = source.get_document(data.ids[i], version=version)
            _check(
                document is not None
                and document.version == version
                and (document.title, document.content, document.is_deleted)
                == (title, content, deleted),
                f"document {i} v{version} read back as {document!r} from {source!r}",
            )
    _check(
        store.get_document(data.ids[0], version=data.per_doc + 1) is None,
        "a version past the end was found",
    )
    final = timeline.state_at(len(timeline))
    _check(list(final) == data.ids, "state_at(end) does not list every document in order")
    for i, document_id in enumerate(data.ids):
        live = store.get_document(document_id)
        _check(
            live is not None and DocumentState.of(live) == final[document_id],
            f"state_at(end) differs from get_document for document {i}",
        )
    for _ in range(5):
        position = rng.randint(1, len(timeline))
        state = timeline.state_at(position)
        _check(
            len(state) == min(position, len(data.ids)),
            f"state_at({position}) holds {len(state)} documents",
        )
        for document_id in rng.sample(list(state), min(5, len(state))):
            then = store.get_document(document_id, version=state[document_id].version)
            _check(
                then is not None and DocumentState.of(then) == state[document_id],
                f"state_at({position}) differs from get_document for {document_id}",
            )
    start = rng.randrange(len(timeline) - PAGE)
    page = timeline[start : start + PAGE]
    _check(
        [event.position for event in page] == list(range(start + 1, start + PAGE + 1)),
        f"page at {start} is not {PAGE} contiguous events",
    )


# -- the figures ---------------------------------------------------------------------------


def _ms(samples: list[float]) -> float:
    return in_unit(median(samples), "ms")


def run(config: Config) -> list[Row]:
    docs = 100 if config.quick else 1000
    n_reads, n_states, n_pages = (60, 7, 30) if config.quick else (300, 20, 100)
    n_cold = 5 if config.quick else 9
    rng = random.Random(config.seed)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="atlas-bench-store-") as tmp:
        url = f"sqlite:///{Path(tmp).absolute() / 'store.db'}"
        data = build(url, docs, seed=config.seed)
        label = f"{data.events:,} events / {docs:,} docs"
        rows.append(
            Row(
                f"build {label} (save in rounds of {docs:,})",
                data.write_seconds,
                "s",
                note=(
                    f"{data.events / data.write_seconds:,.0f} events/s written; snapshots "
                    f"took {data.snapshot_seconds:.1f} s more"
                ),
            )
        )
        # Before anything reads the store: the first timeline ever, which reads each document
        # from its snapshot and keeps a checkpoint in the store's database for the later ones.
        rows += _cold_states(url, data.events, rng, n_cold)
        gc.collect()
        # Reopened, as an application would: nothing is cached from the build.
        store = TemporalStore(url=url, snapshot_interval=SNAPSHOT_INTERVAL)
        plain = TemporalStore(url=url, snapshot_interval=0)
        try:
            timeline = store.timeline()
            verify(data, store, plain, plain.timeline(), rng)
            gc.collect()
            rows += _version_reads(data, store, plain, rng, n_reads)
            gc.collect()
            rows += _states(timeline, rng, n_states)
            gc.collect()
            rows += _pages(timeline, rng, n_pages)
        finally:
            store.close()
            plain.close()
    return rows


def _version_reads(
    data: DataSet, store: TemporalStore, plain: TemporalStore, rng: Any, n: int
) -> list[Row]:
    pairs = [(rng.randrange(len(data.ids)), rng.randint(1, data.per_doc)) for _ in range(n)]
    inputs = [(data.ids[i], UUID(data.ids[i]), v) for i, v in pairs]
    fns: dict[str, Callable[[tuple[str, UUID, int]], object]] = {
        "ours": lambda x: store.get_document(x[0], version=x[2]),
        "raw": lambda x: store.repository.get(x[1], version=x[2]),
        "ours_plain": lambda x: plain.get_document(x[0], version=x[2]),
        "raw_plain": lambda x: plain.repository.get(x[1], version=x[2]),
    }
    for fn in fns.values():  # warm up: statements prepared, pages cached
        for x in inputs[:5]:
            fn(x)
    s = sample_interleaved(fns, inputs)
    ms = {name: _ms(samples) for name, samples in s.items()}
    where = f"{n} random (document, version) pairs, v uniform in 1..{data.per_doc}"
    # The worst version: the most events to fold past the last snapshot at or below it.
    interval = store.snapshot_interval or data.per_doc
    worst_v = max(v for v in range(1, data.per_doc + 1) if v % interval != 0)
    worst_inputs = [(data.ids[i], UUID(data.ids[i]), worst_v) for i, _ in pairs[: n // 3]]
    w = sample_interleaved({"ours": fns["ours"], "raw": fns["raw"]}, worst_inputs)
    return [
        Row(
            f"get_document(id, version=v), random v, snapshots every {interval}",
            ms["ours"],
            "ms",
            Target("<=", 2, "ms"),
            note=stats_note(s["ours"], extra=where),
        ),
        Row("  ref: eventsourcing repository.get(uuid, version=v)", ms["raw"], "ms"),
        ratio_row("  ratio get_document / repository.get", ms["ours"], ms["raw"]),
        Row("get_document(id, version=v), random v, no snapshots", ms["ours_plain"], "ms"),
        Row("  ref: repository.get(uuid, version=v), no snapshots", ms["raw_plain"], "ms"),
        ratio_row(
            "  ratio get_document / repository.get (no snapshots)",
            ms["ours_plain"],
            ms["raw_plain"],
        ),
        ratio_row("no snapshots / snapshots (get_document)", ms["ours_plain"], ms["ours"]),
        Row(
            f"get_document(id, version={worst_v}), worst v, snapshots every {interval}",
            _ms(w["ours"]),
            "ms",
            Target("<=", 2, "ms"),
            note=f"folds {worst_v % interval} events on top of the last snapshot at or "
            f"before v={worst_v} (or from creation); snapshots every {interval} versions",
        ),
        Row(f"  ref: repository.get(uuid, version={worst_v})", _ms(w["raw"]), "ms"),
    ]


def _raw_read(store: TemporalStore, length: int) -> float:
    """Seconds eventsourcing takes to read and decode the whole log (its recorder's
    ``select_notifications`` in pages and its mapper's ``to_domain_event``): the least any
    fold from position 1 costs."""
    start = time.perf_counter()
    position = 1
    while position <= length:
        page = store.recorder.select_notifications(start=position, limit=PAGE)
        if not page:
            break
        for notification in page:
            store.mapper.to_domain_event(notification)
        position = page[-1].id + 1
    return time.perf_counter() - start


def _cold_states(url: str, length: int, rng: Any, n: int) -> list[Row]:
    """The first ``state_at`` of a timeline: on a store no timeline has read (it reads each
    document from its snapshot), then in ``n`` fresh stores and timelines, as a new process
    or a restarted notebook opens them (each from the nearest checkpoint kept before it,
    folding or reading by document)."""
    with TemporalStore(url=url, snapshot_interval=SNAPSHOT_INTERVAL) as store:
        raw = _raw_read(store, length)
    with TemporalStore(url=url, snapshot_interval=SNAPSHOT_INTERVAL) as store:
        start = time.perf_counter()
        first_state = Timeline(store).state_at(length)
        never_read = time.perf_counter() - start
    with TemporalStore(url=url, snapshot_interval=0) as plain:
        # eventsourcing's own rebuild of each document, from its events alone.
        rebuilt = {i: plain.get_document(i) for i in plain.list_document_ids()}
        _check(
            first_state == {i: DocumentState.of(d) for i, d in rebuilt.items() if d is not None},
            "the first state_at(end) ever differs from the documents rebuilt by eventsourcing",
        )
    positions = [length] + [rng.randint(1, length) for _ in range(n - 1)]
    samples: list[float] = []
    for position in positions:
        with TemporalStore(url=url, snapshot_interval=SNAPSHOT_INTERVAL) as store:
            start = time.perf_counter()
            state = Timeline(store).state_at(position)
            samples.append(time.perf_counter() - start)
            _check(
                position != length or state == first_state,
                "state_at(end) from a kept checkpoint differs from the whole fold",
            )
    spacing = max(CHECKPOINT_EVERY, math.ceil(KEEP_SPACING * len(first_state)))
    return [
        Row(
            f"timeline.state_at(p), first call ever on the store ({length:,} events)",
            in_unit(never_read, "ms"),
            "ms",
            Target("<=", 500, "ms"),
            note="no timeline has read the store yet: each document changed since the "
            "nearest checkpoint read from its newest snapshot at or below its version there "
            "and the events after it (batched queries), the state kept as a checkpoint in "
            "the store's database for the timelines after it",
        ),
        Row(f"  ref: eventsourcing reads and decodes all {length:,}", in_unit(raw, "ms"), "ms"),
        ratio_row("  ratio first call ever / raw read of the log", never_read, raw),
        Row(
            f"timeline.state_at(p), first call of a new timeline ({length:,} events)",
            in_unit(max(samples), "ms"),
            "ms",
            Target("<=", 500, "ms"),
            note=stats_note(
                samples,
                extra=f"the slowest of {n} (p = the end, then random), each in a freshly "
                "opened store: from the nearest kept checkpoint, folding fewer than "
                f"{spacing:,} events or reading the documents changed since it",
            ),
        ),
        ratio_row("  ratio first call of a new timeline / raw read of the log", max(samples), raw),
    ]


def _states(timeline: Timeline, rng: Any, n: int) -> list[Row]:
    store = timeline.store
    length = len(timeline)
    fresh = Timeline(store)

    def raw_fold(position: int) -> object:
        # The same events state_at folds on top of its checkpoint, decoded by eventsourcing.
        base = position // CHECKPOINT_EVERY * CHECKPOINT_EVERY
        if position == base:
            return []
        notifications = store.recorder.select_notifications(start=base + 1, limit=position - base)
        return [store.mapper.to_domain_event(n) for n in notifications]

    positions = [rng.randint(1, length) for _ in range(n)]
    s = sample_interleaved({"ours": fresh.state_at, "raw": raw_fold}, positions)
    ours, raw = _ms(s["ours"]), _ms(s["raw"])
    return [
        Row(
            "timeline.state_at(p), random p, after the first",
            ours,
            "ms",
            Target("<=", 250, "ms"),
            note=stats_note(s["ours"]),
        ),
        Row(f"  ref: decode the ≤{CHECKPOINT_EVERY - 1} events since checkpoint", raw, "ms"),
        ratio_row("  ratio state_at / raw decode", ours, raw),
    ]


def _pages(timeline: Timeline, rng: Any, n: int) -> list[Row]:
    store = timeline.store
    length = len(timeline)

    def raw_page(i: int) -> object:
        notifications = store.recorder.select_notifications(start=i + 1, limit=PAGE)
        return [store.mapper.to_domain_event(n) for n in notifications]

    starts = [rng.randrange(length - PAGE) for _ in range(n)]
    s = sample_interleaved({"ours": lambda i: timeline[i : i + PAGE], "raw": raw_page}, starts)
    ours, raw = _ms(s["ours"]), _ms(s["raw"])
    return [
        Row(
            f"timeline[i:i+{PAGE}], random i",
            ours,
            "ms",
            Target("<=", 20, "ms"),
            note=stats_note(s["ours"]),
        ),
        Row(f"  ref: select_notifications + to_domain_event x {PAGE}", raw, "ms"),
        ratio_row("  ratio page / raw", ours, raw),
    ]


SECTION = Section("store", "store & time travel (issue 3), SQLite file", run)
