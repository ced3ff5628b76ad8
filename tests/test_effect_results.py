"""Effect results feed the next step: ``EffectMonad.perform(effect)``, whose value is the
effect's result when the monad is run, and ``map``/``bind`` steps that decide on it — run
by ``EffectMonad.run`` and by the bus, traced, recorded and replayed."""

from __future__ import annotations

import enum
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import effect as fx
import pytest
from effect.do import do
from hypothesis import given
from hypothesis import strategies as st

from atlas_eda import (
    AtlasEdaError,
    Effect,
    EffectHandler,
    EffectMonad,
    EventBus,
    EventType,
    PendingResultError,
    UnhandledEffectError,
)
from atlas_eda.testing import Cassette, record, register_types, replay


class Till(enum.Enum):
    """The shop's events."""

    ORDER_PLACED = "order.placed"
    PAYMENT_FAILED = "payment.failed"


class Gateway(enum.Enum):
    """The shop's effects."""

    CHARGE = "charge"
    SHIP = "ship"
    MAIL = "mail"
    AUDIT = "audit"


register_types(Till, Gateway)


class Performed:
    """Performers that log what they performed; a charge is declined above ``limit``."""

    def __init__(self, limit: int = 100) -> None:
        self.log: list[Effect] = []
        self.limit = limit

    def charge(self, effect: Effect) -> dict[str, Any]:
        self.log.append(effect)
        amount = effect.payload["amount"]
        return {"status": "declined" if amount > self.limit else "approved", "amount": amount}

    def other(self, effect: Effect) -> dict[str, Any]:
        self.log.append(effect)
        return {"done": effect.type.name}

    def handler(self, *types: Gateway) -> EffectHandler:
        handler = EffectHandler()
        for kind in types or tuple(Gateway):
            handler.register_handler(kind, self.charge if kind is Gateway.CHARGE else self.other)
        return handler


def charge(amount: int) -> Effect:
    return Effect(Gateway.CHARGE, {"amount": amount}, "card")


def ship(order: int = 1) -> Effect:
    return Effect(Gateway.SHIP, {"order": order})


def decide(reply: dict[str, Any]) -> EffectMonad[str]:
    """Ship when the charge was approved; otherwise nothing to perform."""
    if reply["status"] == "declined":
        return EffectMonad.pure("declined")
    return EffectMonad.pure("shipped").with_effect(ship())


# -- perform, map, bind ------------------------------------------------------------------


def test_the_value_of_perform_is_the_effects_result() -> None:
    performed = Performed()

    monad = EffectMonad.perform(charge(10))

    assert monad.run(performed.handler()) == {"status": "approved", "amount": 10}
    assert performed.log == [charge(10)]


def test_bind_decides_on_the_result() -> None:
    plan = EffectMonad.perform(charge(10)).bind(decide)
    declined_plan = EffectMonad.perform(charge(500)).bind(decide)
    performed = Performed()
    handler = performed.handler()

    assert plan.run(handler) == "shipped"
    assert performed.log == [charge(10), ship()]
    performed.log.clear()
    assert declined_plan.run(handler) == "declined"
    assert performed.log == [charge(500)]


def test_map_steps_are_given_the_result_in_order() -> None:
    plan = (
        EffectMonad.perform(charge(7))
        .map(lambda reply: reply["amount"])
        .map(lambda amount: amount * 3)
    )

    assert plan.run(Performed().handler()) == 21


def test_effects_after_a_result_are_performed_after_it_and_keep_the_value() -> None:
    performed = Performed()
    audit = Effect(Gateway.AUDIT, "after")
    plan = (
        EffectMonad.pure(None)
        .with_effect(Effect(Gateway.MAIL, "before"))
        .bind(lambda _: EffectMonad.perform(charge(1)))
        .with_effect(audit)
        .map(lambda reply: reply["status"])
    )

    assert plan.effects == (Effect(Gateway.MAIL, "before"), charge(1), audit)
    assert plan.run(performed.handler()) == "approved"
    assert performed.log == [Effect(Gateway.MAIL, "before"), charge(1), audit]


