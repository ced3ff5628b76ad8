"""Sagas: steps saved as versions of a stored aggregate, compensations in reverse order
when a step fails (at every step), compensation failures named with the rest attempted,
deadlines fired by run_due at the caller's time, time travel over a saga's versions and
its rows in the store's log, replay of the order saga's cassette in check mode, bad input,
the CLI; on memory, SQLite and PostgreSQL stores."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, sqlite_url

from atlas_eda import (
    CommandType,
    Effect,
    EffectHandler,
    Event,
    EventBus,
    GraphCycleError,
    HandlerFailures,
    InvalidSagaError,
    Publish,
    Saga,
    SagaCorrelationError,
    SagaManager,
    Send,
    TemporalStore,
    step,
)
from atlas_eda.cli import main
from atlas_eda.sagas import StepResult, saga_id_of
from atlas_eda.testing import Cassette, record, replay

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import order_saga  # noqa: E402


class Flow(Enum):
    """The test saga's events: ONE starts it, each step publishes the next."""

    ONE = "flow.one"
    TWO = "flow.two"
    THREE = "flow.three"
    FOUR = "flow.four"


class Work(Enum):
    """The test saga's effects."""

    DO = "work.do"
    UNDO = "work.undo"


class Desk(CommandType):
    """A command a compensation sends."""

    CANCEL = "desk.cancel"


ORDER = (Flow.ONE, Flow.TWO, Flow.THREE, Flow.FOUR)
STEPS = 4


class World:
    """What the effects and commands did, in order; what must fail."""

    def __init__(self) -> None:
        self.done: list[tuple[str, Any]] = []
        self.fail_step: int | None = None  # this step raises
        self.fail_action: int | None = None  # this step's DO effect raises
        self.call_fail: int | None = None  # this step calls fail(reason)
        self.broken_undo: set[int] = set()  # these compensations raise


class Flowing(Saga):
    """Four steps; each does ``DO n`` (undone by ``UNDO n``) and publishes the next."""

    starts_with = Flow.ONE
    correlation_key = "id"
    world: World

    def _step(self, n: int, event: Event) -> StepResult:
        world = self.world
        self.data[f"step{n}"] = True
        if world.fail_step == n:
            raise RuntimeError(f"step {n} broke")
        if world.call_fail == n:
            self.fail(f"step {n} gave up")
        self.compensate_with(Effect(Work.UNDO, {"n": n}, f"undo {n}"))
        actions: list[Any] = [Effect(Work.DO, {"n": n})]
        if n < STEPS:
            actions.append(Publish(ORDER[n], {"id": event.data["id"]}))
        else:
            self.complete()
        return actions

    @step(Flow.ONE, emits=(Flow.TWO,))
    def one(self, event: Event) -> StepResult:
        return self._step(1, event)

    @step(Flow.TWO, emits=(Flow.THREE,))
    def two(self, event: Event) -> StepResult:
        return self._step(2, event)

    @step(Flow.THREE, emits=(Flow.FOUR,))
    def three(self, event: Event) -> StepResult:
        return self._step(3, event)

    @step(Flow.FOUR)
    def four(self, event: Event) -> StepResult:
        return self._step(4, event)


class System:
    """A bus with an effect handler, a store at ``url`` and a saga manager; the four-step
    ``Flowing`` saga registered unless ``flowing=False``."""

    def __init__(self, url: str, *, flowing: bool = True) -> None:
        self.world = World()
        handler = EffectHandler()
        self.bus = EventBus(effect_handler=handler)
        handler.event_bus = self.bus
        self.store = TemporalStore(self.bus, url=url)
        self.sagas = SagaManager(self.bus, self.store)
        world = self.world

        class Bound(Flowing):
            name = "Flowing"

        Bound.world = world

        def do(effect: Effect) -> None:
            if world.fail_action == effect.payload["n"]:
                raise ValueError(f"DO {effect.payload['n']} failed")
            world.done.append(("do", effect.payload["n"]))

        def undo(effect: Effect) -> None:
            world.done.append(("undo", effect.payload["n"]))
            if effect.payload["n"] in world.broken_undo:
                raise OSError(f"UNDO {effect.payload['n']} failed")

        handler.register_handler(Work.DO, do)
        handler.register_handler(Work.UNDO, undo)
        self.bus.handle(Desk.CANCEL, lambda event: world.done.append(("cancel", event.data)))
        if flowing:
            self.sagas.register(Bound)
        self.saga_class = Bound


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else sqlite_url(tmp_path / "sagas.db")


