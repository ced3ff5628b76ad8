"""Given/when/then scenarios (atlas_eda.testing.scenario)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pytest

from atlas_eda import (
    DocumentService,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
    Event,
    EventBus,
    EventType,
    TemporalStore,
)
from atlas_eda.testing import ANY, Scenario, ScenarioError, ScenarioResult


class Orders(enum.Enum):
    PLACED = "order.placed"
    PAID = "order.paid"
    SHIPPED = "order.shipped"


class Shop(enum.Enum):
    CHARGE = "shop.charge"
    MAIL = "shop.mail"


@dataclass
class OrderSystem:
    """PLACED → charge, then PAID → SHIPPED (with a mail effect)."""

    bus: EventBus
    builds: list[int] = field(default_factory=list)


BUILDS: list[OrderSystem] = []


def make_orders() -> OrderSystem:
    handler = EffectHandler()
    handler.register_handler(Shop.CHARGE, lambda effect: {"charged": effect.payload["amount"]})
    handler.register_handler(Shop.MAIL, lambda effect: "queued")
    bus = EventBus(effect_handler=handler)

    def placed(event: Event) -> EffectMonad[None]:
        bus.publish(Orders.PAID, {"order": event.data["order"]})
        charge = Effect(Shop.CHARGE, {"amount": event.data["amount"]}, "charge the card")
        return EffectMonad.pure(None).with_effect(charge)

    def paid(event: Event) -> EffectMonad[None]:
        bus.publish(Orders.SHIPPED, {"order": event.data["order"]})
        return EffectMonad.pure(None).with_effect(Effect(Shop.MAIL, {"to": "ann"}))

    bus.subscribe(Orders.PLACED, placed)
    bus.subscribe(Orders.PAID, paid)
    system = OrderSystem(bus)
    BUILDS.append(system)
    return system


ORDERS = Scenario(make_orders)


# -- passing scenarios ---------------------------------------------------------------------


def test_events_in_publish_order_root_and_descendants() -> None:
    ORDERS.when((Orders.PLACED, {"order": 1, "amount": 5})).then_events(
        (Orders.PLACED, {"order": 1, "amount": 5}),
        (Orders.PAID, {"order": 1}),
        (Orders.SHIPPED, {"order": 1}),
    )


def test_effects_event_by_event_with_effects_and_pairs() -> None:
    ORDERS.when((Orders.PLACED, {"order": 1, "amount": 5})).then_effects(
        Effect(Shop.CHARGE, {"amount": 5}, "charge the card"),
        (Shop.MAIL, {"to": "ann"}),
    )


def test_chained_checks_share_one_fresh_run() -> None:
    before = len(BUILDS)
    result = (
        ORDERS.when((Orders.PLACED, {"order": 2, "amount": 1}))
        .then_events(Orders.PLACED, Orders.PAID, Orders.SHIPPED)
        .then_effects(Shop.CHARGE, Shop.MAIL)
        .run()
    )
    assert len(BUILDS) == before + 1
    assert isinstance(result, ScenarioResult)
    assert [e.type for e in result.events] == [Orders.PLACED, Orders.PAID, Orders.SHIPPED]
    assert [o.result for o in result.effects] == [{"charged": 1}, "queued"]
    # another scenario gets another system
    ORDERS.when((Orders.PAID, {"order": 3})).then_events(Orders.PAID, Orders.SHIPPED)
    assert len(BUILDS) == before + 2
    assert BUILDS[-1] is not BUILDS[-2]


def test_given_events_are_not_counted() -> None:
    (
        ORDERS.given((Orders.PLACED, {"order": 1, "amount": 5}), (Orders.PAID, {"order": 9}))
        .when((Orders.PAID, {"order": 1}))
        .then_events((Orders.PAID, {"order": 1}), (Orders.SHIPPED, {"order": 1}))
        .then_effects((Shop.MAIL, {"to": "ann"}))
    )


def test_given_accepts_prebuilt_events_and_when_an_event() -> None:
    given = Event(type=Orders.PAID, data={"order": 7})
    when = Event(type=Orders.PAID, data={"order": 8})
    result = ORDERS.given(given).when(when).then_events(Orders.PAID, Orders.SHIPPED).run()
    assert result.events[0].id == when.id
    assert result.events[1].causation_id == when.id


def test_a_command_callable_is_checked_from_when_on() -> None:
    def place_two(system: OrderSystem) -> None:
        system.bus.publish(Orders.PLACED, {"order": 1, "amount": 2})
        system.bus.publish(Orders.PAID, {"order": 2})

    ORDERS.when(place_two).then_events(
        (Orders.PLACED, {"order": 1, "amount": 2}),
        (Orders.PAID, {"order": 1}),
        (Orders.SHIPPED, {"order": 1}),
        (Orders.PAID, {"order": 2}),
        (Orders.SHIPPED, {"order": 2}),
    ).then_effects(Shop.CHARGE, Shop.MAIL, Shop.MAIL)


def test_any_matches_whole_data_and_nested_values() -> None:
    ORDERS.when((Orders.PLACED, {"order": 4, "amount": 3})).then_events(
        (Orders.PLACED, ANY),
        (Orders.PAID, {"order": ANY}),
        (ANY, {"order": 4}),
    ).then_effects((Shop.CHARGE, {"amount": ANY}), (Shop.MAIL, ANY))


def test_nothing_happened() -> None:
    Scenario(EventBus).when(lambda bus: None).then_events().then_effects()


def test_a_plain_bus_and_a_handler_failure_reported_as_error_event() -> None:
    def make() -> EventBus:
        bus = EventBus()

        def boom(event: Event) -> None:
            raise RuntimeError("no stock")

        bus.subscribe(Orders.PLACED, boom)
        return bus

    Scenario(make).when((Orders.PLACED, {"order": 1})).then_events(
        (Orders.PLACED, {"order": 1}),
        (
            EventType.ERROR,
            {
                **dict.fromkeys(["event_id", "handler"], ANY),
                "event_type": "Orders.PLACED",
                "error_type": "RuntimeError",
                "error_message": "no stock",
            },
        ),
    )


# -- a store-backed system -----------------------------------------------------------------


@dataclass
class Library:
    bus: EventBus
    store: TemporalStore


def make_library() -> Library:
    bus = EventBus()
    return Library(bus, TemporalStore(bus, url="memory://"))


def _only_document(system: Library) -> str:
    (document,) = system.store.get_all_documents()
    return document.document_id


def test_state_of_a_document_created_during_the_scenario() -> None:
    Scenario(make_library).when(
        lambda s: s.store.create_document("Plan", "draft", "ann")
    ).then_events(
        (EventType.DOCUMENT_CREATED, {"id": ANY, "title": "Plan", "author": "ann", "version": 1})
    ).then_state(_only_document, title="Plan", content="draft", version=1, is_deleted=False)


def test_state_after_given_commands_and_a_tuple_system() -> None:
    ids: list[str] = []

    def make() -> tuple[EventBus, TemporalStore]:
        bus = EventBus()
        return bus, TemporalStore(bus, url="memory://")

    def create(system: tuple[EventBus, TemporalStore]) -> None:
        ids.append(system[1].create_document("Plan", "draft", "ann"))

    def update(system: tuple[EventBus, TemporalStore]) -> None:
        system[1].update_document(ids[-1], content="final", editor="bob")

    Scenario(make).given(create).when(update).then_events(
        (EventType.DOCUMENT_UPDATED, ANY)
    ).then_state(lambda system: ids[-1], content="final", last_editor="bob", version=2)


# -- failures and their messages -----------------------------------------------------------


def test_event_data_mismatch_shows_both_sides_and_a_diff() -> None:
    scenario = ORDERS.when((Orders.PLACED, {"order": 1, "amount": 5}))
    with pytest.raises(AssertionError) as caught:
        scenario.then_events(
            (Orders.PLACED, {"order": 1, "amount": 5}),
            (Orders.PAID, {"order": 2}),
            (Orders.SHIPPED, ANY),
        )
    message = str(caught.value)
    assert "then_events" in message
    assert "Expected" in message
    assert "Actual" in message
    assert 'Orders.PAID {"order": 2}' in message
    assert 'Orders.PAID {"order": 1}' in message
    assert "<|>" in message
    assert "Orders.SHIPPED ANY" in message
    assert "first difference: event 2 (Orders.PAID): data differs" in message
    assert '-  "order": 2' in message
    assert '+  "order": 1' in message


def test_missing_and_unexpected_events() -> None:
    scenario = ORDERS.when((Orders.PAID, {"order": 1}))
    with pytest.raises(AssertionError) as missing:
        scenario.then_events(Orders.PAID, Orders.SHIPPED, Orders.SHIPPED)
    assert "3 events expected, 2 happened: missing Orders.SHIPPED" in str(missing.value)
    assert "(nothing)" in str(missing.value)
    with pytest.raises(AssertionError) as extra:
        scenario.then_events(Orders.PAID)
    assert "1 events expected, 2 happened: unexpected Orders.SHIPPED" in str(extra.value)
    with pytest.raises(AssertionError) as wrong_type:
        scenario.then_events(Orders.PAID, Orders.PLACED)
    assert "event 2: expected Orders.PLACED, got Orders.SHIPPED" in str(wrong_type.value)


def test_effect_mismatches() -> None:
    scenario = ORDERS.when((Orders.PLACED, {"order": 1, "amount": 5}))
    with pytest.raises(AssertionError) as payload:
        scenario.then_effects((Shop.CHARGE, {"amount": 6}), Shop.MAIL)
    message = str(payload.value)
    assert "then_effects" in message
    assert 'Shop.CHARGE {"amount": 6}' in message
    assert '→ {"charged": 5}' in message  # the actual side shows the result
    assert "effect 1 (Shop.CHARGE): payload differs" in message
    assert '-  "amount": 6' in message
    assert '+  "amount": 5' in message
    with pytest.raises(AssertionError) as description:
        scenario.then_effects(Effect(Shop.CHARGE, {"amount": 5}, "refund"), Shop.MAIL)
    assert "expected description 'refund', got 'charge the card'" in str(description.value)
    with pytest.raises(AssertionError) as count:
        scenario.then_effects(Shop.CHARGE)
    assert "1 effects expected, 2 happened: unexpected Shop.MAIL" in str(count.value)


def test_state_mismatch_and_missing_document() -> None:
    scenario = Scenario(make_library).when(lambda s: s.store.create_document("Plan", "a", "ann"))
    with pytest.raises(AssertionError) as caught:
        scenario.then_state(_only_document, title="Plan", content="b", version=ANY)
    message = str(caught.value)
    assert "then_state" in message
    assert "does not hold the expected fields" in message
    assert 'content = "b"' in message
    assert 'content = "a"' in message
    assert "fields that differ: content" in message
    assert '-  "content": "b"' in message
    assert '+  "content": "a"' in message
    with pytest.raises(AssertionError, match="is not in the store"):
        scenario.then_state("00000000-0000-0000-0000-000000000000", title="Plan")


def test_a_system_with_event_bus_and_temporal_store_attributes_works() -> None:
    # Such as a DocumentService: its bus is .event_bus and its store .temporal_store.
    def make_service() -> DocumentService:
        bus = EventBus()
        store = TemporalStore(bus, url="memory://")
        handler = EffectHandler(temporal_store=store, event_bus=bus)
        for effect_type in EffectType:
            handler.register_handler(effect_type, lambda effect: None)
        return DocumentService(bus, store, handler)

    result = (
        Scenario(make_service)
        .when(lambda service: service.create_document("Plan", "draft", "ann"))
        .then_events((EventType.DOCUMENT_CREATED, ANY))
        .then_state(
            lambda service: service.temporal_store.get_all_documents()[0].document_id,
            title="Plan",
        )
        .run()
    )
    assert result.store is result.system.temporal_store
    result.store.close()


# -- misuse --------------------------------------------------------------------------------


def test_misuse_is_a_scenario_error() -> None:
    with pytest.raises(ScenarioError, match="when"):
        ORDERS.then_events()
    with pytest.raises(ScenarioError, match="before when"):
        ORDERS.when((Orders.PAID, 1)).given((Orders.PAID, 2))
    with pytest.raises(ScenarioError, match="already"):
        ORDERS.when((Orders.PAID, 1)).when((Orders.PAID, 2))
    with pytest.raises(ScenarioError, match="pair"):
        ORDERS.when(("order.paid", 1))  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match="must return an EventBus"):
        Scenario(lambda: 42).when((Orders.PAID, 1)).run()
    with pytest.raises(ScenarioError, match="needs a store"):
        ORDERS.when((Orders.PAID, 1)).then_state("x", title="t")
    with pytest.raises(ScenarioError, match="no field 'colour'"):
        Scenario(make_library).when(
            lambda s: s.store.create_document("Plan", "a", "ann")
        ).then_state(_only_document, colour="red")
    with pytest.raises(ScenarioError, match="history_limit"):
        Scenario(lambda: EventBus(history_limit=0)).when((Orders.PAID, 1)).run()


def test_any_is_a_singleton_with_a_short_repr() -> None:
    assert repr(ANY) == "ANY"
    assert object() == ANY
    assert type(ANY)() is ANY
