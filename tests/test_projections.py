"""Projections: read models folded from the store's log, tracked by eventsourcing in the
same transaction as each change (exactly once, even across SIGKILL), run in-process after
each commit, from another process (``atlas-eda project``) or rebuilt; time travel with
``as_of``; failures reported, retried, then dead-lettered; bad input refused."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import run_cli, sqlite_url

from atlas_eda import (
    DocumentsByAuthor,
    EventBus,
    EventType,
    PositionError,
    Projection,
    ProjectionError,
    Table,
    TemporalStore,
)
from atlas_eda.document_events import DocumentEvent, kind_of
from atlas_eda.projections import Sql


def _by_author(projection: DocumentsByAuthor) -> dict[str, tuple[int, int]]:
    return {row["author"]: (row["documents"], row["changes"]) for row in projection.by_author()}


def _write_some(store: TemporalStore) -> list[str]:
    ada = store.create_document("Plan", "v1", "ada")
    store.update_document(ada, content="v2", editor="bob")
    bob = store.create_document("Notes", "n1", "bob")
    gone = store.create_document("Draft", "d1", "ada")
    store.delete_document(gone, reason="dup")
    return [ada, bob, gone]


# -- in-process, after each commit -----------------------------------------------------


def test_project_keeps_the_read_model_current_after_each_commit(
    durable_url: str, tmp_path: Path
) -> None:
    # SQLite: the read model in a file of its own; PostgreSQL: in the store's database.
    home = sqlite_url(tmp_path / "views.db") if durable_url.startswith("sqlite") else durable_url
    with TemporalStore(url=durable_url) as store, DocumentsByAuthor(home) as view:
        stop = store.project(view)
        ada, _, gone = _write_some(store)
        assert _by_author(view) == {"ada": (1, 2), "bob": (1, 1)}
        row = view.query("SELECT * FROM documents_by_author WHERE document_id = :id", id=ada)[0]
        assert (row["author"], row["versions"], row["last_editor"]) == ("ada", 2, "bob")
        assert view.query(
            "SELECT deleted FROM documents_by_author WHERE document_id = :id", id=gone
        ) == [{"deleted": 1}]
        assert view.position == store.last_position()
        stop()
        store.create_document("Later", "x", "cy")
        assert "cy" not in _by_author(view)
        assert view.catch_up(store) == 1
        assert _by_author(view)["cy"] == (1, 1)


def test_a_projection_catches_up_when_added_and_sees_other_writers(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "store.db")
    with TemporalStore(url=url) as store, TemporalStore(url=url) as other:
        store.create_document("Before", "x", "ada")
        view = DocumentsByAuthor(sqlite_url(tmp_path / "views.db"))
        store.project(view)
        assert _by_author(view) == {"ada": (1, 1)}
        # Another writer commits between two of this store's commits: the next commit
        # here must not skip it (its position is not the one after the last seen).
        other.create_document("Elsewhere", "y", "bob")
        store.create_document("After", "z", "ada")
        assert _by_author(view) == {"ada": (2, 2), "bob": (1, 1)}
        view.close()


def test_the_position_is_durable_and_nothing_is_applied_twice(tmp_path: Path) -> None:
    store_url, home = sqlite_url(tmp_path / "store.db"), sqlite_url(tmp_path / "views.db")
    with TemporalStore(url=store_url) as store:
        _write_some(store)
        with DocumentsByAuthor(home) as first:
            assert first.catch_up(store) == 5
        with DocumentsByAuthor(home) as again:
            assert again.position == 5
            assert again.catch_up(store) == 0
            assert _by_author(again) == {"ada": (1, 2), "bob": (1, 1)}
        # Two projections on the same read model, one behind: its tracking record is
        # refused with its whole page, so the events are not applied a second time.
        with DocumentsByAuthor(home) as stale, DocumentsByAuthor(home) as ahead:
            store.create_document("New", "n", "cy")
            assert ahead.catch_up(store) == 1
            stale._position = 0  # as if it had read its position before the others ran
            assert stale.catch_up(store) == 0
            assert stale.position == 6
            assert _by_author(stale) == {"ada": (1, 2), "bob": (1, 1), "cy": (1, 1)}


# -- failures --------------------------------------------------------------------------


class Fragile(Projection):
    """Counts events per document; fails on documents titled 'poison' while BROKEN."""

    BROKEN: ClassVar[bool] = True
    tables: ClassVar[tuple[Table, ...]] = (
        Table("seen", {"document_id": "TEXT", "events": "INTEGER"}, key=("document_id",)),
    )

    def apply(self, event: DocumentEvent, sql: Sql) -> None:
        if kind_of(event) == "created" and getattr(event, "title") == "poison" and self.BROKEN:  # noqa: B009
            raise ValueError("cannot fold this one")
        sql.execute(
            "INSERT INTO seen VALUES (:id, 1) ON CONFLICT (document_id) DO UPDATE SET "
            "events = seen.events + 1",
            id=str(event.originator_id),
        )


def test_a_failing_projection_leaves_the_write_committed_and_catches_up_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus()
    errors: list[Any] = []
    bus.subscribe(EventType.ERROR, errors.append)
    with TemporalStore(bus, url=sqlite_url(tmp_path / "store.db")) as store:
        view = Fragile(sqlite_url(tmp_path / "views.db"), max_attempts=5)
        store.project(view)
        store.create_document("fine", "x", "ada")
        with caplog.at_level(logging.ERROR, logger="atlas_eda.projections"):
            poison = store.create_document("poison", "x", "ada")  # no exception here
        assert store.get_document(poison) is not None
        assert view.position == 1
        assert [e.data["error_type"] for e in errors] == ["ValueError"]
        assert errors[0].data["position"] == 2
        assert errors[0].data["dead_letter"] is False
        assert "cannot fold this one" in caplog.text
        store.create_document("fine again", "x", "ada")  # retried first: fails again
        assert view.position == 1
        assert len(errors) == 2
        Fragile.BROKEN = False
        try:
            store.create_document("third", "x", "ada")
        finally:
            Fragile.BROKEN = True
        assert view.position == store.last_position() == 4
        assert len(view.rows()) == 4
        assert view.dead_letters() == []
        view.close()


def test_a_poison_event_becomes_a_dead_letter_after_max_attempts(tmp_path: Path) -> None:
    with TemporalStore(url=sqlite_url(tmp_path / "store.db")) as store:
        poison = store.create_document("poison", "x", "ada")
        store.create_document("fine", "x", "bob")
        home = sqlite_url(tmp_path / "views.db")
        with Fragile(home, max_attempts=2) as view:
            assert view.catch_up(store) == 0
            assert view.position == 0
        # Attempts are counted in the read model's database: a restart goes on counting.
        with Fragile(home, max_attempts=2) as view:
            assert view.catch_up(store) == 1
            assert view.position == 2
            [letter] = view.dead_letters()
            assert (letter.position, letter.attempts, letter.error_type) == (1, 2, "ValueError")
            assert letter.event_id == f"{poison}:1"
            assert [row["document_id"] for row in view.rows()] != [poison]


class Strict(Projection):
    """Inserts a row per created document keyed by title: a second document with a
    title already seen breaks the table's key (the database refuses the write)."""

    kinds: ClassVar[tuple[str, ...]] = ("created",)
    tables: ClassVar[tuple[Table, ...]] = (Table("titles", {"title": "TEXT"}, key=("title",)),)

    def apply(self, event: DocumentEvent, sql: Sql) -> None:
        sql.execute("INSERT INTO titles VALUES (:title)", title=getattr(event, "title"))  # noqa: B009


