"""Replay: publish a cassette's root events into a fresh system and compare what the system
does with what was recorded.

Only root events (no causation id) are re-published, with their original ids and
timestamps; their children must be caused again by the handlers subscribed on the bus.
A root command or query (:mod:`atlas_eda.commands`) is re-sent to its handler as recorded
(``bus.requests.resend``); in ``"check"`` and ``"perform"`` modes what it returned (or the
error it raised) is compared with its recorded ``atlasresult`` too.
In ``"stub"`` and ``"check"`` modes effects performed through an ``EffectHandler`` are not
performed: a stub dispatcher built from the recorded effects of the
root's tree returns the recorded results (or raises the recorded errors: by class when the
cassette names a builtin exception or one registered with
:func:`~atlas_eda.testing.register_exceptions`, else as a :class:`RecordedEffectError`)."""

from __future__ import annotations

import difflib
import functools
import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal
from uuid import uuid5

from effect import sync_performer

from ..bus import EventBus, check_bus
from ..commands import request_kind
from ..effects import Effect, KnownOutcome, effect_stub
from ..errors import (
    CassetteError,
    RecordedEffectError,
    ReplayError,
    UnexpectedEffectError,
    UnknownEventError,
)
from ..events import Event, EventType, type_name
from ..payloads import FrozenDict, FrozenList
from ..store import DOCUMENT_ID_NAMESPACE, TemporalStore
from ..trace import EVENT, RUNNING, EffectOutcome, EventTrace, Record, record_event
from ..views import short
from .cassette import (
    Cassette,
    CassetteEntry,
    RecordedChange,
    RecordedEffect,
    RecordedError,
    RecordedResult,
    effects_of,
    store_changes,
)
from .types import resolve_exception

__all__ = [
    "MODES",
    "Divergence",
    "Mode",
    "ReplayReport",
    "json_diff",
    "json_text",
    "outcome_text",
    "replay",
    "replayed_error",
]

Mode = Literal["stub", "perform", "check"]
MODES: tuple[str, ...] = ("stub", "perform", "check")


# -- the report --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where the replayed system first did something other than the recording:
    ``position`` is the cassette line of the expected entry (one past the last line for
    an extra event at the end), ``expected`` and ``actual`` describe both sides (``None``
    when there is nothing on that side), ``diff`` is a unified diff of the data (or payload,
    or result) as pretty-printed JSON, ``reason`` one line saying what differs."""

    position: int
    expected: str | None
    actual: str | None
    diff: str
    reason: str

    def __str__(self) -> str:
        lines = [f"line {self.position}: {self.reason}"]
        lines.append(f"  expected: {self.expected if self.expected is not None else '(nothing)'}")
        lines.append(f"  actual:   {self.actual if self.actual is not None else '(nothing)'}")
        if self.diff:
            lines.append(self.diff)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What :func:`replay` found: the mode, how many recorded events the system matched,
    and the first divergence (``None`` when it behaved as recorded)."""

    mode: str
    events_matched: int
    divergence: Divergence | None = None
    cassette: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the system behaved as recorded."""
        return self.divergence is None

    def assert_no_divergence(self) -> None:
        """Raise ``AssertionError`` describing the first divergence, if any."""
        __tracebackhide__ = True  # a divergence points at the test, not here
        if self.divergence is not None:
            where = f" of {self.cassette}" if self.cassette else ""
            raise AssertionError(
                f"replay{where} ({self.mode} mode) diverged after {self.events_matched} "
                f"matching events:\n{self.divergence}"
            )

    def __str__(self) -> str:
        where = f"{self.cassette}: " if self.cassette else ""
        if self.divergence is None:
            return f"{where}replay ({self.mode}) ok: {self.events_matched} events matched"
        return (
            f"{where}replay ({self.mode}) diverged at line {self.divergence.position} after "
            f"{self.events_matched} events matched: {self.divergence.reason}"
        )

    def __repr__(self) -> str:
        state = "ok" if self.divergence is None else f"diverged at line {self.divergence.position}"
        return f"ReplayReport(mode={self.mode!r}, events_matched={self.events_matched}, {state})"


# -- rendering ---------------------------------------------------------------------------


_SCALARS = (str, int, float, bool, type(None))

PLAIN_CHECK_DEPTH = 64
"""How deep :func:`_is_json` looks before calling a value not plain JSON (which sends it
the slower, exact way through :func:`_plain`); far deeper than any recorded data nests."""


def _is_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is made only of what JSON reads back as itself: ``str``, ``int``,
    ``float``, ``bool``, ``None``, lists and dicts with ``str`` keys (exact types, or the
    frozen ones event data is made of)."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if depth > PLAIN_CHECK_DEPTH:
        return False
    if kind is dict or kind is FrozenDict:
        return all(type(k) is str and _is_json(v, depth + 1) for k, v in value.items())
    if kind is list or kind is FrozenList:
        return all(_is_json(v, depth + 1) for v in value)
    return False


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so that live values
    compare equal to recorded ones; what JSON cannot hold is compared by its repr."""
    if _is_json(value):
        return value  # already what a JSON round trip would give back (or equal to it)
    try:
        return json.loads(json.dumps(value, default=repr))
    except (TypeError, ValueError):
        return repr(value)


def json_text(value: Any, indent: int | None = None) -> str:
    """``value`` as JSON with sorted keys and characters as they are, what JSON cannot hold
    given by its repr: the one way replay and scenarios show data."""
    return json.dumps(value, indent=indent, sort_keys=True, default=repr, ensure_ascii=False)


def _json_short(value: Any, limit: int = 120) -> str:
    """:func:`json_text` on one line, cut by :func:`~atlas_eda.views.short`."""
    return short(json_text(value), limit)


