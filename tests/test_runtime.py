"""Runtime: one application's parts wired from arguments or a TOML file, and closed in
order (bus, follower positions, recorders, parts, store)."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest
from eventsourcing.persistence import ConnectionPoolClosedError

from atlas_eda import (
    BusClosedError,
    Effect,
    EffectType,
    Event,
    EventBus,
    EventType,
    FollowerConfig,
    Runtime,
    RuntimeConfigError,
    StoreClosedError,
    StoreFollower,
    TemporalStore,
)
from atlas_eda.projections import DocumentsByAuthor
from atlas_eda.testing import Cassette

WAIT = 60.0


def sqlite_url(tmp_path: Path, name: str = "app.db") -> str:
    return f"sqlite:///{tmp_path / name}"


class Part:
    """A caller's part: remembers when it was closed, can fail."""

    def __init__(self, name: str, closed: list[str], *, fails: bool = False) -> None:
        self.name, self.closed, self.fails = name, closed, fails

    def close(self) -> None:
        self.closed.append(self.name)
        if self.fails:
            raise OSError(f"{self.name} could not close")

    def __repr__(self) -> str:
        return f"Part({self.name})"


def test_a_runtime_wires_bus_store_effects_service_and_aspects(tmp_path: Path) -> None:
    performed: list[Effect] = []
    with Runtime(
        sqlite_url(tmp_path),
        aspects=["logging", "metrics"],
        effects={EffectType.LOGGING: performed.append},
    ) as runtime:
        created: list[Event] = []
        runtime.bus.subscribe(EventType.DOCUMENT_CREATED, created.append)
        document_id = runtime.service.create_document("Plan", "v1", "ann")
        assert runtime.store.get_document(document_id) is not None
        assert [e.data["id"] for e in created] == [document_id]
        assert [e.type for e in performed] == [EffectType.LOGGING]
        assert runtime.metrics is not None
        assert runtime.metrics.get_metrics()["DocumentService.create_document"]["count"] == 1
    assert runtime.closed
    with pytest.raises(BusClosedError):
        runtime.bus.publish(EventType.DOCUMENT_CREATED, {})
    with pytest.raises(StoreClosedError):
        runtime.store.get_document(document_id)
    with TemporalStore(url=sqlite_url(tmp_path)) as reopened:
        assert reopened.get_document(document_id) is not None


def test_close_runs_its_steps_in_order_and_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = sqlite_url(tmp_path)
    closed: list[str] = []
    runtime = Runtime(
        url,
        followers=[FollowerConfig("mailer", from_start=True)],
        parts=[Part("metrics server", closed), Part("health", closed)],
    )
    cassette = tmp_path / "session.jsonl"
    runtime.record(cassette)
    with TemporalStore(url=url) as other_process:
        other_process.create_document("from", "elsewhere", "bob")
    assert runtime.poll() == 1
    with caplog.at_level(logging.INFO, logger="atlas_eda"):
        runtime.close()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("atlas_eda")]
    order = [
        next(i for i, m in enumerate(messages) if text in m)
        for text in (
            "runtime closing",
            "bus closed",
            "follower 'mailer' recorded its position 1",
            "runtime closed",
        )
    ]
    assert order == sorted(order), messages
    assert closed == ["health", "metrics server"]  # last given, first closed
    assert len(Cassette.load(cassette)) == 1  # the follower's event, flushed and closed
    with StoreFollower(url, EventBus(), "mailer") as resumed:
        assert resumed.position == 1


def test_close_waits_for_a_delivery_under_way_before_closing_the_store(tmp_path: Path) -> None:
    runtime = Runtime(sqlite_url(tmp_path))
    entered, release = threading.Event(), threading.Event()
    written: list[str] = []

    def slow(event: Event) -> None:
        entered.set()
        release.wait(WAIT)
        written.append(runtime.store.create_document("late", "but", "kept"))

    runtime.bus.subscribe(EventType.COMMAND_EXECUTED, slow)
    worker = threading.Thread(target=runtime.bus.publish, args=(EventType.COMMAND_EXECUTED,))
    worker.start()
    assert entered.wait(WAIT)

    def release_once_closing() -> None:
        while not runtime.bus.closed:
            threading.Event().wait(0.001)
        release.set()

    releaser = threading.Thread(target=release_once_closing)
    releaser.start()
    runtime.close(timeout=WAIT)
    worker.join(WAIT)
    releaser.join(WAIT)
    assert len(written) == 1  # the store was still open for the delivery under way
    with TemporalStore(url=sqlite_url(tmp_path)) as reopened:
        assert reopened.get_document(written[0]) is not None