def test_a_step_can_depend_on_another_result() -> None:
    performed = Performed()

    def second(reply: dict[str, Any]) -> EffectMonad[Any]:
        return EffectMonad.perform(charge(reply["amount"] * 1000)).map(
            lambda again: (reply["status"], again["status"])
        )

    plan = EffectMonad.perform(charge(1)).bind(second)

    assert plan.run(performed.handler()) == ("approved", "declined")
    assert performed.log == [charge(1), charge(1000)]


def test_a_known_monad_bound_to_a_result_dependent_one_performs_its_effects_first() -> None:
    performed = Performed()
    plan = EffectMonad("v", [Effect(Gateway.MAIL, 1)]).bind(
        lambda value: EffectMonad.perform(charge(2)).map(lambda reply: (value, reply["status"]))
    )

    assert plan.depends_on_result
    assert plan.effects == (Effect(Gateway.MAIL, 1), charge(2))
    assert plan.run(performed.handler()) == ("v", "approved")
    assert performed.log == [Effect(Gateway.MAIL, 1), charge(2)]


def test_a_long_chain_and_a_deep_recursion_of_steps_run_without_recursion_error() -> None:
    handler = EffectHandler()
    handler.register_handler(Gateway.AUDIT, lambda effect: effect.payload + 1)
    long = EffectMonad.perform(Effect(Gateway.AUDIT, 0))
    for _ in range(3000):
        long = long.bind(lambda n: EffectMonad.perform(Effect(Gateway.AUDIT, n)))

    def poll(n: int) -> EffectMonad[int]:  # "until done", one level deeper per result
        if n >= 3000:
            return EffectMonad.pure(n)
        return EffectMonad.perform(Effect(Gateway.AUDIT, n)).bind(poll)

    assert long.run(handler) == 3001
    assert EffectMonad.pure(0).bind(poll).run(handler) == 3000


def test_perform_takes_an_effect_library_effect_with_callbacks_and_do_programs() -> None:
    performed = Performed()

    @do
    def two_charges() -> Any:
        first = yield fx.Effect(charge(1))
        second = yield fx.Effect(charge(first["amount"] + 1))
        return second["amount"]

    with_callbacks = fx.Effect(charge(5)).on(success=lambda reply: reply["amount"] * 2)
    handler = performed.handler()

    assert EffectMonad.perform(with_callbacks).map(str).run(handler) == "10"
    assert EffectMonad.perform(two_charges()).run(handler) == 2
    assert performed.log == [charge(5), charge(1), charge(2)]


def test_library_intents_give_their_result_too() -> None:
    plan = EffectMonad.perform(fx.Constant(41)).map(lambda n: n + 1)

    assert plan.run(EffectHandler()) == 42


# -- the value before the run; equality; repr; immutability --------------------------------


def test_the_value_of_a_result_dependent_monad_before_the_run_is_a_clear_error() -> None:
    plan = EffectMonad.perform(charge(1)).map(lambda reply: reply["status"])

    with pytest.raises(PendingResultError, match=r"Gateway\.CHARGE.*Run it") as excinfo:
        _ = plan.value

    assert isinstance(excinfo.value, AtlasEdaError)
    assert plan.effects == (charge(1),)
    assert plan.depends_on_result
    assert not EffectMonad.pure(1).depends_on_result
    assert EffectMonad.pure(1).bind(lambda _: EffectMonad.pure(2)).value == 2


def test_monads_built_alike_are_equal() -> None:
    def status(reply: dict[str, Any]) -> str:
        return str(reply["status"])

    def other(reply: dict[str, Any]) -> str:
        return "other"

    base = EffectMonad.perform(charge(1))

    assert base == EffectMonad.perform(charge(1))
    assert base != EffectMonad.perform(charge(2))
    assert base.map(status) == base.map(status)
    assert base.map(status) != base.map(other)
    assert base.bind(decide) == base.bind(decide)
    assert base.bind(decide) != base.map(status)
    assert base.with_effect(ship()) == base.with_effect(ship())
    assert base != EffectMonad(None, [charge(1)])  # performing it is not the same as knowing
    with pytest.raises(TypeError):
        hash(base)


