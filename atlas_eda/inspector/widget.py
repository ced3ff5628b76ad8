"""The notebook widget of :meth:`Timeline.widget` (anywidget, extra ``notebook``): a
scrubber, the whole store at its position, the diff to the position before and the cause
chain of the change there, computed by :mod:`.views` as the web inspector's are. Its
``position`` traitlet is synced both ways with the page and with :attr:`TimelineWidget.cursor`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..timeline import Cursor, Timeline
from .views import cause_view, diff_view, state_view

__all__ = ["TimelineWidget", "WidgetCursor"]

_HERE = Path(__file__).parent


class WidgetCursor(Cursor):
    """A :class:`Cursor` that moves its widget with it: every ``goto`` (and so ``back``
    and ``forward``) sets the widget's ``position``."""

    def __init__(self, timeline: Timeline, position: int, widget: TimelineWidget) -> None:
        super().__init__(timeline, position)
        self._widget = widget

    def goto(self, position: int) -> Cursor:
        """Move to ``position`` and show it in the widget; :class:`PositionError` (and
        neither moves) if it does not exist."""
        super().goto(position)
        if self._widget.position != position:
            self._widget.position = position
        return self


class TimelineWidget(anywidget.AnyWidget):
    """A timeline in a notebook: move the scrubber (or :attr:`cursor`) and the store's
    state, the diff to the previous position and the cause chain follow. Where widgets
    are not rendered, the cursor's HTML table is shown instead."""

    _esm = _HERE / "widget.js"
    _css = _HERE / "widget.css"

    position = traitlets.Int(0).tag(sync=True)
    """The position shown (0 = before the first event), synced with the page."""

    last_position = traitlets.Int(0).tag(sync=True)
    """The store's last position when the widget last looked."""

    view = traitlets.Dict().tag(sync=True)
    """What the page draws: ``state``, ``diff`` and ``cause`` (``None`` at 0) at
    ``position``, as :mod:`.views` builds them."""

    def __init__(self, timeline: Timeline, position: int | None = None) -> None:
        start = len(timeline) if position is None else position
        self.timeline = timeline
        self.cursor: WidgetCursor = WidgetCursor(timeline, start, self)
        super().__init__(position=start, last_position=len(timeline))
        self._show(start)

    @traitlets.validate("position")
    def _valid_position(self, proposal: dict[str, Any]) -> int:
        position: int = proposal["value"]
        self.timeline._check(position)  # a position past either end is refused
        return position

    @traitlets.observe("position")
    def _moved(self, change: dict[str, Any]) -> None:
        position: int = change["new"]
        if self.cursor.position != position:
            self.cursor.goto(position)
        self._show(position)

    def _show(self, position: int) -> None:
        query = {"position": str(position)}
        self.last_position = len(self.timeline)
        self.view = {
            "state": state_view(self.timeline, query),
            "diff": diff_view(self.timeline, {"a": str(max(position - 1, 0)), "b": str(position)}),
            "cause": cause_view(self.timeline, query) if position else None,
        }

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget's view, and the cursor's HTML table for front ends without widgets."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/html"] = self.cursor._repr_html_()
        return bundle
