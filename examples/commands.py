"""Commands and queries on the bus: a small cart whose commands write the store and
publish events, whose query reads it, with a command that fails and a query refused for
trying to write. Run it: ``python examples/commands.py``."""

from __future__ import annotations

from enum import Enum

from atlas_eda import (
    CommandType,
    Event,
    QuerySideEffectError,
    QueryType,
    Runtime,
)


class Cart(CommandType):
    """What the cart can be told to do."""

    ADD = "cart.add"


class Stock(QueryType):
    """What the cart can be asked."""

    COUNT = "stock.count"
    SNEAKY = "stock.sneaky"


class CartEvent(Enum):
    """What the cart tells whoever listens."""

    ADDED = "cart.added"


def main() -> None:
    # The runtime wires the bus and the store, and closes them in order on leaving.
    with Runtime("memory://") as runtime:
        bus, store = runtime.bus, runtime.store
        bus.subscribe(CartEvent.ADDED, lambda event: print(f"  event: added {event.data['item']}"))

        def add(message: Event) -> str:
            item = message.data["item"]
            if not item:
                raise ValueError("an item needs a name")
            doc_id = store.create_document(item, "in cart", message.metadata.get("user", "?"))
            bus.publish(CartEvent.ADDED, {"item": item})
            return doc_id

        def count(message: Event) -> int:
            return len(store.get_all_documents())

        def sneaky(message: Event) -> None:
            store.create_document("ghost", "", "nobody")

        bus.handle(Cart.ADD, add)
        bus.handle(Stock.COUNT, count)
        bus.handle(Stock.SNEAKY, sneaky)

        print("send Cart.ADD tea:")
        doc_id = bus.send(Cart.ADD, {"item": "tea"}, metadata={"user": "ann"})
        print(
            f"  result: {store.get_document(doc_id).title} by {store.get_document(doc_id).author}"
        )
        print(f"ask Stock.COUNT: {bus.ask(Stock.COUNT)}")
        try:
            bus.send(Cart.ADD, {"item": ""})
        except ValueError as error:
            print(f"send Cart.ADD '': raised ValueError: {error}")
        try:
            bus.ask(Stock.SNEAKY)
        except QuerySideEffectError:
            print(f"ask Stock.SNEAKY: refused, still {bus.ask(Stock.COUNT)} document(s)")
        command = bus.get_history(Cart.ADD, limit=None)[-1]
        print("trace of the first command:")
        print(bus.trace(command.id).tree())


if __name__ == "__main__":
    main()
