"""The replay test harness: record a bus session to a cassette (CloudEvents JSON lines)
and load it back. Event and effect types resolve only through :func:`register_types`."""

from ..errors import CassetteError, CassetteWarning, RecordingError, TypeRegistrationError
from .cassette import (
    Cassette,
    CassetteEntry,
    RecordedEffect,
    RecordedError,
    Recorder,
    record,
)
from .types import register_types, registered_types

__all__ = [
    "Cassette",
    "CassetteEntry",
    "CassetteError",
    "CassetteWarning",
    "RecordedEffect",
    "RecordedError",
    "Recorder",
    "RecordingError",
    "TypeRegistrationError",
    "record",
    "register_types",
    "registered_types",
]
