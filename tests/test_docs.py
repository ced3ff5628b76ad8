"""The documentation's code runs: every python block of the quickstart and the README,
executed in order, as a reader would paste them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("document", ["docs/quickstart.md", "README.md"])
def test_python_blocks_run_in_order(
    document: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the snippets create SQLite files in the working directory
    sent: list[Any] = []
    namespace: dict[str, Any] = {"send_mail": sent.append, "__name__": "__doc__"}
    blocks = python_blocks(ROOT / document)
    assert blocks, f"{document} has no python blocks"
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{document} block {number}", "exec"), namespace)


def test_quickstart_claims_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"send_mail": lambda payload: None, "__name__": "__doc__"}
    for block in python_blocks(ROOT / "docs" / "quickstart.md"):
        exec(block, namespace)
    store, doc_id = namespace["store"], namespace["doc_id"]
    assert store.get_document(doc_id, version=1).content == "first draft"
    assert store.get_document(doc_id).is_deleted
    weaver, service = namespace["weaver"], namespace["service"]
    assert weaver.get_applied_aspects(service.create_document) == []  # rolled back
    assert namespace["plan"].run(namespace["handler"]) == 42
