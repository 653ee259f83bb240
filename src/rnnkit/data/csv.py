"""A strict CSV reader for numeric series: every bad cell is reported by file, line and column.

Line numbers are 1-based lines of the file, the header being line 1. A ``.zip`` path reads the
first ``.csv`` member inside it. Blank lines are skipped; anything else that is not a finite number
in a numeric column (text, an empty cell, ``nan``, ``inf``), a missing column, a short row or an
empty file raises :class:`DataFormatError`.

``bad_cells="keep"`` reads such a file anyway, for a report on all of its problems (the doctor):
every cell of a numeric column that is not a finite number becomes NaN in ``values`` and is
listed in ``Table.bad_cells`` with its line, column and text (a short row's missing cells too).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataFormatError


def bad_cell(source: str, line: int, column: str, message: str) -> DataFormatError:
    """An error naming the file, the 1-based line and the column."""
    return DataFormatError(f"{source}: line {line}, column {column!r}: {message}")


@dataclass
class Table:
    """Columns of a CSV file: ``values`` (N, C) float64 for ``columns``, ``text`` columns as
    lists of N strings, and ``lines`` (N,) the file line of each row (for later errors)."""

    source: str
    columns: list[str]
    values: np.ndarray
    text: dict[str, list[str]]
    lines: np.ndarray
    bad_cells: list[BadCell] = field(default_factory=list)  # with bad_cells="keep" only


@dataclass(frozen=True)
class BadCell:
    """A cell of a numeric column that holds no finite number: where, and what it holds."""

    line: int
    column: str
    text: str | None  # None: the row ends before this column

    @property
    def kind(self) -> str:
        """'empty', 'missing' (a short row), 'nan', 'inf' or 'text'."""
        if self.text is None:
            return "missing"
        cell = self.text.strip()
        if not cell:
            return "empty"
        try:
            value = float(cell)
        except ValueError:
            return "text"
        return "nan" if value != value else "inf"


@contextlib.contextmanager
def open_text(path: str | Path) -> Iterator[tuple[io.TextIOBase, str]]:
    """The text stream of a ``.csv`` file, or of the first ``.csv`` inside a ``.zip``, and the
    name to use for it in errors."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() != ".zip":
        with open(path, newline="", encoding="utf-8") as f:
            yield f, str(path)
        return
    with zipfile.ZipFile(path) as archive:
        members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
        if not members:
            raise DataFormatError(f"{path}: the archive holds no .csv file")
        with archive.open(members[0]) as raw:
            yield io.TextIOWrapper(raw, encoding="utf-8", newline=""), f"{path}:{members[0]}"


def iter_chunks(path: str | Path, numeric: Sequence[str] | None = None, text: Sequence[str] = (),
                chunk_rows: int = 1 << 16, bad_cells: str = "raise") -> Iterator[Table]:
    """Reads the file ``chunk_rows`` rows at a time; each chunk is a :class:`Table`.

    ``numeric`` names the columns to parse as finite floats (default: every column not in
    ``text``); ``text`` names columns kept as strings. Other columns are ignored. ``bad_cells``:
    'raise' (default) or 'keep' (see the module docstring).
    """
    if bad_cells not in ("raise", "keep"):
        raise ValueError(f"bad_cells must be 'raise' or 'keep', got {bad_cells!r}")
    keep = bad_cells == "keep"
    with open_text(path) as (stream, source):
        reader = csv.reader(stream)
        header = _header(reader, source)
        numeric = [c for c in header if c not in text] if numeric is None else list(numeric)
        idx = _indices(header, [*numeric, *text], source)
        rows, lines, total = [], [], 0
        for row in reader:
            if not row:
                continue
            if not (keep and len(row) < len(header)):
                _check_width(row, header, source, reader.line_num)
            rows.append([row[i] if i < len(row) else None for i in idx])
            lines.append(reader.line_num)
            total += 1
            if len(rows) == chunk_rows:
                yield _parse(rows, lines, numeric, list(text), source, keep)
                rows, lines = [], []
        if rows:
            yield _parse(rows, lines, numeric, list(text), source, keep)
        if total == 0:
            raise DataFormatError(f"{source}: no data rows after the header")


