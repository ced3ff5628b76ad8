"""Given/when/then scenarios, in the manner of Axon's test fixtures.

``Scenario(make_system).given(*events).when(x).then_events(...).then_effects(...)
.then_state(doc_id, **fields)``. Every method returns a new ``Scenario``.

**When it runs.** The scenario runs once, at the first ``then_*`` call after ``when`` (or
at :meth:`Scenario.run`): ``make_system()`` builds a fresh system, the ``given`` events are
published, then ``when``. Each ``then_*`` checks its expectation at once against that run
and raises ``AssertionError`` (expected and actual side by side, with a diff of the data)
when it does not hold; later ``then_*`` calls in the same chain check the same run.

Only what happens from ``when`` on is checked: the events published because of it (the
root events published during ``when`` and, depth first, every event they caused, which is
the order a synchronous bus publishes them in), and the effects performed while those
events were handled, event by event in that order (effects a command performs outside
any event's handling are not in the traces, so not checked). An exception raised by
``when`` propagates as it is, except when ``when`` sends a command or asks a query (an
``(CommandType member, data)`` pair, say): then its result is checked by ``then_result``
and its error by ``then_raises``, which must come before any other ``then_*`` check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..bus import EventBus
from ..commands import request_kind
from ..effects import Effect
from ..errors import ScenarioError, UnknownEventError
from ..events import Event, type_name
from ..store import TemporalStore
from ..trace import EffectOutcome, EventTrace
from .cassette import effects_of
from .replay import json_diff, json_text, outcome_text

__all__ = ["ANY", "Scenario", "ScenarioResult", "system_parts"]


class _AnyType:
    """The "don't care" sentinel: equal to anything."""

    _instance: _AnyType | None = None

    def __new__(cls) -> _AnyType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _AnyType()
"""Matches any value: as a whole event's data, an effect's payload, a document field, or
nested anywhere inside them (``{"id": ANY, "title": "x"}``)."""

_MARK = "\u27e8ANY\u27e9"


def _matches(expected: Any, actual: Any) -> bool:
    if expected is ANY:
        return True
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return expected.keys() == actual.keys() and all(
            _matches(expected[key], actual[key]) for key in expected
        )
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple):
        return len(expected) == len(actual) and all(
            _matches(e, a) for e, a in zip(expected, actual, strict=True)
        )
    try:
        return bool(expected == actual)
    except Exception:
        return False


def _fill(expected: Any, actual: Any) -> Any:
    """``expected`` with each ``ANY`` replaced by what ``actual`` holds there, so a diff
    shows only the differences that count."""
    if expected is ANY:
        return actual
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return {k: _fill(v, actual[k]) if k in actual else v for k, v in expected.items()}
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple):
        filled = [_fill(e, a) for e, a in zip(expected, actual, strict=False)]
        return filled + list(expected[len(actual) :])
    return expected


def _marked(value: Any) -> Any:
    if value is ANY:
        return _MARK
    if isinstance(value, Mapping):
        return {k: _marked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_marked(v) for v in value]
    return value


def _show(value: Any, limit: int = 70) -> str:
    """``value`` as short JSON, ``ANY`` shown bare."""
    text = json_text(_marked(value)).replace(f'"{_MARK}"', "ANY")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(kind: object) -> str:
    if kind is ANY:
        return "ANY"
    return type_name(kind) if isinstance(kind, Enum) else str(kind)


def _table(title: str, expected: list[str], actual: list[str], same: list[bool]) -> str:
    """Expected and actual side by side, ``<|>`` marking the rows that differ."""
    rows = max(len(expected), len(actual))
    left = [expected[n] if n < len(expected) else "(nothing)" for n in range(rows)]
    right = [actual[n] if n < len(actual) else "(nothing)" for n in range(rows)]
    width = max([len("Expected"), *(len(text) for text in left)])
    lines = [title, "", f"{'Expected'.ljust(width)}  |  Actual", f"{'-' * width}--+--{'-' * 6}"]
    for n in range(rows):
        mark = "|" if n < len(same) and same[n] else "<|>"
        lines.append(f"{left[n].ljust(width)} {mark:^3} {right[n]}")
    if rows == 0:
        lines.append(f"{'(nothing)'.ljust(width)}  |  (nothing)")
    return "\n".join(lines)


# -- the system under test ----------------------------------------------------------------


def system_parts(
    system: object, who: str = "make_system()"
) -> tuple[EventBus, TemporalStore | None]:
    """The bus and store of a system under test: an ``EventBus``, a ``(bus, store)`` tuple,
    or an object with a ``.bus`` (or ``.event_bus``) and optionally a ``.store`` (or
    ``.temporal_store``). ``who`` names what returned ``system`` in the error."""
    if isinstance(system, EventBus):
        return system, None
    match system:
        case tuple([EventBus() as given, store]):
            if store is not None and not isinstance(store, TemporalStore):
                raise ScenarioError(
                    f"{who} returned a (bus, store) tuple whose store is a "
                    f"{type(store).__name__}; the second item must be a TemporalStore or None."
                )
            return given, store
    bus = getattr(system, "bus", None)
    if not isinstance(bus, EventBus):
        bus = getattr(system, "event_bus", None)
    if isinstance(bus, EventBus):
        store = getattr(system, "store", None)
        if not isinstance(store, TemporalStore):
            store = getattr(system, "temporal_store", None)
        return bus, store if isinstance(store, TemporalStore) else None
    raise ScenarioError(
        f"{who} returned {type(system).__name__}; it must return an EventBus, a "
        f"(bus, store) tuple, or an object with a .bus (or .event_bus) attribute that is an "
        f"EventBus and optionally a .store (or .temporal_store), a TemporalStore."
    )


Step = Event | tuple[Enum, Any] | Callable[[Any], Any]


def _pair(value: object, *, any_type: bool) -> tuple[Any, Any] | None:
    """``value`` as ``(type, data)`` when it is a 2-tuple whose first item is an Enum
    member (or, with ``any_type``, :data:`ANY`); ``None`` otherwise."""
    match value:
        case tuple([first, second]) if isinstance(first, Enum) or (any_type and first is ANY):
            return first, second
    return None


def _check_step(step: object, where: str, commands: bool) -> None:
    if isinstance(step, Event):
        return
    if _pair(step, any_type=False) is not None:
        return
    if commands and callable(step):
        return
    allowed = "an Event, an (EventType, data) pair or a callable fn(system)"
    raise ScenarioError(f"{where} takes {allowed}; got {step!r}.")


def _perform(step: Step, bus: EventBus, system: object) -> Any:
    """Publish, send or ask ``step`` (or call it with ``system``); returns a command's or
    query's result (``None`` for the others)."""
    if isinstance(step, Event):
        if request_kind(step.type) is not None:
            return bus.requests.resend(step, bus.effect_handler)
        bus.publish_event(step)
    elif isinstance(step, tuple):
        kind = request_kind(step[0])
        if kind == "command":
            return bus.send(step[0], step[1])
        if kind == "query":
            return bus.ask(step[0], step[1])
        bus.publish(step[0], step[1])
    else:
        step(system)
    return None


