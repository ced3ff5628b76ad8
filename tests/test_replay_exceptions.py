"""Recorded effect failures replayed by class (issue 15 item 5): a cassette names the class
``module.QualName``; stub and check modes raise builtin exceptions and the classes of
``register_exceptions`` themselves, anything else as a ``RecordedEffectError`` named like
it. Nothing named in a cassette is ever imported."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

import atlas_eda
from atlas_eda import Effect, EffectHandler, Event, EventBus, EventType
from atlas_eda.testing import (
    MODES,
    Cassette,
    CassetteError,
    RecordedEffectError,
    RecordedError,
    ReplayedEffectError,
    TypeRegistrationError,
    record,
    register_exceptions,
    register_types,
    registered_exceptions,
    replay,
)
from atlas_eda.testing.replay import replayed_error

pytest_plugins = ["pytester"]


class Vault(enum.Enum):
    """The system's events."""

    OPEN = "vault.open"
    OPENED = "vault.opened"
    DENIED = "vault.denied"
    DECLINED = "vault.declined"
    FAILED = "vault.failed"
    MISSING = "vault.missing"


class Lock(enum.Enum):
    """The system's one effect."""

    UNLOCK = "lock.unlock"


register_types(Vault, Lock)


class Declined(Exception):
    """A user exception, registered with the harness."""


class Jammed(Exception):
    """A user exception never registered: replayed as a RecordedEffectError."""


class NeedsCode(Exception):
    """A registered exception that cannot be built from a message alone."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


register_exceptions(Declined, NeedsCode)

FAILURES: dict[str, Callable[[], Exception]] = {
    "perm": lambda: PermissionError("[Errno 13] Permission denied: '/vault'"),
    "declined": lambda: Declined("card 4242 declined"),
    "jammed": lambda: Jammed("the bolt is stuck"),
    "key": lambda: KeyError("door-7"),
    "code": lambda: NeedsCode("wrong code", 7),
}


@dataclass
class Vaults:
    """A system under test whose handler decides on the class of the effect's failure."""

    bus: EventBus
    unlocked: list[Any] = field(default_factory=list)


def make_vaults() -> Vaults:
    handler = EffectHandler()
    bus = EventBus(effect_handler=handler)
    vaults = Vaults(bus)

    def unlock(effect: Effect) -> dict[str, Any]:
        vaults.unlocked.append(effect.payload)
        failure = FAILURES.get(effect.payload["door"])
        if failure is not None:
            raise failure()
        return {"open": True}

    handler.register_handler(Lock.UNLOCK, unlock)

    def on_open(event: Event) -> None:
        door = event.data["door"]
        try:
            handler.handle(Effect(Lock.UNLOCK, {"door": door}, "unlock"))
        except PermissionError as exc:
            bus.publish(Vault.DENIED, {"door": door, "why": str(exc)})
        except Declined as exc:
            bus.publish(Vault.DECLINED, {"door": door, "why": str(exc)})
        except KeyError as exc:
            # str(), not args: replay rebuilds a failure from its recorded message alone.
            bus.publish(Vault.MISSING, {"door": door, "key": str(exc)})
        except Exception as exc:  # the catch-all still catches what was not registered
            bus.publish(Vault.FAILED, {"door": door, "kind": type(exc).__name__, "why": str(exc)})
        else:
            bus.publish(Vault.OPENED, {"door": door})

    bus.subscribe(Vault.OPEN, on_open)
    return vaults


def record_vaults(path: Path, *doors: str) -> Path:
    vaults = make_vaults()
    with record(vaults.bus, path):
        for door in doors:
            vaults.bus.publish(Vault.OPEN, {"door": door})
    return path


def replayed_failure(vaults: Vaults) -> BaseException | None:
    """The failure of the last effect performed on the last OPEN replayed."""
    opened = vaults.bus.get_history(Vault.OPEN, limit=1)[0]
    (outcome,) = vaults.bus.trace(opened.id).all_effects()
    return outcome.error


def child_types(bus: EventBus) -> list[enum.Enum]:
    """The types of the events handlers published, in publish order."""
    return [e.type for e in reversed(bus.get_history(limit=None)) if e.causation_id is not None]


# -- recording -------------------------------------------------------------------------------


