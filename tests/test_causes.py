"""Durable causes and deterministic document ids: every stored Document event records the
bus event and handler it was written by, readable after a restart (``RecordedEvent.cause``,
``Timeline.caused_by`` / ``correlated``, ``atlas-eda log`` / ``show``); store files written
before causes were recorded still open; ids of documents created inside a delivery are
derived from the causing event, so a replay of the same root events creates the same ids."""

from __future__ import annotations

import contextvars
import enum
import shutil
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, sqlite_url

from atlas_eda import (
    DocumentService,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
    Event,
    EventBus,
    EventType,
    InvalidDocumentError,
    TemporalStore,
)
from atlas_eda.document import Document
from atlas_eda.document_events import UNKNOWN, Cause, cause_of
from atlas_eda.store import DOCUMENT_ID_NAMESPACE

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "store_v1.db"
"""A SQLite store written by the code before causes were recorded (class version 1
events): Plan created by ada, updated by grace (content), updated (title), snapshot at
version 2; Note created by bob, deleted ("obsolete")."""
PLAN_ID = "1707f8fe-ac31-45fe-9cf3-ca44eae43414"
NOTE_ID = "ff93d429-4844-4fc7-9489-17e7d70e31ec"


class Shop(enum.Enum):
    """The event types of a small shop app, as a user brings them."""

    ORDER_PLACED = "order.placed"
    ORDER_SHIPPED = "order.shipped"


def root_event(n: int, data: Any = None) -> Event:
    """A prebuilt root event with a fixed id, as a cassette keeps it."""
    return Event(type=Shop.ORDER_PLACED, data=data, id=str(uuid.UUID(int=n, version=4)))


class Shop1:
    """A store-backed app: an order creates an order document and a shipping note, updates
    the order, and publishes ORDER_SHIPPED, whose handler marks the order shipped."""

    def __init__(self, bus: EventBus, store: TemporalStore) -> None:
        self.bus = bus
        self.store = store
        bus.subscribe(Shop.ORDER_PLACED, self.on_placed)
        bus.subscribe(Shop.ORDER_SHIPPED, self.on_shipped)

    def on_placed(self, event: Event) -> None:
        order = self.store.create_document("Order", str(event.data), "shop")
        self.store.create_document("Shipping note", f"for {order}", "shop")
        self.store.update_document(order, content="paid", editor="till")
        self.bus.publish(Shop.ORDER_SHIPPED, {"order": order})

    def on_shipped(self, event: Event) -> None:
        self.store.update_document(event.data["order"], title="Order (shipped)")


def run_shop(url: str = "memory://", *, traces: bool = True) -> tuple[TemporalStore, EventBus]:
    bus = EventBus(traces=traces)
    store = TemporalStore(bus, url=url)
    Shop1(bus, store)
    bus.publish_event(root_event(1, "2 books"))
    bus.publish_event(root_event(2, "a lamp"))
    return store, bus


# -- durable causes ----------------------------------------------------------------------


def test_a_write_outside_any_delivery_has_no_cause(store: TemporalStore) -> None:
    doc = store.create_document("T", "c", "a")
    store.update_document(doc, content="d")
    store.delete_document(doc)
    assert [e.cause for e in store.timeline()] == [None, None, None]


def test_each_write_records_the_event_and_handler_delivering_it() -> None:
    store, bus = run_shop()
    root = root_event(1)
    shipped = bus.get_history(Shop.ORDER_SHIPPED)[-1]  # the first root's child
    events = list(store.timeline())
    placed = Cause(root.id, "Shop.ORDER_PLACED", root.id, Shop1.on_placed.__qualname__)
    assert [e.cause for e in events[:4]] == [
        placed,
        placed,
        placed,
        Cause(shipped.id, "Shop.ORDER_SHIPPED", root.id, Shop1.on_shipped.__qualname__),
    ]
    assert events[3].kind == "updated"
    assert shipped.causation_id == root.id


