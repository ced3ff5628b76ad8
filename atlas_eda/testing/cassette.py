"""Cassettes: a bus session recorded as JSON lines, one CloudEvents 1.0 structured-mode
event per line, and loaded back as :class:`atlas_eda.Event`s with the effects each caused.

Each line carries the event (``id``, ``source``, ``type`` as ``EnumClass.MEMBER``, ``time``,
``data``), the extensions ``correlationid`` and ``causationid``, ``traceparent`` and
``tracestate`` (CloudEvents' distributed-tracing extension: the W3C trace context the
event's metadata carries, if well-formed), ``atlasmetadata`` (the rest of the
event's metadata as a JSON string) and ``atlaseffects`` (a JSON string: the effects
performed while the event was handled, each with its result or error: the exception's
class as ``module.QualName`` and its message) and, when recorded with a store,
``atlasstate`` (a JSON string: the store changes written while the event was delivered,
each a document id, version, kind and the fields set, with their values) and, for a command or
query (:mod:`atlas_eda.commands`), ``atlasresult`` (a JSON string: ``{"value": ...}``, what its
handler returned, which must be JSON like event data, or ``{"error": {"type", "message"}}``).
Types resolve only through
:func:`atlas_eda.testing.register_types`, exception classes only to builtins and those of
:func:`atlas_eda.testing.register_exceptions`: a cassette never imports anything."""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import re
import stat
import threading
import typing
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal, InvalidOperation, localcontext
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

import msgspec
from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.v1.event import CloudEvent

from ..bus import EventBus, check_bus
from ..checks import check_count
from ..commands import request_kind
from ..dispatch import EventDraft
from ..document_events import KINDS, DocumentEvent, EventKind, cause_of, field_changes, kind_of
from ..effects import Effect
from ..errors import CassetteError, CassetteWarning, RecordedEffectError, RecordingError
from ..events import EMPTY_METADATA, Event, frozen_metadata, type_name
from ..payloads import freeze_payload, is_model_class
from ..redaction import redact_text
from ..trace import EffectOutcome, EventTrace
from ..tracecontext import carrier_of
from ..views import short_repr
from .types import exception_name, payload_type_name, resolve_payload_type, resolve_type

if TYPE_CHECKING:
    from ..store import TemporalStore

__all__ = [
    "DEFAULT_SOURCE",
    "Cassette",
    "CassetteEntry",
    "RecordedAttempt",
    "RecordedChange",
    "RecordedEffect",
    "RecordedError",
    "RecordedResult",
    "Recorder",
    "effects_of",
    "format_time",
    "parse_time",
    "record",
    "store_changes",
]

DEFAULT_SOURCE = "atlas_eda"

MAX_LINE_BYTES = 64 * 1024 * 1024
"""The longest cassette line :meth:`Cassette.load` reads by default (64 MiB, newline
excluded): a longer one is refused rather than read into memory without end."""

_TAIL_CHUNK = 64 * 1024  # how much of a cassette's end is read at a time to find its last line

logger = logging.getLogger(__name__)
"""The CloudEvents ``source`` written for events without one (read back as ``None``)."""

_REQUIRED = ("specversion", "id", "source", "type")
_REQUIRED_SET = frozenset(_REQUIRED)


# -- time --------------------------------------------------------------------------------


_SECOND_TEXTS: dict[int, str] = {}
"""``YYYY-MM-DDTHH:MM:SS`` of whole seconds since the epoch already formatted: the events
of a recording share a few seconds, so most times cost a dict lookup."""

_SECOND_TEXTS_KEPT = 4096
"""How many seconds :data:`_SECOND_TEXTS` holds before it is cleared (bounded memory)."""


def format_time(timestamp: float) -> str:
    """``timestamp`` (seconds since the epoch) as RFC 3339 UTC, ``...THH:MM:SS.ffffffZ``:
    at least microsecond precision, and as many more digits as it takes for
    :func:`parse_time` to give back exactly the same float."""
    text = repr(float(timestamp))
    whole, dot, digits = text.partition(".")
    if not (dot and whole.isdigit() and digits.isdigit()):
        return _format_time_plainly(timestamp)
    # A float whose repr is ``I.F`` (not negative, no exponent: every time since 1970
    # before the year 316 million) is that decimal exactly: its whole seconds are I and
    # its fraction's digits F, which is what the plain rules compute with Decimal
    # (tests/test_cassette.py holds the two equal).
    seconds = int(whole)
    prefix = _SECOND_TEXTS.get(seconds)
    if prefix is None:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
        prefix = f"{moment:%Y-%m-%dT%H:%M:%S}"
        if len(_SECOND_TEXTS) >= _SECOND_TEXTS_KEPT:
            _SECOND_TEXTS.clear()
        _SECOND_TEXTS[seconds] = prefix
    return f"{prefix}.{digits.rstrip('0').ljust(6, '0')}Z"


def _format_time_plainly(timestamp: float) -> str:
    """:func:`format_time` by the plain rules: the float's exact decimal, split with
    Decimal arithmetic (any float, negative or written with an exponent)."""
    exact = Decimal(repr(float(timestamp)))
    seconds = int(exact.to_integral_value(rounding=ROUND_FLOOR))
    with localcontext() as exactly:
        # A float's fraction can need ~330 digits (-1e-300 is 0.999…9 past -1 s): the
        # default 28 would round it to a whole second.
        exactly.prec = 400
        fraction = format(exact - seconds, "f").partition(".")[2].rstrip("0").ljust(6, "0")
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction}Z"


_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)\Z"
)


_MINUTES: dict[str, int] = {}
"""Seconds since the epoch of ``YYYY-MM-DDTHH:MM`` (UTC) prefixes already parsed: the
events of a cassette share a few minutes, so most times cost a dict lookup."""

_MINUTES_KEPT = 4096
"""How many prefixes :data:`_MINUTES` holds (more than two days of distinct minutes)
before it is cleared: bounded memory for a long cassette."""


def _utc_minute(prefix: str) -> int:
    seconds = _MINUTES.get(prefix)
    if seconds is None:
        moment = datetime(
            int(prefix[:4]), int(prefix[5:7]), int(prefix[8:10]), int(prefix[11:13]),
            int(prefix[14:16]), tzinfo=UTC,
        )  # fmt: skip
        seconds = calendar.timegm(moment.utctimetuple())
        if len(_MINUTES) >= _MINUTES_KEPT:
            _MINUTES.clear()
        _MINUTES[prefix] = seconds
    return seconds