def test_a_recorded_failure_names_its_class_with_module_and_qualname(tmp_path: Path) -> None:
    cassette = Cassette.load(record_vaults(tmp_path / "v.jsonl", "perm", "declined", "ok"))
    errors = [effect.error for entry in cassette for effect in entry.effects]
    assert errors == [
        RecordedError("builtins.PermissionError", "[Errno 13] Permission denied: '/vault'"),
        RecordedError(f"{__name__}.Declined", "card 4242 declined"),
        None,
    ]
    first = errors[0]
    assert first is not None
    assert (first.qualified, first.name) == (True, "PermissionError")
    assert (RecordedError("Declined", "x").qualified, RecordedError("Declined", "x").name) == (
        False,
        "Declined",
    )


# -- live, stub and check take the same branch ------------------------------------------------

BRANCHES = {
    "perm": (Vault.DENIED, PermissionError),
    "declined": (Vault.DECLINED, Declined),
    "key": (Vault.MISSING, KeyError),
    "jammed": (Vault.FAILED, RecordedEffectError),
    "ok": (Vault.OPENED, None),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("door", BRANCHES)
def test_the_handler_takes_the_same_branch_live_and_in_replay(
    door: str, mode: str, tmp_path: Path
) -> None:
    live = make_vaults()
    with record(live.bus, tmp_path / "v.jsonl"):
        live.bus.publish(Vault.OPEN, {"door": door})
    branch, replayed_class = BRANCHES[door]
    assert child_types(live.bus) == [branch]

    vaults = make_vaults()
    report = replay(Cassette.load(tmp_path / "v.jsonl"), vaults.bus, mode)
    report.assert_no_divergence()
    assert child_types(vaults.bus) == [branch]
    assert [e.data for e in vaults.bus.get_history(branch)] == [
        e.data for e in live.bus.get_history(branch)
    ]
    failure = replayed_failure(vaults)
    if mode == "perform":  # really performed: the live class itself
        assert vaults.unlocked == [{"door": door}]
        assert type(failure) is type(live_failure := replayed_failure(live))
        assert str(failure) == str(live_failure)
        return
    assert vaults.unlocked == []  # stubbed: the lock was not touched
    if replayed_class is None:
        assert failure is None
    else:
        assert isinstance(failure, replayed_class)
        assert str(failure) == str(replayed_failure(live))


@pytest.mark.parametrize("mode", ["stub", "check"])
def test_builtin_and_registered_classes_are_raised_as_themselves(mode: str, tmp_path: Path) -> None:
    cassette = Cassette.load(record_vaults(tmp_path / "v.jsonl", "perm"))
    vaults = make_vaults()
    replay(cassette, vaults.bus, mode).assert_no_divergence()
    assert type(replayed_failure(vaults)) is PermissionError
    cassette = Cassette.load(record_vaults(tmp_path / "d.jsonl", "declined"))
    vaults = make_vaults()
    replay(cassette, vaults.bus, mode).assert_no_divergence()
    failure = replayed_failure(vaults)
    assert type(failure) is Declined
    assert failure.args == ("card 4242 declined",)


def test_an_unregistered_class_is_a_recorded_effect_error_named_like_it(tmp_path: Path) -> None:
    cassette = Cassette.load(record_vaults(tmp_path / "v.jsonl", "jammed"))
    vaults = make_vaults()
    replay(cassette, vaults.bus, "check").assert_no_divergence()
    failure = replayed_failure(vaults)
    assert isinstance(failure, RecordedEffectError)
    assert isinstance(failure, ReplayedEffectError)  # the former name still catches it
    assert not isinstance(failure, Jammed)
    assert type(failure).__name__ == "Jammed"
    assert failure.recorded_type == f"{__name__}.Jammed"
    assert failure.recorded_message == str(failure) == "the bolt is stuck"
    (failed,) = vaults.bus.get_history(Vault.FAILED)
    assert failed.data == {"door": "jammed", "kind": "Jammed", "why": "the bolt is stuck"}
    assert atlas_eda.RecordedEffectError is RecordedEffectError


def test_a_key_error_keeps_its_message_so_the_bus_reports_it_as_recorded(tmp_path: Path) -> None:
    # str(KeyError("'k'")) is "\"'k'\"": the replayed KeyError is a KeyError (of a subclass
    # alike in name) that shows the recorded message, so an ERROR event compares equal.
    def make() -> EventBus:
        handler = EffectHandler()
        bus = EventBus(effect_handler=handler)
        handler.register_handler(Lock.UNLOCK, lambda effect: {}["k"])
        bus.subscribe(Vault.OPEN, lambda event: handler.handle(Effect(Lock.UNLOCK, {})))
        return bus

    live = make()
    with record(live, tmp_path / "k.jsonl"):
        live.publish(Vault.OPEN, {})
    (error,) = live.get_history(EventType.ERROR)
    assert (error.data["error_type"], error.data["error_message"]) == ("KeyError", "'k'")
    for mode in MODES:
        bus = make()
        replay(Cassette.load(tmp_path / "k.jsonl"), bus, mode).assert_no_divergence()
    failure = replayed_error(RecordedError("builtins.KeyError", "'k'"))
    assert isinstance(failure, KeyError)
    assert (type(failure).__name__, type(failure).__module__, str(failure)) == (
        "KeyError",
        "builtins",
        "'k'",
    )
    assert RecordedError.of(failure) == RecordedError("builtins.KeyError", "'k'")


def test_a_registered_class_that_cannot_be_built_from_a_message_is_stood_in_for() -> None:
    failure = replayed_error(RecordedError(f"{__name__}.NeedsCode", "wrong code"))
    assert isinstance(failure, RecordedEffectError)
    assert (type(failure).__name__, str(failure)) == ("NeedsCode", "wrong code")


def test_re_recording_a_replay_gives_the_same_failures(tmp_path: Path) -> None:
    cassette = Cassette.load(record_vaults(tmp_path / "v.jsonl", "perm", "declined", "jammed"))
    vaults = make_vaults()
    with record(vaults.bus, tmp_path / "again.jsonl"):
        replay(cassette, vaults.bus, "check").assert_no_divergence()
    again = Cassette.load(tmp_path / "again.jsonl")
    assert [e.effects for e in again] == [e.effects for e in cassette]


# -- old cassettes ------------------------------------------------------------------------------


def rewrite_errors(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """``path`` with ``change`` applied to every recorded error object, in place."""
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        item = json.loads(text)
        if "atlaseffects" in item:
            effects = json.loads(item["atlaseffects"])
            for effect in effects:
                if "error" in effect:
                    change(effect["error"])
            item["atlaseffects"] = json.dumps(effects)
        lines.append(json.dumps(item) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def bare(error: dict[str, Any]) -> None:
    error["type"] = error["type"].rpartition(".")[2]


@pytest.mark.parametrize("mode", MODES)
def test_an_old_cassette_with_bare_class_names_replays_as_before(mode: str, tmp_path: Path) -> None:
    path = rewrite_errors(record_vaults(tmp_path / "v.jsonl", "jammed", "ok"), bare)
    cassette = Cassette.load(path)
    (error,) = [effect.error for entry in cassette for effect in entry.effects if effect.error]
    assert error == RecordedError("Jammed", "the bolt is stuck")
    vaults = make_vaults()
    replay(cassette, vaults.bus, mode).assert_no_divergence()
    if mode != "perform":
        failure = vaults.bus.trace(cassette.roots()[0].event.id).all_effects()[0].error
        assert isinstance(failure, RecordedEffectError)
        assert (type(failure).__name__, failure.recorded_type) == ("Jammed", "Jammed")


def test_an_old_bare_builtin_name_is_not_raised_by_class(tmp_path: Path) -> None:
    # As before qualified names: a bare "PermissionError" is a stand-in, so the handler's
    # except PermissionError does not catch it and check mode reports where it went.
    path = rewrite_errors(record_vaults(tmp_path / "v.jsonl", "perm"), bare)
    report = replay(Cassette.load(path), make_vaults().bus, "check")
    assert report.divergence is not None
    assert report.divergence.position == 2
    assert "expected Vault.DENIED, got Vault.FAILED" in report.divergence.reason


# -- hostile cassettes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        {"type": 42, "message": "m"},
        {"type": None, "message": "m"},
        {"type": "", "message": "m"},
        {"type": "builtins.ValueError", "message": ["m"]},
        {"type": "builtins.ValueError"},
        "builtins.ValueError",
    ],
    ids=repr,
)
def test_a_malformed_error_object_is_a_cassette_error_naming_the_line(
    error: Any, tmp_path: Path
) -> None:
    path = record_vaults(tmp_path / "v.jsonl", "ok", "perm")
    lines = path.read_text(encoding="utf-8").splitlines()
    item = json.loads(lines[2])
    effects = json.loads(item["atlaseffects"])
    effects[0] = {"type": "Lock.UNLOCK", "payload": {"door": "perm"}, "error": error}
    item["atlaseffects"] = json.dumps(effects)
    lines[2] = json.dumps(item)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CassetteError, match=r"line 3: atlaseffects\[0\]\.error must be") as info:
        Cassette.load(path)
    assert info.value.line == 3