def read_table(path: str | Path, numeric: Sequence[str] | None = None,
               text: Sequence[str] = (), bad_cells: str = "raise") -> Table:
    """The whole file as one :class:`Table` (see :func:`iter_chunks`)."""
    chunks = list(iter_chunks(path, numeric, text, bad_cells=bad_cells))
    first = chunks[0]
    return Table(first.source, first.columns,
                 np.concatenate([c.values for c in chunks]),
                 {k: [s for c in chunks for s in c.text[k]] for k in first.text},
                 np.concatenate([c.lines for c in chunks]),
                 [cell for c in chunks for cell in c.bad_cells])


def parse_timestamps(table: Table, column: str, pattern: str) -> np.ndarray:
    """The text column ``column`` as (N,) datetime64[s].

    ``pattern`` is a regular expression with named groups Y, m, d, H, M, S, e.g.
    ``r"(?P<d>\\d\\d)\\.(?P<m>\\d\\d)\\.(?P<Y>\\d{4}) (?P<H>\\d\\d):(?P<M>\\d\\d):(?P<S>\\d\\d)"``.
    """
    regex = re.compile(pattern)
    iso = []
    for cell, line in zip(table.text[column], table.lines):
        match = regex.fullmatch(cell.strip())
        if match is None:
            raise bad_cell(table.source, int(line), column, f"expected a date, got {cell!r}")
        g = match.groupdict()
        iso.append(f"{g['Y']}-{g['m']}-{g['d']}T{g['H']}:{g['M']}:{g['S']}")
    try:
        return np.array(iso, dtype="datetime64[s]")
    except ValueError:
        for text, line in zip(iso, table.lines):
            try:
                np.datetime64(text, "s")
            except ValueError:
                raise bad_cell(table.source, int(line), column,
                               f"not a valid date: {text}") from None
        raise


def _header(reader, source: str) -> list[str]:
    for row in reader:
        if row:
            return [c.strip() for c in row]
    raise DataFormatError(f"{source}: the file is empty (no header line)")


def _indices(header: list[str], wanted: list[str], source: str) -> list[int]:
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataFormatError(f"{source}: line 1 (header): missing column {missing[0]!r}; "
                              f"the header has {header}")
    return [header.index(c) for c in wanted]


def _check_width(row: list[str], header: list[str], source: str, line: int) -> None:
    if len(row) < len(header):
        raise bad_cell(source, line, header[len(row)],
                       f"missing cell (the row has {len(row)} of {len(header)} fields)")
    if len(row) > len(header):
        raise DataFormatError(f"{source}: line {line}: {len(row)} fields, the header has "
                              f"{len(header)}")


def _parse(rows: list[list[str]], lines: list[int], numeric: list[str], text: list[str],
           source: str, keep: bool = False) -> Table:
    """Rows of cells (numeric columns first, then text) -> a Table; (R, C) float64 values."""
    n = len(numeric)
    cells = itertools.chain.from_iterable(r[:n] for r in rows)
    try:
        values = np.fromiter(map(float, cells), np.float64, len(rows) * n).reshape(len(rows), n)
    except (ValueError, TypeError):
        if not keep:
            raise _non_number_error(rows, lines, numeric, source) from None
        values = np.array([[_number_or_nan(c) for c in r[:n]] for r in rows],
                          dtype=np.float64).reshape(len(rows), n)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad) and not keep:
        i, j = bad[0]
        raise bad_cell(source, lines[i], numeric[j],
                       f"expected a finite number, got {rows[i][j]!r}")
    found = [BadCell(int(lines[i]), numeric[j], rows[i][j]) for i, j in bad]
    values[~np.isfinite(values)] = np.nan  # inf cells too: every bad cell reads as NaN
    texts = {c: [r[n + k] or "" for r in rows] for k, c in enumerate(text)}
    return Table(source, numeric, values, texts, np.asarray(lines), found)


def _number_or_nan(cell: str | None) -> float:
    try:
        return float(cell)
    except (TypeError, ValueError):
        return np.nan


def _non_number_error(rows: list[list[str]], lines: list[int], columns: list[str],
                      source: str) -> DataFormatError:
    """The error for the first cell of the numeric columns that is not a number."""
    for i, row in enumerate(rows):
        for j, cell in enumerate(row[:len(columns)]):
            try:
                float(cell)
            except ValueError:
                what = "an empty cell" if not cell.strip() else repr(cell)
                return bad_cell(source, lines[i], columns[j], f"expected a number, got {what}")
    return DataFormatError(f"{source}: lines {lines[0]}-{lines[-1]}: a cell is not a number")