_EXACT_DIGITS = 15
"""The most fractional digits the fast path of :func:`parse_time` takes: with the whole
seconds that is 25 significant digits, exact in Decimal's 28."""


_SECONDS: dict[str, int] = {}
"""Seconds since the epoch of the ``YYYY-MM-DDTHH:MM:SS`` prefixes (UTC, not before
1970) of times :func:`parse_time` took its fast path for: a time written by
:func:`format_time` in the same second as one parsed before costs a dict lookup."""

_SECONDS_PREFIX = 19
"""The length of a ``YYYY-MM-DDTHH:MM:SS`` prefix."""


def parse_time(text: str) -> float:
    """An RFC 3339 time as seconds since the epoch (every fractional digit kept, so
    :func:`format_time`'s output parses back to the very same float); ``ValueError``
    when ``text`` is not an RFC 3339 time."""
    if (
        type(text) is str
        and text[-1:] == "Z"
        and text[_SECONDS_PREFIX : _SECONDS_PREFIX + 1] == "."
    ):
        # A second seen before (only a prefix the regular expression matched is kept)
        # with ASCII digits after it: what the fast path below gives, without the match.
        seconds = _SECONDS.get(text[:_SECONDS_PREFIX])
        fraction = text[_SECONDS_PREFIX + 1 : -1]
        if (
            seconds is not None
            and len(fraction) <= _EXACT_DIGITS
            and fraction.isdigit()
            and fraction.isascii()
        ):
            return float(f"{seconds}.{fraction}")
    match = _TIME.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time like 2026-01-31T12:00:00.000000Z")
    fraction = match.group(7) or "0"
    if match.group(8) in ("Z", "z") and len(fraction) <= _EXACT_DIGITS and match.group(6) < "60":
        # The fast path for UTC times as format_time writes them: the whole seconds and
        # at most 15 fractional digits (25 significant digits, exact for Decimal's 28) as
        # one decimal string, which float() rounds correctly, as the Decimal sum below.
        seconds = _utc_minute(text[:16]) + int(match.group(6))
        if seconds >= 0:
            if len(_SECONDS) >= _MINUTES_KEPT:
                _SECONDS.clear()
            _SECONDS[text[:_SECONDS_PREFIX]] = seconds
            return float(f"{seconds}.{fraction}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    offset = match.group(8)
    if offset in ("Z", "z"):
        zone = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    seconds = calendar.timegm(moment.utctimetuple())
    with localcontext() as exactly:
        exactly.prec = 400
        return float(Decimal(seconds) + Decimal(f"0.{match.group(7) or '0'}"))


# -- what a cassette holds ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedError:
    """An effect's failure as recorded: the exception's class, qualified
    (``module.QualName``, such as ``builtins.PermissionError``; a bare class name in
    cassettes written before names were qualified), and its message."""

    type: str
    message: str

    @classmethod
    def of(cls, error: BaseException) -> RecordedError:
        """``error`` as a cassette records it. A failure replay raised again in place of
        one it could not raise by class (a :class:`RecordedEffectError`) is recorded as
        the original was, so that re-recording a replay gives the same cassette."""
        if isinstance(error, RecordedEffectError):
            return cls(error.recorded_type, error.recorded_message)
        # Secrets in the message stay out of the cassette (atlas_eda.redaction).
        return cls(exception_name(type(error)), redact_text(str(error)))

    @property
    def qualified(self) -> bool:
        """Whether :attr:`type` names the module too (every cassette written since class
        names were qualified); replay raises only qualified classes by class."""
        return "." in self.type

    @property
    def name(self) -> str:
        """The class's own name (its ``__name__``), as the bus reports a failure."""
        return self.type.rpartition(".")[2]


@dataclass(frozen=True, slots=True)
class RecordedAttempt:
    """A failed attempt of an effect that its retry policy tried again: its error and
    the seconds waited before the next attempt."""

    error: RecordedError
    wait: float


@dataclass(frozen=True, slots=True)
class RecordedEffect:
    """One effect performed while an event was handled. ``type`` is the effect's Enum
    member for an :class:`atlas_eda.Effect`, or the intent's class name (a ``str``, such
    as ``"Func"``) for the ``effect`` library's own intents; ``result`` is what the
    performer returned, ``error`` its failure (``None`` when it succeeded), at its last
    attempt; ``retried``: the failed attempts before it (optional in a cassette: none
    recorded means one attempt)."""

    type: Enum | str
    payload: Any = None
    description: str = ""
    result: Any = None
    error: RecordedError | None = None
    retried: tuple[RecordedAttempt, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the effect was performed without raising."""
        return self.error is None

    @property
    def attempts(self) -> int:
        """How many times the effect's performer was called."""
        return len(self.retried) + 1


@dataclass(frozen=True, slots=True)
class RecordedChange:
    """One stored Document event written while a recorded event was being delivered:
    the document's id, the version written, its ``kind`` (``"created"``, ``"updated"``
    or ``"deleted"``) and the fields it set with their values (what
    :func:`atlas_eda.document_events.field_changes` gives)."""

    document: str
    version: int
    kind: EventKind
    fields: dict[str, Any]

    @classmethod
    def of(cls, event: DocumentEvent) -> RecordedChange:
        """The change the stored ``event`` made."""
        return cls(
            str(event.originator_id), event.originator_version, kind_of(event), field_changes(event)
        )

    def as_json(self) -> dict[str, Any]:
        """The change as a cassette's ``atlasstate`` holds it."""
        return {
            "document": self.document,
            "version": self.version,
            "kind": self.kind,
            "fields": self.fields,
        }


@dataclass(frozen=True, slots=True)
class RecordedResult:
    """What a command or query returned (``value``), or the error its handler raised
    (``error``; then ``value`` is ``None``), as its cassette line's ``atlasresult``
    records it."""

    value: Any = None
    error: RecordedError | None = None

    @classmethod
    def of(cls, trace: EventTrace) -> RecordedResult | None:
        """The result in ``trace`` of a command or query (``None`` for an event's)."""
        if trace.answered:
            return cls(trace.result)
        errors = [d.error for d in trace.deliveries if d.error is not None]
        if errors and request_kind(trace.event.type) is not None:
            return cls(error=RecordedError.of(errors[0]))
        return None


@dataclass(frozen=True, slots=True)
class CassetteEntry:
    """One line of a cassette: its 1-based line number, the event, its effects, the
    store changes written while it was delivered (empty when recorded without a store)
    and, for a command or query, its result."""

    line: int
    event: Event
    effects: tuple[RecordedEffect, ...] = ()
    state: tuple[RecordedChange, ...] = ()
    result: RecordedResult | None = None


PENDING_KEPT = 10_000
"""How many events' store changes a :class:`Recorder` keeps while waiting for their
event's tree to finish before dropping them (those of events it never records)."""

STATE_PAGE = 500
"""How many stored events :func:`store_changes` reads at a time."""


def store_changes(store: TemporalStore, after: int) -> tuple[int, dict[str, list[RecordedChange]]]:
    """The changes written to ``store`` after log position ``after``, grouped by the id
    of the bus event whose delivery wrote them (their durable cause), in log order, and
    the last position read. Changes written outside any delivery belong to no event and
    are left out."""
    changes: dict[str, list[RecordedChange]] = {}
    position = after
    while True:
        page = store.notifications(position + 1, STATE_PAGE)
        if not page:  # a short page is not the end: the store leaves its outbox rows out
            return position, changes
        for notification in page:
            event = store.decode(notification)
            cause = cause_of(event)
            if cause is not None:
                changes.setdefault(cause.event_id, []).append(RecordedChange.of(event))
            position = notification.id


# -- recording ---------------------------------------------------------------------------


MAX_NESTING = 200
"""The deepest a recorded value may nest (lists and dicts inside each other): deeper is
refused when recording, well before Python's recursion limit or a JSON parser's."""


def _json_path_problem(value: Any, path: str, depth: int = 0) -> str | None:
    """Where under ``value`` something cannot be stored as JSON and read back as it was,
    or ``None`` when everything can."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r} (JSON has no NaN/inf)"
    if depth > MAX_NESTING:
        return f"{path} is nested too deeply"
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = _json_path_problem(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                kind = type(key).__name__
                return f"{path} has the key {key!r} of type {kind} (JSON keys are str)"
            problem = _json_path_problem(item, f"{path}[{key!r}]", depth + 1)
            if problem:
                return problem
        return None
    return f"{path} is a {type(value).__name__} ({short_repr(value)})"


def _checked(value: Any, field: str, event: Event) -> Any:
    problem = _json_path_problem(value, field)
    if problem is not None:
        raise RecordingError(
            f"Cannot record {event!r}: {problem}, which cannot be stored as JSON. Use only "
            f"str, int, float, bool, None, lists and dicts with str keys in event data, "
            f"metadata and effect payloads and results (event data may also be a frozen "
            f"dataclass or pydantic model whose class is registered with "
            f"atlas_eda.testing.register_types). "
            f"Nothing of this root event was written."
        )
    return value


def _typed_payload(data: Any) -> tuple[Any, str | None]:
    """What to record of an event's ``data``: a frozen dataclass or pydantic model of a
    registered class as the JSON object of its fields (a dataclass's init fields; a model's
    ``model_dump(mode="json")``), with its class name; anything else as it is."""
    if isinstance(data, type):
        return data, None
    if is_model_class(type(data)):
        name = payload_type_name(type(data))
        return (data, None) if name is None else (data.model_dump(mode="json"), name)
    if not dataclasses.is_dataclass(data):
        return data, None
    name = payload_type_name(type(data))
    if name is None:
        return data, None  # refused by _checked, which says how to register the class
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(data) if f.init}
    return fields, name


def _effect_record(outcome: EffectOutcome, index: int, event: Event) -> dict[str, Any]:
    intent = outcome.effect
    field = f"effects[{index}]"
    if isinstance(intent, Effect):
        item: dict[str, Any] = {
            "type": type_name(intent.type),
            "payload": _checked(intent.payload, f"{field}.payload", event),
            "description": intent.description,
        }
    else:
        item = {"type": type(intent).__name__, "payload": None, "description": short_repr(intent)}
    if outcome.error is None:
        item["result"] = _checked(outcome.result, f"{field}.result", event)
    else:
        error = RecordedError.of(outcome.error)
        item["error"] = {"type": error.type, "message": error.message}
    if outcome.retried:  # absent when the first attempt was the last: old cassettes' shape
        item["retried"] = [
            {"error": _error_json(RecordedError.of(a.error)), "wait": a.wait}
            for a in outcome.retried
        ]
    return item


def _error_json(error: RecordedError) -> dict[str, str]:
    return {"type": error.type, "message": error.message}


def effects_of(trace: EventTrace) -> tuple[EffectOutcome, ...]:
    """The effects performed while the event of ``trace`` (not its children) was handled,
    in the order they were performed: each delivery's (its handler's own and those of the
    ``EffectMonad`` it returned), delivery by delivery, then those outside any delivery."""
    return tuple(e for d in trace.deliveries for e in d.effects) + trace.effects


def _extensions(
    event: Event,
    effects: tuple[EffectOutcome, ...],
    state: tuple[RecordedChange, ...] | list[RecordedChange],
    result: RecordedResult | None = None,
) -> dict[str, str]:
    """The extension attributes of ``event``'s line: its causation and correlation ids,
    and its metadata, effects, store changes and result as JSON text (those it has)."""
    extensions: dict[str, str] = {}
    if event.correlation_id is not None:
        extensions["correlationid"] = event.correlation_id
    if event.causation_id is not None:
        extensions["causationid"] = event.causation_id
    metadata = dict(event.metadata)
    # The trace context goes in CloudEvents' distributed-tracing extension attributes.
    carrier = carrier_of(metadata, f"the metadata of {event!r}")
    if carrier:
        extensions.update(carrier)
        for name in carrier:
            del metadata[name]
    if metadata:
        metadata = _checked(metadata, "metadata", event)
        extensions["atlasmetadata"] = json.dumps(metadata, separators=(",", ":"))
    if effects:
        items = [_effect_record(outcome, i, event) for i, outcome in enumerate(effects)]
        extensions["atlaseffects"] = json.dumps(items, separators=(",", ":"))
    if state:
        changes = [change.as_json() for change in state]
        extensions["atlasstate"] = json.dumps(changes, separators=(",", ":"), ensure_ascii=False)
    if result is not None:
        extensions["atlasresult"] = json.dumps(_result_record(result, event), separators=(",", ":"))
    return extensions


def _result_record(result: RecordedResult, event: Event) -> dict[str, Any]:
    """``result`` as ``atlasresult`` holds it: ``{"value": ...}`` or ``{"error": {"type":
    ..., "message": ...}}``; a value must be JSON, as event data must."""
    if result.error is not None:
        return {"error": {"type": result.error.type, "message": result.error.message}}
    return {"value": _checked(result.value, "result", event)}


_RECORDED_EXTENSIONS = frozenset(
    {
        "correlationid",
        "causationid",
        "atlasmetadata",
        "atlaseffects",
        "atlasstate",
        "atlasresult",
        "atlasdatatype",
    }
)
"""The extension attributes a recorder writes: lowercase letters only, none named ``data``."""

_RECORDED_ATTRIBUTES = {
    "specversion": "1.0",
    "id": None,
    "source": None,
    "type": None,
    "time": None,
    "datacontenttype": "application/json",
}
"""The context attributes a recorder writes first, in this order (``None``: the event's)."""


def _sdk_accepts(attributes: dict[str, Any]) -> bool:
    """Whether ``attributes``, as :func:`encode_event` builds them, are certainly accepted
    by the CloudEvents SDK's ``CloudEvent(attributes)`` unchanged: a non-empty ``str`` id,
    source and type, version ``1.0``, a timezone-aware time, the JSON content type and
    only the recorder's extensions. ``False`` leaves the decision (and its message) to
    the SDK (tests/test_cassette.py holds this to the SDK on fuzzed attributes)."""
    names = iter(attributes)
    for name, fixed in _RECORDED_ATTRIBUTES.items():
        if next(names, None) != name:
            return False
        value = attributes[name]
        if fixed is not None:
            if type(value) is not str or value != fixed:
                return False
        elif name == "time":
            if type(value) is not datetime or not value.tzinfo:
                return False
        elif type(value) is not str or not value:
            return False
    return all(name in _RECORDED_EXTENSIONS and type(attributes[name]) is str for name in names)


def encode_event(
    event: Event,
    effects: tuple[EffectOutcome, ...] = (),
    state: tuple[RecordedChange, ...] | list[RecordedChange] = (),
    result: RecordedResult | None = None,
) -> str:
    """``event`` as one CloudEvents 1.0 structured-mode JSON line (without the newline),
    with the store changes its delivery wrote (``state``) when there are any and a
    command's or query's ``result``;
    :class:`RecordingError` if something in it cannot be stored as JSON."""
    try:
        moment = datetime.fromtimestamp(event.timestamp, UTC)
        time_text = format_time(event.timestamp)
    except (TypeError, ValueError, OverflowError, OSError, ArithmeticError):
        raise RecordingError(
            f"Cannot record {event!r}: its timestamp {event.timestamp!r} is not a time "
            f"(seconds since the epoch, as time.time() gives). Nothing of this root event "
            f"was written."
        ) from None
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source or DEFAULT_SOURCE,
        "type": type_name(event.type),
        "time": moment,
        "datacontenttype": "application/json",
    }
    attributes.update(_extensions(event, effects, state, result))
    data, data_type = _typed_payload(event.data)
    if data_type is not None:
        attributes["atlasdatatype"] = data_type
    data = _checked(data, "data", event)
    # The SDK validates the attributes (required ones, extension names), unless they are
    # of the shape it is known to accept (see _sdk_accepts); the time is then written with
    # full precision, which the SDK's datetime would cut to microseconds.
    if _sdk_accepts(attributes):
        line = attributes  # what CloudEvent(attributes, data).get_attributes() gives
    else:
        try:
            cloud_event = CloudEvent(attributes, data)
        except CloudEventValidationError as exc:
            raise RecordingError(
                f"Cannot record {event!r} as a CloudEvent: {' '.join(str(exc).split())}. "
                f"Give events a non-empty id and source. Nothing of this root event was "
                f"written."
            ) from None
        line = dict(cloud_event.get_attributes())
    line["time"] = time_text
    if data is not None:
        line["data"] = data
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Recorder:
    """Writes every root event published on ``bus`` and everything it caused to the
    cassette at ``path`` (created or truncated): one CloudEvents JSON line per event, in
    publish order, flushed as soon as the root event has been handled. Use it as a
    context manager, or call :meth:`close`.

    With ``store`` (the :class:`~atlas_eda.store.TemporalStore` the system writes to),
    each line also records the store changes written while its event was delivered (see
    :class:`RecordedChange`), which check-mode replay compares; without one, no state is
    recorded.

    An event that cannot be recorded (data that is not JSON) raises
    :class:`RecordingError` in the bus's watcher (the bus logs it); nothing of that root
    event is written, recording stops, and :meth:`close` raises the error again.

    With ``append=True`` an existing cassette is continued rather than truncated; a partial
    last line (a recorder killed mid-write) is cut off first, and what was dropped is logged
    as a warning, so the cassette loads again."""

    def __init__(
        self,
        bus: EventBus,
        path: str | os.PathLike[str],
        *,
        fsync: bool = False,
        store: TemporalStore | None = None,
        append: bool = False,
    ) -> None:
        check_bus("the bus to record", bus)
        if bus.history_limit == 0:
            raise ValueError(
                "Recorder needs the bus's history to build traces: this bus has "
                "history_limit=0. Create it with a history_limit of at least 1."
            )
        self.path = Path(path)
        self.error: RecordingError | None = None
        self._fsync = fsync
        self._lock = threading.Lock()
        if append:
            _repair_tail(self.path)
        mode = "a" if append else "w"
        self._file: IO[str] | None = self.path.open(mode, encoding="utf-8", newline="\n")
        self._lines = 0
        self._history_limit = bus.history_limit
        self.store = store
        # Changes read from the store whose event's tree has not been written yet (a root
        # published on another thread meanwhile), by causing event id.
        self._pending: dict[str, list[RecordedChange]] = {}
        try:
            self._position = store.last_position() if store is not None else 0
            self._stop = bus.watch(self._on_trace)
        except BaseException:
            self._file.close()
            raise

    @property
    def lines(self) -> int:
        """How many lines have been written."""
        return self._lines

    def _on_trace(self, trace: EventTrace) -> None:
        with self._lock:
            if self._file is None or self.error is not None:
                return
            if not trace.complete:
                self.error = RecordingError(
                    f"Cannot record {trace.event!r} whole: {trace.missing} of the events it "
                    f"caused had already left the bus's history (history_limit="
                    f"{self._history_limit}) when it finished. Nothing of this root event was "
                    f"written; give the bus a larger history_limit while recording."
                )
                raise self.error
            try:
                nodes = list(trace.walk())
                state = self._state_of(nodes)
                text = "".join(
                    encode_event(
                        node.event,
                        effects_of(node),
                        state.get(node.event.id, ()),
                        RecordedResult.of(node),
                    )
                    + "\n"
                    for node in nodes
                )
            except RecordingError as exc:
                self.error = exc
                raise
            except Exception as exc:  # a bug, but the test must still notice
                self.error = RecordingError(
                    f"Cannot record {trace.event!r}: {type(exc).__name__}: {exc}. Nothing of "
                    f"this root event was written."
                )
                raise self.error from exc
            self._file.write(text)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._lines += text.count("\n")

    def _state_of(self, nodes: list[EventTrace]) -> dict[str, list[RecordedChange]]:
        """The store changes of the events of ``nodes``, by event id (none without a store)."""
        if self.store is None:
            return {}
        self._position, changes = store_changes(self.store, self._position)
        for event_id, written in changes.items():
            self._pending.setdefault(event_id, []).extend(written)
        state = {
            n.event.id: self._pending.pop(n.event.id) for n in nodes if n.event.id in self._pending
        }
        if len(self._pending) > PENDING_KEPT:
            # Changes of events never recorded (published before recording started, or
            # by a bus the recorder does not watch): bounded memory.
            self._pending.clear()
        return state

    def close(self) -> None:
        """Stop recording and close the file; raises the :class:`RecordingError` of an
        event that could not be recorded, if any."""
        with self._lock:
            if self._file is not None:
                self._stop()
                self._file.close()
                self._file = None
            error = self.error
        if error is not None:
            raise error

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(RecordingError):  # the body's own exception matters more
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "recording"
        return f"Recorder({str(self.path)!r}, {self._lines} lines, {state})"


def record(
    bus: EventBus,
    path: str | os.PathLike[str],
    *,
    fsync: bool = False,
    store: TemporalStore | None = None,
    append: bool = False,
) -> Recorder:
    """``with record(bus, "session.jsonl") as recorder:`` records the session to a
    cassette, with the changes written to ``store`` when given; ``append=True`` continues
    an existing cassette, its partial last line cut off first (see :class:`Recorder`)."""
    return Recorder(bus, path, fsync=fsync, store=store, append=append)


def _repair_tail(path: Path) -> None:
    """Cut a partial last line (no newline: a recorder killed while writing it) off the
    cassette at ``path``, if it exists, logging how much was dropped."""
    try:
        file = path.open("r+b")
    except FileNotFoundError:
        return
    with file:
        size = end = file.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - _TAIL_CHUNK)
            file.seek(start)
            newline = file.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end == size:
            return
        file.truncate(end)
        file.flush()
        os.fsync(file.fileno())
    logger.warning(
        "cassette %s: dropped a partial last line of %d bytes after byte %d (a recording "
        "cut off while writing it) before appending",
        path,
        size - end,
        end,
    )