def _is_request(step: Step) -> bool:
    """Whether ``step`` sends a command or asks a query."""
    if isinstance(step, Event):
        return request_kind(step.type) is not None
    return isinstance(step, tuple) and request_kind(step[0]) is not None


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """One run of a scenario: the system ``make_system`` returned, its bus and store, the
    traces of the root events published during ``when``, and, flattened from them, the
    events (depth first, the publish order) and the effects performed. When ``when`` is a
    command or query: its ``result``, or the ``error`` its handler raised."""

    system: Any
    bus: EventBus
    store: TemporalStore | None
    traces: tuple[EventTrace, ...]
    result: Any = None
    error: Exception | None = None

    @property
    def events(self) -> tuple[Event, ...]:
        """Every event published because of ``when``, in publish order."""
        return tuple(node.event for trace in self.traces for node in trace.walk())

    @property
    def effects(self) -> tuple[EffectOutcome, ...]:
        """Every effect performed while those events were handled, event by event."""
        return tuple(e for t in self.traces for node in t.walk() for e in effects_of(node))


@dataclass(slots=True)
class _Run:
    """The (lazily made) run shared by a scenario and the scenarios its ``then_*`` return."""

    result: ScenarioResult | None = None


def _run(make_system: Callable[[], Any], given: tuple[Step, ...], when: Step) -> ScenarioResult:
    system = make_system()
    bus, store = system_parts(system)
    if not bus.traces or bus.history_limit == 0:
        raise ScenarioError(
            "a scenario reads what happened from the bus's history and traces: create the "
            "bus with traces=True (the default) and a history_limit of at least 1."
        )
    for step in given:
        _perform(step, bus, system)
    roots: list[str] = []
    result: Any = None
    error: Exception | None = None
    stop = bus.watch(lambda trace: roots.append(trace.event.id))
    try:
        result = _perform(when, bus, system)
    except Exception as exc:
        if not _is_request(when):
            raise
        error = exc  # a command's error is an outcome: then_raises checks it
    finally:
        stop()
    traces: list[EventTrace] = []
    for root in roots:
        try:
            trace = bus.trace(root)
        except UnknownEventError:
            trace = None
        if trace is None or not trace.complete:
            raise ScenarioError(
                f"the bus's history (history_limit={bus.history_limit}) is too small to hold "
                f"everything published during when(); create the bus with a larger "
                f"history_limit."
            )
        traces.append(trace)
    return ScenarioResult(system, bus, store, tuple(traces), result, error)


