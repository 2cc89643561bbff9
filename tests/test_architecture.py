"""The house rules, checked on the code: stages import only the vocabulary and lower stages.

The layers below are the README's "Architecture" section as data. A module may import
its own package and any lower layer; never a higher one, never in a circle, and never a
project module inside a function (except in the CLI, which defers imports for start-up).
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("monitor", "jobs", "reports")

# lowest first; a package is named by its dotted prefix
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "monitor.types",
        "monitor.textsafe",
        "monitor.clock",
        "monitor.aio",
        "monitor.signals",
        "monitor.pagesim",
        "monitor.sections",
    ),
    ("monitor.policy",),
    ("monitor.config",),
    ("monitor.hostnames",),
    ("monitor.urls", "monitor.logs", "monitor.progress"),
    ("monitor.corpus",),
    ("monitor.links",),
    ("monitor.probe",),
    ("monitor.fetch",),
    ("monitor.verdict",),
    ("monitor.alerts",),
    ("monitor.store", "monitor.migrations"),
    ("reports",),
    ("monitor.run",),
    ("monitor.distributed",),
    ("jobs",),
    ("monitor.cli",),
)
FACE = "monitor"  # monitor/__init__.py: the version only, importable from anywhere


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in PRODUCT:
        for path in (ROOT / top).rglob("*.py"):
            if "versions" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    best, rank = -1, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, rank = len(name), i
    return rank


def _package(module: str) -> str:
    """The unit that may import itself freely: the layer entry the module belongs to."""
    rank = _layer(module)
    return max((n for n in LAYERS[rank] if module == n or module.startswith(n + ".")), key=len)


def _resolve(name: str) -> str | None:
    """The project module an import names (``from monitor.run import check`` names monitor.run.check)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "typing":
            continue
        for name in names:
            target = _resolve(name)
            if target is not None:
                found.append((target, node.lineno, id(node) in nested))
    return found


def _type_checking_lines(path: Path) -> set[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in ast.walk(node):
                if hasattr(sub, "lineno"):
                    lines.add(sub.lineno)
    return lines


def test_every_product_module_has_a_layer() -> None:
    """A new package must be placed in the house before it can be built on."""
    assert [m for m in MODULES if m != FACE and _layer(m) < 0] == []


def test_no_module_imports_a_higher_layer() -> None:
    """Data flows one way: corpus → links → fetch → verdict → store → report/alert, wired by run/."""
    upward = []
    for module, path in MODULES.items():
        if module == FACE:
            continue
        skip = _type_checking_lines(path)
        for target, line, _ in _imports(path):
            if target == FACE or line in skip or _package(target) == _package(module):
                continue
            if _layer(target) > _layer(module):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert upward == []


def test_no_project_imports_inside_functions_outside_the_cli() -> None:
    """An import hidden in a function body is how circles hide; only the CLI defers for start-up."""
    hidden = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for module, path in MODULES.items()
        if not module.startswith("monitor.cli")
        for target, line, inside in _imports(path)
        if inside
    ]
    assert hidden == []


def test_import_graph_has_no_circles() -> None:
    """No two modules need each other, at any distance."""
    graph = {m: {t for t, _, _ in _imports(p) if t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    # a package face re-exporting its own submodules is not a circle of code
    cycles = [c for c in cycles if not any(a.startswith(b + ".") for a, b in itertools.pairwise(c))]
    assert cycles == []


# still to be split along their seams; the list may only shrink
OVERSIZED = {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    """A module over 450 lines holds more than one thing; split it along its seams."""
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    if module in OVERSIZED:
        assert lines > 450, f"{module} is small now: take it off OVERSIZED"
    else:
        assert lines <= 450, f"{module} has {lines} lines"


def test_the_readme_architecture_matches_the_tree() -> None:
    """Every package in the tree has a line in the README's architecture section, and no other."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    packages = sorted(
        str(p.parent.relative_to(ROOT)) + "/"
        for top in PRODUCT
        for p in (ROOT / top).rglob("__init__.py")
        if "migrations" not in p.parts
    )
    missing = [p for p in packages if p not in section]
    assert missing == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_uses(path: Path) -> list[str]:
    """`from project.mod import _name`, `mod._name` and `setattr(mod, "_name", ...)` on a project module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    project = (*PRODUCT, "tests")
    modules: set[str] = set()  # local names bound to project modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in project:
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{alias.name}")
                elif f"{node.module}.{alias.name}" in MODULES:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(a.asname for a in node.names if a.asname and a.name.split(".")[0] in project)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and _private(node.attr)
        ):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in modules
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            found.append(f"{path.name}:{node.lineno} patches {node.args[0].id}.{node.args[1].value}")
    return found


def test_no_private_names_cross_a_module_boundary() -> None:
    """A `_name` is its module's own business: another module (or a test) that needs it gets a public name."""
    paths = [*MODULES.values(), *sorted((ROOT / "tests").glob("*.py"))]
    assert [use for path in paths for use in _private_uses(path)] == []