@pytest.fixture
def system(url: str) -> Iterator[System]:
    made = System(url)
    yield made
    made.store.close()


def _start(system: System, key: str = "a") -> str:
    system.bus.publish(Flow.ONE, {"id": key})
    return saga_id_of(system.saga_class, key)


def test_a_saga_runs_every_step_each_a_version_with_its_cause(system: System) -> None:
    saga_id = _start(system)
    state = system.sagas.get(saga_id)
    assert state is not None
    assert state.status == "completed"
    assert state.steps == ("one", "two", "three", "four")
    assert state.version == STEPS
    assert system.world.done == [("do", 1), ("do", 2), ("do", 3), ("do", 4)]
    root = system.bus.get_history(Flow.ONE)[0]
    causes = [s.cause for s in system.sagas.history(saga_id)]
    assert [c.event_type for c in causes if c is not None] == [
        "Flow.ONE",
        "Flow.TWO",
        "Flow.THREE",
        "Flow.FOUR",
    ]
    assert {c.correlation_id for c in causes if c is not None} == {root.id}
    assert causes[0] is not None
    assert causes[0].handler == "Flowing.one"


@pytest.mark.parametrize("how", ["raises", "calls fail", "its action raises"])
@pytest.mark.parametrize("failing", range(1, STEPS + 1))
def test_a_failing_step_undoes_the_earlier_steps_in_reverse_order(
    system: System, failing: int, how: str
) -> None:
    world = system.world
    if how == "raises":
        world.fail_step = failing
    elif how == "calls fail":
        world.call_fail = failing
    else:
        world.fail_action = failing
    saga_id = _start(system)
    state = system.sagas.get(saga_id)
    assert state is not None
    assert state.status == "failed"
    done = [("do", n) for n in range(1, failing)]
    undone = [("undo", n) for n in reversed(range(1, failing))]
    assert world.done == done + undone
    expected = [f"Work.UNDO (undo {n})" for n in reversed(range(1, failing))]
    assert [name for name, _ in state.compensated] == expected
    assert all(error is None for _, error in state.compensated)
    reason = {
        "raises": f"RuntimeError: step {failing} broke",
        "calls fail": f"step {failing} gave up",
        "its action raises": f"effect Work.DO raised ValueError: DO {failing} failed",
    }[how]
    assert state.reason == reason
    # Each compensation is a version of its own, between the failed step and the end.
    steps = [s.step for s in system.sagas.history(saga_id)]
    names = ["one", "two", "three", "four"]
    assert steps == [
        *names[:failing],
        *([names[failing - 1]] if how == "its action raises" else []),
        *[f"compensate {name}" for name in expected],
        "end",
    ]


def test_a_compensation_that_raises_is_named_and_the_others_still_run(system: System) -> None:
    system.world.fail_step = 4
    system.world.broken_undo = {2}
    saga_id = _start(system)
    state = system.sagas.get(saga_id)
    assert state is not None
    assert state.status == "compensation_failed"
    assert state.failed_compensation == "Work.UNDO (undo 2)"
    assert system.world.done[-3:] == [("undo", 3), ("undo", 2), ("undo", 1)]
    assert state.compensated == (
        ("Work.UNDO (undo 3)", None),
        ("Work.UNDO (undo 2)", "OSError: UNDO 2 failed"),
        ("Work.UNDO (undo 1)", None),
    )


