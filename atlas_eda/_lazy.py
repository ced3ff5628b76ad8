"""Lazy package attributes: a package names what it exports and from which of its modules,
and each module is imported the first time one of its names is asked for (PEP 562's idea,
as a module class, so that it can also keep a name that a submodule shares).

``import atlas_eda`` happens in every pytest run of every project that has atlas_eda
installed (the pytest plugin lives in the package) and before every ``atlas-eda`` command;
loading blinker, effect, eventsourcing and aspectlib only when a name that needs them is
used keeps both cheap. A package keeps its names visible to type checkers with the same
imports under ``if TYPE_CHECKING:``; ``tests/test_lazy_imports.py`` holds the two equal."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any, ClassVar

__all__ = ["LazyPackage", "make_lazy"]


class LazyPackage(ModuleType):
    """The class of a package made lazy by :func:`make_lazy`: a name it exports is
    imported from its module at the first lookup, then kept in the package's namespace."""

    owners: ClassVar[dict[str, str]] = {}
    """Each exported name's module, as written in a relative import (``".bus"``)."""

    def __getattr__(self, name: str) -> Any:
        module = self.owners.get(name)
        if module is None:
            # An AttributeError, as for any module: hasattr() and ``from package import
            # submodule`` rely on it.
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, self.__name__), name)
        self.__dict__[name] = value
        return value

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self.owners})

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing a submodule binds it on its package by this name once it is loaded;
        # when the package exports a name of the same spelling from that very module
        # (atlas_eda.testing exports the function replay of atlas_eda.testing.replay),
        # the exported name keeps the place, as it did when the package imported it.
        owner = self.owners.get(name)
        if (
            owner is not None
            and isinstance(value, ModuleType)
            and value.__name__ == importlib.util.resolve_name(owner, self.__name__)
            and hasattr(value, name)
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


def make_lazy(package: str, exports: Mapping[str, tuple[str, ...]]) -> None:
    """Make the already imported ``package`` lazy: ``exports`` maps each of its modules
    (relative, as in ``from .bus import EventBus``: ``".bus"``) to the names it exports.
    Call it at the end of the package's ``__init__``; names the package binds itself
    (``__version__``) are unaffected."""
    outside = sorted(module for module in exports if not module.startswith("."))
    if outside:
        # Only the package's own modules: what is imported lazily is the package's own
        # code, as if imported at the top of its __init__.
        raise ValueError(
            f"make_lazy({package!r}): {', '.join(map(repr, outside))} is not one of the "
            f"package's modules; name them relative to it ('.bus', '..errors')."
        )
    owners = {name: module for module, names in exports.items() for name in names}
    kind = type(LazyPackage.__name__, (LazyPackage,), {"owners": owners})
    sys.modules[package].__class__ = kind
