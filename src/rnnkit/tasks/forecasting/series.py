"""A forecasting CSV as a series: its numeric columns, its targets and the protocol's row borders.

The series is cut chronologically into train/validation/test rows, by fractions or by row
counts (``8640,2880,2880``: the ETTh borders). One or several ``targets`` are forecast (the
papers' settings: S, one column predicts itself; MS, all columns predict one; M, all predict all).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...data.csv import DataFormatError, open_text, read_table
from ...errors import ConfigError


@dataclass
class SeriesData:
    """``values`` (N, F) float64 of ``columns``; ``targets`` are the indices of the target
    columns among them; ``lines`` the file line of each row, ``bad_cells`` the cells read as NaN
    (``bad_cells="keep"``)."""

    columns: list[str]
    values: np.ndarray
    targets: list[int]
    lines: np.ndarray | None = None
    bad_cells: list = field(default_factory=list)


def numeric_columns(path: str | Path) -> list[str]:
    """The header's columns whose first data cell is a number (dates and labels are skipped)."""
    with open_text(path) as (stream, source):
        reader = csv.reader(stream)
        header = next((row for row in reader if row), None)
        first = next((row for row in reader if row), None)
    if header is None or first is None:
        raise DataFormatError(f"{source}: no data rows after the header")
    return [name.strip() for name, cell in zip(header, first) if _is_number(cell)]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def target_names(target: str, path: str | Path, features: Sequence[str] | None = None) -> list[str]:
    """``--target``: one column, a comma-separated list, or ``all`` (every feature column, or
    every numeric column); each must be a numeric column of the file."""
    numeric = numeric_columns(path)
    if target.strip().lower() == "all":
        return list(features) if features else numeric
    names = [t.strip() for t in target.split(",") if t.strip()]
    for name in names:
        if name not in numeric:
            raise ConfigError(f"target (--target): column {name!r} is not a numeric column of "
                              f"{path}; its numeric columns are {numeric}")
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"target (--target): expected a column, a comma-separated list of "
                          f"distinct columns or 'all', got {target!r}")
    return names


def load_series(path: str | Path, targets: Sequence[str],
                features: Sequence[str] | None = None, bad_cells: str = "raise") -> SeriesData:
    """The feature columns (default: every numeric column) with the targets among them;
    ``bad_cells="keep"`` reads cells that are not finite numbers as NaN (``read_table``)."""
    columns = list(features) if features else numeric_columns(path)
    columns += [t for t in targets if t not in columns]
    table = read_table(path, numeric=columns, bad_cells=bad_cells)
    return SeriesData(columns, table.values, [columns.index(t) for t in targets], table.lines,
                      table.bad_cells)


def split_rows(n: int, split: Sequence[float]) -> tuple[int, int, int]:
    """(end of train, end of validation, end of test) rows for train/val/test fractions (each
    in (0, 1), summing to at most 1) or row counts (``8640,2880,2880``, summing to at most n)."""
    parts = [float(s) for s in split]
    counts = len(parts) == 3 and all(p >= 1 and p == int(p) for p in parts)
    if counts:
        ends = tuple(int(e) for e in np.cumsum(parts))
        if ends[-1] > n:
            raise ConfigError(f"split: the row counts {[int(p) for p in parts]} add up to "
                              f"{ends[-1]}, but the file has {n} rows")
        return ends  # type: ignore[return-value]
    if len(parts) != 3 or min(parts) <= 0 or max(parts) >= 1 or sum(parts) > 1 + 1e-9:
        raise ConfigError(f"split: expected three positive fractions train,val,test summing to "
                          f"at most 1, or three row counts, got {list(split)}")
    train, val, test = (int(round(n * f)) for f in np.cumsum(parts))  # 0.7+0.1+0.2 < 1.0
    return train, val, test
