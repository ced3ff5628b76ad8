"""The pytest plugin: fixtures and the atlas_cassette marker, run in generated test modules.

The generated modules run in a subprocess (``runpytest_subprocess``), without ``-p``: the
plugin must come from its ``pytest11`` entry point, and the types they register stay out
of this process's registry."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from atlas_eda import EffectHandler, EventBus
from atlas_eda.testing import record

pytest_plugins = ["pytester"]

SHOP = """
import enum

from atlas_eda import Effect, EffectMonad


class PluginOrders(enum.Enum):
    PLACED = "order.placed"
    SHIPPED = "order.shipped"


class PluginMail(enum.Enum):
    SEND = "mail.send"


def install(bus, shipped_order=None):
    bus.effect_handler.register_handler(PluginMail.SEND, lambda effect: {"queued": True})

    def ship(event):
        order = event.data["order"] if shipped_order is None else shipped_order
        bus.publish(PluginOrders.SHIPPED, {"order": order})
        return EffectMonad.pure(None).with_effect(Effect(PluginMail.SEND, {"to": "ann"}))

    bus.subscribe(PluginOrders.PLACED, ship)
"""

CASSETTE_TEST = """
import pytest

from atlas_eda.testing import register_types
from shop import PluginMail, PluginOrders, install

register_types(PluginOrders, PluginMail)


@pytest.mark.atlas_cassette("cassettes/session.jsonl")
def test_shop(atlas_bus):
    install(atlas_bus)
"""


def _record_session(path: Path) -> None:
    """Record the shop of ``SHOP`` handling one order to ``path``."""
    shop: dict[str, Any] = {"__name__": "shop"}
    exec(SHOP, shop)
    bus = EventBus(effect_handler=EffectHandler())
    shop["install"](bus)
    path.parent.mkdir(parents=True, exist_ok=True)
    with record(bus, path) as recorder:
        bus.publish(shop["PluginOrders"].PLACED, {"order": 42})
    assert recorder.lines == 2


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--strict-markers", "-W", "error", "-p", "no:cacheprovider", *args
    )


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("atlas_eda") == "atlas_eda.testing.plugin"


def test_fixtures_give_a_bus_with_an_effect_handler_a_store_and_a_recorder(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import enum

        from atlas_eda import EffectHandler, EventBus, EventType, TemporalStore
        from atlas_eda.testing import Cassette, Recorder

        OPEN = []


        class Pings(enum.Enum):
            PING = "ping"


        def test_bus(atlas_bus):
            assert isinstance(atlas_bus, EventBus)
            assert isinstance(atlas_bus.effect_handler, EffectHandler)
            assert atlas_bus.get_history() == []


        def test_store(atlas_store, atlas_bus):
            assert isinstance(atlas_store, TemporalStore)
            seen = []
            atlas_bus.subscribe(EventType.DOCUMENT_CREATED, seen.append)
            doc_id = atlas_store.create_document("Plan", "draft", "ann")
            assert atlas_store.get_document(doc_id).title == "Plan"
            assert len(seen) == 1


        def test_recorder(atlas_recorder, atlas_bus, tmp_path):
            assert isinstance(atlas_recorder, Recorder)
            assert atlas_recorder.path.parent == tmp_path
            atlas_bus.publish(Pings.PING, {"n": 1})
            assert atlas_recorder.lines == 1
            assert atlas_recorder.path.read_text(encoding="utf-8").count("\\n") == 1


        def test_each_test_gets_a_fresh_bus(atlas_bus):
            assert atlas_bus.get_history() == []
        """
    )
    result = _run(pytester)
    result.assert_outcomes(passed=4)


