"""Hostile stores and corrupted files (issue 16, items 5 and 6): a stored topic never
imports a module, and a damaged SQLite file fails every read path with the library's
errors naming the file and the position, the CLI with one line and exit 2."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from uuid import UUID

import pytest
from conftest import run_cli, sqlite_url

from atlas_eda import (
    AtlasEdaError,
    CorruptStoreError,
    EventBus,
    StoreFollower,
    StoreOpenError,
    StoreReadError,
    TemporalStore,
)
from atlas_eda.store.topics import is_registered_topic, register_topic

PAGE = 4096  # SQLite's default page size, which the stores here use


def _make_store(path: Path, documents: int = 3) -> list[str]:
    """A store of ``documents`` documents, each created then updated: positions 1..n are
    the creations, n+1..2n the updates."""
    with TemporalStore(url=sqlite_url(path)) as store:
        ids = [store.create_document(f"t{i}", "x" * 300, "ann") for i in range(documents)]
        for document_id in ids:
            store.update_document(document_id, content="y" * 300)
    return ids


def _set_row(path: Path, rowid: int, column: str, value: object) -> None:
    """Tamper with one stored event, as something other than atlas_eda would."""
    with sqlite3.connect(path) as connection:
        connection.execute(f"UPDATE stored_events SET {column} = ? WHERE rowid = ?", (value, rowid))
    connection.close()


def _one_line_error(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = run_cli(*args, cwd=cwd, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("atlas-eda: error: ")
    return lines[0]


# -- item 5: never import by name from a store -------------------------------------------

MARKER_MODULE = """
import pathlib, os
pathlib.Path(os.environ["MARKER_FILE"]).write_text("imported")
class X:
    pass
"""


@pytest.fixture
def marker(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A module that writes a marker file when imported, importable through PYTHONPATH."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "atlas_marker_mod.py").write_text(MARKER_MODULE)
    marker_file = tmp_path / "imported.marker"
    env = {"PYTHONPATH": f"{modules}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["MARKER_FILE"] = str(marker_file)
    return env, marker_file


@pytest.mark.parametrize("topic", ["this:x", "atlas_marker_mod:X"])
def test_cli_never_imports_a_module_a_stored_topic_names(
    tmp_path: Path, marker: tuple[dict[str, str], Path], topic: str
) -> None:
    env, marker_file = marker
    path = tmp_path / "store.db"
    ids = _make_store(path)
    _set_row(path, 4, "topic", topic)  # the first document's update
    url = sqlite_url(path)
    for args in (
        ["log", "--store", url],
        ["show", ids[0], "--store", url],
        ["diff", "0", "6", "--store", url],
    ):
        line = _one_line_error(args, tmp_path, env)
        assert f"{topic!r} names no class this store writes" in line, line
        assert f"id {ids[0]} version 2" in line
        assert str(path) in line
    # A follower reads only the document events' topics (the query names them), so the
    # tampered row is never selected, let alone resolved.
    follow = ["follow", "--from-start", "--timeout", "3", "--limit", "5", "--store", url]
    result = run_cli(*follow, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 5
    assert not marker_file.exists()
    result = run_cli("log", "--store", url, cwd=tmp_path, env=env)
    assert "Zen of Python" not in result.stdout + result.stderr


def test_library_reads_name_the_position_and_import_nothing(
    tmp_path: Path, marker: tuple[dict[str, str], Path]
) -> None:
    env, marker_file = marker
    path = tmp_path / "store.db"
    ids = _make_store(path)
    _set_row(path, 4, "topic", "atlas_marker_mod:X")
    _set_row(path, 5, "topic", "this:x")
    script = textwrap.dedent(
        f"""
        import json, sys
        from atlas_eda import CorruptStoreError, TemporalStore
        store = TemporalStore(url={sqlite_url(path)!r})
        seen = {{}}
        def attempt(name, read):
            try:
                read()
            except CorruptStoreError as exc:
                seen[name] = [exc.position, str(exc)]
        attempt("get_document", lambda: store.get_document({ids[0]!r}))
        attempt("get_all_documents", store.get_all_documents)
        attempt("timeline", lambda: list(store.timeline()))
        attempt("state_at", lambda: store.timeline().state_at(6))
        attempt("decode", lambda: store.decode(store.notifications(5, 1)[0]))
        seen["imported"] = [m for m in ("this", "atlas_marker_mod") if m in sys.modules]
        print(json.dumps(seen))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen.pop("imported") == []
    assert not marker_file.exists()
    assert seen["get_document"][0] is None  # read by id: the message names id and version
    assert f"id {ids[0]} version 2" in seen["get_document"][1]
    assert seen["timeline"][0] == 4
    assert seen["decode"][0] == 5
    assert "'this:x'" in seen["decode"][1]
    assert set(seen) == {"get_document", "get_all_documents", "timeline", "state_at", "decode"}
    for _, message in seen.values():
        assert str(path) in message


def _tamper_originator_topic(path: Path, rowid: int) -> None:
    with sqlite3.connect(path) as connection:
        query = "SELECT state FROM stored_events WHERE rowid = ?"
        [state] = connection.execute(query, (rowid,)).fetchone()
        tampered = json.loads(state)
        tampered["originator_topic"] = "this:x"
        connection.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = ?",
            (json.dumps(tampered).encode(), rowid),
        )
    connection.close()