class Reminded(Saga):
    """Waits for PAID after PLACED; a command compensates; the deadline fails it."""

    starts_with = Flow.ONE
    correlation_key = "id"
    types = (Desk,)  # its compensation may run in another process (run_due after a restart)

    @step(Flow.ONE)
    def placed(self, event: Event) -> StepResult:
        self.compensate_with(Send(Desk.CANCEL, {"id": self.key}))
        self.set_deadline(event.data["due"], "answer")
        return None

    @step(Flow.TWO)
    def answered(self, event: Event) -> StepResult:
        self.complete()
        return None


class Patient(Reminded):
    """The same, but a passed deadline only reminds, with a new deadline."""

    def deadline_passed(self, name: str, now: float) -> StepResult:
        self.data["reminded"] = self.data.get("reminded", 0) + 1
        self.set_deadline(now + 10, name)
        return Publish(Flow.THREE, {"id": self.key, "at": now})


def test_run_due_fires_only_what_is_due_at_the_time_given(url: str) -> None:
    system = System(url, flowing=False)
    system.sagas.register(Reminded)
    system.bus.publish(Flow.ONE, {"id": "late", "due": 100.0})
    system.bus.publish(Flow.ONE, {"id": "early", "due": 50.0})
    system.bus.publish(Flow.ONE, {"id": "done", "due": 10.0})
    system.bus.publish(Flow.TWO, {"id": "done"})
    assert system.sagas.run_due(now=49.0) == []
    fired = system.sagas.run_due(now=50.0)
    assert fired == [saga_id_of(Reminded, "early")]
    early = system.sagas.get(fired[0])
    assert early is not None
    assert early.status == "failed"
    assert early.reason == "the deadline 'answer' passed at 50.0"
    assert ("cancel", {"id": "early"}) in system.world.done
    assert system.sagas.run_due(now=60.0) == []
    system.store.close()


def test_run_due_after_a_restart_fires_the_stored_deadlines(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "deadlines.db")
    system = System(url, flowing=False)
    system.sagas.register(Reminded)
    system.bus.publish(Flow.ONE, {"id": "late", "due": 100.0})
    system.bus.publish(Flow.ONE, {"id": "early", "due": 50.0})
    system.bus.publish(Flow.ONE, {"id": "done", "due": 10.0})
    system.bus.publish(Flow.TWO, {"id": "done"})
    assert system.sagas.run_due(now=50.0) == [saga_id_of(Reminded, "early")]
    system.store.close()
    again = System(url, flowing=False)
    again.sagas.register(Reminded)
    assert again.sagas.run_due(now=1000.0) == [saga_id_of(Reminded, "late")]
    assert again.world.done == [("cancel", {"id": "late"})]
    states = {s.key: s.status for s in again.sagas.instances("Reminded")}
    assert states == {"late": "failed", "early": "failed", "done": "completed"}
    again.store.close()


class Forgetful(Saga):
    """Reminded without ``types``: its command compensation is unknown to a new process."""

    starts_with = Flow.ONE
    correlation_key = "id"

    @step(Flow.ONE)
    def placed(self, event: Event) -> StepResult:
        self.compensate_with(Send(Desk.CANCEL, {"id": self.key}))
        self.set_deadline(1.0, "answer")
        return None


def test_a_compensation_of_a_type_this_process_does_not_know_is_named(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "forgetful.db")
    system = System(url, flowing=False)
    system.sagas.register(Forgetful)
    system.bus.publish(Flow.ONE, {"id": "f"})
    system.store.close()
    again = System(url, flowing=False)  # a new process: Desk was never seen by its manager
    again.sagas.register(Forgetful)
    [fired] = again.sagas.run_due(now=2.0)
    state = again.sagas.get(fired)
    assert state is not None
    assert state.status == "compensation_failed"
    assert state.failed_compensation == "Desk.CANCEL"
    [(name, error)] = state.compensated
    assert name == "Desk.CANCEL"
    assert error is not None
    assert "names a type this process does not know: add its Enum class to Forgetful.types" in error
    assert again.world.done == []
    again.store.close()


