"""OpenTelemetry spans for what atlas_eda does (extra ``otel``: ``pip install
'atlas_eda[otel]'``, which brings ``opentelemetry-api``; your application brings the SDK
and its exporters, as OpenTelemetry asks of libraries).

Switched on as OpenTelemetry's instrumentations are: configure a tracer provider, then
``telemetry.instrument(bus, store)``; ``telemetry.uninstrument(bus, store)`` switches it
off. Nothing of OpenTelemetry is imported until this module is, and a bus that is not
instrumented runs exactly the code it runs without the extra. ``instrument`` with no
tracer provider configured changes nothing (it returns ``False``), so it costs nothing.

Once on, each of these is a span, parented as the trace tree is (a handler's publish is a
child of its delivery, which is a child of the publish of the event it handles):

- ``publish <Type.MEMBER>`` (kind ``PRODUCER``) for ``bus.publish`` and
  ``bus.publish_event``; ``bus.publish`` adds the span's W3C ``traceparent`` (and
  ``tracestate``) to the event's metadata;
- ``process <Type.MEMBER>`` (kind ``CONSUMER``) for each handler's delivery;
- ``send <Type.MEMBER>`` / ``ask <Type.MEMBER>`` for a command or query;
- ``perform <Type.MEMBER>`` for each effect an ``EffectHandler``'s registered function
  performs (every attempt of a retried one inside it);
- ``<operation> documents`` (kind ``CLIENT``) for each write of an instrumented
  ``TemporalStore``, whose durable cause records the span's ``traceparent``: a
  ``StoreFollower`` in another process continues that trace.

Attributes follow OpenTelemetry's messaging conventions: ``messaging.system`` is
``"atlas_eda"``, ``messaging.operation.type`` / ``messaging.operation.name``,
``messaging.destination.name`` the event type, ``messaging.message.id`` the event id,
``messaging.message.conversation_id`` its correlation id; store writes carry
``db.system.name`` and ``db.operation.name``. A root publish whose metadata carries a
``traceparent`` (an event from a cassette, a follower's event) continues that trace, even
inside a span of the application's own (a follower's poll loop, say); a malformed one is
ignored with a debug line (:mod:`atlas_eda.tracecontext`)."""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .bus import EventBus
from .effects import set_effect_wrapper
from .events import Event
from .store import TemporalStore
from .subscriptions import Gone, Wrapped
from .trace import running
from .tracecontext import carrier_of, set_current_carrier

__all__ = [
    "INSTRUMENTATION_NAME",
    "MESSAGING_SYSTEM",
    "instrument",
    "is_instrumented",
    "uninstrument",
]

logger = logging.getLogger("atlas_eda.telemetry")

INSTRUMENTATION_NAME = "atlas_eda"
"""The instrumentation scope of every span atlas_eda makes."""

MESSAGING_SYSTEM = "atlas_eda"
"""The ``messaging.system`` attribute of atlas_eda's messaging spans."""

_PROPAGATOR = TraceContextTextMapPropagator()

_STORE_WRITES = ("create_document", "update_document", "delete_document")

_lock = threading.Lock()
# What instrument() set on each target (its instance attributes), until uninstrument().
_instrumented: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()


