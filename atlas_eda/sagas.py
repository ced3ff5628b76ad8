"""Sagas (process managers) with compensation, whose state is a stored aggregate.

A :class:`Saga` subclass declares the event type that starts it (``starts_with``), the key
in an event's data that finds its instance (``correlation_key``) and, with :func:`step`,
one method per event type it reacts to. A step returns what to do next: commands to send
(:class:`Send`), events to publish (:class:`Publish`) and effects (:class:`~atlas_eda.Effect`,
performed by the bus's effect handler), and may register with :meth:`Saga.compensate_with`
the command or effect that undoes its work. :class:`SagaManager` subscribes the steps on a
bus and keeps each instance as a :class:`~atlas_eda.saga_events.SagaRecord` in the same
:class:`~atlas_eda.TemporalStore` as the documents: every step is a version (kind ``saga``
in the timeline, with the cause of the store), readable again with :meth:`SagaManager.get`.

When a step fails (it raises, calls :meth:`Saga.fail`, or one of its actions raises), the
compensations registered by the steps that succeeded run in reverse order, each recorded as
a version, and the saga ends ``failed``, or ``compensation_failed`` naming each compensation
that raised (the others are still attempted). A step may set a deadline; there are no
threads: :meth:`SagaManager.run_due` fires what is due at the time the caller gives.

A step is saved (one version, one transaction) before its actions run, so a step's
published event reaches the next step of the same instance with the version before it
already stored; the instance being worked on is shared on the thread, so that nested step
reads no row.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, NoReturn, TypeAlias, TypeVar, cast
from uuid import UUID, uuid5

from .bus import EventBus
from .commands import request_kind
from .document_events import Cause, cause_of, current_cause
from .effects import Effect, EffectType
from .errors import (
    InvalidSagaError,
    NoEffectHandlerError,
    SagaCorrelationError,
    SagaFailed,
)
from .events import Event, type_name
from .saga_events import SAGA_KIND, SagaRecord, SagaStatus
from .store import TemporalStore
from .views import short_repr

__all__ = [
    "SAGA_ID_NAMESPACE",
    "Compensation",
    "Publish",
    "Saga",
    "SagaManager",
    "SagaState",
    "Send",
    "StepResult",
    "saga_id_of",
    "saga_positions",
    "step",
    "stored_saga",
    "stored_sagas",
]

logger = logging.getLogger(__name__)

SAGA_ID_NAMESPACE = UUID("0f4c7d2a-93e1-5b6c-8a2d-6e1f3b9c7a45")
"""The ``uuid5`` namespace of saga ids: ``uuid5(ns, "<saga name>/<correlation key>")``, so
that replaying the same events into an empty store finds the same instances."""

ENDED: frozenset[str] = frozenset({"completed", "failed", "compensation_failed"})
"""The statuses of a saga that reacts to nothing more."""

_STEP_MARK = "__atlas_saga_step__"
_LOG_PAGE = 500  # saga rows read per query while finding where each version is

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Send:
    """A command a step sends (``bus.send(type, data)``), or a compensation that does."""

    type: Enum
    data: Any = None


@dataclass(frozen=True, slots=True)
class Publish:
    """An event a step publishes (``bus.publish(type, data)``)."""

    type: Enum
    data: Any = None


Action: TypeAlias = Send | Publish | Effect
Compensation: TypeAlias = Send | Effect
"""What undoes a step's work: a command to send or an effect to perform."""
StepResult: TypeAlias = Action | Iterable[Action] | None
"""What a step returns: nothing, one action, or a sequence of them, done in order."""


def step(message_type: Enum, *, emits: Iterable[Enum] | None = None) -> Callable[[F], F]:
    """Mark a :class:`Saga` method as the step run for events of ``message_type``;
    ``emits`` declares the types it may send or publish, its compensations' commands
    included (the step is subscribed with it: ``bus.graph()`` draws it and the bus checks
    it, see :meth:`atlas_eda.EventBus.subscribe`); ``None`` declares nothing."""
    declared = None if emits is None else tuple(emits)

    def mark(method: F) -> F:
        setattr(method, _STEP_MARK, (message_type, declared))
        return method

    return mark


