"""The declared event graph (issue 17 part 3): declarations on subscribe and handle, the
graph they make (commands included, graph sources for sagas), every cycle found before
anything runs (compared with a brute-force search on generated graphs), allowed loops
bounded by max_depth, the run-time check of undeclared emits, Mermaid, SVG, the CLI, and
bad input refused at registration."""

from __future__ import annotations

import contextvars
import gc
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_eda import (
    CommandType,
    Event,
    EventBus,
    EventCycleError,
    EventGraph,
    EventType,
    GraphCycle,
    GraphCycleError,
    GraphHandler,
    InvalidArgumentError,
    QueryType,
    UndeclaredEmitError,
    UndeclaredEmitWarning,
)

ROOT = Path(__file__).resolve().parent.parent


class Flow(Enum):
    A = "a"
    B = "b"
    C = "c"
    D = "d"


class Do(CommandType):
    WORK = "work"


class Ask(QueryType):
    COUNT = "count"


def noop(event: Event) -> None:
    """A handler that does nothing."""


def other(event: Event) -> None:
    """Another handler that does nothing."""


def work(message: Event) -> None:
    """A command handler that does nothing."""


def count(message: Event) -> int:
    """A query handler."""
    return 0


# -- declarations and the graph --------------------------------------------------------------


def test_the_graph_holds_types_handlers_and_declared_emits_commands_included() -> None:
    bus = EventBus()
    bus.subscribe(Flow.A, noop, emits=(Flow.B, Do.WORK))
    bus.subscribe(Flow.B, other)  # declares nothing
    bus.handle(Do.WORK, work, emits=(Flow.C,))
    bus.handle(Ask.COUNT, count, emits=())
    bus.subscribe_all(noop)  # receives everything: not in the graph
    graph = bus.graph()
    assert graph.types == (Flow.A, Flow.B, Do.WORK, Flow.C, Ask.COUNT)
    assert [(h.receives, h.name, h.emits, h.kind) for h in graph.handlers] == [
        (Flow.A, "noop", (Flow.B, Do.WORK), "subscriber"),
        (Flow.B, "other", None, "subscriber"),
        (Do.WORK, "work", (Flow.C,), "command"),
        (Ask.COUNT, "count", (), "query"),
    ]
    first, second, command, query = graph.handlers
    assert graph.nodes == (*graph.types, *graph.handlers)
    assert graph.edges == (
        (Flow.A, first),
        (first, Flow.B),
        (first, Do.WORK),
        (Flow.B, second),
        (Do.WORK, command),
        (command, Flow.C),
        (Ask.COUNT, query),
    )
    assert [graph.kind(t) for t in graph.types] == ["event", "event", "command", "event", "query"]
    assert graph.cycles() == []
    bus.check()  # acyclic: nothing raised


def test_unsubscribing_and_removing_take_handlers_out_of_the_graph() -> None:
    bus = EventBus()
    unsubscribe = bus.subscribe(Flow.A, noop, emits=(Flow.B,))
    remove = bus.handle(Do.WORK, noop, emits=(Flow.A,))
    assert len(bus.graph().handlers) == 2
    unsubscribe()
    remove()
    assert bus.graph().handlers == ()
    assert repr(bus.graph()) == "EventGraph(types=0, handlers=0)"


def test_a_graph_source_adds_its_handlers_and_their_cycles() -> None:
    bus = EventBus()
    bus.subscribe(Flow.A, noop, emits=(Do.WORK,))
    steps = [GraphHandler(Do.WORK, "OrderSaga.charged", (Flow.A,), kind="saga")]
    remove = bus.add_graph_source(lambda: steps)
    graph = bus.graph()
    assert graph.handlers[-1] == steps[0]
    with pytest.raises(GraphCycleError) as raised:
        bus.check()
    assert "Flow.A → Do.WORK → Flow.A (handlers: noop, OrderSaga.charged)" in str(raised.value)
    remove()
    remove()  # again: nothing
    bus.check()
    assert len(bus.graph().handlers) == 1


