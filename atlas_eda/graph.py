"""The declared event graph (``bus.graph()``): message types → the handlers that receive
them → the types those declared they emit (``emits=``, see :mod:`atlas_eda.emits`), its
cycles found before anything runs (``bus.check()``), and its drawings (Mermaid, text, SVG).

A handler declares with ``bus.subscribe(type, handler, emits=(...))`` or
``bus.handle(type, handler, emits=(...))``; ``emits=None`` (the default) declares nothing
(the handler is in the graph with no outgoing edges, and nothing it does is checked),
``emits=()`` declares that it emits nothing. ``allow_cycle=True`` (or a subset of its
``emits``) says that a loop through that handler is intended: :meth:`EventGraph.check`
then lets every cycle through one of those edges pass, and the bus's ``max_depth`` bounds
it at run time as it bounds any nesting.

"Every cycle" means every *elementary* cycle of the graph of types and handlers: a closed
walk that visits no type twice. Two handlers of the same type emitting the same next type
make two cycles (each names its handlers). :meth:`EventGraph.cycles` lists them all:
``graphlib.TopologicalSorter`` first proves most graphs acyclic in linear time; only when
it reports a ``CycleError`` are the cycles enumerated, by Johnson's algorithm over the
strongly connected components (time linear in the size of the graph per cycle found; a
graph can hold exponentially many cycles, so :meth:`EventGraph.check`'s message names the
first :data:`MAX_LISTED`).

Graph sources (``bus.add_graph_source``) add handlers the bus does not register itself (a
saga manager's steps): each is called by ``bus.graph()`` and yields :class:`GraphHandler`
nodes."""

from __future__ import annotations

import graphlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any
from xml.sax.saxutils import escape

from .commands import request_kind
from .emits import Declaration
from .errors import GraphCycleError, InvalidArgumentError
from .events import type_name
from .trace import qualified_name
from .views import short_repr

__all__ = ["MAX_LISTED", "EventGraph", "GraphCycle", "GraphHandler", "GraphSource", "graph_from"]

MAX_LISTED = 20
"""How many cycles :class:`GraphCycleError`'s message names (``cycles`` holds them all)."""


def _kind(message_type: Enum) -> str:
    """``"event"``, ``"command"`` or ``"query"``."""
    return request_kind(message_type) or "event"


# -- the graph -------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphHandler:
    """A handler in an :class:`EventGraph`: the type it ``receives``, its ``name``, what it
    ``emits`` (``None`` when it declared nothing: no outgoing edges), the emitted types
    through which a loop is intended (``allow_cycle``), and its ``kind``
    (``"subscriber"``, ``"command"``, ``"query"``, or what a graph source calls it,
    e.g. ``"saga"``). A graph source (``bus.add_graph_source``) yields these."""

    receives: Enum
    name: str
    emits: tuple[Enum, ...] | None = None
    allow_cycle: tuple[Enum, ...] = ()
    kind: str = "subscriber"

    def __post_init__(self) -> None:
        if not isinstance(self.receives, Enum):
            raise InvalidArgumentError(
                f"A GraphHandler receives an Enum member, got {short_repr(self.receives)}."
            )
        for field, value in (("emits", self.emits or ()), ("allow_cycle", self.allow_cycle)):
            if type(value) is not tuple or not all(isinstance(i, Enum) for i in value):
                raise InvalidArgumentError(
                    f"GraphHandler {self.name!r}: {field} must be a tuple of Enum members, "
                    f"got {short_repr(value)}."
                )
        if any(item not in (self.emits or ()) for item in self.allow_cycle):
            raise InvalidArgumentError(
                f"GraphHandler {self.name!r}: allow_cycle must be a subset of emits."
            )

    @classmethod
    def of(cls, declaration: Declaration | None, receives: Enum, name: str, kind: str) -> Any:
        """The node of a registration (internal): ``declaration`` is what it declared. A
        declaration keeps its node: ``bus.check()`` at start-up meets thousands."""
        if declaration is None:
            return cls(receives, name, None, (), kind)
        node = declaration.node
        if node is None or node.kind != kind:
            node = declaration.node = cls(
                receives, name, declaration.emits, declaration.allow_cycle, kind
            )
        return node


GraphSource = Callable[[], Iterable[GraphHandler]]
"""Something that adds handlers to a bus's graph (``bus.add_graph_source``): called by
each ``bus.graph()``, it yields a :class:`GraphHandler` per handler it runs (a saga
manager: one per step)."""