def test_a_deadline_handler_may_set_another_deadline() -> None:
    system = System("memory://", flowing=False)
    system.sagas.register(Patient)
    seen: list[Event] = []
    system.bus.subscribe(Flow.THREE, seen.append)
    system.bus.publish(Flow.ONE, {"id": "p", "due": 5.0})
    assert system.sagas.run_due(now=5.0) == [saga_id_of(Patient, "p")]
    assert system.sagas.run_due(now=14.0) == []
    assert system.sagas.run_due(now=15.0) == [saga_id_of(Patient, "p")]
    state = system.sagas.get(saga_id_of(Patient, "p"))
    assert state is not None
    assert (state.status, state.data, state.deadline) == (
        "running",
        {"reminded": 2},
        ("answer", 25.0),
    )
    assert [e.data["at"] for e in seen] == [5.0, 15.0]


def test_every_version_can_be_read_back_diffed_and_is_in_the_timeline(system: System) -> None:
    system.world.fail_step = 3
    saga_id = _start(system)
    system.store.create_document("a note", "text", "ann")
    first = system.sagas.get(saga_id, version=1)
    assert first is not None
    assert (first.status, first.steps, first.data) == ("running", ("one",), {"step1": True})
    assert first.compensations == ("Work.UNDO (undo 1)",)
    assert system.sagas.get(saga_id, version=99) is None
    assert system.sagas.diff(saga_id, 2, 3) == {
        "status": ("running", "compensating"),
        "step": ("two", "three"),
        "reason": (None, "RuntimeError: step 3 broke"),
    }
    timeline = system.store.timeline()
    sagas = [e for e in timeline if e.kind == "saga"]
    assert [e.version for e in sagas] == list(range(1, len(system.sagas.history(saga_id)) + 1))
    assert {e.document_id for e in sagas} == {saga_id}
    assert sagas[0].changes["saga"] == "Flowing"
    # The documents' state is the documents' only; every saga row is caused by the root.
    last = len(timeline)
    assert list(timeline.state_at(last)) == [timeline[-1].document_id]
    root = system.bus.get_history(Flow.ONE)[0]
    assert [e.position for e in timeline.correlated(root.id)] == [e.position for e in sagas]
    # Followers, cassettes and replays read documents only: saga rows are gaps there.
    assert [n.id for n in system.store.notifications(1, 100)] == [last]


def test_the_order_saga_cassette_replays_in_check_mode(tmp_path: Path) -> None:
    path = tmp_path / "order_saga.jsonl"
    app = order_saga.make_system()
    with record(app.bus, path, store=app.store):
        order_saga.play_session(app)
    app.store.close()
    fresh = order_saga.make_system()
    report = replay(Cassette.load(path), fresh.bus, "check", store=fresh.store)
    assert report.ok, str(report)
    assert [s.status for s in fresh.sagas.instances()] == [
        "completed",
        "failed",
        "failed",
        "failed",
    ]
    # A system whose behaviour changed (a higher card limit) diverges at the declined card.
    changed = order_saga.make_system()
    original = order_saga.CARD_LIMIT
    order_saga.CARD_LIMIT = 10_000
    try:
        report = replay(Cassette.load(path), changed.bus, "perform", store=changed.store)
    finally:
        order_saga.CARD_LIMIT = original
    assert not report.ok


def test_declared_lists_what_each_saga_reacts_to_and_emits(system: System) -> None:
    assert system.sagas.declared() == {
        Flow.ONE: (Flow.TWO,),
        Flow.TWO: (Flow.THREE,),
        Flow.THREE: (Flow.FOUR,),
        Flow.FOUR: (),
    }


def test_saga_steps_are_in_the_bus_graph_with_what_they_declared(system: System) -> None:
    graph = system.bus.graph()
    steps = {h.name: h.emits for h in graph.handlers if h.name.startswith("Flowing.")}
    assert set(steps.values()) == {(Flow.TWO,), (Flow.THREE,), (Flow.FOUR,), None}
    system.bus.check()  # ONE → TWO → THREE → FOUR: no loop


