"""Forecasting a panel: many series in one long table (``unique_id, ds, y`` plus covariates), one
global model across all of them, scored as the M4 competition scores.

The pipeline, shared by ``rnnkit train --id-col ...``, the Python :class:`~.forecaster.Forecaster`
and backtests::

    long table ──read_long──▶ Panel ──split_borders(test, val)──▶ (S, 3) borders per series
    ──check_lengths──▶ kept series (the others reported by name) ──SeriesScaler (training rows)──▶
    PanelWindows train / val / test (lazy, balanced across series) ──forecaster (any cell)──▶
    (S, H, C') forecasts in the data's units ──panel_scores──▶ sMAPE, MASE, OWA vs Naive2, MAE, MSE

Known-future covariates and numeric statics are standardized with the training rows' mean and
std over the whole panel (calendar features already lie in [-0.5, 0.5]).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...data import evaluation
from ...data.panel import Panel, SeriesScaler, check_lengths, read_long, split_borders
from ...data.panel_windows import PanelWindows, WindowLayout
from ...errors import ConfigError
from ...models import Model
from .. import specs
from . import training

PANEL_BASELINES = ("naive", "seasonal_naive", "naive2", "nlinear", "dlinear")
LINEAR_PASS = 20_000  # training windows per pass of the NLinear and DLinear baselines


@dataclass
class PanelSplit:
    """A panel cut for training: the kept series, their borders (S, 3), the ids dropped as too
    short, and the fitted scalers: ``scaler`` on each series' training rows (training and
    validation windows), ``test_scaler`` on everything before the test (the history a forecast
    of the test has, as ``Forecaster.predict`` scales)."""

    panel: Panel
    borders: np.ndarray
    dropped: list[str]
    scaler: SeriesScaler
    covariates: dict  # {"mean": (F + K,), "std": (F + K,)} of future and static columns
    test_scaler: SeriesScaler | None = None


def read(opt, source) -> Panel:
    """The long table ``source`` (CSV path or DataFrame) as a Panel, by the task's options."""
    return read_long(source, opt.id_col, opt.time_col, targets(opt), opt.features,
                     opt.future_covariates, opt.static_covariates, opt.fill or None, opt.sort,
                     opt.calendar or None)


def targets(opt) -> list[str]:
    names = [t.strip() for t in (opt.target or "y").split(",") if t.strip()]
    if not names:
        raise ConfigError("target (--target): name the target column of the long table")
    return names


def val_size(opt) -> int:
    return opt.val_size or opt.horizon


def split(opt, panel: Panel, test_size: int) -> PanelSplit:
    """Borders (test: the last ``test_size`` steps, validation the ``val_size`` before), short
    series dropped (or refused with ``min_length``), scalers fit on the training rows."""
    borders = split_borders(panel, test_size, val_size(opt))
    keep, dropped = check_lengths(panel, borders, opt.lookback, opt.horizon,
                                  opt.min_length or None)
    if len(keep) < len(panel):
        panel, borders = panel.select(keep), borders[keep]
    return PanelSplit(panel, borders, dropped, SeriesScaler(mode=opt.scaling).fit(panel, borders),
                      covariate_stats(panel, borders),
                      SeriesScaler(mode=opt.scaling).fit(panel, borders[:, 1:]))


