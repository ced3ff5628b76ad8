"""The ``atlas-eda`` command. Only this module prints."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import logging
import os
import re
import sqlite3
import sys
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, NoReturn
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from eventsourcing.domain import EventSourcingError

from .aspects import AspectWeaver, LoggingAspect, MetricsAspect
from .bus import EventBus
from .effects import Effect, EffectHandler, EffectType
from .errors import AtlasEdaError, CassetteWarning, DocumentDeletedError, ScenarioError
from .events import Event, type_name
from .follower import StoreFollower
from .service import DocumentService
from .store import ENV_VAR, TemporalStore, persistence_settings
from .testing import Cassette, register_types, replay
from .testing.replay import MODES
from .testing.scenario import _parts
from .timeline import DocumentState, RecordedEvent

__all__ = ["format_table", "main"]

DEMO_URL = "sqlite:///atlas-demo.db"

_CELL_WIDTH = 48


def format_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    max_width: int = _CELL_WIDTH,
) -> str:
    """A plain-text table with a title line; cells longer than ``max_width`` characters
    are shortened with an ellipsis."""
    cells = [[_cell(v, max_width) for v in row] for row in rows]
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


def _cell(value: Any, max_width: int = _CELL_WIDTH) -> str:
    if value is None:
        text = ""
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_short(v) if k == 'id' else v}" for k, v in value.items())
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


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
    system = demo_system(url)
    try:
        demo_session(system, out=out or sys.stdout)
    finally:
        system.store.close()


@dataclass
class DemoSystem:
    """The demo's system: a bus, a store on it, an effect handler whose performers only
    collect the effects (``performed``), and a ``DocumentService`` whose methods are woven
    with a logging and a metrics aspect (``metrics``)."""

    bus: EventBus
    store: TemporalStore
    handler: EffectHandler
    service: DocumentService
    metrics: MetricsAspect
    performed: list[Effect] = field(default_factory=list)


def demo_system(url: str = "memory://", *, bus: EventBus | None = None) -> DemoSystem:
    """Build the demo's system on a store at ``url`` (in memory by default) and on ``bus``
    (a new ``EventBus`` when not given). Also the factory of the demo cassette:
    ``atlas-eda replay tests/cassettes/demo.jsonl --app atlas_eda.cli:demo_system``."""
    bus = bus if bus is not None else EventBus()
    store = TemporalStore(bus, url=url)
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
    return DemoSystem(bus, store, handler, service, metrics_aspect, performed)


def demo_session(system: DemoSystem, *, out: Any = None) -> None:
    """Run the source document's scenario on ``system`` and print (to ``out``, standard
    output by default) the bus history, every document version and the metrics."""
    out = out or sys.stdout
    bus, store, service = system.bus, system.store, system.service
    metrics_aspect, performed = system.metrics, system.performed
    earlier = store.list_document_ids()
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


# -- time travel: log, show, diff -------------------------------------------------------

TIME_FORMAT = (
    "YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM], e.g. 2024-05-01T12:30:00 or 2024-05-01T12:30:00.5+02:00"
)
"""The ``--at`` format, as error messages and ``--help`` show it."""

DEFAULT_LIMIT = 50
"""How many rows ``atlas-eda log`` prints when ``--limit`` is not given."""


class CommandError(AtlasEdaError):
    """A command-line argument names something the store does not hold (or is malformed);
    the message says what to do instead."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error of the
    command: ``atlas-eda: error: ...`` with a pointer to ``--help``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error on one line and exit with status 2."""
        self.exit(2, f"atlas-eda: error: {message} (see '{self.prog} --help')\n")


def _iso(seconds: float | None) -> str:
    """A UTC time to the microsecond (exact enough to paste back into ``--at``)."""
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _iso_dt(moment: datetime) -> str:
    """An aware datetime as :func:`_iso` prints it (in UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _value(field: str, value: Any) -> str:
    """A document field's value as text: times as UTC, ``None`` as empty."""
    if value is None:
        return ""
    if field.endswith("_at") and isinstance(value, int | float) and not isinstance(value, bool):
        return _iso(float(value))
    return str(value)


def _wrap(text: str, width: int = _CELL_WIDTH) -> list[str]:
    """``text`` cut into lines that fit a table cell, so long values are shown whole."""
    lines: list[str] = []
    for line in text.split("\n") or [""]:
        lines.extend(
            textwrap.wrap(line, width, break_on_hyphens=False, replace_whitespace=False, tabsize=4)
            or [""]
        )
    return lines


def _wrapped_rows(row: Sequence[str]) -> list[list[str]]:
    """One table row per line of the row's longest cell; further lines leave the cells
    that have no more text empty."""
    columns = [_wrap(cell) for cell in row]
    height = max(len(c) for c in columns)
    return [[c[i] if i < len(c) else "" for c in columns] for i in range(height)]


_SUMMARY_WIDTH = 80
"""The width of the ``changes`` column of ``atlas-eda log``."""


def _summary(event: RecordedEvent) -> str:
    """What an event changed, on one line: each new value, long ones shortened."""
    parts = []
    for name, value in event.changes.items():
        text = repr(value)
        if len(text) > 24:
            text = text[:22] + "…" + text[-1]
        parts.append(f"{name}={text}")
    return ", ".join(parts)


def _store_url(given: str | None) -> str:
    """The ``--store`` URL, else ``$ATLAS_EDA_STORE_URL``; a clear error when neither."""
    url = given if given is not None else os.environ.get(ENV_VAR)
    if not url:
        raise CommandError(
            f"no store given: pass --store URL (for example --store sqlite:///atlas-demo.db) "
            f"or set {ENV_VAR}."
        )
    return url


def _check_existing(url: str) -> None:
    """Refuse a URL whose SQLite file does not exist (opening it would create an empty
    database); unknown schemes and missing directories are refused by the store's own
    URL check, before anything is created."""
    settings = persistence_settings(url)
    name = settings.get("SQLITE_DBNAME")
    if name is None or name == ":memory:":
        return
    if name.startswith("file:"):
        parts = urlsplit(name)
        if parse_qs(parts.query).get("mode") == ["memory"]:
            return
        path = Path(parts.path)
    else:
        path = Path(name)
    if not path.is_file():
        raise CommandError(
            f"the SQLite file {str(path)!r} (from {url!r}) does not exist; check the path "
            f"(three slashes mean a path relative to {os.getcwd()!r}, four an absolute one)."
        )


class _ExistingStore(TemporalStore):
    """A store opened only to read what is already there: eventsourcing is told not to
    create its tables, so a SQLite file that is not an atlas_eda store is reported
    rather than having empty tables added to it."""

    name = TemporalStore.name  # the same configuration keys and tables as the store's
    env: ClassVar[dict[str, str]] = {f"{TemporalStore.name.upper()}_CREATE_TABLE": "n"}


@contextmanager
def _open_store(given: str | None) -> Iterator[TemporalStore]:
    """An existing store, opened for reading and closed afterwards. Database errors while
    reading become one clear :class:`CommandError`."""
    url = _store_url(given)
    _check_existing(url)
    store = _ExistingStore(url=url)
    try:
        yield store
    except (sqlite3.Error, EventSourcingError) as exc:
        raise CommandError(
            f"could not read the store at {url!r}: {exc}. Is it an atlas_eda store?"
        ) from exc
    finally:
        store.close()


def run_follow(
    url: str | None,
    *,
    name: str | None = None,
    from_start: bool = False,
    limit: str | None = None,
    timeout: str | None = None,
) -> None:
    """Print the store's document events as they are committed, one line each, until
    ``limit`` events or ``timeout`` seconds (or Ctrl-C)."""
    store_url = _store_url(url)
    _check_existing(store_url)
    count = None if limit is None else _integer(limit, "--limit")
    if count is not None and count < 1:
        raise CommandError(f"--limit must be at least 1, got {limit!r}.")
    seconds: float | None = None
    if timeout is not None:
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise CommandError(f"--timeout must be a positive number of seconds, got {timeout!r}.")
    bus = EventBus()

    def show(event: Event) -> None:
        data = dict(event.data)
        position = event.metadata.get("notification_id")
        document_id, version = data.pop("id"), data.pop("version")
        rest = ", ".join(f"{k}={v!r}" for k, v in data.items() if v is not None)
        print(
            f"{position:>6}  {_iso(event.timestamp)}  {event.type.name:<16}  "
            f"{document_id}  v{version}  {rest}".rstrip(),
            flush=True,
        )

    bus.subscribe_all(show)
    with (
        StoreFollower(store_url, bus, name, from_start=from_start) as follower,
        contextlib.suppress(KeyboardInterrupt),  # Ctrl-C: stop quietly
    ):
        follower.run(timeout=seconds, limit=count)


def _integer(text: str, what: str) -> int:
    """``text`` as an int; a :class:`CommandError` naming the argument ``what`` if not."""
    try:
        return int(text)
    except ValueError:
        raise CommandError(f"{what} must be a whole number, got {text!r}.") from None


def _position(text: str, what: str, last: int) -> int:
    """A position in a log whose last position is ``last`` (0 = before the first event);
    ``what`` names the argument in messages (``--since``, ``A``, ``B``)."""
    position = _integer(text, what)
    label = what if what.startswith("-") else f"position {what}"
    if position < 0:
        raise CommandError(
            f"{label} is {position}, a negative position: positions run from 0 (before the "
            f"first event) to {last}, the last recorded position."
        )
    if position > last:
        raise CommandError(
            f"{label} is {position}, past the end: the last recorded position is {last}"
            + (" (the store holds no events yet)." if last == 0 else ".")
        )
    return position


def _resolve_document(store: TemporalStore, given: str) -> tuple[str, int]:
    """The full id of the document ``given`` names (its id, or a unique prefix of it, such
    as the 8 characters the demo prints) and its latest version."""
    key: UUID | None
    try:
        key = UUID(given)
    except ValueError:
        key = None
    if key is None:
        prefix = given.strip().lower()
        matches = (
            [i for i in store.list_document_ids() if i.startswith(prefix)]
            if len(prefix) >= 4
            else []
        )
        if len(matches) > 1:
            raise CommandError(
                f"{given!r} is the start of {len(matches)} document ids; give more of the id "
                f"(list them with: atlas-eda log --store {store.url})."
            )
        key = UUID(matches[0]) if matches else None
    latest = store.recorder.select_events(key, desc=True, limit=1) if key is not None else []
    if not latest:
        raise CommandError(
            f"no document has id {given!r} in {store.url}; list the document ids with: "
            f"atlas-eda log --store {store.url}"
        )
    return str(key), latest[0].originator_version


def _parse_time(text: str) -> datetime:
    """An ISO-8601 time; one without a UTC offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--at {text!r} is not an ISO-8601 time: expected {TIME_FORMAT}."
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _versions_line(latest: int, shown: int) -> str:
    """The line under ``show``'s table: the document's versions (the middle elided when
    there are many), how many, which one is shown."""
    if latest > 12:
        numbers = [*map(str, range(1, 6)), "…", *map(str, range(latest - 4, latest + 1))]
    else:
        numbers = [str(v) for v in range(1, latest + 1)]
    noun = "version" if latest == 1 else "versions"
    return f"Versions: {', '.join(numbers)} ({latest} {noun}; shown: {shown}, latest: {latest})"


def run_log(
    url: str | None, *, document: str | None = None, since: str = "1", limit: str | None = None
) -> None:
    """Print the store's log from position ``since`` on, oldest first, at most ``limit``
    rows (only ``document``'s events when given); reads only the rows it prints."""
    rows_wanted = DEFAULT_LIMIT if limit is None else _integer(limit, "--limit")
    if rows_wanted < 1:
        raise CommandError(f"--limit must be at least 1, got {rows_wanted}.")
    with _open_store(url) as store:
        last = len(store.timeline())
        # The log starts at 1, also in an empty store (where only a later --since is
        # past the end); --since 0 means the same.
        if last == 0 and _integer(since, "--since") in (0, 1):
            start = 1
        else:
            start = max(_position(since, "--since", last), 1)
        document_id, latest = _resolve_document(store, document) if document else (None, 0)
        page = rows_wanted if document_id is None else 200
        timeline = store.timeline(page_size=max(1, min(page, 200)))
        events = list(
            itertools.islice(timeline.iter_from(start, document_id=document_id), rows_wanted)
        )
        if not events:
            hidden = 0
        elif document_id is None:
            hidden = last - events[-1].position
        else:
            hidden = latest - events[-1].version
        scope = f", document {document_id}" if document_id else ""
        span = f"positions {events[0].position} to {events[-1].position}" if events else "no events"
        print(
            format_table(
                f"Log of {store.url}{scope}: {span} (the log has {last} in all)",
                ["position", "time (UTC)", "document", "version", "kind", "changes"],
                [
                    [
                        e.position,
                        _iso_dt(e.timestamp),
                        e.document_id,
                        e.version,
                        e.kind,
                        _summary(e),
                    ]
                    for e in events
                ],
                max_width=_SUMMARY_WIDTH,
            )
        )
        if hidden:
            noun = "event" if hidden == 1 else "events"
            print(
                f"\n{hidden} more {noun} not shown; use --since/--limit "
                f"(next page: --since {events[-1].position + 1})."
            )


def run_show(
    document: str, url: str | None, *, version: str | None = None, at: str | None = None
) -> None:
    """Print every field of a document at its latest version, at ``version``, or as of the
    ISO-8601 time ``at`` (UTC when it has no offset), and the list of its versions."""
    moment = _parse_time(at) if at is not None else None
    with _open_store(url) as store:
        document_id, latest = _resolve_document(store, document)
        if version is not None:
            wanted = _integer(version, "--version")
            if not 1 <= wanted <= latest:
                raise CommandError(
                    f"document {document_id} has no version {wanted}: its latest version is "
                    f"{latest} (versions run from 1 to {latest})."
                )
            found = store.get_document(document_id, version=wanted)
            how = f"version {wanted}"
        elif moment is not None:
            found = store.get_document_at(document_id, moment)
            if found is None:
                first = store.get_document(document_id, version=1)
                created = _iso(first.created_at) if first is not None else "later"
                raise CommandError(
                    f"document {document_id} did not exist yet at {_iso_dt(moment)} UTC: it "
                    f"was created at {created} UTC; give a later --at time."
                )
            how = f"as of {_iso_dt(moment)} UTC: version {found.version}"
        else:
            found = store.get_document(document_id)
            how = f"latest version {latest}"
        if found is None:  # the store changed under us, or the log is inconsistent
            raise CommandError(f"document {document_id} could not be read at {how}.")
        state = DocumentState.of(found)
        rows: list[list[str]] = []
        for name, value in state.as_dict().items():
            rows.extend(_wrapped_rows([name, _value(name, value)]))
        print(format_table(f"Document {document_id}, {how}", ["field", "value"], rows))
        print()
        print(_versions_line(latest, state.version))


def run_diff(url: str | None, a: str, b: str) -> None:
    """Print what differs in the store between positions ``a`` and ``b`` (0 = empty)."""
    with _open_store(url) as store:
        timeline = store.timeline()
        last = len(timeline)
        first, second = _position(a, "A", last), _position(b, "B", last)
        diff = timeline.diff(first, second)
        if not diff:
            print(f"no differences between position {first} and position {second}.")
            return
        rows: list[list[str]] = []
        for document_id, change, name, before, after in diff.rows():
            rows.extend(
                _wrapped_rows(
                    [document_id, change, name, _value(name, before), _value(name, after)]
                )
            )
        print(
            format_table(
                f"Differences in {store.url} from position {first} to position {second}: "
                f"{len(diff.added)} added, {len(diff.removed)} removed, "
                f"{len(diff.changed)} changed",
                ["document", "change", "field", f"before (#{first})", f"after (#{second})"],
                rows,
            )
        )


def run_cassette(path: str, *, types: Sequence[str] = (), app: str | None = None) -> None:
    """Print the cassette at ``path`` as a table: one row per recorded event, with the
    line of the event that caused it and how many effects it performed. ``types``
    (``module:EnumName`` each) and ``app``'s module (``module:factory``; imported, the
    factory is not called) register the cassette's own event and effect types first."""
    register_type_specs(types)
    if app is not None:
        import_app_module(app)
    cassette = Cassette.load(path)
    line_of = {entry.event.id: entry.line for entry in cassette}
    rows = [
        [
            entry.line,
            _iso(entry.event.timestamp),
            type_name(entry.event.type),
            _id_tail(entry.event.id),
            line_of.get(entry.event.causation_id or "", ""),
            _data_summary(entry.event.data),
            len(entry.effects),
        ]
        for entry in cassette
    ]
    roots = len(cassette.roots())
    print(
        format_table(
            f"Cassette {path}: {len(cassette)} events, {roots} root events",
            ["line", "time (UTC)", "type", "id", "caused by", "data", "effects"],
            rows,
            max_width=_SUMMARY_WIDTH,
        )
    )


# -- replay ------------------------------------------------------------------------------

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def _split_spec(spec: str, option: str, example: str) -> tuple[str, str]:
    """``module:attribute`` split in two; a :class:`CommandError` if it is not that."""
    module, colon, attribute = spec.partition(":")
    if not colon or not _DOTTED.match(module) or not _DOTTED.match(attribute):
        raise CommandError(
            f"{option} {spec!r} is not module:name; give a module path and a name in it, "
            f"for example {option} {example}."
        )
    return module, attribute


def _import(module: str, option: str) -> ModuleType:
    """Import ``module`` (the user named it on the command line), with the current
    directory on ``sys.path`` as ``python -m`` would have it."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(f"{exc.name}.")):
            raise CommandError(
                f"{option}: no module named {module!r} (looked in {here!r} and on sys.path); "
                f"run from the directory that holds it or add that directory to PYTHONPATH."
            ) from None
        raise CommandError(
            f"{option}: importing {module!r} failed: ModuleNotFoundError: {exc}."
        ) from None
    except Exception as exc:
        raise CommandError(
            f"{option}: importing {module!r} raised {type(exc).__name__}: {exc}."
        ) from None


def _attribute(module: ModuleType, path: str, option: str, spec: str) -> Any:
    value: Any = module
    for part in path.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CommandError(
                f"{option} {spec!r}: module {module.__name__!r} has no {path!r}."
            ) from None
    return value


def register_type_specs(specs: Sequence[str]) -> None:
    """Register with the replay harness the Enum classes named ``module:EnumName``
    (``--types``); a :class:`CommandError` for a name that is not an Enum class."""
    for spec in specs:
        module_name, name = _split_spec(spec, "--types", "myapp.events:OrderEvent")
        found = _attribute(_import(module_name, "--types"), name, "--types", spec)
        if not (isinstance(found, type) and issubclass(found, Enum)):
            raise CommandError(
                f"--types {spec!r} is a {type(found).__name__}, not an Enum class; name the "
                f"Enum class of your event or effect types."
            )
        register_types(found)


def import_app_module(spec: str) -> tuple[ModuleType, str]:
    """Import the module of ``--app module:factory`` (which may register its types) and
    return it with the factory's name within it."""
    module_name, name = _split_spec(spec, "--app", "myapp.testing:make_system")
    return _import(module_name, "--app"), name


def load_app(spec: str) -> Any:
    """The system under test of ``--app module:factory``: the module is imported and the
    factory called without arguments. It must return what a scenario's ``make_system``
    returns: an ``EventBus``, a ``(bus, store)`` tuple, or an object with a ``.bus`` (or
    ``.event_bus``). Anything else, or a factory that raises, is a :class:`CommandError`."""
    module, name = import_app_module(spec)
    factory = _attribute(module, name, "--app", spec)
    if not callable(factory):
        raise CommandError(
            f"--app {spec!r} is a {type(factory).__name__}, not a callable; name a function "
            f"that takes no arguments and returns a fresh system under test."
        )
    try:
        return factory()
    except Exception as exc:
        raise CommandError(
            f"--app {spec!r}: calling {name}() raised {type(exc).__name__}: {exc}."
        ) from None


def run_replay(
    path: str,
    app: str,
    *,
    mode: str = "check",
    strict: bool = True,
    strict_order: bool = True,
    types: Sequence[str] = (),
    verbose: bool = False,
) -> int:
    """Replay the cassette at ``path`` into the system ``app``'s factory builds and print
    the report; returns 0 when the system behaved as recorded, 1 when it diverged. The
    bus's log of handler failures is silenced during the replay unless ``verbose``."""
    register_type_specs(types)
    import_app_module(app)  # its types must be registered before the cassette loads
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always", CassetteWarning)
        cassette = Cassette.load(path, strict=strict)
    for warning in skipped:
        print(f"atlas-eda: warning: {warning.message}", file=sys.stderr)
    system = load_app(app)
    try:
        bus, store = _parts(system, f"--app {app!r}: the factory")
    except ScenarioError as exc:
        raise CommandError(str(exc)) from None
    # A replay re-raises recorded failures on purpose, and the report shows the ERROR
    # events they cause: the bus's log of each (with a traceback) is noise unless -v.
    bus_logger = logging.getLogger("atlas_eda.bus")
    level = bus_logger.level
    if not verbose:
        bus_logger.setLevel(logging.CRITICAL)
    try:
        report = replay(cassette, bus, mode, strict_order=strict_order)
    finally:
        bus_logger.setLevel(level)
        if store is not None:
            store.close()
    total, roots = len(cassette), len(cassette.roots())
    print(
        f"Replay of {path} into {app} ({mode} mode): {total} recorded events, {roots} root events."
    )
    if report.divergence is None:
        print(f"OK: the system behaved as recorded ({report.events_matched} events matched).")
        return 0
    print(
        f"DIVERGED at line {report.divergence.position}, after {report.events_matched} of "
        f"{total} events matched:"
    )
    print(report.divergence)
    return 1


def _id_tail(event_id: str) -> str:
    """The last 8 characters of an id: the ids one process makes share their beginning."""
    return f"…{event_id[-8:]}" if len(event_id) > 8 else event_id


def _data_summary(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, dict):
        return ", ".join(f"{k}={v!r}" for k, v in data.items())
    return repr(data)


# -- the command line -------------------------------------------------------------------

_STORE_HELP = (
    f"store URL, e.g. sqlite:///atlas-demo.db (default: ${ENV_VAR} when set; the file "
    f"must exist, it is never created)"
)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="atlas-eda", description="Inspect and exercise an atlas_eda event mesh.")
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

    log = sub.add_parser(
        "log",
        help="the store's log of events, oldest first",
        description="Print the store's global ordered log: position, time (UTC), document, "
        "version, kind of change and what changed, oldest first.",
    )
    log.add_argument("--store", metavar="URL", help=_STORE_HELP)
    log.add_argument("--doc", metavar="ID", help="only this document's events (id or prefix)")
    log.add_argument(
        "--since", metavar="POS", default="1", help="start at this position (default 1)"
    )
    log.add_argument(
        "--limit",
        metavar="N",
        help=f"print at most N events (default {DEFAULT_LIMIT})",
    )

    show = sub.add_parser(
        "show",
        help="every field of a document, now or at a version or time",
        description="Print every field of a document at its latest version, at a given "
        "version, or as it was at a given time, and list its versions.",
    )
    show.add_argument("document", metavar="DOC_ID", help="the document's id (or a prefix)")
    show.add_argument("--store", metavar="URL", help=_STORE_HELP)
    when = show.add_mutually_exclusive_group()
    when.add_argument("--version", metavar="N", help="the document at version N (1 = created)")
    when.add_argument(
        "--at",
        metavar="ISO-TIME",
        help=f"the document as it was at this time, ISO 8601: {TIME_FORMAT}; "
        "a time without an offset is UTC",
    )

    diff = sub.add_parser(
        "diff",
        help="what changed in the store between two positions",
        description="Print each document added, removed or changed between positions A and "
        "B of the log, field by field (position 0 is the empty store).",
    )
    diff.add_argument("--store", metavar="URL", help=_STORE_HELP)
    diff.add_argument("a", metavar="A", help="the earlier position (0 = before any event)")
    diff.add_argument("b", metavar="B", help="the later position")

    follow = sub.add_parser(
        "follow",
        help="print the store's document events as they are committed",
        description="Tail the store's log and print each document event as it is "
        "committed (position, time in UTC, type, document, version, what changed). With "
        "--name the position is recorded in the store's database and the next run with "
        "that name resumes after it; without, nothing is recorded.",
    )
    follow.add_argument("--store", metavar="URL", help=_STORE_HELP)
    follow.add_argument("--name", metavar="NAME", help="a durable follower name to resume from")
    follow.add_argument(
        "--from-start",
        action="store_true",
        help="a follower with no recorded position starts at the first event, not the end",
    )
    follow.add_argument("--limit", metavar="N", help="stop after N events")
    follow.add_argument("--timeout", metavar="SECONDS", help="stop after this many seconds")

    cassette = sub.add_parser(
        "cassette",
        help="the events recorded in a cassette, one row each",
        description="Print a cassette recorded with atlas_eda.testing.record: line, time "
        "(UTC), type, id, the line of the event that caused it, data and effect count.",
    )
    cassette.add_argument("cassette", metavar="CASSETTE", help="the cassette file (.jsonl)")
    _type_options(cassette)
    cassette.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        help="import MODULE so that it registers its types (the factory is not called)",
    )

    replay_command = sub.add_parser(
        "replay",
        help="replay a cassette into a fresh system and report the first divergence",
        description="Replay the root events of a cassette into the system that "
        "MODULE:FACTORY() builds and compare what it does with the recording. Exit status: "
        "0 when it behaved as recorded, 1 on a divergence, 2 on bad input.",
    )
    replay_command.add_argument("cassette", metavar="CASSETTE", help="the cassette file (.jsonl)")
    replay_command.add_argument(
        "--app",
        metavar="MODULE:FACTORY",
        required=True,
        help="a function (no arguments) returning a fresh system under test: an EventBus, a "
        "(bus, store) tuple, or an object with a .bus; MODULE is imported from the current "
        "directory or sys.path and may register its types",
    )
    replay_command.add_argument(
        "--mode",
        choices=MODES,
        default="check",
        help="check: effects stubbed, events and effects compared (default); stub: effects "
        "stubbed, events compared; perform: effects really performed, results compared too",
    )
    replay_command.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a bad line is an error (default); --no-strict skips it with a warning",
    )
    replay_command.add_argument(
        "--strict-order",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="lines out of time order are a divergence (default); --no-strict-order for a "
        "session recorded from several threads",
    )
    _type_options(replay_command)
    return parser


def _type_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--types",
        metavar="MODULE:ENUM",
        action="append",
        default=[],
        help="register an Enum class of event or effect types the cassette names (repeatable)",
    )


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
        elif args.command == "log":
            run_log(args.store, document=args.doc, since=args.since, limit=args.limit)
        elif args.command == "show":
            run_show(args.document, args.store, version=args.version, at=args.at)
        elif args.command == "diff":
            run_diff(args.store, args.a, args.b)
        elif args.command == "follow":
            run_follow(
                args.store,
                name=args.name,
                from_start=args.from_start,
                limit=args.limit,
                timeout=args.timeout,
            )
        elif args.command == "cassette":
            run_cassette(args.cassette, types=args.types, app=args.app)
        elif args.command == "replay":
            return run_replay(
                args.cassette,
                args.app,
                mode=args.mode,
                strict=args.strict,
                strict_order=args.strict_order,
                types=args.types,
                verbose=args.verbose,
            )
    except AtlasEdaError as exc:
        print(f"atlas-eda: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader (``| head``) went away: stop quietly, as command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
