"""Recording bus sessions to cassettes and loading them back (atlas_eda.testing)."""

from __future__ import annotations

import enum
import json
import logging
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from conftest import Ping, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_eda import (
    AtlasEdaError,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
    Event,
    EventBus,
    EventType,
)
from atlas_eda.testing import (
    Cassette,
    CassetteEntry,
    CassetteError,
    CassetteWarning,
    RecordedEffect,
    RecordedError,
    Recorder,
    RecordingError,
    TypeRegistrationError,
    record,
    register_types,
    registered_types,
)
from atlas_eda.testing.cassette import format_time, parse_time


class Shop(enum.Enum):
    """An application's own event types."""

    ORDER_PLACED = "order.placed"
    STOCK_RESERVED = "stock.reserved"
    PAYMENT_TAKEN = "payment.taken"


class Courier(enum.Enum):
    """An application's own effect types."""

    SEND = "send"


register_types(Shop, Courier, Ping)


def _shop(bus: EventBus) -> None:
    """An order workflow: nested events, a successful effect and a failing one."""

    def on_order(event: Event) -> EffectMonad[None]:
        bus.publish(Shop.STOCK_RESERVED, {"sku": event.data["sku"], "qty": 2})
        return EffectMonad.pure(None).with_effect(
            Effect(Courier.SEND, {"to": "ann@example.com"}, "confirmation")
        )

    def on_stock(event: Event) -> EffectMonad[None]:
        bus.publish(Shop.PAYMENT_TAKEN, {"amount": 9.99}, source="payments")
        return EffectMonad.pure(None).with_effect(
            Effect(EffectType.DATABASE_WRITE, {"row": [1, 2]}, "reserve")
        )

    bus.subscribe(Shop.ORDER_PLACED, on_order)
    bus.subscribe(Shop.STOCK_RESERVED, on_stock)


def _handler() -> EffectHandler:
    handler = EffectHandler()
    handler.register_handler(Courier.SEND, lambda effect: {"queued": True, "id": 7})

    def disk_full(effect: Effect) -> None:
        raise OSError("disk full")

    handler.register_handler(EffectType.DATABASE_WRITE, disk_full)
    return handler


@pytest.fixture
def shop_bus() -> EventBus:
    bus = EventBus(effect_handler=_handler())
    _shop(bus)
    return bus


def _session(bus: EventBus, path: Path) -> list[Event]:
    """Record two orders; returns every event the bus saw, oldest first."""
    with record(bus, path) as recorder:
        assert isinstance(recorder, Recorder)
        bus.publish(Shop.ORDER_PLACED, {"sku": "A-1"}, metadata={"user": "ann", "n": [1]})
        bus.publish(Ping.PING, None)
    return list(reversed(bus.get_history(limit=None)))


