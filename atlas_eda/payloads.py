"""Payloads: the rule that makes ``event.data`` immutable, applied once when an event is
built (by ``Event(...)``, ``bus.publish``, the store, a follower, a cassette, replay).

The payload rule:

- JSON-like data is frozen: a ``dict`` (a subclass too) becomes a :class:`FrozenDict`, a
  ``list`` a :class:`FrozenList`, a ``set`` a ``frozenset``, nested all the way down; a
  ``tuple`` (or ``NamedTuple``) holding any of them becomes one holding their frozen forms.
  Frozen values compare equal to the plain ones, serialise with ``json``, pickle and
  deep-copy; any method that would change them raises :class:`ImmutablePayloadError`.
- A dataclass that is not frozen is refused when the event is built
  (:class:`InvalidEventError` naming where it is): declare it ``@dataclass(frozen=True)``;
  so is a pydantic model that is not frozen (``model_config = ConfigDict(frozen=True)``).
  So is a tuple subclass other than a ``NamedTuple`` that holds a mutable value, and
  nesting deeper than Python can recurse, or a container that holds itself.
- Everything else is kept as it is, neither copied nor wrapped: ``str``, ``int``,
  ``float``, ``bool``, ``None``, ``bytes``, enum members, frozen dataclasses and frozen
  pydantic models (their fields are their own business: give them tuple fields), and
  objects of any other class. The bus cannot see inside those: a ``bytearray``, a numpy
  array or an object of your own mutable class that a handler changes is not protected.
"""

from __future__ import annotations

import dataclasses
import gc
import operator
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any, NoReturn, SupportsIndex

from .errors import ImmutablePayloadError, InvalidEventError
from .views import short_repr

__all__ = [
    "SCALARS",
    "FrozenDict",
    "FrozenList",
    "freeze_payload",
    "freeze_plain",
    "is_frozen_model_class",
    "is_model_class",
    "is_tracked",
]

SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes})
"""The types whose values every payload rule keeps as they are, checked by exact type."""


def _refuse(kind: str, method: str, how: str) -> NoReturn:
    raise ImmutablePayloadError(
        f"Event data is immutable: {kind}.{method}() would change what every other handler, "
        f"the history, the trace and the recorder see. Derive a changed copy instead ({how}) "
        f"and publish that."
    )


_DICT_HOW = "e.g. {**event.data, 'key': value}, or dict(event.data) to get a plain dict"
_LIST_HOW = "e.g. [*items, value], or list(items) to get a plain list"


class FrozenDict(dict[Any, Any]):
    """A read-only ``dict``: what event data of a ``dict`` becomes. Reads, iteration,
    ``==`` with plain dicts, ``json.dumps``, ``pickle`` and ``copy.deepcopy`` work as for a
    dict; ``d | other``, ``dict(d)`` and ``d.copy()`` give plain dicts; every method that would
    change it raises :class:`ImmutablePayloadError`. ``FrozenDict(mapping)`` is shallow: use
    :func:`freeze_payload` to freeze nested values too."""

    __slots__ = ()

    def __setitem__(self, key: Any, value: Any) -> NoReturn:
        _refuse("FrozenDict", "__setitem__", _DICT_HOW)

    def __delitem__(self, key: Any) -> NoReturn:
        _refuse("FrozenDict", "__delitem__", _DICT_HOW)

    def __ior__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        _refuse("FrozenDict", "__ior__", _DICT_HOW)

    def clear(self) -> NoReturn:
        _refuse("FrozenDict", "clear", _DICT_HOW)

    def pop(self, *args: Any) -> NoReturn:
        _refuse("FrozenDict", "pop", _DICT_HOW)

    def popitem(self) -> NoReturn:
        _refuse("FrozenDict", "popitem", _DICT_HOW)

    def setdefault(self, *args: Any) -> NoReturn:
        _refuse("FrozenDict", "setdefault", _DICT_HOW)

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("FrozenDict", "update", _DICT_HOW)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle would rebuild a dict subclass item by item through __setitem__.
        return (FrozenDict, (dict(self),))


