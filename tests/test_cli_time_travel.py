"""The time-travel commands ``atlas-eda log / show / diff``, run as a user runs them: a real
process on a real SQLite file filled through ``TemporalStore`` (and ``main`` in-process
where that is handier)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from eventsourcing.sqlite import SQLiteApplicationRecorder

from atlas_eda import Document, RecordedEvent, TemporalStore
from atlas_eda.cli import main


@dataclass(frozen=True)
class Filled:
    """A SQLite store the test filled, closed again, and what went into it."""

    path: Path
    url: str
    alpha: str
    beta: str
    gamma: str
    events: list[RecordedEvent]


@pytest.fixture
def filled(tmp_path: Path) -> Filled:
    """Seven events over three documents:

    1 alpha created · 2 beta created · 3 alpha updated (content, by eve) · 4 gamma created ·
    5 alpha updated (title) · 6 beta deleted · 7 gamma updated (content, by gil)
    """
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    store = TemporalStore(url=url)
    try:
        alpha = store.create_document("Alpha", "first draft", "ann")
        beta = store.create_document("Beta", "beta body", "bob")
        store.update_document(alpha, content="second draft", editor="eve")
        gamma = store.create_document("Gamma", "gamma body", "gus")
        store.update_document(alpha, title="Alpha v3")
        store.delete_document(beta, reason="obsolete")
        store.update_document(gamma, content="gamma two", editor="gil")
        events = list(store.timeline())
    finally:
        store.close()
    assert [e.position for e in events] == list(range(1, 8))
    return Filled(path, url, alpha, beta, gamma, events)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def run_main(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        status = int(exc.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the first table in ``output``, split into cells."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if re.fullmatch(r"-+(  -+)*", line))
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip() or line == "(none)":
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def log_rows(output: str) -> list[tuple[int, str, int, str]]:
    """(position, document, version, kind) of each row of a ``log`` table."""
    return [(int(r[0]), r[2], int(r[3]), r[4]) for r in table_rows(output)]


def fields(output: str) -> dict[str, str]:
    """The field → value rows of a ``show`` table (empty values as "")."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    result: dict[str, str] = {}
    last = ""
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        name, _, value = line.partition("  ")
        if name:
            result[name] = value.strip()
        else:  # a long value goes on over several lines
            result[last] += " " + value.strip()
        last = name or last
    return result


def when(event: RecordedEvent) -> str:
    """How the CLI prints an event's time."""
    return event.timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# -- log -------------------------------------------------------------------------------


def test_log_lists_every_event_oldest_first(filled: Filled) -> None:
    out = ok(run_cli("log", "--store", filled.url, cwd=filled.path.parent))
    a, b, g = filled.alpha, filled.beta, filled.gamma
    assert log_rows(out) == [
        (1, a, 1, "created"),
        (2, b, 1, "created"),
        (3, a, 2, "updated"),
        (4, g, 1, "created"),
        (5, a, 3, "updated"),
        (6, b, 2, "deleted"),
        (7, g, 2, "updated"),
    ]
    rows = table_rows(out)
    assert [r[1] for r in rows] == [when(e) for e in filled.events]
    assert rows[0][5] == "title='Alpha', content='first draft', author='ann'"
    assert rows[2][5] == "content='second draft', last_editor='eve'"
    assert rows[5][5] == "is_deleted=True, deletion_reason='obsolete'"
    assert "not shown" not in out
    assert "the log has 7 in all" in out


def test_log_since_and_limit_page_through_the_log(filled: Filled) -> None:
    out = ok(run_cli("log", "--store", filled.url, "--since", "3", "--limit", "2", cwd=Path()))
    assert [row[0] for row in log_rows(out)] == [3, 4]
    assert "3 more events not shown; use --since/--limit" in out
    assert "--since 5" in out

    last_page = ok(run_cli("log", "--store", filled.url, "--since", "5", cwd=Path()))
    assert [row[0] for row in log_rows(last_page)] == [5, 6, 7]
    assert "not shown" not in last_page

    from_zero = ok(
        run_cli("log", "--store", filled.url, "--since", "0", "--limit", "1", cwd=Path())
    )
    assert [row[0] for row in log_rows(from_zero)] == [1]

    one_left = ok(run_cli("log", "--store", filled.url, "--since", "6", "--limit", "1", cwd=Path()))
    assert [row[0] for row in log_rows(one_left)] == [6]
    assert "1 more event not shown; use --since/--limit" in one_left