class Saga:
    """A process manager: subclass it, set ``starts_with`` (the event type that starts an
    instance) and ``correlation_key`` (the key of the event data whose value names the
    instance), and mark a method per event type with :func:`step` (one for
    ``starts_with`` included). ``types`` lists Enum classes of compensations the saga may
    register beyond its own event types (so that a compensation saved by another
    process can be run here); ``name`` (default: the class's name) names its instances.

    In a step, ``self.data`` is the instance's own state (a dict stored as JSON),
    ``self.id`` and ``self.key`` say which instance it is. A step returns
    :data:`StepResult` and may call :meth:`compensate_with`, :meth:`set_deadline`,
    :meth:`clear_deadline`, :meth:`complete` and :meth:`fail`."""

    starts_with: ClassVar[Enum | None] = None
    correlation_key: ClassVar[str | None] = None
    types: ClassVar[tuple[type[Enum], ...]] = ()
    name: ClassVar[str] = ""

    def __init__(self, saga_id: str, key: str, data: dict[str, Any]) -> None:
        self.id = saga_id
        self.key = key
        self.data = data
        self.new_compensations: list[Compensation] = []
        self.deadline: tuple[str, float] | None = None
        self.completed = False

    def compensate_with(self, compensation: Compensation) -> None:
        """Register what undoes this step's work: a :class:`Send` of a command or an
        :class:`~atlas_eda.Effect`; it runs only if a later step fails (or one of this
        step's own actions does not, but a later one fails). Anything else is an
        :class:`InvalidSagaError`."""
        _check_compensation(type(self), compensation)
        self.new_compensations.append(compensation)

    def set_deadline(self, at: float, name: str = "deadline") -> None:
        """Ask :meth:`SagaManager.run_due` to call :meth:`deadline_passed` once its
        ``now`` reaches ``at`` (epoch seconds) while the saga is still running."""
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise InvalidSagaError(
                f"{_saga_name(type(self))}.set_deadline: at must be epoch seconds (an int or "
                f"float), got {short_repr(at)}."
            )
        self.deadline = (str(name), float(at))

    def clear_deadline(self) -> None:
        """Drop the deadline set by an earlier step."""
        self.deadline = None

    def complete(self) -> None:
        """End the saga ``completed`` once this step's actions are done."""
        self.completed = True

    def fail(self, reason: str) -> NoReturn:
        """Stop this step: the saga's registered compensations run in reverse order and
        it ends ``failed`` with ``reason``."""
        raise SagaFailed(str(reason))

    def deadline_passed(self, name: str, now: float) -> StepResult:
        """Called by :meth:`SagaManager.run_due` when the deadline ``name`` has passed
        (``now`` is the caller's time); by default the saga fails. Override to react
        otherwise (return actions, set another deadline, complete)."""
        self.fail(f"the deadline {name!r} passed at {now}")