@dataclass(frozen=True)
class GraphCycle:
    """One elementary cycle of an :class:`EventGraph`: ``steps`` holds each type on it and
    the handler of that type that emits the next one (the last step's handler emits the
    first type again). It starts at the type of the graph that comes first."""

    steps: tuple[tuple[Enum, GraphHandler], ...]

    @property
    def types(self) -> tuple[Enum, ...]:
        """The types on the cycle, in order (the first not repeated at the end)."""
        return tuple(step[0] for step in self.steps)

    @property
    def handlers(self) -> tuple[GraphHandler, ...]:
        """The handlers on the cycle, in order."""
        return tuple(step[1] for step in self.steps)

    @property
    def allowed(self) -> bool:
        """Whether a handler on it declared the loop (its next type is in its
        ``allow_cycle``)."""
        count = len(self.steps)
        return any(
            self.steps[(index + 1) % count][0] in handler.allow_cycle
            for index, (_, handler) in enumerate(self.steps)
        )

    def __str__(self) -> str:
        chain = " → ".join(type_name(item) for item in (*self.types, self.types[0]))
        names = ", ".join(handler.name for handler in self.handlers)
        return f"{chain} (handlers: {names})" + (" [allowed]" if self.allowed else "")


Node = Enum | GraphHandler
"""A node of an :class:`EventGraph`: a message type or a handler."""


