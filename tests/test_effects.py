"""Effects: the ``Effect`` intent, the immutable ``EffectMonad`` and ``EffectHandler``, an
``effect``-library dispatcher (composed, ``@do`` programs, ``effect.testing``)."""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable
from typing import Any

import effect as fx
import pytest
from effect.do import do
from effect.testing import SequenceDispatcher, const, perform_sequence
from hypothesis import given
from hypothesis import strategies as st

from atlas_eda import (
    AtlasEdaError,
    Effect,
    EffectHandler,
    EffectMonad,
    EffectType,
    EventBus,
    InvalidEffectError,
    UnhandledEffectError,
)


class Mail(enum.Enum):
    """A user's own effect types: any Enum member is an effect type."""

    SEND = "send"
    BOUNCE = "bounce"


class Recorder:
    """A performer that records what it performed (in one log shared by several) and
    returns a result derived from the effect."""

    def __init__(self, log: list[tuple[str, Effect]] | None = None, name: str = "rec") -> None:
        self.log: list[tuple[str, Effect]] = [] if log is None else log
        self.name = name

    def __call__(self, effect: Effect) -> Any:
        self.log.append((self.name, effect))
        return (self.name, effect.payload)

    @property
    def effects(self) -> list[Effect]:
        return [e for _, e in self.log]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def handler(recorder: Recorder) -> EffectHandler:
    h = EffectHandler()
    for effect_type in EffectType:
        h.register_handler(effect_type, recorder)
    return h


def write(payload: Any = None, description: str = "") -> Effect:
    return Effect(EffectType.DATABASE_WRITE, payload, description)


# -- Effect --------------------------------------------------------------------------


def test_effect_positional_construction_as_in_the_seed() -> None:
    e = Effect(EffectType.DATABASE_WRITE, {"operation": "create"}, "Creating document: T")

    assert e.type is EffectType.DATABASE_WRITE
    assert e.payload == {"operation": "create"}
    assert e.description == "Creating document: T"


def test_effect_defaults_and_value_equality() -> None:
    e = Effect(EffectType.LOGGING)

    assert (e.payload, e.description) == (None, "")
    assert e == Effect(EffectType.LOGGING, None, "")
    assert e != Effect(EffectType.LOGGING, 1)
    assert Effect(Mail.SEND, "x").type is Mail.SEND


def test_effect_is_frozen() -> None:
    e = write({"a": 1})

    with pytest.raises(dataclasses.FrozenInstanceError):
        e.payload = {"b": 2}  # type: ignore[misc]
    assert dataclasses.is_dataclass(e)
    assert e.payload == {"a": 1}


def test_builtin_effect_types_exist() -> None:
    names = {t.name for t in EffectType}

    assert {
        "DATABASE_WRITE",
        "DATABASE_READ",
        "NOTIFICATION",
        "LOGGING",
        "FILE_OPERATION",
    } <= names


@pytest.mark.parametrize("bad_type", ["DATABASE_WRITE", 1, None, object()])
def test_effect_with_non_enum_type_is_refused(bad_type: Any) -> None:
    with pytest.raises(InvalidEffectError, match=r"enum\.Enum") as excinfo:
        Effect(bad_type)

    assert isinstance(excinfo.value, TypeError)
    assert isinstance(excinfo.value, AtlasEdaError)


# -- EffectMonad: immutability ---------------------------------------------------------


def test_pure_has_the_value_and_no_effects() -> None:
    m = EffectMonad.pure(42)

    assert m.value == 42
    assert m.effects == ()
    assert isinstance(m.effects, tuple)


def test_with_effect_returns_a_new_monad_and_leaves_the_original_alone() -> None:
    first, second = write(1), Effect(EffectType.NOTIFICATION, 2)
    m0 = EffectMonad.pure("v")

    m1 = m0.with_effect(first)
    m2 = m1.with_effect(second)

    assert m0.effects == ()
    assert m1.effects == (first,)
    assert m2.effects == (first, second)
    assert isinstance(m2.effects, tuple)
    assert m2.value == "v"


def test_map_returns_a_new_monad_with_the_same_effects() -> None:
    m = EffectMonad(2, [write(1)])

    mapped = m.map(lambda x: x * 10)

    assert mapped.value == 20
    assert mapped.effects == (write(1),)
    assert m.value == 2


