"""Small HTML building blocks for Jupyter ``_repr_html_`` methods: escaped tables and
definition lists, no dependencies. Every value is escaped; nothing here executes. Also the
one-line texts they and error messages share: a time (:func:`when`), a value cut short
(:func:`short`) and a repr cut short (:func:`short_repr`)."""

from __future__ import annotations

import html
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["cell", "fields_table", "html_table", "short", "short_repr", "when"]

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


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80  # big containers are elided before they are built


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` on one line, at most ``limit`` characters with an ellipsis; a large
    container is elided while its repr is built, not after."""
    text = _REPR.repr(value)
    if "\n" in text or "\r" in text:
        text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
