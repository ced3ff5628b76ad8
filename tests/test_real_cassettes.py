"""The real cassettes of tests/cassettes, recorded by running the code (record.py): each
carries the store changes its events caused and replays into its system's empty store
without divergence (in every mode, through the pytest marker and through the CLI in
test_cli_replay.py), re-recording gives the same events, and each kind of tampering, a
recorded field value included, is reported at the line concerned."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import order_app
import pytest
import record as record_script
import shop_app
from conftest import CASSETTES

from atlas_eda import EventBus, TemporalStore
from atlas_eda.cli import DemoSystem, demo_system
from atlas_eda.testing import MODES, Cassette, replay
from atlas_eda.testing.replay import ReplayReport

DEMO = CASSETTES / "demo.jsonl"
ORDERS = CASSETTES / "order_workflow.jsonl"
SHOP = CASSETTES / "shop_orders.jsonl"


def _demo_system() -> tuple[EventBus, TemporalStore]:
    system = demo_system()
    return system.bus, system.store


def _order_system() -> tuple[EventBus, TemporalStore]:
    app = order_app.make_system()
    return app.bus, app.store


def _shop_system() -> tuple[EventBus, TemporalStore]:
    app = shop_app.make_system()
    return app.bus, app.store


# Every cassette of tests/cassettes and the factory of the system it replays into.
SYSTEMS: dict[str, Callable[[], tuple[EventBus, TemporalStore]]] = {
    "demo.jsonl": _demo_system,
    "order_workflow.jsonl": _order_system,
    "shop_orders.jsonl": _shop_system,
}


def _replay_into_empty_store(path: Path, name: str, mode: str = "check") -> ReplayReport:
    bus, store = SYSTEMS[name]()
    try:
        assert store.list_document_ids() == []
        return replay(Cassette.load(path), bus, mode, store=store)
    finally:
        store.close()


def test_every_cassette_of_the_directory_is_replayed_here() -> None:
    assert sorted(p.name for p in CASSETTES.glob("*.jsonl")) == sorted(SYSTEMS)


@pytest.mark.parametrize("name", SYSTEMS)
def test_every_cassette_carries_the_state_its_events_wrote(name: str) -> None:
    entries = Cassette.load(CASSETTES / name).entries
    with_state = [e for e in entries if e.state]
    assert with_state, f"{name} was recorded without a store"
    # The store's own DOCUMENT_* events write nothing; the events whose handlers wrote do.
    assert all(e.event.source != "atlas_eda.store" for e in with_state)
    created = {c.document for e in entries for c in e.state if c.kind == "created"}
    assert {c.document for e in entries for c in e.state} == created


@pytest.mark.parametrize("name", SYSTEMS)
def test_every_cassette_replays_into_an_empty_store_in_check_mode(name: str) -> None:
    report = _replay_into_empty_store(CASSETTES / name, name)
    report.assert_no_divergence()
    assert report.events_matched == len(Cassette.load(CASSETTES / name).entries)


def _state_tamperings() -> list[tuple[str, int]]:
    """Every line of every cassette that carries state: (cassette, line)."""
    return [
        (name, entry.line)
        for name in SYSTEMS
        for entry in Cassette.load(CASSETTES / name).entries
        if entry.state
    ]


@pytest.mark.parametrize(("name", "line"), _state_tamperings())
def test_a_tampered_field_value_diverges_at_its_line_naming_the_field(
    name: str, line: int, tmp_path: Path
) -> None:
    lines = (CASSETTES / name).read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[line - 1])
    state = json.loads(item["atlasstate"])
    change = state[-1]  # the last change of the line: the one compared last
    field, value = next((k, v) for k, v in change["fields"].items() if isinstance(v, str))
    change["fields"][field] = value + " (tampered)"
    item["atlasstate"] = json.dumps(state)
    lines[line - 1] = json.dumps(item)
    copy = tmp_path / name
    copy.write_text("".join(text + "\n" for text in lines), encoding="utf-8")
    report = _replay_into_empty_store(copy, name)
    assert report.divergence is not None
    reason = report.divergence.reason
    assert report.divergence.position == line, reason
    assert f"store change {len(state)}: document {change['document']} " in reason
    assert reason.endswith(f"version {change['version']} field {field!r} differs"), reason


def test_the_order_cassette_has_nested_events_and_failing_effects() -> None:
    cassette = Cassette.load(ORDERS)
    entries = cassette.entries
    line = {entry.event.id: entry.line for entry in entries}
    depth: dict[str, int] = {}
    for entry in entries:
        cause = entry.event.causation_id
        depth[entry.event.id] = 0 if cause is None else depth[cause] + 1
    assert max(depth.values()) == 3  # PLACED -> PAID -> SHIPPED -> CUSTOMER_NOTIFIED
    failed = [(entry.line, effect) for entry in entries for effect in entry.effects if effect.error]
    assert [(n, e.type, e.error.type) for n, e in failed if e.error] == [
        (6, order_app.OrderEffect.CHARGE_CARD, "order_app.CardDeclined"),
        (11, order_app.OrderEffect.SEND_MAIL, "order_app.MailBounced"),
        (12, order_app.OrderEffect.SEND_MAIL, "order_app.MailBounced"),
    ]
    errors = [e for e in entries if e.event.type.name == "ERROR"]
    assert [line[e.event.causation_id or ""] for e in errors] == [12, 11]
    assert len(cassette.roots()) == len(order_app.SESSION)


def test_the_order_cassette_records_each_orders_document() -> None:
    entries = Cassette.load(ORDERS).entries
    changes = [
        (e.line, c.kind, c.version, c.fields.get("content")) for e in entries for c in e.state
    ]
    assert changes == [
        (1, "created", 1, '{"book": 2}'),
        (3, "updated", 2, "paid"),  # PAID
        (4, "updated", 3, "shipped"),  # SHIPPED
        (6, "created", 1, '{"lamp": 1}'),
        (8, "updated", 2, "payment failed"),  # PAYMENT_FAILED
        (9, "created", 1, '{"book": 1}'),
        (11, "updated", 2, "paid"),
        (12, "updated", 3, "shipped"),
        (16, "created", 1, '{"book": 1, "desk": 1}'),
        (16, "deleted", 2, None),  # out of stock: deleted in the same delivery
    ]


def test_the_demo_cassette_is_the_demos_session() -> None:
    entries = Cassette.load(DEMO).entries
    assert [(e.event.type.name, e.event.causation_id is None) for e in entries] == [
        ("CREATE", True),
        ("DOCUMENT_CREATED", False),
        ("CREATE", True),
        ("DOCUMENT_CREATED", False),
        ("UPDATE", True),
        ("DOCUMENT_UPDATED", False),
        ("UPDATE", True),
        ("DOCUMENT_UPDATED", False),
        ("DELETE", True),
        ("DOCUMENT_DELETED", False),
        # the refused update of the deleted document, a direct call reported by LoggingAspect
        ("ERROR", True),
    ]
    assert entries[-1].event.data["error_type"] == "DocumentDeletedError"
    # Each command line carries what it wrote; the refused update wrote nothing.
    assert [(e.line, [c.kind for c in e.state]) for e in entries if e.state] == [
        (1, ["created"]),
        (3, ["created"]),
        (5, ["updated"]),
        (7, ["updated"]),
        (9, ["deleted"]),
    ]


def _demo_bus() -> tuple[EventBus, DemoSystem]:
    system = demo_system()
    return system.bus, system


@pytest.mark.parametrize("mode", MODES)
def test_the_order_cassette_replays_without_divergence(mode: str) -> None:
    app = order_app.make_system()
    report = replay(Cassette.load(ORDERS), app.bus, mode, store=app.store)
    report.assert_no_divergence()
    assert report.events_matched == 17
    if mode == "perform":
        # A handler's child events are handled before its own effects run.
        assert [m["subject"] for m in app.mails] == ["Order 1 shipped", "Receipt tx-1"]
    else:  # stubbed: the outside world was not touched
        assert app.mails == []
        assert app.charges == []


@pytest.mark.parametrize("mode", MODES)
def test_the_demo_cassette_replays_without_divergence(mode: str) -> None:
    bus, system = _demo_bus()
    try:
        report = replay(Cassette.load(DEMO), bus, mode, store=system.store)
    finally:
        system.store.close()
    report.assert_no_divergence()
    assert report.events_matched == 11


@pytest.mark.atlas_cassette("cassettes/order_workflow.jsonl")
def test_the_order_workflow_behaves_as_recorded(atlas_bus: EventBus) -> None:
    order_app.install(atlas_bus)


@pytest.mark.atlas_cassette("cassettes/order_workflow.jsonl", mode="perform")
def test_the_order_workflow_performs_as_recorded(atlas_bus: EventBus) -> None:
    order_app.install(atlas_bus)


@pytest.fixture
def demo_on_atlas_bus(atlas_bus: EventBus) -> Iterator[DemoSystem]:
    system = demo_system(bus=atlas_bus)
    yield system
    system.store.close()


@pytest.mark.atlas_cassette("cassettes/demo.jsonl")
def test_the_demo_behaves_as_recorded(demo_on_atlas_bus: DemoSystem, atlas_bus: EventBus) -> None:
    # The marker replays the cassette into atlas_bus: the demo must be built on it.
    assert demo_on_atlas_bus.bus is atlas_bus
    assert demo_on_atlas_bus.store.event_bus is atlas_bus


# -- re-recording ---------------------------------------------------------------------------

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _normalized(path: Path) -> list[dict[str, Any]]:
    """The cassette without what changes from one recording to the next: event ids
    become line numbers, other uuids (document ids) their order of appearance, times
    and measured durations are dropped."""
    entries = Cassette.load(path).entries
    lines = {entry.event.id: f"<line {entry.line}>" for entry in entries}
    others: dict[str, str] = {}

    def plain(value: Any) -> Any:
        if isinstance(value, str):
            if value in lines:
                return lines[value]
            return _UUID.sub(lambda m: others.setdefault(m[0], f"<uuid {len(others)}>"), value)
        if isinstance(value, list):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {k: None if k == "execution_time" else plain(v) for k, v in value.items()}
        return value

    return [
        {
            "type": entry.event.type,
            "source": entry.event.source,
            "data": plain(entry.event.data),
            "metadata": plain(dict(entry.event.metadata)),
            "caused by": plain(entry.event.causation_id),
            "correlation": plain(entry.event.correlation_id),
            "effects": [
                (e.type, plain(e.payload), plain(e.description), plain(e.result), e.error)
                for e in entry.effects
            ],
            "state": [plain(change.as_json()) for change in entry.state],
        }
        for entry in entries
    ]


def test_re_recording_gives_the_committed_cassettes(tmp_path: Path) -> None:
    recorded = record_script.record_all(tmp_path)
    assert [r.lines for r in recorded] == [11, 17, 12]
    for name in ("demo.jsonl", "order_workflow.jsonl", "shop_orders.jsonl"):
        assert _normalized(tmp_path / name) == _normalized(CASSETTES / name), (
            f"re-recording {name} gives other events: the system changed; if on purpose, "
            f"run python tests/cassettes/record.py and review the diff"
        )


# -- tampered copies ------------------------------------------------------------------------


def _tampered(tmp_path: Path, source: Path, change: Callable[[list[str]], list[str]]) -> Cassette:
    lines = source.read_text(encoding="utf-8").splitlines()
    copy = tmp_path / source.name
    copy.write_text("".join(line + "\n" for line in change(lines)), encoding="utf-8")
    return Cassette.load(copy)


def _swap(a: int, b: int) -> Callable[[list[str]], list[str]]:
    def change(lines: list[str]) -> list[str]:
        lines[a - 1], lines[b - 1] = lines[b - 1], lines[a - 1]
        return lines

    return change


def _drop(number: int) -> Callable[[list[str]], list[str]]:
    return lambda lines: lines[: number - 1] + lines[number:]


def _edit(number: int, change: Callable[[dict[str, Any]], None]) -> Callable[..., list[str]]:
    def edit(lines: list[str]) -> list[str]:
        item = json.loads(lines[number - 1])
        change(item)
        lines[number - 1] = json.dumps(item)
        return lines

    return edit


def _effects(number: int, change: Callable[[list[dict[str, Any]]], None]) -> Callable[..., Any]:
    def on_item(item: dict[str, Any]) -> None:
        effects = json.loads(item["atlaseffects"])
        change(effects)
        item["atlaseffects"] = json.dumps(effects)

    return _edit(number, on_item)


def _replay_orders(cassette: Cassette, mode: str = "check") -> Any:
    report = replay(cassette, order_app.make_system().bus, mode)
    assert not report.ok
    assert report.divergence is not None
    return report.divergence


def _set_result(index: int, result: Any) -> Callable[[list[dict[str, Any]]], None]:
    def change(effects: list[dict[str, Any]]) -> None:
        effects[index].pop("error", None)
        effects[index]["result"] = result

    return change


# Each case: the tampering, the mode, the line the divergence must point at, and words of
# its reason. Line numbers are those of the tampered copy.
ORDER_TAMPERING = {
    "two child lines swapped": (_swap(2, 3), "check", 2, "expected OrderEvent.PAID, got"),
    "a grandchild swapped with its parent": (
        _swap(4, 5),
        "check",
        4,
        "expected OrderEvent.CUSTOMER_NOTIFIED, got OrderEvent.SHIPPED",
    ),
    "two root blocks' lines swapped": (_swap(5, 6), "check", 5, "extra OrderEvent.CUSTOMER"),
    "a child line missing": (_drop(4), "check", 4, "expected OrderEvent.CUSTOMER_NOTIFIED"),
    "an ERROR line missing": (_drop(14), "check", 14, "data"),
    "the last line missing": (_drop(17), "check", 17, "extra OrderEvent.CANCELLED"),
    "a root line missing": (_drop(6), "check", 6, "published nothing more for the root"),
    "child data altered": (
        _edit(7, lambda item: item["data"].update(warehouse="south")),
        "check",
        7,
        "expected OrderEvent.STOCK_RESERVED data",
    ),
    "root data altered": (
        _edit(6, lambda item: item["data"].update(amount=50)),
        "check",
        6,
        "payload differs",
    ),
    "an effect payload altered": (
        _effects(3, lambda effects: effects[0]["payload"].update(to="eve@example.com")),
        "check",
        3,
        "payload differs",
    ),
    "an effect result changed (check)": (
        _effects(1, _set_result(1, {"approved": True, "transaction": "tx-9"})),
        "check",
        3,
        "expected OrderEvent.PAID data",
    ),
    "an effect result changed (stub)": (
        _effects(1, _set_result(1, {"approved": True, "transaction": "tx-9"})),
        "stub",
        3,
        "expected OrderEvent.PAID data",
    ),
    "an effect result changed (perform)": (
        _effects(1, _set_result(1, {"approved": True, "transaction": "tx-9"})),
        "perform",
        1,
        "result differs",
    ),
    "a recorded effect failure changed to a success": (
        _effects(6, _set_result(1, {"approved": True, "transaction": "tx-2"})),
        "check",
        8,
        "expected OrderEvent.PAYMENT_FAILED, got OrderEvent.PAID",
    ),
    "a stock reservation result changed": (
        _effects(16, _set_result(0, {"reserved": True, "warehouse": "north"})),
        "check",
        16,  # the system went on to charge the card: an effect the recording lacks
        "effect 2 (OrderEffect.CHARGE_CARD) was performed but not recorded",
    ),
    "a recorded error message changed": (
        _effects(6, lambda effects: effects[1]["error"].update(message="card stolen")),
        "check",
        8,
        "expected OrderEvent.PAYMENT_FAILED data",
    ),
}


@pytest.mark.parametrize("case", ORDER_TAMPERING)
def test_a_tampered_order_cassette_diverges_at_the_line_concerned(
    case: str, tmp_path: Path
) -> None:
    change, mode, line, words = ORDER_TAMPERING[case]
    divergence = _replay_orders(_tampered(tmp_path, ORDERS, change), mode)
    assert (divergence.position, words in divergence.reason) == (line, True), str(divergence)


DEMO_TAMPERING = {
    # Two commands swapped: the second created document comes first.
    "root lines swapped": (_swap(1, 3), 1, "lines are out of order"),
    # The two updates of the design document swapped: the title change, now first, was
    # recorded writing version 3 but writes version 2 of an empty store.
    "updates swapped": (_swap(5, 7), 5, "store change 1: expected document"),
    "a store event missing": (_drop(4), 4, "extra EventType.DOCUMENT_CREATED, not recorded"),
}


@pytest.mark.parametrize("case", DEMO_TAMPERING)
def test_a_tampered_demo_cassette_diverges_at_the_moved_line(case: str, tmp_path: Path) -> None:
    change, line, words = DEMO_TAMPERING[case]
    cassette = _tampered(tmp_path, DEMO, change)
    bus, system = _demo_bus()
    try:
        report = replay(cassette, bus, store=system.store)
    finally:
        system.store.close()
    assert report.divergence is not None
    assert (report.divergence.position, words in report.divergence.reason) == (line, True), str(
        report.divergence
    )


def test_the_committed_cassettes_are_untouched_by_the_tests(tmp_path: Path) -> None:
    # The tampering works on copies: a copy of a copy still replays cleanly.
    shutil.copy(ORDERS, tmp_path / "copy.jsonl")
    report = replay(Cassette.load(tmp_path / "copy.jsonl"), order_app.make_system().bus)
    report.assert_no_divergence()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ORDER_TAMPERING)
def test_no_tampering_passes_or_crashes_in_any_mode(case: str, mode: str, tmp_path: Path) -> None:
    change = ORDER_TAMPERING[case][0]
    divergence = _replay_orders(_tampered(tmp_path, ORDERS, change), mode)
    assert 1 <= divergence.position <= 18
    assert divergence.reason


def test_stub_mode_sees_what_the_history_records(tmp_path: Path) -> None:
    # A middleware of the system's own drops the SHIPPED events: stub mode (which collects
    # events as they are published) and check mode (which reads traces) agree.
    positions = []
    for mode in ("stub", "check"):
        app = order_app.make_system()
        app.bus.add_middleware(lambda e: None if e.type is order_app.OrderEvent.SHIPPED else e)
        report = replay(Cassette.load(ORDERS), app.bus, mode)
        assert report.divergence is not None
        positions.append((report.divergence.position, report.divergence.reason))
    assert positions[0] == positions[1]
    assert positions[0][0] == 4