def test_bind_concatenates_effects_in_order_and_leaves_both_monads_alone() -> None:
    m = EffectMonad(3, [write("a")])
    step = EffectMonad("three", [write("b")])

    bound = m.bind(lambda x: step)

    assert bound.value == "three"
    assert bound.effects == (write("a"), write("b"))
    assert m.effects == (write("a"),)
    assert step.effects == (write("b"),)


def test_effects_are_copied_from_the_given_iterable() -> None:
    source = [write(1)]
    m = EffectMonad(0, source)

    source.append(write(2))

    assert m.effects == (write(1),)


def test_value_and_effects_cannot_be_assigned() -> None:
    m = EffectMonad.pure(1)

    with pytest.raises(AttributeError):
        m.value = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        m.effects = ()  # type: ignore[misc]
    assert m.value == 1


def test_bind_with_a_function_not_returning_a_monad_is_a_clear_type_error() -> None:
    m = EffectMonad.pure(1)

    with pytest.raises(TypeError, match=r"EffectMonad.*got int.*use map"):
        m.bind(lambda x: x + 1)  # type: ignore[arg-type, return-value]


# -- EffectMonad: monad laws -----------------------------------------------------------

effects_strategy = st.lists(
    st.builds(
        Effect,
        st.sampled_from(list(EffectType) + list(Mail)),
        st.none() | st.integers() | st.text(max_size=5),
        st.text(max_size=5),
    ),
    max_size=4,
)


def step(offset: int, effects: list[Effect]) -> Callable[[int], EffectMonad[int]]:
    """A monadic function: adds ``offset`` and requires ``effects`` plus one depending on
    its input (so the laws are checked on value-dependent effects, too)."""

    def f(x: int) -> EffectMonad[int]:
        return EffectMonad(x + offset, [*effects, Effect(EffectType.LOGGING, x)])

    return f


@given(value=st.integers(), offset=st.integers(), effects=effects_strategy)
def test_left_identity(value: int, offset: int, effects: list[Effect]) -> None:
    f = step(offset, effects)

    assert EffectMonad.pure(value).bind(f) == f(value)


@given(value=st.integers(), effects=effects_strategy)
def test_right_identity(value: int, effects: list[Effect]) -> None:
    m = EffectMonad(value, effects)

    assert m.bind(EffectMonad.pure) == m


step_specs = st.tuples(st.integers(), effects_strategy)


@given(value=st.integers(), effects=effects_strategy, f_spec=step_specs, g_spec=step_specs)
def test_associativity(
    value: int,
    effects: list[Effect],
    f_spec: tuple[int, list[Effect]],
    g_spec: tuple[int, list[Effect]],
) -> None:
    m = EffectMonad(value, effects)
    f, g = step(*f_spec), step(*g_spec)

    assert m.bind(f).bind(g) == m.bind(lambda x: f(x).bind(g))


@given(value=st.integers(), effects=effects_strategy)
def test_map_is_bind_of_pure(value: int, effects: list[Effect]) -> None:
    m = EffectMonad(value, effects)

    assert m.map(lambda x: x * 2) == m.bind(lambda x: EffectMonad.pure(x * 2))


@given(effects=effects_strategy)
def test_run_with_a_handler_performs_exactly_the_effects_in_order(effects: list[Effect]) -> None:
    recorder = Recorder()
    h = EffectHandler()
    for effect_type in [*EffectType, *Mail]:
        h.register_handler(effect_type, recorder)

    assert EffectMonad("v", effects).run(h) == "v"
    assert recorder.effects == effects


# -- EffectMonad.run ---------------------------------------------------------------------


def test_run_performs_in_order_and_returns_the_value(
    handler: EffectHandler, recorder: Recorder
) -> None:
    effects = [write(1), Effect(EffectType.NOTIFICATION, 2), Effect(EffectType.LOGGING, 3)]
    m = EffectMonad({"title": "T"}, effects)

    assert m.run(handler) == {"title": "T"}
    assert recorder.effects == effects


def test_run_uses_each_types_own_performer() -> None:
    log: list[tuple[str, Effect]] = []
    h = EffectHandler()
    h.register_handler(EffectType.DATABASE_WRITE, Recorder(log, "db"))
    h.register_handler(Mail.SEND, Recorder(log, "mail"))

    EffectMonad.pure(0).with_effect(Effect(Mail.SEND, "hi")).with_effect(write("row")).run(h)

    assert log == [("mail", Effect(Mail.SEND, "hi")), ("db", write("row"))]