def test_a_saga_step_that_loops_back_is_a_cycle_found_before_anything_runs(
    store: TemporalStore,
) -> None:
    bus = EventBus()
    manager = SagaManager(bus, store)

    class Looping(Saga):
        starts_with = Flow.ONE
        correlation_key = "id"

        @step(Flow.ONE, emits=(Flow.TWO,))
        def one(self, event: Event) -> StepResult:
            return None

        @step(Flow.TWO, emits=(Flow.ONE,))
        def two(self, event: Event) -> StepResult:
            return None

    manager.register(Looping)
    with pytest.raises(GraphCycleError, match=r"Looping\.one"):
        bus.check()


# -- bad input -------------------------------------------------------------------------


def test_a_saga_without_a_start_type_or_key_or_start_step_is_refused(store: TemporalStore) -> None:
    manager = SagaManager(EventBus(), store)

    class NoStart(Saga):
        correlation_key = "id"

    class NoKey(Saga):
        starts_with = Flow.ONE

        @step(Flow.ONE)
        def one(self, event: Event) -> StepResult:
            return None

    class NoStartStep(Saga):
        starts_with = Flow.ONE
        correlation_key = "id"

    class CommandStart(NoStartStep):
        starts_with = Desk.CANCEL

    with pytest.raises(InvalidSagaError, match="NoStart has no start type: set `starts_with`"):
        manager.register(NoStart)
    with pytest.raises(InvalidSagaError, match="NoKey has no correlation key"):
        manager.register(NoKey)
    with pytest.raises(InvalidSagaError, match=r"no step for its start type Flow.ONE: mark"):
        manager.register(NoStartStep)
    with pytest.raises(InvalidSagaError, match="not a command or query"):
        manager.register(CommandStart)
    with pytest.raises(InvalidSagaError, match="takes a subclass of Saga"):
        manager.register(object)  # type: ignore[arg-type]
    assert manager.declared() == {}


def test_an_event_without_the_correlation_key_is_a_clear_error() -> None:
    system = System("memory://")
    system.bus = bus = EventBus(failure_policy="raise")
    manager = SagaManager(bus, system.store)
    manager.register(Flowing)
    with pytest.raises(HandlerFailures) as raised:
        bus.publish(Flow.ONE, {"order": 1})
    [error] = raised.value.exceptions
    assert isinstance(error, SagaCorrelationError)
    assert "its data has no 'id'" in str(error)
    assert "Publish the event with data={'id': ...}" in str(error)
    assert system.store.saga_ids() == []


@pytest.mark.parametrize(
    "compensation",
    [Publish(Flow.TWO, {}), Send(Flow.TWO, {}), "undo it", Work.UNDO],
)
def test_a_compensation_that_is_not_a_command_or_effect_is_refused(compensation: object) -> None:
    handler = EffectHandler()
    bus = EventBus(effect_handler=handler, failure_policy="raise")
    store = TemporalStore(bus, url="memory://")
    manager = SagaManager(bus, store)

    class Wrong(Saga):
        starts_with = Flow.ONE
        correlation_key = "id"

        @step(Flow.ONE)
        def one(self, event: Event) -> StepResult:
            self.compensate_with(compensation)  # type: ignore[arg-type]
            return None

    manager.register(Wrong)
    with pytest.raises(HandlerFailures) as raised:
        bus.publish(Flow.ONE, {"id": "x"})
    [error] = raised.value.exceptions
    assert isinstance(error, InvalidSagaError)
    assert "a compensation must be a Send of a command" in str(error)
    state = manager.get(saga_id_of(Wrong, "x"))
    assert state is not None
    assert state.status == "failed"


def test_a_step_returning_something_else_fails_the_saga_with_a_clear_error() -> None:
    bus = EventBus(failure_policy="raise")
    store = TemporalStore(bus, url="memory://")
    manager = SagaManager(bus, store)

    class Odd(Saga):
        starts_with = Flow.ONE
        correlation_key = "id"

        @step(Flow.ONE)
        def one(self, event: Event) -> StepResult:
            return [Publish(Flow.TWO, {"id": 1}), "next"]  # type: ignore[list-item]

    manager.register(Odd)
    with pytest.raises(HandlerFailures) as raised:
        bus.publish(Flow.ONE, {"id": 1})
    [error] = raised.value.exceptions
    assert isinstance(error, InvalidSagaError)
    assert "Saga Odd step one returned 'next': a step returns None, a Send" in str(error)
    state = manager.get(saga_id_of(Odd, 1))
    assert state is not None
    assert state.status == "failed"