def json_diff(expected: Any, actual: Any, what: str) -> str:
    """A unified diff of ``expected`` and ``actual`` as pretty-printed JSON (empty when they
    print alike), its two sides labelled ``expected <what>`` and ``actual <what>``."""
    lines = difflib.unified_diff(
        json_text(expected, 2).splitlines(),
        json_text(actual, 2).splitlines(),
        f"expected {what}",
        f"actual {what}",
        lineterm="",
    )
    return "\n".join(lines)


def _type_text(kind: Enum | str) -> str:
    return type_name(kind) if isinstance(kind, Enum) else kind


def _event_text(event: Event, data: Any) -> str:
    source = f" from {event.source}" if event.source else ""
    return f"{type_name(event.type)}{source} data {_json_short(data)}"


@dataclass(frozen=True, slots=True)
class _Seen:
    """An effect as performed during replay, in the cassette's terms."""

    type: Enum | str
    payload: Any
    description: str
    result: Any
    error: tuple[str, str] | None
    attempts: int = 1

    @classmethod
    def of(cls, outcome: EffectOutcome) -> _Seen:
        intent = outcome.effect
        error = outcome.error
        if error is None:
            failure = None
        else:
            recorded = RecordedError.of(error)
            failure = (recorded.type, recorded.message)
        result = None if error is not None else _plain(outcome.result)
        tries = outcome.attempts
        if isinstance(intent, Effect):
            payload = _plain(intent.payload)
            return cls(intent.type, payload, intent.description, result, failure, tries)
        return cls(type(intent).__name__, None, "", result, failure, tries)


def _effect_text(kind: Enum | str, payload: Any, outcome: str = "") -> str:
    return f"effect {_type_text(kind)} payload {_json_short(payload)}{outcome}"


def outcome_text(result: Any, error: tuple[str, str] | None) -> str:
    """How an effect ended, to follow its description: `` → <result>`` (shortened), or
    `` ✗ <type>: <message>`` for ``error``, an exception's type name and message."""
    if error is not None:
        return f" ✗ {error[0]}: {error[1]}"
    return f" → {_json_short(result, 60)}"


# -- stubbing ----------------------------------------------------------------------------


_STAND_INS_KEPT = 1024
"""How many stand-in classes :func:`_stand_in` keeps before starting afresh: bounded memory
whatever names a cassette holds."""

_stand_ins: dict[str, type[RecordedEffectError]] = {}
_showing: dict[type[Exception], type[Exception]] = {}


def _stand_in(recorded_type: str) -> type[RecordedEffectError]:
    """A subclass of :class:`RecordedEffectError` named like the recorded exception class
    (its ``__name__``, the last part of ``recorded_type``), so the bus reports the replayed
    failure (``ERROR`` event data) exactly as it was recorded."""
    cls = _stand_ins.get(recorded_type)
    if cls is None:
        name = recorded_type.rpartition(".")[2]
        safe = name if name.isidentifier() else RecordedEffectError.__name__
        cls = type(safe, (RecordedEffectError,), {"__module__": __name__})
        if len(_stand_ins) >= _STAND_INS_KEPT:
            _stand_ins.clear()
        _stand_ins[recorded_type] = cls
    return cls


def _recorded_str(error: BaseException) -> str:
    return str(vars(error)["recorded_message"])


def _showing_message(cls: type[Exception]) -> type[Exception]:
    """A subclass of ``cls`` with its module, name and qualified name whose ``str()`` is
    the recorded message: for the classes whose ``cls(message)`` shows something else
    (``KeyError`` quotes it), so that ``except cls`` still catches the replayed failure
    and the bus still reports it as recorded."""
    found = _showing.get(cls)
    if found is None:
        namespace = {
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__str__": _recorded_str,
        }
        found = _showing[cls] = type(cls.__name__, (cls,), namespace)
    return found


def replayed_error(error: RecordedError) -> Exception:
    """The exception stubbed replay raises for the recorded failure ``error``: an instance
    of the class itself, ``cls(message)``, when the cassette names a builtin ``Exception``
    subclass or a class registered with :func:`~atlas_eda.testing.register_exceptions`
    (for a class whose ``str(cls(message))`` differs from the message, an instance of a
    subclass of it, alike in name, showing the message); otherwise, or when ``cls(message)``
    raises, a :class:`RecordedEffectError` named like the recorded class, with its message.
    Nothing is imported: old cassettes' bare class names always give the latter."""
    cls = resolve_exception(error.type) if error.qualified else None
    if cls is not None:
        try:
            raised = cls(error.message)
            if str(raised) == error.message:
                return raised
            raised = _showing_message(cls)(error.message)
            vars(raised)["recorded_message"] = error.message
        except Exception:  # a class that cannot be rebuilt from its message is stood in for
            return _stand_in(error.type)(error.type, error.message)
        return raised
    return _stand_in(error.type)(error.type, error.message)


def _matches(recorded: RecordedEffect, intent: object) -> bool:
    """Whether the live ``intent`` is the recorded effect ``recorded``: an ``Effect`` of
    the same type, payload and description (for the ``effect`` library's own intents, an
    intent of the same class name)."""
    if isinstance(intent, Effect):
        return bool(
            intent.type == recorded.type
            and intent.description == recorded.description
            and (intent.payload == recorded.payload or _plain(intent.payload) == recorded.payload)
        )
    return isinstance(recorded.type, str) and type(intent).__name__ == recorded.type