HOSTILE = [
    "os.system",
    "subprocess.Popen",
    "builtins.SystemExit",
    "builtins.KeyboardInterrupt",
    "builtins.GeneratorExit",
    "builtins.BaseException",
    "builtins.__import__",
    "builtins.eval",
    "builtins.int",
    "builtins.os.system",
    "builtins.",
    "builtins",
    "atlas_eda_never_imported_module.Boom",
    "not a name at all!",
    "builtins.ExceptionGroup",  # an Exception subclass, but ExceptionGroup("m") raises
]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_class_name_is_stood_in_for_never_imported_or_raised(name: str) -> None:
    modules = set(sys.modules)
    failure = replayed_error(RecordedError(name, "boom"))
    assert set(sys.modules) == modules  # nothing was imported
    assert type(failure).__mro__[1] is RecordedEffectError
    assert (failure.recorded_type, str(failure)) == (name, "boom")
    last = name.rpartition(".")[2]
    assert type(failure).__name__ == (last if last.isidentifier() else "RecordedEffectError")


@pytest.mark.parametrize("mode", ["stub", "check"])
@pytest.mark.parametrize("name", ["builtins.SystemExit", "os.system", "builtins.eval"])
def test_a_hostile_cassette_replays_to_a_report_never_an_exit(
    name: str, mode: str, tmp_path: Path
) -> None:
    def hostile(error: dict[str, Any]) -> None:
        error["type"] = name

    path = rewrite_errors(record_vaults(tmp_path / "v.jsonl", "jammed"), hostile)
    vaults = make_vaults()
    report = replay(Cassette.load(path), vaults.bus, mode)  # no SystemExit, no import
    assert report.divergence is not None  # the handler saw another class's name
    assert report.divergence.position == 2
    (failed,) = vaults.bus.get_history(Vault.FAILED)
    assert failed.data["kind"] == name.rpartition(".")[2]


