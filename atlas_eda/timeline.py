"""Time travel over a store: its global ordered log as a ``Timeline`` of ``RecordedEvent``s,
the whole store's state as of any position, diffs between positions, a stepping cursor, and
replay of a prefix of the log into a fresh store.

Positions are the notification ids of eventsourcing's notification log: 1 is the first
event ever recorded, and position 0 means "before anything". A ``Timeline`` is a Python
sequence: ``timeline[0]`` is the event at position 1 and ``timeline[-1]`` the latest.
"""

from __future__ import annotations

import bisect
import operator
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

from .checks import as_uuid, is_int
from .document import Document
from .document_events import UNKNOWN, Cause, EventKind, cause_of, field_changes, kind_of
from .errors import AtlasEdaError, CorruptStoreError, PositionError
from .redaction import redact_url
from .saga_events import SAGA_KIND, LogKind, is_saga_event, saga_changes
from .views import fields_table, html_table, short, short_id, when

if TYPE_CHECKING:  # only for annotations: the store sits above this module
    from eventsourcing.persistence import Notification
    from matplotlib.figure import Figure

    from .inspector.widget import TimelineWidget
    from .store import TemporalStore
    from .store.checkpoints import StateCheckpoint

__all__ = [
    "UNKNOWN",
    "Cause",
    "Cursor",
    "DocumentState",
    "EventKind",
    "LogKind",
    "RecordedEvent",
    "StateDiff",
    "Timeline",
]

_PAGE = 200
HTML_ROWS = 200
"""At most this many rows are rendered by a ``Timeline``'s HTML view."""

_TIME_FIELDS = frozenset({"created_at", "modified_at", "deleted_at"})


def _shown(name: str, value: Any) -> Any:
    """A field's value for display: the epoch-second time fields as UTC times to the
    microsecond (two versions' times differ visibly), everything else as it is."""
    if name in _TIME_FIELDS and isinstance(value, int | float):
        return when(value, precise=True)
    return value


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One stored event at ``position`` in the store's global order: which document, its
    version after the event, what kind of change, when (aware UTC), ``changes``, a dict
    of each field the event set to its new value, and ``cause``: the bus event and
    handler it was written by (a :class:`Cause`), or ``None`` for a write outside any
    delivery and for events stored before causes were recorded. A version of a saga
    instance (:mod:`atlas_eda.sagas`) has kind ``"saga"``: ``document_id`` is then the
    saga's id, ``version`` its version and ``changes`` the saga fields it set."""

    position: int
    document_id: str
    version: int
    kind: LogKind
    timestamp: datetime
    changes: dict[str, Any] = field(hash=False)
    cause: Cause | None = None

    def __repr__(self) -> str:
        keys = ", ".join(self.changes)
        return (
            f"RecordedEvent(#{self.position} {self.kind} {short_id(self.document_id)} "
            f"v{self.version} {when(self.timestamp)} [{keys}])"
        )

    def _repr_html_(self) -> str:
        caption = (
            f"#{self.position} {self.kind} {self.document_id} v{self.version} "
            f"at {when(self.timestamp)} UTC, caused by {describe_cause(self.cause)}"
        )
        return fields_table(self.changes, caption=caption)


def describe_cause(cause: Cause | None) -> str:
    """A cause on one line (:meth:`Cause.describe`), or ``"no bus event"`` for none."""
    return "no bus event" if cause is None else cause.describe()