def test_run_with_no_effects_returns_the_value_without_calling_anything() -> None:
    assert EffectMonad.pure("x").run(EffectHandler()) == "x"


def test_run_checks_every_performer_before_performing_any(
    recorder: Recorder,
) -> None:
    h = EffectHandler()
    h.register_handler(EffectType.DATABASE_WRITE, recorder)
    missing = Effect(EffectType.NOTIFICATION, {"to": "ada"})
    also_missing = Effect(Mail.BOUNCE)
    m = EffectMonad("v", [write(1), missing, write(2), also_missing])

    with pytest.raises(UnhandledEffectError) as excinfo:
        m.run(h)

    assert recorder.log == []  # not even the handled effect before the missing one
    error = excinfo.value
    assert isinstance(error, ValueError)
    assert isinstance(error, AtlasEdaError)
    assert "EffectType.NOTIFICATION" in str(error)
    assert "Mail.BOUNCE" in str(error)
    assert "register_handler" in str(error)
    assert error.effects == (missing, also_missing)


def test_run_with_an_empty_handler_refuses_every_effect() -> None:
    with pytest.raises(UnhandledEffectError, match=r"EffectType\.DATABASE_WRITE"):
        EffectMonad.pure(1).with_effect(write()).run(EffectHandler())


def test_a_performers_exception_propagates_and_stops_the_run(recorder: Recorder) -> None:
    boom = RuntimeError("disk full")

    def failing(effect: Effect) -> None:
        raise boom

    h = EffectHandler()
    h.register_handler(EffectType.DATABASE_WRITE, recorder)
    h.register_handler(EffectType.NOTIFICATION, failing)
    m = EffectMonad("v", [write(1), Effect(EffectType.NOTIFICATION), write(2)])

    with pytest.raises(RuntimeError) as excinfo:
        m.run(h)

    assert excinfo.value is boom
    assert recorder.effects == [write(1)]  # performed up to the failure, not after


def test_run_with_a_plain_callable_calls_it_once_per_effect_in_order() -> None:
    seen: list[Effect] = []
    effects = [write(1), Effect(Mail.SEND, 2), write(3)]

    result = EffectMonad(7, effects).run(seen.append)

    assert result == 7
    assert seen == effects


def test_run_with_a_plain_callable_propagates_its_exception() -> None:
    def refuse(effect: Effect) -> None:
        raise PermissionError(effect.description)

    with pytest.raises(PermissionError, match="nope"):
        EffectMonad.pure(0).with_effect(write(description="nope")).run(refuse)


@pytest.mark.parametrize("not_callable", [None, 42, "handler"])
def test_run_with_a_non_callable_is_a_type_error(not_callable: Any) -> None:
    with pytest.raises(TypeError, match="EffectHandler or a callable"):
        EffectMonad.pure(0).with_effect(write()).run(not_callable)


def test_library_intents_work_inside_a_monad_run(
    handler: EffectHandler, recorder: Recorder
) -> None:
    calls: list[str] = []
    m = (
        EffectMonad.pure("done")
        .with_effect(write(1))
        .with_effect(fx.Func(lambda: calls.append("func")))
        .with_effect(fx.Constant(5))
        .with_effect(Effect(EffectType.LOGGING, 2))
    )

    assert m.run(handler) == "done"
    assert calls == ["func"]
    assert recorder.effects == [write(1), Effect(EffectType.LOGGING, 2)]


def test_a_library_error_intent_raises_its_exception(handler: EffectHandler) -> None:
    err = KeyError("gone")

    with pytest.raises(KeyError) as excinfo:
        EffectMonad.pure(0).with_effect(fx.Error(err)).run(handler)

    assert excinfo.value is err


def test_an_unknown_intent_object_is_refused_before_anything_runs(
    handler: EffectHandler, recorder: Recorder
) -> None:
    m = EffectMonad.pure(0).with_effect(write(1)).with_effect("not an intent")

    with pytest.raises(UnhandledEffectError, match="str"):
        m.run(handler)
    assert recorder.log == []


def test_run_works_as_a_bus_handlers_result(recorder: Recorder) -> None:
    h = EffectHandler()
    h.register_handler(Mail.SEND, recorder)
    bus = EventBus(effect_handler=h)
    bus.subscribe(
        Mail.SEND, lambda event: EffectMonad.pure(None).with_effect(Effect(Mail.SEND, event.data))
    )

    bus.publish(Mail.SEND, "hello")

    assert recorder.effects == [Effect(Mail.SEND, "hello")]