def test_repr_names_the_effect_whose_result_is_awaited_and_the_steps() -> None:
    plan = EffectMonad.perform(charge(1)).bind(decide).map(str)

    assert repr(plan) == (
        "EffectMonad(<result of Effect(Gateway.CHARGE, {'amount': 1}, 'card'), then 2 steps>, "
        "effects=[Effect(Gateway.CHARGE, {'amount': 1}, 'card')])"
    )
    assert repr(EffectMonad.perform(ship())) == (
        "EffectMonad(<result of Effect(Gateway.SHIP, {'order': 1})>, "
        "effects=[Effect(Gateway.SHIP, {'order': 1})])"
    )


def test_building_on_a_result_dependent_monad_leaves_it_alone_and_it_runs_again() -> None:
    performed = Performed()
    handler = performed.handler()
    base = EffectMonad.perform(charge(1))
    mapped = base.map(lambda reply: reply["amount"])
    _ = base.with_effect(ship()).bind(decide)

    assert base.run(handler) == {"status": "approved", "amount": 1}
    assert mapped.run(handler) == 1
    assert mapped.run(handler) == 1
    assert performed.log == [charge(1)] * 3


def test_one_result_dependent_monad_runs_in_many_threads_at_once() -> None:
    handler = EffectHandler()
    handler.register_handler(Gateway.AUDIT, lambda effect: threading.get_ident())
    plan = EffectMonad.perform(Effect(Gateway.AUDIT)).bind(
        lambda ident: EffectMonad.perform(Effect(Gateway.AUDIT)).map(lambda again: (ident, again))
    )
    results: list[tuple[int, int]] = []
    alive = threading.Barrier(8)  # no thread ends (and leaves its id to another) before all ran

    def run() -> None:
        results.append(plan.run(handler))
        alive.wait(timeout=10)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 8
    assert all(first == second for first, second in results)
    assert len({first for first, _ in results}) == 8


# -- checking performers -----------------------------------------------------------------


def test_effects_known_before_the_run_are_all_checked_before_any_is_performed() -> None:
    performed = Performed()
    handler = performed.handler(Gateway.CHARGE, Gateway.MAIL)  # nothing ships, audits
    plan = (
        EffectMonad.pure(0)
        .with_effect(Effect(Gateway.MAIL))
        .bind(lambda _: EffectMonad.perform(charge(1)))
        .with_effect(Effect(Gateway.AUDIT))
    )

    with pytest.raises(UnhandledEffectError, match=r"Gateway\.AUDIT.*nothing was performed") as e:
        plan.run(handler)

    assert e.value.effects == (Effect(Gateway.AUDIT),)
    assert performed.log == []
    with pytest.raises(UnhandledEffectError, match=r"Gateway\.SHIP.*nothing was performed"):
        EffectMonad.perform(ship()).run(handler)
    assert performed.log == []


def test_a_steps_effects_are_checked_when_reached_all_before_any_of_them() -> None:
    performed = Performed()
    handler = performed.handler(Gateway.CHARGE, Gateway.MAIL, Gateway.SHIP)
    plan = EffectMonad.perform(charge(1)).bind(
        lambda reply: (
            EffectMonad.pure(reply)
            .with_effect(ship())
            .with_effect(Effect(Gateway.AUDIT, reply["amount"]))
        )
    )

    with pytest.raises(UnhandledEffectError) as excinfo:
        plan.run(handler)

    assert excinfo.value.effects == (Effect(Gateway.AUDIT, 1),)
    message = str(excinfo.value)
    assert "Gateway.AUDIT" in message
    assert "register_handler" in message
    assert "the effects before it were performed" in message
    assert performed.log == [charge(1)]  # the charge, not the step's shipping


def test_a_steps_result_dependent_effect_is_checked_when_reached() -> None:
    performed = Performed()
    handler = performed.handler(Gateway.CHARGE)
    plan = EffectMonad.perform(charge(1)).bind(lambda _: EffectMonad.perform(ship()))

    with pytest.raises(UnhandledEffectError, match=r"Gateway\.SHIP.*were performed"):
        plan.run(handler)
    assert performed.log == [charge(1)]


def test_a_performers_exception_stops_the_run_where_it_is_raised() -> None:
    performed = Performed()
    handler = performed.handler()
    refused = PermissionError("card blocked")

    def blocked(effect: Effect) -> None:
        raise refused

    handler.register_handler(Gateway.SHIP, blocked)
    plan = (
        EffectMonad.perform(charge(1))
        .bind(lambda _: EffectMonad.perform(ship()))
        .with_effect(Effect(Gateway.AUDIT))
    )

    with pytest.raises(PermissionError) as excinfo:
        plan.run(handler)
    assert excinfo.value is refused
    assert performed.log == [charge(1)]