@dataclass(frozen=True, slots=True)
class SagaState:
    """A saga instance at one version: which saga and key, its ``status``, the ``step``
    that made this version, the ``steps`` done, its ``data``, the ``compensations`` still
    registered (by name), its ``deadline`` (``(name, at)`` or ``None``), why it failed
    (``reason``), each compensation run (``compensated``: ``(name, error or None)``), the
    ones that raised (``failed_compensation``), when (``modified_at``, epoch seconds)
    and the bus event that wrote it (``cause``)."""

    id: str
    saga: str
    key: str
    version: int
    status: SagaStatus
    step: str | None
    steps: tuple[str, ...]
    data: dict[str, Any] = field(hash=False)
    compensations: tuple[str, ...]
    deadline: tuple[str, float] | None
    reason: str | None
    compensated: tuple[tuple[str, str | None], ...]
    failed_compensation: str | None
    modified_at: float
    cause: Cause | None

    @classmethod
    def of(cls, record: SagaRecord) -> SagaState:
        """The state of a stored saga instance."""
        fields = record.fields
        deadline = fields["deadline"]
        return cls(
            id=str(record.id),
            saga=record.saga,
            key=record.key,
            version=record.version,
            status=fields["status"],
            step=fields["step"],
            steps=tuple(fields["steps"]),
            data=fields["data"],
            compensations=tuple(c["name"] for c in fields["compensations"]),
            deadline=None if deadline is None else (deadline["name"], deadline["at"]),
            reason=fields["reason"],
            compensated=tuple((c["name"], c["error"]) for c in fields["compensated"]),
            failed_compensation=fields["failed_compensation"],
            modified_at=record.modified_on.timestamp(),
            cause=cause_of(cast(Any, record)),  # a record holds its newest cause
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields a version sets (all but ``id``, ``version``, ``modified_at`` and
        ``cause``), as a plain dict: what :meth:`SagaManager.diff` compares."""
        skipped = {"id", "version", "modified_at", "cause"}
        return {name: getattr(self, name) for name in self.__slots__ if name not in skipped}


@dataclass(frozen=True, slots=True)
class _Declared:
    saga: type[Saga]
    name: str
    steps: dict[Enum, tuple[str, tuple[Enum, ...] | None]]


class SagaManager:
    """Runs :class:`Saga` subclasses on ``bus``, keeping their instances in ``store``.

    :meth:`register` subscribes a saga's steps; each event of a step's type finds its
    instance by the correlation key in its data (the start type creates it), runs the
    step, saves one version, then sends, publishes and performs what the step returned
    (effects through ``bus.effect_handler``). :meth:`run_due` fires due deadlines;
    :meth:`get`, :meth:`history`, :meth:`diff` and :meth:`instances` read instances back
    (any version, after a restart too); :meth:`declared` says what each saga reacts to and
    emits."""

    def __init__(self, bus: EventBus, store: TemporalStore) -> None:
        self.bus = bus
        self.store = store
        self._sagas: dict[str, _Declared] = {}
        self._types: dict[str, Enum] = {type_name(member): member for member in EffectType}
        self._live = threading.local()

    # -- registration ------------------------------------------------------------------

    def register(self, saga: type[Saga]) -> Callable[[], None]:
        """Subscribe ``saga``'s steps on the bus; returns the function that unsubscribes
        them. A class that is not a Saga, lacks ``starts_with`` (an event type's Enum
        member), ``correlation_key`` or a step for its start type, or whose name is
        already registered, is refused with :class:`InvalidSagaError`, nothing
        subscribed."""
        declared = _declaration(saga)
        if declared.name in self._sagas:
            raise InvalidSagaError(
                f"A saga named {declared.name!r} is already registered with this manager; "
                f"give the class another name (its `name` attribute)."
            )
        for enum_class in (*saga.types, *(type(t) for t in declared.steps)):
            for member in enum_class:
                self._types[type_name(member)] = member
        self._sagas[declared.name] = declared
        removers = [
            self.bus.subscribe(
                message_type, self._reaction(declared, message_type, method), emits=emits
            )
            for message_type, (method, emits) in declared.steps.items()
        ]

        def unregister() -> None:
            for remove in removers:
                remove()
            self._sagas.pop(declared.name, None)

        return unregister

    def declared(self) -> dict[Enum, tuple[Enum, ...]]:
        """What the registered sagas react to, each message type with the types its
        steps declared they emit (``step(..., emits=...)``), for the event graph."""
        graph: dict[Enum, tuple[Enum, ...]] = {}
        for declared in self._sagas.values():
            for message_type, (_, emits) in declared.steps.items():
                known = graph.get(message_type, ())
                graph[message_type] = known + tuple(e for e in emits or () if e not in known)
        return graph

    def _reaction(
        self, declared: _Declared, message_type: Enum, method: str
    ) -> Callable[[Event], None]:
        def react(event: Event) -> None:
            self.handle(declared.saga, event)

        # The name traces and stored causes show for this delivery.
        react.__qualname__ = react.__name__ = f"{declared.name}.{method}"
        react.__module__ = declared.saga.__module__
        return react

    # -- running -----------------------------------------------------------------------

    def handle(self, saga: type[Saga], event: Event) -> str | None:
        """Run ``saga``'s step for ``event`` (what the subscribed handlers do); returns the
        instance's id, or ``None`` when the event concerns no running instance (not
        started, or ended). An event without the correlation key in its data is a
        :class:`SagaCorrelationError`."""
        declared = self._declared(saga)
        key = _correlation(declared, event)
        saga_id = uuid5(SAGA_ID_NAMESPACE, f"{declared.name}/{key}")
        record = self._live_records().get(saga_id) or self.store.get_saga(saga_id)
        starts = event.type == saga.starts_with
        if record is None and not starts:
            logger.debug("%s: no instance %r for %s", declared.name, key, event)
            return None
        if record is not None and (starts or record.fields["status"] != "running"):
            logger.info(
                "%s %s is %s: %s ignored",
                declared.name,
                key,
                "already started" if starts else record.fields["status"],
                type_name(event.type),
            )
            return None
        method, _ = declared.steps[event.type]

        def run(instance: Saga) -> StepResult:
            result: StepResult = getattr(instance, method)(event)
            return result

        self._run_step(
            declared, saga_id=saga_id, key=key, record=record, step_name=method, call=run
        )
        return str(saga_id)

    def run_due(self, now: float | None = None) -> list[str]:
        """Fire every deadline due at ``now`` (epoch seconds; default: the clock now):
        each running instance whose deadline is at or before ``now`` has its
        :meth:`Saga.deadline_passed` run as a step (the deadline cleared first). Returns
        the ids of the instances fired, in log order. Instances of sagas not registered
        here are left alone (logged)."""
        moment = time.time() if now is None else float(now)
        fired: list[str] = []
        for saga_id in self.store.saga_ids():
            record = self.store.get_saga(saga_id)
            if record is None or record.fields["status"] != "running":
                continue
            deadline = record.fields["deadline"]
            if deadline is None or deadline["at"] > moment:
                continue
            declared = self._sagas.get(record.saga)
            if declared is None:
                logger.warning("saga %s (%s) is due but not registered", saga_id, record.saga)
                continue
            name: str = deadline["name"]

            def passed(instance: Saga, name: str = name) -> StepResult:
                return instance.deadline_passed(name, moment)

            self._run_step(
                declared,
                saga_id=record.id,
                key=record.key,
                record=record,
                step_name=f"deadline {name}",
                call=passed,
                deadline_due=True,
            )
            fired.append(saga_id)
        return fired

    # -- reading -----------------------------------------------------------------------

    def get(self, saga_id: str, version: int | None = None) -> SagaState | None:
        """The saga instance ``saga_id`` now, or at ``version`` (1 = its start); ``None``
        when there is no such instance or version."""
        return stored_saga(self.store, saga_id, version)

    def history(self, saga_id: str) -> list[SagaState]:
        """Every version of the instance ``saga_id``, oldest first (empty: no such saga)."""
        latest = self.store.get_saga(saga_id)
        if latest is None:
            return []
        versions = (self.get(saga_id, v) for v in range(1, latest.version + 1))
        return [state for state in versions if state is not None]

    def diff(self, saga_id: str, a: int, b: int) -> dict[str, tuple[Any, Any]]:
        """Each field that differs between versions ``a`` and ``b`` of ``saga_id``, with
        its value at each; :class:`InvalidSagaError` for a version it does not have."""
        states = [self.get(saga_id, v) for v in (a, b)]
        if states[0] is None or states[1] is None:
            raise InvalidSagaError(
                f"Saga {saga_id} has no version {a if states[0] is None else b}; "
                f"SagaManager.history lists its versions."
            )
        before, after = states[0].as_dict(), states[1].as_dict()
        return {k: (before[k], after[k]) for k in before if before[k] != after[k]}

    def instances(self, saga: str | None = None) -> list[SagaState]:
        """Every instance in the store (only those of the saga named ``saga`` when
        given), in the order they started, at their latest version."""
        return stored_sagas(self.store, saga)

    # -- internals ---------------------------------------------------------------------

    def _declared(self, saga: type[Saga]) -> _Declared:
        name = _saga_name(saga)
        declared = self._sagas.get(name)
        if declared is None or declared.saga is not saga:
            raise InvalidSagaError(
                f"Saga {name} is not registered with this manager: call "
                f"manager.register({saga.__name__}) first."
            )
        return declared

    def _live_records(self) -> dict[UUID, SagaRecord]:
        live: dict[UUID, SagaRecord] | None = getattr(self._live, "records", None)
        if live is None:
            live = self._live.records = {}
        return live

    def _run_step(
        self,
        declared: _Declared,
        *,
        saga_id: UUID,
        key: str,
        record: SagaRecord | None,
        step_name: str,
        call: Callable[[Saga], StepResult],
        deadline_due: bool = False,
    ) -> None:
        data = {} if record is None else json.loads(json.dumps(record.fields["data"]))
        instance = declared.saga(str(saga_id), key, data)
        before = None if record is None else record.fields["deadline"]
        if before is not None and not deadline_due:
            instance.deadline = (before["name"], before["at"])
        version = 1 if record is None else record.version + 1
        failure: str | None = None
        invalid: InvalidSagaError | None = None
        try:
            actions = _actions(declared, step_name, call(instance))
            what = self._step_fields(declared, record, instance, step_name, version)
        except SagaFailed as exc:
            failure = exc.reason
        except InvalidSagaError as exc:
            failure, invalid = str(exc), exc
        except Exception as exc:  # a failing step fails the saga: that is what it is for
            failure = f"{type(exc).__name__}: {exc}"
        if failure is not None:
            actions = []
            what = {"step": step_name, "status": "compensating", "reason": failure}
        record = self._save_step(declared, saga_id, key, record, what)
        live = self._live_records()
        owner = saga_id not in live
        live[saga_id] = record
        try:
            if failure is None:
                failure = self._perform_actions(record, actions)
            if failure is not None:
                self._compensate(declared, record, step_name, failure, version)
        finally:
            if owner:
                live.pop(saga_id, None)
        if invalid is not None:
            raise invalid

    def _step_fields(
        self,
        declared: _Declared,
        record: SagaRecord | None,
        instance: Saga,
        step_name: str,
        version: int,
    ) -> dict[str, Any]:
        """The fields the step's version sets (the data and compensations checked)."""
        fields = {} if record is None else record.fields
        new = [self._compensation_record(declared, c, version) for c in instance.new_compensations]
        deadline = instance.deadline
        return {
            "step": step_name,
            "steps": [*fields.get("steps", []), step_name],
            "data": _json(declared, "data", instance.data),
            "compensations": [*fields.get("compensations", []), *new],
            "deadline": None if deadline is None else {"name": deadline[0], "at": deadline[1]},
            "status": "completed" if instance.completed else "running",
        }

    def _compensation_record(
        self, declared: _Declared, compensation: Compensation, version: int
    ) -> dict[str, Any]:
        self._types[type_name(compensation.type)] = compensation.type
        if isinstance(compensation, Send):
            name = type_name(compensation.type)
            return {
                "kind": "command",
                "type": name,
                "data": _json(declared, f"the data of the compensation {name}", compensation.data),
                "description": "",
                "name": name,
                "by": version,
            }
        name = type_name(compensation.type)
        if compensation.description:
            name = f"{name} ({compensation.description})"
        return {
            "kind": "effect",
            "type": type_name(compensation.type),
            "data": _json(
                declared, f"the payload of the compensation {name}", compensation.payload
            ),
            "description": compensation.description,
            "name": name,
            "by": version,
        }

    def _save_step(
        self,
        declared: _Declared,
        saga_id: UUID,
        key: str,
        record: SagaRecord | None,
        what: dict[str, Any],
    ) -> SagaRecord:
        cause = current_cause()
        if record is None:
            record = SagaRecord.start(saga_id, declared.name, key, what, cause)
        else:
            record.change(what=what, cause=cause)
        self.store.save_saga(record)
        return record

    def _change(self, record: SagaRecord, what: dict[str, Any]) -> None:
        record.change(what=what, cause=current_cause())
        self.store.save_saga(record)

    def _perform_actions(self, record: SagaRecord, actions: list[Action]) -> str | None:
        """Do ``actions`` in order; the reason of the first that raised, or ``None``. A
        nested step that ended the saga meanwhile stops the rest."""
        for action in actions:
            try:
                self._perform(action)
            except Exception as exc:
                return f"{_action_name(action)} raised {type(exc).__name__}: {exc}"
            if record.fields["status"] not in ("running", "completed"):
                return None
        return None

    def _perform(self, action: Action | Compensation) -> Any:
        if isinstance(action, Send):
            return self.bus.send(action.type, action.data)
        if isinstance(action, Publish):
            return self.bus.publish(action.type, action.data, source="atlas_eda.sagas")
        handler = self.bus.effect_handler
        if handler is None:
            raise NoEffectHandlerError(
                f"The saga's effect {action!r} needs an effect handler: create the bus with "
                f"EventBus(effect_handler=EffectHandler(...))."
            )
        return handler.handle(action)

    def _compensate(
        self, declared: _Declared, record: SagaRecord, step_name: str, reason: str, failed: int
    ) -> None:
        """Run the compensations of every step but the one at version ``failed``, newest
        first, each recorded as a version; then end the saga."""
        if record.fields["status"] != "compensating":
            self._change(record, {"step": step_name, "status": "compensating", "reason": reason})
        registered = list(record.fields["compensations"])
        remaining = list(registered)
        compensated = list(record.fields["compensated"])
        raised: list[str] = []
        for entry in reversed([c for c in registered if c["by"] != failed]):
            error: str | None = None
            try:
                self._perform(self._compensation(declared, entry))
            except Exception as exc:  # recorded; the other compensations still run
                error = f"{type(exc).__name__}: {exc}"
                raised.append(entry["name"])
                logger.warning("%s: compensation %s raised %s", declared.name, entry["name"], error)
            remaining.remove(entry)
            compensated.append({"name": entry["name"], "error": error})
            self._change(
                record,
                {
                    "step": f"compensate {entry['name']}",
                    "compensations": remaining,
                    "compensated": compensated,
                },
            )
        status: SagaStatus = "compensation_failed" if raised else "failed"
        self._change(
            record,
            {
                "step": "end",
                "status": status,
                "compensations": [],
                "deadline": None,
                "failed_compensation": ", ".join(raised) if raised else None,
            },
        )

    def _compensation(self, declared: _Declared, entry: Mapping[str, Any]) -> Compensation:
        member = self._types.get(entry["type"])
        if member is None:
            raise InvalidSagaError(
                f"The compensation {entry['name']} of saga {declared.name} names a type this "
                f"process does not know: add its Enum class to {declared.saga.__name__}.types."
            )
        if entry["kind"] == "command":
            return Send(member, entry["data"])
        return Effect(member, entry["data"], entry["description"])


