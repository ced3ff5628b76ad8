"""Commands and queries (atlas_eda.commands): bus.handle / send / ask, their results,
errors, side effects refused in queries, history, traces, cassettes, replay, scenarios."""

from __future__ import annotations

import enum
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from atlas_eda import (
    CommandType,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
    Event,
    EventBus,
    EventCycleError,
    EventType,
    HandlerConflictError,
    ImmutablePayloadError,
    InvalidEventError,
    NoEffectHandlerError,
    NoHandlerError,
    QuerySideEffectError,
    QueryType,
    TemporalStore,
)
from atlas_eda.testing import (
    ANY,
    Cassette,
    RecordedError,
    RecordedResult,
    Scenario,
    record,
    register_types,
    replay,
)


class Cart(CommandType):
    ADD = "cart.add"
    CHECKOUT = "cart.checkout"
    NOTE = "cart.note"


class Stock(QueryType):
    LEVEL = "stock.level"
    NOISY = "stock.noisy"


class CartEvent(enum.Enum):
    ADDED = "cart.added"


register_types(Cart, Stock, CartEvent)


@dataclass
class Shop:
    """A store-backed system: ADD writes a document and publishes ADDED; LEVEL reads."""

    bus: EventBus
    store: TemporalStore


def make_shop(effects: bool = True, receipt: str = "paid") -> Shop:
    handler = EffectHandler()
    handler.register_handler(EffectType.NOTIFICATION, lambda effect: "sent")
    bus = EventBus(effect_handler=handler if effects else None)
    store = TemporalStore(bus, url="memory://")

    def add(message: Event) -> dict[str, Any]:
        item = message.data["item"]
        if message.data.get("quantity", 1) < 1:
            raise ValueError(f"cannot add {item}: quantity must be at least 1")
        doc_id = store.create_document(item, "in cart", "shop")
        bus.publish(CartEvent.ADDED, {"item": item})
        return {"document": doc_id, "item": item}

    def checkout(message: Event) -> EffectMonad[str]:
        mail = Effect(EffectType.NOTIFICATION, {"to": message.data}, "receipt")
        return EffectMonad.pure(receipt).with_effect(mail)

    def level(message: Event) -> int:
        return len(store.get_all_documents())

    bus.handle(Cart.ADD, add)
    bus.handle(Cart.CHECKOUT, checkout)
    bus.handle(Stock.LEVEL, level)
    return Shop(bus, store)


@pytest.fixture
def shop() -> Shop:
    return make_shop()


# -- registration ----------------------------------------------------------------------


def test_handle_registers_one_handler_and_returns_its_remover(bus: EventBus) -> None:
    remove = bus.handle(Cart.NOTE, lambda message: "first")
    with pytest.raises(HandlerConflictError, match=r"Cart.NOTE already has its handler"):
        bus.handle(Cart.NOTE, lambda message: "second")
    assert bus.send(Cart.NOTE) == "first"
    assert [t for t, _ in bus.requests.items()] == [Cart.NOTE]
    remove()
    remove()  # again: nothing
    with pytest.raises(NoHandlerError, match=r"No handler for the command Cart.NOTE"):
        bus.send(Cart.NOTE)
    bus.handle(Cart.NOTE, lambda message: "second")
    remove()  # the old remover does not remove the new handler
    assert bus.send(Cart.NOTE) == "second"


def test_bad_registrations_are_refused_naming_what_to_do(bus: EventBus) -> None:
    with pytest.raises(TypeError, match=r"handler of Cart.NOTE must be callable"):
        bus.handle(Cart.NOTE, "not a function")  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match=r"CartEvent.ADDED is an event type: publish"):
        bus.handle(CartEvent.ADDED, print)
    with pytest.raises(InvalidEventError, match=r"derived from CommandType or QueryType"):
        bus.handle("cart.add", print)  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match=r"Cart.ADD is a command type.*bus.send"):
        bus.subscribe(Cart.ADD, print)
    assert len(bus.requests) == 0


