"""The demo: a small system built from every part of the library, and the source document's
scenario played on it as commands on the bus. ``atlas-eda demo`` runs it against a store
and writes its report; ``tests/cassettes/demo.jsonl`` is a recording of it, with the store
changes each command caused, replayed into :func:`demo_system`."""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TextIO, cast

from .aspects import MetricsAspect
from .bus import EventBus
from .document import Document
from .effects import Effect, EffectHandler, EffectType
from .errors import DocumentDeletedError
from .events import Event
from .runtime import SERVICE_METHODS, Runtime
from .service import DocumentService
from .store import TemporalStore
from .testing.types import register_types
from .views import short_id, text_table, when

__all__ = ["DemoCommand", "DemoSystem", "demo_session", "demo_system"]

WOVEN_METHODS = SERVICE_METHODS
"""The ``DocumentService`` methods the demo weaves its logging and metrics aspects onto
(those a :class:`~atlas_eda.runtime.Runtime` weaves its aspects onto)."""

WOVEN_ASPECTS = ("logging", "metrics")
"""The aspects the demo weaves onto those methods, innermost first."""

MILLISECONDS = 1e3
"""Milliseconds per second: the metrics table shows times in milliseconds."""


class DemoCommand(Enum):
    """The demo's commands, published as root events whose handlers call the woven
    ``DocumentService``. Every write thus happens inside a delivery: the store records the
    command as its cause, derives the ids of the documents a command creates from the
    command's id (so replaying the recorded commands into an empty store creates the same
    ids), and a recording with the store captures each command's changes."""

    CREATE = "demo.create"
    """Create a document: data ``title``, ``content``, ``author``."""
    UPDATE = "demo.update"
    """Update ``document``: data ``document``, ``editor`` and ``title`` and/or ``content``."""
    DELETE = "demo.delete"
    """Delete ``document``: data ``document``, ``reason``."""


register_types(DemoCommand)

UPDATABLE = ("title", "content")
"""The fields a ``DemoCommand.UPDATE`` may change."""


@dataclass
class DemoSystem:
    """The demo's system: a bus, a store on it, an effect handler whose performers only
    collect the effects (``performed``), a ``DocumentService`` whose methods are woven
    with a logging and a metrics aspect (``metrics``), and the handlers of
    :class:`DemoCommand` on the bus, which keep the ids of the documents they created
    (``documents``, oldest first); ``runtime`` is the :class:`Runtime` holding the parts
    (its ``close()`` closes them in order)."""

    bus: EventBus
    store: TemporalStore
    handler: EffectHandler
    service: DocumentService
    metrics: MetricsAspect
    runtime: Runtime
    performed: list[Effect] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)


def demo_system(url: str = "memory://", *, bus: EventBus | None = None) -> DemoSystem:
    """Build the demo's system on a store at ``url`` (in memory by default) and on ``bus``
    (a new ``EventBus`` when not given): a :class:`~atlas_eda.runtime.Runtime` whose
    effect performers collect the effects, with the logging and metrics aspects woven
    onto its service (close it with ``system.runtime.close()``). Also the factory of the
    demo cassette:
    ``atlas-eda replay tests/cassettes/demo.jsonl --app atlas_eda.demo:demo_system``."""
    performed: list[Effect] = []
    runtime = Runtime(
        url,
        bus=bus,
        aspects=WOVEN_ASPECTS,
        effects=dict.fromkeys(EffectType, performed.append),
    )
    # Woven by name above, so the runtime holds one (its type says "when woven").
    metrics = cast(MetricsAspect, runtime.metrics)
    system = DemoSystem(
        runtime.bus,
        runtime.store,
        runtime.effect_handler,
        runtime.service,
        metrics,
        runtime,
        performed,
    )
    _subscribe_commands(system)
    return system


def _subscribe_commands(system: DemoSystem) -> None:
    """Subscribe the handlers of :class:`DemoCommand` on the system's bus. Each calls the
    woven service, looked up at each call."""
    service = system.service

    def on_create(event: Event) -> None:
        data = event.data
        created = service.create_document(data["title"], data["content"], data["author"])
        system.documents.append(created)

    def on_update(event: Event) -> None:
        data = event.data
        changes = {name: data[name] for name in UPDATABLE if name in data}
        service.update_document(data["document"], editor=data["editor"], **changes)

    def on_delete(event: Event) -> None:
        service.delete_document(event.data["document"], reason=event.data["reason"])

    system.bus.subscribe(DemoCommand.CREATE, on_create)
    system.bus.subscribe(DemoCommand.UPDATE, on_update)
    system.bus.subscribe(DemoCommand.DELETE, on_delete)


