"""State in cassettes: a recorder given a store writes, per event, the store changes its
delivery caused (``atlasstate``); check-mode replay into a store compares them and reports
the first difference at the line of the event that caused it; bad state lines are a
``CassetteError`` naming the line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import shop_app
from conftest import CASSETTES, run_cli

from atlas_eda import EventBus, TemporalStore
from atlas_eda.errors import CassetteError
from atlas_eda.testing import MODES, Cassette, RecordedChange, record, replay
from atlas_eda.testing.replay import ReplayReport

SHOP = CASSETTES / "shop_orders.jsonl"

pytest_plugins = ["pytester"]


def _replay_shop(path: Path, mode: str = "check", *, with_store: bool = True) -> ReplayReport:
    app = shop_app.make_system()
    try:
        return replay(Cassette.load(path), app.bus, mode, store=app.store if with_store else None)
    finally:
        app.store.close()


def _tampered(tmp_path: Path, number: int, change: Callable[[list[Any]], Any]) -> Path:
    """A copy of the shop cassette whose line ``number``'s state is ``change``d."""
    lines = SHOP.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[number - 1])
    state = json.loads(item["atlasstate"]) if "atlasstate" in item else []
    changed = change(state)
    item["atlasstate"] = json.dumps(state if changed is None else changed)
    lines[number - 1] = json.dumps(item)
    copy = tmp_path / "shop.jsonl"
    copy.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return copy


# -- recording -----------------------------------------------------------------------------


def test_the_shop_cassette_records_each_events_store_changes() -> None:
    entries = Cassette.load(SHOP).entries
    by_line = {e.line: e for e in entries}
    placed = by_line[1]
    order = placed.event.data
    assert [(c.kind, c.version) for c in placed.state] == [("created", 1)]
    assert placed.state[0].fields == {
        "title": "Order 1",
        "content": json.dumps(order["items"]),
        "author": "ann@example.com",
    }
    accepted = by_line[3]  # a child event: the order updated, an invoice created
    assert accepted.event.causation_id == placed.event.id
    assert [(c.document, c.version, c.kind) for c in accepted.state] == [
        (placed.state[0].document, 2, "updated"),
        (accepted.state[1].document, 1, "created"),
    ]
    assert accepted.state[0].fields == {"content": "accepted", "last_editor": "warehouse"}
    cancelled = by_line[11]
    assert cancelled.state == (
        RecordedChange(
            cancelled.event.data["document"],
            3,
            "deleted",
            {"is_deleted": True, "deletion_reason": "changed their mind"},
        ),
    )
    # The store's own DOCUMENT_* events write nothing: no state on their lines.
    assert all(not e.state for e in entries if e.event.source == "atlas_eda.store")


def test_without_a_store_nothing_of_the_state_is_recorded(tmp_path: Path) -> None:
    app = shop_app.make_system()
    with record(app.bus, tmp_path / "plain.jsonl"):
        shop_app.play_session(app)
    app.store.close()
    assert "atlasstate" not in (tmp_path / "plain.jsonl").read_text(encoding="utf-8")


def test_writes_outside_any_delivery_are_not_recorded(tmp_path: Path) -> None:
    bus = EventBus()
    store = TemporalStore(bus, url="memory://")
    with record(bus, tmp_path / "outside.jsonl", store=store):
        store.create_document("Direct", "written by no handler", "me")
    store.close()
    entries = Cassette.load(tmp_path / "outside.jsonl").entries
    assert [e.event.type.name for e in entries] == ["DOCUMENT_CREATED"]
    assert entries[0].state == ()


# -- replaying -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_the_shop_cassette_replays_into_an_empty_store_without_divergence(mode: str) -> None:
    report = _replay_shop(SHOP, mode)
    report.assert_no_divergence()
    assert report.events_matched == 12


def test_the_replayed_store_holds_the_recorded_documents() -> None:
    app = shop_app.make_system()
    replay(Cassette.load(SHOP), app.bus, store=app.store).assert_no_divergence()
    recorded = {c.document for e in Cassette.load(SHOP) for c in e.state}
    # Children are caused again under new ids, so the invoices they create get other
    # (derived) ids; the orders, created by root events, get the recorded ones.
    orders = {e.event.data["document"] for e in Cassette.load(SHOP) if "document" in e.event.data}
    assert orders <= set(app.store.list_document_ids())
    assert len(app.store.list_document_ids()) == len(recorded)
    app.store.close()