def test_an_exception_in_a_step_propagates_as_it_is() -> None:
    boom = KeyError("status")
    performed = Performed()

    def step(reply: dict[str, Any]) -> EffectMonad[None]:
        raise boom

    plan = EffectMonad.perform(charge(1)).bind(step).with_effect(Effect(Gateway.AUDIT))

    with pytest.raises(KeyError) as excinfo:
        plan.run(performed.handler())
    assert excinfo.value is boom
    assert performed.log == [charge(1)]


def test_a_bind_step_not_returning_a_monad_is_a_clear_type_error_when_reached() -> None:
    plan = EffectMonad.perform(charge(1)).bind(lambda reply: reply)  # type: ignore[arg-type, return-value]

    with pytest.raises(TypeError, match=r"EffectMonad.*got dict.*use map"):
        plan.run(Performed().handler())


# -- other handlers ------------------------------------------------------------------------


def test_a_plain_callable_is_called_once_per_effect_and_its_return_is_the_result() -> None:
    seen: list[Effect] = []

    def perform(effect: Effect) -> Any:
        seen.append(effect)
        return {"status": "declined"} if effect.type is Gateway.CHARGE else None

    plan = EffectMonad.perform(charge(1)).bind(decide)
    approving = EffectMonad.perform(charge(1)).bind(
        lambda _: EffectMonad.pure("sent").with_effect(Effect(Gateway.MAIL))
    )

    assert plan.run(perform) == "declined"
    assert approving.run(perform) == "sent"
    assert seen == [charge(1), charge(1), Effect(Gateway.MAIL)]


def test_an_effect_library_dispatcher_feeds_results_and_refuses_a_missing_performer() -> None:
    performed = Performed()
    composed = fx.ComposedDispatcher([performed.handler(Gateway.CHARGE), fx.base_dispatcher])

    assert EffectMonad.perform(charge(1)).map(lambda r: r["status"]).run(composed) == "approved"
    with pytest.raises(UnhandledEffectError, match=r"Gateway\.SHIP.*were performed"):
        EffectMonad.perform(charge(1)).bind(decide).run(composed)
    assert performed.log == [charge(1), charge(1)]


# -- the monad laws, on what a run gives and performs --------------------------------------

amounts = st.integers(min_value=0, max_value=300)


def charging(offset: int) -> Callable[[Any], EffectMonad[Any]]:
    """A step charging more than it was given (a value or a charge's reply)."""

    def f(value: Any) -> EffectMonad[Any]:
        amount = value["amount"] if isinstance(value, dict) else int(value)
        return EffectMonad.perform(charge(amount + offset)).bind(decide)

    return f


def outcome(monad: EffectMonad[Any]) -> tuple[Any, list[Effect]]:
    performed = Performed()
    return monad.run(performed.handler()), performed.log


@given(amount=amounts, offset=amounts)
def test_left_identity_on_runs(amount: int, offset: int) -> None:
    f = charging(offset)

    assert outcome(EffectMonad.pure(amount).bind(f)) == outcome(f(amount))


@given(amount=amounts)
def test_right_identity_on_runs(amount: int) -> None:
    m = EffectMonad.perform(charge(amount))

    assert outcome(m.bind(EffectMonad.pure)) == outcome(m)


@given(amount=amounts, f_offset=amounts, g_offset=amounts)
def test_associativity_on_runs(amount: int, f_offset: int, g_offset: int) -> None:
    m = EffectMonad.perform(charge(amount)).map(lambda reply: reply["amount"])
    f = lambda n: EffectMonad.perform(charge(n + f_offset))  # noqa: E731
    g = charging(g_offset)

    assert outcome(m.bind(f).bind(g)) == outcome(m.bind(lambda x: f(x).bind(g)))


# -- on the bus: traces, recording and replay ----------------------------------------------


