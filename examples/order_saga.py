"""The order workflow of tests/cassettes/order_app.py (place -> charge -> ship, with a
declined card and a bounced mail) as a Saga: each step says what to do next and what
undoes it, the saga manager runs the compensations when a later step fails, and every
step is a version of the order's saga in the store. Run it: ``python examples/order_saga.py``.

``make_system()`` builds a fresh system (bus, in-memory store, saga manager, the outside
world the effects act on); ``play_session(app)`` places the four orders of ``SESSION``.
Importing the module registers its types with the replay harness, so a cassette of the
session replays into ``make_system()`` in check mode (tests/test_sagas.py does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from atlas_eda import (
    Effect,
    Event,
    EventBus,
    Publish,
    Runtime,
    Saga,
    SagaManager,
    TemporalStore,
    step,
)
from atlas_eda.sagas import StepResult
from atlas_eda.testing import register_exceptions, register_types


class OrderStep(Enum):
    """What happens to an order."""

    PLACED = "order_step.placed"
    STOCK_RESERVED = "order_step.stock_reserved"
    PAID = "order_step.paid"
    SHIPPED = "order_step.shipped"


class OrderWork(Enum):
    """What the saga asks the outside world to do (and to undo)."""

    RESERVE_STOCK = "stock.reserve"
    RELEASE_STOCK = "stock.release"
    CHARGE_CARD = "payment.charge"
    REFUND = "payment.refund"
    SEND_MAIL = "mail.send"


class OutOfStock(Exception):
    """The warehouse cannot reserve the items."""


class PaymentRefused(Exception):
    """The payment provider refused the charge."""


class ReceiptBounced(Exception):
    """The mail server refused the recipient."""


register_types(OrderStep, OrderWork)
register_exceptions(OutOfStock, PaymentRefused, ReceiptBounced)

CARD_LIMIT = 1000
"""The payment provider refuses larger amounts."""

BOUNCING = frozenset({"nobody@invalid.example"})
"""Mailboxes that bounce."""

PAYMENT_WINDOW = 3600.0
"""Seconds after the order is placed before an unpaid order is given up (a deadline)."""


class OrderSaga(Saga):
    """One order, from placing to shipping. A step that fails undoes the earlier ones:
    a declined card releases the stock; a receipt that bounces refunds the charge and
    releases the stock (an order the customer cannot be told about is not shipped)."""

    starts_with = OrderStep.PLACED
    correlation_key = "order"

    @step(OrderStep.PLACED, emits=(OrderStep.STOCK_RESERVED,))
    def placed(self, event: Event) -> StepResult:
        """Reserve the stock (undone by releasing it); pay within the window."""
        order = event.data
        self.data.update(customer=order["customer"], items=order["items"], amount=order["amount"])
        self.compensate_with(
            Effect(OrderWork.RELEASE_STOCK, {"order": self.key, "items": order["items"]})
        )
        self.set_deadline(event.timestamp + PAYMENT_WINDOW, "payment")
        return [
            Effect(OrderWork.RESERVE_STOCK, {"order": self.key, "items": order["items"]}),
            Publish(OrderStep.STOCK_RESERVED, {"order": order["order"]}),
        ]

    @step(OrderStep.STOCK_RESERVED, emits=(OrderStep.PAID,))
    def stock_reserved(self, event: Event) -> StepResult:
        """Charge the card (undone by a refund)."""
        amount = self.data["amount"]
        self.compensate_with(Effect(OrderWork.REFUND, {"order": self.key, "amount": amount}))
        return [
            Effect(OrderWork.CHARGE_CARD, {"order": self.key, "amount": amount}),
            Publish(OrderStep.PAID, {"order": event.data["order"]}),
        ]

    @step(OrderStep.PAID, emits=(OrderStep.SHIPPED,))
    def paid(self, event: Event) -> StepResult:
        """Paid in time: mail the receipt, then ship."""
        self.clear_deadline()
        receipt = {"to": self.data["customer"], "subject": f"Receipt for order {self.key}"}
        return [
            Effect(OrderWork.SEND_MAIL, receipt, "receipt"),
            Publish(OrderStep.SHIPPED, {"order": event.data["order"]}),
        ]

    @step(OrderStep.SHIPPED)
    def shipped(self, event: Event) -> StepResult:
        """Shipped: the saga is done."""
        self.complete()
        return None


@dataclass
class OrderSagaApp:
    """The system: its runtime and the parts it wired (its bus, with an
    ``EffectHandler``; its store, where the sagas live; its saga manager), and the outside
    world (stock levels, charges, refunds, mails)."""

    runtime: Runtime
    bus: EventBus
    store: TemporalStore
    sagas: SagaManager
    stock: dict[str, int] = field(default_factory=lambda: {"book": 5, "lamp": 1, "desk": 0})
    charges: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    mails: list[dict[str, Any]] = field(default_factory=list)


def make_system(url: str = "memory://") -> OrderSagaApp:
    """A fresh system on a fresh bus and an empty store at ``url``: a runtime with the
    order saga registered, whose effect handler performs the outside world's work."""
    runtime = Runtime(url, sagas=[OrderSaga])
    app = OrderSagaApp(runtime, runtime.bus, runtime.store, runtime.sagas)
    handler = runtime.effect_handler

    def reserve(effect: Effect) -> None:
        items: dict[str, int] = effect.payload["items"]
        missing = sorted(sku for sku, count in items.items() if app.stock.get(sku, 0) < count)
        if missing:
            raise OutOfStock(f"out of {', '.join(missing)}")
        for sku, count in items.items():
            app.stock[sku] -= count

    def release(effect: Effect) -> None:
        for sku, count in effect.payload["items"].items():
            app.stock[sku] += count

    def charge(effect: Effect) -> str:
        if effect.payload["amount"] > CARD_LIMIT:
            raise PaymentRefused(f"card refused for {effect.payload['amount']}")
        app.charges.append(effect.payload)
        return f"tx-{effect.payload['order']}"

    def mail(effect: Effect) -> None:
        if effect.payload["to"] in BOUNCING:
            raise ReceiptBounced(f"mailbox {effect.payload['to']} does not exist")
        app.mails.append(effect.payload)

    handler.register_handler(OrderWork.RESERVE_STOCK, reserve)
    handler.register_handler(OrderWork.RELEASE_STOCK, release)
    handler.register_handler(OrderWork.CHARGE_CARD, charge)
    handler.register_handler(OrderWork.REFUND, app.refunds.append)
    handler.register_handler(OrderWork.SEND_MAIL, mail)
    return app