class EventGraph:
    """The declared graph of a bus (``bus.graph()``): message types → the handlers that
    receive them → the types those declared they emit. Immutable; built from the
    handlers, in registration order."""

    def __init__(self, handlers: Iterable[GraphHandler]) -> None:
        self._handlers = tuple(handlers)
        # Types numbered in the order first met, keyed by id(): an Enum member's hash is
        # Python code, and bus.check() numbers thousands of them (benchmarks/graph.py).
        numbers: dict[int, int] = {}
        types: list[Enum] = []
        receives: list[int] = []
        emits: list[list[int]] = []
        number = numbers.get
        for handler in self._handlers:
            item = handler.receives
            found = number(id(item))
            if found is None:
                found = numbers[id(item)] = len(types)
                types.append(item)
            receives.append(found)
            row = []
            for item in handler.emits or ():
                found = number(id(item))
                if found is None:
                    found = numbers[id(item)] = len(types)
                    types.append(item)
                row.append(found)
            emits.append(row)
        self._numbers = numbers
        self._types = tuple(types)
        self._receives = receives  # by handler: the number of the type it receives
        self._emits = emits  # by handler: the numbers of the types it emits

    @property
    def types(self) -> tuple[Enum, ...]:
        """Every message type received or emitted, in the order first met."""
        return self._types

    @property
    def handlers(self) -> tuple[GraphHandler, ...]:
        """Every handler, in registration order (subscribers, then command and query
        handlers, then those of graph sources)."""
        return self._handlers

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The types, then the handlers."""
        return (*self._types, *self._handlers)

    @property
    def edges(self) -> tuple[tuple[Node, Node], ...]:
        """``(type, handler)`` for each handler of a type, ``(handler, type)`` for each
        type a handler declared it emits."""
        edges: list[tuple[Node, Node]] = []
        for handler in self._handlers:
            edges.append((handler.receives, handler))
            edges.extend((handler, item) for item in handler.emits or ())
        return tuple(edges)

    def kind(self, message_type: Enum) -> str:
        """``"event"``, ``"command"`` or ``"query"``."""
        return _kind(message_type)

    def _number(self, message_type: Enum) -> int:
        return self._numbers[id(message_type)]

    def _adjacency(self) -> list[list[int]]:
        """Nodes as ints (types first, then handlers) and their successors."""
        count = len(self._types)
        adjacency: list[list[int]] = [[] for _ in range(count)]
        for position, receives in enumerate(self._receives, start=count):
            adjacency[receives].append(position)
        adjacency.extend(list(emits) for emits in self._emits)
        return adjacency

    def is_acyclic(self) -> bool:
        """Whether the graph has no cycle: ``graphlib.TopologicalSorter`` decides, on the
        types alone (a type precedes each type its handlers emit), which has a cycle
        exactly when the graph of types and handlers has one."""
        before: list[set[int]] = [set() for _ in self._types]
        for receives, emits in zip(self._receives, self._emits, strict=True):
            for item in emits:
                before[item].add(receives)
        sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
        for node, predecessors in enumerate(before):
            sorter.add(node, *predecessors)
        try:
            sorter.prepare()
        except graphlib.CycleError:
            return False
        return True

    def cycles(self) -> list[GraphCycle]:
        """Every elementary cycle (see the module), each once, in a stable order; ``[]``
        for an acyclic graph (the common case, decided by ``graphlib`` alone)."""
        if self.is_acyclic():
            return []
        count = len(self._types)
        # Johnson's paths start at their least node: a type (types number first). Sorted
        # by their nodes, as registered: types first met first, then handler order.
        paths = sorted(_elementary_cycles(self._adjacency()))
        return [
            GraphCycle(
                tuple(
                    (self._types[path[i]], self._handlers[path[i + 1] - count])
                    for i in range(0, len(path), 2)
                )
            )
            for path in paths
        ]

    def check(self) -> None:
        """Raise :class:`~atlas_eda.errors.GraphCycleError` (an ``EventCycleError``)
        naming each cycle no handler on it allows (see :attr:`GraphCycle.allowed`);
        return quietly when there is none."""
        forbidden = tuple(cycle for cycle in self.cycles() if not cycle.allowed)
        if not forbidden:
            return
        listed = "; ".join(str(cycle) for cycle in forbidden[:MAX_LISTED])
        more = len(forbidden) - MAX_LISTED
        tail = f"; and {more} more (bus.graph().cycles() lists them all)" if more > 0 else ""
        raise GraphCycleError(
            f"The declared event graph has {len(forbidden)} cycle(s) no handler allows: "
            f"{listed}{tail}. Break each loop (change what a handler emits), or declare it "
            f"intended with allow_cycle= on the subscription that closes it (max_depth then "
            f"bounds it at run time).",
            tuple(type_name(item) for item in (*forbidden[0].types, forbidden[0].types[0])),
            forbidden,
        )

    # -- rendering -----------------------------------------------------------------------

    def _label(self, handler: GraphHandler) -> str:
        return handler.name if handler.kind == "subscriber" else f"{handler.name} ({handler.kind})"

    def to_mermaid(self) -> str:
        """The graph as a Mermaid ``flowchart LR``: events as stadiums, commands as
        parallelograms, queries as hexagons, handlers as boxes (dashed when they declared
        nothing); a dotted edge is one through which a loop is allowed."""
        lines = ["flowchart LR"]
        shapes = {"event": ('(["', '"])'), "command": ('[/"', '"/]'), "query": ('{{"', '"}}')}
        for position, item in enumerate(self._types):
            left, right = shapes[_kind(item)]
            lines.append(f"    t{position}{left}{_mermaid_text(type_name(item))}{right}")
        for position, handler in enumerate(self._handlers):
            lines.append(f'    h{position}["{_mermaid_text(self._label(handler))}"]')
        for position, handler in enumerate(self._handlers):
            lines.append(f"    t{self._number(handler.receives)} --> h{position}")
            for item in handler.emits or ():
                arrow = "-.->|allowed loop|" if item in handler.allow_cycle else "-->"
                lines.append(f"    h{position} {arrow} t{self._number(item)}")
        undeclared = [f"h{p}" for p, h in enumerate(self._handlers) if h.emits is None]
        if undeclared:
            lines.append("    classDef undeclared stroke-dasharray: 4 4")
            lines.append(f"    class {','.join(undeclared)} undeclared")
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """The graph as plain text: each type with its handlers and what they emit, then
        the cycles."""
        lines: list[str] = []
        by_type: dict[Enum, list[GraphHandler]] = defaultdict(list)
        for handler in self._handlers:
            by_type[handler.receives].append(handler)
        for item in self._types:
            lines.append(f"{_kind(item)} {type_name(item)}")
            for handler in by_type.get(item, []):
                if handler.emits is None:
                    emits = "emits: not declared"
                else:
                    emits = "emits: " + (
                        ", ".join(type_name(e) for e in handler.emits) or "nothing"
                    )
                    if handler.allow_cycle:
                        allowed = ", ".join(type_name(e) for e in handler.allow_cycle)
                        emits += f" (loop allowed through {allowed})"
                lines.append(f"  → {self._label(handler)}: {emits}")
        cycles = self.cycles()
        lines.append(f"cycles: {len(cycles) or 'none'}")
        lines.extend(f"  {cycle}" for cycle in cycles)
        return "\n".join(lines) + "\n"

    def to_svg(self) -> str:
        """The graph drawn as SVG (a standalone, well-formed XML document): a layered
        layout, left to right, each node in the column after its predecessors (edges that
        close a loop bend back)."""
        return _svg(self)

    def _repr_svg_(self) -> str:
        """Jupyter's rich display: the SVG drawing."""
        return self.to_svg()

    def __repr__(self) -> str:
        return f"EventGraph(types={len(self._types)}, handlers={len(self._handlers)})"