def test_a_command_type_cannot_be_published_nor_an_event_type_sent(bus: EventBus) -> None:
    bus.handle(Cart.NOTE, lambda message: None)
    with pytest.raises(InvalidEventError, match=r"Cart.NOTE is a command type.*bus.send"):
        bus.publish(Cart.NOTE)
    with pytest.raises(InvalidEventError, match=r"Stock.LEVEL is a query type.*bus.ask"):
        bus.publish_event(Event(type=Stock.LEVEL))
    with pytest.raises(InvalidEventError, match=r"CartEvent.ADDED is an event type"):
        bus.send(CartEvent.ADDED)
    with pytest.raises(InvalidEventError, match=r"Stock.LEVEL is a query type: ask it"):
        bus.send(Stock.LEVEL)
    with pytest.raises(InvalidEventError, match=r"Cart.NOTE is a command type: send it"):
        bus.ask(Cart.NOTE)
    assert bus.get_history() == []


# -- send and ask ----------------------------------------------------------------------


def test_send_returns_the_handlers_result_and_ask_answers(shop: Shop) -> None:
    result = shop.bus.send(Cart.ADD, {"item": "tea"}, metadata={"user": "ann"})
    assert result["item"] == "tea"
    assert shop.store.get_document(result["document"]) is not None
    assert shop.bus.ask(Stock.LEVEL) == 1


def test_the_handler_receives_the_message_as_an_event(bus: EventBus) -> None:
    seen: list[Event] = []
    bus.handle(Cart.NOTE, seen.append)
    bus.send(Cart.NOTE, {"n": 1}, metadata={"user": "ann"})
    (message,) = seen
    # Built on the hot path, field by field: the same as Event(...) would give.
    plain = Event(
        type=Cart.NOTE,
        data={"n": 1},
        id=message.id,
        timestamp=message.timestamp,
        metadata={"user": "ann"},
        correlation_id=message.id,
    )
    assert type(message) is Event
    assert message == plain
    assert repr(message) == repr(plain)


def test_a_returned_monad_is_run_and_its_value_returned(shop: Shop) -> None:
    message_id = None
    assert shop.bus.send(Cart.CHECKOUT, "ann@example.com") == "paid"
    message_id = shop.bus.get_history(limit=1)[0].id
    (effect,) = shop.bus.trace(message_id).all_effects()
    assert effect.result == "sent"


def test_a_monad_without_an_effect_handler_is_a_clear_error() -> None:
    shop = make_shop(effects=False)
    with pytest.raises(NoEffectHandlerError, match=r"no effect_handler"):
        shop.bus.send(Cart.CHECKOUT, "ann@example.com")


def test_the_handlers_exception_reaches_the_caller_and_the_trace(shop: Shop) -> None:
    with pytest.raises(ValueError, match=r"quantity must be at least 1") as raised:
        shop.bus.send(Cart.ADD, {"item": "tea", "quantity": 0})
    (message,) = shop.bus.get_history()  # recorded; no ERROR event: a call, not a broadcast
    (delivery,) = shop.bus.trace(message.id).deliveries
    assert delivery.error is raised.value
    assert not shop.bus.trace(message.id).answered


def test_commands_nest_and_a_loop_stops_at_max_depth() -> None:
    bus = EventBus(max_depth=8)
    bus.handle(Cart.NOTE, lambda message: bus.send(Cart.NOTE))
    with pytest.raises(EventCycleError, match=r"max_depth=8"):
        bus.send(Cart.NOTE)


def test_threads_send_at_once_and_each_gets_its_own_result(bus: EventBus) -> None:
    bus.handle(Cart.NOTE, lambda message: message.data * 2)
    results: dict[int, int] = {}

    def worker(n: int) -> None:
        for k in range(50):
            results[n * 1000 + k] = bus.send(Cart.NOTE, n * 1000 + k)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {key: key * 2 for key in results}
    assert len(results) == 200


