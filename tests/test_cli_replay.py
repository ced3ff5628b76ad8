"""`atlas-eda replay` and `atlas-eda cassette --types/--app`, run as a user runs them: a
real process, on the real cassettes of tests/cassettes and on tampered copies of them."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import CASSETTES, run_cli

ORDERS = "order_workflow.jsonl"
APP = "order_app:make_system"


@pytest.mark.parametrize("mode", ["check", "stub", "perform"])
def test_the_order_cassette_replays_ok_in_every_mode(mode: str) -> None:
    result = run_cli("replay", ORDERS, "--app", APP, "--mode", mode, cwd=CASSETTES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"Replay of {ORDERS} into {APP} ({mode} mode): 17 recorded events, 4 root events.",
        "OK: the system behaved as recorded (17 events matched).",
    ]
    # Recorded failures are replayed on purpose: the bus's log of them stays quiet.
    assert result.stderr == ""


def test_the_demo_cassette_replays_ok_into_the_demo_system(tmp_path: Path) -> None:
    demo = str(CASSETTES / "demo.jsonl")
    result = run_cli("replay", demo, "--app", "atlas_eda.cli:demo_system", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: the system behaved as recorded (11 events matched)." in result.stdout


def test_verbose_shows_the_buses_log_of_replayed_failures() -> None:
    result = run_cli("-v", "replay", ORDERS, "--app", APP, cwd=CASSETTES)
    assert result.returncode == 0
    assert "MailBounced: mailbox nobody@invalid.example does not exist" in result.stderr


def _copy(tmp_path: Path, line: int, change: str, value: object) -> Path:
    lines = (CASSETTES / ORDERS).read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[line - 1])
    item["data"][change] = value
    lines[line - 1] = json.dumps(item)
    copy = tmp_path / "tampered.jsonl"
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return copy


def test_a_divergence_is_printed_with_its_diff_and_exits_1(tmp_path: Path) -> None:
    tampered = _copy(tmp_path, 7, "warehouse", "south")
    # The app's module found through PYTHONPATH, from another directory.
    result = run_cli(
        "replay", str(tampered), "--app", APP, cwd=tmp_path, env={"PYTHONPATH": str(CASSETTES)}
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "DIVERGED at line 7, after 6 of 17 events matched:"
    assert lines[2] == (
        'line 7: expected OrderEvent.STOCK_RESERVED data {"order": 2, "warehouse": "south"}, '
        'got {"order": 2, "warehouse": "north"}'
    )
    assert '-  "warehouse": "south"' in lines
    assert '+  "warehouse": "north"' in lines


def test_a_changed_effect_result_diverges_in_perform_mode_at_its_line(tmp_path: Path) -> None:
    lines = (CASSETTES / ORDERS).read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[0])
    effects = json.loads(item["atlaseffects"])
    effects[0]["result"]["warehouse"] = "south"
    item["atlaseffects"] = json.dumps(effects)
    lines[0] = json.dumps(item)
    (tmp_path / ORDERS).write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(CASSETTES / "order_app.py", tmp_path)
    check = run_cli("replay", ORDERS, "--app", APP, cwd=tmp_path)
    assert check.returncode == 1
    assert "DIVERGED at line 2," in check.stdout  # where the system used the stubbed result
    perform = run_cli("replay", ORDERS, "--app", APP, "--mode", "perform", cwd=tmp_path)
    assert perform.returncode == 1
    assert "DIVERGED at line 1," in perform.stdout
    assert "(OrderEffect.RESERVE_STOCK): result differs" in perform.stdout


SHOP = "shop_orders.jsonl"
SHOP_APP = "shop_app:make_system"


def test_the_shop_cassette_replays_its_store_state_ok() -> None:
    result = run_cli("replay", SHOP, "--app", SHOP_APP, cwd=CASSETTES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"Replay of {SHOP} into {SHOP_APP} (check mode): 12 recorded events, 3 root events.",
        "OK: the system behaved as recorded (12 events matched).",
    ]


def test_a_tampered_store_change_diverges_at_its_line_naming_the_field(tmp_path: Path) -> None:
    # The state of a line is a JSON string inside the line: change the first update's
    # recorded content, which the system really writes as "accepted".
    lines = (CASSETTES / SHOP).read_text(encoding="utf-8").splitlines()
    number, line = next(
        (n, text) for n, text in enumerate(lines, 1) if '\\"content\\":\\"accepted\\"' in text
    )
    item = json.loads(line)
    state = json.loads(item["atlasstate"])
    state[0]["fields"]["content"] = "rejected"
    item["atlasstate"] = json.dumps(state)
    lines[number - 1] = json.dumps(item)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli(
        "replay", str(tampered), "--app", SHOP_APP, cwd=tmp_path, env={"PYTHONPATH": str(CASSETTES)}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout.splitlines()
    assert out[1] == f"DIVERGED at line {number}, after {number - 1} of 12 events matched:"
    assert out[2].startswith(f"line {number}: ShopEvent.ORDER_ACCEPTED store change 1: document ")
    assert out[2].endswith(" version 2 field 'content' differs")
    assert '-  "content": "rejected",' in out
    assert '+  "content": "accepted",' in out


def test_no_strict_skips_a_bad_line_with_a_warning(tmp_path: Path) -> None:
    copy = tmp_path / ORDERS
    text = (CASSETTES / ORDERS).read_text(encoding="utf-8")
    copy.write_text(text + '{"specversion": "1.0", "id": "x"\n', encoding="utf-8")
    strict = run_cli("replay", str(copy), "--app", APP, cwd=CASSETTES)
    assert strict.returncode == 2
    assert "line 18: truncated last line" not in strict.stderr  # it ends with a newline
    assert "line 18: malformed JSON" in strict.stderr
    lenient = run_cli("replay", str(copy), "--app", APP, "--no-strict", cwd=CASSETTES)
    assert lenient.returncode == 0, lenient.stderr
    assert lenient.stderr.startswith("atlas-eda: warning: ")
    assert "line 18: malformed JSON" in lenient.stderr
    assert "line skipped" in lenient.stderr


def test_no_strict_order_accepts_roots_out_of_time_order(tmp_path: Path) -> None:
    lines = (CASSETTES / ORDERS).read_text(encoding="utf-8").splitlines()
    # Order 4's root block (lines 16-17) moved first, as threads could have written it.
    moved = lines[15:] + lines[:15]
    copy = tmp_path / ORDERS
    copy.write_text("\n".join(moved) + "\n", encoding="utf-8")
    strict = run_cli("replay", str(copy), "--app", APP, cwd=CASSETTES)
    assert strict.returncode == 1
    assert "out of order" in strict.stdout
    # Order 4 (an out-of-stock desk) does not touch the stock the others use.
    lenient = run_cli("replay", str(copy), "--app", APP, "--no-strict-order", cwd=CASSETTES)
    assert lenient.returncode == 0, lenient.stdout


BAD_APPS = """
import enum