# -- expectations -------------------------------------------------------------------------


def _expected_event(spec: object) -> tuple[Any, Any]:
    if isinstance(spec, Event):
        return spec.type, spec.data
    if isinstance(spec, Enum) or spec is ANY:
        return spec, ANY
    pair = _pair(spec, any_type=True)
    if pair is not None:
        return pair
    raise ScenarioError(
        f"then_events takes (EventType, data) pairs, Events or bare event types (any data); "
        f"got {spec!r}."
    )


def _expected_effect(spec: object) -> tuple[Any, Any, str | None]:
    if isinstance(spec, Effect):
        return spec.type, spec.payload, spec.description
    pair = _pair(spec, any_type=True)
    if pair is not None:
        return (*pair, None)
    if isinstance(spec, Enum) or spec is ANY:
        return spec, ANY, None
    raise ScenarioError(
        f"then_effects takes Effects, (EffectType, payload) pairs or bare effect types (any "
        f"payload); got {spec!r}."
    )


def _first_difference(
    what: str,
    expected: list[tuple[Any, Any]],
    actual: list[tuple[Any, Any]],
    same: list[bool],
    field_name: str,
) -> str:
    for n, ok in enumerate(same):
        if ok:
            continue
        (e_kind, e_data), (a_kind, a_data) = expected[n], actual[n]
        if not _matches(e_kind, a_kind):
            return (
                f"first difference: {what} {n + 1}: expected {_kind(e_kind)}, got {_kind(a_kind)}"
            )
        diff = json_diff(_fill(e_data, a_data), a_data, field_name)
        return f"first difference: {what} {n + 1} ({_kind(a_kind)}): {field_name} differs\n{diff}"
    if len(expected) > len(actual):
        return (
            f"{len(expected)} {what}s expected, {len(actual)} happened: missing "
            f"{_kind(expected[len(actual)][0])}"
        )
    if len(actual) > len(expected):
        return (
            f"{len(expected)} {what}s expected, {len(actual)} happened: unexpected "
            f"{_kind(actual[len(expected)][0])}"
        )
    return ""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A given/when/then test of a system: ``make_system()`` returns a fresh system for
    each run — an ``EventBus``, a ``(bus, store)`` tuple, or an object with ``.bus`` and
    optionally ``.store`` (a ``TemporalStore``). See the module docstring for when it runs."""

    make_system: Callable[[], Any]
    _given: tuple[Step, ...] = ()
    _when: Step | None = None
    _run: _Run = field(default_factory=_Run, compare=False, repr=False)
    _error_checked: bool = False

    def given(self, *events: Step) -> Scenario:
        """Events published (each an ``Event`` or an ``(EventType, data)`` pair) or
        commands run (a callable ``fn(system)``) before ``when``; what they cause is not
        checked. Several calls add up."""
        if self._when is not None:
            raise ScenarioError("given() must come before when(): build a new Scenario.")
        for step in events:
            _check_step(step, "given()", commands=True)
        return Scenario(self.make_system, self._given + tuple(events))

    def when(self, action: Step) -> Scenario:
        """What the scenario tests: an ``Event`` or ``(EventType, data)`` pair published on
        the bus, a command or query sent or asked (a pair or ``Event`` of a
        ``CommandType`` or ``QueryType`` member), or a callable ``fn(system)``."""
        if self._when is not None:
            raise ScenarioError("when() was already given: a scenario tests one action.")
        _check_step(action, "when()", commands=True)
        return Scenario(self.make_system, self._given, action)

    def run(self) -> ScenarioResult:
        """Run the scenario (once; later calls return the same result) and return what
        happened."""
        if self._when is None:
            raise ScenarioError("call when(...) before checking or running the scenario.")
        if self._run.result is None:
            self._run.result = _run(self.make_system, self._given, self._when)
        return self._run.result

    def _outcome(self, check: str) -> ScenarioResult:
        """The run, for a ``then_*`` other than :meth:`then_raises`: an ``AssertionError``
        when ``when``'s command raised and no ``then_raises`` before it expected that."""
        __tracebackhide__ = True  # a failed check points at the test, not here
        result = self.run()
        if result.error is not None and not self._error_checked:
            error = result.error
            raise AssertionError(
                f"{check}: when() raised {type(error).__name__}: {error}. If it should, "
                f"check it first with then_raises({type(error).__name__})."
            ) from error
        return result

    def then_result(self, expected: Any) -> Scenario:
        """Check what the command or query of ``when`` returned (``ANY`` matches anything,
        also nested)."""
        __tracebackhide__ = True  # a failed check points at the test, not here
        if self._when is not None and not _is_request(self._when):
            raise ScenarioError(
                "then_result needs a command or query in when(): a (CommandType member, "
                "data) or (QueryType member, data) pair, or such an Event."
            )
        result = self._outcome("then_result")
        if not _matches(expected, result.result):
            raise AssertionError(
                f"then_result: the result of when() is not the expected one\n\n"
                f"expected: {_show(expected)}\nactual:   {_show(result.result)}\n"
                f"{json_diff(_fill(expected, result.result), result.result, 'result')}"
            )
        return self

    def then_raises(self, error_type: type[BaseException]) -> Scenario:
        """Check that the command or query of ``when`` raised ``error_type`` (or a
        subclass); the ``then_*`` checks after it then look at what happened before."""
        __tracebackhide__ = True  # a failed check points at the test, not here
        if not (isinstance(error_type, type) and issubclass(error_type, BaseException)):
            raise ScenarioError(
                f"then_raises takes an exception class, such as ValueError; got {error_type!r}."
            )
        if self._when is not None and not _is_request(self._when):
            raise ScenarioError(
                "then_raises needs a command or query in when(); an exception raised by a "
                "callable when() propagates as it is (use pytest.raises)."
            )
        result = self.run()
        if not isinstance(result.error, error_type):
            actual = (
                "returned " + _show(result.result)
                if result.error is None
                else f"raised {type(result.error).__name__}: {result.error}"
            )
            raise AssertionError(
                f"then_raises: expected when() to raise {error_type.__name__}, but it {actual}."
            )
        return dataclasses.replace(self, _error_checked=True)

    def then_events(self, *expected: object) -> Scenario:
        """Check the events published because of ``when``, in publish order: each an
        ``(EventType, data)`` pair, an ``Event`` (type and data compared), or a bare event
        type (any data). ``ANY`` matches anything, also nested in the data."""
        __tracebackhide__ = True  # a failed check points at the test, not here
        specs = [_expected_event(spec) for spec in expected]
        result = self._outcome("then_events")
        actual = [(event.type, event.data) for event in result.events]
        same = [
            _matches(e[0], a[0]) and _matches(e[1], a[1])
            for e, a in zip(specs, actual, strict=False)
        ]
        if len(specs) != len(actual) or not all(same):
            table = _table(
                "then_events: the events published because of when() are not the expected ones",
                [f"{_kind(k)} {_show(d)}" for k, d in specs],
                [f"{_kind(k)} {_show(d)}" for k, d in actual],
                same,
            )
            detail = _first_difference("event", specs, actual, same, "data")
            raise AssertionError(f"{table}\n\n{detail}")
        return self

    def then_effects(self, *expected: object) -> Scenario:
        """Check the effects performed while the events of ``when`` were handled (event by
        event in publish order): each an ``Effect`` (type, payload and description
        compared), an ``(EffectType, payload)`` pair or a bare effect type."""
        __tracebackhide__ = True  # a failed check points at the test, not here
        specs = [_expected_effect(spec) for spec in expected]
        result = self._outcome("then_effects")
        outcomes = result.effects
        actual: list[tuple[Any, Any, str]] = []
        for outcome in outcomes:
            intent = outcome.effect
            if isinstance(intent, Effect):
                actual.append((intent.type, intent.payload, intent.description))
            else:
                actual.append((type(intent).__name__, intent, ""))
        same = [
            _matches(e[0], a[0]) and _matches(e[1], a[1]) and (e[2] is None or e[2] == a[2])
            for e, a in zip(specs, actual, strict=False)
        ]
        if len(specs) != len(actual) or not all(same):
            error = [
                None if o.error is None else (type(o.error).__name__, str(o.error))
                for o in outcomes
            ]
            table = _table(
                "then_effects: the effects performed because of when() are not the expected ones",
                [_effect_line(k, p, d) for k, p, d in specs],
                [
                    _effect_line(k, p, d) + outcome_text(o.result, err)
                    for (k, p, d), o, err in zip(actual, outcomes, error, strict=True)
                ],
                same,
            )
            pairs_e = [(k, p) for k, p, _ in specs]
            pairs_a = [(k, p) for k, p, _ in actual]
            pair_same = [
                _matches(e[0], a[0]) and _matches(e[1], a[1])
                for e, a in zip(pairs_e, pairs_a, strict=False)
            ]
            if all(pair_same) and not all(same):
                n = same.index(False)
                detail = (
                    f"first difference: effect {n + 1} ({_kind(actual[n][0])}): expected "
                    f"description {specs[n][2]!r}, got {actual[n][2]!r}"
                )
            else:
                detail = _first_difference("effect", pairs_e, pairs_a, pair_same, "payload")
            raise AssertionError(f"{table}\n\n{detail}")
        return self

    def then_state(self, doc_id: str | Callable[[Any], str], **fields: Any) -> Scenario:
        """Check a document in the system's store: it exists and each named field (a
        ``Document`` attribute such as ``title``, ``content``, ``version``,
        ``is_deleted``) has the given value (``ANY`` for "any"). ``doc_id`` may be a
        callable ``fn(system) -> id`` for a document created during the scenario."""
        __tracebackhide__ = True  # a failed check points at the test, not here
        result = self._outcome("then_state")
        if result.store is None:
            raise ScenarioError(
                "then_state needs a store: make_system must return an object with a .store "
                "(a TemporalStore) or a (bus, store) tuple."
            )
        document_id = doc_id(result.system) if callable(doc_id) else doc_id
        document = result.store.get_document(str(document_id))
        if document is None:
            raise AssertionError(
                f"then_state: document {document_id} is not in the store.\n\n"
                f"expected: a document with {_show(fields)}\nactual:   (no such document)"
            )
        actual: dict[str, Any] = {}
        for name in fields:
            if name.startswith("_") or not hasattr(document, name):
                raise ScenarioError(
                    f"then_state: a Document has no field {name!r}; use document_id, title, "
                    f"content, author, created_at, modified_at, version, last_editor, "
                    f"is_deleted, deleted_at or deletion_reason."
                )
            actual[name] = getattr(document, name)
        same = [_matches(fields[name], actual[name]) for name in fields]
        if not all(same):
            table = _table(
                f"then_state: document {document_id} does not hold the expected fields",
                [f"{name} = {_show(value)}" for name, value in fields.items()],
                [f"{name} = {_show(value)}" for name, value in actual.items()],
                same,
            )
            wrong = [name for name, ok in zip(fields, same, strict=True) if not ok]
            diff = json_diff(
                {n: _fill(fields[n], actual[n]) for n in wrong},
                {n: actual[n] for n in wrong},
                "fields",
            )
            raise AssertionError(f"{table}\n\nfields that differ: {', '.join(wrong)}\n{diff}")
        return self


def _effect_line(kind: Any, payload: Any, description: str | None) -> str:
    desc = f" ({description!r})" if description else ""
    return f"{_kind(kind)} {_show(payload)}{desc}"