@pytest.mark.parametrize("home", ["file", "memory"])
def test_a_constraint_the_read_model_breaks_is_a_failure_not_a_lost_race(
    tmp_path: Path, home: str
) -> None:
    # The database's own IntegrityError from apply() is the projection's failure (reported,
    # counted, dead-lettered), not "another process recorded this position first".
    bus = EventBus()
    errors: list[Any] = []
    bus.subscribe(EventType.ERROR, errors.append)
    url = sqlite_url(tmp_path / "views.db") if home == "file" else "memory://"
    with TemporalStore(bus, url=sqlite_url(tmp_path / "store.db")) as store:
        store.create_document("same", "x", "ada")
        twin = store.create_document("same", "y", "bob")
        store.create_document("other", "z", "cy")
        with Strict(url, max_attempts=2) as view:
            assert view.catch_up(store) == 1  # stops at the twin, reported
            assert view.position == 1
            assert [e.data["error_type"] for e in errors] == ["IntegrityError"]
            assert view.catch_up(store) == 1  # second attempt: a dead letter, then on
            assert view.position == store.last_position() == 3
            [letter] = view.dead_letters()
            assert (letter.position, letter.attempts) == (2, 2)
            assert letter.event_id == f"{twin}:1"
            assert sorted(row["title"] for row in view.rows()) == ["other", "same"]


