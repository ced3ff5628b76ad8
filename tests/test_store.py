"""TemporalStore: every version of every document stays readable, survives reopening (in
this process and in another one), and bad input is refused before anything is written."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from conftest import sqlite_url
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atlas_eda
from atlas_eda import (
    AtlasEdaError,
    Document,
    DocumentDeletedError,
    Event,
    EventBus,
    EventType,
    InvalidDocumentError,
    StoreClosedError,
    StoreOpenError,
    StoreURLError,
    TemporalStore,
)
from atlas_eda.store import DEFAULT_URL, ENV_VAR, persistence_settings
from atlas_eda.testing.postgres import PostgresCluster

History = dict[str, list[dict[str, Any]]]
"""Document id -> ``as_dict()`` as seen live after each of its versions (index 0 = v1)."""

NOT_TEXT: list[Any] = [b"bytes", 1, None, {"a": 1}, ["x"]]
BAD_TEXT: list[Any] = [*NOT_TEXT, "\ud800", "ok\udfffok"]
NOT_OPTIONAL_TEXT: list[Any] = [b"bytes", 1, {"a": 1}, "\ud800"]

# Any valid Unicode text, with NUL, astral and line-separator characters drawn often.
TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from("\x00\U0001f600\U0010ffff\u2028"))


def latest(store: TemporalStore, document_id: str) -> Document:
    document = store.get_document(document_id)
    assert document is not None
    return document


def log_length(store: TemporalStore) -> int:
    return store.recorder.max_notification_id() or 0


def record(store: TemporalStore, history: History, document_id: str) -> None:
    history.setdefault(document_id, []).append(latest(store, document_id).as_dict())


def populate(store: TemporalStore) -> History:
    """A few documents with updates and deletions, capturing every version as it goes."""
    history: History = {}
    design = store.create_document("Design", "draft", "alice")
    record(store, history, design)
    notes = store.create_document("Notes \U0001f4dd", "nul\x00byte", "bob")
    record(store, history, notes)
    empty = store.create_document("", "", "")
    record(store, history, empty)
    for i in range(7):
        assert store.update_document(
            design, content=f"draft {i}", editor="carol" if i % 2 else None
        )
        record(store, history, design)
    assert store.update_document(notes, title="Notes, renamed", editor="")
    record(store, history, notes)
    assert store.delete_document(notes, reason="merged into Design")
    record(store, history, notes)
    assert store.delete_document(empty)
    record(store, history, empty)
    assert store.update_document(design, title="Design (final)", editor="dave")
    record(store, history, design)
    return history


def assert_history(store: TemporalStore, history: History) -> None:
    """Every version of every document reads back as it was seen live."""
    for document_id, versions in history.items():
        for number, expected in enumerate(versions, start=1):
            document = store.get_document(document_id, version=number)
            assert document is not None, (document_id, number)
            assert document.as_dict() == expected, (document_id, number)
        assert latest(store, document_id).as_dict() == versions[-1]
        assert store.get_document(document_id, version=len(versions) + 1) is None


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def any_store(
    request: pytest.FixtureRequest, tmp_path: Path, bus: EventBus
) -> Iterator[TemporalStore]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = sqlite_url(tmp_path / "store.db")
    else:
        url = request.getfixturevalue("postgres_url")
    store = TemporalStore(bus, url=url)
    yield store
    store.close()


@pytest.fixture
def published(bus: EventBus) -> list[Event]:
    events: list[Event] = []
    bus.subscribe_all(events.append)
    return events


# -- persistence -----------------------------------------------------------------------

READER_SCRIPT = """
import json, sys
from atlas_eda import TemporalStore

store = TemporalStore(url=sys.argv[1], snapshot_interval=int(sys.argv[2]))
ids = store.list_document_ids()
versions = {}
for document_id in ids:
    current = store.get_document(document_id).version
    versions[document_id] = [
        store.get_document(document_id, version=v).as_dict() for v in range(1, current + 1)
    ]
