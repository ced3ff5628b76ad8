"""Immutable payloads (issue 15, item 6): event data is frozen when the event is built, so no
handler can change what other handlers, the history, the trace or the recorder see."""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest import run_cli, sqlite_url

from atlas_eda import (
    Event,
    EventBus,
    EventType,
    FrozenDict,
    FrozenList,
    ImmutablePayloadError,
    InvalidEventError,
    StoreFollower,
    TemporalStore,
    freeze_payload,
)
from atlas_eda.payloads import freeze_plain
from atlas_eda.testing import (
    Cassette,
    CassetteError,
    RecordingError,
    TypeRegistrationError,
    record,
    register_types,
    replay,
)


class PayloadShop(enum.Enum):
    ORDER_PLACED = "order.placed"
    ORDER_SHIPPED = "order.shipped"


@dataclasses.dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    amount: int
    items: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Unregistered:
    order_id: str


@dataclasses.dataclass
class MutableOrder:
    order_id: str


class Pair(NamedTuple):
    left: Any
    right: Any


def nested() -> dict[str, Any]:
    return {"id": "o-1", "lines": [{"sku": "a", "qty": 1}], "pair": (1, [2])}


MUTATIONS: list[tuple[str, Callable[[Any], object]]] = [
    ("setitem", lambda d: d.__setitem__("id", "o-2")),
    ("del", lambda d: d.__delitem__("id")),
    ("update", lambda d: d.update(id="o-2")),
    ("ior", lambda d: d.__ior__({"id": "o-2"})),
    ("pop", lambda d: d.pop("id")),
    ("popitem", lambda d: d.popitem()),
    ("setdefault", lambda d: d.setdefault("new", 1)),
    ("clear", lambda d: d.clear()),
    ("nested dict setitem", lambda d: d["lines"][0].__setitem__("qty", 99)),
    ("nested list append", lambda d: d["lines"].append({"sku": "b"})),
    ("nested list extend", lambda d: d["lines"].extend([1])),
    ("nested list iadd", lambda d: d["lines"].__iadd__([1])),
    ("nested list setitem", lambda d: d["lines"].__setitem__(0, None)),
    ("nested list delitem", lambda d: d["lines"].__delitem__(0)),
    ("nested list insert", lambda d: d["lines"].insert(0, 1)),
    ("nested list pop", lambda d: d["lines"].pop()),
    ("nested list remove", lambda d: d["lines"].remove(d["lines"][0])),
    ("nested list clear", lambda d: d["lines"].clear()),
    ("nested list sort", lambda d: d["lines"].sort()),
    ("nested list reverse", lambda d: d["lines"].reverse()),
    ("nested list imul", lambda d: d["lines"].__imul__(2)),
    ("list inside a tuple", lambda d: d["pair"][1].append(3)),
]


def test_every_mutation_of_event_data_is_refused_and_everyone_sees_the_original(
    tmp_path: Path,
) -> None:
    bus = EventBus()
    refused: list[str] = []
    messages: list[str] = []
    later: list[Any] = []

    def meddler(event: Event) -> None:
        for name, mutate in MUTATIONS:
            try:
                mutate(event.data)
            except ImmutablePayloadError as exc:
                refused.append(name)
                messages.append(str(exc))

    bus.subscribe(PayloadShop.ORDER_PLACED, meddler)
    bus.subscribe(PayloadShop.ORDER_PLACED, lambda event: later.append(event.data))
    with record(bus, tmp_path / "c.jsonl"):
        event_id = bus.publish(PayloadShop.ORDER_PLACED, nested())

    assert refused == [name for name, _ in MUTATIONS]
    assert all("Event data is immutable" in m and "changed copy" in m for m in messages)
    expected = nested()
    assert later == [expected]
    assert bus.get_history()[0].data == expected
    assert bus.trace(event_id).event.data == expected
    register_types(PayloadShop)
    recorded = Cassette.load(tmp_path / "c.jsonl").entries[0].event.data
    assert recorded == {"id": "o-1", "lines": [{"sku": "a", "qty": 1}], "pair": [1, [2]]}


