"""Hostile cassette files: a chain of events nested far deeper than a bus can publish, a
device or pipe instead of a file, a line without end, and a partial last line left by a
recorder killed mid-write. Each is a clear error or a clean result, never a hang, a
``RecursionError`` or a traceback."""

from __future__ import annotations

import json
import logging
import os
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli

from atlas_eda import EventBus, EventType
from atlas_eda.errors import CassetteError
from atlas_eda.testing import Cassette, record, replay
from atlas_eda.testing.cassette import MAX_LINE_BYTES

DEPTH = 990

CHAIN_APP = textwrap.dedent(
    """
    from atlas_eda import EventBus, EventType

    def make():
        bus = EventBus()

        def next_link(event):
            if event.data < 989:
                bus.publish(EventType.COMMAND_EXECUTED, event.data + 1, source="chain")

        bus.subscribe(EventType.COMMAND_EXECUTED, next_link)
        return bus
    """
)


def chain_lines(depth: int) -> list[str]:
    """A root event and its descendants, each the child of the one before: ``depth`` deep."""
    lines = []
    cause = None
    for n in range(depth):
        line = {
            "specversion": "1.0",
            "id": f"00000000-0000-4000-8000-{n:012d}",
            "source": "chain",
            "type": "EventType.COMMAND_EXECUTED",
            "time": "2026-11-23T10:58:12.614196Z",
            "datacontenttype": "application/json",
            "correlationid": "00000000-0000-4000-8000-000000000000",
            "data": n,
        }
        if cause is not None:
            line["causationid"] = cause
        cause = line["id"]
        lines.append(json.dumps(line))
    return lines


@pytest.mark.parametrize("order", ["published", "shuffled"])
@pytest.mark.parametrize("mode", ["check", "stub", "perform"])
def test_a_chain_nested_990_deep_replays_to_a_divergence_not_a_recursion_error(
    tmp_path: Path, order: str, mode: str
) -> None:
    lines = chain_lines(DEPTH)
    if order == "shuffled":  # not in publish order: replay rebuilds the tree from the ids
        lines = [lines[0], *reversed(lines[1:])]
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cassette = Cassette.load(path)
    assert len(cassette) == DEPTH
    namespace: dict[str, object] = {}
    exec(CHAIN_APP, namespace)
    bus = namespace["make"]()  # type: ignore[operator]

    report = replay(cassette, bus, mode, strict_order=False)

    assert not report.ok  # no bus publishes 990 deep: max_depth stops it cleanly
    assert report.divergence is not None
    assert "EventCycleError" in str(report.divergence) or report.events_matched < DEPTH


def test_cli_replay_of_a_990_deep_chain_exits_1_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "deep.jsonl").write_text("\n".join(chain_lines(DEPTH)) + "\n")
    (tmp_path / "chain_app.py").write_text(CHAIN_APP)
    result = run_cli("replay", "deep.jsonl", "--app", "chain_app:make", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "DIVERGED" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


# -- not a file, a line without end ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_cli_cassette_refuses_what_is_not_a_regular_file_on_one_line(
    tmp_path: Path, kind: str
) -> None:
    if kind == "device":
        target = "/dev/zero"  # endless: reading it would never return
    elif kind == "fifo":
        target = str(tmp_path / "pipe")
        os.mkfifo(target)  # opening it would block until a writer came
    else:
        target = str(tmp_path)
    result = run_cli("cassette", target, cwd=tmp_path)  # run_cli times out, never hangs
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"atlas-eda: error: cassette {target!r} is not a regular file (a directory, device "
        f"or pipe); give the path of a recorded .jsonl file."
    ]


def test_load_refuses_a_device(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match="not a regular file") as caught:
        Cassette.load("/dev/zero", strict=False)
    assert caught.value.line is None