def demo_session(system: DemoSystem, *, out: TextIO | None = None) -> None:
    """Run the source document's scenario on ``system`` and write its report to ``out``
    (standard output by default): how many documents the store held before, the refused
    update of a deleted document, then three tables: the bus history, every version of
    every stored document, and the service's metrics."""
    out = out or sys.stdout
    earlier = set(system.store.list_document_ids())
    print(f"Store {system.store.url}: {len(earlier)} document(s) from earlier runs.\n", file=out)
    refusal = _play(system)
    if refusal is not None:
        print(f"Refused as it should be: {refusal}\n", file=out)
    for table in (
        _history_table(system.bus),
        _versions_table(system.store, earlier),
        _metrics_table(system.metrics),
    ):
        print(table, file=out)
        print(file=out)
    print(f"{len(system.performed)} effects performed this run.", file=out)


def _play(system: DemoSystem) -> DocumentDeletedError | None:
    """The source document's scenario, as commands on the bus: two documents created, one
    updated twice and read, the other deleted and then updated, which the service refuses
    (the refusal is returned; ``None`` would mean the deleted document accepted the
    update). The refused update is a direct call, outside any delivery: the ``ERROR``
    event ``LoggingAspect`` publishes for it carries a measured duration, which no replay
    causes again equal, so a recording holds it as a root event, replayed as it was."""
    bus = system.bus
    bus.publish(
        DemoCommand.CREATE,
        {
            "title": "Event-Driven Architecture with NERV",
            "content": "How to implement event-driven architecture...",
            "author": "architect@example.com",
        },
        "demo",
    )
    design = system.documents[-1]
    bus.publish(
        DemoCommand.CREATE,
        {"title": "Meeting notes", "content": "Agenda: effects", "author": "scribe@example.com"},
        "demo",
    )
    notes = system.documents[-1]
    bus.publish(
        DemoCommand.UPDATE,
        {
            "document": design,
            "content": "Updated content about event-driven architecture...",
            "editor": "reviewer",
        },
        "demo",
    )
    bus.publish(
        DemoCommand.UPDATE,
        {"document": design, "title": "Event-Driven Architecture (v2)", "editor": "architect"},
        "demo",
    )
    system.service.get_document(design)
    bus.publish(DemoCommand.DELETE, {"document": notes, "reason": "superseded"}, "demo")
    try:
        system.service.update_document(notes, content="too late", editor="scribe")
    except DocumentDeletedError as exc:
        return exc
    return None


def _history_table(bus: EventBus) -> str:
    """The bus's history, oldest first, each event with the row number of its cause."""
    events: list[Event] = list(reversed(bus.get_history(limit=None)))
    row_of = {event.id: n for n, event in enumerate(events, 1)}
    rows = [
        [
            n,
            when(event.timestamp),
            event.type.name,
            event.source,
            row_of.get(event.causation_id or "", ""),
            event.data,
        ]
        for n, event in enumerate(events, 1)
    ]
    return text_table(
        "Bus history (this run, oldest first)",
        ["#", "time (UTC)", "type", "source", "caused by #", "data"],
        rows,
    )


def _versions_table(store: TemporalStore, earlier: Collection[str]) -> str:
    """Every version of every document in the store, saying which were there before."""
    rows: list[list[Any]] = []
    for document_id in store.list_document_ids():
        marker = "earlier" if document_id in earlier else "this run"
        rows.extend(
            [
                short_id(document_id),
                marker,
                doc.version,
                doc.title,
                doc.last_editor,
                when(doc.modified_at),
                "deleted" if doc.is_deleted else "",
            ]
            for doc in _versions(store, document_id)
        )
    return text_table(
        "Document versions (every document in the store)",
        ["document", "created", "version", "title", "last editor", "modified (UTC)", "state"],
        rows,
    )


def _versions(store: TemporalStore, document_id: str) -> Iterator[Document]:
    """Each version of a document, the first one first."""
    latest = store.get_document(document_id)
    if latest is None:
        return
    for version in range(1, latest.version + 1):
        document = store.get_document(document_id, version=version)
        if document is not None:
            yield document


def _metrics_table(metrics: MetricsAspect) -> str:
    """Calls, average and 95th-percentile time, and errors of each woven method."""
    return text_table(
        "Metrics (this run)",
        ["method", "count", "avg ms", "p95 ms", "errors"],
        [
            [
                key,
                m["count"],
                f"{m['avg_time'] * MILLISECONDS:.2f}",
                f"{m['p95'] * MILLISECONDS:.2f}",
                m["errors"],
            ]
            for key, m in metrics.get_metrics().items()
        ],
    )
