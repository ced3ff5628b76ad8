"""``atlas_eda`` and ``atlas_eda.testing`` import their names lazily (atlas_eda/_lazy.py):
every public name still imports, is the object its module defines, is listed by ``dir()``
and is what type checkers see; importing either package loads none of the library."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import atlas_eda
import atlas_eda.testing

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"atlas_eda": atlas_eda, "atlas_eda.testing": atlas_eda.testing}


def fresh(script: str, tmp_path: Path) -> str:
    """What ``script`` prints, run in a fresh interpreter (this one has imported it all)."""
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def type_checking_imports(package: str) -> dict[str, str]:
    """What the package imports under ``if TYPE_CHECKING:`` (what mypy sees): each name
    and the absolute name of the module it comes from."""
    path = ROOT / Path(*package.split(".")) / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                module = importlib.util.resolve_name(
                    "." * statement.level + (statement.module or ""), package
                )
                found.update({alias.name: module for alias in statement.names})
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_what_type_checkers_see_is_all_the_package_exports(package: str) -> None:
    assert sorted(type_checking_imports(package)) == sorted(PACKAGES[package].__all__)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_the_object_its_module_defines(package: str) -> None:
    for name, module in type_checking_imports(package).items():
        assert getattr(PACKAGES[package], name) is getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_imports_in_a_fresh_interpreter(package: str, tmp_path: Path) -> None:
    names = PACKAGES[package].__all__
    script = (
        f"from {package} import {', '.join(names)}\n"
        f"import {package} as package\n"
        f"print(all(name in dir(package) for name in package.__all__))\n"
        f"print(sorted(name for name in package.__all__ if name not in vars(package)))"
    )
    assert fresh(script, tmp_path).splitlines() == ["True", "[]"]


def test_a_star_import_gives_every_public_name(tmp_path: Path) -> None:
    script = (
        "from atlas_eda import *\n"
        "from atlas_eda.testing import *\n"
        "import atlas_eda, atlas_eda.testing\n"
        "names = [*atlas_eda.__all__, *atlas_eda.testing.__all__]\n"
        "print(sorted(name for name in names if name not in globals()))"
    )
    assert fresh(script, tmp_path) == "[]"


def test_importing_the_packages_loads_none_of_the_library(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "import atlas_eda, atlas_eda.testing\n"
        "print(sorted(name for name in sys.modules if name.startswith(('atlas_eda.', "
        "'blinker', 'effect', 'eventsourcing', 'aspectlib', 'cloudevents'))))"
    )
    assert fresh(script, tmp_path) == "['atlas_eda._lazy', 'atlas_eda.testing']"


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match=r"^module 'atlas_eda' has no attribute 'EventBuss'$"):
        atlas_eda.EventBuss  # noqa: B018
    assert not hasattr(atlas_eda.testing, "Replay")
    with pytest.raises(ImportError, match="cannot import name 'Nothing' from 'atlas_eda'"):
        from atlas_eda import Nothing  # noqa: F401


@pytest.mark.parametrize(
    "imports",
    [
        "import atlas_eda.testing.replay\nfrom atlas_eda.testing import replay",
        "from atlas_eda.testing import replay\nimport atlas_eda.testing.replay",
        "from atlas_eda.testing.replay import MODES\nfrom atlas_eda.testing import replay",
    ],
    ids=["module-first", "function-first", "from-module-first"],
)
def test_replay_is_the_function_whichever_is_imported_first(imports: str, tmp_path: Path) -> None:
    # atlas_eda.testing exports the function replay of its module replay: importing the
    # module must not put the module where the function was.
    script = (
        f"{imports}\n"
        "import sys, atlas_eda.testing\n"
        "module = sys.modules['atlas_eda.testing.replay']\n"
        "print(replay is module.replay, atlas_eda.testing.replay is module.replay)"
    )
    assert fresh(script, tmp_path) == "True True"


def test_submodules_still_import_from_their_package() -> None:
    from atlas_eda import bus, testing

    assert bus.EventBus is atlas_eda.EventBus
    assert testing is atlas_eda.testing


def test_the_postgres_helper_is_loaded_only_by_its_own_name(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from atlas_eda import *\n"
        "from atlas_eda.testing import *\n"
        "loaded = 'atlas_eda.testing.postgres' in sys.modules\n"
        "from atlas_eda.testing.postgres import start_cluster\n"
        "print(loaded, callable(start_cluster))"
    )
    assert fresh(script, tmp_path) == "False True"


def test_only_the_packages_own_modules_can_be_made_lazy() -> None:
    from atlas_eda._lazy import make_lazy

    with pytest.raises(ValueError, match=r"make_lazy\('atlas_eda'\): 'os' is not one of"):
        make_lazy("atlas_eda", {"os": ("system",), ".bus": ("EventBus",)})
    assert not hasattr(atlas_eda, "system")
