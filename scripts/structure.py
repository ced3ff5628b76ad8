"""Print the shape of the atlas_eda package: its longest functions and its import order.

Run from the repository root (no dependencies beyond the standard library)::

    python scripts/structure.py            # both reports
    python scripts/structure.py --top 20   # the 20 longest functions
    python scripts/structure.py --root ../other-checkout   # another tree, to compare

*Longest functions* lists each function or method by its length in lines and in
statements (what ruff's PLR0915 counts). *Import order* lists the package's modules so
that each comes after every module it imports at run time (imports under
``if TYPE_CHECKING:`` and inside functions are left out: they do not order loading), and
names any cycle among module-level imports. Exit status 1 when there is a cycle.
"""

from __future__ import annotations

import argparse
import ast
import graphlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "atlas_eda"
LONG = 50  # lines: the length the issue that asked for this script counts functions past


def module_name(path: Path, root: Path) -> str:
    """The dotted module name of a file under the package in ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package in ``root``, by dotted name."""
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def statements(node: ast.AST) -> int:
    """Statements in a function body, nested blocks included (as PLR0915 counts them)."""
    count = 0
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.stmt):
            count += 1
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                count += statements(child)
        elif isinstance(child, ast.excepthandler | ast.match_case):
            count += statements(child)
    return count


def functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int, int]]:
    """``(qualified name, lines, statements)`` of every function in ``tree``."""
    found: list[tuple[str, int, int]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            found.append((name, lines, statements(node)))
            found.extend(functions(node, f"{name}."))
        elif isinstance(node, ast.ClassDef):
            found.extend(functions(node, f"{prefix}{node.name}."))
    return found


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``from ... import`` statement in ``current`` names."""
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def runtime_imports(tree: ast.Module, current: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that ``current`` imports when it is loaded."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(current, is_package, node)
                names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(node, field, None)
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                        break
                    if isinstance(inner, list):
                        visit([n for n in inner if isinstance(n, ast.stmt)])
                        for handler in inner:
                            if isinstance(handler, ast.ExceptHandler):
                                visit(handler.body)
                continue
            for imported in names:
                target = imported
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != current:
                    found.add(target)

    visit(tree.body)
    return found


def main(argv: list[str] | None = None) -> int:
    """Print both reports; 1 when the module-level imports have a cycle."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=12, help="how many functions (default 12)")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the checkout to read (default: this one)"
    )
    args = parser.parse_args(argv)
    found = modules(args.root.resolve())
    known = set(found)
    rows: list[tuple[int, int, str]] = []
    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for qualname, lines, count in functions(tree):
            rows.append((lines, count, f"{name}:{qualname}"))
        graph[name] = runtime_imports(tree, name, path.name == "__init__.py", known)
    rows.sort(reverse=True)
    over = sum(1 for lines, _, _ in rows if lines > LONG)
    print(f"Longest functions ({len(rows)} in all, {over} over {LONG} lines):")
    print(f"{'lines':>6} {'stmts':>6}  function")
    for lines, count, where in rows[: args.top]:
        print(f"{lines:>6} {count:>6}  {where}")
    print()
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in found.items()), reverse=True)
    print("Largest modules (lines): " + ", ".join(f"{n} {s}" for s, n in sizes[:6]))
    print()
    # The package's __init__ imports everything it re-exports; it is the top, not a layer.
    layered = {n: {d for d in deps if d != PACKAGE} for n, deps in graph.items()}
    sorter = graphlib.TopologicalSorter(layered)
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        print(f"Import cycle among module-level imports: {' -> '.join(exc.args[1])}")
        return 1
    print("Layers (each module one above the highest module it imports):")
    layer: dict[str, int] = {}
    for name in order:
        layer[name] = 1 + max((layer[d] for d in layered[name]), default=0)
    for number in range(max(layer.values()), 0, -1):
        members = sorted(
            n.removeprefix(PACKAGE + ".") or PACKAGE for n in order if layer[n] == number
        )
        print(f"{number:>3}. {', '.join(members)}")
    print()
    print("Import order (each module after everything it imports at load time):")
    for index, name in enumerate(order, 1):
        deps = sorted(d.removeprefix(PACKAGE + ".") for d in layered[name])
        short = name.removeprefix(PACKAGE + ".") or PACKAGE
        print(f"{index:>3}. {short:<28} <- {', '.join(deps) if deps else '(nothing of ours)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
