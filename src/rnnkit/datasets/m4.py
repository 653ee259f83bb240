"""The M4 competition's data (Makridakis, Spiliotis & Assimakopoulos, 2018/2020), one group
(frequency) at a time, in the organisers' files.

Each group has ``<Group>-train.csv`` (one series a row: the id in column ``"V1"``, e.g. ``"H1"``,
then its values, the row padded with empty cells up to the longest series) and
``<Group>-test.csv`` (the ``horizon`` values that follow each series). The files carry no
timestamps, so a series is indexed by its step. Evaluate forecasts with
:func:`rnnkit.data.evaluation.panel_scores` at the group's ``season``.

``load(path, "Hourly")`` reads the two files from a folder; ``load()`` downloads them from the
repository Mcompetitions/M4-methods (``Dataset/Train``, ``Dataset/Test``) into the cache.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.csv import DataFormatError, bad_cell, open_text
from ..data.download import fetch
from ..errors import ConfigError
from ..optional import require

URL = "https://raw.githubusercontent.com/Mcompetitions/M4-methods/master/Dataset/{split}/{name}"
# group: (horizon, season), the competition's: the season is M4-info.csv's "Frequency", the m of
# MASE and of Naive2's seasonality test
GROUPS = {"Yearly": (6, 1), "Quarterly": (8, 4), "Monthly": (18, 12), "Weekly": (13, 1),
          "Daily": (14, 1), "Hourly": (48, 24)}
# sha256 of the files in the repository's history (git blobs of its master); the Hourly pair is
# also the one in ../shared/data/m4. Files without an entry are taken as they come.
SHA256 = {
    "Hourly-train.csv": "ea59b7783573c49077a835ab6465c7d66f1474783360f310988a9a737fbca62f",
    "Hourly-test.csv": "71a57fccb15e534d973626ada4fb87febf789e9317715b7cc6dd3b5f90db6f42",
    "Weekly-train.csv": "d478d3f6ed673e6ed3c2cb0fbed5425f72eedd51318ebebeb0b5ecfcefc37714",
    "Weekly-test.csv": "3b2bc4be8e636e802260dcd843ca3c5da40536a1fbe1ecb3229a97dae4f44688",
    "Daily-test.csv": "633b0815626ae266d36872c4d53e95eb93ee8d43e79587fceec519eba3e6b05e",
    "Quarterly-test.csv": "bf1cab3b969a744c220cdc148e3829803eaa5da2754270fc4f376e775cd7d0ae",
    "Yearly-test.csv": "6dc2dd45b3af320389e2d3735cb4b3cdf320b63cbcda15d1a17193ab99702306",
}
ID_COLUMN = "V1"


@dataclass
class M4Data:
    """One M4 group: S series named ``ids`` (file order: "H1", "H2", ...), their histories
    ``train`` (S 1-d float64 arrays of their own lengths, the padding dropped) and the values
    to forecast ``test`` (S, horizon). ``season``: the m of MASE and Naive2."""

    group: str
    ids: list[str]
    train: list[np.ndarray]
    test: np.ndarray
    horizon: int
    season: int

    def to_long(self, include_test: bool = False):
        """A pandas DataFrame in the long layout of Nixtla's libraries: columns ``unique_id``
        (str), ``ds`` (int64, the step, 1..n within each series; the test values continue at
        n+1..n+horizon) and ``y`` (float64); series in ``ids`` order, steps ascending."""
        pd = require("pandas", "M4Data.to_long")
        parts = [np.concatenate([x, t]) if include_test else x
                 for x, t in zip(self.train, self.test)]
        lengths = np.array([len(p) for p in parts])
        return pd.DataFrame({
            "unique_id": np.repeat(np.array(self.ids, dtype=object), lengths),
            "ds": np.concatenate([np.arange(1, n + 1, dtype=np.int64) for n in lengths]),
            "y": np.concatenate(parts),
        })


def load(path: str | Path | None = None, group: str = "Hourly") -> M4Data:
    """The M4 ``group`` (Yearly, Quarterly, Monthly, Weekly, Daily or Hourly; any case) from the
    folder ``path`` holding ``<Group>-train.csv`` and ``<Group>-test.csv``, or, with
    ``path=None``, downloaded into the cache (``$RNNKIT_DATA/m4``), checked against the pinned
    sha256 where there is one.

    Raises:
        ConfigError: an unknown group.
        DataFormatError: a malformed file; the message names the file, line and column.
        DownloadError, ChecksumError: see :func:`rnnkit.data.download.fetch`.
    """
    name = _group(group)
    horizon, season = GROUPS[name]
    train_file, test_file = (_source(path, name, split) for split in ("Train", "Test"))
    ids, train, _ = _read(train_file, name[0], horizon=None)
    test_ids, test, test_lines = _read(test_file, name[0], horizon=horizon)
    _check_same_ids(ids, test_ids, test_lines, test_file)
    return M4Data(name, ids, train, np.stack(test), horizon, season)


def _group(group: str) -> str:
    names = {g.lower(): g for g in GROUPS}
    if not isinstance(group, str) or group.lower() not in names:
        raise ConfigError(f"m4.load: group must be one of {list(GROUPS)}, got {group!r}")
    return names[group.lower()]


def _source(path: str | Path | None, group: str, split: str) -> Path:
    filename = f"{group}-{split.lower()}.csv"
    if path is not None:
        return Path(path) / filename
    return fetch(URL.format(split=split, name=filename), SHA256.get(filename), f"m4/{filename}")


def _read(path: Path, letter: str,
          horizon: int | None) -> tuple[list[str], list[np.ndarray], list[int]]:
    """Ids, values and file lines of every row. ``horizon``: the number of values each row must have
    (a test file); None: any number >= 1 followed by padding (a train file)."""
    ids, series, lines = [], [], []
    with open_text(path) as (stream, source):
        reader = csv.reader(stream)
        header = next(reader, None)
        if not header or header[0] != ID_COLUMN or len(header) < 2:
            raise DataFormatError(f"{source}: line 1: expected the M4 header \"V1\",\"V2\",..., "
                                  f"got {','.join(header or [])[:60]!r}")
        id_pattern = re.compile(rf"{letter}[1-9][0-9]*")
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise DataFormatError(f"{source}: line {line}: {len(row)} cells, the header has "
                                      f"{len(header)}")
            if not id_pattern.fullmatch(row[0]):
                raise bad_cell(source, line, ID_COLUMN, f"expected a series id like "
                               f"{letter}1 ({letter} for this group), got {row[0]!r}")
            ids.append(row[0])
            series.append(_values(row, header, source, line, horizon))
            lines.append(line)
    if not ids:
        raise DataFormatError(f"{source}: no series")
    return ids, series, lines


def _values(row: list[str], header: list[str], source: str, line: int,
            horizon: int | None) -> np.ndarray:
    """The finite values of one row, its trailing empty cells (padding) dropped."""
    end = len(row)
    while end > 1 and not row[end - 1].strip():
        end -= 1
    count = end - 1
    if horizon is not None and count != horizon:
        raise DataFormatError(f"{source}: line {line} (series {row[0]}): {count} values, the "
                              f"group's horizon is {horizon}")
    if count == 0:
        raise DataFormatError(f"{source}: line {line} (series {row[0]}): no values")
    try:
        values = np.array(row[1:end], dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.all(np.isfinite(values)):
        column = next(j for j in range(1, end) if not _is_finite(row[j]))
        text = row[column]
        what = "an empty cell inside the series" if not text.strip() else \
            f"{text!r} is not a finite number"
        raise bad_cell(source, line, header[column], f"(series {row[0]}) {what}")
    return values


def _is_finite(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False


def _check_same_ids(train_ids: list[str], test_ids: list[str], test_lines: list[int],
                    test_file: Path) -> None:
    """The test file must hold the train file's series in its order."""
    if test_ids == train_ids:
        return
    for a, b, line in zip(train_ids, test_ids, test_lines):
        if a != b:
            raise DataFormatError(f"{test_file}: line {line}: series {b!r}, the train file has "
                                  f"{a!r} in this place")
    raise DataFormatError(f"{test_file}: {len(test_ids)} series, the train file has "
                          f"{len(train_ids)}")