# -- rebuild and time travel ----------------------------------------------------------


def test_rebuild_starts_from_an_empty_read_model(tmp_path: Path) -> None:
    with TemporalStore(url=sqlite_url(tmp_path / "store.db")) as store:
        _write_some(store)
        with DocumentsByAuthor(sqlite_url(tmp_path / "views.db"), page_size=2) as view:
            view.catch_up(store)
            before = view.rows()
            with sqlite3.connect(tmp_path / "views.db") as raw:  # tamper with the model
                raw.execute("UPDATE documents_by_author SET versions = 99")
            assert view.rebuild(store) == 5
            assert view.rows() == before
            assert view.position == 5


def test_as_of_builds_the_read_model_at_a_past_position(tmp_path: Path) -> None:
    with TemporalStore(url=sqlite_url(tmp_path / "store.db")) as store:
        ada, _, _ = _write_some(store)
        with DocumentsByAuthor(sqlite_url(tmp_path / "views.db")) as view:
            store.project(view)
            past = view.as_of(1)
            assert past.url == "memory://"
            assert _by_author(past) == {"ada": (1, 1)}
            assert _by_author(view.as_of(0)) == {}
            assert _by_author(view.as_of(5)) == _by_author(view)
            changed = view.diff(past)
            assert changed[(ada,)][1] is not None
            assert changed[(ada,)][1]["versions"] == 1
            assert changed[(ada,)][0] is not None
            assert changed[(ada,)][0]["versions"] == 2
            assert len(changed) == 3  # ada's changed; bob's and the deleted one are new here
            with pytest.raises(PositionError, match="positions run from 0 to 5"):
                view.as_of(6)


def test_as_of_raises_on_an_event_that_fails_and_keeps_no_letter(tmp_path: Path) -> None:
    with TemporalStore(url=sqlite_url(tmp_path / "store.db")) as store:
        store.create_document("fine", "x", "ada")
        store.create_document("poison", "x", "ada")
        Fragile.BROKEN = False
        try:
            view = Fragile(sqlite_url(tmp_path / "views.db"))
            view.catch_up(store)
        finally:
            Fragile.BROKEN = True
        assert len(view.as_of(1).rows()) == 1
        with pytest.raises(ProjectionError, match="could not be built as of position 2"):
            view.as_of(2)
        assert view.dead_letters() == []
        view.close()


# -- bad input -------------------------------------------------------------------------


def test_a_table_with_another_schema_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE documents_by_author (author TEXT PRIMARY KEY, n INTEGER)")
        raw.execute("INSERT INTO documents_by_author VALUES ('ada', 3)")
    with pytest.raises(ProjectionError, match="already exists with columns") as refused:
        DocumentsByAuthor(sqlite_url(path))
    assert "nothing was changed or dropped" in str(refused.value)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT * FROM documents_by_author").fetchall() == [("ada", 3)]


