"""Argument checks shared by the library's constructors and methods: one definition of
"a count" (an ``int`` that is not a ``bool``), so every public call refuses ``True``,
``2.0`` and ``"3"`` the same way and says so in the same words."""

from __future__ import annotations

from typing import TypeGuard
from uuid import UUID

__all__ = ["as_uuid", "check_count", "is_int"]


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` and not a ``bool``: Python counts ``True`` as the
    int 1, but a flag passed where a number belongs is a mistake, never a count."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_count(
    name: str,
    value: object,
    *,
    minimum: int = 0,
    type_error: type[Exception] = TypeError,
) -> int:
    """``value`` when it is an int (not a bool) of at least ``minimum``. Otherwise an
    error naming the argument, what it must be and what was given: ``type_error`` (a
    ``TypeError`` unless the argument has always raised ``ValueError`` for both) when it
    is no int, a ``ValueError`` when it is too small."""
    if not is_int(value):
        raise type_error(f"{name} must be {_wanted(minimum)}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be {_wanted(minimum)}, got {value!r}.")
    return value


def _wanted(minimum: int) -> str:
    if minimum == 0:
        return "an int of 0 or more"
    if minimum == 1:
        return "a positive int"
    return f"an int of at least {minimum}"


def as_uuid(value: object) -> UUID | None:
    """The UUID that ``value`` (a ``UUID`` or its text) names, or ``None`` for anything
    else: what a document id given by a caller is checked with before the store is asked
    (no document has such an id, and ``str()`` of an arbitrary object may fail)."""
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None