# -- the registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrong",
    [
        KeyboardInterrupt,  # a BaseException: never raised from a replayed effect
        type("Interrupted", (SystemExit,), {}),
        Vault,
        Declined("an instance"),
        "builtins.ValueError",
        int,
    ],
    ids=repr,
)
def test_register_exceptions_refuses_what_is_not_an_exception_class(wrong: Any) -> None:
    before = registered_exceptions()
    with pytest.raises(TypeRegistrationError, match="register_exceptions needs Exception"):
        register_exceptions(ValueError, wrong)
    assert registered_exceptions() == before  # nothing of the call was registered


def test_a_class_redefined_under_the_same_name_takes_the_place_of_the_former() -> None:
    name = f"{__name__}.Redefined"
    first = type("Redefined", (Exception,), {"__module__": __name__})
    register_exceptions(first, first)
    assert registered_exceptions()[name] is first
    again = type("Redefined", (Exception,), {"__module__": __name__})  # a cell run again
    register_exceptions(again)
    assert registered_exceptions()[name] is again
    assert type(replayed_error(RecordedError(name, "m"))) is again
    copy = registered_exceptions()
    copy.clear()
    assert registered_exceptions()[name] is again  # a copy


# -- the pytest marker and the command line ------------------------------------------------------

MARKED = """
import enum
from pathlib import Path

import pytest

from atlas_eda import Effect, EffectHandler, EventBus
from atlas_eda.testing import record, register_exceptions, register_types


class Ev(enum.Enum):
    PAY = "pay"
    PAID = "paid"
    DECLINED = "declined"


class Fx(enum.Enum):
    CHARGE = "charge"


class CardDeclined(Exception):
    pass


register_types(Ev, Fx)
register_exceptions(CardDeclined)


def install(bus, handler):
    def charge(effect):
        raise CardDeclined("limit reached")

    handler.register_handler(Fx.CHARGE, charge)

    def on_pay(event):
        try:
            handler.handle(Effect(Fx.CHARGE, {"amount": 5000}))
        except CardDeclined as exc:
            bus.publish(Ev.DECLINED, {"why": str(exc)})
        else:
            bus.publish(Ev.PAID, {})

    bus.subscribe(Ev.PAY, on_pay)


@pytest.mark.atlas_cassette("session.jsonl")
def test_declined_replays_by_class(atlas_bus):
    live_handler = EffectHandler()
    live = EventBus(effect_handler=live_handler)
    install(live, live_handler)
    with record(live, Path(__file__).parent / "session.jsonl"):
        live.publish(Ev.PAY, {})
    install(atlas_bus, atlas_bus.effect_handler)
"""