def test_a_graph_source_that_yields_something_else_is_named() -> None:
    bus = EventBus()
    bus.add_graph_source(lambda: ["not a handler"])
    with pytest.raises(InvalidArgumentError, match="yielded 'not a handler'"):
        bus.graph()
    with pytest.raises(InvalidArgumentError, match="must be callable"):
        bus.add_graph_source("nope")  # type: ignore[arg-type]


# -- cycles --------------------------------------------------------------------------------


def test_check_names_every_cycle_with_its_handlers() -> None:
    bus = EventBus()

    def ping(event: Event) -> None:
        bus.publish(Flow.B)

    def pong(event: Event) -> None:
        bus.publish(Flow.A)

    bus.subscribe(Flow.A, ping, emits=(Flow.B,))
    bus.subscribe(Flow.B, pong, emits=(Flow.A, Flow.C))
    bus.subscribe(Flow.C, noop, emits=(Flow.C,))  # publishes its own type
    with pytest.raises(EventCycleError) as raised:
        bus.check()
    error = raised.value
    assert isinstance(error, GraphCycleError)
    assert [str(cycle) for cycle in error.cycles] == [
        "Flow.A → Flow.B → Flow.A (handlers: test_check_names_every_cycle_with_its_handlers"
        ".<locals>.ping, test_check_names_every_cycle_with_its_handlers.<locals>.pong)",
        "Flow.C → Flow.C (handlers: noop)",
    ]
    assert error.chain == ("Flow.A", "Flow.B", "Flow.A")
    assert "2 cycle(s)" in str(error)
    assert bus.get_history() == []  # nothing was published by the check


def test_two_handlers_on_the_same_loop_make_two_cycles() -> None:
    graph = EventGraph(
        [
            GraphHandler(Flow.A, "first", (Flow.B,)),
            GraphHandler(Flow.A, "second", (Flow.B,)),
            GraphHandler(Flow.B, "back", (Flow.A,)),
        ]
    )
    assert [[h.name for h in cycle.handlers] for cycle in graph.cycles()] == [
        ["first", "back"],
        ["second", "back"],
    ]


def test_an_allowed_loop_passes_the_check_and_is_bounded_by_max_depth() -> None:
    bus = EventBus(max_depth=6)
    calls: list[Flow] = []

    def ping(event: Event) -> None:
        calls.append(Flow.A)
        bus.publish(Flow.B)

    def pong(event: Event) -> None:
        calls.append(Flow.B)
        bus.publish(Flow.A)

    bus.subscribe(Flow.A, ping, emits=(Flow.B,), allow_cycle=True)
    bus.subscribe(Flow.B, pong, emits=(Flow.A,))
    bus.check()
    (cycle,) = bus.graph().cycles()
    assert cycle.allowed
    assert str(cycle).endswith("[allowed]")
    with pytest.raises(EventCycleError, match="max_depth=6"):
        bus.publish(Flow.A)
    assert len(calls) == 6


def test_allow_cycle_on_one_emitted_type_allows_only_the_loops_through_it() -> None:
    graph = EventGraph(
        [
            GraphHandler(Flow.A, "fork", (Flow.B, Flow.C), allow_cycle=(Flow.B,)),
            GraphHandler(Flow.B, "b", (Flow.A,)),
            GraphHandler(Flow.C, "c", (Flow.A,)),
        ]
    )
    assert [(str(c.types), c.allowed) for c in graph.cycles()] == [
        (str((Flow.A, Flow.B)), True),
        (str((Flow.A, Flow.C)), False),
    ]
    with pytest.raises(GraphCycleError, match="1 cycle") as raised:
        graph.check()
    assert [cycle.types for cycle in raised.value.cycles] == [(Flow.A, Flow.C)]


def test_the_message_lists_a_bounded_number_of_cycles() -> None:
    # A complete graph on 6 types has hundreds of elementary cycles.
    types = list(Flow) + list(EventType)[:2]
    handlers = [
        GraphHandler(t, f"h{i}", tuple(u for u in types if u is not t)) for i, t in enumerate(types)
    ]
    graph = EventGraph(handlers)
    with pytest.raises(GraphCycleError) as raised:
        graph.check()
    assert len(raised.value.cycles) == 409
    assert "and 389 more (bus.graph().cycles() lists them all)" in str(raised.value)