def test_a_recorded_session_loads_back_equal(shop_bus: EventBus, tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    published = _session(shop_bus, path)
    # order, stock, payment, ERROR (the failing effect), then the second root
    assert [e.type for e in published] == [
        Shop.ORDER_PLACED,
        Shop.STOCK_RESERVED,
        Shop.PAYMENT_TAKEN,
        EventType.ERROR,
        Ping.PING,
    ]
    cassette = Cassette.load(path)
    assert len(cassette) == 5
    assert [entry.event for entry in cassette] == published  # ids, timestamps, all fields
    for entry, event in zip(cassette, published, strict=True):
        assert entry.event.timestamp == event.timestamp  # exactly, not approximately
        assert entry.event.correlation_id == event.correlation_id
        assert entry.event.causation_id == event.causation_id
    assert [entry.line for entry in cassette] == [1, 2, 3, 4, 5]
    assert [r.event for r in cassette.roots()] == [published[0], published[4]]
    order, stock, payment, error, ping = cassette.entries
    assert order.event.metadata == {"user": "ann", "n": [1]}
    assert payment.event.source == "payments"
    assert order.event.source is None
    assert order.effects == (
        RecordedEffect(
            Courier.SEND, {"to": "ann@example.com"}, "confirmation", {"queued": True, "id": 7}
        ),
    )
    assert stock.effects == (
        RecordedEffect(
            EffectType.DATABASE_WRITE,
            {"row": [1, 2]},
            "reserve",
            None,
            RecordedError("builtins.OSError", "disk full"),
        ),
    )
    assert not stock.effects[0].ok
    assert payment.effects == ()
    assert error.event.data["error_message"] == "disk full"
    assert error.event.causation_id == stock.event.id
    assert ping.event.data is None


def test_every_line_is_a_cloudevent_the_sdk_parses(shop_bus: EventBus, tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    published = _session(shop_bus, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(published)
    with_effects = [True, True, False, False, False]  # order, stock, payment, ERROR, ping
    for line, event, effects in zip(lines, published, with_effects, strict=True):
        parsed = JSONFormat().read(None, line)
        assert parsed.get_specversion() == "1.0"
        assert parsed.get_id() == event.id
        assert parsed.get_type() == f"{type(event.type).__name__}.{event.type.name}"
        assert parsed.get_datacontenttype() == "application/json"
        assert parsed.get_extension("correlationid") == event.correlation_id
        assert parsed.get_extension("causationid") == event.causation_id
        time_ = parsed.get_time()
        assert time_ is not None
        assert abs(time_.timestamp() - event.timestamp) < 1e-6
        raw = json.loads(line)
        assert raw["time"].endswith("Z")
        assert all(isinstance(raw[k], str) for k in ("atlaseffects", "atlasmetadata") if k in raw)
        # The CloudEvents attributes, then lowercase alphanumeric extensions, each written
        # only when the event has something to put in it.
        optional = {
            "correlationid": event.correlation_id is not None,
            "causationid": event.causation_id is not None,
            "atlasmetadata": bool(event.metadata),
            "atlaseffects": effects,
            "data": event.data is not None,
        }
        assert set(raw) == {"specversion", "id", "source", "type", "time", "datacontenttype"} | {
            name for name, present in optional.items() if present
        }
        if event.causation_id is None:
            assert "causationid" not in raw
        if event.data is not None:
            assert parsed.get_data() == event.data


@pytest.mark.parametrize(
    "timestamp",
    [0.0, 1.5, 1763892000.1234567, 1763892000.0000001, time.time(), 2e9 + 1 / 3, 86399.999999],
)
def test_times_round_trip_exactly(timestamp: float) -> None:
    text = format_time(timestamp)
    assert text.endswith("Z")
    assert len(text.partition(".")[2]) >= 7  # at least microseconds, then "Z"
    assert parse_time(text) == timestamp


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False, allow_infinity=False))
def test_any_time_since_1906_round_trips_exactly(timestamp: float) -> None:
    # Tiny negative times need hundreds of fractional digits (-1e-300 s is 23:59:59.999…).
    assert parse_time(format_time(timestamp)) == timestamp


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False))
def test_the_fast_path_for_utc_times_agrees_with_the_general_one(timestamp: float) -> None:
    text = format_time(timestamp)
    general = text[:-1] + "+00:00"  # an offset takes the general (Decimal) path
    assert parse_time(text) == parse_time(general) == timestamp


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(min_value=0, max_value=4e9),
        st.floats(min_value=0, max_value=1e-3),
        st.integers(min_value=-(10**12), max_value=10**12).map(float),
    )
)
def test_formatting_a_time_fast_writes_what_the_plain_rules_write(timestamp: float) -> None:
    """format_time's fast path (the repr's digits, the second's text cached) writes the
    very text, or raises the very exception, of the plain Decimal rules, for any float."""
    from atlas_eda.testing.cassette import _format_time_plainly

    try:
        plain: str | type[BaseException] = _format_time_plainly(timestamp)
    except (ValueError, OverflowError, ArithmeticError) as exc:
        plain = type(exc)
    try:
        fast: str | type[BaseException] = format_time(timestamp)
    except (ValueError, OverflowError, ArithmeticError) as exc:
        fast = type(exc)
    assert fast == plain
    if isinstance(plain, str):
        assert format_time(timestamp) == plain  # again: the second's text from the cache