# -- loading -----------------------------------------------------------------------------


class _BadLine(Exception):
    pass


def _read_lines(file: Path, max_line_bytes: int) -> tuple[list[bytes], bool]:
    """The lines of the regular file ``file`` (newlines removed), and whether its last
    line was complete; a :class:`CassetteError` for anything else or a line too long."""
    if not stat.S_ISREG(file.stat().st_mode):  # stat first: opening a FIFO would block
        raise CassetteError(
            f"cassette {str(file)!r} is not a regular file (a directory, device or pipe); "
            f"give the path of a recorded .jsonl file."
        )
    lines: list[bytes] = []
    with file.open("rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):  # replaced meanwhile
            raise CassetteError(f"cassette {str(file)!r} is not a regular file.")
        while line := stream.readline(max_line_bytes + 1):
            if line.endswith(b"\n"):
                lines.append(line[:-1])
                continue
            if len(line) > max_line_bytes:
                raise CassetteError(
                    f"{file}, line {len(lines) + 1}: longer than max_line_bytes="
                    f"{max_line_bytes} bytes; if the cassette is yours, load it with a "
                    f"larger max_line_bytes (atlas-eda cassette --max-line-bytes N).",
                    len(lines) + 1,
                )
            lines.append(line)
            return lines, False
    return lines, True


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (a recorder never writes NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is too large for a float")
    return value


_DECODER = msgspec.json.Decoder()
"""msgspec's JSON decoder, untyped: dicts, lists, str, int, float, bool and None, as
``json.loads`` gives them."""


def _loads(text: str) -> Any:
    """Strict JSON, as a recorder writes it: no NaN/Infinity, no number that overflows to
    an infinite float, nesting shallow enough to decode (else ``ValueError``).

    msgspec decodes first: it refuses everything :func:`plain_loads` refuses (NaN,
    Infinity, numbers out of range, too deep) and more (lone surrogates), and gives what it
    accepts exactly as ``json.loads`` does (tests/test_cassette_json.py holds the two
    equal). Whatever msgspec refuses is decoded again by :func:`plain_loads`, so what is
    accepted, and the message of what is not, are those of ``json.loads``."""
    try:
        return _DECODER.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return plain_loads(text)


def plain_loads(text: str) -> Any:
    """:func:`_loads` by the standard library alone: the definition of what a cassette's
    JSON may hold, and the messages of what it may not."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested too deeply to decode") from None


def _extension_json(raw: Any, name: str, expected: type) -> Any:
    """The JSON value of the extension ``name`` (its text ``raw``), which must be a JSON
    ``expected`` (``None`` when there is none)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _BadLine(f"the {name} extension must be a JSON string, got {type(raw).__name__}")
    try:
        value = _loads(raw)
    except ValueError as exc:
        raise _BadLine(f"the {name} extension is not valid JSON ({exc})") from None
    if not isinstance(value, expected):
        raise _BadLine(f"the {name} extension must hold a JSON {expected.__name__}")
    return value


def _recorded_effect(item: Any, index: int, types: dict[str, Enum]) -> RecordedEffect:
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise _BadLine(f"atlaseffects[{index}] is not an object with a string 'type'")
    name: str = item["type"]
    effect_type: Enum | str | None = types.get(name) if "." in name else name
    if effect_type is None:
        try:
            effect_type = types[name] = resolve_type(name)
        except KeyError as exc:
            raise _BadLine(f"atlaseffects[{index}]: {exc.args[0]}") from None
    error = item.get("error")
    recorded_error = None
    if error is not None:
        recorded_error = _recorded_error(error, f"atlaseffects[{index}].error")
    description = item.get("description", "")
    if not isinstance(description, str):
        raise _BadLine(f"atlaseffects[{index}].description must be a string")
    return RecordedEffect(
        effect_type,
        item.get("payload"),
        description,
        item.get("result"),
        recorded_error,
        _recorded_attempts(item.get("retried", []), f"atlaseffects[{index}].retried"),
    )


def _recorded_error(error: Any, field: str) -> RecordedError:
    if not (
        isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and error["type"]
        and isinstance(error.get("message"), str)
    ):
        raise _BadLine(
            f"{field} must be {{'type': str, 'message': str}} with a "
            f"non-empty type (the exception's class, module.QualName)"
        )
    return RecordedError(error["type"], error["message"])


def _recorded_attempts(items: Any, field: str) -> tuple[RecordedAttempt, ...]:
    if not isinstance(items, list):
        raise _BadLine(f"{field} must be a list of {{'error': ..., 'wait': seconds}}")
    attempts = []
    for n, item in enumerate(items):
        wait = item.get("wait") if isinstance(item, dict) else None
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
            raise _BadLine(f"{field}[{n}] must be {{'error': ..., 'wait': seconds (0 or more)}}")
        attempts.append(
            RecordedAttempt(_recorded_error(item.get("error"), f"{field}[{n}].error"), wait)
        )
    return tuple(attempts)


_FIELD_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "created": {"title": (str,), "content": (str,), "author": (str,)},
    "updated": {"title": (str,), "content": (str,), "last_editor": (str,)},
    "deleted": {"is_deleted": (bool,), "deletion_reason": (str, type(None))},
}
"""The fields each kind of change can set, with the types of their values."""

_REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    "created": frozenset({"title", "content", "author"}),
    "updated": frozenset(),
    "deleted": frozenset({"is_deleted", "deletion_reason"}),
}