def test_the_pytest_marker_raises_registered_exceptions(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_marked=MARKED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
    assert '\\"type\\":\\"test_marked.CardDeclined\\"' in (
        (pytester.path / "session.jsonl").read_text(encoding="utf-8")
    )


CLI_APP = """
import enum

from atlas_eda import Effect, EffectHandler, EventBus
from atlas_eda.testing import register_types


class Ev(enum.Enum):
    PAY = "pay"
    PAID = "paid"
    DECLINED = "declined"


class Fx(enum.Enum):
    CHARGE = "charge"


class CardDeclined(Exception):
    pass


register_types(Ev, Fx)  # CardDeclined is not registered here: --types names it


def make_system():
    handler = EffectHandler()
    bus = EventBus(effect_handler=handler)

    def charge(effect):
        raise CardDeclined("limit reached")

    handler.register_handler(Fx.CHARGE, charge)

    def on_pay(event):
        try:
            handler.handle(Effect(Fx.CHARGE, {"amount": 5000}))
        except CardDeclined as exc:
            bus.publish(Ev.DECLINED, {"why": str(exc)})
        else:
            bus.publish(Ev.PAID, {})

    bus.subscribe(Ev.PAY, on_pay)
    return bus


def record_session(path):
    from atlas_eda.testing import record

    bus = make_system()
    with record(bus, path):
        bus.publish(Ev.PAY, {})
"""


def test_the_command_line_registers_exception_classes_with_types(tmp_path: Path) -> None:
    (tmp_path / "card_app.py").write_text(CLI_APP, encoding="utf-8")
    recorded = run_cli_python(tmp_path, "-c", "import card_app; card_app.record_session('s.jsonl')")
    assert recorded.returncode == 0, recorded.stderr
    assert '\\"type\\":\\"card_app.CardDeclined\\"' in (tmp_path / "s.jsonl").read_text()

    without = run_cli("replay", "s.jsonl", "--app", "card_app:make_system", cwd=tmp_path)
    assert without.returncode == 1, without.stderr  # the stand-in escapes except CardDeclined
    assert "expected Ev.DECLINED, got EventType.ERROR" in without.stdout

    registered = run_cli(
        "replay", "s.jsonl", "--app", "card_app:make_system", "--types", "card_app:CardDeclined",
        cwd=tmp_path,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stdout + registered.stderr
    assert "OK: the system behaved as recorded (2 events matched)." in registered.stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("builtins:KeyboardInterrupt", "is a class, not an Enum class nor an Exception subclass"),
        ("builtins:len", "is a builtin_function_or_method, not an Enum class nor an Exception"),
    ],
)
def test_types_refuses_what_is_neither_an_enum_nor_an_exception_class(
    spec: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / "card_app.py").write_text(CLI_APP, encoding="utf-8")
    result = run_cli(
        "replay", "s.jsonl", "--app", "card_app:make_system", "--types", spec, cwd=tmp_path
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_the_types_option_says_it_takes_exception_classes(tmp_path: Path) -> None:
    result = run_cli("replay", "--help", cwd=tmp_path)
    assert "--types MODULE:NAME" in result.stdout
    assert "exception class" in " ".join(result.stdout.split())


def run_cli_python(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``cwd``, a real process."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