result = {
    "ids": ids,
    "live": [d.document_id for d in store.get_all_documents()],
    "versions": versions,
}
store.close()
sys.stdout.write(json.dumps(result))
"""


def test_a_new_process_reads_every_version_exactly_as_the_writer_saw_it(
    tmp_path: Path, durable_url: str
) -> None:
    url = durable_url
    store = TemporalStore(url=url, snapshot_interval=3)
    history = populate(store)
    ids = store.list_document_ids()
    live = [d.document_id for d in store.get_all_documents()]
    store.close()
    script = tmp_path / "read_store.py"
    script.write_text(READER_SCRIPT)
    # The reader imports the very atlas_eda under test.
    package_root = str(Path(atlas_eda.__file__).resolve().parents[1])
    environment = os.environ | {"PYTHONPATH": package_root}

    completed = subprocess.run(
        [sys.executable, str(script), url, "3"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=environment,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["ids"] == ids == list(history)
    assert result["live"] == live
    # Exact equality: every field and every timestamp (floats survive JSON exactly).
    assert result["versions"] == history


def test_reopening_in_the_same_process_after_close_gives_back_every_version(
    durable_url: str,
) -> None:
    url = durable_url
    store = TemporalStore(url=url, snapshot_interval=3)
    history = populate(store)
    store.close()

    reopened = TemporalStore(url=url, snapshot_interval=3)
    assert_history(reopened, history)
    assert reopened.list_document_ids() == list(history)

    # ...and it carries on from where the first store left off.
    design = reopened.list_document_ids()[0]
    assert reopened.update_document(design, content="after reopening")
    assert latest(reopened, design).version == len(history[design]) + 1
    record(reopened, history, design)
    reopened.close()

    again = TemporalStore(url=url, snapshot_interval=3)
    assert_history(again, history)
    again.close()


def test_a_relative_sqlite_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = TemporalStore(url="sqlite:///relative.db")
    document_id = store.create_document("t", "c", "a")
    store.close()

    assert (tmp_path / "relative.db").is_file()
    reopened = TemporalStore(url=sqlite_url(tmp_path / "relative.db"))
    assert latest(reopened, document_id).title == "t"
    reopened.close()


def test_memory_stores_are_independent_and_in_memory(tmp_path: Path) -> None:
    first = TemporalStore(url="memory://")
    second = TemporalStore(url="memory://")
    document_id = first.create_document("t", "c", "a")

    assert second.get_document(document_id) is None
    assert second.list_document_ids() == []
    assert isinstance(first.recorder, POPOApplicationRecorder)


# -- the store URL ---------------------------------------------------------------------


def test_the_environment_variable_supplies_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.db"
    monkeypatch.setenv(ENV_VAR, sqlite_url(path))

    store = TemporalStore()
    document_id = store.create_document("t", "c", "a")
    store.close()

    assert store.url == sqlite_url(path)
    assert path.is_file()
    second = TemporalStore()
    assert isinstance(second.recorder, SQLiteApplicationRecorder)
    assert latest(second, document_id).as_dict()["title"] == "t"
    second.close()


def test_an_explicit_url_wins_over_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = tmp_path / "from-env.db"
    explicit = tmp_path / "explicit.db"
    monkeypatch.setenv(ENV_VAR, sqlite_url(from_env))

    in_memory = TemporalStore(url="memory://")
    in_memory.create_document("t", "c", "a")
    on_file = TemporalStore(url=sqlite_url(explicit))
    on_file.create_document("t", "c", "a")
    on_file.close()

    assert isinstance(in_memory.recorder, POPOApplicationRecorder)
    assert explicit.is_file()
    assert not from_env.exists()


@pytest.mark.parametrize("environment", [None, ""])
def test_without_url_or_variable_the_store_is_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: str | None
) -> None:
    monkeypatch.chdir(tmp_path)
    if environment is not None:
        monkeypatch.setenv(ENV_VAR, environment)

    store = TemporalStore()
    store.create_document("t", "c", "a")

    assert store.url == DEFAULT_URL == "memory://"
    assert isinstance(store.recorder, POPOApplicationRecorder)
    assert list(tmp_path.iterdir()) == []


def test_eventsourcing_variables_in_the_environment_do_not_redirect_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # eventsourcing reads os.environ, and prefers keys prefixed with the app's name.
    monkeypatch.chdir(tmp_path)
    for prefix in ("", "TEMPORALSTORE_"):
        monkeypatch.setenv(prefix + "PERSISTENCE_MODULE", "eventsourcing.popo")
        monkeypatch.setenv(prefix + "SQLITE_DBNAME", str(tmp_path / "elsewhere.db"))
        monkeypatch.setenv(prefix + "IS_SNAPSHOTTING_ENABLED", "y")
    path = tmp_path / "mine.db"

    store = TemporalStore(url=sqlite_url(path), snapshot_interval=0)
    store.create_document("t", "c", "a")
    store.close()

    assert isinstance(store.recorder, SQLiteApplicationRecorder)
    assert store.snapshots is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.db"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://localhost/db", "unknown scheme 'mysql'"),
        ("ftp:///docs.db", "unknown scheme 'ftp'"),
        ("docs.db", "is not a store URL"),
        ("/tmp/docs.db", "is not a store URL"),
        ("", "is not a store URL"),
        ("sqlite://docs.db", "three slashes"),
        ("sqlite:///", "names no file"),
        ("sqlite:///bad\x00name.db", "NUL"),
        ("memory://somewhere", "takes no path"),
    ],
)
def test_a_malformed_url_is_refused_before_anything_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(StoreURLError) as excinfo:
        TemporalStore(url=url)

    assert isinstance(excinfo.value, AtlasEdaError)
    assert isinstance(excinfo.value, ValueError)
    assert expected in str(excinfo.value)
    assert repr(url) in str(excinfo.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", [123, b"memory://", Path("docs.db")])
def test_a_url_that_is_not_a_str_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: Any
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(StoreURLError, match=f"must be a str, got {type(url).__name__}"):
        TemporalStore(url=url)

    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_file_in_a_missing_directory_is_refused_and_the_directory_not_created(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "missing" / "deeper"

    with pytest.raises(StoreURLError) as excinfo:
        TemporalStore(url=sqlite_url(missing / "docs.db"))

    assert str(missing) in str(excinfo.value)
    assert "does not exist" in str(excinfo.value)
    assert not (tmp_path / "missing").exists()


def test_a_sqlite_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory.db"
    directory.mkdir()

    with pytest.raises(StoreURLError, match="is a directory"):
        TemporalStore(url=sqlite_url(directory))

    assert list(directory.iterdir()) == []


def test_a_sqlite_path_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")

    with pytest.raises(StoreURLError, match="not a directory"):
        TemporalStore(url=sqlite_url(tmp_path / "plain-file" / "docs.db"))


def test_a_sqlite_file_in_an_unwritable_place_gives_store_open_error() -> None:
    # Tests may run as root, where chmod stops nothing; nobody can create files in /proc.
    url = "sqlite:////proc/atlas-test.db"

    with pytest.raises(StoreOpenError) as excinfo:
        TemporalStore(url=url)

    assert isinstance(excinfo.value, AtlasEdaError)
    assert not isinstance(excinfo.value, StoreURLError)
    assert repr(url) in str(excinfo.value)
    assert not Path("/proc/atlas-test.db").exists()


def test_a_file_that_is_not_a_database_gives_store_open_error_and_is_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)

    with pytest.raises(StoreOpenError, match="Could not open the store"):
        TemporalStore(url=sqlite_url(path))

    assert path.read_bytes() == b"these are my notes, not a database\n" * 100


# -- refused input: nothing written, nothing published ---------------------------------


@pytest.mark.parametrize("value", BAD_TEXT, ids=repr)
@pytest.mark.parametrize("field", ["title", "content", "author"])
def test_create_refuses_unstorable_fields_before_saving_anything(
    any_store: TemporalStore, published: list[Event], field: str, value: Any
) -> None:
    existing = any_store.create_document("kept", "kept", "kept")
    published.clear()
    before = log_length(any_store)
    fields: dict[str, Any] = {"title": "t", "content": "c", "author": "a", field: value}

    with pytest.raises(InvalidDocumentError) as excinfo:
        any_store.create_document(**fields)

    assert excinfo.value.field == field
    assert repr(field) in str(excinfo.value)
    assert isinstance(excinfo.value, AtlasEdaError)
    assert log_length(any_store) == before
    assert any_store.list_document_ids() == [existing]
    assert published == []
    # The store is still usable.
    document_id = any_store.create_document("t", "c", "a")
    assert any_store.list_document_ids() == [existing, document_id]


@pytest.mark.parametrize("value", NOT_OPTIONAL_TEXT, ids=repr)
@pytest.mark.parametrize("field", ["title", "content", "editor"])
def test_update_refuses_unstorable_fields_before_saving_anything(
    any_store: TemporalStore, published: list[Event], field: str, value: Any
) -> None:
    document_id = any_store.create_document("t", "c", "a")
    before = latest(any_store, document_id).as_dict()
    log_before = log_length(any_store)
    published.clear()

    with pytest.raises(InvalidDocumentError) as excinfo:
        any_store.update_document(document_id, **{field: value})

    assert excinfo.value.field == field
    assert repr(field) in str(excinfo.value)
    assert latest(any_store, document_id).as_dict() == before
    assert log_length(any_store) == log_before
    assert published == []
    assert any_store.update_document(document_id, title="fine")
    assert latest(any_store, document_id).version == 2


@pytest.mark.parametrize("value", NOT_OPTIONAL_TEXT, ids=repr)
def test_delete_refuses_an_unstorable_reason_before_saving_anything(
    any_store: TemporalStore, published: list[Event], value: Any
) -> None:
    document_id = any_store.create_document("t", "c", "a")
    log_before = log_length(any_store)
    published.clear()

    with pytest.raises(InvalidDocumentError) as excinfo:
        any_store.delete_document(document_id, reason=value)

    assert excinfo.value.field == "reason"
    assert latest(any_store, document_id).is_deleted is False
    assert log_length(any_store) == log_before
    assert published == []
    assert any_store.delete_document(document_id, reason="fine")


@pytest.mark.parametrize(
    "change",
    [
        lambda s, i: s.update_document(i, title="again"),
        lambda s, i: s.update_document(i),
        lambda s, i: s.delete_document(i),
        lambda s, i: s.delete_document(i, reason="again"),
    ],
    ids=["update", "empty-update", "delete", "delete-with-reason"],
)
def test_changing_a_deleted_document_is_refused_and_writes_nothing(
    any_store: TemporalStore, published: list[Event], change: Any
) -> None:
    history: History = {}
    document_id = any_store.create_document("t", "c", "a")
    record(any_store, history, document_id)
    any_store.update_document(document_id, content="c2", editor="bob")
    record(any_store, history, document_id)
    any_store.delete_document(document_id, reason="obsolete")
    record(any_store, history, document_id)
    log_before = log_length(any_store)
    published.clear()

    with pytest.raises(DocumentDeletedError) as excinfo:
        change(any_store, document_id)

    assert document_id in str(excinfo.value)
    assert latest(any_store, document_id).version == 3
    assert log_length(any_store) == log_before
    assert published == []
    assert_history(any_store, history)


@pytest.mark.parametrize("document_id", [str(uuid4()), "not-a-uuid", ""])
def test_changing_an_unknown_document_returns_false_and_writes_nothing(
    any_store: TemporalStore, published: list[Event], document_id: str
) -> None:
    any_store.create_document("t", "c", "a")
    log_before = log_length(any_store)
    published.clear()

    assert any_store.update_document(document_id, title="x") is False
    assert any_store.delete_document(document_id, reason="x") is False

    assert log_length(any_store) == log_before
    assert published == []


# -- versions --------------------------------------------------------------------------


def test_every_version_reads_back_as_it_was_live(any_store: TemporalStore) -> None:
    history = populate(any_store)

    assert_history(any_store, history)


def test_a_new_document_is_at_version_1(any_store: TemporalStore) -> None:
    document_id = any_store.create_document("t", "c", "a")
    document = latest(any_store, document_id)

    assert document.version == 1
    assert document.document_id == document_id
    assert (document.title, document.content, document.author) == ("t", "c", "a")
    assert document.last_editor == "a"
    assert document.is_deleted is False
    assert document.created_at == document.modified_at
    assert document.deleted_at is None


def test_versions_outside_the_history_are_none_or_refused(any_store: TemporalStore) -> None:
    document_id = any_store.create_document("t", "c", "a")
    any_store.update_document(document_id, title="t2")

    assert any_store.get_document(document_id, version=3) is None
    assert any_store.get_document(document_id, version=10**9) is None
    for bad in (0, -1):
        with pytest.raises(ValueError, match="versions start at 1"):
            any_store.get_document(document_id, version=bad)
    for wrong in ("1", 1.0, True, [1]):
        with pytest.raises(TypeError, match="version must be an int"):
            any_store.get_document(document_id, version=wrong)  # type: ignore[arg-type]


@pytest.mark.parametrize("document_id", [str(uuid4()), "not-a-uuid", "", "1234"])
def test_unknown_or_malformed_ids_read_as_none(any_store: TemporalStore, document_id: str) -> None:
    any_store.create_document("t", "c", "a")

    assert any_store.get_document(document_id) is None
    assert any_store.get_document(document_id, version=1) is None


def test_a_uuid_object_is_accepted_as_id(any_store: TemporalStore) -> None:
    document_id = any_store.create_document("t", "c", "a")

    assert latest(any_store, UUID(document_id)).document_id == document_id  # type: ignore[arg-type]


def test_times_come_from_the_stored_events_and_never_move(any_store: TemporalStore) -> None:
    history: History = {}
    document_id = any_store.create_document("t", "c", "a")
    record(any_store, history, document_id)
    for i in range(4):
        any_store.update_document(document_id, content=str(i))
        record(any_store, history, document_id)
    any_store.delete_document(document_id)
    record(any_store, history, document_id)
    versions = history[document_id]
    events: list[Any] = list(any_store.events.get(UUID(document_id)))
    stamps = [e.timestamp.timestamp() for e in events]

    assert [v["modified_at"] for v in versions] == stamps
    assert {v["created_at"] for v in versions} == {stamps[0]}
    assert [v["modified_at"] for v in versions] == sorted(v["modified_at"] for v in versions)
    assert [v["deleted_at"] for v in versions] == [None] * 5 + [stamps[-1]]
    # Reading again, later, gives the very same values: nothing reads the clock.
    assert_history(any_store, history)
    assert_history(any_store, history)


# -- snapshots -------------------------------------------------------------------------


def test_snapshots_are_taken_every_interval_and_every_version_stays_readable(
    durable_url: str,
) -> None:
    url = durable_url
    store = TemporalStore(url=url, snapshot_interval=5)
    history: History = {}
    document_id = store.create_document("t", "c", "a")
    record(store, history, document_id)
    for i in range(12):
        store.update_document(document_id, content=f"v{i + 2}", editor=f"e{i}")
        record(store, history, document_id)

    assert store.snapshots is not None
    snapshots: list[Any] = list(store.snapshots.get(UUID(document_id)))
    assert [s.originator_version for s in snapshots] == [5, 10]
    for snapshot in snapshots:
        # A snapshot holds exactly the state of its version.
        restored = snapshot.mutate(None)
        assert isinstance(restored, Document)
        assert restored.as_dict() == history[document_id][snapshot.originator_version - 1]
    assert latest(store, document_id).version == 13
    assert_history(store, history)
    store.close()

    reopened = TemporalStore(url=url, snapshot_interval=5)
    assert_history(reopened, history)
    reopened.close()


@pytest.mark.parametrize("interval", [0, None])
def test_snapshot_interval_zero_or_none_disables_snapshots(
    durable_url: str, interval: int | None
) -> None:
    store = TemporalStore(url=durable_url, snapshot_interval=interval)
    history: History = {}
    document_id = store.create_document("t", "c", "a")
    record(store, history, document_id)
    for i in range(6):
        store.update_document(document_id, content=str(i))
        record(store, history, document_id)

    assert store.snapshots is None
    assert store.snapshot_interval == 0
    assert_history(store, history)
    store.close()


def test_snapshots_are_on_by_default() -> None:
    store = TemporalStore()
    assert store.snapshot_interval == 100
    assert store.snapshots is not None
    document_id = store.create_document("t", "v1", "a")
    for version in range(2, 100):
        store.update_document(document_id, content=f"v{version}")
    assert list(store.snapshots.get(UUID(document_id))) == []

    store.update_document(document_id, content="v100")

    snapshots: list[Any] = list(store.snapshots.get(UUID(document_id)))
    assert [s.originator_version for s in snapshots] == [100]
    assert latest(store, document_id).content == "v100"
    store.close()


@pytest.mark.parametrize("interval", [-1, 1.5, "5", True])
def test_an_invalid_snapshot_interval_is_refused(tmp_path: Path, interval: Any) -> None:
    with pytest.raises(ValueError, match="snapshot_interval must be a positive int"):
        TemporalStore(url=sqlite_url(tmp_path / "s.db"), snapshot_interval=interval)

    assert list(tmp_path.iterdir()) == []


# -- listing ---------------------------------------------------------------------------


def test_get_all_documents_excludes_deleted_ones_in_creation_order(
    any_store: TemporalStore,
) -> None:
    ids = [any_store.create_document(f"doc {i}", "c", "a") for i in range(5)]
    any_store.update_document(ids[0], title="doc 0, updated")
    any_store.update_document(ids[3], title="doc 3, updated")
    any_store.delete_document(ids[1])
    any_store.delete_document(ids[4])

    documents = any_store.get_all_documents()
    assert [d.document_id for d in documents] == [ids[0], ids[2], ids[3]]
    assert [d.title for d in documents] == ["doc 0, updated", "doc 2", "doc 3, updated"]
    assert any_store.list_document_ids() == ids


def test_listing_pages_through_many_documents() -> None:
    store = TemporalStore(url="memory://")
    ids = [store.create_document(str(i), "c", "a") for i in range(1105)]

    assert store.list_document_ids() == ids
    assert [d.document_id for d in store.get_all_documents()] == ids


def test_listing_sees_documents_written_by_another_store_on_the_same_database(
    durable_url: str,
) -> None:
    url = durable_url
    first = TemporalStore(url=url)
    second = TemporalStore(url=url)
    a = first.create_document("a", "c", "x")
    assert [d.document_id for d in first.get_all_documents()] == [a]

    b = second.create_document("b", "c", "x")
    c = second.create_document("c", "c", "x")
    second.update_document(a, title="a, edited elsewhere")
    second.delete_document(c)

    assert [(d.document_id, d.title) for d in first.get_all_documents()] == [
        (a, "a, edited elsewhere"),
        (b, "b"),
    ]
    assert first.list_document_ids() == [a, b, c]
    d = first.create_document("d", "c", "x")
    assert second.list_document_ids() == [a, b, c, d]
    first.close()
    second.close()


# -- bus notifications -----------------------------------------------------------------


def test_each_commit_is_published_with_its_data(
    any_store: TemporalStore, published: list[Event]
) -> None:
    document_id = any_store.create_document("t", "c", "alice")
    any_store.update_document(document_id, title="t2", editor="bob")
    any_store.update_document(document_id, content="c3")
    any_store.delete_document(document_id, reason="done")

    assert [(e.type, e.data, e.source) for e in published] == [
        (
            EventType.DOCUMENT_CREATED,
            {"id": document_id, "title": "t", "author": "alice", "version": 1},
            "atlas_eda.store",
        ),
        (
            EventType.DOCUMENT_UPDATED,
            {"id": document_id, "title": "t2", "editor": "bob", "version": 2},
            "atlas_eda.store",
        ),
        (
            EventType.DOCUMENT_UPDATED,
            {"id": document_id, "title": None, "editor": None, "version": 3},
            "atlas_eda.store",
        ),
        (
            EventType.DOCUMENT_DELETED,
            {"id": document_id, "reason": "done", "version": 4},
            "atlas_eda.store",
        ),
    ]


def test_a_handler_already_sees_the_committed_version(durable_url: str, bus: EventBus) -> None:
    url = durable_url
    store = TemporalStore(bus, url=url)
    other = TemporalStore(url=url)  # another connection: sees only what is committed
    seen: list[tuple[str, int, int | None, bool | None]] = []

    def handler(event: Event) -> None:
        mine = store.get_document(event.data["id"])
        theirs = other.get_document(event.data["id"])
        seen.append(
            (
                event.type.name,
                event.data["version"],
                None if mine is None else mine.version,
                None if theirs is None else theirs.version == event.data["version"],
            )
        )

    for event_type in (
        EventType.DOCUMENT_CREATED,
        EventType.DOCUMENT_UPDATED,
        EventType.DOCUMENT_DELETED,
    ):
        bus.subscribe(event_type, handler)

    document_id = store.create_document("t", "c", "a")
    store.update_document(document_id, title="t2")
    store.delete_document(document_id)

    assert seen == [
        ("DOCUMENT_CREATED", 1, 1, True),
        ("DOCUMENT_UPDATED", 2, 2, True),
        ("DOCUMENT_DELETED", 3, 3, True),
    ]
    store.close()
    other.close()


def test_a_store_without_bus_publishes_nothing(bus: EventBus, published: list[Event]) -> None:
    store = TemporalStore(url="memory://")
    document_id = store.create_document("t", "c", "a")
    store.update_document(document_id, title="t2")
    store.delete_document(document_id)

    assert store.event_bus is None
    assert latest(store, document_id).version == 3
    assert published == []
    assert bus.get_history(limit=None) == []


# -- properties ------------------------------------------------------------------------


def assert_text_round_trips(
    store: TemporalStore, reader: TemporalStore, fields: tuple[str, ...]
) -> None:
    title, content, author, new_title, new_content, editor, reason = fields
    document_id = store.create_document(title, content, author)
    store.update_document(document_id, title=new_title, content=new_content, editor=editor)
    store.delete_document(document_id, reason=reason)

    first = reader.get_document(document_id, version=1)
    second = reader.get_document(document_id, version=2)
    third = reader.get_document(document_id)
    assert first is not None
    assert second is not None
    assert third is not None
    assert (first.title, first.content, first.author) == (title, content, author)
    assert (second.title, second.content, second.last_editor) == (new_title, new_content, editor)
    assert third.deletion_reason == reason


TEXT_FIELDS = st.tuples(TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT)


@settings(max_examples=60, deadline=None)
@given(fields=TEXT_FIELDS)
def test_any_text_round_trips_exactly_in_memory(fields: tuple[str, ...]) -> None:
    store = TemporalStore(url="memory://", snapshot_interval=2)
    assert_text_round_trips(store, store, fields)


def test_any_text_round_trips_exactly_through_a_durable_store(durable_url: str) -> None:
    url = durable_url
    store = TemporalStore(url=url, snapshot_interval=2)
    reader = TemporalStore(url=url, snapshot_interval=2)

    @settings(max_examples=60, deadline=None)
    @given(fields=TEXT_FIELDS)
    def check(fields: tuple[str, ...]) -> None:
        assert_text_round_trips(store, reader, fields)

    check()
    assert_text_round_trips(store, reader, ("\x00", "a\x00b", "\U0010ffff", "", "😀", "\u2028", ""))
    store.close()
    reader.close()


SMALL_TEXT = st.text(st.sampled_from("ab\x00\U0001f600"), max_size=3)
OPTIONAL_TEXT = st.none() | SMALL_TEXT
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), SMALL_TEXT, SMALL_TEXT, TEXT),
        st.tuples(
            st.just("update"), st.integers(0, 5), OPTIONAL_TEXT, OPTIONAL_TEXT, OPTIONAL_TEXT
        ),
        st.tuples(st.just("delete"), st.integers(0, 5), OPTIONAL_TEXT),
    ),
    max_size=18,
)


def run_operations(store: TemporalStore, operations: list[tuple[Any, ...]]) -> History:
    """Apply the operations, checking each result against a plain model of the domain
    rules, and capture every version as it was live."""
    history: History = {}
    for operation in operations:
        kind, *args = operation
        if kind == "create":
            document_id = store.create_document(*args)
            record(store, history, document_id)
            assert history[document_id][0] | {"created_at": 0, "modified_at": 0} == {
                "document_id": document_id,
                "version": 1,
                "title": args[0],
                "content": args[1],
                "author": args[2],
                "last_editor": args[2],
                "created_at": 0,
                "modified_at": 0,
                "is_deleted": False,
                "deleted_at": None,
                "deletion_reason": None,
            }
            continue
        if not history:
            assert getattr(store, f"{kind}_document")(str(uuid4()), *args[1:]) is False
            continue
        document_id = list(history)[args[0] % len(history)]
        before = history[document_id][-1]
        if before["is_deleted"]:
            with pytest.raises(DocumentDeletedError):
                getattr(store, f"{kind}_document")(document_id, *args[1:])
            assert latest(store, document_id).as_dict() == before
            continue
        if kind == "update":
            title, content, editor = args[1:]
            assert store.update_document(document_id, title, content, editor) is True
            expected = before | {
                "title": before["title"] if title is None else title,
                "content": before["content"] if content is None else content,
                "last_editor": before["author"] if editor is None else editor,
            }
        else:
            assert store.delete_document(document_id, args[1]) is True
            expected = before | {"is_deleted": True, "deletion_reason": args[1]}
        record(store, history, document_id)
        after = history[document_id][-1]
        assert after["version"] == before["version"] + 1
        assert after["created_at"] == before["created_at"]
        assert after["modified_at"] >= before["modified_at"]
        assert after["deleted_at"] == (after["modified_at"] if after["is_deleted"] else None)
        timeless = ("version", "modified_at", "deleted_at")
        assert {k: v for k, v in after.items() if k not in timeless} == {
            k: v for k, v in expected.items() if k not in timeless
        }
    return history


def assert_store_matches(store: TemporalStore, history: History) -> None:
    assert_history(store, history)
    assert store.list_document_ids() == list(history)
    assert [d.document_id for d in store.get_all_documents()] == [
        i for i, versions in history.items() if not versions[-1]["is_deleted"]
    ]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS, interval=st.sampled_from([None, 1, 2, 3, 100]))
def test_random_histories_read_back_exactly_in_memory_and_after_reopening_sqlite(
    operations: list[tuple[Any, ...]], interval: int | None
) -> None:
    memory = TemporalStore(url="memory://", snapshot_interval=interval)
    assert_store_matches(memory, run_operations(memory, operations))

    with tempfile.TemporaryDirectory() as directory:
        check_reopening(sqlite_url(Path(directory) / "history.db"), operations, interval)


def check_reopening(url: str, operations: list[tuple[Any, ...]], interval: int | None) -> None:
    writer = TemporalStore(url=url, snapshot_interval=interval)
    history = run_operations(writer, operations)
    assert_store_matches(writer, history)
    writer.close()
    reopened = TemporalStore(url=url, snapshot_interval=interval)
    assert_store_matches(reopened, history)
    reopened.close()


def test_random_histories_read_back_exactly_after_reopening_postgresql(
    pg_cluster: PostgresCluster,
) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(operations=OPERATIONS, interval=st.sampled_from([None, 1, 2, 3, 100]))
    def check(operations: list[tuple[Any, ...]], interval: int | None) -> None:
        schema = pg_cluster.create_schema()
        try:
            check_reopening(pg_cluster.url(schema=schema, pool_size=1), operations, interval)
        finally:
            pg_cluster.drop_schema(schema)

    check()


# -- PostgreSQL URLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:pw@/db", "names no host"),
        ("postgresql://@localhost/db", "names no user"),
        ("postgresql://localhost/db", "names no user"),
        ("postgresql://u:pw@localhost", "exactly one database"),
        ("postgresql://u:pw@localhost/", "exactly one database"),
        ("postgresql://u:pw@localhost/a/b", "exactly one database"),
        ("postgresql://u:pw@localhost:notaport/db", "not a valid PostgreSQL URL"),
        ("postgresql://u:pw@localhost:99999/db", "not a valid PostgreSQL URL"),
        ("postgresql://u:pw@localhost/db#frag", "no '#fragment'"),
        ("postgresql://u:pw@localhost/db?sslmode=require", "unknown query parameter 'sslmode'"),
        (
            "postgresql://u:pw@localhost/db?pool_size=0",
            "pool_size must be an integer of at least 1",
        ),
        ("postgresql://u:pw@localhost/db?pool_size=two", "pool_size must be an integer"),
        ("postgresql://u:pw@localhost/db?pool_size=-1", "pool_size must be an integer"),
        ("postgresql://u:pw@localhost/db?max_overflow=1.5", "max_overflow must be an integer"),
        ("postgresql://u:pw@localhost/db?connect_timeout=0", "at least 1"),
        ("postgresql://u:pw@localhost/db?schema=", "schema must be a PostgreSQL identifier"),
        ("postgresql://u:pw@localhost/db?schema=" + "s" * 64, "1 to 63 bytes"),
        ("postgresql://u:pw@localhost/db?schema=a&schema=b", "'schema' is given twice"),
        ("postgresql://u:pw@localhost/db?pool_size", "is not 'key=value&key=value'"),
    ],
)
def test_a_malformed_postgresql_url_is_refused_without_showing_its_password(
    url: str, expected: str
) -> None:
    with pytest.raises(StoreURLError) as excinfo:
        TemporalStore(url=url)

    assert expected in str(excinfo.value)
    assert "pw" not in str(excinfo.value).replace("postgresql", "")
    assert excinfo.value.__cause__ is None  # the URL is in no chained message either


def test_postgresql_url_parts_and_query_become_eventsourcing_settings() -> None:
    settings = persistence_settings(
        "postgres://us%40er:p%3Aw%2Fd@db.example:6543/my%20db"
        "?schema=atlas&pool_size=3&max_overflow=0&connect_timeout=2&lock_timeout=7"
    )

    assert settings["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert {k: v for k, v in settings.items() if k.startswith("POSTGRES_")} == {
        "POSTGRES_HOST": "db.example",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "us@er",
        "POSTGRES_PASSWORD": "p:w/d",
        "POSTGRES_DBNAME": "my db",
        "POSTGRES_SCHEMA": "atlas",
        "POSTGRES_POOL_SIZE": "3",
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_CONNECT_TIMEOUT": "2",
        "POSTGRES_LOCK_TIMEOUT": "7",
        "POSTGRES_GET_PASSWORD_TOPIC": "",
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
    }
    defaults = persistence_settings("postgresql://u@[::1]/db")
    assert (defaults["POSTGRES_HOST"], defaults["POSTGRES_PORT"]) == ("::1", "5432")
    assert defaults["POSTGRES_PASSWORD"] == ""
    assert (defaults["POSTGRES_POOL_SIZE"], defaults["POSTGRES_SCHEMA"]) == ("5", "")


def test_the_pool_size_and_schema_of_the_url_are_the_ones_used(
    pg_cluster: PostgresCluster,
) -> None:
    schema = pg_cluster.create_schema()
    store = TemporalStore(url=pg_cluster.url(schema=schema, pool_size=3, max_overflow=1))
    document_id = store.create_document("t", "c", "a")

    assert isinstance(store.recorder, PostgresApplicationRecorder)
    datastore = store.recorder.datastore
    assert (datastore.schema, datastore.pool.min_size, datastore.pool.max_size) == (schema, 3, 4)
    with pg_cluster.connect() as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        public = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert {"temporalstore_events", "temporalstore_snapshots"} <= {t[0] for t in tables}
    assert public == (0,)
    assert latest(store, document_id).title == "t"
    store.close()
    pg_cluster.drop_schema(schema)


def test_a_postgresql_url_from_the_environment_is_used_and_eventsourcing_variables_are_not(
    pg_cluster: PostgresCluster, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, postgres_url)
    for prefix in ("", "TEMPORALSTORE_"):
        monkeypatch.setenv(prefix + "PERSISTENCE_MODULE", "eventsourcing.popo")
        monkeypatch.setenv(prefix + "POSTGRES_SCHEMA", "elsewhere")
        monkeypatch.setenv(prefix + "POSTGRES_PASSWORD", "wrong")
        monkeypatch.setenv(prefix + "POSTGRES_POOL_SIZE", "50")

    store = TemporalStore()
    document_id = store.create_document("t", "c", "a")
    store.close()

    assert isinstance(store.recorder, PostgresApplicationRecorder)
    assert store.recorder.datastore.pool.min_size == 2
    reopened = TemporalStore(url=postgres_url)
    assert latest(reopened, document_id).title == "t"
    reopened.close()


def test_repr_and_logs_never_show_the_password(
    postgres_url: str, caplog: pytest.LogCaptureFixture, pg_cluster: PostgresCluster
) -> None:
    with caplog.at_level("DEBUG", logger="atlas_eda"):
        store = TemporalStore(url=postgres_url)
    store.close()

    assert pg_cluster.password in postgres_url
    assert pg_cluster.password not in repr(store)
    assert ":***@" in repr(store)
    assert pg_cluster.password not in caplog.text


def test_an_unreachable_server_gives_store_open_error_quickly_without_the_password() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://atlas:s3cret-pw@127.0.0.1:{port}/atlas?connect_timeout=1"

    started = time.monotonic()
    with pytest.raises(StoreOpenError) as excinfo:
        TemporalStore(url=url)

    assert time.monotonic() - started < 10
    message = str(excinfo.value)
    assert "s3cret-pw" not in message
    assert f"'postgresql://atlas:***@127.0.0.1:{port}/atlas?connect_timeout=1'" in message
    assert "Connection refused" in message
    assert "server is running" in message
    assert excinfo.value.__cause__ is None


def test_a_wrong_password_gives_store_open_error_saying_so(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.url(connect_timeout=1).replace(pg_cluster.password, "not-the-pw")

    with pytest.raises(StoreOpenError) as excinfo:
        TemporalStore(url=url)

    assert "password authentication failed" in str(excinfo.value)
    assert "not-the-pw" not in str(excinfo.value)


def test_a_missing_schema_or_database_gives_store_open_error(
    pg_cluster: PostgresCluster,
) -> None:
    with pytest.raises(StoreOpenError, match='schema "nowhere" does not exist'):
        TemporalStore(url=pg_cluster.url(schema="nowhere"))
    with pytest.raises(StoreOpenError, match='database "nowhere" does not exist'):
        TemporalStore(url=pg_cluster.url(database="nowhere", connect_timeout=1))


OPENER_SCRIPT = """
import sys, time
from atlas_eda import TemporalStore