# -- EffectHandler as an effect dispatcher ---------------------------------------------


def test_handler_returns_a_performer_for_registered_types_and_none_otherwise(
    recorder: Recorder,
) -> None:
    h = EffectHandler()
    h.register_handler(EffectType.DATABASE_WRITE, recorder)

    assert callable(h(write()))
    assert h(Effect(EffectType.NOTIFICATION)) is None
    assert h(fx.Constant(1)) is None  # library intents are base_dispatcher's
    assert h("anything") is None


def test_handler_composes_with_base_dispatcher(handler: EffectHandler, recorder: Recorder) -> None:
    dispatcher = fx.ComposedDispatcher([handler, fx.base_dispatcher])

    assert fx.sync_perform(dispatcher, fx.Effect(write("x"))) == ("rec", "x")
    assert fx.sync_perform(dispatcher, fx.Effect(fx.Constant(3))) == 3
    assert recorder.effects == [write("x")]


def test_callbacks_on_an_effect_see_the_performers_result(handler: EffectHandler) -> None:
    dispatcher = fx.ComposedDispatcher([handler, fx.base_dispatcher])
    eff = fx.Effect(write("x")).on(success=lambda result: ("wrapped", result))

    assert fx.sync_perform(dispatcher, eff) == ("wrapped", ("rec", "x"))


def test_do_notation_program_mixing_our_effects_and_func(
    handler: EffectHandler, recorder: Recorder
) -> None:
    calls: list[int] = []

    def compute(doc_id: int) -> int:
        calls.append(doc_id)
        return doc_id * 2

    @do
    def program(doc_id: int) -> Any:
        read = yield fx.Effect(Effect(EffectType.DATABASE_READ, {"id": doc_id}))
        computed = yield fx.Effect(fx.Func(compute, doc_id))
        written = yield fx.Effect(write({"id": doc_id, "value": computed}))
        return read, computed, written

    dispatcher = fx.ComposedDispatcher([handler, fx.base_dispatcher])
    result = fx.sync_perform(dispatcher, program(21))

    assert result == (
        ("rec", {"id": 21}),
        42,
        ("rec", {"id": 21, "value": 42}),
    )
    assert calls == [21]
    assert recorder.effects == [
        Effect(EffectType.DATABASE_READ, {"id": 21}),
        write({"id": 21, "value": 42}),
    ]


def test_do_program_can_catch_a_performers_exception() -> None:
    def failing(effect: Effect) -> None:
        raise ConnectionError("smtp down")

    h = EffectHandler()
    h.register_handler(Mail.SEND, failing)

    @do
    def program() -> Any:
        try:
            yield fx.Effect(Effect(Mail.SEND, "hi"))
        except ConnectionError as exc:
            return f"queued: {exc}"
        return "sent"

    assert fx.sync_perform(h.dispatcher, program()) == "queued: smtp down"


def test_an_unhandled_effect_in_a_dispatcher_is_no_performer_found() -> None:
    dispatcher = fx.ComposedDispatcher([EffectHandler(), fx.base_dispatcher])

    with pytest.raises(fx.NoPerformerFoundError):
        fx.sync_perform(dispatcher, fx.Effect(write()))


def test_perform_sequence_stubs_our_effects_and_falls_back_to_the_handler(
    recorder: Recorder,
) -> None:
    h = EffectHandler()
    h.register_handler(EffectType.DATABASE_WRITE, recorder)
    h.register_handler(EffectType.NOTIFICATION, recorder)
    h.register_handler(EffectType.LOGGING, recorder)
    notification = Effect(EffectType.NOTIFICATION, {"to": "ada"}, "Document updated")
    # A chain of our intents only (callbacks returning the next Effect), so the handler
    # alone can be the fallback.
    update = fx.Effect(write({"id": 1}, "Updating document: 1")).on(
        success=lambda saved: fx.Effect(notification).on(
            success=lambda sent: fx.Effect(Effect(EffectType.LOGGING, "updated")).on(
                success=lambda logged: (saved, sent, logged)
            )
        )
    )

    seq = [(notification, const({"stubbed": True}))]
    result = perform_sequence(seq, update, fallback_dispatcher=h)

    assert result == (("rec", {"id": 1}), {"stubbed": True}, ("rec", "updated"))
    # The stubbed effect was not performed; the others were, by the handler.
    assert recorder.effects == [
        write({"id": 1}, "Updating document: 1"),
        Effect(EffectType.LOGGING, "updated"),
    ]


