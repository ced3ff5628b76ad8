"""Replaying cassettes into a fresh system (atlas_eda.testing.replay)."""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_eda import Effect, EffectHandler, EffectMonad, EffectType, Event, EventBus, EventType
from atlas_eda.effects import effect_observer, effect_stub
from atlas_eda.testing import (
    MODES,
    Cassette,
    Divergence,
    ReplayedEffectError,
    ReplayError,
    ReplayReport,
    UnexpectedEffectError,
    record,
    register_types,
    replay,
)


class Checkout(enum.Enum):
    """The order workflow's events."""

    PLACED = "order.placed"
    PAID = "order.paid"
    REJECTED = "order.rejected"
    SHIPPED = "order.shipped"


class Payments(enum.Enum):
    """The order workflow's effects."""

    CHARGE = "payment.charge"
    MAIL = "mail.send"


register_types(Checkout, Payments)


class PaymentDeclined(Exception):
    """What the payment provider raises for amounts it refuses outright."""


@dataclass
class Shop:
    """A system under test: the payment's result decides PAID or REJECTED."""

    bus: EventBus
    handler: EffectHandler
    charges: list[Any] = field(default_factory=list)
    mails: list[Any] = field(default_factory=list)


def make_shop(approve_limit: int = 100, *, shipped_by: Checkout = Checkout.PAID) -> Shop:
    """The shop; ``shipped_by=Checkout.PLACED`` makes the payment's handler publish
    SHIPPED right after PAID, instead of PAID's handler: the same events, effects and data
    in the same order, only SHIPPED has another cause."""
    handler = EffectHandler()
    bus = EventBus(effect_handler=handler)
    shop = Shop(bus, handler)

    def charge(effect: Effect) -> dict[str, Any]:
        shop.charges.append(effect.payload)
        if effect.payload["amount"] > 1000:
            raise PaymentDeclined(f"amount {effect.payload['amount']} refused")
        return {"approved": effect.payload["amount"] <= approve_limit}

    def mail(effect: Effect) -> dict[str, Any]:
        shop.mails.append(effect.payload)
        return {"queued": True}

    handler.register_handler(Payments.CHARGE, charge)
    handler.register_handler(Payments.MAIL, mail)

    def on_placed(event: Event) -> None:
        order, amount = event.data["order"], event.data["amount"]
        outcome = handler.handle(
            Effect(Payments.CHARGE, {"order": order, "amount": amount}, "card")
        )
        if outcome["approved"]:
            bus.publish(Checkout.PAID, {"order": order}, source="payments")
            if shipped_by is Checkout.PLACED:
                bus.publish(Checkout.SHIPPED, {"order": order})
        else:
            bus.publish(Checkout.REJECTED, {"order": order, "reason": "limit"}, source="payments")

    def on_paid(event: Event) -> EffectMonad[None]:
        if shipped_by is Checkout.PAID:
            bus.publish(Checkout.SHIPPED, {"order": event.data["order"]})
        mail = Effect(Payments.MAIL, {"order": event.data["order"]}, "shipping notice")
        return EffectMonad.pure(None).with_effect(mail)

    bus.subscribe(Checkout.PLACED, on_placed)
    bus.subscribe(Checkout.PAID, on_paid)
    return shop


def record_session(path: Path) -> Path:
    """Record the session: paid and shipped (lines 1-3), rejected (4-5), declined (6-7)."""
    shop = make_shop()
    with record(shop.bus, path):
        shop.bus.publish(Checkout.PLACED, {"order": 1, "amount": 50}, source="web")
        shop.bus.publish(Checkout.PLACED, {"order": 2, "amount": 500}, source="web")
        shop.bus.publish(Checkout.PLACED, {"order": 3, "amount": 5000}, source="web")
    return path


@pytest.fixture
def cassette_path(tmp_path: Path) -> Path:
    return record_session(tmp_path / "orders.jsonl")


def tamper(path: Path, change: Callable[[list[str]], list[str]]) -> Cassette:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("".join(line + "\n" for line in change(lines)), encoding="utf-8")
    return Cassette.load(path)


def edit_line(number: int, change: Callable[[dict[str, Any]], None]) -> Callable[..., list[str]]:
    def edit(lines: list[str]) -> list[str]:
        item = json.loads(lines[number - 1])
        change(item)
        lines[number - 1] = json.dumps(item)
        return lines

    return edit


def test_the_recording_is_what_the_tests_expect(cassette_path: Path) -> None:
    types = [entry.event.type for entry in Cassette.load(cassette_path)]
    assert types == [
        Checkout.PLACED,
        Checkout.PAID,
        Checkout.SHIPPED,
        Checkout.PLACED,
        Checkout.REJECTED,
        Checkout.PLACED,
        EventType.ERROR,
    ]


@pytest.mark.parametrize("mode", MODES)
def test_an_untampered_cassette_replays_without_divergence(cassette_path: Path, mode: str) -> None:
    cassette = Cassette.load(cassette_path)
    shop = make_shop()
    report = replay(cassette, shop.bus, mode=mode)
    assert report.ok, str(report.divergence)
    report.assert_no_divergence()
    assert report.events_matched == 7
    assert report.mode == mode
    published = list(reversed(shop.bus.get_history(limit=None)))
    roots = [e for e in published if e.causation_id is None]
    assert [(e.id, e.timestamp) for e in roots] == [
        (e.event.id, e.event.timestamp) for e in cassette.roots()
    ]
    assert len(published) == 7
    if mode == "perform":
        assert [c["order"] for c in shop.charges] == [1, 2, 3]
        assert shop.mails == [{"order": 1}]
    else:
        assert shop.charges == []
        assert shop.mails == []


