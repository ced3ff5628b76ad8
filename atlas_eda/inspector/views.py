"""What the inspector shows, as plain JSON-ready dicts built on a :class:`Timeline`: a page
of the log (filtered by document, kind, time range and text), the whole store at a
position, a document's versions, the diff between two positions and the cause chain of a
change, the saga instances as of a position and one instance's versions, and the
projections of the user's code (:class:`ProjectionsView`) with their read models as of a
position. The web server (:mod:`.app`) and the notebook widget (:mod:`.widget`) both answer
from here, so the two show the same thing; nothing here writes to the store.

A new view is one more function here, named in :data:`VIEWS`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..checks import as_uuid
from ..document_events import KINDS, Cause
from ..errors import AtlasEdaError
from ..projections import Projection, ProjectionError
from ..redaction import redact_url
from ..sagas import SagaState, saga_positions, stored_saga
from ..timeline import DocumentState, RecordedEvent, StateDiff, Timeline
from ..views import when

__all__ = [
    "MAX_LIMIT",
    "SCAN_LIMIT",
    "VIEWS",
    "EventFilter",
    "InspectorInputError",
    "ProjectionsView",
    "cause_view",
    "diff_view",
    "document_view",
    "event_json",
    "events_view",
    "saga_json",
    "saga_view",
    "sagas_view",
    "state_view",
    "summary_view",
]

MAX_LIMIT = 500
"""The most rows one answer holds (events, documents, versions)."""

SCAN_LIMIT = 20_000
"""The most log positions one filtered page reads: a filter that matches rarely answers
with the position to go on from (``next``) rather than reading a huge log in one request."""

_TIME_FIELDS = frozenset({"created_at", "modified_at", "deleted_at"})


class InspectorInputError(AtlasEdaError, ValueError):
    """A request named something malformed (a position that is not a number, an unknown
    kind, a document id that is not a UUID); the message says what to give instead."""


def _plain(value: Any) -> Any:
    """A stored value as JSON holds it: numbers, text, booleans and null as they are,
    anything else as its text (JSON has no other kinds, and the page shows text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _cause_json(cause: Cause | None) -> dict[str, Any] | None:
    if cause is None:
        return None
    return {
        "event_id": cause.event_id,
        "event_type": cause.event_type,
        "correlation_id": cause.correlation_id,
        "handler": cause.handler,
        "describe": cause.describe(),
    }


def event_json(event: RecordedEvent) -> dict[str, Any]:
    """One stored event: position, document, version, kind, time (UTC, to the microsecond),
    the fields it set and its cause (``None`` for a write outside any delivery)."""
    return {
        "position": event.position,
        "document_id": event.document_id,
        "version": event.version,
        "kind": event.kind,
        "time": when(event.timestamp, precise=True),
        "changes": {name: _plain(value) for name, value in event.changes.items()},
        "cause": _cause_json(event.cause),
    }


def _state_json(state: DocumentState) -> dict[str, Any]:
    return {
        name: when(value, precise=True) if name in _TIME_FIELDS else _plain(value)
        for name, value in state.as_dict().items()
    }


def _number(text: str | None, what: str, default: int, *, lowest: int = 0) -> int:
    """``text`` as a whole number of at least ``lowest``; ``default`` when not given."""
    if text is None or text == "":
        return default
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(2**63)):
        raise InspectorInputError(f"{what} must be a whole number, got {text!r}.")
    found = int(digits)
    if found < lowest:
        raise InspectorInputError(f"{what} must be at least {lowest}, got {found}.")
    return found


def _position(timeline: Timeline, text: str | None, what: str, default: int) -> int:
    """A position of the log (0 = before the first event) given as text."""
    found = _number(text, what, default)
    last = len(timeline)
    if found > last:
        raise InspectorInputError(
            f"{what} is {found}, past the end: the last recorded position is {last}."
        )
    return found


def _limit(text: str | None, default: int) -> int:
    return min(_number(text, "limit", default, lowest=1), MAX_LIMIT)


def _document_id(text: str | None, what: str = "document") -> str | None:
    if text is None or text == "":
        return None
    key = as_uuid(text.strip())
    if key is None:
        raise InspectorInputError(
            f"{what} must be a whole {what} id (a UUID), got {text!r}; copy it from the timeline."
        )
    return str(key)