def test_a_table_with_another_schema_is_refused_on_postgresql(postgres_url: str) -> None:
    class Other(Fragile):
        tables: ClassVar[tuple[Table, ...]] = (
            Table("seen", {"document_id": "TEXT", "events": "REAL"}, key=("document_id",)),
        )

    with Fragile(postgres_url) as first:
        assert first.rows() == []
    with pytest.raises(ProjectionError, match="already exists"):
        Other(postgres_url)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"url": 5}, TypeError, "must be a str"),
        ({"url": "memory://x"}, Exception, "memory store takes no path"),
        ({"url": "ftp://x"}, Exception, "unknown scheme"),
        ({"max_attempts": 0}, ValueError, "max_attempts"),
        ({"page_size": -1}, ValueError, "page_size"),
        ({"name": ""}, ValueError, "non-empty str"),
    ],
)
def test_nonsense_arguments_are_refused(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        DocumentsByAuthor(**arguments)


def test_nonsense_declarations_are_refused(store: TemporalStore) -> None:
    with pytest.raises(ValueError, match="has type 'VARCHAR'"):
        Table("t", {"a": "VARCHAR"}, key=("a",))
    with pytest.raises(ValueError, match="must name one or more of its columns"):
        Table("t", {"a": "TEXT"}, key=("b",))
    with pytest.raises(ValueError, match="not a lower-case SQL identifier"):
        Table("t; DROP TABLE x", {"a": "TEXT"}, key=("a",))

    class NoKinds(Fragile):
        kinds = ()

    with pytest.raises(TypeError, match="kinds must be some of"):
        NoKinds()
    with pytest.raises(TypeError, match=r"takes an atlas_eda\.projections\.Projection"):
        store.project(object())
    with DocumentsByAuthor() as view:
        with pytest.raises(ProjectionError, match="has no store yet"):
            view.as_of(0)
        with pytest.raises(ValueError, match="limit must be a positive int"):
            view.catch_up(store, limit=0)
        with pytest.raises(ValueError, match="has no table 'nope'"):
            view.rows("nope")


# -- another process: atlas-eda project ----------------------------------------------


COUNTING = """
from typing import ClassVar
from atlas_eda import Projection, Table

class Counting(Projection):
    tables: ClassVar = (
        Table("applied", {"document_id": "TEXT", "times": "INTEGER"}, key=("document_id",)),
    )

    def apply(self, event, sql):
        sql.execute(
            "INSERT INTO applied VALUES (:id, 1) ON CONFLICT (document_id) DO UPDATE SET "
            "times = applied.times + 1",
            id=str(event.originator_id),
        )

def make():
    return Counting("sqlite:///views.db", page_size=1)

def not_a_projection():
    return 42
"""


def test_the_project_command_runs_a_projection_from_its_factory(tmp_path: Path) -> None:
    (tmp_path / "counting.py").write_text(COUNTING, encoding="utf-8")
    store_url = sqlite_url(tmp_path / "store.db")
    with TemporalStore(url=store_url) as store:
        _write_some(store)
    ran = run_cli("project", "--store", store_url, "--app", "counting:make", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "Counting: applied 5 events, position 5 of 5\n"
    again = run_cli("project", "--store", store_url, "--app", "counting:make", cwd=tmp_path)
    assert again.stdout == "Counting: applied 0 events, position 5 of 5\n"
    rebuilt = run_cli(
        "project", "--store", store_url, "--app", "counting:make", "--rebuild", cwd=tmp_path
    )
    assert rebuilt.stdout == "Counting: applied 5 events, position 5 of 5\n"
    bad = run_cli(
        "project", "--store", store_url, "--app", "counting:not_a_projection", cwd=tmp_path
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.startswith("atlas-eda: error: --app 'counting:not_a_projection'")
    assert "not an atlas_eda.projections.Projection" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1
    timeout = run_cli(
        "project", "--store", store_url, "--app", "counting:make", "--timeout", "-1", cwd=tmp_path
    )
    assert timeout.returncode == 2
    assert "--timeout must be a positive" in timeout.stderr


def _applied(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    with sqlite3.connect(path, timeout=30) as raw:
        try:
            return dict(raw.execute("SELECT document_id, times FROM applied").fetchall())
        except sqlite3.OperationalError:  # the child has not created its table yet
            return {}


def test_sigkill_while_projecting_applies_every_event_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "counting.py").write_text(COUNTING, encoding="utf-8")
    store_url = sqlite_url(tmp_path / "store.db")
    documents, versions = 200, 3
    with TemporalStore(url=store_url, snapshot_interval=0) as store:
        ids = [store.create_document(f"d{i}", "v1", "ada") for i in range(documents)]
        for version in range(2, versions + 1):
            for document_id in ids:
                store.update_document(document_id, content=f"v{version}")
    total = documents * versions
    command = [sys.executable, "-m", "atlas_eda.cli", "project", "--store", store_url]
    command += ["--app", "counting:make"]
    environment = {k: v for k, v in os.environ.items() if k != "ATLAS_EDA_STORE_URL"}
    kills = 0
    for threshold in (total // 5, total // 2, (4 * total) // 5):
        child = subprocess.Popen(command, cwd=tmp_path, env=environment)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if sum(_applied(tmp_path / "views.db").values()) >= threshold:
                break
            time.sleep(0.02)
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        child.wait(timeout=60)
    assert kills >= 1  # at least one run was killed while it was applying events
    finished = run_cli("project", "--store", store_url, "--app", "counting:make", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.endswith(f"position {total} of {total}\n")
    applied = _applied(tmp_path / "views.db")
    assert len(applied) == documents
    assert set(applied.values()) == {versions}  # each event once: none lost, none twice