def test_updates_and_deletions_caused_by_a_store_event_name_it(
    bus: EventBus, store: TemporalStore
) -> None:
    def archive(event: Event) -> None:
        if event.data["version"] == 1:
            store.delete_document(event.data["id"], reason="archived")

    bus.subscribe(EventType.DOCUMENT_CREATED, archive)
    doc = store.create_document("T", "c", "a")
    created = bus.get_history(EventType.DOCUMENT_CREATED)[0]
    deleted = store.timeline()[-1]
    assert (deleted.document_id, deleted.kind) == (doc, "deleted")
    assert deleted.cause == Cause(
        created.id, "EventType.DOCUMENT_CREATED", created.id, archive.__qualname__
    )


def test_a_write_by_an_effect_a_handler_returned_names_that_handler() -> None:
    handler = EffectHandler()
    bus = EventBus(effect_handler=handler)
    store = TemporalStore(bus, url="memory://")
    handler.register_handler(
        EffectType.DATABASE_WRITE, lambda effect: store.create_document("T", "c", "a")
    )

    def plan(event: Event) -> EffectMonad[None]:
        return EffectMonad.pure(None).with_effect(Effect(EffectType.DATABASE_WRITE))

    bus.subscribe(Shop.ORDER_PLACED, plan)
    event_id = bus.publish_event(root_event(7))
    [written] = store.timeline()
    assert written.cause == Cause(event_id, "Shop.ORDER_PLACED", event_id, plan.__qualname__)


def test_on_a_bus_without_traces_the_handler_is_not_known() -> None:
    store, _ = run_shop(traces=False)
    root = root_event(1)
    assert store.timeline()[0].cause == Cause(root.id, "Shop.ORDER_PLACED", root.id, None)


def test_caused_by_and_correlated_list_what_an_event_and_its_tree_wrote() -> None:
    store, bus = run_shop()
    timeline = store.timeline()
    first, second = root_event(1).id, root_event(2).id
    shipped = [e.id for e in reversed(bus.get_history(Shop.ORDER_SHIPPED))]
    assert [e.position for e in timeline.caused_by(first)] == [1, 2, 3]
    assert [e.position for e in timeline.caused_by(shipped[0])] == [4]
    assert [e.position for e in timeline.correlated(first)] == [1, 2, 3, 4]
    assert [e.position for e in timeline.correlated(second)] == [5, 6, 7, 8]
    assert timeline.caused_by(str(uuid.uuid4())) == []
    # the log grows: the index follows it
    bus.publish_event(root_event(3))
    assert [e.position for e in timeline.correlated(root_event(3).id)] == [9, 10, 11, 12]
    with pytest.raises(TypeError, match="event_id must be a str"):
        timeline.caused_by(1)  # type: ignore[arg-type]


