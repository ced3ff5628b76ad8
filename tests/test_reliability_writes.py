"""Writes: a committed write never looks failed (issue 16 item 1), the first open of a new
SQLite file survives SIGKILL (item 4), and ``sqlite:///file:`` URLs get the foreign-file
check (item 7). See docs/reliability.md, "Writes: no failure after commit, outbox, first
open"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from atlas_eda import (
    AtlasEdaError,
    DeliveryAfterCommitError,
    DocumentService,
    Effect,
    EffectHandler,
    EffectType,
    Event,
    EventBus,
    EventCycleError,
    EventType,
    HandlerFailures,
    TemporalStore,
)


def _failing(event: Event) -> None:
    raise RuntimeError("subscriber down")


def _raising_store(url: str = "memory://") -> TemporalStore:
    bus = EventBus(failure_policy="raise")
    bus.subscribe(EventType.DOCUMENT_CREATED, _failing)
    bus.subscribe(EventType.DOCUMENT_UPDATED, _failing)
    bus.subscribe(EventType.DOCUMENT_DELETED, _failing)
    return TemporalStore(bus, url=url)


def test_a_create_whose_subscriber_fails_is_committed_and_says_so(tmp_path: Path) -> None:
    store = _raising_store(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(DeliveryAfterCommitError) as caught:
        store.create_document("T", "body", "ann")
    error = caught.value
    assert isinstance(error, AtlasEdaError)
    assert isinstance(error.__cause__, HandlerFailures)
    assert error.version == 1
    assert error.result == error.document_id
    assert error.document.content == "body"
    assert "committed" in str(error)
    assert "Do not retry" in str(error)
    # The write is durable: a reader that opens the file sees exactly one document.
    store.close()
    with TemporalStore(url=f"sqlite:///{tmp_path / 's.db'}") as reopened:
        [document] = reopened.get_all_documents()
        assert document.document_id == error.document_id


def test_update_and_delete_whose_subscriber_fails_carry_their_version() -> None:
    bus = EventBus(failure_policy="raise")
    store = TemporalStore(bus)
    doc_id = store.create_document("T", "v1", "ann")
    bus.subscribe(EventType.DOCUMENT_UPDATED, _failing)
    bus.subscribe(EventType.DOCUMENT_DELETED, _failing)
    with pytest.raises(DeliveryAfterCommitError) as updated:
        store.update_document(doc_id, content="v2", editor="bob")
    assert (updated.value.document_id, updated.value.version, updated.value.result) == (
        doc_id,
        2,
        True,
    )
    with pytest.raises(DeliveryAfterCommitError) as deleted:
        store.delete_document(doc_id, reason="gone")
    assert (deleted.value.version, deleted.value.result) == (3, True)
    assert deleted.value.document.is_deleted
    assert store.latest_version(doc_id) == 3


def test_after_commit_runs_after_the_bus_and_its_failure_is_after_commit() -> None:
    bus = EventBus()
    store = TemporalStore(bus)
    seen: list[str] = []
    bus.subscribe(EventType.DOCUMENT_CREATED, lambda event: seen.append("bus"))

    def then() -> None:
        seen.append("after_commit")
        raise OSError("mail server down")

    with pytest.raises(DeliveryAfterCommitError) as caught:
        store.create_document("T", "c", "ann", after_commit=then)
    assert seen == ["bus", "after_commit"]
    assert isinstance(caught.value.__cause__, OSError)
    assert store.get_document(caught.value.document_id) is not None


def test_a_cycle_of_store_writes_reaches_the_outermost_writer_with_its_result() -> None:
    bus = EventBus(max_depth=5)
    store = TemporalStore(bus)

    def create_another(event: Event) -> None:
        store.create_document("T", "again", "loop")

    bus.subscribe(EventType.DOCUMENT_CREATED, create_another)
    with pytest.raises(DeliveryAfterCommitError) as caught:
        store.create_document("T", "first", "ann")
    assert isinstance(caught.value.__cause__, EventCycleError)
    assert caught.value.document.content == "first"
    assert store.get_document(caught.value.document_id) is not None


def _service(handler: EffectHandler) -> tuple[DocumentService, TemporalStore]:
    bus = EventBus()
    store = TemporalStore(bus)
    return DocumentService(bus, store, handler), store


def _handler(failing: EffectType | None) -> EffectHandler:
    handler = EffectHandler()
    for kind in (EffectType.DATABASE_WRITE, EffectType.LOGGING, EffectType.NOTIFICATION):

        def perform(effect: Effect, kind: Any = kind) -> None:
            if kind is failing:
                raise ConnectionError("notifier down")

        handler.register_handler(kind, perform)
    return handler


def test_a_service_write_whose_performer_fails_is_committed_and_says_so() -> None:
    service, store = _service(_handler(EffectType.NOTIFICATION))
    doc_id = service.create_document("T", "v1", "ann")  # no NOTIFICATION on create
    with pytest.raises(DeliveryAfterCommitError) as updated:
        service.update_document(doc_id, content="v2", editor="bob")
    assert (updated.value.document_id, updated.value.version) == (doc_id, 2)
    assert isinstance(updated.value.__cause__, ConnectionError)
    with pytest.raises(DeliveryAfterCommitError) as deleted:
        service.delete_document(doc_id)
    assert deleted.value.version == 3
    document = store.get_document(doc_id)
    assert document is not None
    assert document.is_deleted


def test_a_service_create_whose_logging_performer_fails_is_not_written_twice() -> None:
    service, store = _service(_handler(EffectType.LOGGING))
    with pytest.raises(DeliveryAfterCommitError) as caught:
        service.create_document("T", "v1", "ann")
    assert caught.value.version == 1
    assert [d.document_id for d in store.get_all_documents()] == [caught.value.document_id]


def test_a_service_performs_its_effects_after_the_commit() -> None:
    bus = EventBus()
    store = TemporalStore(bus)
    handler = EffectHandler()
    order: list[str] = []
    bus.subscribe(EventType.DOCUMENT_CREATED, lambda event: order.append("committed"))
    for kind in (EffectType.DATABASE_WRITE, EffectType.LOGGING):
        handler.register_handler(kind, lambda effect: order.append(type_name(effect)))
    service = DocumentService(bus, store, handler)
    service.create_document("T", "v1", "ann")
    assert order == ["committed", "DATABASE_WRITE", "LOGGING"]


def type_name(effect: Effect) -> str:
    return str(effect.type.name)


def _foreign_database(path: Path) -> None:
    import sqlite3

    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE people (name TEXT)")
    connection.execute("INSERT INTO people VALUES ('ann')")
    connection.commit()
    connection.close()


def _tables_and_journal(path: Path) -> tuple[list[str], str]:
    import sqlite3

    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master")]
        [journal] = connection.execute("PRAGMA journal_mode").fetchone()
    finally:
        connection.close()
    return tables, str(journal)


@pytest.mark.parametrize(
    "spelling",
    [
        "file:{path}",
        "file:{path}?mode=rwc",
        "file:{path}?mode=rw&cache=shared",
        "file://{path}?mode=rwc",
        "file://localhost{path}",
        "file:{quoted}?mode=rwc",
    ],
)
def test_a_uri_filename_naming_another_applications_database_is_refused_untouched(
    tmp_path: Path, spelling: str
) -> None:
    from urllib.parse import quote

    from atlas_eda import StoreOpenError

    path = tmp_path / "other app.db"
    _foreign_database(path)
    before = path.read_bytes()
    name = spelling.format(path=path, quoted=quote(str(path)))
    with pytest.raises(StoreOpenError, match="another application"):
        TemporalStore(url=f"sqlite:///{name}")
    assert _tables_and_journal(path) == (["people"], "delete")
    assert path.read_bytes() == before


def test_a_uri_filename_naming_a_new_file_or_memory_makes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with TemporalStore(url=f"sqlite:///file:{path}?mode=rwc") as store:
        doc_id = store.create_document("T", "c", "ann")
    with TemporalStore(url=f"sqlite:///file:{path}") as store:
        assert store.get_document(doc_id) is not None
    with TemporalStore(url="sqlite:///file:scratch?mode=memory&cache=shared") as store:
        assert store.get_document(store.create_document("T", "c", "ann")) is not None


def test_a_uri_filename_on_another_host_or_in_a_missing_directory_is_refused(
    tmp_path: Path,
) -> None:
    from atlas_eda import StoreURLError

    with pytest.raises(StoreURLError, match="local files only"):
        TemporalStore(url="sqlite:///file://example.com/data.db")
    with pytest.raises(StoreURLError, match="does not exist"):
        TemporalStore(url=f"sqlite:///file:{tmp_path / 'missing' / 'x.db'}?mode=rwc")


FIXTURES = Path(__file__).parent / "fixtures"

# A real process that forks one child per new file; each child opens the file as a new
# store and is SIGKILLed after a random moment within (and around) how long an open takes.
_FIRST_OPENS = """
import os, random, signal, sys, time
from atlas_eda import TemporalStore

