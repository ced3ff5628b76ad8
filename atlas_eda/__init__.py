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
    from .document import Document
    from .effects import Effect, EffectHandler, EffectMonad, EffectType
    from .errors import (
        AtlasEdaError,
        ConcurrencyError,
        CorruptStoreError,
        DocumentDeletedError,
        DocumentNotFoundError,
        EventCycleError,
        FollowerError,
        HandlerFailures,
        InvalidDocumentError,
        InvalidEffectError,
        InvalidEventError,
        MiddlewareError,
        NoEffectHandlerError,
        PendingResultError,
        PositionError,
        RecordedEffectError,
        StoreOpenError,
        StoreReadError,
        StoreURLError,
        UnhandledEffectError,
        UnknownAspectError,
        UnknownEventError,
    )
    from .events import Event, EventId, EventType
    from .follower import StoreFollower
    from .redaction import add_redaction_pattern, redact_text
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
    "ConcurrencyError",
    "CorruptStoreError",
    "Cursor",
    "DeadLetter",
    "Delivery",
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
    "HandlerFailures",
    "InvalidDocumentError",
    "InvalidEffectError",
    "InvalidEventError",
    "LoggingAspect",
    "MetricsAspect",
    "MiddlewareError",
    "NoEffectHandlerError",
    "PendingResultError",
    "PositionError",
    "RecordedEffectError",
    "RecordedEvent",
    "StateDiff",
    "StoreFollower",
    "StoreOpenError",
    "StoreReadError",
    "StoreURLError",
    "TemporalStore",
    "Timeline",
    "UnhandledEffectError",
    "UnknownAspectError",
    "UnknownEventError",
    "add_redaction_pattern",
    "redact_text",
]

__version__ = "0.1.0"

# The same names as the imports above, by module: what is imported on first use.
make_lazy(
    __name__,
    {
        ".aspects": ("AspectWeaver", "LoggingAspect", "MetricsAspect"),
        ".bus": ("DeadLetter", "EventBus"),
        ".document": ("Document",),
        ".effects": ("Effect", "EffectHandler", "EffectMonad", "EffectType"),
        ".errors": (
            "AtlasEdaError",
            "ConcurrencyError",
            "CorruptStoreError",
            "DocumentDeletedError",
            "DocumentNotFoundError",
            "EventCycleError",
            "FollowerError",
            "HandlerFailures",
            "InvalidDocumentError",
            "InvalidEffectError",
            "InvalidEventError",
            "MiddlewareError",
            "NoEffectHandlerError",
            "PendingResultError",
            "PositionError",
            "RecordedEffectError",
            "StoreOpenError",
            "StoreReadError",
            "StoreURLError",
            "UnhandledEffectError",
            "UnknownAspectError",
            "UnknownEventError",
        ),
        ".events": ("Event", "EventId", "EventType"),
        ".follower": ("StoreFollower",),
        ".redaction": ("add_redaction_pattern", "redact_text"),
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
