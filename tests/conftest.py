"""Shared fixtures."""

from __future__ import annotations

import enum
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from atlas_eda import EventBus, TemporalStore
from atlas_eda.testing.postgres import (
    HOW_TO_INSTALL,
    PostgresCluster,
    PostgresUnavailableError,
    find_bindir,
    start_cluster,
)

UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

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


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"  # tmp paths are absolute: four slashes


def unavailable(message: str, how_to_run: str) -> NoReturn:
    """Skip a test whose outside program is missing, saying how to run it; under CI, where
    every test must run, fail instead."""
    if UNDER_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(f"{message}. To run them, {how_to_run}.")


def _postgres_missing(reason: str) -> None:
    message = f"PostgreSQL tests need a PostgreSQL server: {reason}"
    if UNDER_CI:  # CI must run them: a missing server is a failure there, not a skip
        pytest.fail(message, pytrace=False)
    pytest.skip(f"{message}. To run them, {HOW_TO_INSTALL}, then run 'make test'.")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL server on 127.0.0.1 for the whole test session."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _postgres_missing("psycopg is not installed (pip install -e '.[postgres]')")
    if find_bindir() is None:
        _postgres_missing("its server programs (initdb, pg_ctl, postgres) are not installed")
    try:
        cluster = start_cluster(durable=False)
    except PostgresUnavailableError as exc:
        _postgres_missing(f"the throwaway server did not start: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A store URL on a fresh schema of its own: tests never see each other's events."""
    schema = pg_cluster.create_schema()
    yield pg_cluster.url(schema=schema, pool_size=2, max_overflow=4)
    pg_cluster.drop_schema(schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty durable store URL: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "store.db")
    url: str = request.getfixturevalue("postgres_url")
    return url