@dataclass(frozen=True, slots=True)
class DocumentState:
    """A frozen snapshot of a document's fields at one version (times in epoch seconds)."""

    document_id: str
    version: int
    title: str
    content: str
    author: str
    last_editor: str | None
    created_at: float
    modified_at: float
    is_deleted: bool = False
    deleted_at: float | None = None
    deletion_reason: str | None = None

    @classmethod
    def of(cls, document: Document) -> DocumentState:
        """The state of a live or reconstructed ``Document``."""
        return cls(**document.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (equal to ``Document.as_dict()`` at that version)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def after(self, event: RecordedEvent) -> DocumentState:
        """The state once ``event`` (the document's next event) is applied."""
        if event.document_id != self.document_id or event.version != self.version + 1:
            raise ValueError(
                f"{event!r} does not follow {self!r}: expected version {self.version + 1} "
                f"of {self.document_id}."
            )
        return _apply(self, event)

    def __repr__(self) -> str:
        state = ", deleted" if self.is_deleted else ""
        title = short(self.title, 40)
        return f"DocumentState({short_id(self.document_id)} v{self.version} {title!r}{state})"

    def _repr_html_(self) -> str:
        shown = {name: _shown(name, value) for name, value in self.as_dict().items()}
        return fields_table(shown, caption=f"{self.document_id} v{self.version} (times in UTC)")


def _apply(state: DocumentState | None, event: RecordedEvent) -> DocumentState:
    if state is None and event.kind != "created":
        raise _never_created(repr(event))
    return _next_state(
        state,
        document_id=event.document_id,
        version=event.version,
        kind=event.kind,
        moment=event.timestamp.timestamp(),
        changes=event.changes,
    )


def _next_state(
    state: DocumentState | None,
    *,
    document_id: str,
    version: int,
    kind: str,
    moment: float,
    changes: Mapping[str, Any],
) -> DocumentState:
    """The one rule of what an event does to its document's state (``state`` is ``None``
    only for a creation), ``changes`` being its :func:`field_changes`."""
    if kind == "created" or state is None:
        return DocumentState(
            document_id=document_id,
            version=version,
            title=changes["title"],
            content=changes["content"],
            author=changes["author"],
            last_editor=changes["author"],
            created_at=moment,
            modified_at=moment,
        )
    if kind == "updated":
        return DocumentState(
            document_id,
            version,
            changes.get("title", state.title),
            changes.get("content", state.content),
            state.author,
            changes.get("last_editor", state.author),
            state.created_at,
            moment,
        )
    return DocumentState(
        document_id,
        version,
        state.title,
        state.content,
        state.author,
        state.last_editor,
        state.created_at,
        moment,
        True,
        moment,
        changes.get("deletion_reason"),
    )


def _stored_step(
    state: DocumentState | None, event: Any, document_id: str, kind: str
) -> DocumentState:
    """``state`` once the decoded store ``event`` (of ``kind``, on ``document_id``) is
    applied: :func:`_next_state` with the event's own version, time and field changes."""
    return _next_state(
        state,
        document_id=document_id,
        version=event.originator_version,
        kind=kind,
        moment=event.timestamp.timestamp(),
        changes=field_changes(event),
    )


def _never_created(event: str) -> AtlasEdaError:
    return AtlasEdaError(
        f"The log is inconsistent: {event} changes a document that was never created."
    )


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field's value before and after."""

    before: Any
    after: Any


@dataclass(frozen=True)
class StateDiff:
    """What differs between the store at position ``a`` and at position ``b``: documents
    only at ``b`` (added), only at ``a`` (removed), and, for documents at both, each field
    whose value differs (``changed[id][field]`` is a :class:`FieldChange`)."""

    a: int
    b: int
    added: dict[str, DocumentState]
    removed: dict[str, DocumentState]
    changed: dict[str, dict[str, FieldChange]]

    @classmethod
    def between(
        cls,
        a: int,
        before: Mapping[str, DocumentState],
        b: int,
        after: Mapping[str, DocumentState],
    ) -> StateDiff:
        """Compare two whole-store states; each dict keeps the order of ``after`` (of
        ``before`` for ``removed``)."""
        changed: dict[str, dict[str, FieldChange]] = {}
        for document_id, state in after.items():
            if document_id not in before:
                continue
            old, new = before[document_id].as_dict(), state.as_dict()
            fields_changed = {
                name: FieldChange(old[name], new[name]) for name in old if old[name] != new[name]
            }
            if fields_changed:
                changed[document_id] = fields_changed
        return cls(
            a=a,
            b=b,
            added={k: v for k, v in after.items() if k not in before},
            removed={k: v for k, v in before.items() if k not in after},
            changed=changed,
        )

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def rows(self) -> list[tuple[str, str, str, Any, Any]]:
        """``(document_id, change, field, before, after)`` rows, for tables."""
        rows: list[tuple[str, str, str, Any, Any]] = []
        for document_id, state in self.added.items():
            rows.append((document_id, "added", "title", None, state.title))
        for document_id, state in self.removed.items():
            rows.append((document_id, "removed", "title", state.title, None))
        for document_id, changes in self.changed.items():
            for name, change in changes.items():
                rows.append((document_id, "changed", name, change.before, change.after))
        return rows

    def __repr__(self) -> str:
        return (
            f"StateDiff(#{self.a}→#{self.b}: {len(self.added)} added, "
            f"{len(self.removed)} removed, {len(self.changed)} changed)"
        )

    def _repr_html_(self) -> str:
        return html_table(
            ["document", "change", "field", f"before (#{self.a})", f"after (#{self.b})"],
            (
                (short(d, 8), c, f, _shown(f, before), _shown(f, after))
                for d, c, f, before, after in self.rows()
            ),
            caption=repr(self),
        )


STATE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(DocumentState))
"""The fields of a :class:`DocumentState`, in order: the columns of a kept checkpoint."""