def _moment(text: str | None, what: str) -> datetime | None:
    """An ISO 8601 time (UTC when it names no offset), ``None`` when not given."""
    if text is None or text == "":
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InspectorInputError(
            f"{what} must be an ISO 8601 time such as 2024-05-01T12:30:00, got {text!r}."
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class EventFilter:
    """Which events a timeline page shows: one document's, one kind's, those in a time
    range (both ends included) and those whose fields or cause contain ``text``
    (case-insensitively); every part that is ``None`` lets all events through."""

    document_id: str | None = None
    kind: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    text: str | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> EventFilter:
        """The filter a request's query names (``document``, ``kind``, ``from``, ``to``,
        ``text``); :class:`InspectorInputError` for a malformed part."""
        kind = query.get("kind") or None
        if kind is not None and kind not in KINDS:
            raise InspectorInputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}.")
        return cls(
            document_id=_document_id(query.get("document")),
            kind=kind,
            start=_moment(query.get("from"), "from"),
            end=_moment(query.get("to"), "to"),
            text=(query.get("text") or "").strip().lower() or None,
        )

    def __bool__(self) -> bool:
        return any(
            value is not None
            for value in (self.document_id, self.kind, self.start, self.end, self.text)
        )

    def matches(self, event: RecordedEvent) -> bool:
        """Whether ``event`` passes every part of the filter but the document (which the
        timeline applies itself while reading)."""
        if self.kind is not None and event.kind != self.kind:
            return False
        if self.start is not None and event.timestamp < self.start:
            return False
        if self.end is not None and event.timestamp > self.end:
            return False
        if self.text is not None:
            cause = "" if event.cause is None else event.cause.describe()
            values = " ".join(f"{k}={v}" for k, v in event.changes.items())
            return self.text in f"{event.document_id} {values} {cause}".lower()
        return True


def summary_view(timeline: Timeline, query: Mapping[str, str]) -> dict[str, Any]:
    """The store (its URL without secrets) and its last position: what the page polls to
    follow new commits (it takes no query parameters)."""
    return {"store": redact_url(timeline.store.url), "last_position": len(timeline)}


def events_view(timeline: Timeline, query: Mapping[str, str]) -> dict[str, Any]:
    """A page of the log from position ``since`` (default: the last ``limit`` events),
    oldest first, holding at most ``limit`` events that pass the filter; ``next`` is the
    position to read on from (``None`` at the end of the log). A filtered page reads at
    most :data:`SCAN_LIMIT` positions."""
    last = len(timeline)
    limit = _limit(query.get("limit"), 50)
    chosen = EventFilter.parse(query)
    default = 1 if chosen else max(last - limit + 1, 1)
    since = max(_position(timeline, query.get("since"), "since", default), 1)
    stop = min(last, since + SCAN_LIMIT - 1) if chosen else last
    found = timeline.iter_from(since, stop=stop, document_id=chosen.document_id)
    events = list(itertools.islice((e for e in found if chosen.matches(e)), limit))
    # fewer events than asked for: everything up to ``stop`` was read
    next_position = events[-1].position + 1 if len(events) == limit else stop + 1
    return {
        "since": since,
        "last_position": last,
        "events": [event_json(e) for e in events],
        "next": next_position if next_position <= last else None,
    }


def state_view(timeline: Timeline, query: Mapping[str, str]) -> dict[str, Any]:
    """The whole store right after ``position`` (default: the end): the event at it and
    the documents ``offset`` to ``offset + limit`` of the store, in creation order."""
    position = _position(timeline, query.get("position"), "position", len(timeline))
    offset = _number(query.get("offset"), "offset", 0)
    limit = _limit(query.get("limit"), 100)
    state = timeline.state_at(position)
    shown = itertools.islice(state.values(), offset, offset + limit)
    return {
        "position": position,
        "last_position": len(timeline),
        "event": event_json(timeline.event_at(position)) if position else None,
        "count": len(state),
        "offset": offset,
        "documents": [_state_json(s) for s in shown],
    }


def document_view(timeline: Timeline, query: Mapping[str, str]) -> dict[str, Any]:
    """A document's versions, oldest first: each event with the document's fields as they
    stood after it."""
    document_id = _document_id(query.get("id"))
    if document_id is None:
        raise InspectorInputError("id is missing: give a document id (a UUID).")
    versions: list[dict[str, Any]] = []
    fields: dict[str, Any] = {}
    for event in timeline.iter_from(1, document_id=document_id):
        fields.update(event.changes)
        versions.append({**event_json(event), "fields": {k: _plain(v) for k, v in fields.items()}})
    if not versions:
        raise InspectorInputError(f"no document has id {document_id} in this store.")
    return {"document_id": document_id, "versions": versions}


