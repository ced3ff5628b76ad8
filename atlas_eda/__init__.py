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
        AtlasEdaError,
        ConcurrencyError,
        DeliveryAfterCommitError,
        DocumentDeletedError,
        DocumentNotFoundError,
        EventCycleError,
        FollowerError,
        HandlerConflictError,
        HandlerFailures,
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
        StoreOpenError,
        StoreURLError,
        UnhandledEffectError,
        UnknownAspectError,
        UnknownEventError,
    )
    from .events import Event, EventId, EventType
    from .follower import StoreFollower
    from .service import DocumentService
    from .store import TemporalStore
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
    "AtlasEdaError",
    "Cause",
    "CommandType",
    "ConcurrencyError",
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
    "FollowerError",
    "HandlerConflictError",
    "HandlerFailures",
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
    "QuerySideEffectError",
    "QueryType",
    "RecordedEffectError",
    "RecordedEvent",
    "Requests",
    "StateDiff",
    "StoreFollower",
    "StoreOpenError",
    "StoreURLError",
    "TemporalStore",
    "Timeline",
    "UnhandledEffectError",
    "UnknownAspectError",
    "UnknownEventError",
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
            "AtlasEdaError",
            "ConcurrencyError",
            "DeliveryAfterCommitError",
            "DocumentDeletedError",
            "DocumentNotFoundError",
            "EventCycleError",
            "FollowerError",
            "HandlerConflictError",
            "HandlerFailures",
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
            "StoreOpenError",
            "StoreURLError",
            "UnhandledEffectError",
            "UnknownAspectError",
            "UnknownEventError",
        ),
        ".events": ("Event", "EventId", "EventType"),
        ".follower": ("StoreFollower",),
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