def test_the_replayed_session_re_records_to_the_same_events(tmp_path: Path) -> None:
    cassette = Cassette.load(record_session(tmp_path / "first.jsonl"))
    shop = make_shop()
    with record(shop.bus, tmp_path / "second.jsonl"):
        assert replay(cassette, shop.bus, mode="check").ok
    again = Cassette.load(tmp_path / "second.jsonl")
    assert [(e.event.type, e.event.data, e.effects) for e in again] == [
        (e.event.type, e.event.data, e.effects) for e in cassette
    ]


def test_stub_mode_returns_recorded_results_instead_of_performing(cassette_path: Path) -> None:
    # This system would refuse every charge; the recorded results decide instead.
    strict = make_shop(approve_limit=0)
    assert replay(Cassette.load(cassette_path), strict.bus, mode="check").ok
    assert strict.charges == []
    # Performed for real, its refusal shows at the payment effect's line.
    strict = make_shop(approve_limit=0)
    report = replay(Cassette.load(cassette_path), strict.bus, mode="perform")
    assert report.divergence is not None
    assert report.divergence.position == 1
    assert "result differs" in report.divergence.reason
    assert '-  "approved": true' in report.divergence.diff
    assert '+  "approved": false' in report.divergence.diff


def test_a_recorded_error_is_raised_again_with_its_type_name_and_message(
    cassette_path: Path,
) -> None:
    shop = make_shop()
    assert replay(Cassette.load(cassette_path), shop.bus, mode="stub").ok
    error = shop.bus.get_history(EventType.ERROR, limit=1)[0]
    assert error.data["error_type"] == "PaymentDeclined"
    assert error.data["error_message"] == "amount 5000 refused"
    placed = shop.bus.get_history(Checkout.PLACED, limit=1)[0]
    (outcome,) = shop.bus.trace(placed.id).all_effects()
    assert isinstance(outcome.error, ReplayedEffectError)
    assert not isinstance(outcome.error, PaymentDeclined)
    # Not registered: a stand-in named like it, the recorded (qualified) class its type.
    assert outcome.error.recorded_type == f"{PaymentDeclined.__module__}.PaymentDeclined"
    assert outcome.error.recorded_message == "amount 5000 refused"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("recorded_by", "replayed_by", "reason"),
    [
        (
            Checkout.PAID,
            Checkout.PLACED,
            "Checkout.SHIPPED: recorded as caused by event 2 of its tree, replayed as caused "
            "by event 1 of its tree",
        ),
        (
            Checkout.PLACED,
            Checkout.PAID,
            "Checkout.SHIPPED: recorded as caused by event 1 of its tree, replayed as caused "
            "by event 2 of its tree",
        ),
    ],
    ids=["grandchild-becomes-child", "child-becomes-grandchild"],
)
def test_a_child_caused_by_another_parent_diverges_naming_both_causes(
    tmp_path: Path, mode: str, recorded_by: Checkout, replayed_by: Checkout, reason: str
) -> None:
    def session(shipped_by: Checkout, path: Path) -> Cassette:
        shop = make_shop(shipped_by=shipped_by)
        with record(shop.bus, path):
            shop.bus.publish(Checkout.PLACED, {"order": 1, "amount": 50}, source="web")
        return Cassette.load(path)

    cassette = session(recorded_by, tmp_path / "recorded.jsonl")
    live = session(replayed_by, tmp_path / "live.jsonl")
    # The two systems differ only in SHIPPED's cause: the same events in the same order,
    # with the same data, sources and effects (results included).
    assert [(e.event.type, e.event.data, e.event.source, e.effects) for e in live] == [
        (e.event.type, e.event.data, e.event.source, e.effects) for e in cassette
    ]
    causes = {Checkout.PAID: [None, 0, 1], Checkout.PLACED: [None, 0, 0]}  # line indexes
    for shipped_by, recording in ((recorded_by, cassette), (replayed_by, live)):
        ids = [e.event.id for e in recording]
        assert [
            None if e.event.causation_id is None else ids.index(e.event.causation_id)
            for e in recording
        ] == causes[shipped_by]

    report = replay(cassette, make_shop(shipped_by=replayed_by).bus, mode=mode)

    assert report.divergence == Divergence(
        3,
        'Checkout.SHIPPED data {"order": 1}',
        'Checkout.SHIPPED data {"order": 1}',
        "",
        reason,
    )
    assert report.events_matched == 2


# -- tampered cassettes ------------------------------------------------------------------


def check(cassette: Cassette, mode: str = "check") -> Divergence:
    report = replay(cassette, make_shop().bus, mode=mode)
    assert not report.ok, "a tampered cassette must never pass"
    assert report.divergence is not None
    return report.divergence


