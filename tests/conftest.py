"""Shared fixtures."""

from __future__ import annotations

import enum
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlas_eda import EventBus, TemporalStore

CASSETTES = Path(__file__).resolve().parent / "cassettes"
"""The real cassettes, their systems (``order_app``) and the script recording them."""

# order_app is imported as "order_app" everywhere (here, by record.py and by
# `atlas-eda replay --app order_app:make_system`): handler names in ERROR events include
# the module's name, so a cassette replays only into the module it was recorded from.
if str(CASSETTES) not in sys.path:
    sys.path.insert(0, str(CASSETTES))


class Ping(enum.Enum):
    """Event types of the tests' own, as a user would bring them."""

    PING = "ping"
    PONG = "pong"
    OTHER = "other"


@pytest.fixture(autouse=True)
def _no_store_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own ATLAS_EDA_STORE_URL must not redirect the tests' stores, nor an
    # ATLAS_EDA_CIPHER_KEY encrypt them.
    monkeypatch.delenv("ATLAS_EDA_STORE_URL", raising=False)
    monkeypatch.delenv("ATLAS_EDA_CIPHER_KEY", raising=False)


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def store(bus: EventBus) -> Iterator[TemporalStore]:
    temporal_store = TemporalStore(bus, url="memory://")
    yield temporal_store
    temporal_store.close()


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``atlas-eda ARGS`` as a user would: a real process, in ``cwd``, without the
    developer's own ``ATLAS_EDA_STORE_URL`` unless ``env`` sets it."""
    environment = {k: v for k, v in os.environ.items() if k != "ATLAS_EDA_STORE_URL"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "atlas_eda.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=environment,
        check=False,
    )