class FrozenList(list[Any]):
    """A read-only ``list``: what event data of a ``list`` becomes. Reads, iteration,
    slicing, ``==`` with plain lists, ``json.dumps``, ``pickle`` and ``copy.deepcopy`` work
    as for a list; ``items + other``, ``list(items)`` and ``items.copy()`` give plain lists;
    every method that would change it raises :class:`ImmutablePayloadError`."""

    __slots__ = ()

    def __setitem__(self, index: Any, value: Any) -> NoReturn:
        _refuse("FrozenList", "__setitem__", _LIST_HOW)

    def __delitem__(self, index: Any) -> NoReturn:
        _refuse("FrozenList", "__delitem__", _LIST_HOW)

    def __iadd__(self, other: Iterable[Any]) -> NoReturn:  # type: ignore[misc]
        _refuse("FrozenList", "__iadd__", _LIST_HOW)

    def __imul__(self, count: SupportsIndex) -> NoReturn:
        _refuse("FrozenList", "__imul__", _LIST_HOW)

    def append(self, value: Any) -> NoReturn:
        _refuse("FrozenList", "append", _LIST_HOW)

    def extend(self, values: Iterable[Any]) -> NoReturn:
        _refuse("FrozenList", "extend", _LIST_HOW)

    def insert(self, index: SupportsIndex, value: Any) -> NoReturn:
        _refuse("FrozenList", "insert", _LIST_HOW)

    def remove(self, value: Any) -> NoReturn:
        _refuse("FrozenList", "remove", _LIST_HOW)

    def pop(self, index: SupportsIndex = -1) -> NoReturn:
        _refuse("FrozenList", "pop", _LIST_HOW)

    def clear(self) -> NoReturn:
        _refuse("FrozenList", "clear", _LIST_HOW)

    def sort(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("FrozenList", "sort", "e.g. sorted(items)")

    def reverse(self) -> NoReturn:
        _refuse("FrozenList", "reverse", "e.g. items[::-1]")

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle would rebuild a list subclass through append/extend.
        return (FrozenList, (list(self),))


# Kept as they are without a look inside (and without naming where they are, which costs a
# repr per item). Not FrozenDict and FrozenList: their constructors are shallow (so that the
# hot path's copy is C only), so their items are looked at too.
_KEPT: frozenset[type] = SCALARS | {frozenset, range}

is_tracked: Callable[[object], bool] = gc.is_tracked
"""Whether CPython's garbage collector tracks an object (see :func:`freeze_payload`)."""


def freeze_plain(value: Any, where: str = "data") -> Any:
    """``value`` under the payload rule (see the module's docstring), written plainly: the
    reference :func:`freeze_payload` is held equal to. ``where`` names ``value`` in the
    :class:`InvalidEventError` raised for a value the rule refuses."""
    try:
        return _freeze(value, where)
    except RecursionError:
        raise InvalidEventError(
            f"Event {where} is nested too deeply, or holds itself; publish data that nests "
            f"less (a tree of dicts and lists a few hundred levels deep at most)."
        ) from None


def _freeze(value: Any, where: str) -> Any:
    kind = type(value)
    if kind in _KEPT:
        return value
    if isinstance(value, dict):
        frozen = {
            key: item if type(item) in _KEPT else _freeze(item, f"{where}[{key!r}]")
            for key, item in value.items()
        }
        if kind is FrozenDict and all(map(operator.is_, frozen.values(), value.values())):
            return value  # frozen already (event.data published again)
        return FrozenDict(frozen)
    if isinstance(value, list):
        items = [
            item if type(item) in _KEPT else _freeze(item, f"{where}[{i}]")
            for i, item in enumerate(value)
        ]
        if kind is FrozenList and all(map(operator.is_, items, value)):
            return value
        return FrozenList(items)
    if isinstance(value, tuple):
        members = tuple(
            item if type(item) in _KEPT else _freeze(item, f"{where}[{i}]")
            for i, item in enumerate(value)
        )
        if all(map(operator.is_, members, value)):
            return value
        if kind is tuple:
            return members
        make = getattr(kind, "_make", None)  # a NamedTuple
        if make is None:
            raise _mutable(value, where, "a tuple subclass holding mutable values")
        return make(members)
    if isinstance(value, set):
        return frozenset(value)  # its elements are hashable already
    if isinstance(value, Enum):
        return value
    if dataclasses.is_dataclass(value):
        if not kind.__dataclass_params__.frozen:
            raise _mutable(value, where, "a dataclass that is not frozen")
        return value
    if is_model_class(kind) and not is_frozen_model_class(kind):
        raise _mutable(value, where, "a pydantic model that is not frozen")
    return value


def is_model_class(cls: type[Any]) -> bool:
    """Whether ``cls`` is a pydantic (v2) model class, told by its API (``model_config``,
    ``model_validate``, ``model_dump``) so that pydantic is never imported here."""
    return (
        isinstance(getattr(cls, "model_config", None), dict)
        and callable(getattr(cls, "model_validate", None))
        and callable(getattr(cls, "model_dump", None))
    )


def is_frozen_model_class(cls: type[Any]) -> bool:
    """Whether ``cls`` is a pydantic model class declared frozen
    (``model_config = ConfigDict(frozen=True)``): its instances refuse assignment."""
    return is_model_class(cls) and bool(cls.model_config.get("frozen"))


def _mutable(value: object, where: str, what: str) -> InvalidEventError:
    kind = type(value).__name__
    return InvalidEventError(
        f"Event {where} is {what} ({kind}: {short_repr(value)}); a handler could change it "
        f"under every other handler, the history and the recorder. Pass immutable data: a "
        f"dict, list or tuple (frozen when the event is built), a @dataclass(frozen=True), a "
        f"frozen pydantic model, or a value such as str, int, float or an enum member."
    )


def freeze_payload(value: Any) -> Any:
    """``value`` under the payload rule (see the module's docstring): what an event's data
    becomes when the event is built. Equal to ``value``; the same object when nothing needed
    freezing; :class:`InvalidEventError` for a value the rule refuses."""
    # The hot path of every publish (benchmarks.run --only bus, the 10-key dict row), also
    # inlined in Dispatcher.publish. CPython's garbage collector does not track an object
    # that cannot hold references (str, int, float, bytes, None, ...), nor a dict or tuple
    # holding only such objects, so one C call decides the common cases: such a dict needs
    # only its C-level copy, anything else untracked is kept as it is, as freeze_plain
    # keeps it. tests/test_payloads.py holds this equal to freeze_plain.
    if is_tracked(value):
        return freeze_plain(value)
    return FrozenDict(value) if type(value) is dict else value