# -- the command line ------------------------------------------------------------------

APP = """
from enum import Enum
from atlas_eda import EventBus, SagaManager, Saga, TemporalStore, Publish, step

class Ask(Enum):
    ASKED = "ask.asked"
    NUDGED = "ask.nudged"

class Waiting(Saga):
    starts_with = Ask.ASKED
    correlation_key = "id"

    @step(Ask.ASKED)
    def asked(self, event):
        self.set_deadline(event.data["due"], "reply")

    def deadline_passed(self, name, now):
        self.complete()
        return Publish(Ask.NUDGED, {"id": self.key})

class App:
    def __init__(self, url):
        self.bus = EventBus()
        self.store = TemporalStore(self.bus, url=url)
        self.sagas = SagaManager(self.bus, self.store)
        self.sagas.register(Waiting)

def make(url):
    return App(url)
"""


def test_the_cli_lists_sagas_fires_due_deadlines_and_shows_a_saga(tmp_path: Path) -> None:
    (tmp_path / "waiting_app.py").write_text(APP)
    url = sqlite_url(tmp_path / "app.db")
    sys.path.insert(0, str(tmp_path))
    try:
        import waiting_app  # type: ignore[import-not-found]

        app = waiting_app.make(url)
        app.bus.publish(waiting_app.Ask.ASKED, {"id": "q1", "due": 1_000_000.0})
        app.bus.publish(waiting_app.Ask.ASKED, {"id": "q2", "due": 4_000_000_000.0})
        app.store.close()
    finally:
        sys.path.remove(str(tmp_path))
    listed = run_cli("sagas", "--store", url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "Sagas in " in listed.stdout
    assert ": 2 instances" in listed.stdout
    assert listed.stdout.count("running") == 2
    assert "reply at 1970-01-12" in listed.stdout
    fired = run_cli(
        "sagas", "--store", url, "--run-due", "--app", "waiting_app:make",
        "--now", "2000-01-01T00:00:00", cwd=tmp_path,
    )  # fmt: skip
    assert fired.returncode == 0, fired.stderr
    first = saga_id_of(waiting_app.Waiting, "q1")
    assert f"Fired 1 due deadline(s): {first}" in fired.stdout
    assert fired.stdout.count("completed") == 1
    shown = run_cli("show", first[:8], "--store", url, "--version", "1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"Saga {first}, version 1" in shown.stdout
    assert "Versions: 1, 2 (2 versions; shown: 1, latest: 2)" in shown.stdout
    assert "Cause of version 1: Ask.ASKED event" in shown.stdout
    log = run_cli("log", "--store", url, cwd=tmp_path)
    assert log.stdout.count(" saga ") == 3, log.stdout


def test_the_cli_refuses_run_due_without_app_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqlite_url(tmp_path / "s.db")
    TemporalStore(url=url).close()
    assert main(["sagas", "--store", url, "--run-due"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "atlas-eda: error: --run-due needs --app module:factory (the app whose sagas run).\n"
    )
    assert main(["sagas", "--store", url, "--run-due", "--app", "no_such_module:make"]) == 2
    assert "no module named 'no_such_module'" in capsys.readouterr().err
    assert main(["sagas", "--store", url]) == 0
    assert ": 0 instances" in capsys.readouterr().out


def test_sagas_on_postgresql(postgres_url: str) -> None:
    system = System(postgres_url)
    system.world.fail_step = 3
    saga_id = _start(system)
    system.store.close()
    again = System(postgres_url)
    state = again.sagas.get(saga_id)
    assert state is not None
    assert state.status == "failed"
    assert [name for name, _ in state.compensated] == ["Work.UNDO (undo 2)", "Work.UNDO (undo 1)"]
    again.store.close()