@pytest.mark.parametrize("mode", MODES)
def test_reordered_children_diverge_at_the_first_moved_line(cassette_path: Path, mode: str) -> None:
    cassette = tamper(cassette_path, lambda lines: [lines[0], lines[2], lines[1], *lines[3:]])
    divergence = check(cassette, mode)
    assert divergence.position == 2
    assert divergence.reason == "expected Checkout.SHIPPED, got Checkout.PAID"


def test_a_child_moved_before_its_root_diverges_at_line_1(cassette_path: Path) -> None:
    cassette = tamper(cassette_path, lambda lines: [lines[1], lines[0], *lines[2:]])
    divergence = check(cassette)
    assert divergence.position == 1
    assert "out of order" in divergence.reason


@pytest.mark.parametrize("mode", MODES)
def test_root_blocks_swapped_diverge_at_the_first_moved_line(
    cassette_path: Path, mode: str
) -> None:
    # The second and third orders' lines (4-5 and 6-7) swapped, each tree intact: this
    # system would behave the same in either order, but the recording says otherwise.
    cassette = tamper(cassette_path, lambda lines: [*lines[:3], *lines[5:], *lines[3:5]])
    divergence = check(cassette, mode)
    assert divergence.position == 4
    assert "out of order" in divergence.reason
    assert replay(cassette, make_shop().bus, mode=mode).events_matched == 3
    assert replay(cassette, make_shop().bus, mode=mode, strict_order=False).ok


def test_two_root_lines_swapped_diverge(tmp_path: Path) -> None:
    bus = EventBus()
    start = time.time()
    with record(bus, tmp_path / "roots.jsonl"):
        for order in range(3):
            bus.publish_event(
                Event(type=Checkout.SHIPPED, data={"order": order}, timestamp=start + order)
            )
    cassette = tamper(tmp_path / "roots.jsonl", lambda lines: [lines[0], lines[2], lines[1]])
    divergence = replay(cassette, EventBus()).divergence
    assert divergence is not None
    assert divergence.position == 2


@pytest.mark.parametrize("mode", MODES)
def test_a_child_line_given_another_cause_diverges_at_that_line(
    cassette_path: Path, mode: str
) -> None:
    root_id = json.loads(cassette_path.read_text(encoding="utf-8").splitlines()[0])["id"]
    # SHIPPED (line 3) was caused by PAID (line 2); the tampered line says by PLACED.
    cassette = tamper(cassette_path, edit_line(3, lambda item: item.update(causationid=root_id)))
    divergence = check(cassette, mode)
    assert divergence.position == 3
    assert divergence.reason == (
        "Checkout.SHIPPED: recorded as caused by event 1 of its tree, replayed as caused by "
        "event 2 of its tree"
    )


def test_a_missing_child_line_diverges_where_it_was(cassette_path: Path) -> None:
    cassette = tamper(cassette_path, lambda lines: lines[:2] + lines[3:])
    divergence = check(cassette)
    assert divergence.position == 3
    assert "extra Checkout.SHIPPED" in divergence.reason
    assert divergence.actual is not None
    assert divergence.actual.startswith("Checkout.SHIPPED")
    assert divergence.expected is not None
    assert divergence.expected.startswith("Checkout.PLACED")


def test_a_missing_root_line_diverges_at_its_orphaned_child(cassette_path: Path) -> None:
    cassette = tamper(cassette_path, lambda lines: lines[:3] + lines[4:])
    divergence = check(cassette)
    assert divergence.position == 4
    assert "Checkout.REJECTED" in divergence.reason


def test_a_missing_last_line_is_an_extra_event_one_past_the_end(cassette_path: Path) -> None:
    cassette = tamper(cassette_path, lambda lines: lines[:-1])
    divergence = check(cassette)
    assert divergence.position == 7
    assert divergence.expected is None
    assert "extra EventType.ERROR" in divergence.reason


def test_a_missing_first_line_diverges_at_line_1(cassette_path: Path) -> None:
    divergence = check(tamper(cassette_path, lambda lines: lines[1:]))
    assert divergence.position == 1


@pytest.mark.parametrize("mode", MODES)
def test_altered_child_data_diverges_at_its_line_with_a_diff(
    cassette_path: Path, mode: str
) -> None:
    cassette = tamper(cassette_path, edit_line(5, lambda item: item["data"].update(order=99)))
    divergence = check(cassette, mode)
    assert divergence.position == 5
    assert divergence.reason.startswith("expected Checkout.REJECTED data ")
    assert '-  "order": 99' in divergence.diff
    assert '+  "order": 2' in divergence.diff


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("line", [2, 3, 5, 7])
def test_any_child_line_with_altered_data_diverges_at_that_line(
    cassette_path: Path, mode: str, line: int
) -> None:
    cassette = tamper(cassette_path, edit_line(line, lambda item: item["data"].update(x=1)))
    divergence = check(cassette, mode)
    assert divergence.position == line
    assert '-  "x": 1' in divergence.diff


@pytest.mark.parametrize("line", [1, 4, 6])
def test_any_root_line_with_altered_amount_diverges_at_that_line(
    cassette_path: Path, line: int
) -> None:
    cassette = tamper(cassette_path, edit_line(line, lambda item: item["data"].update(amount=77)))
    divergence = check(cassette)
    assert divergence.position == line
    assert "payload differs" in divergence.reason