def brute_force_cycles(graph: EventGraph) -> list[tuple[tuple[Enum, str], ...]]:
    """Every elementary cycle by plain depth-first search from each type over paths whose
    other types come later in ``graph.types``: each cycle once, from its first type."""
    order = {t: i for i, t in enumerate(graph.types)}
    found: list[tuple[tuple[Enum, str], ...]] = []

    def walk(start: Enum, path: list[tuple[Enum, str]], current: Enum) -> None:
        for handler in graph.handlers:
            if handler.receives is not current:
                continue
            for following in handler.emits or ():
                step = [*path, (current, handler.name)]
                if following is start:
                    found.append(tuple(step))
                elif order[following] > order[start] and all(following is not t for t, _ in step):
                    walk(start, step, following)

    for start in graph.types:
        walk(start, [], start)
    return found


class Node(Enum):
    N0 = 0
    N1 = 1
    N2 = 2
    N3 = 3
    N4 = 4
    N5 = 5


handler_specs = st.lists(
    st.tuples(
        st.sampled_from(list(Node)),
        st.one_of(st.none(), st.lists(st.sampled_from(list(Node)), max_size=4)),
    ),
    max_size=9,
)


@settings(max_examples=300, deadline=None)
@given(handler_specs)
def test_every_cycle_is_found_as_a_brute_force_search_finds_it(
    specs: list[tuple[Node, list[Node] | None]],
) -> None:
    handlers = [
        GraphHandler(receives, f"h{i}", None if emits is None else tuple(dict.fromkeys(emits)))
        for i, (receives, emits) in enumerate(specs)
    ]
    graph = EventGraph(handlers)
    found = [tuple((t, h.name) for t, h in cycle.steps) for cycle in graph.cycles()]
    assert sorted(found, key=repr) == sorted(brute_force_cycles(graph), key=repr)
    assert len(set(found)) == len(found)  # each once
    assert graph.is_acyclic() == (found == [])


@settings(max_examples=50, deadline=None)
@given(handler_specs)
def test_a_bus_graph_is_the_graph_of_its_declarations(
    specs: list[tuple[Node, list[Node] | None]],
) -> None:
    bus = EventBus()
    expected = []
    for i, (receives, emits) in enumerate(specs):

        def handler(event: Event) -> None:
            """One generated handler."""

        handler.__qualname__ = f"h{i}"
        declared = None if emits is None else tuple(dict.fromkeys(emits))
        try:
            bus.subscribe(receives, handler, emits=declared)
        except Exception:
            pytest.fail(f"subscribe({receives}, emits={declared}) raised")
        expected.append((receives, f"h{i}", declared))
    got = {(h.receives, h.name, h.emits) for h in bus.graph().handlers}
    assert got == set(expected)
    cycles = bus.graph().cycles()
    if cycles:
        with pytest.raises(GraphCycleError):
            bus.check()
    else:
        bus.check()


# -- the run-time check -------------------------------------------------------------------------


def test_an_undeclared_publish_is_warned_about_once_per_handler_and_type() -> None:
    bus = EventBus()
    seen: list[Flow] = []

    def sloppy(event: Event) -> None:
        bus.publish(Flow.B)  # declared
        bus.publish(Flow.C)  # not declared
        bus.publish(Flow.D)  # not declared

    bus.subscribe(Flow.A, sloppy, emits=(Flow.B,))
    bus.subscribe(Flow.C, lambda event: seen.append(event.type))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bus.publish(Flow.A)
        bus.publish(Flow.A)
    messages = [str(w.message) for w in caught if issubclass(w.category, UndeclaredEmitWarning)]
    assert len(messages) == 2
    name = "test_an_undeclared_publish_is_warned_about_once_per_handler_and_type.<locals>.sloppy"
    assert messages[0] == (
        f"Handler {name} of Flow.A published Flow.C, which it did not declare (emits: Flow.B). "
        f"Add Flow.C to its emits=, or make it stop."
    )
    assert all(w.filename == __file__ for w in caught)  # points at the handler's publish
    assert seen == [Flow.C, Flow.C]  # the publish happened: a warning, not an error