def test_a_creation_naming_another_aggregate_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    ids = _make_store(path, documents=2)
    _tamper_originator_topic(path, 2)
    with TemporalStore(url=sqlite_url(path)) as store:
        with pytest.raises(CorruptStoreError, match="aggregate topic 'this:x'"):
            store.get_document(ids[1])
        assert store.get_document(ids[0]) is not None
    _tamper_originator_topic(path, 1)  # the event the open check decodes
    with pytest.raises(StoreOpenError, match="aggregate topic 'this:x'"):
        TemporalStore(url=sqlite_url(path))


def test_register_topic_allows_a_class_of_the_store() -> None:
    class Extra:
        pass

    assert not is_registered_topic(f"{__name__}:test_register_topic_allows_a_class_of_the_store")
    topic = register_topic(Extra)
    assert is_registered_topic(topic)
    assert not is_registered_topic("this:x")
    with pytest.raises(TypeError, match="takes a class"):
        register_topic("this:x")  # type: ignore[arg-type]


# -- item 6: corrupted files fail cleanly everywhere ------------------------------------


def _corrupt_later_pages(path: Path) -> None:
    """Overwrite the second half of the file's pages (page 1, the header, and the schema
    stay intact, so the store still opens)."""
    pages = path.stat().st_size // PAGE
    with path.open("r+b") as file:
        for page in range(pages // 2, pages):
            file.seek(page * PAGE)
            file.write(b"\xde\xad\xbe\xef" * (PAGE // 4))


@pytest.fixture
def damaged_pages(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "store.db"
    ids = _make_store(path, documents=60)
    _corrupt_later_pages(path)
    return path, ids


def test_library_read_paths_raise_store_read_error_on_damaged_pages(
    damaged_pages: tuple[Path, list[str]],
) -> None:
    path, ids = damaged_pages
    store = TemporalStore(url=sqlite_url(path))  # opening checks page 1 and the first event
    reads = {
        "last_position": store.last_position,
        "notifications": lambda: store.notifications(1, 1000),
        "get_all_documents": store.get_all_documents,
        "list_document_ids": store.list_document_ids,
        "timeline": lambda: list(store.timeline()),
        "get_document": lambda: [store.get_document(i) for i in ids],
        "latest_version": lambda: [store.latest_version(i) for i in ids],
        "events.get": lambda: [list(store.events.get(UUID(i))) for i in ids],
    }
    for name, read in reads.items():
        with pytest.raises(StoreReadError) as caught:
            read()
        assert str(path) in str(caught.value), name
        assert "malformed" in str(caught.value), name
    store.close()


def test_follower_on_damaged_pages_raises_the_librarys_error(
    damaged_pages: tuple[Path, list[str]],
) -> None:
    path, _ = damaged_pages

    def follow() -> None:
        with StoreFollower(sqlite_url(path), EventBus(), None, from_start=True) as follower:
            follower.poll()

    with pytest.raises(AtlasEdaError) as caught:  # opening may already fail, or polling
        follow()
    assert str(path) in str(caught.value)


def test_cli_on_damaged_pages_is_one_line_and_exit_2(
    damaged_pages: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, ids = damaged_pages
    url = sqlite_url(path)
    for args in (
        ["log", "--store", url],
        ["show", ids[-1], "--store", url],
        ["diff", "0", "1", "--store", url],
        ["follow", "--from-start", "--timeout", "5", "--store", url],
    ):
        line = _one_line_error(args, tmp_path)
        assert str(path) in line, line


def test_damaged_event_state_names_its_position(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    ids = _make_store(path)
    _set_row(path, 5, "state", b'{"b')  # not JSON
    _set_row(path, 6, "state", b"{}")  # JSON, but none of the event's fields
    with TemporalStore(url=sqlite_url(path)) as store:
        with pytest.raises(CorruptStoreError, match="at position 5, ") as caught:
            list(store.timeline())
        assert caught.value.position == 5
        assert "cannot be decoded" in str(caught.value)
        with pytest.raises(CorruptStoreError, match=r"lacks the fields .*timestamp"):
            store.get_document(ids[2])
        assert store.get_document(ids[0]) is not None  # the intact ones still read
    url = sqlite_url(path)
    for args in (["log", "--store", url], ["show", ids[1], "--store", url]):
        line = _one_line_error(args, tmp_path)
        assert f"id {ids[1]} version 2" in line, line


def test_invalid_utf8_in_the_schema_or_a_row_is_the_librarys_error(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    ids = _make_store(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE stored_events SET topic = CAST(X'ff' AS TEXT) WHERE rowid = 5")
    connection.close()
    with TemporalStore(url=sqlite_url(path)) as store:
        with pytest.raises(StoreReadError, match="decode to UTF-8"):
            list(store.timeline())
        with pytest.raises(StoreReadError, match="decode to UTF-8"):
            store.get_document(ids[1])
    line = _one_line_error(["log", "--store", sqlite_url(path)], tmp_path)
    assert str(path) in line
    schema = tmp_path / "schema.db"
    _make_store(schema)
    with sqlite3.connect(schema) as connection:
        connection.execute("PRAGMA writable_schema = 1")
        connection.execute(
            "UPDATE sqlite_master SET name = CAST(X'ff' AS TEXT), tbl_name = CAST(X'ff' AS TEXT),"
            " sql = CAST(X'435245415445205441424c452022ff2220287829' AS TEXT)"
            " WHERE name = 'stored_snapshots'"
        )
    connection.close()
    with pytest.raises(StoreOpenError, match="decode to UTF-8"):
        TemporalStore(url=sqlite_url(schema))
    line = _one_line_error(["log", "--store", sqlite_url(schema)], tmp_path)
    assert str(schema) in line
