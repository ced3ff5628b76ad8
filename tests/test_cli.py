"""The atlas-eda command, run as a user runs it: a real process on a real SQLite file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_cli

from atlas_eda.cli import format_table, main


def _version_rows(output: str) -> list[str]:
    section = output.split("Document versions")[1].split("Metrics", maxsplit=1)[0]
    return [line for line in section.splitlines() if re.match(r"^[0-9a-f]{8}\s", line)]


def test_demo_twice_keeps_the_first_runs_documents(tmp_path: Path) -> None:
    first = run_cli("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "atlas-demo.db").exists()
    for title in ("Bus history", "Document versions", "Metrics"):
        assert title in first.stdout
    assert "0 document(s) from earlier runs" in first.stdout
    first_rows = _version_rows(first.stdout)
    first_ids = {row.split()[0] for row in first_rows}
    assert len(first_ids) == 2

    second = run_cli("demo", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "2 document(s) from earlier runs" in second.stdout
    second_rows = _version_rows(second.stdout)
    earlier = {row.split()[0] for row in second_rows if " earlier " in row}
    assert earlier == first_ids
    # Every version the first run showed is shown again unchanged, but for the column
    # saying which run created it.
    assert {_cells_without_run(r) for r in first_rows} <= {
        _cells_without_run(r) for r in second_rows
    }
    assert len(second_rows) == 2 * len(first_rows)


def _cells_without_run(row: str) -> tuple[str, ...]:
    cells = re.split(r"\s{2,}", row.strip())
    return (cells[0], *cells[2:])


def test_demo_metrics_table_has_count_avg_p95_errors(tmp_path: Path) -> None:
    result = run_cli("demo", "--store", "memory://", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = result.stdout.split("Metrics (this run)")[1]
    assert re.search(r"method\s+count\s+avg ms\s+p95 ms\s+errors", metrics)
    update = next(
        line for line in metrics.splitlines() if "DocumentService.update_document" in line
    )
    count, _avg, _p95, errors = update.split()[1:5]
    assert (count, errors) == ("3", "1")  # the refused update of a deleted document counts
    assert not (tmp_path / "atlas-demo.db").exists()


def test_demo_with_a_bad_store_url_fails_clearly(tmp_path: Path) -> None:
    result = run_cli("demo", "--store", "nosuch://x", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown scheme 'nosuch'" in result.stderr
    assert "Traceback" not in result.stderr


def test_main_returns_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--store", f"sqlite:///{tmp_path}/missing-dir/x.db"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_format_table_aligns_and_shortens() -> None:
    table = format_table("T", ["a", "long header"], [[1, "x" * 100], [None, {"id": "1234567890"}]])
    lines = table.splitlines()
    assert lines[0] == "T"
    assert lines[2].startswith("a  long header")
    assert "…" in lines[4]
    assert "id=12345678" in lines[5]
    assert format_table("Empty", ["a"], []).endswith("(none)")
