"""Matplotlib views (the ``notebook`` extra): imported only when a plot is asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from matplotlib.dates import AutoDateLocator, DateFormatter
from matplotlib.figure import Figure

from .views import short, short_id

if TYPE_CHECKING:
    from .timeline import Timeline

__all__ = ["KIND_COLOURS", "TITLE_WIDTH", "plot_timeline", "row_label"]

LABELLED_ROWS = 40
"""Up to this many documents, each row is labelled with its title and short id; past it
the labels would overlap."""

TITLE_WIDTH = 28
"""The most characters of a document's title a row label shows."""

KIND_COLOURS = {
    "created": "tab:green",
    "updated": "tab:blue",
    "deleted": "tab:red",
    "saga": "tab:purple",
}
"""The colour of each kind of event in timeline plots."""

ONE_DAY = timedelta(days=1)
ONE_MINUTE = timedelta(minutes=1)


def row_label(document_id: str, title: Any) -> str:
    """A document's row label: its title (cut to :data:`TITLE_WIDTH`) with its short id
    after it, ``title · 1a2b3c4d``; the short id alone when it has no title."""
    name = short(title, TITLE_WIDTH) if title not in (None, "") else ""
    return f"{name} · {short_id(document_id)}" if name else short_id(document_id)


def _time_format(times: list[datetime]) -> str:
    """Hours, minutes and seconds for a plot within a day (its date is in the title),
    with microseconds within a minute (so that ticks differ), the date with hours and
    minutes for a longer one."""
    span = max(times) - min(times)
    if span >= ONE_DAY:
        return "%Y-%m-%d %H:%M"
    return "%H:%M:%S" if span >= ONE_MINUTE else "%H:%M:%S.%f"


def plot_timeline(timeline: Timeline, *, ax: Any = None) -> Figure:
    """Every event of ``timeline`` as a dot at its time, one row per document (in order of
    creation, labelled by the document's latest title and short id), coloured by kind;
    time ticks in UTC with hours, the legend outside the data, right of the axes. Draws
    on ``ax`` when given (leaving the rest of its figure alone); returns the Figure."""
    rows: dict[str, int] = {}
    titles: dict[str, Any] = {}
    points: dict[str, tuple[list[Any], list[int]]] = {k: ([], []) for k in KIND_COLOURS}
    times: list[datetime] = []
    for event in timeline:
        row = rows.setdefault(event.document_id, len(rows))
        if "title" in event.changes:
            titles[event.document_id] = event.changes["title"]
        xs, ys = points[event.kind]
        xs.append(event.timestamp)
        ys.append(row)
        times.append(event.timestamp)
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
        ax.set_yticks(range(len(rows)), [row_label(d, titles.get(d)) for d in rows])
    ax.set_ylabel("document")
    ax.set_xlabel("time (UTC)")
    title = f"{len(timeline)} events over {len(rows)} documents"
    if times:
        # matplotlib's date classes have no annotations on __init__: hence the ignores
        ax.xaxis.set_major_locator(AutoDateLocator(tz=UTC))  # type: ignore[no-untyped-call]
        formatter = DateFormatter(_time_format(times), tz=UTC)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_formatter(formatter)
        if max(times) - min(times) < ONE_DAY:  # the ticks show hours only: say the day
            title += f" on {min(times).astimezone(UTC):%Y-%m-%d} (UTC)"
    ax.set_title(title)
    if rows:
        # right of the axes, so that no dot is hidden under it
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize="small")
    ax.invert_yaxis()  # the first document created on top, as in the tables
    if own_figure:
        figure.autofmt_xdate()
        figure.tight_layout()
    else:
        # a caller's figure keeps its layout and its other axes' labels: only tilt ours
        ax.tick_params(axis="x", labelrotation=30)
    return figure