def test_log_doc_shows_only_that_documents_events(
    filled: Filled, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ok(run_cli("log", "--store", filled.url, "--doc", filled.alpha, cwd=Path()))
    assert log_rows(out) == [
        (1, filled.alpha, 1, "created"),
        (3, filled.alpha, 2, "updated"),
        (5, filled.alpha, 3, "updated"),
    ]

    status, out, err = run_main(
        ["log", "--store", filled.url, "--doc", filled.alpha, "--limit", "2"], capsys
    )
    assert (status, err) == (0, "")
    assert [row[0] for row in log_rows(out)] == [1, 3]
    assert "1 more event not shown; use --since/--limit" in out

    # A unique prefix of the id (the demo prints 8 characters) names the document too.
    status, out, err = run_main(
        ["log", "--store", filled.url, "--doc", filled.gamma[:8], "--since", "5"], capsys
    )
    assert (status, err) == (0, "")
    assert log_rows(out) == [(7, filled.gamma, 2, "updated")]


def test_log_reads_only_the_rows_it_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'long.db'}"
    store = TemporalStore(url=url)
    try:
        document = Document(title="Long", content="v1", author="ann")
        for n in range(2, 301):
            document.update(content=f"v{n}")
        store._application.save(document)  # 300 events, one transaction
    finally:
        store.close()

    fetched: list[int] = []
    original = SQLiteApplicationRecorder.select_notifications

    def counting(self: SQLiteApplicationRecorder, *args: Any, **kwargs: Any) -> Any:
        page = original(self, *args, **kwargs)
        fetched.append(len(page))
        return page

    monkeypatch.setattr(SQLiteApplicationRecorder, "select_notifications", counting)
    status, out, err = run_main(["log", "--store", url, "--since", "120", "--limit", "5"], capsys)
    assert (status, err) == (0, "")
    assert [row[0] for row in log_rows(out)] == [120, 121, 122, 123, 124]
    assert "176 more events not shown" in out
    assert sum(fetched) <= 5


def test_log_of_an_empty_store_prints_an_empty_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(["log", "--store", "memory://"], capsys)
    assert (status, err) == (0, "")
    assert "(none)" in out


def test_store_url_comes_from_the_environment(filled: Filled, tmp_path: Path) -> None:
    out = ok(run_cli("log", cwd=tmp_path, env={"ATLAS_EDA_STORE_URL": filled.url}))
    assert len(log_rows(out)) == 7
    out = ok(run_cli("show", filled.gamma, cwd=tmp_path, env={"ATLAS_EDA_STORE_URL": filled.url}))
    assert fields(out)["content"] == "gamma two"


# -- show ------------------------------------------------------------------------------


def test_show_prints_every_field_of_the_latest_version(filled: Filled) -> None:
    out = ok(run_cli("show", filled.alpha, "--store", filled.url, cwd=Path()))
    shown = fields(out)
    assert shown == {
        "document_id": filled.alpha,
        "version": "3",
        "title": "Alpha v3",
        "content": "second draft",
        "author": "ann",
        "last_editor": "ann",
        "created_at": when(filled.events[0]),
        "modified_at": when(filled.events[4]),
        "is_deleted": "False",
        "deleted_at": "",
        "deletion_reason": "",
    }
    assert "Versions: 1, 2, 3 (3 versions; shown: 3, latest: 3)" in out


def test_show_a_deleted_document(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(["show", filled.beta[:8], "--store", filled.url], capsys)
    assert (status, err) == (0, "")
    shown = fields(out)
    assert shown["version"] == "2"
    assert shown["is_deleted"] == "True"
    assert shown["deletion_reason"] == "obsolete"
    assert shown["deleted_at"] == when(filled.events[5])


def test_show_prints_long_values_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'long.db'}"
    content = " ".join(f"word{n}" for n in range(60))
    store = TemporalStore(url=url)
    try:
        document = store.create_document("Long", content, "ann")
    finally:
        store.close()
    status, out, err = run_main(["show", document, "--store", url], capsys)
    assert (status, err) == (0, "")
    assert "…" not in out
    assert fields(out)["content"] == content