def test_perform_sequence_runs_a_do_program_with_the_handlers_dispatcher(
    recorder: Recorder,
) -> None:
    # @do programs are themselves Func intents: fall back to the handler's composed
    # dispatcher (handler, then effect.base_dispatcher).
    h = EffectHandler()
    h.register_handler(EffectType.DATABASE_WRITE, recorder)
    notification = Effect(EffectType.NOTIFICATION, {"to": "ada"})

    @do
    def update() -> Any:
        saved = yield fx.Effect(write({"id": 1}))
        sent = yield fx.Effect(notification)
        return saved, sent

    seq = [(notification, const("stubbed"))]

    assert perform_sequence(seq, update(), fallback_dispatcher=h.dispatcher) == (
        ("rec", {"id": 1}),
        "stubbed",
    )
    assert recorder.effects == [write({"id": 1})]


def test_perform_sequence_fails_when_a_stubbed_effect_is_never_performed(
    handler: EffectHandler,
) -> None:
    seq = [(Effect(EffectType.NOTIFICATION, "expected"), const(None))]

    with pytest.raises(AssertionError, match="Not all intents were performed"):
        perform_sequence(seq, fx.Effect(write(1)), fallback_dispatcher=handler)


def test_perform_sequence_with_the_handlers_dispatcher_covers_library_intents(
    recorder: Recorder,
) -> None:
    h = EffectHandler()
    h.register_handler(EffectType.DATABASE_READ, recorder)

    @do
    def program() -> Any:
        now = yield fx.Effect(fx.Func(lambda: "real clock"))
        doc = yield fx.Effect(Effect(EffectType.DATABASE_READ, 7))
        return now, doc

    seq = [(Effect(EffectType.DATABASE_READ, 7), const("stub doc"))]

    assert perform_sequence(seq, program(), fallback_dispatcher=h.dispatcher) == (
        "real clock",
        "stub doc",
    )
    assert recorder.log == []


def test_sequence_dispatcher_in_front_of_the_handler(
    handler: EffectHandler, recorder: Recorder
) -> None:
    sequence = SequenceDispatcher([(write("stubbed"), const("from stub"))])
    dispatcher = fx.ComposedDispatcher([sequence, handler])

    with sequence.consume():
        assert fx.sync_perform(dispatcher, fx.Effect(write("stubbed"))) == "from stub"
        assert fx.sync_perform(dispatcher, fx.Effect(write("real"))) == ("rec", "real")
    assert recorder.effects == [write("real")]


# -- EffectHandler: registration and handle ---------------------------------------------


def test_register_handler_replaces_the_previous_one() -> None:
    first, second = Recorder(name="first"), Recorder(name="second")
    h = EffectHandler()
    h.register_handler(Mail.SEND, first)
    h.register_handler(Mail.SEND, second)

    assert h.handle(Effect(Mail.SEND, 1)) == ("second", 1)
    assert first.log == []
    assert h.registered_types() == [Mail.SEND]


def test_register_handler_refuses_a_non_enum_type(recorder: Recorder) -> None:
    h = EffectHandler()

    with pytest.raises(InvalidEffectError, match=r"enum\.Enum") as excinfo:
        h.register_handler("DATABASE_WRITE", recorder)  # type: ignore[arg-type]

    assert isinstance(excinfo.value, TypeError)
    assert h.registered_types() == []


def test_register_handler_refuses_a_non_callable() -> None:
    h = EffectHandler()

    with pytest.raises(TypeError, match=r"callable.*EffectType\.LOGGING"):
        h.register_handler(EffectType.LOGGING, "print")  # type: ignore[arg-type]

    assert h(Effect(EffectType.LOGGING)) is None


def test_handle_performs_one_effect_and_returns_its_result(
    handler: EffectHandler, recorder: Recorder
) -> None:
    assert handler.handle(write({"id": 1})) == ("rec", {"id": 1})
    assert recorder.effects == [write({"id": 1})]


def test_handle_performs_library_intents(handler: EffectHandler) -> None:
    assert handler.handle(fx.Func(lambda: "computed")) == "computed"


