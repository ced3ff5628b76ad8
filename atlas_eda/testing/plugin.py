"""The pytest plugin of ``atlas_eda`` (entry point ``pytest11``, loaded automatically once
the package is installed).

Fixtures: ``atlas_bus`` (a fresh :class:`~atlas_eda.EventBus` with an
:class:`~atlas_eda.EffectHandler`), ``atlas_store`` (a fresh in-memory
:class:`~atlas_eda.TemporalStore` on ``atlas_bus``, closed afterwards) and
``atlas_recorder`` (a :class:`~atlas_eda.testing.Recorder` on ``atlas_bus`` writing to a
file in ``tmp_path``, with the changes written to ``atlas_store`` when the test uses it;
closed at teardown, where a :class:`RecordingError` is raised again).

Marker: ``@pytest.mark.atlas_cassette("path", mode="check")`` (the path relative to the
test file's directory; ``mode`` one of ``"check"``, ``"stub"``, ``"perform"``, as for
:func:`~atlas_eda.testing.replay`). Once the test body has set up its system on
``atlas_bus`` and returned, the cassette is replayed in that mode against ``atlas_bus``
(comparing the store changes with ``atlas_store`` when the test uses it); a divergence
fails the test with the report's message.

The plugin is loaded in every pytest run of every project that has atlas_eda installed, so
it imports nothing of the library until a test uses one of its fixtures or its marker:
loading this module loads ``atlas_eda`` and ``atlas_eda.testing`` (both lazy packages) and
pytest, not the bus, the store, blinker, effect or eventsourcing. The imports inside the
functions below are that laziness."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..bus import EventBus
    from ..store import TemporalStore
    from .cassette import Recorder

__all__ = ["atlas_bus", "atlas_recorder", "atlas_store"]

MARKER = "atlas_cassette"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(path, mode='check'): after the test body has set up its system on the "
        "atlas_bus fixture, replay the cassette at path (relative to the test file's "
        "directory) against atlas_bus in mode 'check', 'stub' or 'perform'; fail the test "
        "on divergence.",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test with the marker replays against atlas_bus, whether or not it asks for it.
    for item in items:
        if (
            isinstance(item, pytest.Function)
            and item.get_closest_marker(MARKER) is not None
            and "atlas_bus" not in item.fixturenames
        ):
            item.fixturenames.append("atlas_bus")


def _cassette_args(item: pytest.Item, marker: pytest.Mark) -> tuple[Path, str]:
    """The marker's cassette path (relative to the test file's directory) and mode."""
    from .replay import MODES  # noqa: PLC0415  (lazily: see the module docstring)

    path = marker.args[0] if len(marker.args) == 1 else None
    unknown = sorted(set(marker.kwargs) - {"mode"})
    if not isinstance(path, str | Path) or unknown:
        pytest.fail(
            f"@pytest.mark.{MARKER} takes one argument, the cassette's path (relative to "
            f"the test file's directory), and optionally mode='check', 'stub' or 'perform'; "
            f"got args={marker.args!r} kwargs={marker.kwargs!r}.",
            pytrace=False,
        )
    mode = marker.kwargs.get("mode", "check")
    if mode not in MODES:
        pytest.fail(
            f"@pytest.mark.{MARKER}({str(path)!r}, mode={mode!r}): mode must be one of "
            f"{', '.join(repr(m) for m in MODES)}.",
            pytrace=False,
        )
    return item.path.parent / path, mode


def _replay_problem(bus: object, path: Path, mode: str, store: object = None) -> str | None:
    """Replay the cassette at ``path`` against ``bus`` (comparing the changes written to
    ``store``, the test's ``atlas_store`` if it uses one): what to fail the test with, or
    ``None`` when the system behaved as recorded."""
    # Lazily (see the module docstring):
    from ..bus import EventBus  # noqa: PLC0415
    from ..errors import CassetteError, ReplayError  # noqa: PLC0415
    from ..store import TemporalStore  # noqa: PLC0415
    from .cassette import Cassette  # noqa: PLC0415
    from .replay import replay  # noqa: PLC0415

    if not isinstance(bus, EventBus):  # pragma: no cover - the fixture is always added
        return f"@pytest.mark.{MARKER}: the test has no atlas_bus fixture."
    try:
        report = replay(
            Cassette.load(path),
            bus,
            mode=mode,
            store=store if isinstance(store, TemporalStore) else None,
        )
    except (CassetteError, ReplayError) as exc:
        return f"@pytest.mark.{MARKER}({str(path)!r}): {exc}"
    try:
        report.assert_no_divergence()
    except AssertionError as exc:
        return str(exc)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    result = yield  # the test body: it raises on its own failure, and then we do not replay
    marker = item.get_closest_marker(MARKER)
    if marker is None or not isinstance(item, pytest.Function):
        return result
    path, mode = _cassette_args(item, marker)
    funcargs = item.funcargs
    problem = _replay_problem(funcargs.get("atlas_bus"), path, mode, funcargs.get("atlas_store"))
    if problem is not None:  # failed outside the except blocks: no chained traceback
        pytest.fail(problem, pytrace=False)
    return result


@pytest.fixture
def atlas_bus() -> EventBus:
    """A fresh :class:`EventBus` whose ``effect_handler`` is a fresh :class:`EffectHandler`
    (register your effect performers on ``atlas_bus.effect_handler``)."""
    from ..bus import EventBus  # noqa: PLC0415  (lazily: see the module docstring)
    from ..effects import EffectHandler  # noqa: PLC0415

    handler = EffectHandler()
    bus = EventBus(effect_handler=handler)
    handler.event_bus = bus
    return bus


@pytest.fixture
def atlas_store(atlas_bus: EventBus) -> Iterator[TemporalStore]:
    """A fresh in-memory :class:`TemporalStore` publishing on ``atlas_bus``; closed after
    the test."""
    from ..store import TemporalStore  # noqa: PLC0415  (lazily: see the module docstring)

    store = TemporalStore(atlas_bus, url="memory://")
    handler = atlas_bus.effect_handler
    if handler is not None and handler.temporal_store is None:
        handler.temporal_store = store
    yield store
    store.close()


@pytest.fixture
def atlas_recorder(
    atlas_bus: EventBus, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Recorder]:
    """A :class:`Recorder` on ``atlas_bus`` writing to ``tmp_path / "atlas_cassette.jsonl"``
    (its ``.path``), recording the changes written to ``atlas_store`` when the test uses
    that fixture too; closed at teardown, which raises any :class:`RecordingError` again."""
    from .cassette import Recorder  # noqa: PLC0415  (lazily: see the module docstring)

    store = (
        request.getfixturevalue("atlas_store") if "atlas_store" in request.fixturenames else None
    )
    recorder = Recorder(atlas_bus, tmp_path / "atlas_cassette.jsonl", store=store)
    yield recorder
    recorder.close()
