"""The ``atlas-eda`` command. Only this module prints."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .aspects import AspectWeaver, LoggingAspect, MetricsAspect
from .bus import EventBus
from .effects import Effect, EffectHandler, EffectType
from .errors import AtlasEdaError, DocumentDeletedError
from .events import Event
from .service import DocumentService
from .store import TemporalStore

__all__ = ["format_table", "main"]

DEMO_URL = "sqlite:///atlas-demo.db"

_CELL_WIDTH = 48


def format_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with a title line; long cells are shortened with an ellipsis."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    rule = "  ".join("-" * w for w in widths)
    header = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    lines = [title, "=" * len(title), header, rule]
    lines.extend(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
    if not cells:
        lines.append("(none)")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_short(v) if k == 'id' else v}" for k, v in value.items())
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 1] + "…"


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _short(identifier: Any) -> str:
    return str(identifier)[:8] if identifier else ""


def _history_rows(events: Sequence[Event]) -> list[list[Any]]:
    by_id = {e.id: n for n, e in enumerate(events, 1)}
    rows = []
    for n, event in enumerate(events, 1):
        cause = by_id.get(event.causation_id or "", "")
        rows.append([n, _when(event.timestamp), event.type.name, event.source, cause, event.data])
    return rows


def run_demo(url: str, *, out: Any = None) -> None:
    """The source document's scenario against the store at ``url``, then three tables:
    the bus history, every version of every stored document, and the service's metrics."""
    out = out or sys.stdout
    bus = EventBus()
    store = TemporalStore(bus, url=url)
    try:
        _demo(bus, store, out)
    finally:
        store.close()


def _demo(bus: EventBus, store: TemporalStore, out: Any) -> None:
    earlier = store.list_document_ids()
    handler = EffectHandler(temporal_store=store, event_bus=bus)
    performed: list[Effect] = []
    for effect_type in EffectType:
        handler.register_handler(effect_type, performed.append)
    service = DocumentService(bus, store, handler)

    logging_aspect = LoggingAspect(event_bus=bus)
    metrics_aspect = MetricsAspect()
    weaver = AspectWeaver()
    weaver.register_aspect("logging", logging_aspect)
    weaver.register_aspect("metrics", metrics_aspect)
    for method in ("create_document", "update_document", "delete_document", "get_document"):
        woven = weaver.apply_aspect("logging", getattr(service, method))
        setattr(service, method, weaver.apply_aspect("metrics", woven))

    print(f"Store {store.url}: {len(earlier)} document(s) from earlier runs.\n", file=out)
    design = service.create_document(
        "Event-Driven Architecture with NERV",
        "How to implement event-driven architecture...",
        "architect@example.com",
    )
    notes = service.create_document("Meeting notes", "Agenda: effects", "scribe@example.com")
    service.update_document(
        design, content="Updated content about event-driven architecture...", editor="reviewer"
    )
    service.update_document(design, title="Event-Driven Architecture (v2)", editor="architect")
    service.get_document(design)
    service.delete_document(notes, reason="superseded")
    try:
        service.update_document(notes, content="too late", editor="scribe")
    except DocumentDeletedError as exc:
        print(f"Refused as it should be: {exc}\n", file=out)

    history = list(reversed(bus.get_history(limit=None)))
    print(
        format_table(
            "Bus history (this run, oldest first)",
            ["#", "time (UTC)", "type", "source", "caused by #", "data"],
            _history_rows(history),
        ),
        file=out,
    )
    print(file=out)

    rows: list[list[Any]] = []
    for document_id in store.list_document_ids():
        latest = store.get_document(document_id)
        if latest is None:
            continue
        marker = "earlier" if document_id in earlier else "this run"
        for version in range(1, latest.version + 1):
            doc = store.get_document(document_id, version=version)
            if doc is None:
                continue
            rows.append(
                [
                    _short(document_id),
                    marker,
                    version,
                    doc.title,
                    doc.last_editor,
                    _when(doc.modified_at),
                    "deleted" if doc.is_deleted else "",
                ]
            )
    print(
        format_table(
            "Document versions (every document in the store)",
            ["document", "created", "version", "title", "last editor", "modified (UTC)", "state"],
            rows,
        ),
        file=out,
    )
    print(file=out)

    metrics = metrics_aspect.get_metrics()
    print(
        format_table(
            "Metrics (this run)",
            ["method", "count", "avg ms", "p95 ms", "errors"],
            [
                [
                    key,
                    m["count"],
                    f"{m['avg_time'] * 1e3:.2f}",
                    f"{m['p95'] * 1e3:.2f}",
                    m["errors"],
                ]
                for key, m in metrics.items()
            ],
        ),
        file=out,
    )
    print(f"\n{len(performed)} effects performed this run.", file=out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas-eda", description="Inspect and exercise an atlas_eda event mesh."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="run the reference scenario and print history, versions and metrics"
    )
    demo.add_argument(
        "--store",
        default=DEMO_URL,
        metavar="URL",
        help=f"store URL (default {DEMO_URL}: ./atlas-demo.db; memory:// for a throwaway one)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "demo":
            run_demo(args.store)
    except AtlasEdaError as exc:
        print(f"atlas-eda: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