def instrument(
    *targets: EventBus | TemporalStore, tracer_provider: TracerProvider | None = None
) -> bool:
    """Make spans of what each of ``targets`` (an ``EventBus`` or a ``TemporalStore``)
    does from now on, with ``tracer_provider`` (default: the global one), and of the
    effects performed meanwhile. Returns ``True``; ``False``, changing nothing, when no
    tracer provider is configured (OpenTelemetry's default proxy, or its no-op provider):
    configure one first. A target already instrumented is left as it is; anything else is
    refused with ``TypeError``."""
    for target in targets:
        if not isinstance(target, EventBus | TemporalStore):
            raise TypeError(
                f"telemetry.instrument takes EventBus and TemporalStore objects, got "
                f"{type(target).__name__}; pass the bus and the store whose work to trace."
            )
    provider = tracer_provider or otel_trace.get_tracer_provider()
    if isinstance(provider, otel_trace.ProxyTracerProvider | otel_trace.NoOpTracerProvider):
        logger.info(
            "no OpenTelemetry tracer provider is configured: nothing instrumented; "
            "configure one (opentelemetry-sdk) before calling telemetry.instrument"
        )
        return False
    tracer = provider.get_tracer(INSTRUMENTATION_NAME)
    with _lock:
        for target in targets:
            if target in _instrumented:
                continue
            if isinstance(target, EventBus):
                _instrumented[target] = _instrument_bus(target, tracer)
            else:
                _instrumented[target] = _instrument_store(target, tracer)
        set_effect_wrapper(functools.partial(_perform_span, tracer))
        set_current_carrier(_current_carrier)
    return True


def uninstrument(*targets: EventBus | TemporalStore) -> None:
    """Stop making spans of ``targets``' work (those not instrumented are left as they
    are); once nothing is instrumented, effects are performed without spans again."""
    with _lock:
        for target in targets:
            names = _instrumented.pop(target, ())
            for name in names:
                vars(target).pop(name, None)
            if isinstance(target, EventBus) and names:
                target.subscriptions.wrap_deliveries(None)
        if not _instrumented:
            set_effect_wrapper(None)
            set_current_carrier(None)


def is_instrumented(target: object) -> bool:
    """Whether ``target`` is instrumented (see :func:`instrument`)."""
    return target in _instrumented


# -- the bus ------------------------------------------------------------------------------


def _name(message_type: object) -> str:
    """``Type.MEMBER`` for an Enum member; the value's ``repr`` otherwise (the bus refuses
    it, inside the span)."""
    if isinstance(message_type, Enum):
        return f"{type(message_type).__name__}.{message_type.name}"
    return repr(message_type)


def _attributes(operation: str, kind: str, message_type: object) -> dict[str, Any]:
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": kind,
        "messaging.operation.name": operation,
        "messaging.destination.name": _name(message_type),
    }


def _parent(values: Mapping[str, Any] | None, where: str) -> Context | None:
    """The context to start a span in: inside a delivery, the current one (the trace tree
    in this process); at a root, the trace ``values`` carries, if any (the event's
    producer, in a recording or another process), else the current one."""
    if values is None or running():
        return None
    carrier = carrier_of(values, where)
    return _PROPAGATOR.extract(carrier) if carrier else None


def _current_carrier() -> dict[str, str]:
    """The W3C trace context of the current span (``{}`` when none is valid)."""
    carrier: dict[str, str] = {}
    if otel_trace.get_current_span().get_span_context().is_valid:
        _PROPAGATOR.inject(carrier)
    return carrier