def diff_view(timeline: Timeline, query: Mapping[str, str]) -> dict[str, Any]:
    """What changed between positions ``a`` and ``b`` (default: the event at ``b``):
    documents added and removed, and for each changed document both states side by side
    with the names of the fields that differ."""
    last = len(timeline)
    b = _position(timeline, query.get("b"), "b", last)
    a = _position(timeline, query.get("a"), "a", max(b - 1, 0))
    before, after = timeline.state_at(a), timeline.state_at(b)
    diff = StateDiff.between(a, before, b, after)
    limit = _limit(query.get("limit"), 100)
    changed = list(diff.changed.items())
    return {
        "a": a,
        "b": b,
        "added": [_state_json(s) for s in itertools.islice(diff.added.values(), limit)],
        "removed": [_state_json(s) for s in itertools.islice(diff.removed.values(), limit)],
        "changed": [
            {
                "document_id": document_id,
                "fields": sorted(fields),
                "before": _state_json(before[document_id]),
                "after": _state_json(after[document_id]),
            }
            for document_id, fields in changed[:limit]
        ],
        "counts": {
            "added": len(diff.added),
            "removed": len(diff.removed),
            "changed": len(changed),
        },
    }


def _groups(events: list[RecordedEvent]) -> Iterator[dict[str, Any]]:
    """The root's writes grouped by the bus event delivery that wrote them, in log order."""
    for _, group in itertools.groupby(
        events, key=lambda e: None if e.cause is None else (e.cause.event_id, e.cause.handler)
    ):
        writes = list(group)
        yield {"cause": _cause_json(writes[0].cause), "writes": [event_json(e) for e in writes]}


def cause_view(timeline: Timeline, query: Mapping[str, str]) -> dict[str, Any]:
    """The cause chain of the change at ``position``: the bus event and handler that wrote
    it, the other writes of that same delivery, and every write of its root's tree
    (``correlated``), grouped by the delivery that made it."""
    position = _position(timeline, query.get("position"), "position", len(timeline))
    if position == 0:
        raise InspectorInputError("position 0 is before the first event: it has no cause.")
    event = timeline.event_at(position)
    cause = event.cause
    same_event = [] if cause is None else timeline.caused_by(cause.event_id)
    tree = (
        []
        if cause is None or cause.correlation_id is None
        else timeline.correlated(cause.correlation_id)
    )
    return {
        "event": event_json(event),
        "cause": _cause_json(cause),
        "same_delivery": [event_json(e) for e in same_event],
        "root": None if cause is None else cause.correlation_id,
        "tree": list(_groups(tree)),
    }


def saga_json(state: SagaState) -> dict[str, Any]:
    """One saga instance at one version: its id, saga, key, version, status, last step,
    steps done, own data, compensations still registered, deadline, why it failed, the
    compensations run (with their errors), when (UTC) and its cause."""
    deadline = state.deadline
    return {
        "id": state.id,
        "saga": state.saga,
        "key": state.key,
        "version": state.version,
        "status": state.status,
        "step": state.step,
        "steps": list(state.steps),
        "data": state.data,  # the saga's own state, kept as JSON by the saga manager
        "compensations": list(state.compensations),
        "deadline": None
        if deadline is None
        else {"name": deadline[0], "at": when(deadline[1], precise=True)},
        "reason": state.reason,
        "compensated": [{"name": name, "error": error} for name, error in state.compensated],
        "failed_compensation": state.failed_compensation,
        "modified_at": when(state.modified_at, precise=True),
        "cause": _cause_json(state.cause),
    }


def _saga_at(timeline: Timeline, saga_id: str, positions: list[int]) -> dict[str, Any]:
    state = stored_saga(timeline.store, saga_id, len(positions))
    if state is None:  # the log named this version a moment ago: the store is not the same
        raise InspectorInputError(f"saga {saga_id} has no version {len(positions)} any more.")
    return {**saga_json(state), "position": positions[-1]}


def sagas_view(timeline: Timeline, query: Mapping[str, str]) -> dict[str, Any]:
    """Every saga instance started by ``position`` (default: the end), in the order they
    started, each as it stood right after that position (``position``: where its version
    then was written); the instances ``offset`` to ``offset + limit`` of them."""
    position = _position(timeline, query.get("position"), "position", len(timeline))
    offset = _number(query.get("offset"), "offset", 0)
    limit = _limit(query.get("limit"), 100)
    found = saga_positions(timeline.store, position)
    shown = itertools.islice(found.items(), offset, offset + limit)
    return {
        "position": position,
        "last_position": len(timeline),
        "count": len(found),
        "offset": offset,
        "sagas": [_saga_at(timeline, saga_id, versions) for saga_id, versions in shown],
    }


