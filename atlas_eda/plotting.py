"""Matplotlib views (the ``notebook`` extra): imported only when a plot is asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from .views import short_id

if TYPE_CHECKING:
    from .timeline import Timeline

__all__ = ["KIND_COLOURS", "plot_timeline"]

LABELLED_ROWS = 40
"""Up to this many documents, each row is labelled with its short id; past it the labels
would overlap."""

KIND_COLOURS = {
    "created": "tab:green",
    "updated": "tab:blue",
    "deleted": "tab:red",
    "saga": "tab:purple",
}
"""The colour of each kind of event in timeline plots."""


def plot_timeline(timeline: Timeline, *, ax: Any = None) -> Figure:
    """Every event of ``timeline`` as a dot at its time, one row per document (in order of
    creation), coloured by kind. Draws on ``ax`` when given (leaving the rest of its figure
    alone); returns the Figure."""
    rows: dict[str, int] = {}
    points: dict[str, tuple[list[Any], list[int]]] = {k: ([], []) for k in KIND_COLOURS}
    for event in timeline:
        row = rows.setdefault(event.document_id, len(rows))
        xs, ys = points[event.kind]
        xs.append(event.timestamp)
        ys.append(row)
    own_figure = ax is None
    if ax is None:
        figure = Figure(figsize=(10, max(2.5, min(0.3 * len(rows) + 1.5, 12))))
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    for kind, (xs, ys) in points.items():
        if xs:
            ax.scatter(xs, ys, s=18, color=KIND_COLOURS[kind], label=f"{kind} ({len(xs)})")
    if len(rows) <= LABELLED_ROWS:
        ax.set_yticks(range(len(rows)), [short_id(d) for d in rows])
    ax.set_ylabel("document")
    ax.set_xlabel("time (UTC)")
    ax.set_title(f"{len(timeline)} events over {len(rows)} documents")
    if rows:
        ax.legend(loc="upper left", fontsize="small")
    ax.invert_yaxis()  # the first document created on top, as in the tables
    if own_figure:
        figure.autofmt_xdate()
        figure.tight_layout()
    else:
        # a caller's figure keeps its layout and its other axes' labels: only tilt ours
        ax.tick_params(axis="x", labelrotation=30)
    return figure