def test_a_handler_that_mutates_fails_loudly_and_the_next_handler_sees_the_original() -> None:
    bus = EventBus()
    seen: list[Any] = []
    errors: list[Event] = []
    bus.subscribe(PayloadShop.ORDER_PLACED, lambda event: event.data.__setitem__("amount", 0))
    bus.subscribe(PayloadShop.ORDER_PLACED, lambda event: seen.append(dict(event.data)))
    bus.subscribe(EventType.ERROR, errors.append)
    bus.publish(PayloadShop.ORDER_PLACED, {"amount": 10})
    assert seen == [{"amount": 10}]
    assert [e.data["error_type"] for e in errors] == ["ImmutablePayloadError"]
    assert isinstance(ImmutablePayloadError("x"), TypeError)


def test_the_publishers_own_dict_is_copied_when_the_event_is_built() -> None:
    bus = EventBus()
    data = {"amount": 10, "lines": [1, 2]}
    bus.publish(PayloadShop.ORDER_PLACED, data)
    event = Event(type=PayloadShop.ORDER_PLACED, data=data)
    data["amount"] = 0
    data["lines"].append(3)
    assert bus.get_history()[0].data == {"amount": 10, "lines": [1, 2]}
    assert event.data == {"amount": 10, "lines": [1, 2]}


def test_frozen_data_serialises_pickles_deep_copies_and_compares_equal() -> None:
    event = Event(type=PayloadShop.ORDER_PLACED, data=nested())
    data = event.data
    assert type(data) is FrozenDict
    assert type(data["lines"]) is FrozenList
    assert type(data["pair"]) is tuple
    assert type(data["pair"][1]) is FrozenList
    assert data == nested()
    assert data["lines"] == [{"sku": "a", "qty": 1}]
    assert isinstance(data, dict)
    assert isinstance(data["lines"], list)
    assert json.loads(json.dumps(data)) == {
        "id": "o-1",
        "lines": [{"sku": "a", "qty": 1}],
        "pair": [1, [2]],
    }
    assert repr(FrozenDict(a=1)) == "{'a': 1}"
    assert repr(FrozenList([1])) == "[1]"
    for again in (pickle.loads(pickle.dumps(event)), copy.deepcopy(event), copy.copy(event)):
        assert again == event
        assert type(again.data) is FrozenDict
        assert type(again.data["lines"]) is FrozenList
        with pytest.raises(ImmutablePayloadError):
            again.data["lines"].append(1)
    copied = copy.deepcopy(data)
    assert copied == data
    assert type(copied["lines"][0]) is FrozenDict
    # derived copies are plain and can be changed
    for plain in (dict(data), data.copy(), data | {"x": 1}, {**data}):
        assert type(plain) is dict
        plain["id"] = "o-2"
    assert type(data["lines"] + [1]) is list
    assert type(list(data["lines"])) is list


def test_immutable_values_are_kept_as_they_are() -> None:
    order = OrderPlaced("o-1", 10)
    token = object()
    flat = (1, "a", None, (2.5, b"x"))
    for value in (
        order,
        PayloadShop.ORDER_SHIPPED,
        "text",
        3,
        2.5,
        None,
        b"b",
        flat,
        token,
        range(3),
    ):
        assert Event(type=PayloadShop.ORDER_PLACED, data=value).data is value
    frozen = Event(type=PayloadShop.ORDER_PLACED, data={"a": 1}).data
    assert Event(type=PayloadShop.ORDER_PLACED, data=frozen).data is frozen  # republished as is
    assert Event(type=PayloadShop.ORDER_PLACED, data={1, 2}).data == frozenset({1, 2})


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (MutableOrder("o-1"), "data is a dataclass that is not frozen"),
        ({"order": MutableOrder("o-1")}, "data['order'] is a dataclass that is not frozen"),
        ([1, [MutableOrder("o-1")]], "data[1][0] is a dataclass"),
    ],
)
def test_a_mutable_dataclass_is_refused_when_the_event_is_built(data: Any, where: str) -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe_all(seen.append)
    with pytest.raises(InvalidEventError, match=r"frozen=True") as raised:
        bus.publish(PayloadShop.ORDER_PLACED, data)
    assert where in str(raised.value)
    with pytest.raises(InvalidEventError, match=r"dataclass that is not frozen"):
        Event(type=PayloadShop.ORDER_PLACED, data=data)
    assert seen == []
    assert bus.get_history() == []


