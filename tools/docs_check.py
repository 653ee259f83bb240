"""Every measured figure has one source; every file a doc names exists.

Figures live in docs/results.md and docs/benchmarks.md, between the markers the scripts that
measure them write (``<!-- name: begin -->`` ... ``<!-- name: end -->``, benchmarks/markers.py).
The README shows a figure only as a copy of such a block, between
``<!-- figure:name:begin -->`` and ``<!-- figure:name:end -->``; ``--write`` makes the copies.
The check fails on a copy that differs from its source (or names no source), on a path in
README.md or docs/ (in backticks, a code block or a link) that does not exist, and on a dotted
name (``rnnkit.engine.explain``) that does not resolve in this tree's package.

    python tools/docs_check.py            # check: one line per problem, exit status 1 if any
    python tools/docs_check.py --write    # copy the blocks into the README, then check
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))  # the names the docs use resolve in this tree's package

from markers import blocks  # noqa: E402

SOURCES = ("docs/results.md", "docs/benchmarks.md")
README = "README.md"
FIGURE = re.compile(r"(<!-- figure:([\w.-]+):begin -->\n)(.*?)(<!-- figure:\2:end -->)", re.S)
# a path of the repository at the start of a token: the folders whose files the docs name, and
# files of the package named from inside it (`engine/compiled.py`)
PATH = re.compile(r"(?<![\w./-])(?:(?:src/rnnkit|rnnkit|tests|benchmarks|examples|docs|tools|\.ci)/[\w./*:-]*"
                  r"|(?:cells|engine|layers|models|training|tasks|data|interop|diagnosis)/[\w./-]+\.(?:py|cpp))")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOTTED = re.compile(r"\brnnkit(?:\.[A-Za-z_]\w*)+")


def source_blocks(root: pathlib.Path = ROOT) -> tuple[dict[str, str], list[str]]:
    """The generated blocks of docs/results.md and docs/benchmarks.md, and a problem per name
    that both define."""
    found: dict[str, str] = {}
    problems = []
    for name in SOURCES:
        for block, text in blocks((root / name).read_text()).items():
            if block in found:
                problems.append(f"{name}: block {block!r} is defined in two sources")
            found[block] = text
    return found, problems


def copy_figures(readme: str, sources: dict[str, str]) -> str:
    """readme with every figure block's content replaced by its source block (unknown names kept)."""
    def fill(m: re.Match) -> str:
        name = m.group(2)
        return m.group(0) if name not in sources else f"{m.group(1)}{sources[name]}\n{m.group(4)}"
    return FIGURE.sub(fill, readme)


def stale_figures(readme: str, sources: dict[str, str], where: str = README) -> list[str]:
    """A problem per figure block of readme that names no source or differs from it."""
    problems = []
    for m in FIGURE.finditer(readme):
        name, text = m.group(2), m.group(3).rstrip("\n")
        if name not in sources:
            problems.append(f"{where}: figure {name!r} has no block in {' or '.join(SOURCES)}")
        elif text != sources[name]:
            problems.append(f"{where}: figure {name!r} differs from its source "
                            f"(python tools/docs_check.py --write copies it)")
    return problems


def named_paths(text: str) -> list[str]:
    """Repository paths a markdown text names in code spans and code blocks (relative to the root)."""
    code = [m.group(0) for m in FENCE.finditer(text)]
    code += CODE_SPAN.findall(FENCE.sub("", text))
    return [m.group(0) for c in code for m in PATH.finditer(c)]


def exists(root: pathlib.Path, path: str) -> bool:
    """Whether path names something in the repository (``tests/x.py::test`` names tests/x.py,
    ``rnnkit/...`` and ``engine/...`` the package under src/, and a glob any match)."""
    path = path.split("::")[0].rstrip(".,:;")
    if "..." in path:  # an elided path ("src/rnnkit/...") names a folder, not a file
        path = path.split("...")[0]
    if path.startswith("rnnkit/"):
        path = "src/" + path
    if "*" in path:
        return any(root.glob(path))
    return (root / path).exists() or (root / "src" / "rnnkit" / path).exists()


def missing_files(root: pathlib.Path = ROOT) -> list[str]:
    """A problem per path (code span, code block or relative link) of a doc that does not exist."""
    problems = []
    for doc in [root / README, *sorted((root / "docs").rglob("*.md"))]:
        text, where = doc.read_text(), doc.relative_to(root)
        problems += [f"{where}: names {p}, which does not exist"
                     for p in named_paths(text) if not exists(root, p)]
        for target in LINK.findall(FENCE.sub("", text)):
            path = target.split("#")[0]
            if path and not re.match(r"\w+:", path) and not (doc.parent / path).exists():
                problems.append(f"{where}: links to {target}, which does not exist")
    return problems


def resolves(name: str) -> bool:
    """Whether a dotted name is a module of the package or an attribute of one."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError:
            continue
        for attr in parts[k:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def unresolved_names(root: pathlib.Path = ROOT) -> list[str]:
    """A problem per ``rnnkit.x.y`` a doc names that is neither a module nor an attribute."""
    problems = []
    for doc in [root / README, *sorted((root / "docs").rglob("*.md"))]:
        names = dict.fromkeys(DOTTED.findall(doc.read_text()))
        problems += [f"{doc.relative_to(root)}: names {n}, which does not resolve"
                     for n in names if not resolves(n)]
    return problems


def check(root: pathlib.Path = ROOT) -> list[str]:
    """Every problem: figures that differ from their source, files and names that do not exist."""
    sources, problems = source_blocks(root)
    return (problems + stale_figures((root / README).read_text(), sources) + missing_files(root)
            + unresolved_names(root))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="copy the figure blocks into the README")
    args = parser.parse_args(argv)
    if args.write:
        readme = ROOT / README
        readme.write_text(copy_figures(readme.read_text(), source_blocks()[0]))
    problems = check()
    print("\n".join(problems) or "docs agree with their sources; every file and name they mention exists")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
