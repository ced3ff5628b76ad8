"""atlas_eda: a synchronous, in-process event mesh whose every event, effect and state
version can be inspected, rewound, diffed and replayed."""

from .aspects import AspectWeaver, LoggingAspect, MetricsAspect
from .bus import DeadLetter, EventBus
from .document import Document
from .effects import Effect, EffectHandler, EffectMonad, EffectType
from .errors import (
    AtlasEdaError,
    ConcurrencyError,
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
    PositionError,
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
    "ConcurrencyError",
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
    "PositionError",
    "RecordedEvent",
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
