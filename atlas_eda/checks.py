"""Argument checks shared by the library's constructors and methods: one definition of
"a count" (an ``int`` that is not a ``bool``), so every public call refuses ``True``,
``2.0`` and ``"3"`` the same way."""

from __future__ import annotations

from typing import TypeGuard

__all__ = ["check_count", "is_int"]


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` and not a ``bool``: Python counts ``True`` as the
    int 1, but a flag passed where a number belongs is a mistake, never a count."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_count(name: str, value: object, *, minimum: int = 0) -> int:
    """``value`` when it is an int (not a bool) of at least ``minimum``; otherwise a
    ``ValueError`` that names the argument, the smallest value allowed and what was given."""
    if not is_int(value) or value < minimum:
        wanted = "a positive int" if minimum == 1 else f"an int of at least {minimum}"
        raise ValueError(f"{name} must be {wanted}, got {value!r}.")
    return value
