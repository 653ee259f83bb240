"""Forecasting a column of a CSV series: windows, a recurrent model, and its baselines.

The series is cut chronologically into train/validation/test rows; the Normalizer is fit on the
training rows only. A window of ``lookback`` rows (every ``step``-th) predicts the target column
``horizon`` rows ahead, starting ``delay`` rows after the window (delay 0: the very next row).
Metrics are MAE and RMSE in the target's units, for the model and for the baselines of
rnnkit.data.timeseries: last value (the lecture's "common sense"), seasonal naive, linear.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import timeseries as ts
from ..data.csv import DataFormatError, open_text, read_table
from ..errors import ConfigError
from ..layers import Dense, Layer
from ..models import Model, Sequential


@dataclass
class SeriesData:
    """``values`` (N, F) float64 of ``columns``; ``target`` is the index of the target column;
    ``lines`` the file line of each row, ``bad_cells`` the cells read as NaN (``bad_cells="keep"``)."""

    columns: list[str]
    values: np.ndarray
    target: int
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


def load_series(path: str | Path, target: str, features: Sequence[str] | None = None,
                bad_cells: str = "raise") -> SeriesData:
    """The feature columns (default: every numeric column) with the target among them;
    ``bad_cells="keep"`` reads cells that are not finite numbers as NaN (``read_table``)."""
    columns = list(features) if features else numeric_columns(path)
    if target not in columns:
        columns.append(target)
    table = read_table(path, numeric=columns, bad_cells=bad_cells)
    return SeriesData(columns, table.values, columns.index(target), table.lines, table.bad_cells)


def split_rows(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """(end of train, end of validation, end of test) rows for train/val/test fractions."""
    if len(fractions) != 3 or min(fractions) <= 0 or sum(fractions) > 1 + 1e-9:
        raise ConfigError(f"split: expected three positive fractions train,val,test summing to "
                          f"at most 1, got {list(fractions)}")
    train, val, test = (int(round(n * f)) for f in np.cumsum(fractions))  # 0.7+0.1+0.2 < 1.0
    return train, val, test


def windows(series: SeriesData, normalizer: ts.Normalizer, lookback: int, horizon: int,
            rows: tuple[int, int], delay: int = 0, step: int = 1, batch_size: int = 128,
            shuffle: bool = False, seed: int | None = None) -> ts.WindowDataset:
    """Windows whose inputs and targets lie in ``rows`` = [start, end): inputs (B, T, F),
    normalized targets (B,) or (B, horizon)."""
    start, end = rows
    return ts.WindowDataset(series.values, lookback, delay, start=start,
                            end=end - delay - horizon + 1, step=step, horizon=horizon,
                            target=series.target, batch_size=batch_size, shuffle=shuffle,
                            seed=seed, normalizer=normalizer)


def forecaster(recurrent: Layer, horizon: int, loss: str = "mae", optimizer="rmsprop") -> Sequential:
    """A compiled model: windows (B, T, F) -> (B, horizon) normalized forecasts."""
    model = Sequential([recurrent, Dense(horizon)])
    model.compile(optimizer=optimizer, loss=loss)
    return model


def predictions(model: Model, ds: ts.WindowDataset) -> np.ndarray:
    """The model's forecasts aligned with ``ds.targets()``: (N,) or (N, horizon)."""
    pred = model.predict(ds.batches(), verbose=0).astype(np.float64)
    return pred[:, 0] if ds.horizon == 1 else pred


def scores(model: Model, train: ts.WindowDataset, test: ts.WindowDataset, std: float,
           season: int) -> dict:
    """``{"model": {"mae", "rmse"}, "baselines": {"last_value": ..., "seasonal_naive": ...,
    "linear": ...}}`` on ``test``, in the target's units (normalized errors times ``std``)."""
    truth = test.targets()
    candidates = {"model": predictions(model, test)}
    baselines = {"last_value": ts.last_value(test), "seasonal_naive": ts.seasonal_naive(test, season),
                 "linear": ts.linear(train, test)}
    def units(pred):
        return {k: v * std for k, v in ts.evaluate(pred, truth).items()}
    return {"model": units(candidates["model"]),
            "baselines": {name: units(pred) for name, pred in baselines.items()}}