def test_out_of_range_utc_times_are_refused_on_the_fast_path_too() -> None:
    for text in ("2026-01-01T24:00:00.5Z", "2026-01-01T10:60:00Z", "2026-01-01T10:00:60Z"):
        with pytest.raises(ValueError, match="must be in"):
            parse_time(text)


def test_times_with_offsets_and_without_fractions_parse() -> None:
    assert parse_time("1970-01-01T01:00:00+01:00") == 0.0
    assert parse_time("1970-01-01T00:00:01.25z") == 1.25
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time("yesterday")


def test_completed_root_events_are_on_disk_while_recording(
    shop_bus: EventBus, tmp_path: Path
) -> None:
    path = tmp_path / "session.jsonl"
    with record(shop_bus, path) as recorder:
        shop_bus.publish(Shop.ORDER_PLACED, {"sku": "A-1"})
        on_disk = path.read_text(encoding="utf-8")  # another reader, recorder still open
        assert on_disk.endswith("\n")
        assert len(on_disk.splitlines()) == 4 == recorder.lines
        assert len(Cassette.load(path)) == 4
        shop_bus.publish(Ping.PING)
        assert len(path.read_text(encoding="utf-8").splitlines()) == 5
    shop_bus.publish(Ping.PONG)  # after the recorder closed: not recorded
    assert len(Cassette.load(path)) == 5


def test_an_event_that_is_not_json_is_refused_and_raised_on_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus()
    path = tmp_path / "session.jsonl"
    recorder = Recorder(bus, path)
    bus.publish(Ping.PING, {"ok": 1})
    with caplog.at_level(logging.ERROR, logger="atlas_eda.bus"):
        bus.publish(Ping.PONG, {"when": object()})  # the publisher is not affected
    assert "watcher" in caplog.text
    bus.publish(Ping.OTHER, {"ok": 2})  # recording stopped: the cassette is incomplete
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert all(json.loads(line) for line in lines)  # never a half line
    with pytest.raises(RecordingError, match=r"Ping\.PONG.*data\['when'\] is a object"):
        recorder.close()
    assert isinstance(recorder.error, AtlasEdaError)


@pytest.mark.parametrize(
    ("data", "metadata", "field"),
    [
        ({1: "int key"}, None, r"data has the key 1"),
        ([math.nan], None, r"data\[0\] is nan"),
        (b"bytes", None, r"data is a bytes"),
        (None, {"user": {1, 2}}, r"metadata\['user'\] is a set"),
    ],
)
def test_unstorable_data_and_metadata_name_the_field(
    tmp_path: Path, data: Any, metadata: dict[str, Any] | None, field: str
) -> None:
    bus = EventBus()
    path = tmp_path / "session.jsonl"
    with pytest.raises(RecordingError, match=field), record(bus, path):
        bus.publish(Ping.PING, data, metadata=metadata)
    assert path.read_text(encoding="utf-8") == ""


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (Event(type=Ping.PING, timestamp=math.nan), "timestamp nan is not a time"),
        (Event(type=Ping.PING, timestamp=1e20), "timestamp 1e\\+20 is not a time"),
        (Event(type=Ping.PING, id=""), "as a CloudEvent.*id"),
    ],
)
def test_events_that_are_no_cloudevents_are_refused(
    tmp_path: Path, event: Event, message: str
) -> None:
    bus = EventBus()
    path = tmp_path / "session.jsonl"
    with pytest.raises(RecordingError, match=message), record(bus, path):
        bus.publish_event(event)
    assert path.read_text(encoding="utf-8") == ""