def test_causes_are_read_back_in_a_new_process_after_a_restart(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "shop.db")
    store, _ = run_shop(url)
    store.close()
    script = textwrap.dedent(
        f"""
        from atlas_eda import TemporalStore
        with TemporalStore(url={url!r}) as store:
            timeline = store.timeline()
            print([e.position for e in timeline.correlated({root_event(2).id!r})])
            [first] = timeline.caused_by({root_event(1).id!r})[:1]
            print(first.cause.event_type, first.cause.handler)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[5, 6, 7, 8]",
        f"Shop.ORDER_PLACED {Shop1.on_placed.__qualname__}",
    ]


def test_the_timeline_html_and_a_recorded_events_html_show_the_cause() -> None:
    store, _ = run_shop()
    timeline = store.timeline()
    markup = timeline._repr_html_()
    assert ">cause</th>" in markup
    assert "Shop.ORDER_PLACED" in markup
    assert Shop1.on_shipped.__qualname__ in markup
    assert "Shop.ORDER_PLACED" in timeline[0]._repr_html_()
    outside = TemporalStore(url="memory://")
    outside.create_document("T", "c", "a")
    assert "caused by no bus event" in outside.timeline()[0]._repr_html_()


# -- store files written before causes were recorded -----------------------------------


def test_a_store_written_before_causes_were_recorded_opens_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(FIXTURE_V1, path)
    with TemporalStore(url=sqlite_url(path), snapshot_interval=2) as store:
        events = list(store.timeline())
        assert [(e.document_id, e.version, e.kind) for e in events] == [
            (PLAN_ID, 1, "created"),
            (PLAN_ID, 2, "updated"),
            (PLAN_ID, 3, "updated"),
            (NOTE_ID, 1, "created"),
            (NOTE_ID, 2, "deleted"),
        ]
        assert [e.cause for e in events] == [None] * 5
        # upcast from class version 1: the decoded events have a cause, None
        decoded = list(store.events.get(uuid.UUID(PLAN_ID)))
        assert [getattr(e, "cause", "missing") for e in decoded] == [None] * 3
        assert events[1].changes == {"content": "final", "last_editor": "grace"}
        plan = store.get_document(PLAN_ID)  # from the version 2 snapshot, then version 3
        assert plan is not None
        assert (plan.version, plan.title, plan.content) == (3, "Plan v3", "final")
        first = store.get_document(PLAN_ID, version=1)
        assert first is not None
        assert first.content == "draft"
        assert [d.document_id for d in store.get_all_documents()] == [PLAN_ID]
        # new writes into the old file record their causes beside the old events
        bus = EventBus()
        store.event_bus = bus
        bus.subscribe(Shop.ORDER_PLACED, lambda e: store.update_document(PLAN_ID, content="v4"))
        bus.publish_event(root_event(1))
    with TemporalStore(url=sqlite_url(path)) as reopened:
        newest = reopened.timeline()[-1]
        assert newest.cause is not None
        assert newest.cause.event_id == root_event(1).id
        assert reopened.timeline()[0].cause is None
        assert reopened.get_document(PLAN_ID) is not None


def test_the_cli_reads_a_store_written_before_causes_were_recorded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(FIXTURE_V1, path)
    log = run_cli("log", "--store", sqlite_url(path), cwd=tmp_path)
    assert log.returncode == 0, log.stderr
    assert "the log has 5 in all" in log.stdout
    show = run_cli("show", PLAN_ID, "--store", sqlite_url(path), cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert "Cause of version 3: none (written outside any bus delivery)" in show.stdout


# -- a tampered store ------------------------------------------------------------------


def _write_raw(store: TemporalStore, cause: object, version: int = 1) -> str:
    """Write a Created event whose cause is ``cause`` through the store's recorder, past
    every check (as a tampering or foreign writer would)."""
    document = Document.create("Tampered", "c", "mallory")
    [created] = document.collect_events()
    object.__setattr__(created, "cause", cause)
    store.recorder.insert_events([store.mapper.to_stored_event(created)])
    return document.document_id


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (
            {"event_id": 5, "event_type": ["x"], "correlation_id": 1.5, "handler": {"a": 1}},
            Cause(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN),
        ),
        (
            {"event_id": "e1", "event_type": "Shop.ORDER_PLACED", "handler": 3},
            Cause("e1", "Shop.ORDER_PLACED", None, UNKNOWN),
        ),
        ("not a dict", Cause(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)),
        ([1, 2], Cause(UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN)),
        ({}, Cause(UNKNOWN, UNKNOWN, None, None)),
    ],
)
def test_a_cause_that_is_not_text_reads_as_unknown_never_a_crash(
    tmp_path: Path, cause: object, expected: Cause
) -> None:
    url = sqlite_url(tmp_path / "tampered.db")
    with TemporalStore(url=url) as store:
        doc = _write_raw(store, cause)
        [event] = store.timeline()
        assert event.cause == expected
        assert event.cause.describe().startswith(expected.event_type)
        assert "Tampered" in store.timeline()._repr_html_()
        assert store.timeline().caused_by(UNKNOWN) == []
        assert store.timeline().correlated(UNKNOWN) == []
    log = run_cli("log", "--store", url, cwd=tmp_path)
    assert log.returncode == 0, log.stderr
    assert log.stdout.splitlines()[4].endswith(expected.describe())
    show = run_cli("show", doc, "--store", url, cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert show.stdout.splitlines()[-1].startswith(
        f"Cause of version 1: {expected.event_type} event {expected.event_id} delivered to "
    )


def test_cause_of_an_event_without_a_cause_attribute_is_none() -> None:
    document = Document(title="T", content="c", author="a")
    [created] = document.collect_events()
    object.__delattr__(created, "cause")
    assert cause_of(created) is None


# -- the command line ------------------------------------------------------------------


def test_log_has_a_cause_column_and_show_a_cause_line(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "shop.db")
    store, _ = run_shop(url)
    order = store.timeline()[0].document_id
    store.create_document("Outside", "c", "a")
    store.close()
    log = run_cli("log", "--store", url, cwd=tmp_path)
    assert log.returncode == 0, log.stderr
    lines = log.stdout.splitlines()
    assert lines[2].split()[-1] == "cause"
    root = root_event(1).id
    assert lines[4].endswith(f"Shop.ORDER_PLACED …{root[-8:]} by {Shop1.on_placed.__qualname__}")
    assert lines[-1].endswith("author='a'")  # no cause: the cell is empty
    show = run_cli("show", order, "--store", url, cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    shipped_line = show.stdout.splitlines()[-1]
    assert shipped_line.startswith("Cause of version 3: Shop.ORDER_SHIPPED event ")
    assert shipped_line.endswith(
        f"delivered to {Shop1.on_shipped.__qualname__} (correlation {root})"
    )
    first = run_cli("show", order, "--version", "1", "--store", url, cwd=tmp_path)
    assert first.stdout.splitlines()[-1] == (
        f"Cause of version 1: Shop.ORDER_PLACED event {root} delivered to "
        f"{Shop1.on_placed.__qualname__} (correlation {root})"
    )


# -- deterministic ids -----------------------------------------------------------------


def test_replaying_the_same_root_events_into_a_fresh_store_creates_the_same_ids() -> None:
    first, _ = run_shop()
    again, _ = run_shop()
    ids = first.list_document_ids()
    assert len(ids) == len(set(ids)) == 4  # two creations per delivery, all different
    assert again.list_document_ids() == ids
    assert [e.changes for e in again.timeline()] == [e.changes for e in first.timeline()]
    root = root_event(1).id
    assert ids[:2] == [str(uuid.uuid5(DOCUMENT_ID_NAMESPACE, f"{root}/{n}")) for n in (0, 1)]


def test_creations_in_a_child_delivery_and_after_it_get_ids_of_their_own() -> None:
    bus = EventBus()
    store = TemporalStore(bus, url="memory://")

    def parent(event: Event) -> None:
        store.create_document("before", "c", "a")
        bus.publish(Shop.ORDER_SHIPPED)
        store.create_document("after", "c", "a")

    bus.subscribe(Shop.ORDER_PLACED, parent)
    bus.subscribe(Shop.ORDER_SHIPPED, lambda e: store.create_document("child", "c", "a"))
    root = bus.publish_event(root_event(3))
    child = bus.get_history(Shop.ORDER_SHIPPED)[0].id
    by_title = {d.title: d.document_id for d in store.get_all_documents()}

    def derive(e: str, n: int) -> str:
        return str(uuid.uuid5(DOCUMENT_ID_NAMESPACE, f"{e}/{n}"))

    assert by_title == {
        "before": derive(root, 0),
        "child": derive(child, 0),
        "after": derive(root, 1),
    }


def test_work_handed_to_another_thread_with_its_context_counts_with_its_handler() -> None:
    """A handler creates a document, then hands a creation to a thread pool through
    contextvars.copy_context(), then creates again: three ids derived from the event, all
    different (the worker's creation is counted with the handler's, not from 0)."""
    bus = EventBus()
    store = TemporalStore(bus, url="memory://")

    with ThreadPoolExecutor(max_workers=1) as pool:

        def handler(event: Event) -> None:
            store.create_document("first", "c", "a")
            context = contextvars.copy_context()
            pool.submit(context.run, store.create_document, "worker", "c", "a").result(60)
            store.create_document("last", "c", "a")

        bus.subscribe(Shop.ORDER_PLACED, handler)
        root = bus.publish_event(root_event(4))
    by_title = {d.title: d.document_id for d in store.get_all_documents()}
    derived = {str(uuid.uuid5(DOCUMENT_ID_NAMESPACE, f"{root}/{n}")) for n in range(3)}
    assert set(by_title.values()) == derived
    assert by_title["first"] == str(uuid.uuid5(DOCUMENT_ID_NAMESPACE, f"{root}/0"))


def test_outside_a_delivery_ids_stay_random(store: TemporalStore) -> None:
    ids = [uuid.UUID(store.create_document("T", "c", "a")) for _ in range(2)]
    assert ids[0] != ids[1]
    assert {i.version for i in ids} == {4}


def test_a_chosen_id_is_used(bus: EventBus, store: TemporalStore) -> None:
    chosen = str(uuid.uuid4())
    assert store.create_document("T", "c", "a", document_id=chosen) == chosen
    assert store.get_document(chosen) is not None
    upper = str(uuid.uuid4())
    assert store.create_document("T", "c", "a", document_id=upper.upper()) == upper
    created = bus.get_history(EventType.DOCUMENT_CREATED)
    assert [e.data["id"] for e in reversed(created)] == [chosen, upper]


def test_a_chosen_id_inside_a_delivery_wins(bus: EventBus, store: TemporalStore) -> None:
    chosen = str(uuid.uuid4())
    bus.subscribe(
        Shop.ORDER_PLACED, lambda e: store.create_document("T", "c", "a", document_id=chosen)
    )
    bus.publish_event(root_event(1))
    assert store.list_document_ids() == [chosen]


@pytest.mark.parametrize(
    ("document_id", "message"),
    [
        (uuid.uuid4(), r"document_id must be a str holding a UUID .* got UUID"),
        (42, r"document_id must be a str holding a UUID .* got int \(42\)"),
        (b"1234", r"got bytes"),
        ("not-a-uuid", r"document_id 'not-a-uuid' is not a UUID"),
        ("", r"document_id '' is not a UUID"),
    ],
)
def test_a_chosen_id_of_the_wrong_type_or_form_is_refused_nothing_written(
    bus: EventBus, store: TemporalStore, document_id: Any, message: str
) -> None:
    with pytest.raises(InvalidDocumentError, match=message) as excinfo:
        store.create_document("T", "c", "a", document_id=document_id)
    assert excinfo.value.field == "document_id"
    assert "nothing was saved" in str(excinfo.value)
    assert store.last_position() == 0
    assert bus.get_history() == []


def test_an_existing_id_is_refused_nothing_written(tmp_path: Path) -> None:
    bus = EventBus()
    with TemporalStore(bus, url=sqlite_url(tmp_path / "s.db")) as store:
        taken = store.create_document("First", "c", "a")
        with pytest.raises(InvalidDocumentError, match=f"id {taken} already exists") as excinfo:
            store.create_document("Second", "c", "a", document_id=taken, retries=3)
        assert excinfo.value.field == "document_id"
        assert "nothing was saved" in str(excinfo.value)
        assert store.last_position() == 1
        assert len(bus.get_history(EventType.DOCUMENT_CREATED)) == 1
        document = store.get_document(taken)
        assert document is not None
        assert document.title == "First"


def test_delivering_the_same_root_event_again_into_the_same_store_is_refused() -> None:
    bus = EventBus()
    store = TemporalStore(bus, url="memory://")
    bus.subscribe(Shop.ORDER_PLACED, lambda e: store.create_document("T", "c", "a"))
    bus.publish_event(root_event(1))
    errors: list[Event] = []
    bus.subscribe(EventType.ERROR, errors.append)
    bus.publish_event(root_event(1))  # the handler's failure is isolated and reported
    assert store.last_position() == 1
    [error] = errors
    assert "already exists" in error.data["error_message"]
    assert "derived from the bus event" in error.data["error_message"]


def test_the_service_passes_a_chosen_id_on(bus: EventBus, store: TemporalStore) -> None:
    handler = EffectHandler(temporal_store=store, event_bus=bus)
    for effect_type in (EffectType.DATABASE_WRITE, EffectType.LOGGING):
        handler.register_handler(effect_type, lambda effect: None)
    service = DocumentService(bus, store, handler)
    chosen = str(uuid.uuid4())
    assert service.create_document("T", "c", "a", document_id=chosen) == chosen
    with pytest.raises(InvalidDocumentError, match="already exists"):
        service.create_document("T", "c", "a", document_id=chosen)