import order_app  # registers the cassette's types
from atlas_eda import EventBus

NOT_CALLABLE = 3


class Colour(enum.Enum):
    RED = 1


def raises():
    raise RuntimeError("no database configured")


def returns_a_number():
    return 42


def bus_without_history():
    return EventBus(history_limit=0)
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl", "--app", APP], "cassette 'missing.jsonl' not found"),
        (["malformed.jsonl", "--app", APP], "malformed.jsonl, line 1: malformed JSON"),
        ([ORDERS, "--app", "order_app"], "--app 'order_app' is not module:name"),
        ([ORDERS, "--app", "no_such_module:make"], "no module named 'no_such_module'"),
        ([ORDERS, "--app", "bad_apps:nothing"], "module 'bad_apps' has no 'nothing'"),
        ([ORDERS, "--app", "bad_apps:NOT_CALLABLE"], "is a int, not a callable"),
        (
            [ORDERS, "--app", "bad_apps:raises"],
            "calling raises() raised RuntimeError: no database configured",
        ),
        ([ORDERS, "--app", "bad_apps:returns_a_number"], "returned int; it must return"),
        ([ORDERS, "--app", "bad_apps:bus_without_history"], "history_limit=0"),
        ([ORDERS, "--app", "broken_app:make"], "importing 'broken_app' raised ZeroDivisionError"),
        ([ORDERS, "--app", "lonely_app:make"], "line 1: unknown type 'OrderEvent.PLACED'"),
        (
            [ORDERS, "--app", APP, "--types", "bad_apps:NOT_CALLABLE"],
            "--types 'bad_apps:NOT_CALLABLE' is a int, not an Enum class",
        ),
        ([ORDERS, "--app", APP, "--mode", "fast"], "invalid choice: 'fast'"),
        ([ORDERS], "the following arguments are required: --app"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_input_is_one_clear_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    (tmp_path / "bad_apps.py").write_text(BAD_APPS, encoding="utf-8")
    (tmp_path / "broken_app.py").write_text("1 / 0\n", encoding="utf-8")
    # A module that does not import order_app: nothing registers the cassette's types.
    (tmp_path / "lonely_app.py").write_text(
        "from atlas_eda import EventBus\n\n\ndef make():\n    return EventBus()\n",
        encoding="utf-8",
    )
    (tmp_path / "malformed.jsonl").write_text('{"specversion": \n', encoding="utf-8")
    shutil.copy(CASSETTES / ORDERS, tmp_path)
    shutil.copy(CASSETTES / "order_app.py", tmp_path)
    result = run_cli("replay", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("atlas-eda: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cassette_prints_user_types_with_types_or_app(tmp_path: Path) -> None:
    shutil.copy(CASSETTES / ORDERS, tmp_path)
    env = {"PYTHONPATH": str(CASSETTES)}
    unknown = run_cli("cassette", ORDERS, cwd=tmp_path)
    assert unknown.returncode == 2
    assert "line 1: unknown type 'OrderEvent.PLACED'" in unknown.stderr
    # Told as the command's options, not as a Python call (issue 21, part 4).
    assert "--types MODULE:OrderEvent (repeatable), or --app MODULE:FACTORY" in unknown.stderr
    assert "register_types" not in unknown.stderr
    assert unknown.stderr.count("\n") == 1

    types = ["--types", "order_app:OrderEvent", "--types", "order_app:OrderEffect"]
    by_types = run_cli("cassette", ORDERS, *types, cwd=tmp_path, env=env)
    assert by_types.returncode == 0, by_types.stderr
    by_app = run_cli("cassette", ORDERS, "--app", APP, cwd=tmp_path, env=env)
    assert by_app.returncode == 0, by_app.stderr
    assert by_app.stdout == by_types.stdout
    rows = by_app.stdout.splitlines()
    assert rows[0] == f"Cassette {ORDERS}: 17 events, 4 root events"
    row_14 = rows[4 + 13].split()
    assert row_14[0] == "14"
    assert row_14[3] == "EventType.ERROR"
    assert row_14[5] == "12"  # caused by the SHIPPED of line 12


def test_replay_tells_an_unknown_type_as_its_options(tmp_path: Path) -> None:
    shutil.copy(CASSETTES / ORDERS, tmp_path)
    (tmp_path / "bare_app.py").write_text(
        "from atlas_eda import EventBus\n\n\ndef make():\n    return EventBus()\n",
        encoding="utf-8",
    )
    env = {"PYTHONPATH": str(tmp_path)}
    unknown = run_cli("replay", ORDERS, "--app", "bare_app:make", cwd=tmp_path, env=env)
    assert unknown.returncode == 2, unknown.stderr
    assert "--types MODULE:OrderEvent (repeatable), or --app MODULE:FACTORY" in unknown.stderr
    assert "register_types" not in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_types_registers_enums_of_a_module_that_does_not(tmp_path: Path) -> None:
    (tmp_path / "plain_types.py").write_text(
        textwrap.dedent(
            """
            import enum


            class Beeps(enum.Enum):
                BEEP = "beep"
            """
        ),
        encoding="utf-8",
    )
    line = {
        "specversion": "1.0",
        "id": "e1",
        "source": "here",
        "type": "Beeps.BEEP",
        "time": "2026-01-01T00:00:00.000000Z",
        "datacontenttype": "application/json",
        "data": {"n": 1},
    }
    (tmp_path / "beeps.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    without = run_cli("cassette", "beeps.jsonl", cwd=tmp_path)
    assert without.returncode == 2
    with_types = run_cli("cassette", "beeps.jsonl", "--types", "plain_types:Beeps", cwd=tmp_path)
    assert with_types.returncode == 0, with_types.stderr
    assert "Beeps.BEEP" in with_types.stdout
    assert "n=1" in with_types.stdout