def stored_sagas(store: TemporalStore, saga: str | None = None) -> list[SagaState]:
    """Every saga instance in ``store`` (only those of the saga named ``saga`` when
    given), in the order they started, at their latest version; no manager needed."""
    records = (store.get_saga(saga_id) for saga_id in store.saga_ids())
    return [SagaState.of(r) for r in records if r is not None and (saga is None or r.saga == saga)]


def stored_saga(store: TemporalStore, saga_id: str, version: int | None = None) -> SagaState | None:
    """The saga instance ``saga_id`` in ``store`` now, or at ``version``; ``None`` when
    there is no such instance or version (no manager needed)."""
    record = store.get_saga(saga_id, version)
    return None if record is None else SagaState.of(record)


def saga_positions(store: TemporalStore, until: int | None = None) -> dict[str, list[int]]:
    """Where each version of every saga instance is in the store's log: by saga id, in
    the order the instances started, the positions of its versions (version ``v`` at
    index ``v - 1``), only those up to position ``until`` when given, so that an
    instance's version as of a position is the length of its list. Reads the saga rows of
    the log only."""
    found: dict[str, list[int]] = {}
    position = 1
    while True:
        page = store.notifications(position, _LOG_PAGE, stop=until, kinds=[SAGA_KIND])
        if not page:
            return found
        for notification in page:
            found.setdefault(str(notification.originator_id), []).append(notification.id)
        position = page[-1].id + 1