def make_shop(limit: int = 100) -> tuple[EventBus, Performed]:
    """A shop whose ORDER_PLACED handler charges the card, then on the reply either
    publishes PAYMENT_FAILED or ships and mails the customer."""
    performed = Performed(limit)
    handler = performed.handler()
    bus = EventBus(effect_handler=handler)

    def on_placed(event: Any) -> EffectMonad[str]:
        order = event.data["order"]

        def on_reply(reply: dict[str, Any]) -> EffectMonad[str]:
            if reply["status"] == "declined":
                bus.publish(Till.PAYMENT_FAILED, {"order": order}, source="payments")
                return EffectMonad.pure("failed")
            return (
                EffectMonad.pure("shipped")
                .with_effect(ship(order))
                .with_effect(Effect(Gateway.MAIL, {"order": order}, "shipping notice"))
            )

        return EffectMonad.perform(
            Effect(Gateway.CHARGE, {"amount": event.data["amount"]}, "card")
        ).bind(on_reply)

    def on_failed(event: Any) -> EffectMonad[None]:
        notice = Effect(Gateway.MAIL, {"order": event.data["order"]}, "payment failed")
        return EffectMonad.pure(None).with_effect(notice)

    bus.subscribe(Till.ORDER_PLACED, on_placed)
    bus.subscribe(Till.PAYMENT_FAILED, on_failed)
    return bus, performed


def test_the_bus_runs_a_decision_on_a_reply() -> None:
    bus, performed = make_shop()

    bus.publish(Till.ORDER_PLACED, {"order": 1, "amount": 50})
    bus.publish(Till.ORDER_PLACED, {"order": 2, "amount": 500})

    assert [e.type for e in reversed(bus.get_history())] == [
        Till.ORDER_PLACED,
        Till.ORDER_PLACED,
        Till.PAYMENT_FAILED,
    ]
    assert [(e.type, e.payload) for e in performed.log] == [
        (Gateway.CHARGE, {"amount": 50}),
        (Gateway.SHIP, {"order": 1}),
        (Gateway.MAIL, {"order": 1}),
        (Gateway.CHARGE, {"amount": 500}),
        (Gateway.MAIL, {"order": 2}),
    ]


def test_every_effect_of_a_decision_is_in_the_trace_with_its_result() -> None:
    bus, _ = make_shop()

    shipped = bus.publish(Till.ORDER_PLACED, {"order": 1, "amount": 50})
    failed = bus.publish(Till.ORDER_PLACED, {"order": 2, "amount": 500})

    [delivery] = bus.trace(shipped).deliveries
    assert [(o.effect.type, o.result) for o in delivery.effects] == [
        (Gateway.CHARGE, {"status": "approved", "amount": 50}),
        (Gateway.SHIP, {"done": "SHIP"}),
        (Gateway.MAIL, {"done": "MAIL"}),
    ]
    trace = bus.trace(failed)
    [delivery] = trace.deliveries
    assert [(o.effect.type, o.result) for o in delivery.effects] == [
        (Gateway.CHARGE, {"status": "declined", "amount": 500}),
    ]
    [child] = delivery.children
    assert child.event.type is Till.PAYMENT_FAILED
    assert child.event.causation_id == failed
    assert [o.effect.description for o in child.all_effects()] == ["payment failed"]


def test_a_missing_performer_reached_on_the_bus_is_a_handler_failure() -> None:
    handler = EffectHandler()
    handler.register_handler(Gateway.CHARGE, lambda effect: "ok")
    bus = EventBus(effect_handler=handler)
    bus.subscribe(
        Till.ORDER_PLACED,
        lambda event: EffectMonad.perform(charge(1)).bind(lambda _: EffectMonad.perform(ship())),
    )

    bus.publish(Till.ORDER_PLACED, {"order": 1})

    [error] = bus.get_history(EventType.ERROR)
    assert "Gateway.SHIP" in json.dumps(error.data)
    [delivery] = bus.trace(error.causation_id or "").deliveries
    assert [o.effect for o in delivery.effects] == [charge(1)]
    assert isinstance(delivery.error, UnhandledEffectError)


def record_shop(path: Path) -> Path:
    """Line 1: order 1 approved (charge, ship, mail); line 2: order 2 declined (charge),
    line 3: its PAYMENT_FAILED (mail)."""
    bus, _ = make_shop()
    with record(bus, path):
        bus.publish(Till.ORDER_PLACED, {"order": 1, "amount": 50}, source="web")
        bus.publish(Till.ORDER_PLACED, {"order": 2, "amount": 500}, source="web")
    return path