# -- queries only read ---------------------------------------------------------------------


def test_a_query_that_publishes_is_refused_with_nothing_published(bus: EventBus) -> None:
    got: list[Event] = []
    bus.subscribe(CartEvent.ADDED, got.append)
    bus.handle(Stock.NOISY, lambda message: bus.publish(CartEvent.ADDED))
    with pytest.raises(QuerySideEffectError, match=r"Query Stock.NOISY tried to publish Cart"):
        bus.ask(Stock.NOISY)
    assert got == []
    assert [e.type for e in bus.get_history()] == [Stock.NOISY]


def test_a_query_that_sends_a_command_is_refused(bus: EventBus) -> None:
    sent: list[Event] = []
    bus.handle(Cart.NOTE, sent.append)
    bus.handle(Stock.NOISY, lambda message: bus.send(Cart.NOTE))
    with pytest.raises(QuerySideEffectError, match=r"tried to send Cart.NOTE"):
        bus.ask(Stock.NOISY)
    assert sent == []


def test_a_query_that_writes_the_store_is_refused_with_nothing_written(tmp_path: Path) -> None:
    bus = EventBus()
    store = TemporalStore(bus, url=f"sqlite:///{tmp_path / 'shop.db'}")
    doc_id = store.create_document("tea", "v1", "ann")
    before = store.last_position()
    writes = {
        Stock.NOISY: lambda message: store.update_document(doc_id, content="v2"),
    }
    bus.handle(Stock.NOISY, writes[Stock.NOISY])
    with pytest.raises(QuerySideEffectError, match=r"tried to write the store"):
        bus.ask(Stock.NOISY)
    store.close()
    reopened = TemporalStore(url=f"sqlite:///{tmp_path / 'shop.db'}")
    assert reopened.last_position() == before
    document = reopened.get_document(doc_id)
    assert document is not None
    assert document.content == "v1"
    reopened.close()


def test_a_query_may_ask_another_query_and_a_command_may_ask(shop: Shop) -> None:
    shop.bus.handle(Stock.NOISY, lambda message: shop.bus.ask(Stock.LEVEL) + 1)
    shop.bus.handle(Cart.NOTE, lambda message: shop.bus.ask(Stock.NOISY))
    assert shop.bus.send(Cart.NOTE) == 1
    note, noisy, level = reversed(shop.bus.get_history())
    assert noisy.causation_id == note.id
    assert level.causation_id == noisy.id
    assert level.correlation_id == note.id


# -- history, traces, tree -----------------------------------------------------------------


def test_commands_are_in_history_and_their_events_are_children(shop: Shop) -> None:
    result = shop.bus.send(Cart.ADD, {"item": "tea"})
    history = list(reversed(shop.bus.get_history()))
    command = history[0]
    assert command.type is Cart.ADD
    assert shop.bus.get_history(Cart.ADD) == [command]
    added = shop.bus.get_history(CartEvent.ADDED)[0]
    assert added.causation_id == command.id
    assert added.correlation_id == command.id
    trace = shop.bus.trace(command.id)
    assert trace.answered
    assert trace.result == result
    (delivery,) = trace.deliveries
    assert delivery.handler.endswith("add")
    assert delivery.error is None
    assert delivery.duration >= 0
    child_types = [child.event.type for child in delivery.children]
    assert CartEvent.ADDED in child_types
    # The store records the command as the cause of what it wrote.
    (recorded,) = [e for e in shop.store.timeline() if e.cause is not None]
    assert recorded.cause is not None
    assert recorded.cause.event_id == command.id
    assert recorded.cause.event_type == "Cart.ADD"