_CHANGE_KEYS = ("document", "version", "kind", "fields")


def _recorded_change(item: Any, index: int) -> RecordedChange:
    where = f"atlasstate[{index}]"
    if not isinstance(item, dict) or set(item) != set(_CHANGE_KEYS):
        raise _BadLine(
            f"{where} must be an object with exactly the keys document, version, kind and fields"
        )
    document = item["document"]
    try:
        canonical = isinstance(document, str) and str(UUID(document)) == document
    except ValueError:
        canonical = False
    if not canonical:
        raise _BadLine(f"{where}.document must be a document id (a UUID string), got {document!r}")
    version = item["version"]
    if type(version) is not int or version < 1:
        raise _BadLine(f"{where}.version must be an integer of at least 1, got {version!r}")
    kind = item["kind"]
    if kind not in KINDS:
        raise _BadLine(f"{where}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "created" and version != 1:
        raise _BadLine(f"{where}: a created document has version 1, not {version}")
    fields = item["fields"]
    if not isinstance(fields, dict):
        raise _BadLine(f"{where}.fields must be an object of field names and values")
    types = _FIELD_TYPES[kind]
    for name, value in fields.items():
        expected = types.get(name)
        if expected is None:
            raise _BadLine(
                f"{where}.fields: a change of kind {kind} sets no field {name!r} (only "
                f"{', '.join(types)})"
            )
        if type(value) not in expected:
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in expected)
            raise _BadLine(f"{where}.fields[{name!r}] must be {wanted}, got {type(value).__name__}")
    missing = sorted(_REQUIRED_FIELDS[kind] - fields.keys())
    if missing:
        raise _BadLine(f"{where}.fields: a change of kind {kind} sets {', '.join(missing)} too")
    return RecordedChange(document, version, kind, fields)