def test_an_altered_source_diverges(cassette_path: Path) -> None:
    cassette = tamper(cassette_path, edit_line(2, lambda item: item.update(source="bank")))
    divergence = check(cassette)
    assert divergence.position == 2
    assert "source" in divergence.reason


def test_altered_root_data_diverges_at_the_effect_it_changes(cassette_path: Path) -> None:
    cassette = tamper(cassette_path, edit_line(4, lambda item: item["data"].update(amount=7)))
    divergence = check(cassette)
    assert divergence.position == 4
    assert "payload differs" in divergence.reason
    assert '+  "amount": 7' in divergence.diff


def _set_result(result: Any) -> Callable[[dict[str, Any]], None]:
    def change(item: dict[str, Any]) -> None:
        effects = json.loads(item["atlaseffects"])
        effects[0]["result"] = result
        item["atlaseffects"] = json.dumps(effects)

    return change


@pytest.mark.parametrize("mode", ["check", "stub"])
def test_a_changed_effect_result_diverges_where_the_system_reacts(
    cassette_path: Path, mode: str
) -> None:
    cassette = tamper(cassette_path, edit_line(1, _set_result({"approved": False})))
    divergence = check(cassette, mode)
    assert divergence.position == 2
    assert divergence.reason == "expected Checkout.PAID, got Checkout.REJECTED"


def test_a_changed_effect_result_diverges_at_the_effect_when_performed(
    cassette_path: Path,
) -> None:
    cassette = tamper(cassette_path, edit_line(4, _set_result({"approved": True})))
    divergence = check(cassette, "perform")
    assert divergence.position == 4
    assert "result differs" in divergence.reason


def test_an_effect_result_of_the_wrong_shape_is_a_divergence_not_a_crash(
    cassette_path: Path,
) -> None:
    cassette = tamper(cassette_path, edit_line(1, _set_result("yes")))
    divergence = check(cassette)
    # The handler fails on the result; the bus reports it as an ERROR where PAID was.
    assert divergence.position == 2
    assert divergence.reason == "expected Checkout.PAID, got EventType.ERROR"


def test_a_removed_effect_makes_the_system_perform_an_unrecorded_one(
    cassette_path: Path,
) -> None:
    def drop_effects(item: dict[str, Any]) -> None:
        del item["atlaseffects"]

    divergence = check(tamper(cassette_path, edit_line(2, drop_effects)))
    assert divergence.position == 2
    assert "performed but not recorded" in divergence.reason


# -- the report --------------------------------------------------------------------------


def test_the_report_reads_well(cassette_path: Path) -> None:
    cassette = tamper(cassette_path, edit_line(5, lambda item: item["data"].update(order=99)))
    report = replay(cassette, make_shop().bus)
    assert isinstance(report, ReplayReport)
    assert report.events_matched == 4
    assert "\n" not in repr(report)
    assert "\n" not in str(report)
    assert repr(report) == "ReplayReport(mode='check', events_matched=4, diverged at line 5)"
    assert "diverged at line 5" in str(report)
    assert str(cassette_path) in str(report)
    with pytest.raises(AssertionError) as caught:
        report.assert_no_divergence()
    message = str(caught.value)
    assert message.splitlines()[0].endswith("diverged after 4 matching events:")
    assert 'line 5: expected Checkout.REJECTED data {"order": 99, "reason": "limit"}' in message
    assert "expected: Checkout.REJECTED from payments data" in message
    assert '+  "order": 2' in message

    ok = replay(Cassette.load(record_session(cassette_path.parent / "b.jsonl")), make_shop().bus)
    assert repr(ok) == "ReplayReport(mode='check', events_matched=7, ok)"
    assert str(ok).endswith("replay (check) ok: 7 events matched")