def test_strict_graph_refuses_an_undeclared_publish_and_send_with_nothing_done() -> None:
    bus = EventBus(strict_graph=True)
    assert bus.strict_graph
    sent: list[object] = []
    bus.handle(Do.WORK, sent.append)

    def publishes(event: Event) -> None:
        bus.publish(Flow.C)

    def sends(event: Event) -> None:
        bus.send(Do.WORK, "x")

    bus.subscribe(Flow.A, publishes, emits=(Flow.B,))
    bus.subscribe(Flow.B, sends, emits=())
    with pytest.raises(UndeclaredEmitError, match=r"published Flow\.C.*Nothing was published"):
        bus.publish(Flow.A)
    with pytest.raises(UndeclaredEmitError, match=r"sent Do\.WORK.*emits: nothing"):
        bus.publish(Flow.B)
    assert [event.type for event in bus.get_history(limit=None)] == [Flow.B, Flow.A]
    assert sent == []


def test_work_a_declaring_handler_hands_on_with_its_context_is_checked_too() -> None:
    """A strict bus refuses an undeclared publish made by work the declaring handler hands
    to a thread pool through contextvars.copy_context(), as if the handler made it."""
    bus = EventBus(strict_graph=True)
    with ThreadPoolExecutor(max_workers=1) as pool:

        def hands_on(event: Event) -> None:
            context = contextvars.copy_context()
            pool.submit(context.run, bus.publish, Flow.C).result(60)

        bus.subscribe(Flow.A, hands_on, emits=(Flow.B,))
        with pytest.raises(UndeclaredEmitError, match=r"published Flow\.C"):
            bus.publish(Flow.A)
    assert bus.get_history(Flow.C) == []


def test_a_command_handler_is_checked_for_what_it_publishes() -> None:
    bus = EventBus(strict_graph=True)
    bus.handle(Do.WORK, lambda message: bus.publish(Flow.D), emits=(Flow.A,))
    with pytest.raises(UndeclaredEmitError, match=r"of Do\.WORK published Flow\.D"):
        bus.send(Do.WORK)


def test_only_the_handler_running_is_checked() -> None:
    bus = EventBus(strict_graph=True)
    # The declaring handler publishes B; B's handler declares nothing and publishes C:
    # C is B's handler's doing, not the declaring one's.
    bus.subscribe(Flow.A, lambda event: bus.publish(Flow.B), emits=(Flow.B,))
    bus.subscribe(Flow.B, lambda event: bus.publish(Flow.C))
    bus.subscribe(Flow.C, noop, emits=())  # declares it emits nothing, and emits nothing
    bus.publish(Flow.A)
    # Another bus's publish inside a declaring handler is that bus's business.
    elsewhere = EventBus()
    bus.subscribe(Flow.D, lambda event: elsewhere.publish(Flow.C), emits=())
    bus.publish(Flow.D)
    assert [event.type for event in elsewhere.get_history()] == [Flow.C]
    # A handler that declared nothing is not checked, also on a bus that checks others.
    bus.subscribe_all(lambda event: None)
    assert len(bus.get_history(limit=None)) == 4


def test_a_declaring_handler_that_fails_is_reported_under_its_own_name() -> None:
    bus = EventBus(failure_policy="dead_letter")

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe(Flow.A, broken, emits=(), weak=False)
    bus.publish(Flow.A)
    (error,) = bus.get_history(EventType.ERROR)
    assert error.data["handler"].endswith("broken")
    (letter,) = bus.dead_letters
    assert letter.handler is broken