def _saga_name(saga: type[Saga]) -> str:
    return saga.name or saga.__name__


def _declaration(saga: object) -> _Declared:
    """``saga``'s declaration, checked (see :meth:`SagaManager.register`)."""
    if not isinstance(saga, type) or not issubclass(saga, Saga) or saga is Saga:
        raise InvalidSagaError(
            f"SagaManager.register takes a subclass of Saga, got {short_repr(saga)}."
        )
    name = _saga_name(saga)
    start = saga.starts_with
    if not isinstance(start, Enum) or request_kind(start) is not None:
        raise InvalidSagaError(
            f"Saga {name} has no start type: set `starts_with` on the class to the event "
            f"type (an Enum member, not a command or query) whose events start an "
            f"instance, got {short_repr(start)}."
        )
    if not isinstance(saga.correlation_key, str) or not saga.correlation_key:
        raise InvalidSagaError(
            f"Saga {name} has no correlation key: set `correlation_key` on the class to the "
            f"key of the event data whose value names an instance (e.g. 'order'), got "
            f"{short_repr(saga.correlation_key)}."
        )
    steps: dict[Enum, tuple[str, tuple[Enum, ...] | None]] = {}
    for klass in reversed(saga.__mro__):
        for attribute, value in vars(klass).items():
            mark = getattr(value, _STEP_MARK, None)
            if mark is None:
                continue
            message_type, emits = mark
            if not isinstance(message_type, Enum) or request_kind(message_type) is not None:
                raise InvalidSagaError(
                    f"Saga {name}.{attribute}: step() takes an event type (an Enum member, "
                    f"not a command or query), got {short_repr(message_type)}."
                )
            bad = [e for e in emits or () if not isinstance(e, Enum)]
            if bad:
                raise InvalidSagaError(
                    f"Saga {name}.{attribute}: emits must name Enum members, got "
                    f"{short_repr(bad[0])}."
                )
            steps[message_type] = (attribute, emits)
    if start not in steps:
        raise InvalidSagaError(
            f"Saga {name} has no step for its start type {type_name(start)}: mark a method "
            f"with @step({type_name(start)})."
        )
    return _Declared(saga, name, steps)