def test_the_tree_shows_the_command_its_children_and_its_result(bus: EventBus) -> None:
    def note(message: Event) -> dict[str, int]:
        bus.publish(CartEvent.ADDED, "x")
        return {"total": 3}

    bus.handle(Cart.NOTE, note)
    bus.send(Cart.NOTE, "hello")
    tree = bus.trace(bus.get_history(Cart.NOTE)[0].id).tree()
    lines = tree.splitlines()
    assert lines[0].startswith("Cart.NOTE ")
    assert (
        "handler test_the_tree_shows_the_command_its_children_and_its_result.<locals>.note"
        in (lines[1])
    )
    assert "child CartEvent.ADDED" in lines[2]
    assert lines[-1] == "└─ result → {'total': 3}"


def test_watchers_see_a_command_as_a_root(bus: EventBus) -> None:
    seen: list[Any] = []
    bus.watch(seen.append)
    bus.handle(Cart.NOTE, lambda message: bus.publish(CartEvent.ADDED))
    bus.send(Cart.NOTE)
    (trace,) = seen
    assert trace.event.type is Cart.NOTE
    assert [c.event.type for c in trace.all_children()] == [CartEvent.ADDED]


def test_an_untraced_bus_sends_and_keeps_history() -> None:
    bus = EventBus(traces=False)
    bus.handle(Cart.NOTE, lambda message: bus.publish(CartEvent.ADDED) and 7)
    assert bus.send(Cart.NOTE) == 7
    note, added = reversed(bus.get_history())
    assert added.causation_id == note.id


# -- cassettes and replay ------------------------------------------------------------------


def _record_session(path: Path) -> None:
    shop = make_shop()
    with record(shop.bus, path, store=shop.store):
        shop.bus.send(Cart.ADD, {"item": "tea"})
        shop.bus.send(Cart.CHECKOUT, "ann@example.com")
        with pytest.raises(ValueError, match="quantity"):
            shop.bus.send(Cart.ADD, {"item": "jam", "quantity": 0})
        shop.bus.ask(Stock.LEVEL)