def test_a_weak_declaring_handler_is_checked_and_goes_away() -> None:
    bus = EventBus()

    class Holder:
        def handle(self, event: Event) -> None:
            bus.publish(Flow.C)

    holder = Holder()
    bus.subscribe(Flow.A, holder.handle, weak=True, emits=(Flow.B,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bus.publish(Flow.A)
    assert [w.category for w in caught] == [UndeclaredEmitWarning]
    assert len(bus.graph().handlers) == 1
    del holder
    gc.collect()
    bus.publish(Flow.A)  # collected: nothing delivered
    assert bus.graph().handlers == ()


def test_subscribing_again_with_other_emits_uses_the_new_declaration() -> None:
    bus = EventBus(strict_graph=True)

    def handler(event: Event) -> None:
        bus.publish(Flow.C)

    unsubscribe = bus.subscribe(Flow.A, handler, emits=(Flow.B,))
    with pytest.raises(UndeclaredEmitError):
        bus.publish(Flow.A)
    unsubscribe()
    bus.subscribe(Flow.A, handler, emits=(Flow.C,))
    bus.publish(Flow.A)
    assert bus.graph().handlers[0].emits == (Flow.C,)


# -- rendering ----------------------------------------------------------------------------


def test_mermaid_text() -> None:
    bus = EventBus()
    bus.subscribe(Flow.A, noop, emits=(Do.WORK,), allow_cycle=True)
    bus.subscribe(Flow.B, lambda event: None)
    bus.handle(Do.WORK, work, emits=(Flow.A,))
    bus.handle(Ask.COUNT, count)
    assert bus.graph().to_mermaid() == (
        "flowchart LR\n"
        '    t0(["Flow.A"])\n'
        '    t1[/"Do.WORK"/]\n'
        '    t2(["Flow.B"])\n'
        '    t3{{"Ask.COUNT"}}\n'
        '    h0["noop"]\n'
        '    h1["test_mermaid_text.#lt;locals#gt;.#lt;lambda#gt;"]\n'
        '    h2["work (command)"]\n'
        '    h3["count (query)"]\n'
        "    t0 --> h0\n"
        "    h0 -.->|allowed loop| t1\n"
        "    t2 --> h1\n"
        "    t1 --> h2\n"
        "    h2 --> t0\n"
        "    t3 --> h3\n"
        "    classDef undeclared stroke-dasharray: 4 4\n"
        "    class h1,h3 undeclared\n"
    )


def test_text_lists_types_handlers_and_cycles() -> None:
    graph = EventGraph(
        [
            GraphHandler(Flow.A, "ping", (Flow.B,), allow_cycle=(Flow.B,)),
            GraphHandler(Flow.B, "pong", (Flow.A,)),
            GraphHandler(Flow.C, "quiet", ()),
            GraphHandler(Flow.D, "unknown"),
        ]
    )
    assert graph.to_text() == (
        "event Flow.A\n"
        "  → ping: emits: Flow.B (loop allowed through Flow.B)\n"
        "event Flow.B\n"
        "  → pong: emits: Flow.A\n"
        "event Flow.C\n"
        "  → quiet: emits: nothing\n"
        "event Flow.D\n"
        "  → unknown: emits: not declared\n"
        "cycles: 1\n"
        "  Flow.A → Flow.B → Flow.A (handlers: ping, pong) [allowed]\n"
    )


def test_svg_is_well_formed_and_draws_every_node_and_edge() -> None:
    graph = EventGraph(
        [
            GraphHandler(Flow.A, "<lambda> & 'co'", (Flow.B, Do.WORK)),
            GraphHandler(Flow.B, "back", (Flow.A,), allow_cycle=(Flow.A,)),
            GraphHandler(
                Do.WORK, "a_handler_with_a_name_far_too_long_to_fit", None, kind="command"
            ),
        ]
    )
    svg = graph._repr_svg_()
    assert svg == graph.to_svg()
    root = ElementTree.fromstring(svg)  # well-formed XML, or this raises
    namespace = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{namespace}svg"
    texts = [t.text for t in root.iter(f"{namespace}text")]
    assert texts == [
        "Flow.A",
        "Flow.B",
        "Do.WORK",
        "<lambda> & 'co'",
        "back",
        "a_handler_with_a_name_far…",
    ]
    titles = [t.text for t in root.iter(f"{namespace}title")]
    assert "command a_handler_with_a_name_far_too_long_to_fit" in titles
    assert len(list(root.iter(f"{namespace}rect"))) == len(graph.nodes)
    assert len(root.findall(f"{namespace}path")) == len(graph.edges)
    assert svg.count('stroke-dasharray="5 3"') == 1  # the one allowed loop edge
    assert svg.count('stroke-dasharray="4 3"') == 1  # the one handler that declared nothing


def test_an_empty_graph_draws() -> None:
    ElementTree.fromstring(EventGraph([]).to_svg())
    assert EventGraph([]).to_mermaid() == "flowchart LR\n"
    assert EventGraph([]).to_text() == "cycles: none\n"


# -- the command line -------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atlas_eda.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_cli_prints_the_graph_of_an_app() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from examples.graph import make_system
    finally:
        sys.path.remove(str(ROOT))
    mermaid = run_cli("graph", "--app", "examples.graph:make_system")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout == make_system().bus.graph().to_mermaid()
    text = run_cli("graph", "--app", "examples.graph:make_system", "--format", "text")
    assert text.returncode == 0, text.stderr
    assert text.stdout == make_system().bus.graph().to_text()
    assert "command Billing.CHARGE\n  → OrderFlow.charge (command)" in text.stdout


def test_cli_errors_are_one_line_and_exit_2() -> None:
    missing = run_cli("graph", "--app", "examples.graph:nothing")
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        "atlas-eda: error: --app 'examples.graph:nothing': module 'examples.graph' has no "
        "'nothing'."
    ]
    bad_format = run_cli("graph", "--app", "examples.graph:make_system", "--format", "dot")
    assert bad_format.returncode == 2
    assert len(bad_format.stderr.splitlines()) == 1
    assert "invalid choice: 'dot'" in bad_format.stderr


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("emits", "allow_cycle", "message"),
    [
        (Flow.B, False, r"emits for Flow.A must be an iterable of Enum members, got <Flow.B"),
        ("B", False, "must be an iterable of Enum members, got 'B'"),
        (Flow, False, "must be an iterable of Enum members"),
        (42, False, "must be an iterable of Enum members \\(e.g. a tuple\\), got 42 of type int"),
        (("B",), False, "names 'B' of type str, not a message type"),
        ((Ask.COUNT,), False, "names the query Ask.COUNT: a query is asked, not emitted"),
        (None, True, "allow_cycle=True for Flow.A without emits="),
        ((Flow.B,), "yes", "allow_cycle for Flow.A must be an iterable of Enum members"),
        ((Flow.B,), (Flow.C,), "names Flow.C, which its emits do not declare"),
        ((), True, "with emits=\\(\\): a handler that emits nothing closes no loop"),
    ],
)
def test_a_bad_declaration_is_refused_at_registration_with_nothing_registered(
    emits: object, allow_cycle: object, message: str
) -> None:
    bus = EventBus()
    with pytest.raises(InvalidArgumentError, match=message):
        bus.subscribe(Flow.A, noop, emits=emits, allow_cycle=allow_cycle)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        bus.handle(Do.WORK, noop, emits=emits, allow_cycle=allow_cycle)  # type: ignore[arg-type]
    assert bus.graph().handlers == ()
    bus.publish(Flow.A)  # nothing subscribed, nothing checked


