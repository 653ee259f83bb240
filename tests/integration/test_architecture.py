"""The layout keeps the layers of the system: no import circles, no import from a lower floor up
to a higher one, no module using another module's private names.

Floors, lowest first (a package or top-level module of rnnkit sits on one floor; it may import
its own floor and those below, never above):

  errors, optional -> cells, data, activations, initializers, constraints -> engine -> layers
  -> models, training -> tasks, interop, diagnosis, plots, report -> cli

The imports are read from the source with ``ast``: module-level and function-level imports alike,
and ``importlib.import_module("rnnkit...")`` with a literal name. Importing ``rnnkit.a.b`` also runs
``rnnkit/a/__init__.py``, so that counts as an import of the package too (circles through a
package's face are circles).
"""

from __future__ import annotations

import ast
from pathlib import Path

import rnnkit

ROOT = Path(rnnkit.__file__).parent
FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors", "version", "optional", "configured"),
    ("activations", "initializers", "constraints", "storage", "cells", "data", "datasets"),
    ("engine",),
    ("layers", "regularizers"),
    ("models", "training", "losses", "metrics", "optimizers", "callbacks"),
    ("tasks", "interop", "diagnosis", "plots", "report"),
    ("cli",),
    ("",),  # the package face, rnnkit/__init__.py
)
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}


def _modules() -> dict[str, tuple[bool, str]]:
    """Every module of rnnkit by dotted name (a package by its own name, for its __init__.py):
    (is a package, source)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ["rnnkit", *path.relative_to(ROOT).with_suffix("").parts]
        package = parts[-1] == "__init__"
        if package:
            parts.pop()
        out[".".join(parts)] = (package, path.read_text(encoding="utf-8"))
    return out


MODULES = _modules()


def _package(name: str, modules) -> str:
    """The package a module's relative imports start from."""
    return name if modules[name][0] else name.rpartition(".")[0]


def _targets(node: ast.AST, importer: str, modules=MODULES) -> list[str]:
    """The rnnkit modules an import statement (or import_module call) loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = _package(importer, modules).split(".")
            anchor = ".".join(package[:len(package) - node.level + 1])
            base = f"{anchor}.{base}" if base else anchor
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
          and node.args and isinstance(node.args[0], ast.Constant)):
        names = [node.args[0].value]
    else:
        return []
    found = []
    for name in names:
        while name and name not in modules:  # "pkg.mod.func" -> "pkg.mod"
            name = name.rpartition(".")[0]
        if name.startswith("rnnkit"):
            found.append(name)
    return found


def _edges(modules=MODULES) -> dict[str, set[str]]:
    """importer -> the modules it runs: its imports and their packages' __init__ (those that are
    not its own packages, which are already running when it is imported)."""
    edges: dict[str, set[str]] = {}
    for name, (_, source) in modules.items():
        own = {name.rsplit(".", k)[0] for k in range(name.count(".") + 1)}
        out = edges.setdefault(name, set())
        for node in ast.walk(ast.parse(source)):
            for target in _targets(node, name, modules):
                parts = target.split(".")
                for k in range(1, len(parts) + 1):
                    module = ".".join(parts[:k])
                    if module not in own and module in modules:
                        out.add(module)
    return edges


def _upward(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (floor {_floor(a)}) imports {b} (floor {_floor(b)})"
                  for a, targets in edges.items() for b in targets if _floor(b) > _floor(a))


def _floor(module: str) -> int:
    key = module.split(".")[1] if "." in module else ""
    assert key in FLOOR, f"{module} is on no floor; add its package to FLOORS"
    return FLOOR[key]


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_a_higher_floor():
    upward = _upward(_edges())
    assert not upward, "imports that run up a floor:\n" + "\n".join(upward)


def test_no_import_circles():
    circles = _circles(_edges())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def _private_uses(name: str, source: str, modules=MODULES) -> list[str]:
    """``from rnnkit.x import _name`` and ``module._name`` on an imported rnnkit module."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> the rnnkit module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            targets = set(_targets(node, name, modules))
            for alias in node.names:
                full = alias.name if isinstance(node, ast.Import) else None
                if isinstance(node, ast.ImportFrom):
                    full = next((t for t in targets if t.endswith("." + alias.name)), None)
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and full is None:
                        found.append(f"{name}:{node.lineno} imports {alias.name}")
                if full in modules:
                    aliases[alias.asname or alias.name.split(".")[0]] = full
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__") and aliases[node.value.id] != name):
            found.append(f"{name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    found = [use for name, (_, source) in sorted(MODULES.items())
             for use in _private_uses(name, source)]
    assert not found, "private names used from another module:\n" + "\n".join(found)


def test_the_checks_find_an_upward_import_a_circle_and_a_private_name():
    """The three checks above on a made-up tree that breaks each rule once."""
    tree = {
        "rnnkit": (True, ""),
        "rnnkit.errors": (False, "def f():\n    from . import cli\n"),
        "rnnkit.cli": (False, ""),
        "rnnkit.layers": (True, "from .a import A\n"),
        "rnnkit.layers.a": (False, "from . import b\nA = 1\n"),
        "rnnkit.layers.b": (False, "import importlib\nimportlib.import_module('rnnkit.layers.a')\n"),
        "rnnkit.engine": (False, "from .layers import b as lb\nlb._hidden()\nfrom .cli import _x\n"),
    }
    edges = _edges(tree)
    assert _upward(edges) == [
        "rnnkit.engine (floor 2) imports rnnkit.cli (floor 6)",
        "rnnkit.engine (floor 2) imports rnnkit.layers (floor 3)",
        "rnnkit.engine (floor 2) imports rnnkit.layers.b (floor 3)",
        "rnnkit.errors (floor 0) imports rnnkit.cli (floor 6)"]
    assert _circles(edges) == [["rnnkit.layers.a", "rnnkit.layers.b"]]
    assert _private_uses("rnnkit.engine", tree["rnnkit.engine"][1], tree) == [
        "rnnkit.engine:3 imports _x", "rnnkit.engine:2 uses lb._hidden"]


def test_no_leftover_homes():
    """Moved modules leave no re-export module behind (nothing was released that needs one);
    the Keras-named namespaces are real API and stay; rnnkit.datasets is a real package."""
    import importlib
    import importlib.util

    for old in ("rnnkit.export", "rnnkit.tasks.plots", "rnnkit.interop.keras", "rnnkit.models.data",
                "rnnkit.diagnosis.plots", "rnnkit.training.regularizers", "rnnkit.data.datasets"):
        assert importlib.util.find_spec(old) is None, old
    for name in ("losses", "metrics", "callbacks", "optimizers", "regularizers", "datasets"):
        assert importlib.import_module(f"rnnkit.{name}").__file__
    from rnnkit import datasets

    assert datasets.imdb.__name__ == "rnnkit.datasets.imdb"
    assert (ROOT / "datasets" / "imdb.py").is_file()