def test_recorder_errors_are_raised_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import datetime
        import enum


        class Pings(enum.Enum):
            PING = "ping"


        def test_unrecordable(atlas_recorder, atlas_bus):
            atlas_bus.publish(Pings.PING, {"when": datetime.datetime(2026, 1, 1)})
        """
    )
    result = _run(pytester, "-W", "ignore")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*RecordingError*"])


def test_marker_with_a_matching_cassette_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(shop=SHOP, test_shop=CASSETTE_TEST)
    _record_session(pytester.path / "cassettes" / "session.jsonl")
    result = _run(pytester)
    result.assert_outcomes(passed=1)
    assert "Unknown pytest.mark" not in result.stdout.str()


def test_marker_fails_the_test_on_divergence(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(shop=SHOP, test_shop=CASSETTE_TEST)
    path = pytester.path / "cassettes" / "session.jsonl"
    _record_session(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    shipped = json.loads(lines[1])
    shipped["data"] = {"order": 43}
    lines[1] = json.dumps(shipped)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay of *session.jsonl (check mode) diverged after 1 matching events:",
            '*line 2: expected PluginOrders.SHIPPED data {"order": 43}, got {"order": 42}',
        ]
    )
    output = result.stdout.str()
    assert "ERROR" not in output  # a failure of the test, not of its teardown
    # One report, no chained traceback repeating it. The short test summary may quote the
    # message again (in full when CI is set), so count only in the report above it.
    report = output.split("short test summary info")[0]
    assert report.count("line 2: expected PluginOrders.SHIPPED") == 1
    assert "During handling" not in output
    assert "direct cause" not in output


def test_marker_fails_when_the_system_diverges(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        shop=SHOP,
        test_shop=CASSETTE_TEST.replace("install(atlas_bus)", "install(atlas_bus, 7)"),
    )
    _record_session(pytester.path / "cassettes" / "session.jsonl")
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(['*expected PluginOrders.SHIPPED data {"order": 42}, got*'])


def test_marker_with_a_missing_cassette_fails_naming_the_path(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.atlas_cassette("no/such.jsonl")
        def test_missing(atlas_bus):
            pass
        """
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*atlas_cassette(*no/such.jsonl*not found*"])


def test_marker_without_a_path_fails_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.atlas_cassette
        def test_no_path():
            pass
        """
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*atlas_cassette takes one argument*"])


def test_a_failing_test_body_is_reported_without_replaying(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.atlas_cassette("no/such.jsonl")
        def test_body_fails(atlas_bus):
            assert 1 == 2, "the body's own failure"
        """
    )
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the body's own failure*"])
    assert "not found" not in result.stdout.str()


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.atlas_cassette("cassette.jsonl")
        def test_marked():
            pass
        """
    )
    result = _run(pytester, "--collect-only", "-q")
    assert result.ret == 0
    assert "warning" not in result.stdout.str().lower()
    markers = _run(pytester, "--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.atlas_cassette(path, mode='check'):*"])


def test_the_marker_brings_atlas_bus_even_when_the_test_does_not_ask(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".jsonl", empty="")
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.atlas_cassette("empty.jsonl")
        def test_no_fixture():
            pass
        """
    )
    result = _run(pytester)
    result.assert_outcomes(passed=1)


MODES_SHOP = """
import enum

from atlas_eda import Effect, EffectMonad


class ModeEvents(enum.Enum):
    PLACED = "placed"


class ModeEffects(enum.Enum):
    MAIL = "mail"
    AUDIT = "audit"


def install(bus, *, queued=True, swapped=False):
    bus.effect_handler.register_handler(ModeEffects.MAIL, lambda effect: {"queued": queued})
    bus.effect_handler.register_handler(ModeEffects.AUDIT, lambda effect: "logged")

    def on_placed(event):
        effects = [Effect(ModeEffects.MAIL, {"to": "ann"}), Effect(ModeEffects.AUDIT, "placed")]
        if swapped:
            effects.reverse()
        monad = EffectMonad.pure(None)
        for effect in effects:
            monad = monad.with_effect(effect)
        return monad

    bus.subscribe(ModeEvents.PLACED, on_placed)
"""