def _typed_data(data: Any, name: str) -> Any:
    """The registered payload class named ``name`` built from the recorded fields ``data``."""
    try:
        cls = resolve_payload_type(name)
    except KeyError as exc:
        raise _BadLine(str(exc.args[0])) from None
    if not isinstance(data, dict):
        raise _BadLine(f"the data of a {name} must be a JSON object of its fields")
    try:
        if is_model_class(cls):  # the model validates (and converts) its own fields
            return cls.model_validate(data)
        hints = _field_hints(cls)
        return cls(**{key: _as_hinted(value, hints.get(key)) for key, value in data.items()})
    except Exception as exc:  # the recorded fields do not fit the class (any more)
        raise _BadLine(
            f"the recorded fields do not build a {name} ({type(exc).__name__}: {short_repr(exc)})"
        ) from None


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _field_hints(cls: type[Any]) -> dict[str, Any]:
    """The resolved field annotations of a registered payload class (none when they cannot
    be resolved: its fields are then given as JSON reads them)."""
    hints = _HINTS.get(cls)
    if hints is None:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # an annotation naming what its module no longer has
            hints = {}
        _HINTS[cls] = hints
    return hints


def _as_hinted(value: Any, hint: Any) -> Any:
    """``value`` as JSON read it, with the lists a ``tuple[...]`` annotation calls for
    turned back into tuples (JSON has no tuples), all the way down."""
    if not isinstance(value, list) or typing.get_origin(hint) is not tuple:
        return value
    args = typing.get_args(hint)
    if args[1:] == (Ellipsis,):  # tuple[X, ...]
        return tuple(_as_hinted(item, args[0]) for item in value)
    if len(args) == len(value):
        return tuple(_as_hinted(item, arg) for item, arg in zip(value, args, strict=True))
    return tuple(value)