def _correlation(declared: _Declared, event: Event) -> str:
    """The value of the saga's correlation key in ``event``'s data, as text."""
    key = declared.saga.correlation_key
    data = event.data
    value = data.get(key) if isinstance(data, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise SagaCorrelationError(
            f"Saga {declared.name} cannot find the instance of {type_name(event.type)} event "
            f"{event.id}: its data has no {key!r} (a str or int; got "
            f"{short_repr(data)}). Publish the event with data={{{key!r}: ...}}."
        )
    return str(value)


def _check_compensation(saga: type[Saga], compensation: object) -> None:
    if isinstance(compensation, Effect):
        return
    if isinstance(compensation, Send) and request_kind(compensation.type) == "command":
        return
    raise InvalidSagaError(
        f"Saga {_saga_name(saga)}: a compensation must be a Send of a command (a member of "
        f"a CommandType Enum) or an Effect, got {short_repr(compensation)}; register what "
        f"undoes the step's work as one of those."
    )


def _actions(declared: _Declared, step_name: str, result: object) -> list[Action]:
    """What a step returned, as a list of actions; :class:`InvalidSagaError` otherwise."""
    if result is None:
        return []
    items = [result] if isinstance(result, Send | Publish | Effect) else result
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        items = [items]
    actions: list[Action] = []
    for item in items:
        if isinstance(item, Send) and request_kind(item.type) != "command":
            raise InvalidSagaError(
                f"Saga {declared.name} step {step_name} returned Send({short_repr(item.type)}): "
                f"Send takes a command type; publish an event with Publish(...)."
            )
        if isinstance(item, Publish) and request_kind(item.type) is not None:
            raise InvalidSagaError(
                f"Saga {declared.name} step {step_name} returned Publish({short_repr(item.type)}):"
                f" Publish takes an event type; send a command with Send(...)."
            )
        if not isinstance(item, Send | Publish | Effect):
            raise InvalidSagaError(
                f"Saga {declared.name} step {step_name} returned {short_repr(item)}: a step "
                f"returns None, a Send, a Publish, an Effect or a sequence of them."
            )
        actions.append(item)
    return actions


def _json(declared: _Declared, what: str, value: Any) -> Any:
    """``value`` as it reads back from the store (JSON); :class:`InvalidSagaError` when
    it cannot be stored."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidSagaError(
            f"Saga {declared.name}: {what} cannot be stored ({exc}); use JSON values (dict, "
            f"list, str, int, float, bool, None)."
        ) from None


def _action_name(action: Action) -> str:
    if isinstance(action, Effect):
        return f"effect {type_name(action.type)}"
    verb = "send" if isinstance(action, Send) else "publish"
    return f"{verb} {type_name(action.type)}"


def saga_id_of(saga: type[Saga], key: str | int) -> str:
    """The id of ``saga``'s instance for the correlation key ``key``."""
    return str(uuid5(SAGA_ID_NAMESPACE, f"{_saga_name(saga)}/{key}"))
