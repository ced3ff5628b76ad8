"""The order workflow recorded in ``order_workflow.jsonl``: a system under test for the
replay harness, with events nested three levels deep and effects that fail.

``make_system()`` is the factory ``atlas-eda replay --app order_app:make_system`` calls
(run it from this directory, or put the directory on ``PYTHONPATH``): it returns an
:class:`OrderApp`, whose ``.bus`` is what replay publishes on. ``install(bus)`` puts the
same workflow on an existing bus (the pytest plugin's ``atlas_bus``). Importing the
module registers its event and effect types with the harness.

The workflow is store-backed: each order has a document in ``OrderApp.store`` (a
:class:`~atlas_eda.TemporalStore`, in memory), written by the handlers, so the cassette
records the store changes each event caused (``atlasstate``) and check-mode replay into an
empty store compares them. The store is not given the bus: the workflow's own events are
what the cassette holds, with the document changes on the lines that caused them. For each
``OrderEvent.PLACED`` root event:

- the order's document is created (title ``Order N``, the items as content, the customer as
  author; its id derived from the root event's id, so a replay creates the same id);
- reserve stock (``RESERVE_STOCK``); out of stock: the document is deleted, ``CANCELLED``,
  and nothing more;
- otherwise ``STOCK_RESERVED``, then charge the card (``CHARGE_CARD``): approved gives
  ``PAID``; a card the provider refuses makes the effect raise ``CardDeclined``, which
  the handler turns into ``PAYMENT_FAILED`` (whose handler releases the stock and marks
  the document ``payment failed``);
- ``PAID`` marks the document ``paid``, publishes ``SHIPPED`` and mails a receipt;
  ``SHIPPED`` marks it ``shipped``, publishes ``CUSTOMER_NOTIFIED`` and mails a shipping
  notice. A customer whose mailbox bounces
  makes that mail effect raise ``MailBounced``: the bus reports it as an ``EventType.ERROR``
  event caused by ``SHIPPED``.

Every value derives from the event data (no clock, no random ids), so replaying the
cassette into a fresh system re-causes exactly the recorded events.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from atlas_eda import Effect, EffectHandler, EffectMonad, Event, EventBus, TemporalStore
from atlas_eda.testing import register_types

__all__ = [
    "BOUNCING",
    "SESSION",
    "CardDeclined",
    "MailBounced",
    "OrderApp",
    "OrderEffect",
    "OrderEvent",
    "install",
    "make_system",
    "play_session",
]


class OrderEvent(enum.Enum):
    """What happens to an order."""

    PLACED = "order.placed"
    STOCK_RESERVED = "order.stock_reserved"
    CANCELLED = "order.cancelled"
    PAID = "order.paid"
    PAYMENT_FAILED = "order.payment_failed"
    SHIPPED = "order.shipped"
    CUSTOMER_NOTIFIED = "order.customer_notified"


class OrderEffect(enum.Enum):
    """What the workflow asks the outside world to do."""

    RESERVE_STOCK = "stock.reserve"
    RELEASE_STOCK = "stock.release"
    CHARGE_CARD = "payment.charge"
    SEND_MAIL = "mail.send"


register_types(OrderEvent, OrderEffect)

CARD_LIMIT = 1000
"""The payment provider refuses (raises :class:`CardDeclined` for) larger amounts."""

BOUNCING = frozenset({"nobody@invalid.example"})
"""Mailboxes that bounce: mailing them raises :class:`MailBounced`."""


class CardDeclined(Exception):
    """The payment provider refused the charge."""


class MailBounced(Exception):
    """The mail server refused the recipient."""


@dataclass
class OrderApp:
    """The system under test: its bus (with an ``EffectHandler``), its store (each order's
    document, by order number in ``documents``) and the outside world the effects act on
    (stock levels, charges made, mails sent)."""

    bus: EventBus
    store: TemporalStore = field(default_factory=lambda: TemporalStore(url="memory://"))
    documents: dict[int, str] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)
    charges: list[dict[str, Any]] = field(default_factory=list)
    mails: list[dict[str, Any]] = field(default_factory=list)


def install(bus: EventBus, app: OrderApp | None = None) -> OrderApp:
    """Subscribe the workflow's handlers on ``bus`` and register its effect performers on
    ``bus.effect_handler`` (an ``EffectHandler``; one is created when the bus has none).
    The handlers write to ``app.store`` (a new in-memory store when no ``app`` is given)."""
    app = app or OrderApp(bus)
    store = app.store
    app.stock.update({"book": 5, "lamp": 1, "desk": 0})
    handler = bus.effect_handler
    if handler is None:
        handler = bus.effect_handler = EffectHandler(event_bus=bus)

    def reserve_stock(effect: Effect) -> dict[str, Any]:
        items: dict[str, int] = effect.payload["items"]
        if any(app.stock.get(sku, 0) < count for sku, count in items.items()):
            return {"reserved": False, "missing": sorted(items.keys() - _available(app, items))}
        for sku, count in items.items():
            app.stock[sku] -= count
        return {"reserved": True, "warehouse": "north"}

    def release_stock(effect: Effect) -> dict[str, Any]:
        for sku, count in effect.payload["items"].items():
            app.stock[sku] = app.stock.get(sku, 0) + count
        return {"released": True}

    def charge_card(effect: Effect) -> dict[str, Any]:
        app.charges.append(effect.payload)
        amount = effect.payload["amount"]
        if amount > CARD_LIMIT:
            raise CardDeclined(f"card refused for {amount} (limit {CARD_LIMIT})")
        return {"approved": True, "transaction": f"tx-{effect.payload['order']}"}

    def send_mail(effect: Effect) -> dict[str, Any]:
        if effect.payload["to"] in BOUNCING:
            raise MailBounced(f"mailbox {effect.payload['to']} does not exist")
        app.mails.append(effect.payload)
        return {"queued": True}

    handler.register_handler(OrderEffect.RESERVE_STOCK, reserve_stock)
    handler.register_handler(OrderEffect.RELEASE_STOCK, release_stock)
    handler.register_handler(OrderEffect.CHARGE_CARD, charge_card)
    handler.register_handler(OrderEffect.SEND_MAIL, send_mail)

    def on_placed(event: Event) -> None:
        order = event.data
        items = json.dumps(order["items"], sort_keys=True)
        document = store.create_document(f"Order {order['order']}", items, order["customer"])
        app.documents[order["order"]] = document
        reservation = handler.handle(
            Effect(OrderEffect.RESERVE_STOCK, {"order": order["order"], "items": order["items"]})
        )
        if not reservation["reserved"]:
            store.delete_document(document, reason="out of stock")
            bus.publish(
                OrderEvent.CANCELLED,
                {"order": order["order"], "reason": "out of stock", **reservation},
                source="warehouse",
            )
            return
        bus.publish(
            OrderEvent.STOCK_RESERVED,
            {"order": order["order"], "warehouse": reservation["warehouse"]},
            source="warehouse",
        )
        charge = Effect(
            OrderEffect.CHARGE_CARD,
            {"order": order["order"], "amount": order["amount"]},
            f"charge order {order['order']}",
        )
        try:
            payment = handler.handle(charge)
        except Exception as exc:  # a replayed failure is not a CardDeclined: catch broadly
            bus.publish(
                OrderEvent.PAYMENT_FAILED,
                {"order": order["order"], "items": order["items"], "error": str(exc)},
                source="payments",
            )
            return
        bus.publish(
            OrderEvent.PAID,
            {
                "order": order["order"],
                "customer": order["customer"],
                "transaction": payment["transaction"],
            },
            source="payments",
        )

    def on_payment_failed(event: Event) -> EffectMonad[None]:
        document = app.documents[event.data["order"]]
        store.update_document(document, content="payment failed", editor="payments")
        release = Effect(
            OrderEffect.RELEASE_STOCK, {"order": event.data["order"], "items": event.data["items"]}
        )
        return EffectMonad.pure(None).with_effect(release)

    def on_paid(event: Event) -> EffectMonad[None]:
        paid = event.data
        store.update_document(app.documents[paid["order"]], content="paid", editor="payments")
        bus.publish(
            OrderEvent.SHIPPED, {"order": paid["order"], "customer": paid["customer"]}, "warehouse"
        )
        receipt = Effect(
            OrderEffect.SEND_MAIL,
            {"to": paid["customer"], "subject": f"Receipt {paid['transaction']}"},
            "receipt",
        )
        return EffectMonad.pure(None).with_effect(receipt)

    def on_shipped(event: Event) -> EffectMonad[None]:
        shipped = event.data
        store.update_document(
            app.documents[shipped["order"]], content="shipped", editor="warehouse"
        )
        bus.publish(OrderEvent.CUSTOMER_NOTIFIED, {"order": shipped["order"]}, "mail")
        notice = Effect(
            OrderEffect.SEND_MAIL,
            {"to": shipped["customer"], "subject": f"Order {shipped['order']} shipped"},
            "shipping notice",
        )
        return EffectMonad.pure(None).with_effect(notice)

    bus.subscribe(OrderEvent.PLACED, on_placed)
    bus.subscribe(OrderEvent.PAYMENT_FAILED, on_payment_failed)
    bus.subscribe(OrderEvent.PAID, on_paid)
    bus.subscribe(OrderEvent.SHIPPED, on_shipped)
    return app


def _available(app: OrderApp, items: dict[str, int]) -> set[str]:
    return {sku for sku, count in items.items() if app.stock.get(sku, 0) >= count}


def make_system() -> OrderApp:
    """A fresh order workflow on a fresh bus and an empty in-memory store: the factory for
    ``atlas-eda replay --app``."""
    handler = EffectHandler()
    bus = EventBus(effect_handler=handler)
    handler.event_bus = bus
    return install(bus)


SESSION: tuple[dict[str, Any], ...] = (
    {"order": 1, "customer": "ann@example.com", "items": {"book": 2}, "amount": 40},
    {"order": 2, "customer": "bob@example.com", "items": {"lamp": 1}, "amount": 5000},
    {"order": 3, "customer": "nobody@invalid.example", "items": {"book": 1}, "amount": 20},
    {"order": 4, "customer": "cy@example.com", "items": {"desk": 1, "book": 1}, "amount": 300},
)
"""The recorded session: paid, shipped and mailed (order 1); card declined (2); shipped
to a bouncing mailbox (3); out of stock (4)."""


def play_session(app: OrderApp) -> None:
    """Publish the recorded session's root events on ``app.bus``."""
    for order in SESSION:
        app.bus.publish(OrderEvent.PLACED, order, source="web")