def _recorded_result(item: dict[str, Any] | None) -> RecordedResult | None:
    if item is None:
        return None
    if set(item) == {"value"}:
        return RecordedResult(item["value"])
    error = item.get("error")
    if (
        set(item) == {"error"}
        and isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and error["type"]
        and isinstance(error.get("message"), str)
    ):
        return RecordedResult(error=RecordedError(error["type"], error["message"]))
    raise _BadLine(
        "the atlasresult extension must hold {'value': ...} or {'error': {'type': str, "
        "'message': str}} (a command's or query's result, or its handler's error)"
    )


def _optional_str(attributes: Mapping[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    if value is not None and not isinstance(value, str):
        raise _BadLine(f"the {name} extension must be a string")
    return value


_KNOWN = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "datacontenttype",
        "correlationid",
        "causationid",
        "atlasmetadata",
        "atlaseffects",
        "atlasstate",
        "atlasdatatype",
        "atlasresult",
        "traceparent",
        "tracestate",
    }
)
"""The attributes a recorder writes (``data`` aside): valid extension names, and no
optional attribute the SDK checks beyond what :func:`_plainly_valid` checks."""


def _plainly_valid(attributes: dict[str, Any]) -> bool:
    """Whether the CloudEvents SDK is sure to accept ``attributes`` (with ``time`` as an
    aware datetime): only the attributes a recorder writes, the required ones non-empty
    strings, ``specversion`` 1.0. When not sure, the SDK itself is asked."""
    return (
        attributes.keys() <= _KNOWN
        and attributes["specversion"] == "1.0"
        and all(
            type(attributes[name]) is str and attributes[name] for name in ("id", "source", "type")
        )
        and (type(attributes.get("datacontenttype", "-")) is str)
        and attributes.get("datacontenttype") != ""
    )


