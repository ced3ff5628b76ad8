"""The type registry of the replay harness: cassettes name event and effect types
``EnumClass.MEMBER`` and those names resolve only through ``Enum`` classes registered here.
Nothing named in a cassette is ever imported."""

from __future__ import annotations

import threading
from enum import Enum

from ..effects import EffectType
from ..errors import TypeRegistrationError
from ..events import EventType

__all__ = ["register_types", "registered_types", "resolve_type"]

_registry: dict[str, type[Enum]] = {}
_lock = threading.Lock()


def register_types(*enums: type[Enum]) -> None:
    """Let cassettes name the members of ``enums`` (``EnumClass.MEMBER``). ``EventType``
    and ``EffectType`` are registered already; registering a class again does nothing.
    Two different ``Enum`` classes with the same name cannot both be registered
    (:class:`TypeRegistrationError`): rename one."""
    for enum_class in enums:
        if not (isinstance(enum_class, type) and issubclass(enum_class, Enum)):
            raise TypeRegistrationError(
                f"register_types needs Enum classes (for example register_types(MyEvents)), "
                f"got {enum_class!r}."
            )
    with _lock:
        for enum_class in enums:
            name = enum_class.__name__
            known = _registry.get(name)
            if known is not None and known is not enum_class:
                raise TypeRegistrationError(
                    f"Another Enum class named {name!r} is already registered "
                    f"({known.__module__}.{known.__qualname__}); cassettes name types "
                    f"{name}.MEMBER, so {enum_class.__module__}.{enum_class.__qualname__} "
                    f"would be ambiguous. Rename one of the two classes."
                )
            _registry[name] = enum_class


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


register_types(EventType, EffectType)
