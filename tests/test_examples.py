"""The source document's example and the demo run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_seed_example_runs_and_prints_history_and_metrics() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "seed_example.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Event: DOCUMENT_UPDATED" in result.stdout
    assert "Event: DOCUMENT_CREATED" in result.stdout
    assert "DocumentService.create_document: 1 calls" in result.stdout
    assert "Sending notification: Document 'Event-Driven Architecture with NERV'" in result.stdout