class _Expected(KnownOutcome):
    """A recorded effect standing in for the intent it was made from: equal to a live
    intent that :func:`_matches` it. As a performer it gives the recorded result, or
    raises the recorded error; with ``attempts`` (check mode), after the recorded failed
    attempts, played through the live retry policy (see :class:`KnownOutcome`)."""

    __slots__ = ("recorded",)

    def __init__(self, recorded: RecordedEffect, attempts: bool = False) -> None:
        # KnownOutcome's fields set here rather than through its __init__: one stand-in is
        # made per effect performed, on replay's hot path.
        error = recorded.error
        if error is None:
            self.result, self.error = recorded.result, None
        else:
            self.result, self.error = None, functools.partial(replayed_error, error)
        self.earlier = (
            tuple(functools.partial(replayed_error, a.error) for a in recorded.retried)
            if attempts
            else None
        )
        self.recorded = recorded

    def __eq__(self, other: object) -> bool:
        return _matches(self.recorded, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return _effect_text(self.recorded.type, self.recorded.payload)


def _execution_order(block: list[CassetteEntry]) -> list[RecordedEffect]:
    """The block's recorded effects in the order a live system performs them: a handler
    publishes its child events before the effects of the ``EffectMonad`` it returns run,
    so each event's descendants' effects come before its own."""
    # A recorder writes each tree in publish order (every event after its cause, and
    # after its cause's earlier children's subtrees): one pass with a stack of the
    # events whose subtrees are still open gives every entry after its descendants.
    ordered: list[RecordedEffect] = []
    open_entries = [block[0]]
    for entry in block[1:]:
        cause = entry.event.causation_id
        while open_entries and open_entries[-1].event.id != cause:
            ordered.extend(open_entries.pop().effects)
        if not open_entries:
            return _execution_order_of_lines(block)
        open_entries.append(entry)
    while open_entries:
        ordered.extend(open_entries.pop().effects)
    return ordered


def _execution_order_of_lines(block: list[CassetteEntry]) -> list[RecordedEffect]:
    """:func:`_execution_order` for lines not in publish order (moved lines, or roots
    recorded from several threads): the tree is rebuilt from the causation ids."""
    children: dict[str | None, list[CassetteEntry]] = {}
    for entry in block[1:]:
        children.setdefault(entry.event.causation_id, []).append(entry)
    # Depth first, children pushed in order: the visit comes out as the root, then its
    # last child's subtree, ..., then its first child's; reversed, that is every entry
    # after its descendants and siblings in order. Iterative, so a deep tree cannot
    # exhaust the interpreter's stack; bounded, so repeated ids cannot loop.
    visit: list[CassetteEntry] = []
    pending = [block[0]]
    while pending and len(visit) <= len(block):
        entry = pending.pop()
        visit.append(entry)
        kids = children.get(entry.event.id)
        if kids:
            pending.extend(kids)
    # Each entry's effects once: those reached in that order, then the others (a
    # tampered block: repeated ids, entries whose cause is not in it) in line order.
    ordered: list[RecordedEffect] = []
    done: set[int] = set()
    for entry in (*reversed(visit), *block):
        if id(entry) not in done:
            done.add(id(entry))
            ordered.extend(entry.effects)
    return ordered


class _Stub:
    """The stub dispatcher of one root event's tree. An effect is looked for first among
    the recorded effects of the event being delivered when it is performed (its next one
    not yet taken: the order the cassette records them in, which is the order they were
    performed in); failing that, in the whole tree's recorded effects in execution order
    (an effect performed out of that order is taken from the rest of the tree's). An
    effect not recorded at all raises :class:`UnexpectedEffectError` (it is not
    performed). ``attempts``: the recorded attempts are played through the live retry
    policies (check mode). ``records``: the bus's records of the events published so far
    in this tree, in publish order (see ``EventBus.collect_records``; ``None``: only the
    tree's order is used).

    A recorded effect is named by its place, ``(entry index, effect index)``, and taken
    at most once: those of entry ``i`` before ``cursor[i]`` were taken in order, as
    their event performed them; ``taken`` holds those taken out of that order.

    One stub serves a whole replay: :meth:`start` points it at each root's tree in turn
    (the context variable holding it is set once per replay, not once per root)."""

    __slots__ = ("attempts", "block", "cursor", "records", "root_id", "sequence", "taken")

    def __init__(
        self,
        block: list[CassetteEntry],
        attempts: bool = False,
        records: list[Record] | None = None,
    ) -> None:
        self.attempts = attempts
        self.records = records
        self.cursor: dict[int, int] = {}
        self.taken: set[tuple[int, int]] = set()
        self.start(block)

    def start(self, block: list[CassetteEntry]) -> None:
        """Stub the tree ``block`` from now on, as a fresh stub of it would: nothing of the
        previous tree is taken any more."""
        # Nothing is built until an effect asks: most events of a tree perform none.
        self.block = block
        self.root_id = block[0].event.id
        self.cursor.clear()
        self.taken.clear()
        # The whole tree's places in execution order, less those taken out of order.
        self.sequence: list[tuple[int, int]] | None = None

    def __call__(self, intent: object) -> Any:
        # Replay's hot path (once per effect): the record of the event under delivery
        # found by identity among the tree's records, from the end (it was kept shortly
        # before), only while the tree's root is the first of them (not for a re-sent
        # command, which is not collected): then the records and the block line up, and
        # the event's next recorded effect is a lookup, no list built.
        records = self.records
        stack = RUNNING.get()
        if stack and records and records[0][EVENT].id == self.root_id:
            record = stack[-1]
            index = len(records) - 1
            while records[index] is not record:
                index -= 1
                if index < 0:
                    return self._out_of_order(intent)
            block = self.block
            if index < len(block):
                entry = block[index]
                if entry.event.type is record[EVENT].type:
                    effects = entry.effects
                    at = self.cursor.get(index, 0)
                    taken = self.taken
                    if taken:
                        while (index, at) in taken:
                            at += 1
                    if at < len(effects):
                        recorded = effects[at]
                        if _matches(recorded, intent):
                            self.cursor[index] = at + 1
                            return _Expected(recorded, self.attempts)
        return self._out_of_order(intent)

    def _out_of_order(self, intent: object) -> Any:
        """The first recorded effect of the tree not taken, in execution order, that
        ``intent`` matches (taken now), or a performer raising
        :class:`UnexpectedEffectError`."""
        sequence = self.sequence
        if sequence is None:
            sequence = self.sequence = self._in_execution_order()
        block, cursor, taken = self.block, self.cursor, self.taken
        for position, (index, at) in enumerate(sequence):
            if at < cursor.get(index, 0) or (index, at) in taken:
                continue
            recorded = block[index].effects[at]
            if _matches(recorded, intent):
                taken.add((index, at))
                del sequence[position]
                return _Expected(recorded, self.attempts)
        return sync_performer(_unexpected)

    def _in_execution_order(self) -> list[tuple[int, int]]:
        """The places of every recorded effect of the tree in :func:`_execution_order`."""
        # By the recorded effect's identity, in block order: the k-th time one object
        # comes in execution order is its k-th place.
        places: dict[int, list[tuple[int, int]]] = {}
        for index, entry in enumerate(self.block):
            for at, recorded in enumerate(entry.effects):
                places.setdefault(id(recorded), []).append((index, at))
        return [
            places[id(recorded)].pop(0)
            for recorded in _execution_order(self.block)
            if places.get(id(recorded))
        ]


def _unexpected(_dispatcher: Any, intent: object) -> Any:
    raise UnexpectedEffectError(
        f"replay: {intent!r} is not recorded for this root event in the cassette, so it "
        f"was not performed (stubbed replay performs only recorded effects)."
    )


# -- comparing ---------------------------------------------------------------------------


def _parents(ids: list[str], causes: list[str | None]) -> list[int | None]:
    index = {event_id: n for n, event_id in enumerate(ids)}
    return [index.get(cause) if cause is not None else None for cause in causes]


def _cause(index: int | None) -> str:
    return "nothing in its tree" if index is None else f"event {index + 1} of its tree"


def _translate(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with every string that is the id of a replayed event replaced by the id
    of the recorded event it matched (children get new ids when they are caused again)."""
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_translate(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _translate(item, ids) for key, item in value.items()}
    return value


def _compare_event(entry: CassetteEntry, event: Event, ids: dict[str, str]) -> Divergence | None:
    recorded = entry.event
    if event.type == recorded.type and event.source == recorded.source:
        if event.data == recorded.data:  # the common case, without building anything
            return None
        data = _translate(_plain(event.data), ids)
        if data == recorded.data:
            return None
    else:
        data = _translate(_plain(event.data), ids)
    expected = _event_text(recorded, recorded.data)
    actual = _event_text(event, data)
    if event.type != recorded.type:
        reason = f"expected {type_name(recorded.type)}, got {type_name(event.type)}"
    elif event.source != recorded.source:
        reason = (
            f"{type_name(recorded.type)}: expected source {recorded.source!r}, got {event.source!r}"
        )
    elif data != recorded.data:
        reason = (
            f"expected {type_name(recorded.type)} data {_json_short(recorded.data, 60)}, "
            f"got {_json_short(data, 60)}"
        )
    else:
        return None
    return Divergence(entry.line, expected, actual, json_diff(recorded.data, data, "data"), reason)


def _compare_effects(
    entry: CassetteEntry,
    outcomes: tuple[EffectOutcome, ...],
    with_results: bool,
    attempts: bool = False,
) -> Divergence | None:
    name = type_name(entry.event.type)
    seen = [_Seen.of(o) for o in outcomes]
    for n, (rec, got) in enumerate(zip(entry.effects, seen, strict=False), 1):
        rec_error = None if rec.error is None else (rec.error.type, rec.error.message)
        got_error = got.error
        if got_error is not None and rec.error is not None and not rec.error.qualified:
            # A cassette from before class names were qualified names the class alone.
            got_error = (got_error[0].rpartition(".")[2], got_error[1])
        expected = _effect_text(rec.type, rec.payload, outcome_text(rec.result, rec_error))
        actual = _effect_text(got.type, got.payload, outcome_text(got.result, got_error))
        if got.type != rec.type:
            reason = (
                f"{name} effect {n}: expected {_type_text(rec.type)}, got {_type_text(got.type)}"
            )
            return Divergence(entry.line, expected, actual, "", reason)
        if got.payload != rec.payload:
            reason = f"{name} effect {n} ({_type_text(rec.type)}): payload differs"
            diff = json_diff(rec.payload, got.payload, "payload")
            return Divergence(entry.line, expected, actual, diff, reason)
        if got.description != rec.description:
            reason = (
                f"{name} effect {n} ({_type_text(rec.type)}): expected description "
                f"{rec.description!r}, got {got.description!r}"
            )
            return Divergence(entry.line, expected, actual, "", reason)
        if attempts and got.attempts != rec.attempts:
            reason = (
                f"{name} effect {n} ({_type_text(rec.type)}): expected {rec.attempts} "
                f"attempt(s), got {got.attempts}"
            )
            return Divergence(entry.line, expected, actual, "", reason)
        if with_results and got_error != rec_error:
            reason = f"{name} effect {n} ({_type_text(rec.type)}): outcome differs"
            return Divergence(entry.line, expected, actual, "", reason)
        if with_results and rec_error is None and got.result != rec.result:
            reason = f"{name} effect {n} ({_type_text(rec.type)}): result differs"
            diff = json_diff(rec.result, got.result, "result")
            return Divergence(entry.line, expected, actual, diff, reason)
    if len(seen) < len(entry.effects):
        rec = entry.effects[len(seen)]
        reason = (
            f"{name}: effect {len(seen) + 1} ({_type_text(rec.type)}) was recorded but not "
            f"performed ({len(entry.effects)} recorded, {len(seen)} performed)"
        )
        return Divergence(entry.line, _effect_text(rec.type, rec.payload), None, "", reason)
    if len(seen) > len(entry.effects):
        got = seen[len(entry.effects)]
        reason = (
            f"{name}: effect {len(entry.effects) + 1} ({_type_text(got.type)}) was performed "
            f"but not recorded ({len(entry.effects)} recorded, {len(seen)} performed)"
        )
        return Divergence(entry.line, None, _effect_text(got.type, got.payload), "", reason)
    return None


def _compare_tree(
    block: list[CassetteEntry],
    events: list[Event],
    nodes: list[EventTrace] | None,
    next_entry: CassetteEntry | None,
    *,
    end: int,
    mode: str,
    changes: dict[str, list[RecordedChange]] | None = None,
    creations: bool = True,
) -> tuple[int, Divergence | None]:
    """How many entries of ``block`` matched, and the first divergence. ``events`` are
    the replayed events in publish order; ``nodes`` their traces (``None`` in stub mode,
    where effects are not compared); ``changes`` the store changes the tree wrote, by
    replayed event id (``None``: state is not compared); ``creations``: whether the
    cassette records any document creation (without any, no derived id is translated)."""
    if nodes is None and changes is None and not creations and _as_recorded(block, events):
        return len(block), None  # stub mode's common case: one lean pass, nothing to report
    return _compare_entries(
        block,
        events,
        nodes,
        next_entry,
        end=end,
        mode=mode,
        changes=changes,
        creations=creations,
    )


def _as_recorded(block: list[CassetteEntry], events: list[Event]) -> bool:
    """Whether ``events`` are the events of ``block`` exactly: as many, each of the same
    type, source and data as its line, and caused by the event that matched its recorded
    cause. When it is (and no effects, state or derived ids are compared),
    :func:`_compare_entries` finds every entry matched; ``False`` says nothing (that rule
    may still match the tree, translating ids in the data)."""
    if len(events) != len(block):
        return False
    ids: dict[str, str] = {}
    for entry, event in zip(block, events, strict=True):
        recorded = entry.event
        ids[event.id] = recorded.id
        if not (
            event.type is recorded.type
            and event.source == recorded.source
            and event.data == recorded.data
            and ids.get(event.causation_id or "") == recorded.causation_id
        ):
            return False
    return True


def _compare_entries(
    block: list[CassetteEntry],
    events: list[Event],
    nodes: list[EventTrace] | None,
    next_entry: CassetteEntry | None,
    *,
    end: int,
    mode: str,
    changes: dict[str, list[RecordedChange]] | None,
    creations: bool,
) -> tuple[int, Divergence | None]:
    """:func:`_compare_tree` entry by entry (the plain rule)."""
    parents: tuple[list[int | None], list[int | None]] | None = None
    ids: dict[str, str] = {}
    created: dict[str, int] | None = None
    for k, event in enumerate(events):
        if k >= len(block):
            return k, _extra_event(event, next_entry, end)
        entry = block[k]
        recorded = entry.event
        ids[event.id] = recorded.id
        if (
            event.type is recorded.type
            and event.source == recorded.source
            and event.data == recorded.data
        ):
            divergence = None  # the common case, without a call
        else:
            divergence = _compare_event(entry, event, ids)
        # Caused by the event that matched its recorded cause: so far, the same tree. If
        # not (or the cause is outside the tree), the causes' positions in the two trees
        # decide.
        if divergence is None and k and ids.get(event.causation_id or "") != recorded.causation_id:
            if parents is None:
                parents = (
                    _parents([e.event.id for e in block], [e.event.causation_id for e in block]),
                    _parents([e.id for e in events], [e.causation_id for e in events]),
                )
            divergence = _compare_cause(entry, event, parents[0][k], parents[1][k])
        if divergence is None and nodes is not None and mode != "stub":
            divergence = _compare_effects(
                entry, effects_of(nodes[k]), mode == "perform", attempts=mode == "check"
            )
        if creations and event.id != recorded.id:
            # A child, caused again under a new id: the ids the store derived in its
            # delivery, for the events (and state) compared after it.
            if created is None:
                created = _creations(block)
            made = created.get(recorded.id)
            if made:
                _derived_ids(event.id, recorded.id, made, ids)
        if changes is not None and divergence is None and (entry.state or event.id in changes):
            divergence = _compare_state(entry, changes.get(event.id, []), ids)
        if divergence is not None:
            return k, divergence
    if len(events) < len(block):
        return len(events), _missing_event(block, len(events))
    return len(block), None


def _creations(block: list[CassetteEntry]) -> dict[str, int]:
    """How many documents the delivery of each event of ``block`` created, by recorded
    event id: its recorded ``created`` changes, or (a cassette without state) the
    ``DOCUMENT_CREATED`` events the store published during it, whichever is more."""
    counts: dict[str, int] = {}
    for entry in block:
        event = entry.event
        if event.type is EventType.DOCUMENT_CREATED and event.causation_id is not None:
            counts[event.causation_id] = counts.get(event.causation_id, 0) + 1
    for entry in block:
        if entry.state:
            made = sum(change.kind == "created" for change in entry.state)
            if made > counts.get(entry.event.id, 0):
                counts[entry.event.id] = made
    return counts


def _derived_ids(replayed: str, recorded: str, created: int, ids: dict[str, str]) -> None:
    """Add to ``ids`` the ``created`` document ids the store derives inside the delivery
    of the replayed event (a child, caused again under a new id), each mapped to the one
    it derived inside the recorded event's: the same creation, told apart only by the id."""
    for n in range(created):
        key = str(uuid5(DOCUMENT_ID_NAMESPACE, f"{replayed}/{n}"))
        ids[key] = str(uuid5(DOCUMENT_ID_NAMESPACE, f"{recorded}/{n}"))


def _change_text(change: RecordedChange) -> str:
    return (
        f"document {change.document} version {change.version} {change.kind} "
        f"{_json_short(change.fields)}"
    )


def _compare_state(
    entry: CassetteEntry, written: list[RecordedChange], ids: dict[str, str]
) -> Divergence | None:
    """The first difference between the store changes recorded for ``entry`` and those
    ``written`` while the replayed event was delivered (document ids translated)."""
    name = type_name(entry.event.type)
    for n, (rec, got) in enumerate(zip(entry.state, written, strict=False), 1):
        document = ids.get(got.document, got.document)
        if document != rec.document:
            reason = f"{name} store change {n}: expected document {rec.document}, got {document}"
        elif got.version != rec.version or got.kind != rec.kind:
            reason = (
                f"{name} store change {n}: expected document {rec.document} version "
                f"{rec.version} {rec.kind}, got version {got.version} {got.kind}"
            )
        elif got.fields != rec.fields:
            field = next(
                f
                for f in (*rec.fields, *got.fields)
                if rec.fields.get(f, _ABSENT) != got.fields.get(f, _ABSENT)
            )
            reason = (
                f"{name} store change {n}: document {rec.document} version {rec.version} "
                f"field {field!r} differs"
            )
            diff = json_diff(rec.fields, got.fields, f"fields of document {rec.document}")
            return Divergence(entry.line, _change_text(rec), _change_text(got), diff, reason)
        else:
            continue
        diff = json_diff(rec.as_json(), {**got.as_json(), "document": document}, "change")
        return Divergence(entry.line, _change_text(rec), _change_text(got), diff, reason)
    if len(written) < len(entry.state):
        rec = entry.state[len(written)]
        reason = (
            f"{name}: store change {len(written) + 1} (document {rec.document} version "
            f"{rec.version} {rec.kind}) was recorded but not written ({len(entry.state)} "
            f"recorded, {len(written)} written)"
        )
        return Divergence(entry.line, _change_text(rec), None, "", reason)
    if len(written) > len(entry.state):
        got = written[len(entry.state)]
        reason = (
            f"{name}: store change {len(entry.state) + 1} (document {got.document} version "
            f"{got.version} {got.kind}) was written but not recorded ({len(entry.state)} "
            f"recorded, {len(written)} written)"
        )
        return Divergence(entry.line, None, _change_text(got), "", reason)
    return None


_ABSENT = object()


def _extra_event(event: Event, next_entry: CassetteEntry | None, end: int) -> Divergence:
    """The system published ``event`` after the last event of the root's tree: it is
    compared with the next line (``next_entry``), or with nothing at ``end``."""
    position = next_entry.line if next_entry is not None else end
    expected = _event_text(next_entry.event, next_entry.event.data) if next_entry else None
    reason = f"the system published an extra {type_name(event.type)}, not recorded"
    actual = _event_text(event, _plain(event.data))
    return Divergence(position, expected, actual, json_diff(None, event.data, "data"), reason)


def _compare_cause(
    entry: CassetteEntry, event: Event, expected: int | None, actual: int | None
) -> Divergence | None:
    """A divergence when ``event`` was caused by another event of its tree than the one
    recorded: ``expected`` and ``actual`` are the causes' indexes in the two trees."""
    if expected == actual:
        return None
    recorded = entry.event
    return Divergence(
        entry.line,
        _event_text(recorded, recorded.data),
        _event_text(event, _plain(event.data)),
        "",
        f"{type_name(recorded.type)}: recorded as caused by {_cause(expected)}, replayed as "
        f"caused by {_cause(actual)}",
    )


def _missing_event(block: list[CassetteEntry], count: int) -> Divergence:
    """The system published only ``count`` events of the root's tree ``block``."""
    entry = block[count]
    reason = (
        f"expected {type_name(entry.event.type)}, but the system published nothing more "
        f"for the root event of line {block[0].line}"
    )
    expected = _event_text(entry.event, entry.event.data)
    return Divergence(entry.line, expected, None, "", reason)


# -- replay ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Survey:
    """What :func:`_survey` finds in one pass over a cassette's entries."""

    starts: list[int]
    """The indexes of the root events (no causation id)."""
    creations: bool
    """Whether any entry records a document creation (state, or a ``DOCUMENT_CREATED``)."""
    disorder: int | None
    """The index of the first entry recorded later than an entry after it, or ``None``."""


def _survey(entries: list[CassetteEntry]) -> _Survey:
    """The roots, whether documents are created, and the first entry out of time order,
    in one pass (a large cassette is read from memory once, not three times)."""
    starts: list[int] = []
    creations = False
    created = EventType.DOCUMENT_CREATED
    highest = -math.inf
    # The lowest timestamp found below an earlier one: the first entry later than it is
    # the first entry later than any entry after it.
    lowest_late = math.inf
    for index, entry in enumerate(entries):
        event = entry.event
        if event.causation_id is None:
            starts.append(index)
        if not creations and (entry.state or event.type is created):
            creations = True
        timestamp = event.timestamp
        if timestamp >= highest:
            highest = timestamp
        elif timestamp < lowest_late:
            lowest_late = timestamp
    disorder = None
    if lowest_late != math.inf:
        disorder = next(n for n, e in enumerate(entries) if e.event.timestamp > lowest_late)
    return _Survey(starts, creations, disorder)


def _disorder(entries: list[CassetteEntry], index: int) -> Divergence:
    entry = entries[index]
    after = next(e for e in entries[index + 1 :] if e.event.timestamp < entry.event.timestamp)
    reason = (
        f"{type_name(entry.event.type)} was published after the event of line {after.line} "
        f"({type_name(after.event.type)}) but comes before it: lines are out of order"
    )
    return Divergence(
        entry.line,
        _event_text(after.event, after.event.data),
        _event_text(entry.event, entry.event.data),
        "",
        reason,
    )


def _state_reader(
    entries: list[CassetteEntry], store: TemporalStore | None, mode: str, where: str | None
) -> _StateReader | None:
    """What compares the store changes of a replay: only with a store, in the modes that
    compare more than events, and for a cassette recorded with state; its documents
    checked first (:class:`CassetteError` for one neither created nor in ``store``)."""
    if store is None or mode == "stub" or not any(entry.state for entry in entries):
        return None
    _check_documents_known(entries, store, where)
    return _StateReader(store)


def replay(
    cassette: Cassette,
    bus: EventBus,
    mode: str = "check",
    *,
    strict_order: bool = True,
    store: TemporalStore | None = None,
) -> ReplayReport:
    """Publish the root events of ``cassette`` on ``bus`` (ids and timestamps kept) and
    compare every event the system causes with the recording, root tree by root tree;
    stop at the first divergence. ``mode``: ``"stub"`` (effects not performed, recorded
    results returned; events compared), ``"check"`` (stubbed, events and effects
    compared) or ``"perform"`` (effects really performed; events, effects and their
    results compared). With ``strict_order`` (the default) an entry whose timestamp is
    later than that of an entry after it is a divergence too (lines moved); pass
    ``strict_order=False`` for a cassette recorded from several threads at once, whose
    root events may be written out of time order.

    The bus needs history and traces (``ReplayError`` otherwise). In ``"stub"`` and
    ``"check"`` modes the bus's records of the replayed events are collected as the
    history keeps them, for the replay's duration (``EventBus.collect_records``: what the
    history records, after the system's middleware): stub mode compares their events, and
    the stubs find by them the event an effect is performed for; the other modes read
    each root event's trace, so the history must hold one root event's whole tree.

    With ``store`` (the system's :class:`~atlas_eda.store.TemporalStore`, best empty) and
    a cassette recorded with state, ``"check"`` and ``"perform"`` modes also compare the
    store changes each event's delivery wrote with the recorded ones (document ids,
    versions, kinds, field values); the first difference is reported at the line of the
    event that caused it. A cassette without state compares no state. A recorded change
    of a document that no earlier change of the cassette creates and ``store`` does not
    hold raises :class:`CassetteError` naming its line, before anything is published."""
    _check_replayable(bus, mode)
    entries = cassette.entries
    where = str(cassette.path) if cassette.path is not None else None
    state = _state_reader(entries, store, mode, where)
    orphan = _orphan(entries)
    if orphan is not None:
        return ReplayReport(mode, 0, orphan, where)
    # In stub mode only events are compared: the bus's records of them are collected as
    # they are kept (what the history records), in publish order, which is the order of
    # EventTrace.walk(), without building traces. The stubs of "check" mode read them
    # too: which event is being delivered when an effect is performed.
    collected: list[Record] | None = [] if mode != "perform" else None
    stop = bus.collect_records(collected) if collected is not None else None
    published = collected if mode == "stub" else None
    # One stub for the whole replay, pointed at each root's tree in turn: the context
    # variable is set once, not once per root (a replay publishes its roots one after
    # another on one thread). Perform mode sets none, so no stub from outside is used.
    stub = _Stub(entries, mode == "check", collected) if mode != "perform" and entries else None
    token = effect_stub.set(stub)
    try:
        survey = _survey(entries)
        if not strict_order:
            survey.disorder = None
        matched, divergence = _replay_trees(
            entries, bus, mode, survey, published, state=state, stub=stub
        )
    finally:
        effect_stub.reset(token)
        if stop is not None:
            stop()
    return ReplayReport(mode, matched, divergence, where)


class _StateReader:
    """Reads the changes one root event's tree wrote to the store replayed into."""

    def __init__(self, store: TemporalStore) -> None:
        self.store = store
        self.position = store.last_position()

    def start(self) -> None:
        """Skip what was written since the last read (outside the replayed trees)."""
        self.position = self.store.last_position()

    def read(self) -> dict[str, list[RecordedChange]]:
        """The changes written since :meth:`start`, by the id of the event that caused them."""
        self.position, changes = store_changes(self.store, self.position)
        return changes


def _check_documents_known(
    entries: list[CassetteEntry], store: TemporalStore, where: str | None
) -> None:
    """Raise :class:`CassetteError` at the first recorded change of a document that no
    earlier change of the cassette creates and ``store`` does not hold."""
    created: set[str] = set()
    for entry in entries:
        for index, change in enumerate(entry.state):
            if change.kind == "created":
                created.add(change.document)
            elif change.document not in created and store.latest_version(change.document) is None:
                prefix = f"{where}, " if where else ""
                raise CassetteError(
                    f"{prefix}line {entry.line}: atlasstate[{index}] {change.kind} document "
                    f"{change.document}, which no earlier line of the cassette creates and the "
                    f"store replayed into does not hold. Replay into a store holding the "
                    f"documents the recording started with, or re-record the cassette.",
                    entry.line,
                )


def _check_replayable(bus: EventBus, mode: str) -> None:
    """Refuse a mode other than the three, and a bus that does not keep what replay reads."""
    check_bus("the bus to replay into", bus)
    if mode not in MODES:
        raise ValueError(f"replay mode must be one of 'stub', 'perform' or 'check', got {mode!r}.")
    if bus.history_limit == 0:
        raise ReplayError(
            "replay reads what the system did from the bus's history: this bus has "
            "history_limit=0. Create it with a history_limit of at least 1."
        )
    if not bus.traces:
        raise ReplayError(
            "replay reads what the system did from the bus's traces: this bus was created "
            "with EventBus(traces=False). Create it with traces=True (the default)."
        )


def _orphan(entries: list[CassetteEntry]) -> Divergence | None:
    """A divergence when the first line is not a root event (no tree to replay it in)."""
    if not entries or entries[0].event.causation_id is None:
        return None
    orphan = entries[0]
    reason = (
        f"{type_name(orphan.event.type)} is recorded as caused by event "
        f"{orphan.event.causation_id}, which comes before it in no root event's tree: "
        f"lines are missing or out of order"
    )
    return Divergence(orphan.line, _event_text(orphan.event, orphan.event.data), None, "", reason)


def _replay_trees(
    entries: list[CassetteEntry],
    bus: EventBus,
    mode: str,
    survey: _Survey,
    published: list[Record] | None,
    *,
    state: _StateReader | None = None,
    stub: _Stub | None = None,
) -> tuple[int, Divergence | None]:
    """Replay the root events of ``entries`` one by one and compare each one's tree:
    how many entries matched, and the first divergence. ``survey`` says where the roots
    are, whether documents are created and the first entry out of time order (``None``:
    none, or not checked); ``published`` collects the bus's records of the replayed
    events in stub mode (``None`` in the others: traces are read); ``stub`` is the stub
    in force (:data:`~atlas_eda.effects.effect_stub`), pointed at each root's tree in
    turn (``None``: effects are performed)."""
    end = entries[-1].line + 1 if entries else 1
    # Derived document ids are translated only for a cassette that records creations.
    starts, creations, disorder = survey.starts, survey.creations, survey.disorder
    matched = 0
    # Whether a root type is a command's or query's, by the type's id (an Enum member
    # hashes by a Python-level __hash__; the roots' types live as long as the cassette).
    kinds: dict[int, bool] = {}
    for number, start in enumerate(starts):
        stop = starts[number + 1] if number + 1 < len(starts) else len(entries)
        block = entries[start:stop]
        next_entry = entries[stop] if stop < len(entries) else None
        root = block[0].event
        request = kinds.get(id(root.type))
        if request is None:
            request = kinds[id(root.type)] = request_kind(root.type) is not None
        try:
            if stub is not None:
                stub.start(block)
            if state is not None:
                state.start()
            if published is None:
                if stub is not None and stub.records is not None:
                    stub.records.clear()
                nodes: list[EventTrace] | None = _publish(bus, root, request)
                events = [node.event for node in nodes or ()]
            else:
                nodes = None
                events = _publish_collected(bus, root, published, request)
        except ReplayError:
            raise
        except Exception as exc:
            reason = f"publishing {type_name(root.type)} raised {type(exc).__name__}: {exc}"
            return matched, Divergence(
                block[0].line, _event_text(root, root.data), None, "", reason
            )
        changes = state.read() if state is not None else None
        count, divergence = _compare_tree(
            block,
            events,
            nodes,
            next_entry,
            end=end,
            mode=mode,
            changes=changes,
            creations=creations,
        )
        if divergence is None and nodes:
            divergence = _compare_result(block[0], nodes[0])
            if divergence is not None:
                count = 0  # the root itself diverged: nothing of its tree matched
        if (
            disorder is not None
            and disorder < stop
            and (divergence is None or divergence.position > entries[disorder].line)
        ):
            return matched + disorder - start, _disorder(entries, disorder)
        matched += count
        if divergence is not None:
            return matched, divergence
    return matched, None


def _deliver_root(bus: EventBus, root: Event, request: bool) -> bool:
    """Publish the root event ``root``, or re-send it when it is a command or query
    (``request``: its type is a command's or query's); returns ``request``. A command's
    exception is not a failure of the replay: it is in the trace, compared with the
    recorded result (see :func:`_compare_result`)."""
    if not request:
        bus.publish_event(root)
        return False
    handled = bus.requests.handler(root.type) is not None
    try:
        bus.requests.resend(root, bus.effect_handler)
    except Exception:
        if not handled:  # NoHandlerError: the replay reports it as a divergence
            raise
    return True


def _compare_result(entry: CassetteEntry, node: EventTrace) -> Divergence | None:
    """A divergence when the command or query of ``entry`` returned (or raised) other
    than it did when recorded (``None`` for an event, or one recorded without a result)."""
    recorded = entry.result
    if recorded is None:
        return None
    replayed = RecordedResult.of(node)
    if replayed is not None and replayed.error is None:
        replayed = RecordedResult(_plain(replayed.value))
    if replayed == recorded:
        return None
    name = type_name(entry.event.type)

    def text(result: RecordedResult | None) -> str:
        if result is None:
            return f"{name} (no result)"
        if result.error is not None:
            return f"{name} ✗ {result.error.type}: {result.error.message}"
        return f"{name} → {_json_short(result.value, 60)}"

    diff = ""
    if recorded.error is None and replayed is not None and replayed.error is None:
        diff = json_diff(recorded.value, replayed.value, "result")
    return Divergence(
        entry.line, text(recorded), text(replayed), diff, f"{name}: the result differs"
    )


def _publish_collected(
    bus: EventBus, root: Event, published: list[Record], request: bool
) -> list[Event]:
    """Publish ``root`` (``request``: re-send the command or query) while ``published``
    collects the bus's records; the events of its tree, in publish order."""
    published.clear()
    _deliver_root(bus, root, request)
    tree = root.correlation_id or root.id
    root_id = root.id
    # Only this root's tree: a handler's thread publishing its own roots is not in it.
    events = [
        event
        for event in map(record_event, published)
        if event.correlation_id == tree or event.id == root_id
    ]
    if request:
        events.insert(0, root)  # a command's record is kept by bus.requests: not collected
    return events


def _publish(bus: EventBus, root: Event, request: bool) -> list[EventTrace]:
    _deliver_root(bus, root, request)
    try:
        return list(bus.trace(root.id).walk())
    except UnknownEventError:
        if len(bus.get_history(limit=None)) < bus.history_limit:
            return []  # a middleware dropped it: the comparison reports what is missing
        raise ReplayError(
            f"the trace of root event {root.id} ({type_name(root.type)}) no longer fits in "
            f"the bus's history (history_limit={bus.history_limit}); create the bus with a "
            f"history_limit larger than the number of events one root event causes."
        ) from None