def saga_view(timeline: Timeline, query: Mapping[str, str]) -> dict[str, Any]:
    """The saga instance ``id`` as it stood right after ``position`` (default: the end;
    ``saga`` is ``None`` before it started) and its versions up to there, oldest first:
    each stored event (what it set, its cause) with the status and step it left."""
    saga_id = _document_id(query.get("id"), "saga")
    if saga_id is None:
        raise InspectorInputError("id is missing: give a saga id (a UUID).")
    position = _position(timeline, query.get("position"), "position", len(timeline))
    if stored_saga(timeline.store, saga_id) is None:
        raise InspectorInputError(
            f"no saga instance has id {saga_id} in this store; the sagas view lists them."
        )
    positions = saga_positions(timeline.store, position).get(saga_id, [])
    versions = []
    for version, at in enumerate(positions[:MAX_LIMIT], start=1):
        state = stored_saga(timeline.store, saga_id, version)
        versions.append(
            {
                **event_json(timeline.event_at(at)),
                "status": None if state is None else state.status,
                "step": None if state is None else state.step,
            }
        )
    return {
        "id": saga_id,
        "position": position,
        "last_position": len(timeline),
        "saga": _saga_at(timeline, saga_id, positions) if positions else None,
        "versions": versions,
    }


class ProjectionsView:
    """The view of the user's projections (``atlas-eda inspect --app``): each one's name,
    class, the position its read model has reached (read anew on each request: another
    process may be running it) and its lag behind the store's end, and its tables
    :meth:`~atlas_eda.projections.Projection.as_of` ``position`` (default: the end), at
    most ``limit`` rows each (a projection that cannot be built there says why in its
    ``error``). Without projections ``enabled`` is false: the page then says how to name
    them."""

    def __init__(self, projections: Sequence[Projection] = ()) -> None:
        self.projections = tuple(projections)
        # A read model as of a position never changes (the log only grows): the last one
        # built for each projection is kept, so re-drawing the same position is free.
        self._built: dict[int, tuple[int, Projection]] = {}

    def __call__(self, timeline: Timeline, query: Mapping[str, str]) -> dict[str, Any]:
        """The JSON-ready answer for ``query`` (``position``, ``limit``)."""
        last = len(timeline)
        position = _position(timeline, query.get("position"), "position", last)
        limit = _limit(query.get("limit"), 100)
        return {
            "position": position,
            "last_position": last,
            "enabled": bool(self.projections),
            "projections": [
                self._one(timeline, index, position, limit, last)
                for index in range(len(self.projections))
            ],
        }

    def _one(
        self, timeline: Timeline, index: int, position: int, limit: int, last: int
    ) -> dict[str, Any]:
        projection = self.projections[index]
        tracked = projection.view.max_tracking_id(projection.name) or 0
        answer: dict[str, Any] = {
            "name": projection.name,
            "class": type(projection).__qualname__,
            "url": redact_url(projection.url),
            "tracked": tracked,
            "lag": max(last - tracked, 0),
            "error": None,
            "tables": [],
        }
        try:
            past = self._as_of(timeline, index, position)
        except ProjectionError as exc:
            answer["error"] = str(exc)
            return answer
        for table in projection.tables:
            rows = past.rows(table.name)
            answer["tables"].append(
                {
                    "name": table.name,
                    "columns": list(table.columns),
                    "count": len(rows),
                    "rows": [{k: _plain(v) for k, v in row.items()} for row in rows[:limit]],
                }
            )
        return answer

    def _as_of(self, timeline: Timeline, index: int, position: int) -> Projection:
        built = self._built.pop(index, None)
        if built is not None and built[0] == position:
            self._built[index] = built
            return built[1]
        if built is not None:
            built[1].close()
        past = self.projections[index].as_of(position, timeline.store)
        self._built[index] = (position, past)
        return past


VIEWS: dict[str, Callable[[Timeline, Mapping[str, str]], dict[str, Any]]] = {
    "summary": summary_view,
    "events": events_view,
    "state": state_view,
    "document": document_view,
    "diff": diff_view,
    "cause": cause_view,
    "sagas": sagas_view,
    "saga": saga_view,
}
"""Every view by the name its endpoint has (``/api/<name>``), each taking the timeline
and the request's query parameters and returning a JSON-ready dict. The projections view
(``/api/projections``) is added by :func:`~atlas_eda.inspector.app.create_app`: it needs
the user's projections."""
