"""What the inspector shows, as plain JSON-ready dicts built on a :class:`Timeline`: a page
of the log (filtered by document, kind, time range and text), the whole store at a
position, a document's versions, the diff between two positions and the cause chain of a
change. The web server (:mod:`.app`) and the notebook widget (:mod:`.widget`) both answer
from here, so the two show the same thing; nothing here writes.

Views of sagas and projections belong here too, once the timeline records them: one
function each, named in :data:`VIEWS`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..checks import as_uuid
from ..document_events import KINDS, Cause
from ..errors import AtlasEdaError
from ..redaction import redact_url
from ..timeline import DocumentState, RecordedEvent, StateDiff, Timeline
from ..views import when

__all__ = [
    "MAX_LIMIT",
    "SCAN_LIMIT",
    "VIEWS",
    "EventFilter",
    "InspectorInputError",
    "cause_view",
    "diff_view",
    "document_view",
    "event_json",
    "events_view",
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


def _document_id(text: str | None) -> str | None:
    if text is None or text == "":
        return None
    key = as_uuid(text.strip())
    if key is None:
        raise InspectorInputError(
            f"document must be a whole document id (a UUID), got {text!r}; copy it from "
            f"the timeline."
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


VIEWS: dict[str, Callable[[Timeline, Mapping[str, str]], dict[str, Any]]] = {
    "summary": summary_view,
    "events": events_view,
    "state": state_view,
    "document": document_view,
    "diff": diff_view,
    "cause": cause_view,
}
"""Every view by the name its endpoint has (``/api/<name>``), each taking the timeline
and the request's query parameters and returning a JSON-ready dict."""
