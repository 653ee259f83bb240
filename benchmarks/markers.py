"""Generated blocks in the docs: text between ``<!-- name: begin -->`` and ``<!-- name: end -->``.

Every measured figure has one source: the script that measures it writes its block into
docs/benchmarks.md or docs/results.md, and the README copies blocks from there
(``python tools/docs_check.py --write``). Nothing else edits the text between the markers.
"""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS_DOC = ROOT / "docs" / "benchmarks.md"
RESULTS_DOC = ROOT / "docs" / "results.md"
# the name is group 1, the text between the markers (without their newlines) group 2
BLOCK = re.compile(r"<!-- ([\w.-]+): begin -->\n(.*?)\n?<!-- \1: end -->", re.S)


def marked(name: str, text: str) -> str:
    """text between <!-- name: begin --> and <!-- name: end -->."""
    return f"<!-- {name}: begin -->\n{text}\n<!-- {name}: end -->"


def blocks(doc: str) -> dict[str, str]:
    """Every generated block of a document: name -> the text between its markers."""
    return {m.group(1): m.group(2) for m in BLOCK.finditer(doc)}


def replace_marked(doc: str, name: str, text: str, before: str = "") -> str:
    """doc with block ``name`` replaced by text; a new block goes before ``before`` if doc has it,
    else at the end."""
    new = marked(name, text)
    pattern = re.compile(rf"<!-- {re.escape(name)}: begin -->.*?<!-- {re.escape(name)}: end -->", re.S)
    if pattern.search(doc):
        return pattern.sub(lambda _: new, doc, count=1)
    if before and before in doc:
        return doc.replace(before, new + "\n\n" + before, 1)
    return doc.rstrip("\n") + "\n\n" + new + "\n"


def write_marked(name: str, text: str, doc: pathlib.Path = BENCHMARKS_DOC, before: str = "") -> None:
    """Replace (or add) block ``name`` of the file ``doc``."""
    old = doc.read_text() if doc.exists() else f"# {doc.stem.capitalize()}\n"
    doc.write_text(replace_marked(old, name, text, before))