def test_a_line_longer_than_max_line_bytes_is_refused_naming_it_even_when_not_strict(
    tmp_path: Path,
) -> None:
    lines = chain_lines(3)
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(lines) + "\n")
    limit = len(lines[1].encode()) - 1
    for strict in (True, False):
        with pytest.raises(CassetteError, match=r"line 2: longer than max_line_bytes=") as caught:
            Cassette.load(path, strict=strict, max_line_bytes=limit)
        assert caught.value.line == 2
    # A line exactly at the limit is read: the newline does not count.
    longest = max(len(line.encode()) for line in lines)
    assert len(Cassette.load(path, max_line_bytes=longest)) == 3
    assert MAX_LINE_BYTES == 64 * 1024 * 1024


def test_a_line_without_end_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "zeros.jsonl"
    with path.open("wb") as file:  # 80 MiB of zeros and no newline, written sparsely
        file.truncate(80 * 1024 * 1024)
    with pytest.raises(CassetteError, match="line 1: longer than max_line_bytes=67108864"):
        Cassette.load(path)


@pytest.mark.parametrize("bad", [0, -5, "10", 1.5, True])
def test_a_bad_max_line_bytes_is_refused(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(chain_lines(1)) + "\n")
    with pytest.raises((TypeError, ValueError), match="max_line_bytes"):
        Cassette.load(path, max_line_bytes=bad)  # type: ignore[arg-type]


def test_cli_cassette_max_line_bytes_option(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(chain_lines(2)) + "\n")
    refused = run_cli("cassette", "c.jsonl", "--max-line-bytes", "50", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith("atlas-eda: error: c.jsonl, line 1: longer than")
    assert len(refused.stderr.strip().splitlines()) == 1
    for bad in ("0", "lots"):
        result = run_cli("cassette", "c.jsonl", "--max-line-bytes", bad, cwd=tmp_path)
        assert result.returncode == 2
        assert "--max-line-bytes must be" in result.stderr
        assert "Traceback" not in result.stderr
    read = run_cli("cassette", "c.jsonl", "--max-line-bytes", "100000", cwd=tmp_path)
    assert read.returncode == 0, read.stderr
    assert "2 events" in read.stdout


# -- a partial last line -------------------------------------------------------------------


def record_some(path: Path, count: int, *, append: bool = False) -> None:
    bus = EventBus()
    with record(bus, path, append=append):
        for n in range(count):
            bus.publish(EventType.COMMAND_EXECUTED, {"n": n, "blob": "x" * 100_000})


def test_appending_to_a_cassette_with_a_partial_last_line_repairs_it_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "session.jsonl"
    record_some(path, 2)
    whole = path.read_bytes()
    # What a recorder killed while writing a big event leaves: half of a line, no newline.
    with path.open("ab") as file:
        file.write(whole.splitlines(keepends=True)[0][: 150_000 // 2])
    with pytest.raises(CassetteError, match="line 3: truncated last line"):
        Cassette.load(path)

    with caplog.at_level(logging.WARNING, logger="atlas_eda.testing.cassette"):
        record_some(path, 1, append=True)

    assert f"dropped a partial last line of 75000 bytes after byte {len(whole)}" in caplog.text
    cassette = Cassette.load(path)
    assert [entry.event.data["n"] for entry in cassette] == [0, 1, 0]
    assert path.read_bytes().startswith(whole)


def test_appending_keeps_a_complete_cassette_and_creates_a_missing_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "session.jsonl"
    record_some(path, 1, append=True)  # no file yet: created
    with caplog.at_level(logging.WARNING, logger="atlas_eda.testing.cassette"):
        record_some(path, 2, append=True)
    assert "dropped" not in caplog.text
    assert [entry.event.data["n"] for entry in Cassette.load(path)] == [0, 0, 1]
    record_some(path, 1)  # without append: truncated, as before
    assert len(Cassette.load(path)) == 1


def test_a_cassette_that_is_all_partial_line_is_emptied_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    path.write_bytes(b'{"specversion":"1.0","id":' + b"7" * 200_000)  # no newline at all
    record_some(path, 1, append=True)
    assert [entry.event.data["n"] for entry in Cassette.load(path)] == [0]
