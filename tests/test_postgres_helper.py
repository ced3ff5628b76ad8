"""The throwaway PostgreSQL server for tests (atlas_eda.testing.postgres): it starts, gives
working store URLs, stops and leaves nothing behind, refuses what it cannot do with a
message saying what to do, and its documented example runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from atlas_eda import TemporalStore
from atlas_eda.testing import postgres
from atlas_eda.testing.postgres import (
    HOW_TO_INSTALL,
    PostgresCluster,
    PostgresUnavailableError,
    start_cluster,
)

pytest_plugins = ["pytester"]


def documented_example() -> str:
    """The ``conftest.py`` example of the module's docstring, dedented."""
    docstring = ast.get_docstring(ast.parse(Path(postgres.__file__).read_text(encoding="utf-8")))
    assert docstring is not None
    example = docstring.split("::\n\n", 1)[1]
    return "\n".join(line.removeprefix("    ") for line in example.splitlines())


def test_a_cluster_serves_stores_then_stops_and_leaves_nothing(
    pg_cluster: PostgresCluster,
) -> None:
    # pg_cluster (the session's server) only makes this skip where PostgreSQL is missing.
    import psycopg

    with start_cluster(durable=False) as cluster:
        assert (cluster.directory / "data" / "PG_VERSION").is_file()
        assert not (cluster.directory / "pwfile").exists()  # the password left no file
        database = cluster.create_database()
        store = TemporalStore(url=cluster.url(database))
        doc_id = store.create_document("Plan", "draft", "ann")
        assert store.get_document(doc_id).title == "Plan"  # type: ignore[union-attr]
        store.close()
    assert not cluster.directory.exists()
    cluster.stop()  # idempotent
    with pytest.raises(psycopg.OperationalError):
        cluster.connect()


def test_a_wrong_password_is_refused(pg_cluster: PostgresCluster) -> None:
    import psycopg

    url = pg_cluster.url().replace(f":{pg_cluster.password}@", ":wrong@")
    assert url != pg_cluster.url()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url, connect_timeout=10)


def test_attempts_below_one_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"start_cluster\(attempts=0\): .* pass 1 or more"):
        start_cluster(attempts=0, parent=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_missing_server_programs_say_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres, "find_bindir", lambda: None)
    with pytest.raises(PostgresUnavailableError) as excinfo:
        start_cluster(parent=str(tmp_path))
    assert str(excinfo.value) == f"PostgreSQL's server is not installed: {HOW_TO_INSTALL}."
    assert list(tmp_path.iterdir()) == []


def test_the_documented_conftest_runs(
    pg_cluster: PostgresCluster, pytester: pytest.Pytester
) -> None:
    pytester.makeconftest(documented_example())
    pytester.makepyfile(
        """
        def test_a_store_on_its_own_schema(pg_store):
            doc_id = pg_store.create_document("Plan", "draft", "ann")
            assert pg_store.get_document(doc_id).version == 1


        def test_another_test_sees_none_of_it(pg_store):
            assert pg_store.get_all_documents() == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_docs_show_the_same_example() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text("utf-8")
    section = docs.split("## Testing against PostgreSQL", 1)[1]
    assert (
        section.split("```python\n", 1)[1].split("```", 1)[0].strip()
        == documented_example().strip()
    )
