"""The documentation's code runs and says true things: every python block of the docs and
the README is executed in order, as a reader would paste it, and an expression followed by
a comment that starts with a value (``x.version  # 2``) must evaluate to that value. Every
command-line transcript (a block of ``$ command`` lines, each followed by what it prints)
is run for real and must print what the page shows."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CASSETTES

import atlas_eda

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
# Every page is collected, so a new one is tested without being listed here.
DOCUMENTS = [
    *(path.relative_to(ROOT).as_posix() for path in sorted((ROOT / "docs").glob("*.md"))),
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


WITH_PYTHON = [document for document in DOCUMENTS if "```python" in (ROOT / document).read_text()]
"""The pages with python blocks (the others have none to run)."""


@pytest.mark.parametrize("document", WITH_PYTHON)
def test_python_blocks_run_and_their_claims_hold(
    document: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the snippets create SQLite files in the working directory
    sent: list[Any] = []
    namespace: dict[str, Any] = {"send_mail": sent.append, "__name__": "__doc__"}
    namespace.update({name: getattr(atlas_eda, name) for name in atlas_eda.__all__})
    blocks = python_blocks(ROOT / document)
    assert blocks, f"{document} has no python blocks"
    assert len(blocks) == (ROOT / document).read_text().count("```python"), "a block is not closed"
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


# -- command-line transcripts ------------------------------------------------------------

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
PROMPT = "$ "
Step = tuple[str, list[str]]


def transcripts(path: Path) -> list[list[Step]]:
    """The command-line transcripts of a page: each fenced block whose first line starts
    with the ``$ `` prompt, as ``(command, the lines it prints)`` pairs. A block of
    commands without prompts is a synopsis, not a transcript."""
    found = []
    for block in FENCE.findall(path.read_text(encoding="utf-8")):
        if not block.startswith(PROMPT):
            continue
        steps: list[Step] = []
        for line in block.splitlines():
            if line.startswith(PROMPT):
                steps.append((line.removeprefix(PROMPT), []))
            else:
                steps[-1][1].append(line)
        found.append(steps)
    return found


TRANSCRIPTS = [
    pytest.param(steps, id=f"{document}-{number}")
    for document in DOCUMENTS
    for number, steps in enumerate(transcripts(ROOT / document), 1)
]


def test_every_atlas_eda_prompt_is_in_a_transcript() -> None:
    shown = [
        line
        for document in DOCUMENTS
        for line in (ROOT / document).read_text(encoding="utf-8").splitlines()
        if line.startswith(f"{PROMPT}atlas-eda ")
    ]
    collected = [
        command
        for param in TRANSCRIPTS
        for command, _ in param.values[0]  # type: ignore[attr-defined]
        if command.startswith("atlas-eda ")
    ]
    assert len(shown) >= 3  # docs/testing.md shows cassette and replay runs
    assert [line.removeprefix(PROMPT) for line in shown] == collected


@pytest.mark.parametrize("steps", TRANSCRIPTS)
def test_transcripts_print_what_the_page_shows(steps: list[Step], tmp_path: Path) -> None:
    """Each transcript runs in a fresh shell at the root of a scratch checkout holding a
    copy of tests/cassettes (a transcript's own files, such as ``tampered.jsonl``, never
    touch the repository); ``cd`` moves the shell, any other line runs in ``sh``, where
    ``atlas-eda`` is this interpreter's ``python -m atlas_eda.cli``. What a command prints
    is its standard output, then its standard error.

    Nothing is normalised: the transcripts run on the recorded cassettes, whose ids and
    times are fixed, and print no paths. A transcript whose output must vary (ids, times,
    paths) needs exactly that normalised here, and said so."""
    shutil.copytree(
        CASSETTES, tmp_path / "tests" / "cassettes", ignore=shutil.ignore_patterns("__pycache__")
    )
    tools = tmp_path / "bin"
    tools.mkdir()
    shim = tools / "atlas-eda"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m atlas_eda.cli "$@"\n')
    shim.chmod(0o755)
    environment = {k: v for k, v in os.environ.items() if k != "ATLAS_EDA_STORE_URL"}
    environment["PATH"] = f"{tools}{os.pathsep}{environment.get('PATH', '')}"
    here = tmp_path
    for command, shown in steps:
        if command.startswith("cd "):
            here = here / command.removeprefix("cd ").strip()
            assert here.is_dir(), f"`{PROMPT}{command}`: no such directory"
            continue
        result = subprocess.run(
            ["/bin/sh", "-c", command],
            cwd=here,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        printed = (result.stdout + result.stderr).splitlines()
        assert printed == shown, f"`{PROMPT}{command}` printed:\n" + "\n".join(printed)