def test_an_unknown_mode_is_a_value_error_naming_the_three(cassette_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'stub', 'perform' or 'check'.*'fast'"):
        replay(Cassette.load(cassette_path), make_shop().bus, mode="fast")


def test_a_bus_without_history_cannot_replay(cassette_path: Path) -> None:
    with pytest.raises(ReplayError, match="history_limit"):
        replay(Cassette.load(cassette_path), EventBus(history_limit=0))
    with pytest.raises(ReplayError, match="traces"):
        replay(Cassette.load(cassette_path), EventBus(traces=False))


def test_a_history_too_small_for_a_tree_is_a_replay_error(cassette_path: Path) -> None:
    shop = make_shop()
    small = EventBus(history_limit=1, effect_handler=shop.handler)
    small.subscribe(Checkout.PLACED, lambda e: small.publish(Checkout.PAID, {"order": 1}))
    small.subscribe(Checkout.PAID, lambda e: small.publish(Checkout.SHIPPED, {"order": 1}))
    with pytest.raises(ReplayError, match="history_limit=1"):
        replay(Cassette.load(cassette_path), small)


def test_the_stub_is_in_force_during_a_replay_and_gone_after_it(cassette_path: Path) -> None:
    """Replay sets the stub once for all its roots: the system's handlers see it while
    each root is delivered, and nothing of it is left once replay returns or raises."""
    shop = make_shop()
    seen: list[object] = []
    shop.bus.subscribe(Checkout.PLACED, lambda e: seen.append(effect_stub.get()))
    assert replay(Cassette.load(cassette_path), shop.bus, "stub").ok
    assert seen
    assert all(stub is not None for stub in seen)
    assert effect_stub.get() is None
    small = EventBus(history_limit=1, effect_handler=shop.handler)
    small.subscribe(Checkout.PLACED, lambda e: small.publish(Checkout.PAID, {"order": 1}))
    small.subscribe(Checkout.PAID, lambda e: small.publish(Checkout.SHIPPED, {"order": 1}))
    with pytest.raises(ReplayError, match="history_limit=1"):
        replay(Cassette.load(cassette_path), small)
    assert effect_stub.get() is None


def test_a_raising_publish_is_reported_not_raised(cassette_path: Path) -> None:
    shop = make_shop()

    def broken(event: Event) -> Event:
        raise RuntimeError("middleware down")

    shop.bus.add_middleware(broken)
    divergence = replay(Cassette.load(cassette_path), shop.bus).divergence
    assert divergence is not None
    assert divergence.position == 1
    assert "MiddlewareError" in divergence.reason


def test_an_empty_cassette_replays_trivially(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    report = replay(Cassette.load(tmp_path / "empty.jsonl"), make_shop().bus)
    assert report.ok
    assert report.events_matched == 0


# -- the effect stub hook ----------------------------------------------------------------


def test_a_stub_dispatcher_replaces_performers_and_is_still_observed() -> None:
    from effect import sync_performer

    performed: list[object] = []
    handler = EffectHandler()
    handler.register_handler(Payments.MAIL, performed.append)
    seen: list[tuple[object, Any, BaseException | None]] = []
    asked: list[object] = []

    def stub(intent: object) -> Any:
        asked.append(intent)
        return sync_performer(lambda _d, i: "stubbed")

    observer_token = effect_observer.set(lambda *args: seen.append(args))
    stub_token = effect_stub.set(stub)
    try:
        mail = Effect(Payments.MAIL, {"to": "ann"})
        assert EffectMonad.pure(1).with_effect(mail).run(handler) == 1
        assert handler.handle(mail) == "stubbed"
    finally:
        effect_stub.reset(stub_token)
        effect_observer.reset(observer_token)
    assert performed == []
    assert seen == [(mail, "stubbed", None), (mail, "stubbed", None)]
    assert asked == [mail, mail]  # checking for performers never asks the stub


def test_an_unrecorded_effect_is_not_performed_in_check_mode(cassette_path: Path) -> None:
    shop = make_shop()
    shop.bus.subscribe(
        Checkout.SHIPPED,
        lambda e: EffectMonad.pure(None).with_effect(Effect(Payments.MAIL, {"extra": 1})),
    )
    report = replay(Cassette.load(cassette_path), shop.bus)
    assert report.divergence is not None
    assert report.divergence.position == 3
    assert "performed but not recorded" in report.divergence.reason
    assert shop.mails == []
    shipped = shop.bus.get_history(Checkout.SHIPPED, limit=1)[0]
    (outcome,) = shop.bus.trace(shipped.id).all_effects()
    assert isinstance(outcome.error, UnexpectedEffectError)


@pytest.mark.parametrize("effect_first", [False, True])
def test_nested_effects_replay_whichever_order_they_were_performed_in(
    tmp_path: Path, effect_first: bool
) -> None:
    def make() -> tuple[EventBus, list[Any]]:
        performed: list[Any] = []
        handler = EffectHandler()
        handler.register_handler(Payments.MAIL, lambda e: performed.append(e.payload) or "sent")
        bus = EventBus(effect_handler=handler)

        def on_placed(event: Event) -> EffectMonad[None]:
            mail = Effect(Payments.MAIL, {"to": "placed"})
            if effect_first:  # performed before the child is published
                handler.handle(Effect(Payments.MAIL, {"to": "early"}))
            bus.publish(Checkout.PAID, {"order": event.data["order"]})
            return EffectMonad.pure(None).with_effect(mail)

        def on_paid(event: Event) -> EffectMonad[None]:
            bus.publish(Checkout.SHIPPED, event.data)
            return EffectMonad.pure(None).with_effect(Effect(Payments.MAIL, {"to": "paid"}))

        bus.subscribe(Checkout.PLACED, on_placed)
        bus.subscribe(Checkout.PAID, on_paid)
        bus.subscribe(Checkout.SHIPPED, lambda e: handler.handle(Effect(Payments.MAIL, {"to": 3})))
        return bus, performed

    bus, live = make()
    with record(bus, tmp_path / "nested.jsonl"):
        bus.publish(Checkout.PLACED, {"order": 1})
        bus.publish(Checkout.PLACED, {"order": 2})
    assert len(live) == (8 if effect_first else 6)
    cassette = Cassette.load(tmp_path / "nested.jsonl")
    for mode in MODES:
        fresh, performed = make()
        report = replay(cassette, fresh, mode=mode)
        assert report.ok, str(report.divergence)
        assert report.events_matched == 6
        assert performed == (live if mode == "perform" else [])


def test_an_error_report_naming_a_child_by_id_matches_its_new_id(tmp_path: Path) -> None:
    def make() -> EventBus:
        bus = make_shop().bus

        def fail(event: Event) -> None:
            raise RuntimeError(f"cannot ship order {event.data['order']}")

        bus.subscribe(Checkout.SHIPPED, fail)
        return bus

    bus = make()
    with record(bus, tmp_path / "failing.jsonl"):
        bus.publish(Checkout.PLACED, {"order": 1, "amount": 5}, source="web")
    cassette = Cassette.load(tmp_path / "failing.jsonl")
    error = cassette.entries[-1].event
    assert error.type is EventType.ERROR
    assert error.data["event_id"] == cassette.entries[2].event.id
    for mode in MODES:
        report = replay(cassette, make(), mode=mode)
        assert report.ok, str(report.divergence)
    tampered = tamper(
        tmp_path / "failing.jsonl",
        edit_line(len(cassette), lambda item: item["data"].update(event_id=error.id)),
    )
    divergence = replay(tampered, make()).divergence
    assert divergence is not None
    assert divergence.position == len(cassette)
    assert '"event_id"' in divergence.diff


def test_a_recorded_failure_changed_to_a_success_diverges(cassette_path: Path) -> None:
    def succeed(item: dict[str, Any]) -> None:
        effects = json.loads(item["atlaseffects"])
        del effects[0]["error"]
        effects[0]["result"] = {"approved": True}
        item["atlaseffects"] = json.dumps(effects)

    cassette = tamper(cassette_path, edit_line(6, succeed))
    performed = check(cassette, "perform")
    assert performed.position == 6
    assert "outcome differs" in performed.reason
    assert performed.actual is not None
    declined = f"{PaymentDeclined.__module__}.PaymentDeclined"  # recorded by qualified name
    assert f"✗ {declined}: amount 5000 refused" in performed.actual
    stubbed = check(cassette, "check")
    assert stubbed.position == 7
    assert stubbed.reason == "expected EventType.ERROR, got Checkout.PAID"


# -- the stub's effect order -------------------------------------------------------------


def _tree(parents: list[int]) -> tuple[list[int], dict[int, int]]:
    """A tree of ``len(parents) + 1`` nodes, node n + 1 a child of node
    ``parents[n] % (n + 1)``: its nodes in the order of a recording's lines, and each
    node's parent. Children are numbered in publish order, so the nodes listed depth
    first, children in order, are the lines of a recording."""
    children: dict[int, list[int]] = {0: []}
    for n, parent in enumerate(parents, start=1):
        children[parent % n].append(n)
        children[n] = []
    lines: list[int] = []
    pending = [0]
    while pending:
        node = pending.pop()
        lines.append(node)
        pending.extend(reversed(children[node]))
    return lines, {kid: node for node, kids in children.items() for kid in kids}


def _tree_block(parents: list[int], effects: Callable[[int], list[Any]]) -> list[Any]:
    """The cassette lines of :func:`_tree` ``(parents)``: node n is event ``e{n}``
    performing ``effects(n)``."""
    from atlas_eda.testing.cassette import CassetteEntry

    lines, cause = _tree(parents)
    return [
        CassetteEntry(
            line,
            Event(
                type=EventType.COMMAND_EXECUTED,
                id=f"e{node}",
                correlation_id="e0",
                causation_id=None if node == 0 else f"e{cause[node]}",
            ),
            tuple(effects(node)),
        )
        for line, node in enumerate(lines, start=1)
    ]


@given(st.lists(st.integers(min_value=0, max_value=30), min_size=0, max_size=30))
def test_effect_order_of_a_tree_in_publish_order_is_that_of_the_rebuilt_tree(
    parents: list[int],
) -> None:
    """The one-pass order (lines in publish order, as recorders write them) is the order
    the causation ids give when the tree is rebuilt from them."""
    from atlas_eda.testing.cassette import RecordedEffect
    from atlas_eda.testing.replay import _execution_order, _execution_order_of_lines

    block = _tree_block(
        parents,
        lambda node: [RecordedEffect(EffectType.LOGGING, [node, k]) for k in range(node % 3)],
    )
    cause = _tree(parents)[1]
    assert _execution_order(block) == _execution_order_of_lines(block)
    # Every effect once, each event's after its descendants'.
    order = [effect.payload[0] for effect in _execution_order(block)]
    assert sorted(order) == sorted(e.payload[0] for entry in block for e in entry.effects)
    for position, node in enumerate(order):
        ancestor = cause.get(node)
        while ancestor is not None:
            assert ancestor not in order[:position]
            ancestor = cause.get(ancestor)


# Effects the stub property below draws from: few, so that intents often match.
_STUB_VOCABULARY = [
    (EffectType.LOGGING, 1),
    (EffectType.LOGGING, 2),
    (EffectType.NOTIFICATION, 1),
]


def _stub_block(nodes: list[tuple[int, list[int]]]) -> list[Any]:
    """A recorded tree in publish order: its root performs effects 0 and 1 of
    ``_STUB_VOCABULARY``, node n + 1 is a child of node ``parent % (n + 1)`` performing
    ``kinds`` (``nodes[n] == (parent, kinds)``)."""
    from atlas_eda.testing.cassette import RecordedEffect

    effects_of = {0: [0, 1], **{n: kinds for n, (_, kinds) in enumerate(nodes, start=1)}}
    return _tree_block(
        [parent for parent, _ in nodes],
        lambda node: [RecordedEffect(*_STUB_VOCABULARY[k]) for k in effects_of[node]],
    )


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=30),
            st.lists(st.integers(min_value=0, max_value=2), max_size=3),
        ),
        min_size=0,
        max_size=6,
    ),
    st.lists(
        st.tuples(st.integers(min_value=-1, max_value=7), st.integers(min_value=0, max_value=2)),
        max_size=12,
    ),
)
def test_the_stub_hands_out_what_the_plain_rule_names(
    nodes: list[tuple[int, list[int]]], calls: list[tuple[int, int]]
) -> None:
    """_Stub names recorded effects by place and keeps a cursor per event (replay's hot
    path); held equal here to the rule as the docs state it, written plainly: each effect
    is the next one of the event under delivery not yet taken, if it matches, else the
    first one of the tree not yet taken, in execution order, that matches, else none.
    A call's event is one of the tree's records (by index), one whose type differs from
    the recorded one (index 6 and 7: the last or an unknown record with another type),
    or none running (-1)."""
    from atlas_eda.testing.replay import _execution_order, _Expected, _matches, _Stub
    from atlas_eda.trace import RUNNING, Owner

    block = _stub_block(nodes)
    place = {
        id(recorded): (index, at)
        for index, entry in enumerate(block)
        for at, recorded in enumerate(entry.effects)
    }
    sequence = [place[id(recorded)] for recorded in _execution_order(block)]
    owner = Owner(True)
    records = [[entry.event, owner] for entry in block]
    other = [Event(type=EventType.ERROR, id="x"), owner]
    stub = _Stub(block, False, records)
    taken: set[tuple[int, int]] = set()

    def plain(index: int | None, intent: Effect) -> tuple[int, int] | None:
        if index is not None:
            own = [(index, at) for at in range(len(block[index].effects))]
            free = [p for p in own if p not in taken]
            if free and _matches(block[free[0][0]].effects[free[0][1]], intent):
                return free[0]
        for p in sequence:
            if p not in taken and _matches(block[p[0]].effects[p[1]], intent):
                return p
        return None

    for at, kind in calls:
        intent = Effect(*_STUB_VOCABULARY[kind])
        if at < 0:
            stack: tuple[list[Any], ...] = ()
            index = None
        elif at < len(records):
            lined_up = records[at][0].type is block[at].event.type
            stack, index = (records[at],), at if lined_up else None
        else:
            if at == 6:  # the last record, its event of another type than recorded
                records[-1] = [Event(type=EventType.ERROR, id=block[-1].event.id), owner]
            stack, index = (records[-1] if at == 6 else other,), None
        token = RUNNING.set(stack)
        try:
            performer = stub(intent)
        finally:
            RUNNING.reset(token)
        expected = plain(index, intent)
        if expected is None:
            assert not isinstance(performer, _Expected)
        else:
            assert isinstance(performer, _Expected)
            assert place[id(performer.recorded)] == expected
            taken.add(expected)


