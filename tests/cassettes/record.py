"""Record the real cassettes of this directory by running the code they capture.

    python tests/cassettes/record.py            # rewrites every cassette of this directory
    python tests/cassettes/record.py OUT_DIR    # writes them to OUT_DIR instead

- ``demo.jsonl``: what ``atlas-eda demo`` does (``atlas_eda.demo.demo_session``), on an
  in-memory store, with the store changes each command caused (``atlasstate``); replay it
  into ``atlas_eda.demo:demo_system``, whose store starts empty.
- ``order_workflow.jsonl``: the order workflow of ``order_app.py`` handling
  ``order_app.SESSION``, with the changes its handlers wrote to its store; replay it into
  ``order_app:make_system``, whose store starts empty.
- ``shop_orders.jsonl``: the store-backed shop of ``shop_app.py``, recorded with the store
  changes each event caused (``atlasstate``); replay it into ``shop_app:make_system``,
  whose store starts empty.

Re-record after changing either system on purpose, and review the diff of the cassettes:
it is the change in behaviour.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # order_app must be imported as "order_app", as replay does
    sys.path.insert(0, str(HERE))

import order_app  # noqa: E402
import shop_app  # noqa: E402

from atlas_eda.demo import demo_session, demo_system  # noqa: E402
from atlas_eda.testing import Recorder, record  # noqa: E402

__all__ = ["record_all", "record_demo", "record_orders", "record_shop"]


def record_demo(path: Path) -> Recorder:
    """Record the demo's session, with the changes written to its store, to ``path``."""
    system = demo_system("memory://")
    try:
        with record(system.bus, path, store=system.store) as recorder:
            demo_session(system, out=io.StringIO())
    finally:
        system.store.close()
    return recorder


def record_orders(path: Path) -> Recorder:
    """Record the order workflow handling ``order_app.SESSION``, with the changes written
    to its store, to ``path``."""
    app = order_app.make_system()
    try:
        with record(app.bus, path, store=app.store) as recorder:
            order_app.play_session(app)
    finally:
        app.store.close()
    return recorder


def record_shop(path: Path) -> Recorder:
    """Record the shop's session, with the changes written to its store, to ``path``."""
    app = shop_app.make_system()
    try:
        with record(app.bus, path, store=app.store) as recorder:
            shop_app.play_session(app)
    finally:
        app.store.close()
    return recorder


def record_all(directory: Path) -> list[Recorder]:
    """Record every cassette into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        record_demo(directory / "demo.jsonl"),
        record_orders(directory / "order_workflow.jsonl"),
        record_shop(directory / "shop_orders.jsonl"),
    ]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for done in record_all(target):
        print(f"{done.path}: {done.lines} lines")
