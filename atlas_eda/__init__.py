"""atlas_eda: a synchronous, in-process event mesh whose every event, effect and state
version can be inspected, rewound, diffed and replayed.

Every name below is imported from the module that defines it the first time it is used
(``from atlas_eda import EventBus`` imports ``atlas_eda.bus`` then), so that
``import atlas_eda`` alone, which every pytest run does through the package's pytest
plugin, loads none of the libraries the package is built on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import make_lazy

if TYPE_CHECKING:
    from .aspects import AspectWeaver, LoggingAspect, MetricsAspect
    from .bus import DeadLetter, EventBus
    from .commands import CommandType, QueryType, Requests
    from .document import Document
    from .effects import Effect, EffectHandler, EffectMonad, EffectType
    from .errors import (
        AsyncHandlerError,
        AtlasEdaError,
        ConcurrencyError,
        CorruptStoreError,
        DeliveryAfterCommitError,
        DocumentDeletedError,
        DocumentNotFoundError,
        EventCycleError,
        FollowerError,
        HandlerConflictError,
        HandlerFailures,
        ImmutablePayloadError,
        InvalidArgumentError,
        InvalidDocumentError,
        InvalidEffectError,
        InvalidEventError,
        InvalidSagaError,
        MiddlewareError,
        NoEffectHandlerError,
        NoHandlerError,
        OutboxError,
        PendingResultError,
        PositionError,
        QuerySideEffectError,
        RecordedEffectError,
        SagaCorrelationError,
        SagaFailed,
        StoreClosedError,
        StoreOpenError,
        StoreReadError,
        StoreURLError,
        SubscriptionError,
        UnhandledEffectError,
        UnknownAspectError,
        UnknownEventError,
    )
    from .events import Event, EventId, EventType
    from .follower import StoreFollower
    from .payloads import FrozenDict, FrozenList, freeze_payload
    from .redaction import add_redaction_pattern, redact_text
    from .sagas import Publish, Saga, SagaManager, SagaState, Send, step
    from .service import DocumentService
    from .store import TemporalStore
    from .store.dead_letters import FollowerDeadLetter
    from .timeline import (
        Cause,
        Cursor,
        DocumentState,
        FieldChange,
        RecordedEvent,
        StateDiff,
        Timeline,
    )
    from .trace import Delivery, EffectOutcome, EventTrace

__all__ = [
    "AspectWeaver",
    "AsyncHandlerError",
    "AtlasEdaError",
    "Cause",
    "CommandType",
    "ConcurrencyError",
    "CorruptStoreError",
    "Cursor",
    "DeadLetter",
    "Delivery",
    "DeliveryAfterCommitError",
    "Document",
    "DocumentDeletedError",
    "DocumentNotFoundError",
    "DocumentService",
    "DocumentState",
    "Effect",
    "EffectHandler",
    "EffectMonad",
    "EffectOutcome",
    "EffectType",
    "Event",
    "EventBus",
    "EventCycleError",
    "EventId",
    "EventTrace",
    "EventType",
    "FieldChange",
    "FollowerDeadLetter",
    "FollowerError",
    "FrozenDict",
    "FrozenList",
    "HandlerConflictError",
    "HandlerFailures",
    "ImmutablePayloadError",
    "InvalidArgumentError",
    "InvalidDocumentError",
    "InvalidEffectError",
    "InvalidEventError",
    "InvalidSagaError",
    "LoggingAspect",
    "MetricsAspect",
    "MiddlewareError",
    "NoEffectHandlerError",
    "NoHandlerError",
    "OutboxError",
    "PendingResultError",
    "PositionError",
    "Publish",
    "QuerySideEffectError",
    "QueryType",
    "RecordedEffectError",
    "RecordedEvent",
    "Requests",
    "Saga",
    "SagaCorrelationError",
    "SagaFailed",
    "SagaManager",
    "SagaState",
    "Send",
    "StateDiff",
    "StoreClosedError",
    "StoreFollower",
    "StoreOpenError",
    "StoreReadError",
    "StoreURLError",
    "SubscriptionError",
    "TemporalStore",
    "Timeline",
    "UnhandledEffectError",
    "UnknownAspectError",
    "UnknownEventError",
    "add_redaction_pattern",
    "freeze_payload",
    "redact_text",
    "step",
]

__version__ = "0.1.0"

# The same names as the imports above, by module: what is imported on first use.
make_lazy(
    __name__,
    {
        ".aspects": ("AspectWeaver", "LoggingAspect", "MetricsAspect"),
        ".bus": ("DeadLetter", "EventBus"),
        ".commands": ("CommandType", "QueryType", "Requests"),
        ".document": ("Document",),
        ".effects": ("Effect", "EffectHandler", "EffectMonad", "EffectType"),
        ".errors": (
            "AsyncHandlerError",
            "AtlasEdaError",
            "ConcurrencyError",
            "CorruptStoreError",
            "DeliveryAfterCommitError",
            "DocumentDeletedError",
            "DocumentNotFoundError",
            "EventCycleError",
            "FollowerError",
            "HandlerConflictError",
            "HandlerFailures",
            "ImmutablePayloadError",
            "InvalidArgumentError",
            "InvalidDocumentError",
            "InvalidEffectError",
            "InvalidEventError",
            "InvalidSagaError",
            "MiddlewareError",
            "NoEffectHandlerError",
            "NoHandlerError",
            "OutboxError",
            "PendingResultError",
            "PositionError",
            "QuerySideEffectError",
            "RecordedEffectError",
            "SagaCorrelationError",
            "SagaFailed",
            "StoreClosedError",
            "StoreOpenError",
            "StoreReadError",
            "StoreURLError",
            "SubscriptionError",
            "UnhandledEffectError",
            "UnknownAspectError",
            "UnknownEventError",
        ),
        ".events": ("Event", "EventId", "EventType"),
        ".follower": ("StoreFollower",),
        ".payloads": ("FrozenDict", "FrozenList", "freeze_payload"),
        ".store.dead_letters": ("FollowerDeadLetter",),
        ".redaction": ("add_redaction_pattern", "redact_text"),
        ".sagas": ("Publish", "Saga", "SagaManager", "SagaState", "Send", "step"),
        ".service": ("DocumentService",),
        ".store": ("TemporalStore",),
        ".timeline": (
            "Cause",
            "Cursor",
            "DocumentState",
            "FieldChange",
            "RecordedEvent",
            "StateDiff",
            "Timeline",
        ),
        ".trace": ("Delivery", "EffectOutcome", "EventTrace"),
    },
)
