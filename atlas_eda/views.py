"""How values are shown to people: times, values, reprs and ids cut short, plain-text
tables for the terminal, and small HTML building blocks for Jupyter ``_repr_html_``
methods (escaped tables and definition lists). One function per job, shared by displays
and error messages alike. No dependencies; every HTML value is escaped, nothing here
executes."""

from __future__ import annotations

import html
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "cell",
    "fields_table",
    "html_table",
    "short",
    "short_id",
    "short_repr",
    "text_cell",
    "text_table",
    "when",
]

_STYLE = (
    "border-collapse:collapse;font-family:monospace;font-size:12px;"
    "text-align:left;vertical-align:top"
)


def when(value: float | datetime | None, *, precise: bool = False) -> str:
    """A UTC time (a datetime or seconds since the epoch) to the millisecond, or to the
    microsecond when ``precise``; ``""`` for ``None``."""
    if value is None:
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return text if precise else text[:-3]


def short(value: Any, limit: int = 60) -> str:
    """``repr``-free text of a value, cut to ``limit`` characters with an ellipsis."""
    text = "" if value is None else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _ShortRepr(reprlib.Repr):
    """reprlib's bounded repr (a large container is elided while its repr is built, not
    after), but an object's own ``repr`` kept whole, to be cut at the end like any other
    text, and a failing one shown as ``<TypeName>``."""

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            return repr(x)
        except Exception:  # a hostile __repr__ must not hide the error being reported
            return f"<{type(x).__name__}>"


_REPR = _ShortRepr()
_REPR.maxstring = 80


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` on one line, at most ``limit`` characters with an ellipsis; a large
    container is elided while its repr is built, not after, and a ``repr`` that raises
    gives ``<TypeName>``. Never raises."""
    text = _REPR.repr(value)
    if "\n" in text or "\r" in text:
        text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


ID_LENGTH = 8
"""How many characters of an id :func:`short_id` keeps: enough to tell apart the ids a
person sees at once, and a prefix ``atlas-eda show`` and ``atlas-eda log --doc`` accept."""


def short_id(identifier: Any, *, tail: bool = False) -> str:
    """The first :data:`ID_LENGTH` characters of an id (``""`` for none); with ``tail``,
    its last ones after an ellipsis, for ids that share their beginning (the event ids one
    process makes)."""
    if not identifier:
        return ""
    text = str(identifier)
    if not tail:
        return text[:ID_LENGTH]
    return f"…{text[-ID_LENGTH:]}" if len(text) > ID_LENGTH else text


TEXT_CELL_WIDTH = 48
"""The widest a :func:`text_table` cell is by default, in characters."""


def text_cell(value: Any, max_width: int = TEXT_CELL_WIDTH) -> str:
    """One plain-text table cell, on one line and at most ``max_width`` characters (longer
    text ends with an ellipsis): ``None`` is empty, a dict is ``key=value, ...`` with its
    ``id`` shortened by :func:`short_id`, a float has four significant digits."""
    if isinstance(value, dict):
        value = ", ".join(f"{k}={short_id(v) if k == 'id' else v}" for k, v in value.items())
    elif isinstance(value, float):
        value = f"{value:.4g}"
    return short(value, max_width)


def text_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    max_width: int = TEXT_CELL_WIDTH,
) -> str:
    """A plain-text table with a title line: columns as wide as their widest cell, each
    cell written by :func:`text_cell` (so cut to ``max_width``), ``(none)`` for no rows."""
    cells = [[text_cell(v, max_width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    rule = "  ".join("-" * w for w in widths)
    header = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    lines = [title, "=" * len(title), header, rule]
    lines.extend(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
    if not cells:
        lines.append("(none)")
    return "\n".join(lines)


def cell(value: Any, limit: int = 80) -> str:
    """One escaped table cell's content."""
    if isinstance(value, float):
        return html.escape(f"{value:.6g}")
    if isinstance(value, datetime):
        return html.escape(when(value))
    return html.escape(short(value, limit))


def html_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str | None = None,
    raw_columns: Iterable[int] = (),
) -> str:
    """An HTML table; cells are escaped except those in ``raw_columns`` (already HTML)."""
    raw = set(raw_columns)
    parts = [f'<table style="{_STYLE}">']
    if caption:
        parts.append(f'<caption style="text-align:left">{html.escape(caption)}</caption>')
    parts.append("<thead><tr>")
    parts.extend(f'<th style="padding:2px 8px">{html.escape(h)}</th>' for h in headers)
    parts.append("</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>")
        for i, value in enumerate(row):
            content = str(value) if i in raw else cell(value)
            parts.append(f'<td style="padding:2px 8px">{content}</td>')
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def fields_table(fields: Mapping[str, Any], *, caption: str | None = None) -> str:
    """A two-column field/value table."""
    return html_table(["field", "value"], fields.items(), caption=caption)