SESSION: tuple[dict[str, Any], ...] = (
    {"order": 1, "customer": "ann@example.com", "items": {"book": 2}, "amount": 40},
    {"order": 2, "customer": "bob@example.com", "items": {"lamp": 1}, "amount": 5000},
    {"order": 3, "customer": "nobody@invalid.example", "items": {"book": 1}, "amount": 20},
    {"order": 4, "customer": "cy@example.com", "items": {"desk": 1, "book": 1}, "amount": 300},
)
"""Shipped (order 1); card declined (2); receipt bounced (3); out of stock (4)."""


def play_session(app: OrderSagaApp) -> None:
    """Place every order of :data:`SESSION`."""
    for order in SESSION:
        app.bus.publish(OrderStep.PLACED, order, source="web")


def main() -> None:
    app = make_system()
    play_session(app)
    for state in app.sagas.instances():
        undone = ", ".join(name for name, _ in state.compensated) or "nothing"
        print(f"order {state.key}: {state.status} after {' -> '.join(state.steps)}")
        if state.reason is not None:
            print(f"  failed: {state.reason}; undone: {undone}")
    print(f"stock {app.stock}, charges {len(app.charges)}, refunds {len(app.refunds)}")
    third = app.sagas.instances()[2]
    print(f"order 3 went through {third.version} versions; from 4 (step failed) to the end:")
    for name, (before, after) in app.sagas.diff(third.id, 4, third.version).items():
        print(f"  {name}: {before!r} -> {after!r}")
    print(f"due later: {app.sagas.run_due(now=0.0)}")
    app.runtime.close()


if __name__ == "__main__":
    main()
