"""Shared fixtures."""

from __future__ import annotations

import enum
from collections.abc import Iterator

import pytest

from atlas_eda import EventBus, TemporalStore


class Ping(enum.Enum):
    """Event types of the tests' own, as a user would bring them."""

    PING = "ping"
    PONG = "pong"
    OTHER = "other"


@pytest.fixture(autouse=True)
def _no_store_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own ATLAS_EDA_STORE_URL must not redirect the tests' stores.
    monkeypatch.delenv("ATLAS_EDA_STORE_URL", raising=False)


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def store(bus: EventBus) -> Iterator[TemporalStore]:
    temporal_store = TemporalStore(bus, url="memory://")
    yield temporal_store
    temporal_store.close()