def test_handle_refuses_an_unknown_type_without_performing(recorder: Recorder) -> None:
    h = EffectHandler()
    h.register_handler(EffectType.DATABASE_WRITE, recorder)
    unknown = Effect(Mail.SEND, "x")

    with pytest.raises(UnhandledEffectError, match=r"Mail\.SEND") as excinfo:
        h.handle(unknown)

    assert excinfo.value.effects == (unknown,)
    assert recorder.log == []


def test_handle_propagates_a_performers_exception() -> None:
    boom = ValueError("bad payload")

    def failing(effect: Effect) -> None:
        raise boom

    h = EffectHandler()
    h.register_handler(EffectType.FILE_OPERATION, failing)

    with pytest.raises(ValueError, match="bad payload") as excinfo:
        h.handle(Effect(EffectType.FILE_OPERATION))
    assert excinfo.value is boom


def test_temporal_store_and_event_bus_are_kept() -> None:
    store, bus = object(), EventBus()

    h = EffectHandler(temporal_store=store, event_bus=bus)

    assert h.temporal_store is store
    assert h.event_bus is bus
    assert EffectHandler().temporal_store is None
    assert EffectHandler().event_bus is None


def test_performers_can_reach_the_handlers_collaborators() -> None:
    bus = EventBus()
    h = EffectHandler(event_bus=bus)
    h.register_handler(
        EffectType.NOTIFICATION,
        lambda effect: h.event_bus.publish(Mail.SEND, effect.payload),
    )

    EffectMonad.pure(None).with_effect(Effect(EffectType.NOTIFICATION, "hi")).run(h)

    assert [e.data for e in bus.get_history(Mail.SEND)] == ["hi"]


def test_run_with_an_effect_library_dispatcher_performs_through_it() -> None:
    performed: list[Effect] = []
    handler = EffectHandler()
    handler.register_handler(EffectType.LOGGING, performed.append)
    composed = fx.ComposedDispatcher([handler, fx.base_dispatcher])
    monad = EffectMonad.pure("v").with_effect(Effect(EffectType.LOGGING, 1))

    assert monad.run(composed) == "v"
    assert [e.payload for e in performed] == [1]

    with pytest.raises(UnhandledEffectError, match=r"EffectType\.NOTIFICATION"):
        monad.with_effect(Effect(EffectType.NOTIFICATION)).run(composed)
    assert len(performed) == 1  # checked before performing any


# -- the direct path performs exactly as effect's trampoline does -------------------------