def _handed_out(stub: Any, records: list[Any], calls: list[tuple[int, int]]) -> list[Any]:
    """What ``stub`` hands out for ``calls`` (``(record index or -1, vocabulary index)``):
    each recorded effect's identity, or ``None`` for a performer that is none of them."""
    from atlas_eda.testing.replay import _Expected
    from atlas_eda.trace import RUNNING

    out: list[Any] = []
    for at, kind in calls:
        stack = (records[at % len(records)],) if at >= 0 else ()
        token = RUNNING.set(stack)
        try:
            performer = stub(Effect(*_STUB_VOCABULARY[kind]))
        finally:
            RUNNING.reset(token)
        out.append(id(performer.recorded) if isinstance(performer, _Expected) else None)
    return out


_STUB_NODES = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=30),
        st.lists(st.integers(min_value=0, max_value=2), max_size=3),
    ),
    max_size=5,
)
_STUB_CALLS = st.lists(
    st.tuples(st.integers(min_value=-1, max_value=5), st.integers(min_value=0, max_value=2)),
    max_size=10,
)


@given(_STUB_NODES, _STUB_CALLS, _STUB_NODES, _STUB_CALLS)
def test_a_stub_started_on_another_tree_hands_out_what_a_fresh_one_would(
    first: list[tuple[int, list[int]]],
    first_calls: list[tuple[int, int]],
    second: list[tuple[int, list[int]]],
    second_calls: list[tuple[int, int]],
) -> None:
    """Replay keeps one stub for all its roots (the context variable set once) and points
    it at each root's tree with ``start``: what it then hands out is what a stub made for
    that tree alone hands out, whatever the previous tree took, in order or not."""
    from atlas_eda.testing.replay import _Stub
    from atlas_eda.trace import Owner

    owner = Owner(True)
    block = _stub_block(first)
    records = [[entry.event, owner] for entry in block]
    reused = _Stub(block, False, records)
    _handed_out(reused, records, first_calls)
    block = _stub_block(second)
    records[:] = [[entry.event, owner] for entry in block]
    reused.start(block)
    assert _handed_out(reused, records, second_calls) == _handed_out(
        _Stub(block, False, records), records, second_calls
    )