def test_show_version(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(run_cli("show", filled.alpha, "--store", filled.url, "--version", "2", cwd=Path()))
    shown = fields(out)
    assert (shown["version"], shown["title"], shown["content"]) == ("2", "Alpha", "second draft")
    assert shown["last_editor"] == "eve"
    assert "shown: 2, latest: 3" in out

    status, out, _ = run_main(
        ["show", filled.alpha, "--store", filled.url, "--version", "1"], capsys
    )
    assert status == 0
    assert (fields(out)["content"], fields(out)["last_editor"]) == ("first draft", "ann")


def test_show_at_a_time_gives_the_version_current_then(
    filled: Filled, capsys: pytest.CaptureFixture[str]
) -> None:
    second = filled.events[2]  # alpha's version 2
    assert (second.document_id, second.version) == (filled.alpha, 2)
    out = ok(
        run_cli(
            "show", filled.alpha, "--store", filled.url, "--at", second.timestamp.isoformat(),
            cwd=Path(),
        )
    )  # fmt: skip
    assert fields(out)["version"] == "2"
    assert fields(out)["content"] == "second draft"

    def version_at(text: str) -> str:
        status, out, err = run_main(
            ["show", filled.alpha, "--store", filled.url, "--at", text], capsys
        )
        assert (status, err) == (0, ""), err
        return fields(out)["version"]

    moment = second.timestamp
    # A time without an offset is UTC; other offsets name the same instant.
    assert version_at(moment.replace(tzinfo=None).isoformat()) == "2"
    assert version_at(moment.astimezone(timezone(timedelta(hours=2))).isoformat()) == "2"
    assert version_at(moment.isoformat().replace("+00:00", "Z")) == "2"
    # The time the log prints can be pasted back.
    assert version_at(when(second)) == "2"
    # Just before the update: version 1; long after everything: the latest.
    assert version_at((moment - timedelta(microseconds=1)).isoformat()) == "1"
    assert version_at(filled.events[-1].timestamp.isoformat()) == "3"
    assert version_at((moment + timedelta(days=365)).isoformat()) == "3"


def test_show_help_says_a_time_without_offset_is_utc(filled: Filled) -> None:
    out = ok(run_cli("show", "--help", cwd=Path()))
    text = " ".join(out.split())
    assert "without an offset is UTC" in text
    assert "--version N" in text
    assert "--at ISO-TIME" in text


# -- diff ------------------------------------------------------------------------------


def test_diff_shows_before_and_after(filled: Filled) -> None:
    out = ok(run_cli("diff", "--store", filled.url, "2", "6", cwd=Path()))
    rows = {(r[0], r[1], r[2]): r[3:] for r in table_rows(out)}
    a, b, g = filled.alpha, filled.beta, filled.gamma
    assert rows[(a, "changed", "title")] == ["Alpha", "Alpha v3"]
    assert rows[(a, "changed", "content")] == ["first draft", "second draft"]
    assert rows[(a, "changed", "version")] == ["1", "3"]
    assert rows[(b, "changed", "is_deleted")] == ["False", "True"]
    assert rows[(b, "changed", "deletion_reason")] == ["obsolete"]  # empty before
    assert rows[(g, "added", "title")] == ["Gamma"]
    # last_editor went ann → eve → ann: no difference between 2 and 6.
    assert (a, "changed", "last_editor") not in rows
    assert "before (#2)" in out
    assert "after (#6)" in out


def test_diff_from_the_empty_store_and_backwards(
    filled: Filled, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_main(["diff", "--store", filled.url, "0", "7"], capsys)
    assert (status, err) == (0, "")
    added = {(r[0], r[1]) for r in table_rows(out)}
    assert added == {(d, "added") for d in (filled.alpha, filled.beta, filled.gamma)}

    status, out, _ = run_main(["diff", "--store", filled.url, "4", "2"], capsys)
    assert status == 0
    assert (filled.gamma, "removed", "title", "Gamma") in {tuple(r) for r in table_rows(out)}


def test_diff_of_a_position_with_itself_says_no_differences(filled: Filled) -> None:
    out = ok(run_cli("diff", "--store", filled.url, "3", "3", cwd=Path()))
    assert "no differences" in out


# -- errors ----------------------------------------------------------------------------

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"

ERRORS: list[tuple[str, list[str], list[str]]] = [
    ("unknown id", ["show", UNKNOWN_ID], [UNKNOWN_ID, "atlas-eda log"]),
    ("not an id", ["show", "no-such-document"], ["no-such-document", "atlas-eda log"]),
    ("unknown --doc", ["log", "--doc", UNKNOWN_ID], [UNKNOWN_ID, "atlas-eda log"]),
    (
        "version too high",
        ["show", "{alpha}", "--version", "4"],
        ["no version 4", "latest version is 3"],
    ),
    (
        "version zero",
        ["show", "{alpha}", "--version", "0"],
        ["no version 0", "latest version is 3"],
    ),
    ("version not a number", ["show", "{alpha}", "--version", "two"], ["--version", "'two'"]),
    (
        "since past the end",
        ["log", "--since", "8"],
        ["past the end", "last recorded position is 7"],
    ),
    ("diff past the end", ["diff", "0", "8"], ["past the end", "last recorded position is 7"]),
    ("negative since", ["log", "--since", "-1"], ["negative", "-1"]),
    ("negative diff position", ["diff", "-1", "3"], ["negative", "-1"]),
    ("position not a number", ["diff", "1", "x"], ["whole number", "'x'"]),
    ("limit zero", ["log", "--limit", "0"], ["--limit", "at least 1"]),
    (
        "malformed time",
        ["show", "{alpha}", "--at", "yesterday"],
        ["'yesterday'", "ISO-8601", "YYYY-MM-DDTHH:MM:SS"],
    ),
    (
        "time before creation",
        ["show", "{alpha}", "--at", "2000-01-01T00:00:00"],
        ["did not exist yet", "2000-01-01"],
    ),
    (
        "version and at",
        ["show", "{alpha}", "--version", "1", "--at", "2000-01-01"],
        ["not allowed with"],
    ),
]


@pytest.mark.parametrize(("args", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_exits_2_with_one_clear_line(
    filled: Filled, args: list[str], expected: list[str]
) -> None:
    argv = [a.format(alpha=filled.alpha) for a in args]
    result = run_cli(*argv, "--store", filled.url, cwd=filled.path.parent)
    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert result.stderr.startswith("atlas-eda: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr


def test_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for args in (["log"], ["show", UNKNOWN_ID], ["diff", "0", "1"]):
        result = run_cli(*args, "--store", f"sqlite:///{missing}", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.startswith("atlas-eda: error: ")
        assert "does not exist" in result.stderr
        assert str(missing) in result.stderr
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []

    relative = run_cli("log", "--store", "sqlite:///missing.db", cwd=tmp_path)
    assert relative.returncode == 2
    assert "does not exist" in relative.stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_scheme_and_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli("log", "--store", "nosuch://x", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("atlas-eda: error: ")
    assert "unknown scheme 'nosuch'" in result.stderr
    assert "Traceback" not in result.stderr

    status, _, err = run_main(
        ["diff", "--store", f"sqlite:///{tmp_path}/no/dir.db", "0", "0"], capsys
    )
    assert status == 2
    assert err.startswith("atlas-eda: error: ")
    assert "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_file_that_is_not_a_store_is_refused_untouched(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
        connection.commit()
    result = run_cli("log", "--store", f"sqlite:///{other}", cwd=tmp_path)
    assert result.returncode == 2
    # The store inspects the file before eventsourcing touches it (docs/reliability.md).
    assert result.stderr.startswith("atlas-eda: error: Could not open the store")
    assert "a SQLite database of another application" in result.stderr
    assert "Traceback" not in result.stderr
    with closing(sqlite3.connect(other)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}


def test_store_is_required_without_the_environment_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (["log"], ["show", UNKNOWN_ID], ["diff", "0", "0"]):
        status, out, err = run_main(args, capsys)
        assert (status, out) == (2, "")
        assert err.startswith("atlas-eda: error: no store given")
        assert "--store URL" in err
        assert "ATLAS_EDA_STORE_URL" in err
    result = run_cli("log", cwd=tmp_path)
    assert result.returncode == 2
    assert "no store given" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["diff", "0", "1"], ["log", "--since", "2"]])
def test_position_past_the_end_of_an_empty_store(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_main([*args, "--store", "memory://"], capsys)
    assert status == 2
    assert err.startswith("atlas-eda: error: ")
    assert "last recorded position is 0" in err
    assert "no events yet" in err


# -- --width / --full and short prefixes (issue 21, part 4) ----------------------------

LONG_TITLE = "A title long enough to be cut in every table of the command line " * 2


@pytest.fixture
def long_values(tmp_path: Path) -> tuple[str, str]:
    """A store with one document whose title is far wider than any default cell: its
    URL and the document's id."""
    url = f"sqlite:///{tmp_path / 'long.db'}"
    store = TemporalStore(url=url)
    try:
        document_id = store.create_document("Short", "body", "ann")
        store.update_document(document_id, title=LONG_TITLE.strip())
    finally:
        store.close()
    return url, document_id


def test_log_cuts_long_values_by_default_and_width_or_full_show_more(
    long_values: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = long_values
    title = LONG_TITLE.strip()
    status, default, _ = run_main(["log", "--store", url], capsys)
    assert status == 0
    assert title not in default
    assert "title='A title long enough t…'" in default

    status, wide, _ = run_main(["log", "--store", url, "--width", "60"], capsys)
    assert status == 0
    changes = table_rows(wide)[1][5]
    assert changes.startswith("title='A title long enough to be cut")
    assert len(changes) == 60

    status, full, _ = run_main(["log", "--store", url, "--full"], capsys)
    assert status == 0
    assert f"title={title!r}" in full


def test_show_and_diff_print_values_whole_with_full_and_wrap_at_width(
    long_values: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, document_id = long_values
    title = LONG_TITLE.strip()
    status, out, _ = run_main(["show", document_id, "--store", url, "--full"], capsys)
    assert status == 0
    assert re.search(rf"^title +{re.escape(title)}$", out, re.MULTILINE)  # one line, whole

    status, out, _ = run_main(["show", document_id, "--store", url, "--width", "20"], capsys)
    assert status == 0
    assert fields(out)["title"] == title  # wrapped, nothing lost
    body = out.split("-----\n", 1)[1].split("\n\n", 1)[0]
    assert max(len(line) for line in body.splitlines()) <= len("deletion_reason  ") + 20

    status, out, _ = run_main(["diff", "--store", url, "1", "2", "--full"], capsys)
    assert status == 0
    assert any(line.rstrip().endswith(title) for line in out.splitlines())
    status, default, _ = run_main(["diff", "--store", url, "1", "2"], capsys)
    assert not any(title in line for line in default.splitlines())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--width", "3"], "--width must be at least 8, got 3"),
        (["--width", "wide"], "--width must be a whole number, got 'wide'"),
        (["--width", "20", "--full"], "not allowed with"),
    ],
)
def test_bad_width_is_one_clear_line(
    long_values: tuple[str, str], args: list[str], expected: str
) -> None:
    url, document_id = long_values
    for command in (["log"], ["show", document_id], ["diff", "0", "1"]):
        result = run_cli(*command, "--store", url, *args, cwd=Path())
        assert result.returncode == 2, result.stdout
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert expected in result.stderr


def test_a_prefix_shorter_than_four_characters_is_refused_saying_so(filled: Filled) -> None:
    short = filled.alpha[:3]
    for command in (["show", short], ["log", "--doc", short]):
        result = run_cli(*command, "--store", filled.url, cwd=Path())
        assert result.returncode == 2, result.stdout
        assert result.stderr == (
            f"atlas-eda: error: {short!r} is shorter than the 4 characters a prefix needs; "
            f"give at least 4 characters of the id (list the ids with: atlas-eda log "
            f"--store {filled.url}).\n"
        )
    four = ok(run_cli("show", filled.alpha[:4], "--store", filled.url, cwd=Path()))
    assert f"Document {filled.alpha}" in four
