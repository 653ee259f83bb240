"""Reading the text files of the tasks, with errors that name the file, line and column."""

from __future__ import annotations

from pathlib import Path

from ..data.csv import DataFormatError, read_table


def labeled_texts(path: str | Path, text: str, label: str) -> tuple[list[str], list[str], list[int]]:
    """A CSV's ``text`` and ``label`` columns as strings, and the file line of every row."""
    table = read_table(path, numeric=[], text=(text, label))
    for column in (text, label):
        for cell, line in zip(table.text[column], table.lines):
            if not cell.strip():
                raise DataFormatError(f"{table.source}: line {line}, column {column!r}: empty "
                                      "cell")
    return table.text[text], [s.strip() for s in table.text[label]], table.lines.tolist()


def texts(path: str | Path, column: str) -> list[str]:
    """A CSV's ``column`` as strings."""
    return read_table(path, numeric=[], text=(column,)).text[column]


def pairs(path: str | Path) -> tuple[list[str], list[str]]:
    """A TSV of ``source<TAB>target`` lines (blank lines skipped) as two lists."""
    sources, targets = [], []
    for line_no, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not all(fields):
            raise DataFormatError(f"{path}: line {line_no}: expected 'source<TAB>target', got "
                                  f"{len(fields)} field(s): {line[:40]!r}")
        sources.append(fields[0])
        targets.append(fields[1])
    if not sources:
        raise DataFormatError(f"{path}: no source<TAB>target lines")
    return sources, targets


def read_text(path: str | Path) -> str:
    """The whole UTF-8 file; an empty one is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataFormatError(f"{path}: the file is empty")
    return text