def test_other_bad_graph_input_is_refused() -> None:
    bus = EventBus()
    with pytest.raises(InvalidArgumentError, match=r"Ask\.COUNT is a query: its handler may not"):
        bus.handle(Ask.COUNT, noop, emits=(Flow.A,))
    assert len(bus.requests) == 0
    with pytest.raises(InvalidArgumentError, match="strict_graph must be True or False"):
        EventBus(strict_graph="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="receives an Enum member"):
        GraphHandler("A", "h")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="emits must be a tuple of Enum members"):
        GraphHandler(Flow.A, "h", [Flow.B])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="allow_cycle must be a subset of emits"):
        GraphHandler(Flow.A, "h", (Flow.B,), allow_cycle=(Flow.C,))


def test_duplicate_emits_are_kept_once_in_order() -> None:
    bus = EventBus()
    bus.subscribe(Flow.A, noop, emits=[Flow.C, Flow.B, Flow.C])
    assert bus.graph().handlers[0].emits == (Flow.C, Flow.B)


def test_graph_cycle_properties() -> None:
    ping = GraphHandler(Flow.A, "ping", (Flow.B,))
    pong = GraphHandler(Flow.B, "pong", (Flow.A,))
    cycle = GraphCycle(((Flow.A, ping), (Flow.B, pong)))
    assert cycle.types == (Flow.A, Flow.B)
    assert cycle.handlers == (ping, pong)
    assert not cycle.allowed