KEEP_SPACING = 0.5
"""A checkpoint is kept in the store's database once at least this many positions per
document (and at least ``checkpoint_every``) lie since the last one kept: a later
timeline then folds fewer events than half the store's documents (or ``checkpoint_every``)
on top of the nearest one, and the kept states, compressed, stay a fraction of the log's
size (about two states per event, before compression)."""

_row = operator.attrgetter(*STATE_COLUMNS)


class _StateIndex:
    """Whole-store states at multiples of ``every`` (checkpoints), each built from the
    nearest earlier one, in memory or kept in the store's database
    (:meth:`TemporalStore.state_checkpoint`): by folding the log, or, when that is more
    than ``every`` positions away, by reading each document changed since from its newest
    snapshot if that decodes fewer events. ``state_at`` then folds at most ``every - 1``
    events on top of a checkpoint. Checkpoints reached are kept in the store's database
    every ``KEEP_SPACING`` positions per document, for the timelines after this one
    (another process, a restarted notebook)."""

    def __init__(self, timeline: Timeline, every: int) -> None:
        self._timeline = timeline
        self._every = every
        self._checkpoints: dict[int, dict[str, DocumentState]] = {0: {}}
        self._positions = [0]  # of self._checkpoints, in order
        self._kept = 0  # the newest position known to have a checkpoint in the database
        self._lock = threading.Lock()

    def state_at(self, position: int) -> dict[str, DocumentState]:
        base = (position // self._every) * self._every
        with self._lock:
            state = dict(self._checkpoint(base))
        if position > base:
            self._fold(state, base + 1, position, marking=False)
        return state

    def _checkpoint(self, target: int) -> dict[str, DocumentState]:
        found = self._checkpoints.get(target)
        if found is not None:
            return found
        start = self._positions[bisect.bisect_right(self._positions, target) - 1]
        state = dict(self._checkpoints[start])
        kept = self._timeline.store.state_checkpoint(target, after=start)
        if kept is not None and list(kept.columns) == list(STATE_COLUMNS):
            start, state = kept.originator_version, _states(kept)
            self._kept = max(self._kept, start)
            self._remember(start, dict(state))
        # More than one interval to fold: reading each changed document from its newest
        # snapshot may read far less than the log (and then only ``target`` is marked).
        if target - start > self._every and self._read_documents(state, start, target):
            self._mark(target, state)
        else:
            self._fold(state, start + 1, target, marking=True)
        return self._checkpoints[target]

    def _read_documents(self, state: dict[str, DocumentState], start: int, target: int) -> bool:
        """Bring ``state`` (the store right after ``start``) to ``target`` document by
        document: each one changed in between from its state in ``state`` or its newest
        snapshot, whichever is later, then its events up to its version at ``target``.
        ``False`` (``state`` untouched) when the fold is to be used instead: the store has
        no such reads (:meth:`TemporalStore.changed_documents`), they would decode more
        events than the fold, or what was read does not add up (the fold then says what is
        wrong with the log)."""
        store = self._timeline.store
        changed = store.changed_documents(start, target)
        if changed is None:
            return False
        known = [(c, _version_in(state, str(c.document_id))) for c in changed]
        snapshots = store.document_snapshots(known)
        bases = [
            (c, max(v, snapshots[c.document_id].version if c.document_id in snapshots else 0))
            for c, v in known
        ]
        reading = sum(c.version - base for c, base in bases) + len(snapshots)
        if reading > sum(c.events for c in changed):
            return False  # the fold reads fewer events
        events = store.document_events(bases)
        read: dict[str, DocumentState] = {}
        for c, base in bases:
            document_id = str(c.document_id)
            snapshot = snapshots.get(c.document_id)
            now = (
                DocumentState.of(snapshot)
                if snapshot is not None and snapshot.version == base
                else state.get(document_id)
            )
            found = events.get(c.document_id, [])
            if [e.originator_version for e in found] != list(range(base + 1, c.version + 1)):
                return False
            for event in found:
                kind = kind_of(event)
                if now is None and kind != "created":
                    return False
                now = _stored_step(now, event, document_id, kind)
            if now is None:
                return False
            read[document_id] = now
        # In the order of each document's first event after ``start``: the ones created
        # since come after those already there, in creation order, as the fold adds them.
        state.update(read)
        return True

    def _fold(
        self, state: dict[str, DocumentState], first: int, last: int, *, marking: bool
    ) -> None:
        """Apply the document events at positions ``first`` to ``last`` to ``state``; when
        ``marking``, remember the state at each multiple of ``every`` on the way."""
        store, every = self._timeline.store, self._every
        mark = -(-first // every) * every if marking else last + 1
        position = first
        while position <= last:
            page = store.notifications(position, self._timeline.page_size, stop=last)
            if not page:
                break
            for notification in page:
                while mark < notification.id:
                    self._mark(mark, state)
                    mark += every
                event = store.decode(notification)
                kind = kind_of(event)
                document_id = str(event.originator_id)
                before = state.get(document_id)
                if before is None and kind != "created":
                    raise _never_created(f"the event at position {notification.id}")
                state[document_id] = _stored_step(before, event, document_id, kind)
            position = page[-1].id + 1
        while mark <= last:
            self._mark(mark, state)
            mark += every

    def _mark(self, position: int, state: dict[str, DocumentState]) -> None:
        self._remember(position, dict(state))
        if position - self._kept >= max(self._every, KEEP_SPACING * len(state)):
            self._kept = position
            rows = [list(_row(s)) for s in state.values()]
            self._timeline.store.save_state_checkpoint(position, STATE_COLUMNS, rows)

    def _remember(self, position: int, state: dict[str, DocumentState]) -> None:
        if position not in self._checkpoints:
            bisect.insort(self._positions, position)
        self._checkpoints[position] = state


def _version_in(state: Mapping[str, DocumentState], document_id: str) -> int:
    found = state.get(document_id)
    return 0 if found is None else found.version


def _states(checkpoint: StateCheckpoint) -> dict[str, DocumentState]:
    """The states a kept checkpoint holds; :class:`CorruptStoreError` for a row that is
    not one (the database was changed by something other than atlas_eda)."""
    try:
        states = [DocumentState(*row) for row in checkpoint.rows]
    except TypeError as exc:
        raise CorruptStoreError(
            f"The timeline checkpoint of position {checkpoint.originator_version} cannot be "
            f"read ({exc}): the store was changed by something other than atlas_eda; "
            f"restore it from a backup."
        ) from None
    return {state.document_id: state for state in states}


class _CauseIndex:
    """The positions each bus event and each correlation id wrote, built by reading the
    log once (incrementally, as far as it has grown since the last question)."""

    def __init__(self, timeline: Timeline) -> None:
        self._timeline = timeline
        self._by_event: dict[str, list[int]] = {}
        self._by_correlation: dict[str, list[int]] = {}
        self._read_to = 0
        self._lock = threading.Lock()

    def caused_by(self, event_id: str) -> list[int]:
        with self._lock:
            self._extend()
            return list(self._by_event.get(event_id, ()))

    def correlated(self, correlation_id: str) -> list[int]:
        with self._lock:
            self._extend()
            return list(self._by_correlation.get(correlation_id, ()))

    def _extend(self) -> None:
        for event in self._timeline.iter_from(self._read_to + 1):
            cause = event.cause
            # UNKNOWN stands for a value that was not a string: it names no event.
            if cause is not None and cause.event_id != UNKNOWN:
                self._by_event.setdefault(cause.event_id, []).append(event.position)
            if cause is not None and cause.correlation_id not in (None, UNKNOWN):
                self._by_correlation.setdefault(cause.correlation_id, []).append(event.position)
            self._read_to = event.position


class Timeline(Sequence[RecordedEvent]):
    """The store's global ordered log, read lazily in pages of ``page_size``. Its length
    follows the store as it grows; events, once recorded, never move. It shows document
    events and the versions of saga instances (kind ``"saga"``); states and diffs are
    the documents' (a saga's versions are read with ``SagaManager.get``)."""

    def __init__(
        self, store: TemporalStore, *, page_size: int = _PAGE, checkpoint_every: int = 1000
    ) -> None:
        if page_size < 1 or checkpoint_every < 1:
            raise ValueError("page_size and checkpoint_every must be at least 1.")
        self.store = store
        self.page_size = page_size
        self._index = _StateIndex(self, checkpoint_every)
        self._causes = _CauseIndex(self)

    # -- the sequence ------------------------------------------------------------------

    def __len__(self) -> int:
        return self.store.last_position()

    @overload
    def __getitem__(self, index: int) -> RecordedEvent: ...

    @overload
    def __getitem__(self, index: slice) -> list[RecordedEvent]: ...

    def __getitem__(self, index: int | slice) -> RecordedEvent | list[RecordedEvent]:
        length = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(length)
            if step > 0:
                # indices start .. stop-1 are positions start+1 .. stop
                return self.events_between(start + 1, stop)[::step]
            # indices start, start+step, ... > stop: positions stop+2 .. start+1, read in
            # pages and walked from the top down
            return self.events_between(stop + 2, start + 1)[::step]
        if not is_int(index):
            raise TypeError(f"Timeline indices must be int or slice, not {type(index).__name__}.")
        position = index + 1 if index >= 0 else length + index + 1
        if not 1 <= position <= length:
            raise IndexError(f"Timeline index {index} out of range (length {length}).")
        return self.event_at(position)

    def __iter__(self) -> Iterator[RecordedEvent]:
        return self.iter_from(1)

    def iter_from(
        self, position: int, *, stop: int | None = None, document_id: str | None = None
    ) -> Iterator[RecordedEvent]:
        """The events from ``position`` on (up to ``stop`` inclusive), page by page;
        only those of ``document_id`` when given."""
        next_position = max(position, 1)
        wanted = as_uuid(document_id) if document_id is not None else None
        if document_id is not None and wanted is None:
            return
        while stop is None or next_position <= stop:
            limit = (
                self.page_size if stop is None else min(self.page_size, stop - next_position + 1)
            )
            page = self.store.notifications(next_position, limit, stop=stop, sagas=True)
            if not page:
                return
            for notification in page:
                if stop is not None and notification.id > stop:
                    return
                if wanted is None or notification.originator_id == wanted:
                    yield self._decode(notification)
            next_position = page[-1].id + 1

    def events_between(self, first: int, last: int) -> list[RecordedEvent]:
        """The events at positions ``first`` to ``last``, both included."""
        return list(self.iter_from(first, stop=last)) if first <= last else []

    def event_at(self, position: int) -> RecordedEvent:
        """The event at ``position`` (1-based); :class:`PositionError` when there is none."""
        self._check(position, allow_zero=False)
        page = self.store.notifications(position, 1, sagas=True)
        if not page or page[0].id != position:
            raise PositionError(f"No event is recorded at position {position}.")
        return self._decode(page[0])

    def _decode(self, notification: Notification) -> RecordedEvent:
        event = self.store.decode_logged(notification)
        if is_saga_event(event):
            return RecordedEvent(
                position=notification.id,
                document_id=str(event.originator_id),
                version=event.originator_version,
                kind=SAGA_KIND,
                timestamp=event.timestamp.astimezone(UTC),
                changes=saga_changes(event),
                cause=cause_of(event),
            )
        return RecordedEvent(
            position=notification.id,
            document_id=str(event.originator_id),
            version=event.originator_version,
            kind=kind_of(event),
            timestamp=event.timestamp.astimezone(UTC),
            changes=field_changes(event),
            cause=cause_of(event),
        )

    def _check(self, position: int, *, allow_zero: bool = True) -> int:
        if not is_int(position):
            raise TypeError(f"A position must be an int, got {position!r}.")
        length = len(self)
        lowest = 0 if allow_zero else 1
        if position < lowest:
            raise PositionError(
                f"Position {position} is before the start: positions run from {lowest} to {length}."
            )
        if position > length:
            raise PositionError(
                f"Position {position} is past the end: the last recorded position is {length}."
            )
        return length

    # -- causes ------------------------------------------------------------------------

    def caused_by(self, event_id: str) -> list[RecordedEvent]:
        """The stored events written while the bus event ``event_id`` was being delivered
        (by its handlers, or the effects they returned), in log order; read from the
        causes stored with the events, so this works in any process, after a restart."""
        _check_id("event_id", event_id)
        return [self.event_at(p) for p in self._causes.caused_by(event_id)]

    def correlated(self, correlation_id: str) -> list[RecordedEvent]:
        """The stored events written by a whole tree of bus events: every delivery whose
        event has ``correlation_id`` (a root event's id: the root and all it caused,
        at any depth), in log order; read from the stored causes, as :meth:`caused_by`."""
        _check_id("correlation_id", correlation_id)
        return [self.event_at(p) for p in self._causes.correlated(correlation_id)]

    # -- time travel -------------------------------------------------------------------

    def state_at(self, position: int) -> dict[str, DocumentState]:
        """The whole store's documents right after ``position`` (0: empty), deleted ones
        included, keyed by document id in creation order (saga versions leave it as is)."""
        self._check(position)
        return self._index.state_at(position)

    def diff(self, a: int, b: int) -> StateDiff:
        """What changed in the store between positions ``a`` and ``b``."""
        self._check(a)
        self._check(b)
        return StateDiff.between(a, self.state_at(a), b, self.state_at(b))

    def replay(self, until: int, into: str | TemporalStore = "memory://") -> TemporalStore:
        """A store holding exactly the events up to ``until`` (ids, versions and timestamps
        kept): a new store at URL ``into``, or ``into`` itself, which must be empty. Written
        in one transaction: a failure leaves the target empty. No bus events are published."""
        self._check(until)
        source = self.store
        opened = isinstance(into, str)
        target = (
            type(source)(url=into, snapshot_interval=source.snapshot_interval)
            if isinstance(into, str)
            else into
        )
        try:
            source.copy_until(until, target)
        except BaseException:
            if opened:  # a store opened here is not handed back: do not leave it open
                target.close()
            raise
        return target

    def cursor(self, position: int | None = None) -> Cursor:
        """A cursor for stepping through the log, at ``position`` (default: the end)."""
        return Cursor(self, len(self) if position is None else position)

    def plot(self, *, ax: Any = None) -> Figure:
        """Events over time, one row per document, coloured by kind; returns the matplotlib
        ``Figure`` (needs the ``notebook`` extra)."""
        try:
            # matplotlib is an optional extra: import it only when a plot is asked for.
            from .plotting import plot_timeline  # noqa: PLC0415
        except ImportError as exc:
            raise AtlasEdaError(
                f"Timeline.plot needs matplotlib ({exc}): pip install 'atlas_eda[notebook]'."
            ) from exc
        return plot_timeline(self, ax=ax)

    def widget(self, position: int | None = None) -> TimelineWidget:
        """A notebook widget at ``position`` (default: the end): a scrubber, the whole
        store there, the diff to the position before and the cause chain of the change;
        its ``cursor`` and its ``position`` move together (needs the ``notebook`` extra)."""
        if position is not None:
            self._check(position)
        try:
            # anywidget is an optional extra: import it only when a widget is asked for.
            from .inspector.widget import TimelineWidget  # noqa: PLC0415
        except ImportError as exc:
            raise AtlasEdaError(
                f"Timeline.widget needs anywidget ({exc}): pip install 'atlas_eda[notebook]'."
            ) from exc
        return TimelineWidget(self, position)

    # -- display -----------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Timeline({len(self)} events in {redact_url(self.store.url)})"

    def _repr_html_(self) -> str:
        total = len(self)
        shown = self.events_between(max(total - HTML_ROWS + 1, 1), total)
        caption = f"Timeline of {redact_url(self.store.url)}: {total} events" + (
            f", the last {len(shown)} shown" if len(shown) < total else ""
        )
        return html_table(
            ["#", "time (UTC)", "document", "version", "kind", "changes", "cause"],
            (
                (
                    e.position,
                    when(e.timestamp),
                    short(e.document_id, 8),
                    e.version,
                    e.kind,
                    ", ".join(f"{k}={short(v, 30)}" for k, v in e.changes.items()),
                    "" if e.cause is None else e.cause.describe(),
                )
                for e in shown
            ),
            caption=caption,
        )


class Cursor:
    """A position in a timeline that steps back and forth; ``state`` is the whole store
    right after ``position`` and ``event`` the event at it (``None`` at 0)."""

    def __init__(self, timeline: Timeline, position: int) -> None:
        timeline._check(position)
        self.timeline = timeline
        self._position = position

    @property
    def position(self) -> int:
        """The current position (0 = before the first event)."""
        return self._position

    @property
    def state(self) -> dict[str, DocumentState]:
        """The whole store right after the current position."""
        return self.timeline.state_at(self._position)

    @property
    def event(self) -> RecordedEvent | None:
        """The event at the current position, or ``None`` at position 0."""
        return self.timeline.event_at(self._position) if self._position else None

    def goto(self, position: int) -> Cursor:
        """Move to ``position``; :class:`PositionError` if it does not exist."""
        self.timeline._check(position)
        self._position = position
        return self

    def back(self, steps: int = 1) -> Cursor:
        """Move ``steps`` positions back."""
        return self.goto(self._position - steps)

    def forward(self, steps: int = 1) -> Cursor:
        """Move ``steps`` positions forward."""
        return self.goto(self._position + steps)

    def __repr__(self) -> str:
        return f"Cursor(#{self._position} of {len(self.timeline)})"

    def _repr_html_(self) -> str:
        states = self.state.values()
        caption = f"Store at position {self._position}"
        event = self.event
        if event is not None:
            caption += f", right after: {event!r}"
        return html_table(
            ["document", "version", "title", "last editor", "modified (UTC)", "deleted"],
            (
                (
                    short(s.document_id, 8),
                    s.version,
                    s.title,
                    s.last_editor,
                    when(s.modified_at),
                    s.is_deleted,
                )
                for s in states
            ),
            caption=caption,
        )


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str (an event id), got {type(value).__name__}.")