directory, kills, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
started = time.perf_counter()
for i in range(3):
    TemporalStore(url=f"sqlite:///{directory}/timing{i}.db").close()
window = (time.perf_counter() - started) / 3 * 1.5
for i in range(kills):
    pid = os.fork()
    if pid == 0:
        TemporalStore(url=f"sqlite:///{directory}/s{i}.db")
        os._exit(0)
    time.sleep(rng.uniform(0, window))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print("done", flush=True)
"""


def test_a_first_open_killed_mid_way_leaves_a_file_that_opens(tmp_path: Path) -> None:
    import shutil

    for name in ("first_open_killed.db", "first_open_killed.db-journal"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    with TemporalStore(url=f"sqlite:///{tmp_path / 'first_open_killed.db'}") as store:
        assert store.last_position() == 0
        doc_id = store.create_document("T", "c", "ann")
    assert not (tmp_path / "first_open_killed.db-journal").exists()
    with TemporalStore(url=f"sqlite:///{tmp_path / 'first_open_killed.db'}") as store:
        assert store.get_document(doc_id) is not None


def test_every_file_opens_after_sigkills_during_its_first_open(tmp_path: Path) -> None:
    import random
    import subprocess
    import sys

    kills = 200
    seed = random.randrange(2**32)
    finished = subprocess.run(
        [sys.executable, "-c", _FIRST_OPENS, str(tmp_path), str(kills), str(seed)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.stdout == "done\n", (seed, finished.stderr[-2000:])
    journals = len(list(tmp_path.glob("s*.db-journal")))
    refused = []
    for i in range(kills):
        url = f"sqlite:///{tmp_path / f's{i}.db'}"
        try:
            with TemporalStore(url=url) as store:
                store.create_document("T", "c", "ann")
        except AtlasEdaError as exc:
            refused.append(f"s{i}.db: {exc}")
    assert not refused, (seed, journals, refused[:3])
