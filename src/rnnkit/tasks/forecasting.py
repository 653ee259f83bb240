"""Forecasting CSV columns: the protocol's windows, the baselines and the metrics.

The series is cut chronologically into train/validation/test rows, by fractions or by row
counts (``8640,2880,2880``: the ETTh borders); the Normalizer is fit on the training rows only.
Validation and test windows start ``lookback`` rows before their border, so every test row is a
target once per horizon step, and every test window is scored
(:func:`rnnkit.data.timeseries.split_windows`). One or several ``targets`` are forecast (the
papers' settings: S, one column predicts itself; MS, all columns predict one; M, all predict all).

Metrics: MSE and MAE on the standardized scale (the papers' scale: the mean over windows,
steps and targets) under ``"standardized"``, and MAE/RMSE in each target's units, for the model
and the baselines: last value, seasonal naive, least-squares linear, and NLinear and DLinear
trained on the same windows (Adam 5e-3, batch 32, at most 10 epochs with the learning rate
halved each epoch, early stopping with patience 3: the LTSF-Linear recipe).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import timeseries as ts
from ..data.csv import DataFormatError, open_text, read_table
from ..errors import ConfigError
from ..layers import DLinear, Layer, NLinear
from ..models import Model, Sequential
from ..training import callbacks as _callbacks
from ..training import losses as _losses
from ..training import optimizers as _optimizers

BASELINES = ("last_value", "seasonal_naive", "linear", "nlinear", "dlinear")
NAMES = {"last_value": "last value", "seasonal_naive": "seasonal naive",
         "linear": "least-squares linear", "nlinear": "NLinear", "dlinear": "DLinear"}


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


# -- training -----------------------------------------------------------------------------------
def decay_schedule(learning_rate: float, factor: float, start: int) -> Callable[[int], float]:
    """Epoch (0-based) -> ``learning_rate · factor^max(0, epoch - start)``: SegRNN's schedule is
    (0.8, 3), LTSF-Linear's (0.5, 1)."""
    return lambda epoch: float(learning_rate * factor ** max(0, epoch - start))


def training_callbacks(learning_rate: float, patience: int = 0, lr_decay: float = 1.0,
                       decay_start: int = 3) -> list[_callbacks.Callback]:
    """Early stopping on the validation loss with the best epoch's weights restored (when
    ``patience`` > 0) and the learning rate decayed by ``lr_decay`` per epoch after
    ``decay_start`` epochs (when it is not 1)."""
    out: list[_callbacks.Callback] = []
    if patience > 0:
        out.append(_callbacks.EarlyStopping(patience=patience, restore_best_weights=True))
    if lr_decay != 1.0:
        out.append(_callbacks.LearningRateScheduler(
            decay_schedule(learning_rate, lr_decay, decay_start)))
    return out


def compiled_forecaster(layer: Layer, optimizer="adam", loss="mse",
                        quantiles: Sequence[float] | None = None) -> Sequential:
    """``Sequential([layer])`` compiled with ``loss`` (the pinball loss with ``quantiles``)."""
    model = Sequential([layer])
    model.compile(optimizer=optimizer, loss=_losses.Pinball(quantiles) if quantiles else loss)
    return model


def fit_forecaster(model: Model, train: ts.WindowDataset, validation_data: ts.WindowDataset,
                   epochs: int, callbacks: Sequence[_callbacks.Callback] = (), verbose: int = 0,
                   seed: int | None = None, **fit_options) -> _callbacks.History:
    """``model.fit`` on the training windows with the validation windows, keeping the trained
    weights only if they beat the untrained model on the validation loss (a forecaster starts
    at the last-value forecast, so a training run that only made it worse is undone; selection
    on validation, never on test). ``history.kept_untrained`` says which was kept.
    ``fit_options`` go to ``fit`` (``checkpoint_dir``, ``resume``, ...): a resumed run starts
    from the same freshly built model, so it compares with the same untrained weights."""
    before = model.evaluate(validation_data, verbose=0)
    untrained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    history = model.fit(train, validation_data=validation_data, epochs=epochs, verbose=verbose,
                        seed=seed, callbacks=list(callbacks), **fit_options)
    history.kept_untrained = bool(epochs) and model.evaluate(validation_data, verbose=0) >= before
    if history.kept_untrained:
        model.load_state_dict(untrained)
    return history


def linear_baseline(kind: str, horizon: int, targets: Sequence[int], train: ts.WindowDataset,
                    val: ts.WindowDataset, seed: int = 0, epochs: int = 10) -> Model:
    """NLinear or DLinear trained on ``train``'s windows with LTSF-Linear's recipe."""
    torch.manual_seed(seed)
    layer = (NLinear if kind == "nlinear" else DLinear)(horizon, targets=list(targets))
    model = compiled_forecaster(layer, _optimizers.Adam(learning_rate=5e-3))
    model.fit(train.rebatched(32), validation_data=val, epochs=epochs, verbose=0, seed=seed,
              callbacks=training_callbacks(5e-3, patience=3, lr_decay=0.5, decay_start=1))
    return model


