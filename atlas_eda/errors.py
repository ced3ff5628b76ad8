"""The exception hierarchy of atlas_eda: every error the library raises derives from
:class:`AtlasEdaError`, and every message says what was wrong and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class AtlasEdaError(Exception):
    """Base class of every error atlas_eda raises on purpose."""


class InvalidEventError(AtlasEdaError, TypeError):
    """An event (or its type) is not something the bus can publish: the type must be an
    ``enum.Enum`` member and a prebuilt event must be an :class:`atlas_eda.Event`."""


class ImmutablePayloadError(AtlasEdaError, TypeError):
    """A handler (or anyone) tried to change an event's data in place: event data is frozen
    when the event is built (see :mod:`atlas_eda.payloads`), so every handler, the history,
    the trace and the recorder see it as it was published. Derive a changed copy instead."""


class EventCycleError(AtlasEdaError):
    """Publishing nested deeper than the bus's ``max_depth``: almost always handlers that
    publish each other's events forever. ``chain`` holds the event types, outermost first."""

    def __init__(self, message: str, chain: tuple[str, ...]) -> None:
        super().__init__(message)
        self.chain = chain


class MiddlewareError(AtlasEdaError):
    """A middleware raised or returned something other than an ``Event`` or ``None``; the
    event was neither recorded nor delivered. The original exception is the ``__cause__``."""


class NoEffectHandlerError(AtlasEdaError):
    """A handler returned an ``EffectMonad`` but the bus has no ``effect_handler`` to run it."""


class InvalidEffectError(AtlasEdaError, TypeError):
    """An ``Effect`` was built with a type that is not an ``enum.Enum`` member."""


