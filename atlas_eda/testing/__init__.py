"""The replay test harness: record a bus session to a cassette (CloudEvents JSON lines),
load it back, and replay it into a fresh system to find where behaviour diverged. Event
and effect types resolve only through :func:`register_types`."""

from ..errors import (
    CassetteError,
    CassetteWarning,
    RecordingError,
    ReplayedEffectError,
    ReplayError,
    ScenarioError,
    TypeRegistrationError,
    UnexpectedEffectError,
)
from .cassette import (
    Cassette,
    CassetteEntry,
    RecordedEffect,
    RecordedError,
    Recorder,
    record,
)
from .replay import MODES, Divergence, ReplayReport, replay
from .scenario import ANY, Scenario, ScenarioResult
from .types import register_types, registered_types

__all__ = [
    "ANY",
    "MODES",
    "Cassette",
    "CassetteEntry",
    "CassetteError",
    "CassetteWarning",
    "Divergence",
    "RecordedEffect",
    "RecordedError",
    "Recorder",
    "RecordingError",
    "ReplayError",
    "ReplayReport",
    "ReplayedEffectError",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "TypeRegistrationError",
    "UnexpectedEffectError",
    "record",
    "register_types",
    "registered_types",
    "replay",
]