def test_a_cassette_without_state_replays_with_a_store_as_before(tmp_path: Path) -> None:
    lines = SHOP.read_text(encoding="utf-8").splitlines()
    stripped = []
    for line in lines:
        item = json.loads(line)
        item.pop("atlasstate", None)
        stripped.append(json.dumps(item))
    old = tmp_path / "old.jsonl"
    old.write_text("".join(line + "\n" for line in stripped), encoding="utf-8")
    _replay_shop(old).assert_no_divergence()


def test_a_tampered_field_value_diverges_at_its_line_naming_the_field(tmp_path: Path) -> None:
    def change(state: list[Any]) -> None:
        state[0]["fields"]["content"] = "rejected"

    report = _replay_shop(_tampered(tmp_path, 3, change))
    divergence = report.divergence
    assert divergence is not None
    assert divergence.position == 3
    document = Cassette.load(SHOP).entries[2].state[0].document
    assert divergence.reason == (
        f"ShopEvent.ORDER_ACCEPTED store change 1: document {document} version 2 "
        f"field 'content' differs"
    )
    assert '-  "content": "rejected",' in divergence.diff
    assert '+  "content": "accepted",' in divergence.diff
    assert report.events_matched == 2
    with pytest.raises(AssertionError, match="field 'content' differs"):
        report.assert_no_divergence()


def test_state_is_not_compared_without_a_store_or_in_stub_mode(tmp_path: Path) -> None:
    def change(state: list[Any]) -> None:
        state[0]["fields"]["content"] = "rejected"

    tampered = _tampered(tmp_path, 3, change)
    _replay_shop(tampered, with_store=False).assert_no_divergence()
    _replay_shop(tampered, "stub").assert_no_divergence()
    assert not _replay_shop(tampered, "perform").ok


def _set(index: int, key: str, value: Any) -> Callable[[list[Any]], None]:
    def change(state: list[Any]) -> None:
        state[index][key] = value

    return change