def test_a_cassette_records_commands_as_roots_with_their_results(tmp_path: Path) -> None:
    path = tmp_path / "shop.jsonl"
    _record_session(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    roots = [line for line in lines if "causationid" not in line]
    assert [root["type"] for root in roots] == [
        "Cart.ADD",
        "Cart.CHECKOUT",
        "Cart.ADD",
        "Stock.LEVEL",
    ]
    results = [json.loads(root["atlasresult"]) for root in roots]
    assert results[0]["value"]["item"] == "tea"
    assert results[1] == {"value": "paid"}
    assert results[2] == {
        "error": {
            "type": "builtins.ValueError",
            "message": "cannot add jam: quantity must be at least 1",
        }
    }
    assert results[3] == {"value": 1}
    cassette = Cassette.load(path)
    loaded = [root.result for root in cassette.roots()]
    assert loaded[1] == RecordedResult("paid")
    assert loaded[2] == RecordedResult(
        error=RecordedError("builtins.ValueError", "cannot add jam: quantity must be at least 1")
    )
    assert all("atlasresult" not in line for line in lines if "causationid" in line)


@pytest.mark.parametrize("mode", ["check", "stub", "perform"])
def test_a_recorded_session_of_commands_replays_without_divergence(
    tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "shop.jsonl"
    _record_session(path)
    shop = make_shop()
    report = replay(Cassette.load(path), shop.bus, mode, store=shop.store)
    assert report.ok, str(report)
    assert report.events_matched == len(Cassette.load(path))


def test_check_mode_reports_a_changed_result(tmp_path: Path) -> None:
    path = tmp_path / "shop.jsonl"
    _record_session(path)
    changed = make_shop(receipt="refunded")
    report = replay(Cassette.load(path), changed.bus, "check", store=changed.store)
    assert report.divergence is not None
    assert report.divergence.reason == "Cart.CHECKOUT: the result differs"
    assert report.divergence.expected == 'Cart.CHECKOUT → "paid"'
    assert report.divergence.actual == 'Cart.CHECKOUT → "refunded"'
    assert "result" in report.divergence.diff
    assert report.divergence.position == 4  # ADD, its two children, then CHECKOUT
    assert report.events_matched == 3


def test_check_mode_reports_a_command_that_now_raises(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    bus = EventBus()
    bus.handle(Cart.NOTE, lambda message: "ok")
    with record(bus, path):
        bus.send(Cart.NOTE, 1)
    other = EventBus()

    def fail(message: Event) -> None:
        raise KeyError("gone")

    other.handle(Cart.NOTE, fail)
    report = replay(Cassette.load(path), other, "check")
    assert report.divergence is not None
    assert report.divergence.actual == "Cart.NOTE ✗ builtins.KeyError: 'gone'"
    unhandled = replay(Cassette.load(path), EventBus(), "check")
    assert unhandled.divergence is not None
    assert "NoHandlerError" in unhandled.divergence.reason


def test_a_result_that_is_not_json_stops_the_recording(tmp_path: Path, bus: EventBus) -> None:
    bus.handle(Cart.NOTE, lambda message: object())
    recorder = record(bus, tmp_path / "bad.jsonl")
    bus.send(Cart.NOTE)
    with pytest.raises(Exception, match=r"result is a object.*cannot be stored as JSON"):
        recorder.close()
    assert (tmp_path / "bad.jsonl").read_text() == ""


def test_a_malformed_recorded_result_is_a_cassette_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    bus = EventBus()
    bus.handle(Cart.NOTE, lambda message: "ok")
    with record(bus, path):
        bus.send(Cart.NOTE, 1)
    line = json.loads(path.read_text())
    line["atlasresult"] = json.dumps({"answer": 1})
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(Exception, match=r"line 1: the atlasresult extension must hold"):
        Cassette.load(path)


# -- scenarios -----------------------------------------------------------------------------


def test_a_scenario_sends_a_command_and_checks_its_result_and_events() -> None:
    (
        Scenario(make_shop)
        .when((Cart.ADD, {"item": "tea"}))
        .then_result({"document": ANY, "item": "tea"})
        .then_events((Cart.ADD, {"item": "tea"}), EventType.DOCUMENT_CREATED, CartEvent.ADDED)
    )


def test_then_result_shows_the_difference() -> None:
    scenario = Scenario(make_shop).when((Stock.LEVEL, None))
    scenario.then_result(0)
    with pytest.raises(AssertionError, match=r"expected: 5\nactual:   0"):
        scenario.then_result(5)


def test_then_raises_checks_the_error_and_other_checks_need_it_first() -> None:
    scenario = Scenario(make_shop).when((Cart.ADD, {"item": "jam", "quantity": 0}))
    with pytest.raises(AssertionError, match=r"then_events: when\(\) raised ValueError"):
        scenario.then_events()
    scenario.then_raises(ValueError).then_events((Cart.ADD, ANY))
    with pytest.raises(AssertionError, match=r"expected when\(\) to raise KeyError"):
        scenario.then_raises(KeyError)
    with pytest.raises(AssertionError, match=r"to raise ValueError, but it returned 0"):
        Scenario(make_shop).when((Stock.LEVEL, None)).then_raises(ValueError)


def test_a_commands_data_is_frozen_like_an_events() -> None:
    bus = EventBus()
    seen: list[Any] = []

    def keep(message: Event) -> int:
        seen.append(message.data)
        with pytest.raises(ImmutablePayloadError):
            message.data["items"].append("c")
        return len(message.data["items"])

    bus.handle(Cart.ADD, keep)
    data = {"items": ["a", "b"]}
    assert bus.send(Cart.ADD, data) == 2
    data["items"].append("changed by the caller afterwards")
    assert seen[0] == {"items": ["a", "b"]}
    assert bus.get_history()[0].data == {"items": ["a", "b"]}


def _request_session(resend: bool) -> list[Any]:
    """What the bus kept of a command that publishes a child event and of one that fails,
    sent (Requests.call) or re-sent as recorded messages (Requests.resend)."""
    bus = EventBus()

    def add(message: Event) -> int:
        bus.publish(CartEvent.ADDED, {"sku": message.data["sku"]})
        return 1

    def checkout(message: Event) -> None:
        raise ValueError(f"no stock for {message.data['sku']}")

    bus.handle(Cart.ADD, add)
    bus.handle(Cart.CHECKOUT, checkout)
    bus.subscribe(CartEvent.ADDED, lambda event: None)
    results: list[Any] = []
    for command in (Cart.ADD, Cart.CHECKOUT):
        try:
            if resend:
                message = Event(type=command, data={"sku": "x"})
                results.append(bus.requests.resend(message, None))
            else:
                results.append(bus.send(command, {"sku": "x"}))
        except ValueError as exc:
            results.append(str(exc))
    kept: list[Any] = [results]
    for root in reversed(bus.get_history()):
        if root.causation_id is not None:
            continue
        trace = bus.trace(root.id)
        kept.append(
            (
                root.type,
                [(d.handler, d.error is None) for d in trace.deliveries],
                [child.event.type for child in trace.all_children()],
                trace.result,
                trace.answered,
                trace.complete,
            )
        )
    return kept


def test_send_and_resend_record_alike() -> None:
    # Requests.call keeps its own copy of the delivery that resend goes through
    # (Requests._deliver), for speed; every path: a result, a child event, a failure.
    sent = _request_session(resend=False)
    assert sent == _request_session(resend=True)
    assert sent[0] == [1, "no stock for x"]
    assert sent[1][2] == [CartEvent.ADDED]
    assert sent[2][1][0][1] is False


def test_a_flat_dict_sent_is_copied_and_frozen() -> None:
    bus = EventBus()
    seen: list[Any] = []
    bus.handle(Cart.ADD, lambda message: seen.append(message.data))
    data = {"sku": "x", "count": 2}
    bus.send(Cart.ADD, data)
    data["sku"] = "changed by the caller afterwards"
    assert seen == [{"sku": "x", "count": 2}]
    with pytest.raises(ImmutablePayloadError):
        seen[0]["count"] = 3


class _Marked(enum.Enum):
    """A memberless base marked as a command type by hand, as CommandType is."""

    __atlas_request__ = "command"


class _MarkedChild(_Marked):
    ONE = "one"


class _Unmarked(_Marked):
    """A subclass that takes the marker away again."""

    __atlas_request__ = None
    TWO = "two"


def test_request_marker_reads_what_getattr_reads() -> None:
    # dispatch.request_marker reads the marker from the class dictionaries (an Enum
    # class's getattr of a missing name raises inside EnumType.__getattr__, which costs
    # every publish_event a microsecond): it must give what getattr gives, for anything.
    from atlas_eda.dispatch import REQUEST_KIND, request_marker

    class Plain(enum.IntEnum):
        A = 1

    class Flags(enum.Flag):
        X = 1

    class Words(enum.StrEnum):
        W = "w"

    members: list[object] = [
        Cart.ADD,
        Stock.LEVEL,
        CartEvent.ADDED,
        EventType.ERROR,
        Plain.A,
        Flags.X,
        Flags.X | Flags.X,
        Words.W,
        _MarkedChild.ONE,
        _Unmarked.TWO,
        1,
        "cart.add",
        None,
        Cart,
        object(),
    ]
    for member in members:
        assert request_marker(member) == getattr(type(member), REQUEST_KIND, None), member
    assert [request_marker(m) for m in (Cart.ADD, Stock.LEVEL, CartEvent.ADDED)] == [
        "command",
        "query",
        None,
    ]
    assert request_marker(_Unmarked.TWO) is None  # the nearest class's marker wins
