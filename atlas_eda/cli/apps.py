"""Loading what the user names on the command line as ``module:name``: Enum classes of
event and effect types and exception classes effects raise (``--types``), and the factory
of a system under test (``--app``).

This is the one place where atlas_eda imports a module by name, and only one the user
named in an option, as ``python -m`` would; nothing read from a file (a cassette, a store)
ever decides what is imported."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import is_dataclass
from enum import Enum
from types import ModuleType
from typing import Any

from ..payloads import is_model_class
from ..testing import register_exceptions, register_types
from .command import CommandError

__all__ = ["add_type_options", "import_app_module", "load_app", "register_type_specs"]

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def add_type_options(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--types MODULE:NAME`` option to a command's parser."""
    parser.add_argument(
        "--types",
        metavar="MODULE:NAME",
        action="append",
        default=[],
        help="register a class the cassette names (repeatable): an Enum class of event or "
        "effect types, or an exception class an effect raised, which replay then raises by "
        "class so that the handlers' except clauses behave as recorded",
    )


def _split_spec(spec: str, option: str, example: str) -> tuple[str, str]:
    """``module:attribute`` split in two; a :class:`CommandError` if it is not that."""
    module, colon, attribute = spec.partition(":")
    if not colon or not _DOTTED.match(module) or not _DOTTED.match(attribute):
        raise CommandError(
            f"{option} {spec!r} is not module:name; give a module path and a name in it, "
            f"for example {option} {example}."
        )
    return module, attribute


def _import(module: str, option: str) -> ModuleType:
    """Import ``module`` (the user named it on the command line), with the current
    directory on ``sys.path`` as ``python -m`` would have it."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(f"{exc.name}.")):
            raise CommandError(
                f"{option}: no module named {module!r} (looked in {here!r} and on sys.path); "
                f"run from the directory that holds it or add that directory to PYTHONPATH."
            ) from None
        raise CommandError(
            f"{option}: importing {module!r} failed: ModuleNotFoundError: {exc}."
        ) from None
    except Exception as exc:
        raise CommandError(
            f"{option}: importing {module!r} raised {type(exc).__name__}: {exc}."
        ) from None


def _attribute(module: ModuleType, path: str, option: str, spec: str) -> Any:
    """The object at the dotted ``path`` in ``module``; a :class:`CommandError` naming
    the option and the missing name when there is none."""
    value: Any = module
    for part in path.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CommandError(
                f"{option} {spec!r}: module {module.__name__!r} has no {path!r}."
            ) from None
    return value


def register_type_specs(specs: Sequence[str]) -> None:
    """Register with the replay harness the classes named ``module:Name`` (``--types``):
    an Enum class or a frozen dataclass with ``register_types``, an ``Exception`` subclass with
    ``register_exceptions``; a :class:`CommandError` for a name that is neither."""
    for spec in specs:
        module_name, name = _split_spec(spec, "--types", "myapp.events:OrderEvent")
        found = _attribute(_import(module_name, "--types"), name, "--types", spec)
        if isinstance(found, type) and (
            issubclass(found, Enum) or is_dataclass(found) or is_model_class(found)
        ):
            register_types(found)  # a typed payload (refused unless frozen)
        elif isinstance(found, type) and issubclass(found, Exception):
            register_exceptions(found)
        else:
            kind = "class" if isinstance(found, type) else type(found).__name__
            raise CommandError(
                f"--types {spec!r} is a {kind}, not an Enum class nor an Exception "
                f"subclass nor a dataclass or pydantic model; name the Enum class of your "
                f"event or effect types, the exception class an effect raises, or the "
                f"frozen dataclass or pydantic model of a typed event payload."
            )


def import_app_module(spec: str) -> tuple[ModuleType, str]:
    """Import the module of ``--app module:factory`` (which may register its types) and
    return it with the factory's name within it."""
    module_name, name = _split_spec(spec, "--app", "myapp.testing:make_system")
    return _import(module_name, "--app"), name


def load_app(spec: str) -> Any:
    """The system under test of ``--app module:factory``: the module is imported and the
    factory called without arguments. It must return what a scenario's ``make_system``
    returns: an ``EventBus``, a ``(bus, store)`` tuple, or an object with a ``.bus`` (or
    ``.event_bus``). Anything else, or a factory that raises, is a :class:`CommandError`."""
    module, name = import_app_module(spec)
    factory = _attribute(module, name, "--app", spec)
    if not callable(factory):
        raise CommandError(
            f"--app {spec!r} is a {type(factory).__name__}, not a callable; name a function "
            f"that takes no arguments and returns a fresh system under test."
        )
    try:
        return factory()
    except Exception as exc:
        raise CommandError(
            f"--app {spec!r}: calling {name}() raised {type(exc).__name__}: {exc}."
        ) from None
