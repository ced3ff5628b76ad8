"""The store-backed shop recorded in ``shop_orders.jsonl``: a system under test whose
handlers write documents to a :class:`~atlas_eda.TemporalStore`, so that its cassette
records the store changes each event caused (``atlasstate``) and check-mode replay into an
empty store compares them.

``make_system()`` is the factory ``atlas-eda replay --app shop_app:make_system`` calls: it
returns a :class:`ShopApp` whose ``.bus`` replay publishes on and whose ``.store`` (an
in-memory store) the handlers write to. Importing the module registers its event types.

The workflow:

- ``ShopEvent.ORDER_PLACED`` (a root event): the order's document is created (its id
  derived from the root event's id), then ``ORDER_ACCEPTED`` is published with that id;
- ``ORDER_ACCEPTED`` (a child event, given a new id each time it is caused): the order's
  document is updated by the warehouse, and an invoice document is created (its id derived
  from the child event's id);
- ``ShopEvent.ORDER_CANCELLED`` (a root event): the order's document is deleted.

Every value derives from the event data, so replaying the cassette into a fresh system
writes exactly the recorded changes.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

from atlas_eda import Event, EventBus, TemporalStore
from atlas_eda.testing import register_types

__all__ = ["SESSION", "ShopApp", "ShopEvent", "make_system", "play_session"]


class ShopEvent(enum.Enum):
    """What happens to an order in the shop."""

    ORDER_PLACED = "shop.order_placed"
    ORDER_ACCEPTED = "shop.order_accepted"
    ORDER_CANCELLED = "shop.order_cancelled"


register_types(ShopEvent)


@dataclass
class ShopApp:
    """The system under test: its bus, its store, and each order's document id."""

    bus: EventBus
    store: TemporalStore
    orders: dict[int, str] = field(default_factory=dict)


def make_system() -> ShopApp:
    """A fresh shop on a fresh bus and an empty in-memory store."""
    bus = EventBus()
    app = ShopApp(bus, TemporalStore(bus, url="memory://"))
    store = app.store

    def on_placed(event: Event) -> None:
        order = event.data
        items = json.dumps(order["items"], sort_keys=True)
        document = store.create_document(f"Order {order['order']}", items, order["customer"])
        app.orders[order["order"]] = document
        bus.publish(ShopEvent.ORDER_ACCEPTED, {"order": order["order"], "document": document})

    def on_accepted(event: Event) -> None:
        accepted = event.data
        store.update_document(accepted["document"], content="accepted", editor="warehouse")
        store.create_document(f"Invoice for order {accepted['order']}", "due", "billing")

    def on_cancelled(event: Event) -> None:
        store.delete_document(event.data["document"], reason=event.data["reason"])

    bus.subscribe(ShopEvent.ORDER_PLACED, on_placed)
    bus.subscribe(ShopEvent.ORDER_ACCEPTED, on_accepted)
    bus.subscribe(ShopEvent.ORDER_CANCELLED, on_cancelled)
    return app


SESSION: tuple[dict[str, object], ...] = (
    {"order": 1, "customer": "ann@example.com", "items": {"book": 2}},
    {"order": 2, "customer": "bob@example.com", "items": {"lamp": 1}},
)
"""The recorded orders; order 2 is cancelled afterwards."""


def play_session(app: ShopApp) -> None:
    """Publish the recorded session's root events on ``app.bus``."""
    for order in SESSION:
        app.bus.publish(ShopEvent.ORDER_PLACED, order, source="web")
    app.bus.publish(
        ShopEvent.ORDER_CANCELLED,
        {"order": 2, "document": app.orders[2], "reason": "changed their mind"},
        source="web",
    )