def test_an_unstorable_effect_payload_writes_nothing_of_its_root(tmp_path: Path) -> None:
    handler = EffectHandler()
    handler.register_handler(Courier.SEND, lambda effect: object())  # an unstorable result
    bus = EventBus(effect_handler=handler)
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG))
    bus.subscribe(
        Ping.PONG, lambda event: EffectMonad.pure(0).with_effect(Effect(Courier.SEND, "x"))
    )
    path = tmp_path / "session.jsonl"
    with (
        pytest.raises(RecordingError, match=r"Ping\.PONG.*effects\[0\]\.result"),
        record(bus, path),
    ):
        bus.publish(Ping.PING)
    assert path.read_text(encoding="utf-8") == ""  # not even the root's own line


def test_the_body_exception_wins_over_a_recording_error(tmp_path: Path) -> None:
    bus = EventBus()

    def session() -> None:
        with record(bus, tmp_path / "s.jsonl"):
            bus.publish(Ping.PING, {"x": object()})
            raise KeyError("the test's own failure")

    with pytest.raises(KeyError, match="own failure"):
        session()


def test_a_recorder_needs_history_and_traces(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history_limit"):
        Recorder(EventBus(history_limit=0), tmp_path / "a.jsonl")
    with pytest.raises(ValueError, match="traces"):
        Recorder(EventBus(traces=False), tmp_path / "b.jsonl")


# -- loading bad cassettes -----------------------------------------------------------------


def _good_lines(tmp_path: Path) -> list[str]:
    bus = EventBus(effect_handler=_handler())
    _shop(bus)
    path = tmp_path / "good.jsonl"
    _session(bus, path)
    return path.read_text(encoding="utf-8").splitlines()


def _write(tmp_path: Path, lines: list[str], *, end: str = "\n") -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + end, encoding="utf-8")
    return path


def _with(line: str, **changes: Any) -> str:
    raw = json.loads(line)
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return json.dumps(raw)


@pytest.mark.parametrize(
    ("line_no", "bad", "message"),
    [
        (2, "{not json", "malformed JSON"),
        (3, "[1, 2]", "not a CloudEvent"),
        (2, '{"hello": "world", "time": "2026-01-01T00:00:00Z"}', "no specversion, id, source"),
        (4, "SPEC", "not a CloudEvent 1.0"),
        (2, "NOID", "not a CloudEvent 1.0: no id attribute"),
        (2, "NOSPEC", "not a CloudEvent 1.0: no specversion attribute"),
        (3, "TYPE", "unknown type 'Nowhere.THING'.*register_types"),
        (2, "TIME", "unparsable time"),
        (5, "EFFECT", "unknown type 'Secret.MEMBER'.*register_types"),
        (2, "EXT", "atlaseffects extension is not valid JSON"),
    ],
)
def test_bad_lines_are_errors_naming_the_line(
    tmp_path: Path, line_no: int, bad: str, message: str
) -> None:
    lines = _good_lines(tmp_path)
    original = lines[line_no - 1]
    replacement = {
        "SPEC": _with(original, specversion="0.9"),
        "TYPE": _with(original, type="Nowhere.THING"),
        "NOID": _with(original, id=None),
        "NOSPEC": _with(original, specversion=None),
        "TIME": _with(original, time="2026-13-45T99:00:00Z"),
        "EFFECT": _with(
            original, atlaseffects=json.dumps([{"type": "Secret.MEMBER", "payload": None}])
        ),
        "EXT": _with(original, atlaseffects="[{"),
    }.get(bad, bad)
    lines[line_no - 1] = replacement
    path = _write(tmp_path, lines)
    with pytest.raises(CassetteError, match=rf"line {line_no}: .*{message}") as caught:
        Cassette.load(path)
    assert caught.value.line == line_no
    with pytest.warns(CassetteWarning, match=rf"line {line_no}: .*skipped"):
        cassette = Cassette.load(path, strict=False)
    assert len(cassette) == len(lines) - 1
    assert line_no not in [entry.line for entry in cassette]