# Each: the line tampered, the change, and words of the reason.
TAMPERING: dict[str, tuple[int, Callable[[list[Any]], Any], str]] = {
    "another document": (
        3,
        _set(1, "document", "00000000-0000-4000-8000-000000000000"),
        "store change 2: expected document 00000000-0000-4000-8000-000000000000, got",
    ),
    "another version": (3, _set(0, "version", 5), "version 5 updated, got version 2 updated"),
    "another kind": (
        11,
        lambda state: [{**state[0], "kind": "updated", "fields": {"content": "x"}}],
        "version 3 updated, got version 3 deleted",
    ),
    "a change recorded but not written": (
        11,
        lambda state: [*state, {**state[0], "version": 4}],
        "store change 2 (document",
    ),
    "a change written but not recorded": (3, lambda state: state[:1], "was written but not"),
    "a field missing from the recording": (
        3,
        lambda state: [{**state[0], "fields": {"content": "accepted"}}, state[1]],
        "field 'last_editor' differs",
    ),
    "state on a line whose event wrote nothing": (
        2,
        lambda state: [
            {
                "document": "00000000-0000-4000-8000-000000000000",
                "version": 1,
                "kind": "created",
                "fields": {"title": "t", "content": "c", "author": "a"},
            }
        ],
        "was recorded but not written (1 recorded, 0 written)",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_each_tampering_of_the_state_diverges_at_its_line(case: str, tmp_path: Path) -> None:
    number, change, words = TAMPERING[case]
    report = _replay_shop(_tampered(tmp_path, number, change))
    assert report.divergence is not None, case
    assert report.divergence.position == number
    assert words in report.divergence.reason


# -- bad input -----------------------------------------------------------------------------

CREATED = {"title": "t", "content": "c", "author": "a"}

BAD_STATE: dict[str, tuple[Any, str]] = {
    "not JSON": ("[{", "the atlasstate extension is not valid JSON"),
    "not a list": ('{"document": 1}', "the atlasstate extension must hold a JSON list"),
    "an item not an object": ("[1]", "atlasstate[0] must be an object with exactly the keys"),
    "a key missing": (
        '[{"document": "x"}]',
        "atlasstate[0] must be an object with exactly the keys",
    ),
    "a document id not a uuid": (
        [{"document": "order-1", "version": 1, "kind": "created", "fields": CREATED}],
        "atlasstate[0].document must be a document id (a UUID string), got 'order-1'",
    ),
    "a document id not a string": (
        [{"document": 7, "version": 1, "kind": "created", "fields": CREATED}],
        "atlasstate[0].document must be a document id",
    ),
    "a version not an integer": (
        [{"document": "X", "version": "1", "kind": "created", "fields": CREATED}],
        "atlasstate[0].version must be an integer of at least 1, got '1'",
    ),
    "a version that is a bool": (
        [{"document": "X", "version": True, "kind": "created", "fields": CREATED}],
        "atlasstate[0].version must be an integer",
    ),
    "an unknown kind": (
        [{"document": "X", "version": 2, "kind": "renamed", "fields": {}}],
        "atlasstate[0].kind must be one of created, updated, deleted, got 'renamed'",
    ),
    "a created version other than 1": (
        [{"document": "X", "version": 2, "kind": "created", "fields": CREATED}],
        "atlasstate[0]: a created document has version 1, not 2",
    ),
    "fields not an object": (
        [{"document": "X", "version": 2, "kind": "updated", "fields": ["content"]}],
        "atlasstate[0].fields must be an object",
    ),
    "an unknown field": (
        [{"document": "X", "version": 2, "kind": "updated", "fields": {"price": 3}}],
        "atlasstate[0].fields: a change of kind updated sets no field 'price'",
    ),
    "a value of the wrong type": (
        [{"document": "X", "version": 2, "kind": "updated", "fields": {"content": 3}}],
        "atlasstate[0].fields['content'] must be str, got int",
    ),
    "a deleted flag not a bool": (
        [
            {
                "document": "X",
                "version": 2,
                "kind": "deleted",
                "fields": {"is_deleted": "yes", "deletion_reason": None},
            }
        ],
        "atlasstate[0].fields['is_deleted'] must be bool, got str",
    ),
    "a created change without its fields": (
        [{"document": "X", "version": 1, "kind": "created", "fields": {"title": "t"}}],
        "atlasstate[0].fields: a change of kind created sets author, content too",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STATE))
def test_bad_state_is_a_cassette_error_naming_the_line(case: str, tmp_path: Path) -> None:
    value, words = BAD_STATE[case]
    document = Cassette.load(SHOP).entries[0].state[0].document
    if isinstance(value, list):
        value = json.loads(json.dumps(value).replace('"X"', json.dumps(document)))
    raw = value if isinstance(value, str) else json.dumps(value)
    path = _tampered(tmp_path, 3, lambda _state: None)
    lines = path.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[2])
    item["atlasstate"] = raw
    lines[2] = json.dumps(item)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(CassetteError) as caught:
        Cassette.load(path)
    assert caught.value.line == 3
    assert f"shop.jsonl, line 3: {words}" in str(caught.value)
    with pytest.warns(UserWarning, match="line skipped"):
        assert len(Cassette.load(path, strict=False)) == 11


def test_atlasstate_not_a_string_is_a_cassette_error(tmp_path: Path) -> None:
    def as_list(state: list[Any]) -> None:
        return None

    path = _tampered(tmp_path, 1, as_list)
    lines = path.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[0])
    item["atlasstate"] = json.loads(item["atlasstate"])
    lines[0] = json.dumps(item)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(CassetteError, match="line 1: the atlasstate extension must be a JSON"):
        Cassette.load(path)


