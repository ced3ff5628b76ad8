"""The replay test harness: record a bus session to a cassette (CloudEvents JSON lines),
load it back, and replay it into a fresh system to find where behaviour diverged. Event
and effect types resolve only through :func:`register_types`, the classes of recorded
effect failures only to builtin exceptions and those of :func:`register_exceptions`.

As in ``atlas_eda`` itself, each name is imported from its module on first use: the
package's pytest plugin (``atlas_eda.testing.plugin``) is loaded in every pytest run, and
importing it must not load the library. ``atlas_eda.testing.postgres`` (a throwaway
PostgreSQL server for tests) is not exported here: import it by its own name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import make_lazy

if TYPE_CHECKING:
    from ..errors import (
        CassetteError,
        CassetteWarning,
        RecordedEffectError,
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
        RecordedChange,
        RecordedEffect,
        RecordedError,
        RecordedResult,
        Recorder,
        record,
    )
    from .replay import MODES, Divergence, ReplayReport, replay
    from .scenario import ANY, Scenario, ScenarioResult
    from .types import (
        register_exceptions,
        register_types,
        registered_exceptions,
        registered_types,
    )

__all__ = [
    "ANY",
    "MODES",
    "Cassette",
    "CassetteEntry",
    "CassetteError",
    "CassetteWarning",
    "Divergence",
    "RecordedChange",
    "RecordedEffect",
    "RecordedEffectError",
    "RecordedError",
    "RecordedResult",
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
    "register_exceptions",
    "register_types",
    "registered_exceptions",
    "registered_types",
    "replay",
]

# The same names as the imports above, by module: what is imported on first use.
make_lazy(
    __name__,
    {
        "..errors": (
            "CassetteError",
            "CassetteWarning",
            "RecordedEffectError",
            "RecordingError",
            "ReplayedEffectError",
            "ReplayError",
            "ScenarioError",
            "TypeRegistrationError",
            "UnexpectedEffectError",
        ),
        ".cassette": (
            "Cassette",
            "CassetteEntry",
            "RecordedChange",
            "RecordedEffect",
            "RecordedError",
            "RecordedResult",
            "Recorder",
            "record",
        ),
        ".replay": ("MODES", "Divergence", "ReplayReport", "replay"),
        ".scenario": ("ANY", "Scenario", "ScenarioResult"),
        ".types": (
            "register_exceptions",
            "register_types",
            "registered_exceptions",
            "registered_types",
        ),
    },
)
