"""The documentation's code runs and says true things: every python block of the docs and
the README is executed in order, as a reader would paste it, and an expression followed by
a comment that starts with a value (``x.version  # 2``) must evaluate to that value."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

import atlas_eda

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
DOCUMENTS = [
    "docs/quickstart.md",
    "docs/time-travel.md",
    "docs/reliability.md",
    "docs/scaling.md",
    "README.md",
]
_MISSING = object()


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


def claimed_value(comment: str, namespace: dict[str, Any]) -> Any:
    """The value a trailing comment claims, or _MISSING when it claims none: the text
    before ' — ' or ':', or its first word, if that evaluates."""
    text = comment.strip()
    candidates = [text.split(" — ")[0], text.split(":")[0], text.split(" ")[0]]
    for candidate in candidates:
        try:
            return eval(candidate, dict(namespace))
        except Exception:
            continue
    return _MISSING


def run_block(source: str, name: str, namespace: dict[str, Any]) -> int:
    """Execute a block statement by statement; returns how many claims were checked."""
    lines = source.splitlines()
    checked = 0
    for statement in ast.parse(source).body:
        code = ast.Module(body=[statement], type_ignores=[])
        last_line = lines[(statement.end_lineno or statement.lineno) - 1]
        comment = last_line.partition("#")[2] if "#" in last_line else ""
        if isinstance(statement, ast.Expr) and comment:
            value = eval(compile(ast.Expression(statement.value), name, "eval"), namespace)
            claim = claimed_value(comment, namespace)
            if claim is not _MISSING:
                assert value == claim, f"{name}: `{last_line.strip()}` gave {value!r}"
                checked += 1
        else:
            exec(compile(code, name, "exec"), namespace)
    return checked


@pytest.mark.parametrize("document", DOCUMENTS)
def test_python_blocks_run_and_their_claims_hold(
    document: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the snippets create SQLite files in the working directory
    sent: list[Any] = []
    namespace: dict[str, Any] = {"send_mail": sent.append, "__name__": "__doc__"}
    namespace.update({name: getattr(atlas_eda, name) for name in atlas_eda.__all__})
    blocks = python_blocks(ROOT / document)
    assert blocks, f"{document} has no python blocks"
    checked = sum(
        run_block(block, f"{document} block {n}", namespace) for n, block in enumerate(blocks, 1)
    )
    assert checked >= 1, f"{document}: no claim was checked"


def test_quickstart_state_after_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_claimed_value_reads_the_leading_value() -> None:
    assert claimed_value(" 2", {}) == 2
    assert claimed_value(" 'final': the version", {}) == "final"
    assert claimed_value(" {} — before anything", {}) == {}
    assert claimed_value(" seconds", {}) is _MISSING