def _instrument_bus(bus: EventBus, tracer: Tracer) -> tuple[str, ...]:
    """Shadow the bus's ways in by spanned ones (instance attributes: other buses are not
    touched) and wrap its deliveries; returns the attributes set."""
    publish, publish_event, send, ask = bus.publish, bus.publish_event, bus.send, bus.ask

    def spanned_publish(
        event_type: Enum,
        data: Any = None,
        source: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        with tracer.start_as_current_span(
            f"publish {_name(event_type)}",
            context=_parent(metadata, "event metadata"),
            kind=SpanKind.PRODUCER,
            attributes=_attributes("publish", "publish", event_type),
        ) as span:
            event_id = publish(
                event_type, data, source, metadata={**(metadata or {}), **_current_carrier()}
            )
            span.set_attribute("messaging.message.id", event_id)
            return event_id

    def spanned_publish_event(event: Event) -> str:
        metadata = event.metadata if isinstance(event, Event) else None
        with tracer.start_as_current_span(
            f"publish {_name(getattr(event, 'type', event))}",
            context=_parent(metadata, "event metadata"),
            kind=SpanKind.PRODUCER,
            attributes=_attributes("publish", "publish", getattr(event, "type", event)),
        ) as span:
            if isinstance(event, Event):
                span.set_attribute("messaging.message.id", event.id)
                if event.correlation_id is not None:
                    span.set_attribute("messaging.message.conversation_id", event.correlation_id)
            return publish_event(event)

    def spanned_send(
        command_type: Enum, data: Any = None, *, metadata: Mapping[str, Any] | None = None
    ) -> Any:
        with tracer.start_as_current_span(
            f"send {_name(command_type)}",
            context=_parent(metadata, "command metadata"),
            kind=SpanKind.PRODUCER,
            attributes=_attributes("send", "send", command_type),
        ):
            return send(command_type, data, metadata={**(metadata or {}), **_current_carrier()})

    def spanned_ask(query_type: Enum, data: Any = None) -> Any:
        with tracer.start_as_current_span(
            f"ask {_name(query_type)}",
            kind=SpanKind.PRODUCER,
            attributes=_attributes("ask", "send", query_type),
        ):
            return ask(query_type, data)

    names = ("publish", "publish_event", "send", "ask")
    for name, spanned in zip(
        names, (spanned_publish, spanned_publish_event, spanned_send, spanned_ask), strict=True
    ):
        setattr(bus, name, spanned)
    bus.subscriptions.wrap_deliveries(functools.partial(_Delivery, tracer))
    return names


class _Delivery(Wrapped):
    """One receiver's call in an instrumented bus's plans: a ``process`` span around it."""

    __slots__ = ("handler", "tracer")

    def __init__(self, tracer: Tracer, call: Callable[[Event], Any], handler: str) -> None:
        super().__init__(call)
        self.tracer = tracer
        self.handler = handler

    def __call__(self, event: Event) -> Any:
        attributes = _attributes("process", "process", event.type)
        attributes["messaging.message.id"] = event.id
        if event.correlation_id is not None:
            attributes["messaging.message.conversation_id"] = event.correlation_id
        attributes["atlas_eda.handler"] = self.handler
        with self.tracer.start_as_current_span(
            f"process {_name(event.type)}",
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return self.call(event)
            except Gone:  # the receiver went away: not a failure (see subscriptions)
                raise
            except BaseException as exc:
                _failed(span, exc)
                raise


def _failed(span: otel_trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


# -- effects and the store ----------------------------------------------------------------


def _perform_span(tracer: Tracer, intent: object, perform: Callable[[], Any]) -> Any:
    """A ``perform`` span around one effect (see effects.set_effect_wrapper)."""
    effect_type = getattr(intent, "type", intent)
    with tracer.start_as_current_span(
        f"perform {_name(effect_type)}",
        attributes={"atlas_eda.effect.type": _name(effect_type)},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            return perform()
        except BaseException as exc:
            _failed(span, exc)
            raise


def _instrument_store(store: TemporalStore, tracer: Tracer) -> tuple[str, ...]:
    """Shadow the store's writes by spanned ones (instance attributes); returns them."""
    system = store.url.split(":", 1)[0] if store.url else "memory"
    for name in _STORE_WRITES:
        write = getattr(store, name)
        setattr(store, name, _spanned_write(tracer, system, name, write))
    return _STORE_WRITES


def _spanned_write(
    tracer: Tracer, system: str, operation: str, write: Callable[..., Any]
) -> Callable[..., Any]:
    @functools.wraps(write)
    def spanned(*args: Any, **kwargs: Any) -> Any:
        with tracer.start_as_current_span(
            f"{operation} documents",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system.name": system,
                "db.operation.name": operation,
                "db.collection.name": "documents",
            },
        ) as span:
            result = write(*args, **kwargs)
            document_id = result if operation == "create_document" else (args or [None])[0]
            if isinstance(document_id, str):
                span.set_attribute("atlas_eda.document.id", document_id)
            return result

    return spanned