def test_closing_twice_does_nothing_and_a_failing_part_does_not_stop_the_rest(
    tmp_path: Path,
) -> None:
    closed: list[str] = []
    runtime = Runtime(
        sqlite_url(tmp_path), parts=[Part("a", closed), Part("b", closed, fails=True)]
    )
    with pytest.raises(OSError, match="b could not close"):
        runtime.close()
    assert closed == ["b", "a"]
    with pytest.raises(StoreClosedError):
        runtime.store.last_position()
    runtime.close()  # a no-op: nothing closed again, nothing raised
    assert closed == ["b", "a"]


def test_a_runtime_that_fails_to_build_closes_what_it_opened(tmp_path: Path) -> None:
    closed: list[str] = []
    projection = DocumentsByAuthor(sqlite_url(tmp_path, "view.db"))
    with pytest.raises(RuntimeConfigError, match="two followers are named 'x'"):
        Runtime(
            sqlite_url(tmp_path),
            followers=[FollowerConfig("x"), FollowerConfig("x")],
            projections=[projection],
            parts=[Part("given", closed)],
        )
    assert closed == ["given"]
    with pytest.raises(ConnectionPoolClosedError):
        projection.rows()
    # the store file is not held open: another runtime opens and closes it at once
    with Runtime(sqlite_url(tmp_path)) as again:
        assert again.store.last_position() == 0


# -- the TOML file ---------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "atlas.toml"
    path.write_text(text)
    return path


def test_from_toml_builds_the_runtime_the_file_describes(tmp_path: Path) -> None:
    (tmp_path / "shop_parts.py").write_text(
        "from atlas_eda.projections import DocumentsByAuthor\n"
        "sent = []\n"
        "def notify(effect):\n    sent.append(effect)\n"
        f"def by_author():\n    return DocumentsByAuthor('sqlite:///{tmp_path / 'view.db'}')\n"
    )
    path = write(
        tmp_path,
        f"""
store_url = "{sqlite_url(tmp_path)}"
history_limit = 50
failure_policy = "dead_letter"
shutdown_timeout = 2.5
aspects = ["metrics"]
projections = ["shop_parts:by_author"]

[effects]
LOGGING = "shop_parts:notify"

[[followers]]
name = "mailer"
from_start = true
commit_every = 10
""",
    )
    sys.path.insert(0, str(tmp_path))
    try:
        with Runtime.from_toml(path) as runtime:
            assert runtime.bus.history_limit == 50
            assert runtime.bus.failure_policy == "dead_letter"
            assert runtime.shutdown_timeout == 2.5
            assert list(runtime.followers) == ["mailer"]
            assert runtime.followers["mailer"].commit_every == 10
            runtime.service.create_document("Plan", "v1", "ann")
            projection = runtime.projections[0]
            assert isinstance(projection, DocumentsByAuthor)
            assert [row["author"] for row in projection.by_author()] == ["ann"]
            import shop_parts  # written by this test

            assert [e.type for e in shop_parts.sent] == [EffectType.LOGGING]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("shop_parts", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('store_ur = "memory://"', "unknown key 'store_ur'; the known keys are store_url,"),
        ("history_limit = -1", "history_limit must be a whole number, 0 or more, got -1"),
        ('traces = "yes"', "traces must be true or false, got 'yes'"),
        ('failure_policy = "ignore"', "failure_policy must be one of 'isolate'"),
        ('shutdown_timeout = "soon"', "shutdown_timeout must be a number of seconds"),
        ('aspects = ["tracing"]', "aspects must be a list of 'logging', 'metrics', got 'tracing'"),
        ('[effects]\nTELEPATHY = "os:getcwd"', "unknown key 'effects.TELEPATHY'"),
        ('[effects]\nLOGGING = "no_such_module_x:f"', "effects.LOGGING names"),
        ('sagas = ["nope"]', "sagas[0] must be \"module:name\", got 'nope'"),
        ("[[followers]]\nfrom_start = true", "followers[0] needs a name"),
        ('[[followers]]\nname = "a"\nspeed = 3', "unknown key followers[0].'speed'"),
        ("store_url = ", "not valid TOML"),
    ],
)
def test_a_bad_toml_file_is_one_clear_error_naming_the_key_and_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RuntimeConfigError) as raised:
        Runtime.from_toml(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)
    assert not (tmp_path / "app.db").exists()


def test_a_missing_toml_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeConfigError, match="cannot read the runtime's configuration"):
        Runtime.from_toml(tmp_path / "absent.toml")