@given(
    _STUB_NODES,
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=5), st.sampled_from(["data", "cause", "id"])),
        max_size=2,
    ),
    st.integers(min_value=-1, max_value=1),
)
def test_the_lean_tree_comparison_agrees_with_the_plain_rule(
    nodes: list[tuple[int, list[int]]], changes: list[tuple[int, str]], length: int
) -> None:
    """Stub mode compares a tree first in one lean pass (``_as_recorded``): a tree it
    accepts is one the plain rule, entry by entry, finds wholly matched; the tree replayed
    as recorded (children under new ids) is accepted. Changed data, causes, ids and
    lengths are drawn so that both answers are exercised."""
    from atlas_eda.testing.replay import _as_recorded, _compare_entries, _compare_tree

    block = _stub_block(nodes)
    fresh = {entry.event.id: f"r{n}" if n else entry.event.id for n, entry in enumerate(block)}
    events = [
        Event(
            type=entry.event.type,
            id=fresh[entry.event.id],
            correlation_id=entry.event.correlation_id,
            causation_id=fresh.get(entry.event.causation_id or ""),
            data=entry.event.data,
        )
        for entry in block
    ]
    assert _as_recorded(block, events)
    for at, what in changes:
        old = events[at % len(events)]
        if what == "data":
            new = Event(type=old.type, id=old.id, causation_id=old.causation_id, data={"x": 1})
        elif what == "cause":
            new = Event(type=old.type, id=old.id, causation_id=events[0].id)
        else:
            new = Event(type=old.type, id=f"{old.id}'", causation_id=old.causation_id)
        events[at % len(events)] = new
    if length < 0:
        events = events[:-1]
    elif length > 0:
        events.append(Event(type=EventType.ERROR, causation_id=events[0].id))
    plain = _compare_entries(
        block, events, None, None, end=99, mode="stub", changes=None, creations=False
    )
    if _as_recorded(block, events):
        assert plain == (len(block), None)
    assert _compare_tree(block, events, None, None, end=99, mode="stub", creations=False) == plain