def predictions(model: Model, ds: ts.WindowDataset) -> np.ndarray:
    """The model's outputs for every window of ``ds`` in anchor order, float64."""
    return model.predict(ds.batches(), verbose=0).astype(np.float64)


# -- metrics ------------------------------------------------------------------------------------
def errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MSE and MAE over every entry (windows, steps, targets)."""
    if pred.shape != truth.shape:
        raise ConfigError(f"errors: predictions {pred.shape} and targets {truth.shape} differ")
    err = pred - truth
    return {"mse": float((err**2).mean()), "mae": float(np.abs(err).mean())}


def unit_errors(pred: np.ndarray, truth: np.ndarray, std: np.ndarray) -> list[dict[str, float]]:
    """Per target (last axis of (N, H, C')), MAE and RMSE in the target's units."""
    err = (pred - truth) * std  # standardized errors back in units
    axes = tuple(range(err.ndim - 1))
    mae, rmse = np.abs(err).mean(axis=axes), np.sqrt((err**2).mean(axis=axes))
    return [{"mae": float(a), "rmse": float(r)} for a, r in zip(mae, rmse)]


def baseline_forecasts(train: ts.WindowDataset, val: ts.WindowDataset, test: ts.WindowDataset,
                       season: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Every baseline's forecast of ``test`` (N, H, C'), NLinear and DLinear trained here."""
    out = {"last_value": ts.last_value(test), "linear": ts.linear(train, test)}
    try:
        out["seasonal_naive"] = ts.seasonal_naive(test, season)
    except ConfigError:
        pass  # the season reaches before the file's first row: no seasonal forecast exists
    for kind in ("nlinear", "dlinear"):
        out[kind] = predictions(linear_baseline(kind, test.horizon, range(len(test.target_columns)),
                                                _targets_only(train), _targets_only(val), seed),
                                _targets_only(test))
    return {name: out[name] for name in BASELINES if name in out}


def _targets_only(ds: ts.WindowDataset) -> ts.WindowDataset:
    """The same windows reading only the target columns (NLinear and DLinear are univariate
    per channel: the other columns would only be ignored)."""
    return ds.columns(ds.target_columns)


def scores(point: np.ndarray, baselines: dict[str, np.ndarray], truth: np.ndarray,
           std: np.ndarray, names: Sequence[str]) -> dict:
    """metrics.json's forecast part: ``standardized`` MSE/MAE (the papers' scale), and MAE/RMSE
    in the targets' units (the mean over targets at the top, each target under ``targets``)."""
    candidates = {"model": point, **baselines}
    units = {k: unit_errors(p, truth, std) for k, p in candidates.items()}

    def mean(rows: list[dict]) -> dict:
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    return {
        "model": mean(units["model"]),
        "baselines": {k: mean(units[k]) for k in baselines},
        "standardized": {"model": errors(point, truth),
                         "baselines": {k: errors(p, truth) for k, p in baselines.items()}},
        "targets": {name: {"model": units["model"][i],
                           "baselines": {k: units[k][i] for k in baselines}}
                    for i, name in enumerate(names)},
    }


def quantile_scores(pred: np.ndarray, truth: np.ndarray, levels: Sequence[float]) -> dict:
    """Each level's pinball loss (standardized scale) and the empirical coverage of the outer
    interval [lowest level, highest level]: the share of test targets inside it."""
    tau = np.asarray(levels)
    err = truth[..., None] - pred  # (N, H, C', Q)
    loss = np.maximum(tau * err, (tau - 1) * err).reshape(-1, len(tau)).mean(axis=0)
    lower, upper = pred[..., 0], pred[..., -1]
    inside = (truth >= lower) & (truth <= upper)
    return {"levels": [float(q) for q in levels],
            "pinball": {str(q): float(v) for q, v in zip(levels, loss)},
            "coverage": {"lower": float(tau[0]), "upper": float(tau[-1]),
                         "nominal": float(tau[-1] - tau[0]), "empirical": float(inside.mean())}}


def point_index(levels: Sequence[float]) -> int:
    """The level used as the point forecast: the median, or the level nearest to it."""
    return int(np.argmin(np.abs(np.asarray(levels) - 0.5)))


def verdict(metrics: dict) -> list[str]:
    """The model's test MSE beside the best baseline's, and one line when the model loses:
    "the model is 12% worse than last value on test"."""
    std = metrics["standardized"]
    model = std["model"]["mse"]
    best = min(std["baselines"], key=lambda k: std["baselines"][k]["mse"])
    other = std["baselines"][best]["mse"]
    lines = [f"test MSE (standardized): model {model:.4f}, best baseline {NAMES[best]} "
             f"{other:.4f}"]
    if model > other:
        lines.append(f"the model is {100 * (model / other - 1):.3g}% worse than {NAMES[best]} "
                     "on test")
    return lines

