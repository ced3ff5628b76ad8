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
        CircuitOpenError,
        ConcurrencyError,
        CorruptStoreError,
        DeliveryAfterCommitError,
        DocumentDeletedError,
        DocumentNotFoundError,
        EventCycleError,
        FollowerError,
        GraphCycleError,
        HandlerConflictError,
        HandlerFailures,
        ImmutablePayloadError,
        InvalidArgumentError,
        InvalidDocumentError,
        InvalidEffectError,
        InvalidEventError,
        MiddlewareError,
        NoEffectHandlerError,
        NoHandlerError,
        OutboxError,
        PendingResultError,
        PositionError,
        QuerySideEffectError,
        RecordedEffectError,
        StoreClosedError,
        StoreOpenError,
        StoreReadError,
        StoreURLError,
        SubscriptionError,
        UndeclaredEmitError,
        UndeclaredEmitWarning,
        UnhandledEffectError,
        UnknownAspectError,
        UnknownEventError,
    )
    from .events import Event, EventId, EventType
    from .follower import StoreFollower
    from .graph import EventGraph, GraphCycle, GraphHandler
    from .payloads import FrozenDict, FrozenList, freeze_payload
    from .projections import DocumentsByAuthor, Projection, ProjectionError, Table
    from .redaction import add_redaction_pattern, redact_text
    from .resilience import Breaker, CircuitBreakerAspect, Retry, RetryAspect
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
    from .trace import Attempt, Delivery, EffectOutcome, EventTrace

__all__ = [
    "AspectWeaver",
    "AsyncHandlerError",
    "AtlasEdaError",
    "Attempt",
    "Breaker",
    "Cause",
    "CircuitBreakerAspect",
    "CircuitOpenError",
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
    "DocumentsByAuthor",
    "Effect",
    "EffectHandler",
    "EffectMonad",
    "EffectOutcome",
    "EffectType",
    "Event",
    "EventBus",
    "EventCycleError",
    "EventGraph",
    "EventId",
    "EventTrace",
    "EventType",
    "FieldChange",
    "FollowerDeadLetter",
    "FollowerError",
    "FrozenDict",
    "FrozenList",
    "GraphCycle",
    "GraphCycleError",
    "GraphHandler",
    "HandlerConflictError",
    "HandlerFailures",
    "ImmutablePayloadError",
    "InvalidArgumentError",
    "InvalidDocumentError",
    "InvalidEffectError",
    "InvalidEventError",
    "LoggingAspect",
    "MetricsAspect",
    "MiddlewareError",
    "NoEffectHandlerError",
    "NoHandlerError",
    "OutboxError",
    "PendingResultError",
    "PositionError",
    "Projection",
    "ProjectionError",
    "QuerySideEffectError",
    "QueryType",
    "RecordedEffectError",
    "RecordedEvent",
    "Requests",
    "Retry",
    "RetryAspect",
    "StateDiff",
    "StoreClosedError",
    "StoreFollower",
    "StoreOpenError",
    "StoreReadError",
    "StoreURLError",
    "SubscriptionError",
    "Table",
    "TemporalStore",
    "Timeline",
    "UndeclaredEmitError",
    "UndeclaredEmitWarning",
    "UnhandledEffectError",
    "UnknownAspectError",
    "UnknownEventError",
    "add_redaction_pattern",
    "freeze_payload",
    "redact_text",
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
            "CircuitOpenError",
            "ConcurrencyError",
            "CorruptStoreError",
            "DeliveryAfterCommitError",
            "DocumentDeletedError",
            "DocumentNotFoundError",
            "EventCycleError",
            "FollowerError",
            "GraphCycleError",
            "HandlerConflictError",
            "HandlerFailures",
            "ImmutablePayloadError",
            "InvalidArgumentError",
            "InvalidDocumentError",
            "InvalidEffectError",
            "InvalidEventError",
            "MiddlewareError",
            "NoEffectHandlerError",
            "NoHandlerError",
            "OutboxError",
            "PendingResultError",
            "PositionError",
            "QuerySideEffectError",
            "RecordedEffectError",
            "StoreClosedError",
            "StoreOpenError",
            "StoreReadError",
            "StoreURLError",
            "SubscriptionError",
            "UndeclaredEmitError",
            "UndeclaredEmitWarning",
            "UnhandledEffectError",
            "UnknownAspectError",
            "UnknownEventError",
        ),
        ".events": ("Event", "EventId", "EventType"),
        ".follower": ("StoreFollower",),
        ".graph": ("EventGraph", "GraphCycle", "GraphHandler"),
        ".payloads": ("FrozenDict", "FrozenList", "freeze_payload"),
        ".projections": ("DocumentsByAuthor", "Projection", "ProjectionError", "Table"),
        ".store.dead_letters": ("FollowerDeadLetter",),
        ".redaction": ("add_redaction_pattern", "redact_text"),
        ".resilience": ("Breaker", "CircuitBreakerAspect", "Retry", "RetryAspect"),
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
        ".trace": ("Attempt", "Delivery", "EffectOutcome", "EventTrace"),
    },
)