@pytest.mark.parametrize("mode", ["stub", "check"])
def test_a_decision_on_a_reply_replays_exactly_with_recorded_results(
    tmp_path: Path, mode: str
) -> None:
    cassette = Cassette.load(record_shop(tmp_path / "shop.jsonl"))
    assert [entry.event.type for entry in cassette] == [
        Till.ORDER_PLACED,
        Till.ORDER_PLACED,
        Till.PAYMENT_FAILED,
    ]
    # The replaying shop's gateway would decide otherwise: it declines everything. The
    # recorded replies decide, and nothing is really performed.
    bus, performed = make_shop(limit=0)

    report = replay(cassette, bus, mode=mode)

    report.assert_no_divergence()
    assert report.events_matched == 3
    assert performed.log == []


def tampered_reply(path: Path, line: int, status: str) -> Cassette:
    """The cassette with the charge's recorded reply on ``line`` saying ``status``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[line - 1])
    effects = json.loads(item["atlaseffects"])
    assert effects[0]["type"] == "Gateway.CHARGE"
    effects[0]["result"]["status"] = status
    item["atlaseffects"] = json.dumps(effects)
    lines[line - 1] = json.dumps(item)
    path.write_text("".join(text + "\n" for text in lines), encoding="utf-8")
    return Cassette.load(path)


@pytest.mark.parametrize("mode", ["stub", "check"])
def test_a_tampered_reply_takes_the_other_branch_and_diverges(tmp_path: Path, mode: str) -> None:
    path = record_shop(tmp_path / "shop.jsonl")
    cassette = tampered_reply(path, 1, "declined")  # order 1 was approved

    report = replay(cassette, make_shop()[0], mode=mode)

    assert not report.ok
    divergence = report.divergence
    assert divergence is not None
    if mode == "check":  # effects are compared: order 1 was not shipped
        assert divergence.position == 1
        assert "Gateway.SHIP" in (divergence.expected or "")
        assert "recorded but not performed" in divergence.reason
    else:  # declined, the handler published PAYMENT_FAILED where the next root is recorded
        assert divergence.position == 2
        assert "Till.PAYMENT_FAILED" in (divergence.actual or "")
        assert "extra Till.PAYMENT_FAILED" in divergence.reason


@pytest.mark.parametrize("mode", ["stub", "check"])
def test_a_reply_tampered_to_approve_diverges_where_the_failure_was_recorded(
    tmp_path: Path, mode: str
) -> None:
    path = record_shop(tmp_path / "shop.jsonl")
    cassette = tampered_reply(path, 2, "approved")  # order 2 was declined

    report = replay(cassette, make_shop()[0], mode=mode)

    assert not report.ok
    divergence = report.divergence
    assert divergence is not None
    if mode == "check":  # effects are compared: order 2 was shipped
        assert divergence.position == 2
        assert "Gateway.SHIP" in (divergence.actual or "")
        assert "performed but not recorded" in divergence.reason
    else:  # shipping, not recorded, failed the handler where PAYMENT_FAILED is recorded
        assert divergence.position == 3
        assert divergence.reason == "expected Till.PAYMENT_FAILED, got EventType.ERROR"
        assert "Gateway.SHIP" in (divergence.actual or "")


@pytest.mark.parametrize("not_callable", [None, 42, "handler"])
def test_running_a_result_dependent_monad_with_a_non_callable_is_a_type_error(
    not_callable: Any,
) -> None:
    with pytest.raises(TypeError, match="EffectHandler or a callable"):
        EffectMonad.perform(charge(1)).run(not_callable)


def test_an_effect_library_dispatcher_checks_known_effects_before_performing_any() -> None:
    performed = Performed()
    composed = fx.ComposedDispatcher([performed.handler(Gateway.CHARGE), fx.base_dispatcher])
    plan = EffectMonad.perform(charge(1)).with_effect(Effect(Gateway.AUDIT))

    with pytest.raises(UnhandledEffectError, match=r"Gateway\.AUDIT.*nothing was performed"):
        plan.run(composed)
    assert performed.log == []
