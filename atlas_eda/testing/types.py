"""The type registry of the replay harness: cassettes name event and effect types
``EnumClass.MEMBER`` and those names resolve only through ``Enum`` classes registered here;
they name the class of a typed event payload (a frozen dataclass or frozen pydantic model)
by its class name, which resolves only to a class registered here;
they name the class of an effect's failure ``module.QualName``, which resolves only to a
builtin exception or an ``Exception`` class registered here. Nothing named in a cassette is
ever imported."""

from __future__ import annotations

import builtins
import dataclasses
import threading
from enum import Enum
from typing import Any

from ..effects import EffectType
from ..errors import TypeRegistrationError
from ..events import EventType
from ..payloads import is_frozen_model_class

__all__ = [
    "exception_name",
    "payload_type_name",
    "register_exceptions",
    "register_types",
    "registered_exceptions",
    "registered_payload_types",
    "registered_types",
    "resolve_exception",
    "resolve_payload_type",
    "resolve_type",
]

_registry: dict[str, type[Enum]] = {}
_payloads: dict[str, type[Any]] = {}
_exceptions: dict[str, type[Exception]] = {}
_lock = threading.Lock()


def register_types(*classes: type[Any]) -> None:
    """Let cassettes name the members of ``Enum`` classes (``EnumClass.MEMBER``), and
    record and rebuild event data that is an instance of a frozen dataclass or a frozen
    pydantic model (a typed payload, named by its class name). ``EventType`` and
    ``EffectType`` are registered already; registering a class again does nothing. Anything
    else (a dataclass or model that is not frozen, which events refuse as data), or two
    different classes with the same name, raise :class:`TypeRegistrationError`, and nothing
    of the call is registered."""
    for cls in classes:
        if not (isinstance(cls, type) and (issubclass(cls, Enum) or _is_payload_class(cls))):
            raise TypeRegistrationError(
                f"register_types needs Enum classes, frozen dataclasses or frozen pydantic "
                f"models (for example "
                f"register_types(MyEvents, OrderPlaced)), got {cls!r}."
            )
    with _lock:
        for cls in classes:
            name = cls.__name__
            known = _registry.get(name) or _payloads.get(name)
            if known is not None and known is not cls:
                raise TypeRegistrationError(
                    f"Another class named {name!r} is already registered "
                    f"({known.__module__}.{known.__qualname__}); cassettes name types by "
                    f"their class name, so {cls.__module__}.{cls.__qualname__} would be "
                    f"ambiguous. Rename one of the two classes."
                )
        for cls in classes:
            if issubclass(cls, Enum):
                _registry[cls.__name__] = cls
            else:
                _payloads[cls.__name__] = cls


def _is_payload_class(cls: type[Any]) -> bool:
    """Whether ``cls`` is a frozen dataclass or frozen pydantic model (what a typed
    payload is)."""
    params = getattr(cls, "__dataclass_params__", None)
    if dataclasses.is_dataclass(cls) and params is not None:
        return bool(params.frozen)
    return is_frozen_model_class(cls)


def registered_payload_types() -> dict[str, type[Any]]:
    """The registered payload classes (frozen dataclasses and pydantic models) by name (a
    copy)."""
    with _lock:
        return dict(_payloads)


def payload_type_name(cls: type[Any]) -> str | None:
    """The name a cassette gives the payload class ``cls`` (its class name) when ``cls``
    itself is registered; ``None`` when it is not."""
    return cls.__name__ if _payloads.get(cls.__name__) is cls else None


def resolve_payload_type(name: str) -> type[Any]:
    """The registered payload class named ``name``; ``KeyError`` with a message saying how
    to register it when there is none. Nothing is imported."""
    found = _payloads.get(name)
    if found is None:
        known = ", ".join(sorted(_payloads)) or "none"
        raise KeyError(
            f"unknown data type {name!r}: no dataclass named {name!r} is registered "
            f"(registered: {known}). Call atlas_eda.testing.register_types({name}) before "
            f"loading the cassette."
        )
    return found


def registered_types() -> dict[str, type[Enum]]:
    """The registered Enum classes by name (a copy)."""
    with _lock:
        return dict(_registry)


def resolve_type(name: str) -> Enum:
    """The member named ``EnumClass.MEMBER`` of a registered Enum class; ``KeyError`` with
    a message saying how to register the class when there is none."""
    class_name, dot, member = name.rpartition(".")
    enum_class = _registry.get(class_name) if dot else None
    if enum_class is None:
        known = ", ".join(sorted(_registry))
        raise KeyError(
            f"unknown type {name!r}: no Enum class named {class_name or name!r} is registered "
            f"(registered: {known}). Call atlas_eda.testing.register_types(YourEnum) before "
            f"loading the cassette."
        )
    found = enum_class.__members__.get(member)
    if found is None:
        raise KeyError(
            f"unknown type {name!r}: {class_name} has no member {member!r} (members: "
            f"{', '.join(enum_class.__members__)})."
        )
    return found


def exception_name(cls: type[BaseException]) -> str:
    """The qualified name a cassette gives the exception class ``cls``:
    ``module.QualName``, such as ``builtins.PermissionError`` or
    ``shop.payments.CardDeclined``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register_exceptions(*classes: type[Exception]) -> None:
    """Let replay raise ``classes`` themselves for the effect failures a cassette records
    with their qualified names (``module.QualName``), so a handler's ``except`` clause
    behaves as it did live; builtin exceptions need no registering. Only ``Exception``
    subclasses (a replayed effect never raises ``KeyboardInterrupt`` or ``SystemExit``):
    anything else is a :class:`TypeRegistrationError`, and nothing of the call is
    registered. A class with the qualified name of one registered before (its module
    reloaded, a notebook cell run again) takes its place: it is the class that code now
    catches."""
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise TypeRegistrationError(
                f"register_exceptions needs Exception subclasses (for example "
                f"register_exceptions(CardDeclined)), got {cls!r}."
            )
    with _lock:
        for cls in classes:
            _exceptions[exception_name(cls)] = cls


def registered_exceptions() -> dict[str, type[Exception]]:
    """The registered exception classes by qualified name (a copy)."""
    with _lock:
        return dict(_exceptions)


def resolve_exception(name: str) -> type[Exception] | None:
    """The exception class a cassette names ``name`` (``module.QualName``): a builtin
    ``Exception`` subclass (``builtins.PermissionError``) or a registered class; ``None``
    for anything else, including builtins that are not ``Exception`` subclasses
    (``builtins.SystemExit``) and bare names of older cassettes. Nothing is imported."""
    found = _exceptions.get(name)
    if found is not None:
        return found
    module, dot, attribute = name.partition(".")
    if module != "builtins" or not dot or not attribute.isidentifier():
        return None
    value = vars(builtins).get(attribute)
    if isinstance(value, type) and issubclass(value, Exception):
        return value
    return None


register_types(EventType, EffectType)