MODES_TEST = """
import pytest

from atlas_eda.testing import register_types
from modes_shop import ModeEffects, ModeEvents, install

register_types(ModeEvents, ModeEffects)


@pytest.mark.atlas_cassette("session.jsonl", mode="perform")
def test_perform_as_recorded(atlas_bus):
    install(atlas_bus)


@pytest.mark.atlas_cassette("session.jsonl", mode="perform")
def test_perform_another_result(atlas_bus):
    install(atlas_bus, queued=False)


@pytest.mark.atlas_cassette("session.jsonl")
def test_check_another_result(atlas_bus):
    install(atlas_bus, queued=False)


@pytest.mark.atlas_cassette("session.jsonl", mode="check")
def test_check_effects_swapped(atlas_bus):
    install(atlas_bus, swapped=True)


@pytest.mark.atlas_cassette("session.jsonl", mode="stub")
def test_stub_effects_swapped(atlas_bus):
    install(atlas_bus, swapped=True)


@pytest.mark.atlas_cassette("session.jsonl", mode="fast")
def test_unknown_mode(atlas_bus):
    install(atlas_bus)


@pytest.mark.atlas_cassette("session.jsonl", speed="fast")
def test_unknown_keyword(atlas_bus):
    install(atlas_bus)
"""


def test_marker_modes_stub_check_and_perform(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(modes_shop=MODES_SHOP, test_modes=MODES_TEST)
    shop: dict[str, Any] = {"__name__": "modes_shop"}
    exec(MODES_SHOP, shop)
    bus = EventBus(effect_handler=EffectHandler())
    shop["install"](bus)
    with record(bus, pytester.path / "session.jsonl") as recorder:
        bus.publish(shop["ModeEvents"].PLACED, {"order": 1})
    assert recorder.lines == 1

    result = _run(pytester, "-rA")
    outcomes = {
        line.split("::")[1].split()[0]: line.split()[0]
        for line in result.stdout.lines
        if line.startswith(("PASSED", "FAILED")) and "::" in line
    }
    assert outcomes == {
        "test_perform_as_recorded": "PASSED",
        # perform mode compares each effect's result: the performer's differs
        "test_perform_another_result": "FAILED",
        # check mode (the default) stubs effects with the recorded results
        "test_check_another_result": "PASSED",
        # check mode compares effects in order; stub mode compares events only
        "test_check_effects_swapped": "FAILED",
        "test_stub_effects_swapped": "PASSED",
        "test_unknown_mode": "FAILED",
        "test_unknown_keyword": "FAILED",
    }
    result.stdout.fnmatch_lines(
        [
            "*replay of *session.jsonl (perform mode) diverged after 0 matching events:",
            "*line 1: ModeEvents.PLACED effect 1 (ModeEffects.MAIL): result differs",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*line 1: ModeEvents.PLACED effect 1: expected ModeEffects.MAIL, got ModeEffects.AUDIT"]
    )
    result.stdout.fnmatch_lines(["*mode='fast'): mode must be one of 'stub', 'perform', 'check'*"])
    result.stdout.fnmatch_lines(["*optionally mode='check', 'stub' or 'perform'; got*speed*"])


HEAVY = (
    "atlas_eda.bus",
    "atlas_eda.store",
    "atlas_eda.effects",
    "atlas_eda.testing.replay",
    "atlas_eda.testing.postgres",
    "eventsourcing",
    "blinker",
    "effect",
    "aspectlib",
)
"""What loading the plugin must not load: the library's stack and what it is built on."""


def test_loading_the_plugin_imports_none_of_the_library(tmp_path: Path) -> None:
    # In a fresh interpreter: this one has long imported everything.
    script = (
        "import sys\n"
        "import atlas_eda.testing.plugin\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert completed.stdout.strip() == "[]"


def test_a_pytest_run_loads_the_library_only_when_a_test_uses_the_plugin(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        f"""
        import sys

        HEAVY = {HEAVY!r}


        def test_a_plain_test_runs_without_the_library():
            assert [name for name in HEAVY if name in sys.modules] == []


        def test_the_fixture_loads_it(atlas_bus):
            from atlas_eda import EventBus

            assert type(atlas_bus) is EventBus
            assert "atlas_eda.bus" in sys.modules
        """
    )
    # aspectlib's own pytest plugin (installed with it) imports aspectlib: not ours to judge.
    result = _run(pytester, "-p", "no:aspectlib")
    result.assert_outcomes(passed=2)