def covariate_stats(panel: Panel, borders: np.ndarray) -> dict:
    """Mean and std of the future columns over the training rows, and of the static columns
    over the series: how they are standardized before the model sees them."""
    parts_mean, parts_std = [], []
    if panel.future is not None:
        train = np.concatenate([panel.future[panel.offsets[i]:panel.offsets[i] + borders[i, 0]]
                                for i in range(len(panel))])
        parts_mean.append(train.mean(axis=0))
        parts_std.append(train.std(axis=0))
    if panel.static is not None:
        parts_mean.append(panel.static.mean(axis=0))
        parts_std.append(panel.static.std(axis=0))
    mean = np.concatenate(parts_mean) if parts_mean else np.zeros(0)
    std = np.concatenate(parts_std) if parts_std else np.zeros(0)
    return {"mean": mean.tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


def standardized(panel: Panel, stats: dict) -> Panel:
    """``panel`` with its future and static columns standardized by ``stats``."""
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    f = 0 if panel.future is None else panel.future.shape[1]
    future = None if panel.future is None else (panel.future - mean[:f]) / std[:f]
    static = None if panel.static is None else (panel.static - mean[f:]) / std[f:]
    return replace(panel, future=future, static=static)


def windows(opt, cut: PanelSplit, batch_size: int, seed: int) -> dict[str, PanelWindows]:
    """The train, val and test windows of a split panel (test only when it has a test part)."""
    panel = standardized(cut.panel, cut.covariates)
    common = {"scaler": cut.scaler, "batch_size": batch_size, "seed": seed,
              "series_id": bool(opt.series_embedding)}
    out = {"train": PanelWindows(panel, cut.borders, opt.lookback, opt.horizon, "train",
                                 windows_per_series=opt.windows_per_series or None, **common),
           "val": PanelWindows(panel, cut.borders, opt.lookback, opt.horizon, "val", **common)}
    if (cut.borders[:, 2] > cut.borders[:, 1]).all():
        out["test"] = PanelWindows(panel, cut.borders, opt.lookback, opt.horizon, "test",
                                   **{**common, "scaler": cut.test_scaler})
    return out


def layer_covariates(layout: WindowLayout, series: int) -> dict | None:
    """The forecaster's ``covariates`` argument for windows of ``layout`` (None: plain)."""
    if not layout.packed:
        return None
    return {"lookback": layout.lookback, "horizon": layout.horizon, "channels": layout.channels,
            "future": layout.future, "static": layout.static,
            "series": series if layout.series_id else 0}


def forecast(model: Model, ds: PanelWindows, scaler: SeriesScaler) -> np.ndarray:
    """(N, H, C'[, Q]) forecasts of every window of ``ds`` in the data's units."""
    out = training.predictions(model, ds)
    series = ds.origins()[:, 0]
    targets = list(ds.layout.targets)
    if out.ndim == 4:  # quantiles: (N, H, C', Q), each level scaled back
        return np.stack([scaler.inverse(out[..., q], series, targets)
                         for q in range(out.shape[-1])], axis=-1)
    return scaler.inverse(out, series, targets)


def actuals(ds: PanelWindows, scaler: SeriesScaler) -> np.ndarray:
    """(N, H, C') the true values of every window of ``ds``, in the data's units."""
    return scaler.inverse(ds.targets(), ds.origins()[:, 0], list(ds.layout.targets))


def history(panel: Panel, series: int, end: int, channel: int) -> np.ndarray:
    """(n,) the values of one channel of series ``series`` before row ``end`` of that series."""
    start = panel.offsets[series]
    return panel.values[start:start + end, channel]


def statistical_baselines(cut: PanelSplit, ds: PanelWindows, season: int) -> dict:
    """Naive, seasonal naive and Naive2 forecasts (N, H, C') of the windows of ``ds``, from each
    window's own history (everything before its origin)."""
    horizon = ds.layout.horizon
    out = {name: [] for name in ("naive", "seasonal_naive", "naive2")}
    for s, origin in ds.origins():
        per = {name: [] for name in out}
        for c in ds.layout.targets:
            past = history(cut.panel, s, origin, c)
            per["naive"].append(evaluation.naive(past, horizon))
            per["seasonal_naive"].append(evaluation.seasonal_naive(past, horizon, season)
                                         if len(past) >= season else
                                         evaluation.naive(past, horizon))
            per["naive2"].append(evaluation.naive2(past, horizon, season))
        for name in out:
            out[name].append(np.stack(per[name], axis=-1))  # (H, C')
    return {name: np.stack(v) for name, v in out.items()}


def plain(cut: PanelSplit) -> PanelSplit:
    """The same split without covariates (what NLinear and DLinear read)."""
    return replace(cut, panel=replace(cut.panel, future=None, future_columns=[], static=None,
                                      static_columns=[]), covariates={"mean": [], "std": []})


def linear_models(cut: PanelSplit, opt, seed: int) -> dict[str, Model]:
    """NLinear and DLinear trained on the same training windows (LTSF-Linear's recipe),
    without covariates."""
    # LTSF-Linear's batch of 32, with a pass capped near LINEAR_PASS windows (balanced across
    # series as always): on a large panel an uncapped pass is thousands of steps for two linear maps
    simple = replace(opt, series_embedding=False)
    ws = windows(simple, plain(cut), 32, seed)
    cap = max(1, LINEAR_PASS // len(cut.panel))
    if ws["train"].rounds > cap:
        ws = windows(replace(simple, windows_per_series=cap), plain(cut), 32, seed)
    targets = list(ws["train"].layout.targets)
    return {kind: training.linear_baseline(kind, opt.horizon, targets, ws["train"], ws["val"],
                                           seed) for kind in ("nlinear", "dlinear")}


def linear_baselines(cut: PanelSplit, opt, models: dict[str, Model], seed: int) -> dict:
    """The forecasts (N, H, C') of the test windows by ``models`` (:func:`linear_models`)."""
    test = windows(replace(opt, series_embedding=False), plain(cut), 32, seed)["test"]
    return {kind: forecast(model, test, cut.test_scaler) for kind, model in models.items()}


def scores(truth: np.ndarray, model: np.ndarray, baselines: dict, cut: PanelSplit,
           ds: PanelWindows, season: int) -> tuple[list[dict], dict]:
    """M4's evaluation of the model and the baselines, per window and target: (rows, summary)
    of :func:`rnnkit.data.evaluation.panel_scores`, one 'series' per (window, target)."""
    n, h, c = truth.shape
    origins = ds.origins()

    def flat(a: np.ndarray) -> np.ndarray:  # (N, H, C') -> (N·C', H)
        return a.transpose(0, 2, 1).reshape(n * c, h)

    insample = [history(cut.panel, s, o, t) for s, o in origins for t in ds.layout.targets]
    names = [cut.panel.columns[t] for t in ds.layout.targets]
    ids = [_window_id(cut.panel.ids[s], o, names[j], len(origins) > len(cut.panel), c)
           for s, o in origins for j in range(c)]
    forecasts = {"model": flat(model), **{k: flat(v) for k, v in baselines.items()
                                          if k != "naive2"}}
    return evaluation.panel_scores(flat(truth), forecasts, insample, season, ids)


def _window_id(series: str, origin: int, target: str, rolling: bool, targets: int) -> str:
    out = series if not rolling else f"{series}@{origin}"
    return out if targets == 1 else f"{out}/{target}"


def build(spec: str, opt, layout: WindowLayout, series: int, optimizer, **kwargs) -> Model:
    """The compiled forecaster for windows of ``layout``."""
    covariates = layer_covariates(layout, series)
    layer = specs.forecaster(spec, opt.horizon, list(layout.targets), segment=opt.segment,
                             dropout=opt.dropout, normalization=opt.normalization,
                             decoding=opt.decoding, channel_embedding=not opt.no_channel_embedding,
                             quantiles=opt.quantiles or None, covariates=covariates, **kwargs)
    model = training.compiled_forecaster(layer, optimizer, opt.loss, opt.quantiles or None)
    model.build((None, layout.steps, layout.width))
    return model