def test_a_truncated_last_line_is_reported_as_such(tmp_path: Path) -> None:
    lines = _good_lines(tmp_path)
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    path = _write(tmp_path, lines, end="")
    with pytest.raises(CassetteError, match=r"line 5: truncated last line") as caught:
        Cassette.load(path)
    assert caught.value.line == 5
    with pytest.warns(CassetteWarning, match="line 5"):
        assert len(Cassette.load(path, strict=False)) == 4


def test_strict_false_warns_once_per_bad_line(tmp_path: Path) -> None:
    lines = _good_lines(tmp_path)
    lines[0] = "garbage"
    lines[3] = "{}"
    path = _write(tmp_path, lines)
    with pytest.warns(CassetteWarning) as warned:
        cassette = Cassette.load(path, strict=False)
    assert [str(w.message).split(": ")[0] for w in warned] == [
        f"{path}, line 1",
        f"{path}, line 4",
    ]
    assert [entry.line for entry in cassette] == [2, 3, 5]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    lines = _good_lines(tmp_path)
    path = _write(tmp_path, [lines[0], "", "  ", *lines[1:]])
    assert [entry.line for entry in Cassette.load(path)] == [1, 4, 5, 6, 7]


def test_a_missing_cassette_is_a_cassette_error(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match="not found") as caught:
        Cassette.load(tmp_path / "nope.jsonl")
    assert caught.value.line is None


def test_an_unregistered_enum_is_an_error_mentioning_register_types(tmp_path: Path) -> None:
    class Unregistered(enum.Enum):
        THING = 1

    bus = EventBus()
    path = tmp_path / "s.jsonl"
    with record(bus, path):
        bus.publish(Unregistered.THING, {"a": 1})
    with pytest.raises(CassetteError, match=r"line 1: unknown type 'Unregistered\.THING'.*") as e:
        Cassette.load(path)
    assert "register_types(YourEnum)" in str(e.value)
    register_types(Unregistered)
    try:
        (entry,) = Cassette.load(path)
        assert entry.event.type is Unregistered.THING
    finally:
        _forget(Unregistered)


def _forget(registered: type[Any]) -> None:
    from atlas_eda.testing import types

    types._registry.pop(registered.__name__, None)
    types._payloads.pop(registered.__name__, None)


def test_cassettes_never_import_anything(tmp_path: Path) -> None:
    template = json.loads(_good_lines(tmp_path)[0])
    names = [
        "os.system",
        "subprocess.Popen.__init__",
        "atlas_eda_never_imported_module.Thing.X",
        "importlib.import_module",
        "builtins.eval",
        "EventType.__class__",
        "EventType.__init__",
        "EventType.mro",
    ]
    lines = []
    for name in names:
        lines.append(json.dumps({**template, "type": name}))
        effect = [{"type": name, "payload": None, "description": ""}]
        lines.append(json.dumps({**template, "atlaseffects": json.dumps(effect)}))
    path = _write(tmp_path, lines)
    before = set(sys.modules)
    with pytest.raises(CassetteError, match="unknown type"):
        Cassette.load(path)
    with pytest.warns(CassetteWarning):
        assert len(Cassette.load(path, strict=False)) == 0
    assert set(sys.modules) == before


def test_registering_types() -> None:
    assert registered_types()["EventType"] is EventType
    assert registered_types()["EffectType"] is EffectType
    register_types(Shop, Shop)  # again: nothing happens

    class Shop2(enum.Enum):
        X = 1

    Shop2.__name__ = "Shop"
    with pytest.raises(TypeRegistrationError, match=r"already registered.*Rename"):
        register_types(Shop2)
    assert registered_types()["Shop"] is Shop
    with pytest.raises(TypeRegistrationError, match="Enum classes"):
        register_types("Shop")  # type: ignore[arg-type]
    with pytest.raises(TypeRegistrationError, match="Enum classes"):
        register_types(Shop.ORDER_PLACED)  # type: ignore[arg-type]