def _outcome(perform: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", perform())
    except Exception as exc:
        return ("error", (type(exc), str(exc)))


@given(
    st.lists(
        st.tuples(st.sampled_from(list(EffectType)), st.integers(), st.booleans()),
        max_size=8,
    )
)
def test_direct_path_gives_what_sync_perform_through_the_dispatcher_gives(
    steps: list[tuple[EffectType, int, bool]],
) -> None:
    from atlas_eda.effects import effect_observer

    def make() -> EffectHandler:
        handler = EffectHandler()
        for effect_type in EffectType:

            def perform(effect: Effect) -> Any:
                if effect.payload[1]:
                    raise ValueError(f"refused {effect.payload[0]}")
                return (effect.type.name, effect.payload[0] * 2)

            handler.register_handler(effect_type, perform)
        return handler

    direct, slow = make(), make()
    seen: dict[str, list[Any]] = {"direct": [], "slow": []}
    for name, handler in (("direct", direct), ("slow", slow)):
        token = effect_observer.set(
            lambda e, r, x, log=seen[name]: log.append((e, r, None if x is None else str(x)))
        )
        try:
            results = []
            for effect_type, number, fails in steps:
                effect = Effect(effect_type, (number, fails))
                if handler is direct:
                    results.append(_outcome(functools.partial(handler.handle, effect)))
                else:
                    results.append(
                        _outcome(
                            functools.partial(
                                fx.sync_perform, handler.dispatcher, fx.Effect(effect)
                            )
                        )
                    )
            seen[name].append(results)
        finally:
            effect_observer.reset(token)
    assert seen["direct"] == seen["slow"]


def test_a_subclass_that_changes_lookup_keeps_the_librarys_path() -> None:
    class Renamed(EffectHandler):
        def __call__(self, intent: object) -> Any:
            performer = super().__call__(intent)
            if isinstance(intent, Effect) and intent.type is EffectType.LOGGING:
                return fx.sync_performer(lambda dispatcher, i: "from the subclass")
            return performer

    handler = Renamed()
    handler.register_handler(EffectType.LOGGING, lambda effect: "registered")
    assert handler.handle(Effect(EffectType.LOGGING)) == "from the subclass"
    assert EffectMonad.pure(1).with_effect(Effect(EffectType.LOGGING)).run(handler) == 1


def test_a_stub_in_force_is_used_by_the_direct_path_too() -> None:
    from atlas_eda.effects import effect_stub

    handler = EffectHandler()
    handler.register_handler(EffectType.LOGGING, lambda effect: "real")
    token = effect_stub.set(
        lambda intent: (
            fx.sync_performer(lambda dispatcher, effect: "stubbed")
            if isinstance(intent, Effect)
            else None
        )
    )
    try:
        assert handler.handle(Effect(EffectType.LOGGING)) == "stubbed"
    finally:
        effect_stub.reset(token)
    assert handler.handle(Effect(EffectType.LOGGING)) == "real"


def test_known_outcomes_settle_on_the_direct_path_as_the_trampoline_performs_them() -> None:
    from atlas_eda.effects import KnownOutcome, effect_observer, effect_stub

    class Refused(Exception):
        pass

    handler = EffectHandler()
    ok = Effect(EffectType.DATABASE_READ, 1)
    failing = Effect(EffectType.DATABASE_WRITE, 2)
    table = {ok: KnownOutcome({"read": 1}), failing: KnownOutcome(error=lambda: Refused("no"))}
    runs: list[list[Any]] = []
    for perform in (
        handler._perform,  # settled without a box
        lambda i: fx.sync_perform(handler.dispatcher, fx.Effect(i)),  # a box, filled
    ):
        told: list[Any] = []
        stub_token = effect_stub.set(table.get)
        observer_token = effect_observer.set(lambda e, r, x, t=told: t.append((e, r, repr(x))))
        try:
            outcomes = [_outcome(functools.partial(perform, i)) for i in (ok, failing, failing)]
        finally:
            effect_observer.reset(observer_token)
            effect_stub.reset(stub_token)
        runs.append([outcomes, told])
    assert runs[0] == runs[1]
    assert runs[0][0] == [("ok", {"read": 1}), *[("error", (Refused, "no"))] * 2]
    assert [entry[0] for entry in runs[0][1]] == [ok, failing, failing]


def test_under_a_stub_the_direct_path_matches_the_trampoline() -> None:
    from atlas_eda.effects import effect_observer, effect_stub

    handler = EffectHandler()
    handler.register_handler(EffectType.LOGGING, lambda effect: "registered")
    stubbed = Effect(EffectType.DATABASE_READ, 1)
    failing = Effect(EffectType.DATABASE_WRITE, 2)
    chained = Effect(EffectType.NOTIFICATION, 3)

    def make_stub() -> Callable[[object], Any]:
        table = {
            stubbed: fx.sync_performer(lambda d, i: {"read": i.payload}),
            failing: fx.sync_performer(lambda d, i: (_ for _ in ()).throw(OSError("disk"))),
            # a performer may hand on another effect, performed with the same dispatcher
            chained: fx.sync_performer(lambda d, i: fx.Effect(Effect(EffectType.LOGGING))),
        }
        return lambda intent: table.get(intent) if isinstance(intent, Effect) else None

    unknown = Effect(EffectType.FILE_OPERATION)
    intents = [stubbed, failing, chained, Effect(EffectType.LOGGING), unknown]
    runs: list[list[Any]] = []
    # The direct path (what handle() and EffectMonad.run use after their checks) and the
    # trampoline through the handler's dispatcher.
    for perform in (
        handler._perform,
        lambda i: fx.sync_perform(handler.dispatcher, fx.Effect(i)),
    ):
        told: list[Any] = []
        stub_token = effect_stub.set(make_stub())
        observer_token = effect_observer.set(lambda e, r, x, t=told: t.append((e, r, repr(x))))
        try:
            outcomes = [_outcome(functools.partial(perform, intent)) for intent in intents]
        finally:
            effect_observer.reset(observer_token)
            effect_stub.reset(stub_token)
        runs.append([outcomes, told])
    assert runs[0] == runs[1]
    outcomes = runs[0][0]
    assert outcomes[0] == ("ok", {"read": 1})
    assert outcomes[1] == ("error", (OSError, "disk"))
    assert outcomes[2] == ("ok", "registered")
    assert outcomes[4][0] == "error"
