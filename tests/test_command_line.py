"""The shape of the ``atlas-eda`` package: every name it had as one module still imports
from ``atlas_eda.cli``, every command of its table is reachable, and the demo's session
writes only to the stream it is given (tests/cassettes/record.py relies on it)."""

from __future__ import annotations

import io
import re

import pytest

import atlas_eda.cli
from atlas_eda.cli import COMMANDS, main
from atlas_eda.demo import demo_session, demo_system

# The public names of atlas_eda/cli.py before it became a package (issue 14).
NAMES_BEFORE = [
    "DEFAULT_LIMIT",
    "DEMO_URL",
    "TIME_FORMAT",
    "CommandError",
    "DemoSystem",
    "demo_session",
    "demo_system",
    "format_table",
    "import_app_module",
    "load_app",
    "main",
    "register_type_specs",
    "run_cassette",
    "run_demo",
    "run_diff",
    "run_follow",
    "run_log",
    "run_replay",
    "run_show",
]


# Their values, for the names that were constants: a user's script may rely on them.
VALUES_BEFORE = {
    "DEFAULT_LIMIT": 50,
    "DEMO_URL": "sqlite:///atlas-demo.db",
    "TIME_FORMAT": (
        "YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM], e.g. 2024-05-01T12:30:00 or "
        "2024-05-01T12:30:00.5+02:00"
    ),
}


@pytest.mark.parametrize("name", NAMES_BEFORE)
def test_every_name_of_the_old_module_imports_from_the_package(name: str) -> None:
    assert name in atlas_eda.cli.__all__
    value = getattr(atlas_eda.cli, name)
    if name in VALUES_BEFORE:
        assert value == VALUES_BEFORE[name]
    else:  # the functions and classes
        assert callable(value), value


def test_the_demo_names_are_the_demo_modules() -> None:
    assert atlas_eda.cli.demo_system is demo_system
    assert atlas_eda.cli.demo_session is demo_session


def test_help_lists_every_command_of_the_table_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    listed = re.search(r"\{([a-z,-]+)\}", capsys.readouterr().out)
    assert listed is not None
    assert listed.group(1).split(",") == [
        "demo",
        "log",
        "show",
        "diff",
        "inspect",
        "follow",
        "dead-letters",
        "project",
        "cassette",
        "replay",
        "graph",
        "sagas",
        "health",
        "metrics",
    ]
    assert [command.name for command in COMMANDS] == listed.group(1).split(",")


@pytest.mark.parametrize("command", [command.name for command in COMMANDS])
def test_each_command_has_its_own_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: atlas-eda {command} ")


def test_demo_session_writes_its_report_only_to_out(capsys: pytest.CaptureFixture[str]) -> None:
    system = demo_system()
    out = io.StringIO()
    try:
        demo_session(system, out=out)
    finally:
        system.store.close()
    report = out.getvalue()
    assert capsys.readouterr().out == ""
    assert report.startswith("Store memory://: 0 document(s) from earlier runs.\n\nRefused as")
    titles = [line for line in report.splitlines() if line.endswith(")") and "(" in line]
    assert titles[-3:] == [
        "Bus history (this run, oldest first)",
        "Document versions (every document in the store)",
        "Metrics (this run)",
    ]
    assert report.endswith(f"\n\n{len(system.performed)} effects performed this run.\n")
    assert len(system.performed) == 11