def test_an_empty_cassette(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    with record(EventBus(), path):
        pass
    cassette = Cassette.load(path)
    assert len(cassette) == 0
    assert list(cassette) == []
    assert cassette.roots() == []
    assert "0 events" in repr(cassette)


def test_entries_are_cassette_entries(shop_bus: EventBus, tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    _session(shop_bus, path)
    cassette = Cassette.load(path)
    assert all(isinstance(entry, CassetteEntry) for entry in cassette)
    assert all(isinstance(entry.event, Event) for entry in cassette)


# -- the command ---------------------------------------------------------------------------


def test_cli_prints_the_cassette_as_a_table(tmp_path: Path) -> None:
    bus = EventBus(effect_handler=EffectHandler())
    bus.effect_handler.register_handler(EffectType.LOGGING, lambda effect: None)  # type: ignore[union-attr]
    bus.subscribe(
        EventType.COMMAND_EXECUTED,
        lambda event: bus.publish(EventType.QUERY_EXECUTED, {"q": "all"}),
    )
    bus.subscribe(
        EventType.QUERY_EXECUTED,
        lambda event: (
            EffectMonad.pure(0)
            .with_effect(Effect(EffectType.LOGGING, "a"))
            .with_effect(Effect(EffectType.LOGGING, "b"))
        ),
    )
    path = tmp_path / "session.jsonl"
    with record(bus, path):
        root = bus.publish(EventType.COMMAND_EXECUTED, {"cmd": "list"})
    result = run_cli("cassette", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 events, 1 root events" in out
    header = next(line for line in out.splitlines() if line.startswith("line"))
    assert header.split() == [
        "line",
        "time",
        "(UTC)",
        "type",
        "id",
        "caused",
        "by",
        "data",
        "effects",
    ]
    rows = out.splitlines()[-2:]
    assert rows[0].split()[0] == "1"
    assert "EventType.COMMAND_EXECUTED" in rows[0]
    assert f"…{root[-8:]}" in rows[0]  # the ids of one process share their start
    assert "cmd='list'" in rows[0]
    assert rows[0].split()[-1] == "0"
    child = rows[1].split()
    assert child[0] == "2"
    assert "EventType.QUERY_EXECUTED" in rows[1]
    assert child[5] == "1"  # caused by line 1
    assert child[-1] == "2"  # two effects


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    missing = run_cli("cassette", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert missing.stderr.count("\n") == 1
    assert missing.stderr.startswith("atlas-eda: error: cassette")
    assert "not found" in missing.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"specversion": "1.0"\n', encoding="utf-8")
    result = run_cli("cassette", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "line 1: malformed JSON" in result.stderr


def test_the_testing_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_docs import ROOT, python_blocks, run_block

    import atlas_eda.testing

    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__doc__"}
    blocks = python_blocks(ROOT / "docs" / "testing.md")
    assert blocks
    checked = sum(
        run_block(block, f"docs/testing.md block {n}", namespace)
        for n, block in enumerate(blocks, 1)
    )
    assert checked >= 3
    assert (tmp_path / "session.jsonl").exists()
    assert atlas_eda.testing.registered_types()["Orders"] is namespace["Orders"]
    _forget(namespace["Orders"])
    _forget(namespace["Mail"])
    _forget(namespace["Placed"])


def test_threads_recording_at_once_keep_each_root_with_its_children(tmp_path: Path) -> None:
    import threading

    bus = EventBus(history_limit=10_000)
    bus.subscribe(Ping.PING, lambda event: bus.publish(Ping.PONG, event.data))
    path = tmp_path / "threads.jsonl"

    def publish(worker: int) -> None:
        for n in range(200):
            bus.publish(Ping.PING, {"worker": worker, "n": n})

    with record(bus, path, fsync=True):
        threads = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    entries = Cassette.load(path).entries
    assert len(entries) == 4 * 200 * 2
    for root, child in zip(entries[::2], entries[1::2], strict=True):
        assert root.event.type is Ping.PING
        assert child.event.causation_id == root.event.id
        assert child.event.data == root.event.data
    for worker in range(4):
        mine = [e.event.data["n"] for e in entries[::2] if e.event.data["worker"] == worker]
        assert mine == list(range(200))


def test_a_root_whose_events_left_the_history_is_refused_not_half_recorded(
    tmp_path: Path,
) -> None:
    bus = EventBus(history_limit=3)

    def fan_out(event: Event) -> None:
        for n in range(5):  # more children than the history keeps
            bus.publish(Ping.PONG, n)

    bus.subscribe(Ping.PING, fan_out)
    path = tmp_path / "partial.jsonl"
    recorder = record(bus, path)
    event_id = bus.publish(Ping.PING)

    assert event_id not in {e.id for e in bus.get_history(limit=None)}  # the root left too
    with pytest.raises(RecordingError, match="history_limit=3"):
        recorder.close()
    assert path.read_text(encoding="utf-8") == ""


_ATTRIBUTE_NAMES = st.sampled_from(
    [
        *("specversion", "id", "source", "type", "time", "datacontenttype", "subject", "data"),
        *("correlationid", "causationid", "atlasmetadata", "atlaseffects", "atlasstate"),
        *("atlasresult", "atlasdatatype", "Atlas", "x-y", ""),
    ]
)
_ATTRIBUTE_VALUES = st.one_of(
    st.text(max_size=5),
    st.sampled_from(["1.0", "0.3", "application/json"]),
    st.none(),
    st.integers(),
    st.just(datetime(2026, 1, 1, tzinfo=UTC)),
    st.just(datetime(2026, 1, 1)),  # naive on purpose: the SDK refuses it
)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.dictionaries(_ATTRIBUTE_NAMES, _ATTRIBUTE_VALUES, max_size=10),
        st.fixed_dictionaries(
            {
                "specversion": st.sampled_from(["1.0", "0.3"]),
                "id": st.text(max_size=3),
                "source": st.text(max_size=3),
                "type": st.text(max_size=3),
                "time": st.sampled_from([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1)]),
                "datacontenttype": st.sampled_from(["application/json", ""]),
            },
            optional={"causationid": st.text(max_size=3), "atlasresult": st.text(max_size=3)},
        ),
    )
)
def test_attributes_the_recorder_skips_the_sdk_for_are_accepted_by_it(
    attributes: dict[str, Any],
) -> None:
    """Where the recorder does not ask the CloudEvents SDK (its fast path), the SDK would
    have accepted the attributes and given them back unchanged, in the same order."""
    from cloudevents.core.v1.event import CloudEvent

    from atlas_eda.testing.cassette import _sdk_accepts

    if not _sdk_accepts(attributes):
        return
    given_attributes = dict(attributes)
    accepted = CloudEvent(dict(attributes), None).get_attributes()
    assert list(accepted.items()) == list(given_attributes.items())


def test_a_recorded_event_takes_the_fast_attribute_check() -> None:
    """The attributes encode_event builds for an ordinary event are of the known shape
    (so the test above covers what recording does)."""
    from atlas_eda.testing.cassette import _sdk_accepts

    event = Event(type=EventType.COMMAND_EXECUTED, data={"a": 1}, source="web")
    attributes = {
        "specversion": "1.0",
        "id": event.id,
        "source": "web",
        "type": "EventType.COMMAND_EXECUTED",
        "time": datetime.fromtimestamp(event.timestamp, UTC),
        "datacontenttype": "application/json",
        "correlationid": "x",
    }
    assert _sdk_accepts(attributes)
    assert not _sdk_accepts({**attributes, "id": ""})
    assert not _sdk_accepts({**attributes, "data": "x"})