def test_a_change_of_an_unknown_document_is_a_cassette_error_naming_the_line(
    tmp_path: Path,
) -> None:
    unknown = "11111111-2222-4333-8444-555555555555"
    path = _tampered(tmp_path, 11, _set(0, "document", unknown))
    with pytest.raises(CassetteError) as caught:
        _replay_shop(path)
    assert caught.value.line == 11
    assert f"line 11: atlasstate[0] deleted document {unknown}, which no earlier line" in str(
        caught.value
    )
    # Into a store that holds it, the cassette replays (and diverges on what was written).
    app = shop_app.make_system()
    app.store.create_document("Pre-existing", "x", "me", document_id=unknown)
    report = replay(Cassette.load(path), app.bus, store=app.store)
    app.store.close()
    assert report.divergence is not None
    assert report.divergence.position == 11


def test_an_unknown_document_is_refused_before_anything_is_published_or_written(
    tmp_path: Path,
) -> None:
    path = _tampered(tmp_path, 11, _set(0, "document", "11111111-2222-4333-8444-555555555555"))
    app = shop_app.make_system()
    with pytest.raises(CassetteError, match="line 11: "):
        replay(Cassette.load(path), app.bus, store=app.store)
    assert app.bus.get_history() == []
    assert app.store.last_position() == 0
    app.store.close()


def _not_a_list(state: list[Any]) -> dict[str, Any]:
    return {"document": state[0]["document"]}


# Each bad state line through the command line: the line it is on and words of the error.
CLI_BAD_STATE: dict[str, tuple[int, Callable[[list[Any]], Any], str]] = {
    "not a list": (3, _not_a_list, "line 3: the atlasstate extension must hold a JSON list"),
    "a value of the wrong type": (
        3,
        _set(0, "fields", {"content": 3}),
        "line 3: atlasstate[0].fields['content'] must be str, got int",
    ),
    "an unknown document": (
        11,
        _set(0, "document", "11111111-2222-4333-8444-555555555555"),
        "line 11: atlasstate[0] deleted document 11111111-2222-4333-8444-555555555555, which "
        "no earlier line of the cassette creates",
    ),
}


@pytest.mark.parametrize("case", CLI_BAD_STATE)
def test_atlas_eda_replay_refuses_a_bad_state_line_in_one_line(case: str, tmp_path: Path) -> None:
    number, change, words = CLI_BAD_STATE[case]
    path = _tampered(tmp_path, number, change)
    result = run_cli(
        "replay",
        str(path),
        "--app",
        "shop_app:make_system",
        cwd=tmp_path,
        env={"PYTHONPATH": str(CASSETTES)},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"atlas-eda: error: {path}, {words}"), result.stderr
    assert len(result.stderr.splitlines()) == 1  # one line, never a traceback


# -- the pytest plugin -----------------------------------------------------------------------

PLUGIN_TEST = """
import enum
import json

import pytest

from atlas_eda.testing import register_types


class Notes(enum.Enum):
    WRITE = "note.write"


register_types(Notes)


def install(bus, store, content="hello"):
    bus.subscribe(Notes.WRITE, lambda event: store.create_document("Note", content, "me"))


def test_record(atlas_recorder, atlas_store, atlas_bus):
    install(atlas_bus, atlas_store)
    atlas_bus.publish(Notes.WRITE, {"n": 1})
    atlas_recorder.close()
    first = json.loads(atlas_recorder.path.read_text().splitlines()[0])
    state = json.loads(first["atlasstate"])
    assert [(c["kind"], c["fields"]["content"]) for c in state] == [("created", "hello")]
    (atlas_recorder.path.parent / "kept").write_text(str(atlas_recorder.path))


@pytest.mark.atlas_cassette("notes.jsonl")
def test_same(atlas_bus, atlas_store):
    install(atlas_bus, atlas_store)


@pytest.mark.atlas_cassette("notes.jsonl")
def test_changed(atlas_bus, atlas_store):
    install(atlas_bus, atlas_store, content="goodbye")
"""


def test_the_plugin_records_and_compares_atlas_store(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(test_notes=PLUGIN_TEST)
    recorded = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-k", "test_record", f"--basetemp={tmp_path / 'base'}"
    )
    recorded.assert_outcomes(passed=1)
    kept = next((tmp_path / "base").rglob("kept"))
    shutil.copy(kept.read_text(), pytester.path / "notes.jsonl")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "same or changed")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*line 1: Notes.WRITE store change 1: *field 'content' differs"])