def _mermaid_text(text: str) -> str:
    """``text`` safe inside a quoted Mermaid label (Mermaid reads entity codes there)."""
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


# -- algorithms --------------------------------------------------------------------------


def _strongly_connected(adjacency: list[list[int]], among: set[int]) -> list[set[int]]:
    """The strongly connected components (Tarjan's algorithm, without recursion) of the
    subgraph of ``adjacency`` on the nodes ``among``."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    components: list[set[int]] = []
    counter = 0
    for root in sorted(among):
        if root in index:
            continue
        work: list[tuple[int, Iterator[int]]] = [(root, iter(adjacency[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in among:
                    continue
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(adjacency[successor])))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: set[int] = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def _elementary_cycles(adjacency: list[list[int]]) -> Iterator[list[int]]:
    """Every elementary cycle of ``adjacency`` (which has no self-loops: a type never
    points at itself, only at handlers), by Johnson's algorithm ("Finding all the
    elementary circuits of a directed graph", 1975), without recursion; each as the list
    of its nodes, starting from the least."""
    components = [
        c for c in _strongly_connected(adjacency, set(range(len(adjacency)))) if len(c) > 1
    ]
    while components:
        component = components.pop()
        start = min(component)
        successors = {n: [s for s in adjacency[n] if s in component] for n in component}
        path = [start]
        blocked = {start}
        closed: set[int] = set()
        waiting: dict[int, set[int]] = defaultdict(set)
        work: list[tuple[int, list[int]]] = [(start, list(successors[start]))]
        while work:
            node, pending = work[-1]
            if pending:
                following = pending.pop()
                if following == start:
                    yield list(path)
                    closed.update(path)
                elif following not in blocked:
                    path.append(following)
                    work.append((following, list(successors[following])))
                    closed.discard(following)
                    blocked.add(following)
                    continue
            if not pending:
                if node in closed:
                    _unblock(node, blocked, waiting)
                else:
                    for successor in successors[node]:
                        waiting[successor].add(node)
                work.pop()
                path.pop()
        component.discard(start)
        components.extend(c for c in _strongly_connected(adjacency, component) if len(c) > 1)


def _unblock(node: int, blocked: set[int], waiting: dict[int, set[int]]) -> None:
    """Johnson's UNBLOCK: free ``node`` and, transitively, the nodes waiting on it."""
    todo = {node}
    while todo:
        item = todo.pop()
        if item in blocked:
            blocked.discard(item)
            todo.update(waiting[item])
            waiting[item].clear()


# -- SVG -------------------------------------------------------------------------------

_COLUMN = 210  # px between layers
_ROW = 46  # px between nodes of a layer
_WIDTH = 180  # px of a node's box
_HEIGHT = 30
_MARGIN = 20
_CHARS = 26  # of a label that fit in a box
_FILLS = {"event": "#e8f1fb", "command": "#fdf0dc", "query": "#eaf7ea", "handler": "#ffffff"}


def _layers(adjacency: list[list[int]]) -> list[int]:
    """A layer per node: 0 for nodes with no predecessor, else one past the deepest
    predecessor, ignoring the edges a depth-first search finds closing a loop."""
    count = len(adjacency)
    state = [0] * count  # 0 unseen, 1 on the path, 2 done
    order: list[int] = []  # reverse post-order: a topological order of the forward edges
    forward: list[list[int]] = [[] for _ in range(count)]
    for root in range(count):
        if state[root]:
            continue
        state[root] = 1
        work: list[tuple[int, Iterator[int]]] = [(root, iter(adjacency[root]))]
        while work:
            node, successors = work[-1]
            for successor in successors:
                if state[successor] == 1:
                    continue  # closes a loop
                forward[node].append(successor)
                if state[successor] == 0:
                    state[successor] = 1
                    work.append((successor, iter(adjacency[successor])))
                    break
            else:
                work.pop()
                state[node] = 2
                order.append(node)
    layer = [0] * count
    for node in reversed(order):
        for successor in forward[node]:
            layer[successor] = max(layer[successor], layer[node] + 1)
    return layer


