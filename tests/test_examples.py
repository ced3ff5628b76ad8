"""The examples under examples/ (the source document's among them) run as a user runs
them: ``python examples/NAME.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    """Run ``examples/NAME.py`` in a new interpreter; it must exit 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_seed_example_runs_and_prints_history_and_metrics() -> None:
    result = run_example("seed_example")
    assert "Event: DOCUMENT_UPDATED" in result.stdout
    assert "Event: DOCUMENT_CREATED" in result.stdout
    assert "DocumentService.create_document: 1 calls" in result.stdout
    assert "Sending notification: Document 'Event-Driven Architecture with NERV'" in result.stdout


def test_commands_example_sends_asks_refuses_and_traces() -> None:
    result = run_example("commands")
    lines = result.stdout.splitlines()
    assert lines[:6] == [
        "send Cart.ADD tea:",
        "  event: added tea",
        "  result: tea by ann",
        "ask Stock.COUNT: 1",
        "send Cart.ADD '': raised ValueError: an item needs a name",
        "ask Stock.SNEAKY: refused, still 1 document(s)",
    ]
    assert lines[7].startswith("Cart.ADD ")
    assert "child CartEvent.ADDED" in result.stdout
    assert lines[-1].startswith("└─ result → ")


def test_graph_example_checks_runs_refuses_a_loop_and_warns() -> None:
    result = run_example("graph")
    lines = result.stdout.splitlines()
    assert lines[:2] == ["event Order.PLACED", "  → OrderFlow.place: emits: Billing.CHARGE"]
    assert (
        "  Billing.CHARGE → Order.DECLINED → Billing.CHARGE (handlers: OrderFlow.charge, "
        "OrderFlow.retry) [allowed]" in lines
    )
    assert "published: PLACED, CHARGE, DECLINED, CHARGE, PAID, SHIPPED" in lines
    assert lines[-2].startswith("check: 1 cycle(s) refused; first: Order.PLACED → Billing.CHARGE")
    assert lines[-1] == (
        "warned: Handler main.<locals>.notify of Order.SHIPPED published Order.ABANDONED, "
        "which it did not declare (emits: nothing). Add Order.ABANDONED to its emits=, or "
        "make it stop."
    )


def test_order_saga_example_ships_compensates_and_diffs() -> None:
    result = run_example("order_saga")
    lines = result.stdout.splitlines()
    assert lines[:7] == [
        "order 1: completed after placed -> stock_reserved -> paid -> shipped",
        "order 2: failed after placed -> stock_reserved",
        "  failed: effect OrderWork.CHARGE_CARD raised PaymentRefused: card refused for 5000; "
        "undone: OrderWork.RELEASE_STOCK",
        "order 3: failed after placed -> stock_reserved -> paid",
        "  failed: effect OrderWork.SEND_MAIL raised ReceiptBounced: mailbox "
        "nobody@invalid.example does not exist; undone: OrderWork.REFUND, "
        "OrderWork.RELEASE_STOCK",
        "order 4: failed after placed",
        "  failed: effect OrderWork.RESERVE_STOCK raised OutOfStock: out of desk; undone: nothing",
    ]
    assert lines[7] == "stock {'book': 3, 'lamp': 1, 'desk': 0}, charges 2, refunds 1"
    assert "  status: 'compensating' -> 'failed'" in lines
    assert lines[-1] == "due later: []"
