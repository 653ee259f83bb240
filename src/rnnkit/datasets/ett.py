"""The Electricity Transformer Temperature datasets (Zhou et al., Informer, 2021) with the
standard split of the literature: 12 months train, 4 validation, 4 test (30-day months).

``load`` reads the file and its borders; ``windows`` gives the train/validation/test windows of
the long-horizon protocol (Informer, DLinear, SegRNN) in the settings the papers name: S (one
column predicts itself), MS (all columns predict one), M (all predict all)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.csv import DataFormatError, parse_timestamps, read_table
from ..data.download import fetch
from ..data.timeseries import Normalizer, Series, WindowDataset, split_windows
from ..errors import ConfigError

URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{name}.csv"
SHA256 = {"ETTh1": "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
          "ETTh2": None, "ETTm1": None, "ETTm2": None}
DATE_COLUMN = "date"
COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
MONTHS = (12, 4, 4)
SETTINGS = ("S", "MS", "M")
_DATE = r"(?P<Y>\d{4})-(?P<m>\d\d)-(?P<d>\d\d) (?P<H>\d\d):(?P<M>\d\d):(?P<S>\d\d)"


@dataclass
class ETTSplits:
    """``full`` (N, 7) and its ``train``/``val``/``test`` parts (views of it), cut at row
    ``borders`` = (end of train, end of val, end of test); ``normalizer`` is fit on train.
    ``OT`` (oil temperature, the last column) is the usual target. ``standardized``: the
    values are already scaled by ``normalizer``."""

    full: Series
    train: Series
    val: Series
    test: Series
    borders: tuple[int, int, int]
    normalizer: Normalizer
    standardized: bool = False


def load(path: str | Path | None = None, name: str = "ETTh1",
         standardize: bool = False) -> ETTSplits:
    """ETT split 12/4/4 months: 8640/2880/2880 rows for hourly ``ETTh*``, 34560/11520/11520 for
    15-minute ``ETTm*`` (the row step is read from the first two dates).

    ``standardize`` scales every split with the training mean and std, as Informer and DLinear
    do. ``path``: a local CSV; None downloads ``name`` into the cache (only ETTh1 has a pinned
    sha256).
    """
    if name not in SHA256:
        raise ConfigError(f"ett.load: name must be one of {sorted(SHA256)}, got {name!r}")
    source = Path(path) if path is not None else fetch(URL.format(name=name), SHA256[name],
                                                       f"{name}.csv")
    table = read_table(source, numeric=COLUMNS, text=(DATE_COLUMN,))
    full = Series(list(COLUMNS), table.values, parse_timestamps(table, DATE_COLUMN, _DATE))
    borders = _borders(full.timestamps, source)
    normalizer = Normalizer().fit(full.values, 0, borders[0])
    if standardize:
        full = Series(full.columns, normalizer.transform(full.values), full.timestamps)
    return ETTSplits(full, full.rows(0, borders[0]), full.rows(borders[0], borders[1]),
                     full.rows(borders[1], borders[2]), borders, normalizer, standardize)


def windows(splits: ETTSplits, lookback: int, horizon: int, setting: str = "M",
            target: str = "OT", batch_size: int = 32,
            seed: int | None = 0) -> tuple[WindowDataset, WindowDataset, WindowDataset]:
    """(train, validation, test) windows of the protocol, on the columns standardized with the
    training statistics: x (B, lookback, C), y (B, horizon, C'). ``setting`` 'S': C = C' = 1
    (``target`` alone); 'MS': C = 7, C' = 1; 'M': C = C' = 7. Validation and test windows start
    ``lookback`` rows before their border and all of them are scored: ETTh1 has
    2881 - horizon test windows at any lookback. The training windows are shuffled per epoch
    from ``seed`` (:class:`rnnkit.data.timeseries.WindowDataset`)."""
    if setting not in SETTINGS:
        raise ConfigError(f"ett.windows: setting must be one of {SETTINGS}, got {setting!r}")
    if target not in splits.full.columns:
        raise ConfigError(f"ett.windows: target {target!r} is not a column; the columns are "
                          f"{splits.full.columns}")
    values = splits.full.values if splits.standardized else \
        splits.normalizer.transform(splits.full.values)
    column = splits.full.columns.index(target)
    if setting == "S":
        values, targets = values[:, [column]], [0]
    else:
        targets = list(range(values.shape[1])) if setting == "M" else [column]
    train, val, test = split_windows(np.ascontiguousarray(values, dtype=np.float32),
                                     splits.borders, lookback, horizon, targets,
                                     batch_size=batch_size, seed=seed)
    return train, val, test


def _borders(timestamps: np.ndarray, source: Path) -> tuple[int, int, int]:
    """Row ends of the 12/4/4-month parts, from the step between the first two rows."""
    step = (timestamps[1] - timestamps[0]).astype(int) if len(timestamps) > 1 else 0
    if step <= 0 or 86400 % step:
        raise DataFormatError(f"{source}: line 3, column {DATE_COLUMN!r}: the step between the "
                              f"first two rows ({step} s) does not divide a day")
    month = 30 * 86400 // int(step)
    ends = tuple(int(e) for e in np.cumsum(MONTHS) * month)
    if ends[-1] > len(timestamps):
        raise DataFormatError(f"{source}: {len(timestamps)} rows, the 12/4/4-month split needs "
                              f"{ends[-1]} at a step of {step} s")
    return ends