_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class _Line(msgspec.Struct, forbid_unknown_fields=True):
    """A cassette line as a recorder writes it, whose attributes :func:`_plainly_valid`
    accepts by their shape alone: only the attributes a recorder writes, ``specversion``
    1.0, the required ones non-empty strings, ``datacontenttype`` absent or a non-empty
    string, the extensions absent, ``null`` or strings (the time is checked after)."""

    specversion: Literal["1.0"]
    id: _NonEmpty
    source: _NonEmpty
    type: _NonEmpty
    time: str
    datacontenttype: _NonEmpty | msgspec.UnsetType = msgspec.UNSET
    correlationid: str | None = None
    causationid: str | None = None
    atlasmetadata: str | None = None
    atlaseffects: str | None = None
    atlasstate: str | None = None
    atlasdatatype: str | None = None
    atlasresult: str | None = None
    data: Any = None


class _Error(msgspec.Struct):
    """An effect's error as :func:`_recorded_error` accepts it (other keys ignored)."""

    type: _NonEmpty
    message: str


class _Attempt(msgspec.Struct):
    """A failed attempt as :func:`_recorded_attempts` accepts it (other keys ignored)."""

    error: _Error
    wait: Annotated[int, msgspec.Meta(ge=0)] | Annotated[float, msgspec.Meta(ge=0)]


class _Effect(msgspec.Struct):
    """An ``atlaseffects`` item as :func:`_recorded_effect` accepts it (other keys ignored;
    the type is resolved after)."""

    type: str
    payload: Any = None
    description: str = ""
    result: Any = None
    error: _Error | None = None
    retried: list[_Attempt] = []


_LINE_DECODER = msgspec.json.Decoder(_Line)
_EFFECTS_DECODER = msgspec.json.Decoder(list[_Effect])

_LAST_SECOND = 253_402_300_799.0
"""9999-12-31T23:59:59Z: a time from 1970 until before it is sure to be a ``datetime``."""


def _entry(number: int, text: str, types: dict[str, Enum]) -> CassetteEntry:
    """:func:`plain_entry`, faster: a line shaped as a recorder writes it (msgspec decodes
    and checks its shape in one pass, :class:`_Line`) is read here; anything else, or
    anything this path is not sure of, is left to :func:`plain_entry`, so that what is
    accepted, and the message of what is not, are the same
    (tests/test_cassette_json.py holds the two equal). A line with a trace context
    (``traceparent``, ``tracestate``: not fields of :class:`_Line`) is one of those."""
    try:
        line = _LINE_DECODER.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return plain_entry(number, text, types)
    try:
        timestamp = parse_time(line.time)
    except ValueError:
        return plain_entry(number, text, types)
    if line.atlasdatatype is not None or not 0.0 <= timestamp < _LAST_SECOND:
        return plain_entry(number, text, types)
    event_type = types.get(line.type)
    if event_type is None:
        try:
            event_type = types[line.type] = resolve_type(line.type)
        except KeyError:
            return plain_entry(number, text, types)
    try:
        metadata = _extension_json(line.atlasmetadata, "atlasmetadata", dict) or EMPTY_METADATA
        effects = _fast_effects(line.atlaseffects, types)
        changes = _extension_json(line.atlasstate, "atlasstate", list) or []
        state = tuple(_recorded_change(item, i) for i, item in enumerate(changes))
        result = _recorded_result(_extension_json(line.atlasresult, "atlasresult", dict))
    except _BadLine:
        return plain_entry(number, text, types)
    # Built as Dispatcher.publish builds events (dispatch.EventDraft): the type is a
    # registered Enum member and the data is frozen here, as Event() would check and
    # freeze them, at a third of its cost (tests/test_cassette_json.py: equal entries).
    draft = EventDraft()
    draft.type = event_type
    draft.data = freeze_payload(line.data)
    draft.id = line.id
    draft.timestamp = timestamp
    source = line.source
    draft.source = None if source == DEFAULT_SOURCE else source
    draft.metadata = EMPTY_METADATA if metadata is EMPTY_METADATA else frozen_metadata(metadata)
    draft.correlation_id = line.correlationid
    draft.causation_id = line.causationid
    draft.__class__ = Event  # type: ignore[assignment]
    event: Event = draft  # type: ignore[assignment]
    return CassetteEntry(number, event, effects, state, result)


