"""A declared event graph: an order flow whose handlers declare what they publish or send,
checked for cycles before anything runs, with an intended retry loop bounded by
``max_depth``, an unintended loop caught by ``bus.check()``, and a handler warned about
for publishing what it did not declare. Run it: ``python examples/graph.py``; print its
graph with ``atlas-eda graph --app examples.graph:make_system`` from the repository root."""

from __future__ import annotations

import warnings
from enum import Enum

from atlas_eda import CommandType, Event, EventBus, GraphCycleError, UndeclaredEmitWarning

MAX_ATTEMPTS = 3
"""How many times the card is charged before the order is given up."""


class Order(Enum):
    """What happens to an order."""

    PLACED = "order.placed"
    PAID = "order.paid"
    DECLINED = "order.declined"
    SHIPPED = "order.shipped"
    ABANDONED = "order.abandoned"


class Billing(CommandType):
    """What billing is told to do."""

    CHARGE = "billing.charge"


class OrderFlow:
    """The order flow on a fresh bus (:attr:`bus`): the card is declined
    ``declined_until`` times, then accepted. Every handler declares what it emits."""

    def __init__(self, declined_until: int = 0) -> None:
        self.declined_until = declined_until
        self.bus = bus = EventBus(max_depth=16)
        bus.subscribe(Order.PLACED, self.place, emits=(Billing.CHARGE,))
        bus.handle(Billing.CHARGE, self.charge, emits=(Order.PAID, Order.DECLINED))
        bus.subscribe(
            Order.DECLINED,
            self.retry,
            emits=(Billing.CHARGE, Order.ABANDONED),
            allow_cycle=(Billing.CHARGE,),
        )
        bus.subscribe(Order.PAID, self.ship, emits=(Order.SHIPPED,))

    def place(self, event: Event) -> None:
        self.bus.send(Billing.CHARGE, {"order": event.data["order"], "attempt": 1})

    def charge(self, message: Event) -> str:
        order, attempt = message.data["order"], message.data["attempt"]
        if attempt <= self.declined_until:
            self.bus.publish(Order.DECLINED, {"order": order, "attempt": attempt})
            return "declined"
        self.bus.publish(Order.PAID, {"order": order})
        return "charged"

    def retry(self, event: Event) -> None:
        # Charging again after a decline is a loop on purpose: allow_cycle says so, the
        # attempt count ends it, and max_depth would stop it if the count did not.
        if event.data["attempt"] >= MAX_ATTEMPTS:
            self.bus.publish(Order.ABANDONED, {"order": event.data["order"]})
            return
        self.bus.send(Billing.CHARGE, {**event.data, "attempt": event.data["attempt"] + 1})

    def ship(self, event: Event) -> None:
        self.bus.publish(Order.SHIPPED, {"order": event.data["order"]})


def make_system() -> OrderFlow:
    """The factory ``atlas-eda graph --app examples.graph:make_system`` calls."""
    return OrderFlow()


def main() -> None:
    bus = OrderFlow(declined_until=1).bus
    bus.check()  # the retry loop is declared: nothing raised
    print(bus.graph().to_text(), end="")

    bus.publish(Order.PLACED, {"order": "o-1"})
    print("published:", ", ".join(e.type.name for e in reversed(bus.get_history())))

    # A loop nobody declared: shipping an order places it again.
    def reorder(event: Event) -> None:
        bus.publish(Order.PLACED, event.data)

    bus.subscribe(Order.SHIPPED, reorder, emits=(Order.PLACED,))
    try:
        bus.check()
    except GraphCycleError as error:
        print(f"check: {len(error.cycles)} cycle(s) refused; first: {error.cycles[0]}")

    # A handler that publishes what it did not declare is warned about, once.
    quiet = OrderFlow().bus

    def notify(event: Event) -> None:
        quiet.publish(Order.ABANDONED, event.data)  # declared to emit nothing

    quiet.subscribe(Order.SHIPPED, notify, emits=())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.publish(Order.PLACED, {"order": "o-2"})
        quiet.publish(Order.PLACED, {"order": "o-3"})
    for warning in caught:
        if issubclass(warning.category, UndeclaredEmitWarning):
            print("warned:", warning.message)


if __name__ == "__main__":
    main()
