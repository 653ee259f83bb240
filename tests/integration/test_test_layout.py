"""The tests mirror the code: every package of src/rnnkit has its folder of tests (the tests of
src/rnnkit/<pkg>/<mod>.py are in tests/<pkg>/test_<mod>*.py), what tests share lives in
tests/helpers.py and no test module imports another, and the suite runs under pytest's default
import mode (rootdir, no __init__.py): every test module's name is unique in the tree."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from helpers import REPO

TESTS = REPO / "tests"
PACKAGE = REPO / "src" / "rnnkit"


def all_test_modules() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports, function-level imports included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_package_has_a_folder_of_tests():
    packages = [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    assert len(packages) >= 10  # cells, data, datasets, diagnosis, engine, interop, layers, ...
    missing = [name for name in packages if not list((TESTS / name).glob("test_*.py"))]
    assert not missing, f"src/rnnkit packages without tests/<package>/test_*.py: {missing}"


def test_no_test_module_imports_another():
    stems = {p.stem for p in all_test_modules()}
    offenders = {str(p.relative_to(TESTS)): sorted(imported_modules(p) & stems)
                 for p in sorted(TESTS.rglob("*.py"))}
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, f"test modules import other test modules (move what they share to " \
                          f"tests/helpers.py): {offenders}"


def test_module_names_are_unique_and_there_is_no_init():
    repeated = [name for name, n in Counter(p.name for p in all_test_modules()).items() if n > 1]
    assert not repeated, f"test module names used twice (pytest's rootdir import mode needs " \
                         f"unique names): {repeated}"
    assert not list(TESTS.rglob("__init__.py"))


def test_no_test_file_left_at_the_top():
    assert [p.name for p in TESTS.glob("test_*.py")] == []