def _fast_effects(raw: str | None, types: dict[str, Enum]) -> tuple[RecordedEffect, ...]:
    """The recorded effects of an ``atlaseffects`` extension, decoded and checked by msgspec
    (:class:`_Effect`); :class:`_BadLine` for anything else (:func:`plain_entry` then says
    what is wrong)."""
    if raw is None:
        return ()
    try:
        items = _EFFECTS_DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise _BadLine("atlaseffects") from None
    effects = []
    for item in items:
        name = item.type
        effect_type: Enum | str | None = types.get(name) if "." in name else name
        if effect_type is None:
            try:
                effect_type = types[name] = resolve_type(name)
            except KeyError:
                raise _BadLine("atlaseffects") from None
        error = item.error
        effects.append(
            RecordedEffect(
                effect_type,
                item.payload,
                item.description,
                item.result,
                None if error is None else RecordedError(error.type, error.message),
                tuple(
                    RecordedAttempt(RecordedError(a.error.type, a.error.message), a.wait)
                    for a in item.retried
                ),
            )
        )
    return tuple(effects)


def plain_entry(number: int, text: str, types: dict[str, Enum]) -> CassetteEntry:
    """The entry of line ``number`` (``text``) by the plain rules, one check after another:
    the definition of what a cassette line may hold and of the message of each bad line
    (an internal exception whose text is the reason); ``types`` caches the types resolved
    so far."""
    try:
        attributes = _loads(text)
    except ValueError as exc:
        raise _BadLine(f"malformed JSON ({exc})") from None
    if not isinstance(attributes, dict):
        raise _BadLine(f"not a CloudEvent: a JSON {type(attributes).__name__}, not an object")
    if not attributes.keys() >= _REQUIRED_SET:
        missing = [name for name in _REQUIRED if name not in attributes]
        raise _BadLine(f"not a CloudEvent 1.0: no {', '.join(missing)} attribute")
    time_text = attributes.get("time")
    if time_text is None:
        raise _BadLine("the event has no 'time'")
    try:
        timestamp = parse_time(time_text)
        moment = datetime.fromtimestamp(timestamp, UTC)
    except (ValueError, OverflowError, OSError, InvalidOperation) as exc:
        raise _BadLine(f"unparsable time: {exc}") from None
    data = attributes.pop("data", None)
    if "data_base64" in attributes:
        raise _BadLine("binary data (data_base64) cannot be replayed; data must be JSON")
    data_type = _optional_str(attributes, "atlasdatatype")
    if data_type is not None:
        data = _typed_data(data, data_type)
    if not _plainly_valid(attributes):  # what the SDK would accept, checked cheaply
        try:
            CloudEvent({**attributes, "time": moment}, data)
        except Exception as exc:
            raise _BadLine(f"not a CloudEvent 1.0: {' '.join(str(exc).split())}") from None
    type_text = attributes["type"]
    event_type = types.get(type_text)
    if event_type is None:
        try:
            event_type = types[type_text] = resolve_type(type_text)
        except KeyError as exc:
            raise _BadLine(str(exc.args[0])) from None
    metadata = (
        _extension_json(attributes.get("atlasmetadata"), "atlasmetadata", dict) or EMPTY_METADATA
    )
    carrier = carrier_of(attributes, f"line {number}")  # a malformed one: ignored, logged
    if carrier:
        metadata = {**metadata, **carrier}
    items = _extension_json(attributes.get("atlaseffects"), "atlaseffects", list) or []
    effects = tuple(_recorded_effect(item, i, types) for i, item in enumerate(items))
    changes = _extension_json(attributes.get("atlasstate"), "atlasstate", list) or []
    state = tuple(_recorded_change(item, i) for i, item in enumerate(changes))
    result = _recorded_result(_extension_json(attributes.get("atlasresult"), "atlasresult", dict))
    source = attributes["source"]
    event = Event(
        type=event_type,
        data=data,
        id=attributes["id"],
        timestamp=timestamp,
        source=None if source == DEFAULT_SOURCE else source,
        metadata=metadata,
        correlation_id=_optional_str(attributes, "correlationid"),
        causation_id=_optional_str(attributes, "causationid"),
    )
    return CassetteEntry(number, event, effects, state, result)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (when it is on) for the block: the entries
    a load builds hold no reference cycles, so the collector has nothing to find among
    them, yet its passes over them, as they pile up, cost a third of a large load. It is
    on again after the block, whatever happens in it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Cassette:
    """The events of a recorded session, in the order they were published."""

    def __init__(self, entries: list[CassetteEntry], path: Path | None = None) -> None:
        self.entries = entries
        self.path = path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        strict: bool = True,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> Cassette:
        """Read the cassette at ``path``. A bad line (malformed JSON, a truncated last
        line, not a CloudEvent, an unknown type, an unparsable time) raises
        :class:`CassetteError` naming its line; with ``strict=False`` it is skipped with a
        :class:`CassetteWarning` instead. Types resolve only through ``register_types``.
        Only a regular file is read (a device or a pipe could never end), and a line
        longer than ``max_line_bytes`` (default :data:`MAX_LINE_BYTES`) raises
        :class:`CassetteError` naming it, even with ``strict=False``."""
        check_count("max_line_bytes", max_line_bytes, minimum=1)
        file = Path(path)
        try:
            lines, complete = _read_lines(file, max_line_bytes)
        except FileNotFoundError:
            raise CassetteError(
                f"cassette {str(file)!r} not found; record one with atlas_eda.testing.record."
            ) from None
        except OSError as exc:
            raise CassetteError(f"cannot read cassette {str(file)!r}: {exc.strerror}.") from None
        entries: list[CassetteEntry] = []
        types: dict[str, Enum] = {}
        with _collector_paused():
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    try:
                        text = line.decode("utf-8")
                    except UnicodeDecodeError:
                        raise _BadLine("not UTF-8 text") from None
                    entries.append(_entry(number, text, types))
                except _BadLine as exc:
                    reason = str(exc)
                    if number == len(lines) and not complete and reason.startswith("malformed"):
                        reason = f"truncated last line (the recording was cut off): {reason}"
                    message = f"{file}, line {number}: {reason}"
                    if strict:
                        raise CassetteError(message, number) from None
                    warnings.warn(f"{message}; line skipped", CassetteWarning, stacklevel=2)
        return cls(entries, file)

    def roots(self) -> list[CassetteEntry]:
        """The entries of root events (no causation id): what replay publishes."""
        return [e for e in self.entries if e.event.causation_id is None]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[CassetteEntry]:
        return iter(self.entries)

    def __repr__(self) -> str:
        where = f"{str(self.path)!r}, " if self.path else ""
        return f"Cassette({where}{len(self.entries)} events, {len(self.roots())} roots)"