time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all start at the same moment
store = TemporalStore(url=sys.argv[1])
sys.stdout.write(store.create_document("t", "c", "a"))
store.close()
"""


def test_several_processes_can_open_a_new_postgresql_store_at_once(
    postgres_url: str, tmp_path: Path
) -> None:
    # eventsourcing's CREATE OR REPLACE FUNCTION / CREATE TYPE, run by several processes
    # at once, fail with "tuple concurrently updated" unless the store serialises them.
    # (On SQLite, processes racing to create a new file can still meet "database is
    # locked" while it switches to WAL: open a new SQLite store once before sharing it.)
    durable_url = postgres_url
    script = tmp_path / "open.py"
    script.write_text(OPENER_SCRIPT)
    package_root = str(Path(atlas_eda.__file__).resolve().parents[1])
    environment = os.environ | {"PYTHONPATH": package_root}
    start_at = str(time.time() + 3)
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), durable_url, start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(5)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]

    assert [p.returncode for p in processes] == [0] * 5, [err for _, err in outputs]
    store = TemporalStore(url=durable_url)
    assert sorted(store.list_document_ids()) == sorted(out for out, _ in outputs)
    store.close()


# -- wrong calls get the library's errors (issue 16, item 16) ------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_version_no_database_could_hold_is_no_such_version(kind: str, tmp_path: Path) -> None:
    url = "memory://" if kind == "memory" else sqlite_url(tmp_path / "docs.db")
    with TemporalStore(url=url) as store:
        document_id = store.create_document("t", "c", "a")
        for version in (2**63 - 1, 2**63, 10**30):
            assert store.get_document(document_id, version=version) is None
        assert latest(store, document_id).version == 1


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_every_call_after_close_raises_store_closed_error(kind: str, tmp_path: Path) -> None:
    url = "memory://" if kind == "memory" else sqlite_url(tmp_path / "docs.db")
    store = TemporalStore(url=url)
    document_id = store.create_document("t", "c", "a")
    store.close()
    store.close()  # closing again does nothing
    calls = {
        "create_document": lambda: store.create_document("t", "c", "a"),
        "update_document": lambda: store.update_document(document_id, title="x"),
        "delete_document": lambda: store.delete_document(document_id),
        "get_document": lambda: store.get_document(document_id),
        "get_document(version)": lambda: store.get_document(document_id, version=1),
        "get_all_documents": store.get_all_documents,
        "list_document_ids": store.list_document_ids,
        "latest_version": lambda: store.latest_version(document_id),
        "last_position": store.last_position,
        "notifications": lambda: store.notifications(1, 10),
        "timeline": lambda: list(store.timeline()),
    }
    for name, call in calls.items():
        with pytest.raises(StoreClosedError, match=r"was closed; open a new TemporalStore") as e:
            call()
        assert e.value.__cause__ is None, name
    assert "TemporalStore" in repr(store)  # what it was stays readable
    assert store.recorder is not None
    assert store.snapshots is not None
    if kind == "sqlite":  # and what it stored stays
        with TemporalStore(url=url) as reopened:
            assert latest(reopened, document_id).title == "t"
