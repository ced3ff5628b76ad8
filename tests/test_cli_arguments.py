"""Numeric and time arguments of the CLI: out-of-range values are one line and exit 2,
never a traceback (issue 16, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli, sqlite_url

from atlas_eda import TemporalStore
from atlas_eda.cli.command import MAX_NUMBER

HUGE = "99999999999999999999"  # past sys.maxsize and past SQLite's 64-bit integers


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A small SQLite store: (its URL, the id of its one document at version 2)."""
    url = sqlite_url(tmp_path_factory.mktemp("args") / "store.db")
    with TemporalStore(url=url) as store:
        document_id = store.create_document("Title", "Body", "ann")
        store.update_document(document_id, content="Body 2")
    return url, document_id


def _one_line_error(args: list[str], cwd: Path) -> str:
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("atlas-eda: error: ")
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["log", "--limit", HUGE], "--limit is 99999999999999999999, too large"),
        (["log", "--since", HUGE], "--since is 99999999999999999999, too large"),
        (["log", "--limit", "٣"], "--limit must be a whole number"),
        (["show", "DOC", "--version", HUGE], "--version is 99999999999999999999, too large"),
        (["show", "DOC", "--at", "0001-01-01T00:00:00+14:00"], "is out of range"),
        (["show", "DOC", "--at", "9999-12-31T23:59:59-14:00"], "is out of range"),
        (["diff", "1", HUGE], "B is 99999999999999999999, too large"),
        (["diff", "-" + HUGE, "1"], "A is -99999999999999999999, too large"),
        (["follow", "--limit", HUGE, "--timeout", "1"], "--limit is 99999999999999999999"),
        (["follow", "--timeout", "inf"], "--timeout must be a positive, finite number"),
        (["follow", "--timeout", "1e400"], "--timeout must be a positive, finite number"),
    ],
)
def test_out_of_range_arguments_are_one_line_and_exit_2(
    store_file: tuple[str, str], tmp_path: Path, command: list[str], expected: str
) -> None:
    url, document_id = store_file
    args = [document_id if a == "DOC" else a for a in command]
    line = _one_line_error([*args, "--store", url], tmp_path)
    assert expected in line, line


def test_largest_accepted_limit_prints_the_whole_log(
    store_file: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = store_file
    result = run_cli("log", "--store", url, "--limit", str(MAX_NUMBER), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "positions 1 to 2 (the log has 2 in all)" in result.stdout


def test_show_at_with_an_offset_is_the_same_moment_in_utc(
    store_file: tuple[str, str], tmp_path: Path
) -> None:
    url, document_id = store_file
    result = run_cli(
        "show", document_id, "--store", url, "--at", "9999-12-31T23:59:59+14:00", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "version 2" in result.stdout