def test_data_nested_too_deeply_or_holding_itself_is_refused_with_a_clear_error() -> None:
    looped: list[Any] = []
    looped.append(looped)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    for data in (looped, deep):
        with pytest.raises(InvalidEventError, match=r"nested too deeply, or holds itself"):
            EventBus().publish(PayloadShop.ORDER_PLACED, data)


SAMPLES: list[Any] = [
    None,
    "s",
    7,
    {},
    {f"field_{n}": n for n in range(10)},
    {"a": "b", "c": 1.5, "d": None, "e": True, "f": b"x"},
    {"t": (1, 2)},
    {"t": (1, [2])},
    nested(),
    [1, 2],
    (1, 2),
    (1, [2]),
    Pair(1, [2]),
    Pair(1, 2),
    {1, 2},
    FrozenDict(a=[1]),
    FrozenList([{"a": 1}]),
    OrderPlaced("o", 1),
    PayloadShop.ORDER_PLACED,
    bytearray(b"ab"),
    {"raw": bytearray(b"ab")},
    object(),
]


def shape(value: Any) -> Any:
    """The types of ``value``, all the way down, with its leaves."""
    if isinstance(value, dict):
        return (type(value), {k: shape(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return (type(value), [shape(v) for v in value])
    return (type(value), id(value) if type(value) is object else value)


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_freeze_payload_is_freeze_plain_with_a_shortcut(value: Any) -> None:
    fast, plain = freeze_payload(value), freeze_plain(value)
    assert shape(fast) == shape(plain)
    assert (fast is value) == (plain is value)


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_publish_freezes_exactly_as_event_does(value: Any) -> None:
    bus = EventBus()
    bus.publish(PayloadShop.ORDER_PLACED, value)
    published = bus.get_history()[0].data
    built = Event(type=PayloadShop.ORDER_PLACED, data=value).data
    assert shape(published) == shape(built)
    assert (published is value) == (built is value)


def test_the_store_and_a_follower_publish_frozen_data(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "store.db")
    store = TemporalStore(EventBus(), url=url)
    seen: list[Event] = []
    store.event_bus.subscribe_all(seen.append)
    follower_bus = EventBus()
    followed: list[Event] = []
    follower_bus.subscribe_all(followed.append)
    follower = StoreFollower(url, follower_bus, None, from_start=True)
    try:
        store.create_document("t", "c", "ada")
        assert follower.poll() == 1
    finally:
        follower.close()
        store.close()
    for event in (seen[0], followed[0]):
        assert type(event.data) is FrozenDict
        with pytest.raises(ImmutablePayloadError):
            event.data["title"] = "changed"


def test_loaded_and_replayed_events_are_frozen(tmp_path: Path) -> None:
    register_types(PayloadShop)
    path = tmp_path / "c.jsonl"
    bus = EventBus()
    with record(bus, path):
        bus.publish(PayloadShop.ORDER_PLACED, {"lines": [{"sku": "a"}]})
    loaded = Cassette.load(path).entries[0].event
    assert type(loaded.data) is FrozenDict
    assert type(loaded.data["lines"]) is FrozenList
    fresh = EventBus()
    replayed: list[Any] = []
    fresh.subscribe(PayloadShop.ORDER_PLACED, lambda event: replayed.append(event.data))
    replay(Cassette.load(path), fresh, "check").assert_no_divergence()
    assert type(replayed[0]) is FrozenDict
    assert type(replayed[0]["lines"][0]) is FrozenDict


def test_a_registered_dataclass_payload_round_trips_through_a_cassette(tmp_path: Path) -> None:
    register_types(PayloadShop, OrderPlaced)
    path = tmp_path / "c.jsonl"
    bus = EventBus()
    bus.subscribe(PayloadShop.ORDER_PLACED, lambda event: None)
    with record(bus, path):
        bus.publish(PayloadShop.ORDER_PLACED, OrderPlaced("o-1", 10, ("a", "b")))
    line = json.loads(path.read_text().splitlines()[0])
    assert line["atlasdatatype"] == "OrderPlaced"
    assert line["data"] == {"order_id": "o-1", "amount": 10, "items": ["a", "b"]}
    loaded = Cassette.load(path).entries[0].event.data
    assert loaded == OrderPlaced("o-1", 10, ("a", "b"))  # the tuple field a tuple again
    assert loaded.order_id == "o-1"
    assert loaded.amount == 10
    report = replay(Cassette.load(path), bus, "check")
    report.assert_no_divergence()


def test_an_unregistered_dataclass_payload_is_refused_by_the_recorder(tmp_path: Path) -> None:
    bus = EventBus()
    with (
        pytest.raises(RecordingError, match=r"data is a Unregistered.*register_types"),
        record(bus, tmp_path / "c.jsonl"),
    ):
        bus.publish(PayloadShop.ORDER_PLACED, Unregistered("o-1"))
    assert (tmp_path / "c.jsonl").read_text() == ""


def test_a_cassette_naming_an_unregistered_or_unfitting_class_is_refused_by_line(
    tmp_path: Path,
) -> None:
    register_types(PayloadShop, OrderPlaced)
    path = tmp_path / "c.jsonl"
    bus = EventBus()
    with record(bus, path):
        bus.publish(PayloadShop.ORDER_PLACED, OrderPlaced("o-1", 10))
    good = path.read_text()
    for old, new, message in (
        ('"OrderPlaced"', '"os.system"', r"line 1: unknown data type 'os.system'.*register_types"),
        ('"amount":10', '"amount":10,"extra":1', r"line 1: the recorded fields do not build"),
    ):
        path.write_text(good.replace(old, new))
        with pytest.raises(CassetteError, match=message):
            Cassette.load(path)


def test_register_types_refuses_a_dataclass_that_is_not_frozen() -> None:
    with pytest.raises(TypeRegistrationError, match=r"frozen dataclasses"):
        register_types(MutableOrder)


def test_the_cli_registers_a_typed_payload_class_with_types(tmp_path: Path) -> None:
    (tmp_path / "typed_app.py").write_text(
        "import dataclasses, enum\n\n\n"
        "class Beeps(enum.Enum):\n    BEEP = 'beep'\n\n\n"
        "@dataclasses.dataclass(frozen=True)\nclass Beep:\n    n: int\n\n\n"
        "@dataclasses.dataclass\nclass Loose:\n    n: int\n",
        encoding="utf-8",
    )
    line = {
        "specversion": "1.0",
        "id": "e1",
        "source": "here",
        "type": "Beeps.BEEP",
        "time": "2026-01-01T00:00:00.000000Z",
        "datacontenttype": "application/json",
        "data": {"n": 1},
        "atlasdatatype": "Beep",
    }
    (tmp_path / "beeps.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    without = run_cli("cassette", "beeps.jsonl", "--types", "typed_app:Beeps", cwd=tmp_path)
    assert without.returncode == 2
    assert "unknown data type 'Beep'" in without.stderr
    types = ["--types", "typed_app:Beeps", "--types", "typed_app:Beep"]
    with_types = run_cli("cassette", "beeps.jsonl", *types, cwd=tmp_path)
    assert with_types.returncode == 0, with_types.stderr
    assert "Beeps.BEEP" in with_types.stdout
    loose = run_cli("cassette", "beeps.jsonl", "--types", "typed_app:Loose", cwd=tmp_path)
    assert loose.returncode == 2
    assert "frozen dataclasses" in loose.stderr
    assert "Traceback" not in loose.stderr