def _svg(graph: EventGraph) -> str:
    """The drawing of ``graph`` (see :meth:`EventGraph.to_svg`)."""
    types, handlers = graph.types, graph.handlers
    adjacency = graph._adjacency()
    layer = _layers(adjacency)
    rows: dict[int, int] = defaultdict(int)
    where: list[tuple[int, int]] = []
    for node in range(len(adjacency)):
        x = _MARGIN + layer[node] * _COLUMN
        y = _MARGIN + rows[layer[node]] * _ROW
        rows[layer[node]] += 1
        where.append((x, y))
    width = _MARGIN * 2 + (max(layer, default=0) + 1) * _COLUMN - (_COLUMN - _WIDTH)
    height = _MARGIN * 2 + max(rows.values(), default=1) * _ROW - (_ROW - _HEIGHT)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    count = len(types)
    for node, successors in enumerate(adjacency):
        allowed = handlers[node - count].allow_cycle if node >= count else ()
        for successor in successors:
            loop = node >= count and types[successor] in allowed
            parts.append(_svg_edge(where[node], where[successor], loop))
    parts.extend(_svg_node(graph, node, x, y) for node, (x, y) in enumerate(where))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _svg_edge(start: tuple[int, int], end: tuple[int, int], allowed: bool) -> str:
    """An arrow from the box at ``start`` to the box at ``end`` (dashed when a loop is
    allowed through it); one closing a loop bends back below the boxes."""
    (x1, y1), (x2, y2) = start, end
    dash = ' stroke-dasharray="5 3"' if allowed else ""
    if x2 > x1:
        d = f"M {x1 + _WIDTH} {y1 + _HEIGHT // 2} L {x2} {y2 + _HEIGHT // 2}"
    else:
        bottom = max(y1, y2) + _HEIGHT + _ROW // 3
        d = (
            f"M {x1 + _WIDTH // 2} {y1 + _HEIGHT} C {x1 + _WIDTH // 2} {bottom} "
            f"{x2 + _WIDTH // 2} {bottom} {x2 + _WIDTH // 2} {y2 + _HEIGHT}"
        )
    return f'<path d="{d}" fill="none" stroke="#555"{dash} marker-end="url(#arrow)"/>'


def _svg_node(graph: EventGraph, node: int, x: int, y: int) -> str:
    """The box of ``node`` (a type's number, or the number of types plus a handler's
    position) at ``x``, ``y``, with its label (shortened to fit) and a tooltip."""
    types = graph.types
    dashed = ""
    if node < len(types):
        item = types[node]
        label, fill, rounded = type_name(item), _FILLS[_kind(item)], 14
        title = f"{_kind(item)} {label}"
    else:
        handler = graph.handlers[node - len(types)]
        label, fill, rounded = graph._label(handler), _FILLS["handler"], 2
        title = f"{handler.kind} {handler.name}"
        if handler.emits is None:
            dashed = ' stroke-dasharray="4 3"'
    shown = label if len(label) <= _CHARS else label[: _CHARS - 1] + "…"
    return (
        f"<g><title>{escape(title)}</title>"
        f'<rect x="{x}" y="{y}" width="{_WIDTH}" height="{_HEIGHT}" rx="{rounded}" '
        f'fill="{fill}" stroke="#333"{dashed}/>'
        f'<text x="{x + _WIDTH // 2}" y="{y + _HEIGHT // 2 + 4}" text-anchor="middle">'
        f"{escape(shown)}</text></g>"
    )


def graph_from(
    subscribers: Iterable[tuple[Enum, str, Declaration | None]],
    requests: Iterable[tuple[Enum, str, Declaration | None, str]],
    sources: Iterable[GraphSource],
) -> EventGraph:
    """The graph of a bus's subscribers, command and query handlers and graph sources
    (internal: ``bus.graph()``). A source that yields anything but :class:`GraphHandler`
    is an :class:`InvalidArgumentError` naming it."""
    handlers = [GraphHandler.of(d, t, n, "subscriber") for t, n, d in subscribers]
    handlers.extend(GraphHandler.of(d, t, n, k) for t, n, d, k in requests)
    for source in sources:
        for handler in source():
            if not isinstance(handler, GraphHandler):
                raise InvalidArgumentError(
                    f"Graph source {qualified_name(source)} yielded "
                    f"{short_repr(handler)}; a graph source yields GraphHandler objects."
                )
            handlers.append(handler)
    return EventGraph(handlers)
