"""Scoring forecasts of the windows protocol: the baselines and the metrics.

Validation and test windows start ``lookback`` rows before their border, so every test row is a
target once per horizon step, and every test window is scored
(:func:`rnnkit.data.timeseries.split_windows`). Metrics: MSE and MAE on the standardized scale
(the papers' scale: the mean over windows, steps and targets) under ``"standardized"``, and
MAE/RMSE in each target's units, for the model and the baselines: last value, seasonal naive,
least-squares linear, and NLinear and DLinear trained on the same windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...data import timeseries as ts
from ...errors import ConfigError
from .training import linear_baseline, predictions

BASELINES = ("last_value", "seasonal_naive", "linear", "nlinear", "dlinear")
NAMES = {"last_value": "last value", "seasonal_naive": "seasonal naive",
         "linear": "least-squares linear", "nlinear": "NLinear", "dlinear": "DLinear"}


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