class Lookup(enum.Enum):
    """A tree whose events perform equal effects with different recorded results."""

    ASKED = "lookup.asked"
    ANSWERED = "lookup.answered"
    NOTED = "lookup.noted"


register_types(Lookup)


def make_lookup_system(answers: list[str]) -> tuple[EventBus, EffectHandler]:
    """The root's handler performs READ and publishes what it read; the child's handler
    returns an ``EffectMonad`` performing the same READ (equal intent), after publishing."""
    handler = EffectHandler()
    bus = EventBus(effect_handler=handler)
    handler.event_bus = bus
    read = Effect(EffectType.DATABASE_READ, {"key": "k"}, "read k")
    handler.register_handler(EffectType.DATABASE_READ, lambda _effect: answers.pop(0))

    def on_asked(event: Event) -> None:
        value = handler.handle(read)
        bus.publish(Lookup.ANSWERED, {"value": value})

    def on_answered(event: Event) -> EffectMonad[None]:
        bus.publish(Lookup.NOTED, {"seen": event.data["value"]})
        return EffectMonad.pure(None).with_effect(read)

    bus.subscribe(Lookup.ASKED, on_asked)
    bus.subscribe(Lookup.ANSWERED, on_answered)
    return bus, handler


@pytest.mark.parametrize("mode", ["stub", "check"])
def test_an_effect_performed_inside_a_handler_gets_its_own_recorded_result(
    tmp_path: Path, mode: str
) -> None:
    """Equal effects performed by a root's handler (inside it, before publishing) and by
    its child's returned monad each get the result recorded for their own event: the
    root's read is given "first", so its child's data replays as recorded."""
    path = tmp_path / "lookup.jsonl"
    bus, _ = make_lookup_system(["first", "second"])
    with record(bus, path):
        bus.publish(Lookup.ASKED, {})
    cassette = Cassette.load(path)
    assert [e.effects[0].result for e in cassette.entries if e.effects] == ["first", "second"]
    replayed, _ = make_lookup_system([])  # nothing to perform: every read is stubbed
    report = replay(cassette, replayed, mode)
    assert report.ok, str(report.divergence)
    assert report.events_matched == 3


def _first_out_of_order_plainly(timestamps: list[float]) -> int | None:
    """The index of the first timestamp greater than one after it (the plain rule)."""
    for index, timestamp in enumerate(timestamps):
        if any(later < timestamp for later in timestamps[index + 1 :]):
            return index
    return None


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=6), st.booleans(), st.booleans()),
        max_size=40,
    )
)
def test_the_one_pass_survey_finds_what_the_plain_rules_find(
    lines: list[tuple[int, bool, bool]],
) -> None:
    """One pass over the entries gives the roots, whether documents are created and the
    first entry out of time order exactly as the plain rules do (ties are in order)."""
    from atlas_eda.testing.cassette import CassetteEntry
    from atlas_eda.testing.replay import _survey

    entries = [
        CassetteEntry(
            n + 1,
            Event(
                type=EventType.DOCUMENT_CREATED if created else EventType.COMMAND_EXECUTED,
                id=f"e{n}",
                timestamp=1_000.0 + tick,
                causation_id=None if root else "e0",
            ),
        )
        for n, (tick, root, created) in enumerate(lines)
    ]
    survey = _survey(entries)
    assert survey.starts == [n for n, (_, root, _) in enumerate(lines) if root]
    assert survey.creations == any(created for _, _, created in lines)
    assert survey.disorder == _first_out_of_order_plainly([e.event.timestamp for e in entries])
