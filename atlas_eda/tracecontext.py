"""W3C trace context as atlas_eda carries it, without OpenTelemetry: the ``traceparent``
and ``tracestate`` keys of an event's metadata, of a stored cause and of a cassette line
(CloudEvents' distributed-tracing extension). This module only checks and copies them;
:mod:`atlas_eda.telemetry` (extra ``otel``) makes and reads spans with them.

A malformed value is never an error: it is left out, with a debug line on the
``atlas_eda.tracecontext`` logger, because a trace is an aid and must not stop an event.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "carrier_of",
    "current_carrier",
    "is_traceparent",
    "set_current_carrier",
]

logger = logging.getLogger("atlas_eda.tracecontext")

TRACEPARENT = "traceparent"
"""The W3C ``traceparent`` key (metadata, stored cause, CloudEvents extension)."""

TRACESTATE = "tracestate"
"""The W3C ``tracestate`` key, carried only beside a valid ``traceparent``."""

# version-traceid-parentid-flags, lower-case hex (W3C Trace Context, level 1).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_MAX_TRACESTATE = 512  # W3C: at least 512 characters must be propagated; more may be cut


def is_traceparent(value: object) -> bool:
    """Whether ``value`` is a well-formed W3C ``traceparent``: version, a non-zero trace
    id, a non-zero parent span id and flags, in lower-case hex (version ``ff`` is
    invalid; a later version may carry more fields after these, as the W3C allows)."""
    if type(value) is not str:
        return False
    match = _TRACEPARENT.match(value)
    if match is None:
        return False
    version, trace_id, span_id, _ = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return False
    rest = value[match.end() :]
    return rest == "" if version == "00" else rest == "" or rest.startswith("-")


def carrier_of(values: Mapping[str, Any], where: str) -> dict[str, str]:
    """The trace context ``values`` carries: ``{"traceparent": ..., "tracestate": ...}``
    (``tracestate`` only when it is a string), or ``{}`` when it carries none. A malformed
    ``traceparent`` (and the ``tracestate`` beside it) is ignored with a debug line naming
    ``where`` it was found."""
    parent = values.get(TRACEPARENT)
    if parent is None:
        return {}
    if not is_traceparent(parent):
        logger.debug("ignoring a malformed traceparent in %s: %.80r", where, parent)
        return {}
    carrier = {TRACEPARENT: parent}
    state = values.get(TRACESTATE)
    if type(state) is str and state and len(state) <= _MAX_TRACESTATE:
        carrier[TRACESTATE] = state
    elif state is not None:
        logger.debug("ignoring a malformed tracestate in %s: %.80r", where, state)
    return carrier


CarrierSource = Callable[[], dict[str, str]]
"""Gives the trace context of the span current in this context (``{}`` for none)."""

_source: list[CarrierSource] = []  # at most one: set by atlas_eda.telemetry


def set_current_carrier(source: CarrierSource | None) -> None:
    """Make ``source`` what :func:`current_carrier` asks (``None``: nobody). Called by
    :mod:`atlas_eda.telemetry` when it instruments something, so that the store can record
    the current span in a cause without importing OpenTelemetry."""
    _source.clear()
    if source is not None:
        _source.append(source)


def current_carrier() -> dict[str, str]:
    """The trace context of the span current in this context, as
    :func:`set_current_carrier`'s source gives it; ``{}`` when nothing is instrumented."""
    if not _source:
        return {}
    return _source[0]()