class UnhandledEffectError(AtlasEdaError, ValueError):
    """No performer is registered for one or more effects; nothing was performed, unless
    they were found only when a step depending on an earlier effect's result was reached
    (``EffectMonad.perform``): then the effects before that step were performed.
    ``effects`` holds the effects that had no performer."""

    def __init__(self, message: str, effects: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.effects = effects


class PendingResultError(AtlasEdaError):
    """The value of an ``EffectMonad`` was asked for, but it depends on the result of an
    effect (``EffectMonad.perform``) that is known only when the monad is run: run it
    (``monad.run(handler)`` returns the value)."""


class DocumentDeletedError(AtlasEdaError):
    """The document was deleted; deleted documents cannot be updated or deleted again."""


class DocumentNotFoundError(AtlasEdaError, ValueError):
    """No document has that id (raised by :class:`atlas_eda.DocumentService`)."""


class InvalidDocumentError(AtlasEdaError, ValueError):
    """A document field cannot be stored (wrong type, or text that is not valid Unicode).
    Nothing was saved. ``field`` names the offending field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class StoreURLError(AtlasEdaError, ValueError):
    """A store URL is malformed, has an unsupported scheme, or points at a place a store
    cannot be created (for instance a SQLite file in a directory that does not exist)."""


class StoreOpenError(AtlasEdaError):
    """The store's database could not be opened or created; nothing was written. Raised
    too, before anything touches the file, for a file that is not an atlas_eda store
    (another application's database, a text file, a truncated file), a read-only file or
    directory, and an encrypted store opened without its key (or with another one)."""


class ConcurrencyError(AtlasEdaError):
    """A write lost a race: another writer (thread or process) saved a new version of the
    same document first, or the database stayed locked by other writers longer than the
    lock timeout. Nothing of this write was saved, so it is safe to retry: read the
    document again and reapply the change, or pass ``retries=N`` to ``update_document``.
    ``document_id`` names the document (``None`` for a new one)."""

    def __init__(self, message: str, document_id: str | None = None) -> None:
        super().__init__(message)
        self.document_id = document_id


class FollowerError(AtlasEdaError):
    """A :class:`atlas_eda.StoreFollower` cannot go on: another follower with the same name
    recorded the same position (run one process per name)."""


class UnknownAspectError(AtlasEdaError, ValueError):
    """``AspectWeaver.apply_aspect`` was given a name that was never registered."""


class PositionError(AtlasEdaError, IndexError):
    """A timeline position before the start or past the end of the store's log."""


class UnknownEventError(AtlasEdaError, KeyError):
    """No event with that id is in the bus's history (only its newest events are kept)."""

    def __str__(self) -> str:  # KeyError would repr the message
        return str(self.args[0]) if self.args else ""


class TypeRegistrationError(AtlasEdaError, ValueError):
    """``atlas_eda.testing.register_types`` was given something that is not an ``Enum``
    class, or a different ``Enum`` class with the same name as one already registered
    (cassettes name types ``EnumClass.MEMBER``, so the class name must be unambiguous);
    or ``register_exceptions`` something that is not an ``Exception`` subclass."""


class RecordingError(AtlasEdaError):
    """An event could not be written to a cassette: its data, metadata or an effect's
    payload or result cannot be stored as JSON. Nothing of that root event was written;
    ``Recorder.close()`` raises it again so that a test notices."""


class CassetteError(AtlasEdaError):
    """A cassette file cannot be read: missing, malformed JSON, a truncated last line, a
    line that is not a CloudEvent, an unknown type or an unparsable time. ``line`` is the
    1-based line number (``None`` when the file as a whole is at fault)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class CassetteWarning(UserWarning):
    """A bad cassette line skipped by ``Cassette.load(path, strict=False)``."""


class ReplayError(AtlasEdaError):
    """A cassette cannot be replayed into this bus at all (for instance its history is too
    small to hold the trace of a root event); a behaviour divergence is never an error but
    a :class:`atlas_eda.testing.Divergence` in the report."""


class RecordedEffectError(AtlasEdaError):
    """The recorded failure of an effect, raised again when replay stubs the effect and
    the recorded class is neither a builtin exception nor one registered with
    ``atlas_eda.testing.register_exceptions``. Each recorded class gets a subclass of this
    class with the recorded class name, and its message is the recorded one, so the bus
    reports it as the original was; a handler catching ``Exception`` still catches it.
    ``recorded_type`` is the class as the cassette names it (``module.QualName``, or a bare
    name in cassettes written before class names were qualified), ``recorded_message`` the
    message."""

    def __init__(self, recorded_type: str, recorded_message: str) -> None:
        super().__init__(recorded_message)
        self.recorded_type = recorded_type
        self.recorded_message = recorded_message


ReplayedEffectError = RecordedEffectError
"""The former name of :class:`RecordedEffectError` (the same class), kept working."""


class UnexpectedEffectError(AtlasEdaError):
    """Replay in stub or check mode was asked to perform an effect the cassette does not
    record for that root event; it was not performed."""


class ScenarioError(AtlasEdaError):
    """A given/when/then :class:`atlas_eda.testing.Scenario` is built or used wrongly (a
    ``when`` missing or given twice, a ``make_system`` that returns no bus, ``then_state``
    on a system without a store, an unknown document field); a behaviour that differs from
    the expectation is never this error but an ``AssertionError``."""


class HandlerFailures(AtlasEdaError, ExceptionGroup):
    """Raised by a bus created with ``failure_policy="raise"`` once every handler of an
    event has run: one sub-exception per failed handler, in delivery order (catch it with
    ``except*``). ``event_id`` is the event's id."""

    event_id: str

    def __new__(
        cls, message: str, exceptions: Sequence[Exception], event_id: str = ""
    ) -> HandlerFailures:
        group = super().__new__(cls, message, exceptions)
        group.event_id = event_id
        return group

    def __init__(self, message: str, exceptions: Sequence[Exception], event_id: str = "") -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> HandlerFailures:  # type: ignore[override]
        return HandlerFailures(self.message, excs, self.event_id)


class DeliveryAfterCommitError(AtlasEdaError):
    """A store write was committed, and something run after the commit failed: a bus
    subscriber (``failure_policy="raise"``, an :class:`EventCycleError`, a
    :class:`NoEffectHandlerError`) or a performer of the write's outbox effects. The write
    is durable: do not retry it. ``document_id`` and ``version`` name what was committed,
    ``result`` is what the call would have returned, ``document`` the document as
    committed; the failure is the ``__cause__``."""

    def __init__(
        self, message: str, *, document_id: str, version: int, result: object, document: object
    ) -> None:
        super().__init__(message)
        self.document_id = document_id
        self.version = version
        self.result = result
        self.document = document


class OutboxError(AtlasEdaError, LookupError):
    """``store.outbox`` was asked to perform or discard an entry that is not pending: no
    entry has that id, or it was already performed or discarded."""


class SubscriptionError(AtlasEdaError, ValueError):
    """A subscription the bus cannot honour was refused, nothing connected: a receiver
    with a blinker sender filter (the bus delivers every event to every receiver of its
    type, so a filter would never match), or a handler already connected to that signal
    (each subscription has its own unsubscribe function, so the same handler cannot hold
    two)."""


class AsyncHandlerError(AtlasEdaError, TypeError):
    """A coroutine function (``async def``) was given as a handler, or a handler returned
    an awaitable: the bus is synchronous and would never await it. Refused at subscribe
    time; at delivery, the awaitable is closed and the delivery counts as failed."""


class InvalidArgumentError(AtlasEdaError, TypeError):
    """An argument of the wrong type was given to a public call (for instance a str where
    an ``EventBus`` belongs, or a limit that is not an int); nothing was done."""


class StoreClosedError(AtlasEdaError):
    """A ``TemporalStore`` was used after ``close()``: open it again with its URL."""


class StoreReadError(AtlasEdaError):
    """A store's database could not be read after it was opened: a damaged page, a
    schema that cannot be decoded, a connection lost. The message names the store (its URL
    without the password) and what was being read; the database's own error is the
    ``__cause__``. Nothing was written."""


class CorruptStoreError(StoreReadError):
    """A stored event is not one this store wrote: its topic names no class registered
    with :func:`atlas_eda.store.topics.register_topic` (nothing is imported), or its state
    cannot be decoded. ``position`` is its log position when it was read from the log
    (``None`` when it was read by document id: the message names the id and version)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class NoHandlerError(AtlasEdaError, LookupError):
    """``bus.send`` or ``bus.ask`` was given a command or query type that has no handler:
    register one with ``bus.handle(type, handler)`` first."""


class HandlerConflictError(AtlasEdaError, ValueError):
    """``bus.handle`` was given a command or query type that already has its one handler:
    remove that one first (``handle`` returned its remover)."""


class QuerySideEffectError(AtlasEdaError):
    """A query's handler tried to change something: publish an event, send a command or
    write the store. A query only reads; nothing was published, sent or written."""


class CircuitOpenError(AtlasEdaError):
    """A call refused at once, without calling the dependency, because its circuit
    breaker is open; ``dependency`` is the breaker's name."""

    def __init__(self, message: str, dependency: str) -> None:
        super().__init__(message)
        self.dependency = dependency


class UndeclaredEmitError(AtlasEdaError):
    """On a bus created with ``EventBus(strict_graph=True)``: a handler that declared what
    it emits (``emits=``) published or sent a type it did not declare. Nothing was
    published or sent; add the type to the handler's ``emits=`` (or fix the handler)."""


class UndeclaredEmitWarning(UserWarning):
    """A handler that declared what it emits (``emits=``) published or sent a type it did
    not declare; warned once per handler and type (``EventBus(strict_graph=True)`` makes
    it an :class:`UndeclaredEmitError`). The message was published or sent."""


class GraphCycleError(EventCycleError):
    """``bus.check()`` found cycles in the declared event graph that no handler on them
    allows (``allow_cycle=``). ``cycles`` holds each of them
    (:class:`atlas_eda.graph.GraphCycle`); ``chain`` the type names of the first."""

    def __init__(self, message: str, chain: tuple[str, ...], cycles: tuple[Any, ...]) -> None:
        super().__init__(message, chain)
        self.cycles = cycles


class InvalidSagaError(AtlasEdaError, ValueError):
    """A saga was declared or used wrongly: a ``Saga`` subclass without a start type or a
    correlation key, a step that returns something other than commands, events and
    effects, a compensation that is not a command (``Send``) or an ``Effect``, saga data
    that cannot be stored as JSON. The message names the saga and what to do."""


class SagaCorrelationError(InvalidSagaError, LookupError):
    """An event a saga reacts to lacks the saga's correlation key in its data, so no
    instance can be found for it: publish the key with the event (the message names it)."""


class SagaFailed(AtlasEdaError):
    """Raised by ``Saga.fail(reason)`` inside a step: the saga manager catches it, runs
    the registered compensations in reverse order and ends the saga ``failed``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BusClosedError(AtlasEdaError):
    """A publish (or a send, an ask, a dead letter's retry) on a bus that was closed
    (``bus.close()``, or the :class:`~atlas_eda.runtime.Runtime` holding it closed): nothing
    was recorded or delivered. Publish before closing, or on a new bus."""


class RuntimeConfigError(AtlasEdaError, ValueError):
    """A :class:`~atlas_eda.runtime.Runtime`'s configuration (its arguments or its TOML
    file) was wrong: an unknown key, a value of the wrong kind, a file that is not TOML.
    The message names the key and the file; nothing was opened."""
