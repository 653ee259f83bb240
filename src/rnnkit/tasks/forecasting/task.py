"""``rnnkit train --task forecast``: a CSV whose columns are series, forecast on the protocol.

The normalizer is fit on the training rows only; validation and test windows follow
:func:`rnnkit.data.timeseries.split_windows`; every run scores the baselines beside the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import plots
from ...data.timeseries import Normalizer, split_windows
from ...errors import ConfigError
from ...layers.forecasting import DECODINGS, NORMALIZATIONS, check_quantiles
from ...models import Model
from ...training import losses
from .. import specs
from ..protocol import Prepared, Run, Task, TrainConfig, optimizer, register
from . import auto, panel_task, scoring, series, training
from .options import ForecastOptions


class Forecast(Task):
    name, options = "forecast", ForecastOptions
    metrics = None
    # Every forecaster keeps its best validation epoch and stops after 5 without improvement;
    # Adam with SegRNN's decay (x0.8 per epoch after the third). Issue 17: with the common
    # defaults (no early stopping) segrnn kept an overfitted last epoch and lost to NLinear.
    defaults = {"optimizer": "adam", "learning_rate": 1e-3, "epochs": 30, "patience": 5,
                "lr_decay": 0.8}
    help = {
        "target": "the target column, a comma-separated list, or all (M setting)",
        "features": "comma-separated input columns (default: every numeric column)",
        "split": "train,validation,test fractions of the rows, or row counts (8640,2880,2880)",
        "lookback": "rows a window reads", "horizon": "number of future values to predict",
        "delay": "rows skipped before the horizon", "step": "read every step-th row of a window",
        "season": "season length in rows for the seasonal naive baseline",
        "loss": "training loss (mse, mae, huber, ...)",
        "segment": "segrnn: steps per segment; must divide the lookback",
        "dropout": "dropout before the forecaster's output layer",
        "normalization": "last (subtract the window's last value), revin or none",
        "decoding": "segrnn: parallel (all segments at once) or recursive",
        "no_channel_embedding": "segrnn: no channel embedding in the decoder",
        "quantiles": "quantile levels in (0, 1), e.g. 0.1,0.5,0.9 (pinball loss)",
        "plot_step": "the horizon step forecast.png shows (1 = the next value)",
        "id_col": "panel: the series id column of a long table (one row per series and time); "
                  "--target then names the value column (default y), --features past covariates",
        "time_col": "panel: the time column (integer steps or timestamps)",
        "future_covariates": "panel: columns known in advance over the horizon (given at predict "
                             "time with --future)",
        "static_covariates": "panel: columns constant per series (text ones one-hot encoded)",
        "calendar": "panel: calendar features of the time column: auto or hour,dayofweek,month,...",
        "series_embedding": "panel: a learned embedding of the series id",
        "fill": "panel: fill missing steps: ffill, zero or interpolate (default: an error)",
        "sort": "panel: sort rows by id and time (default: unsorted rows are an error)",
        "min_length": "panel: refuse series shorter than this (default: drop, and say which, "
                      "the series too short for one training window)",
        "test_size": "panel: the last steps of every series held out as the test (default: the "
                     "horizon)",
        "val_size": "panel: the validation steps before the test (default: the horizon)",
        "windows_per_series": "panel: training windows drawn per series each epoch (default: the "
                              "median number a series has)",
        "scaling": "panel: per-series scaling, standard ((x - mean) / std) or mean (x / mean: "
                   "positive series stay positive; esrnn with --normalization log needs it)",
        "backtest_windows": "panel: also run a rolling-origin backtest of N windows",
        "backtest_step": "panel: steps between backtest origins (default: the horizon)",
        "backtest_refit": "panel: retrain before every backtest origin",
    }

    def check_model(self, cfg: TrainConfig) -> None:
        if auto.check(cfg.model) and not cfg.options.panel:
            raise ConfigError("model (--model): auto chooses among forecasters of a panel "
                              "(--id-col); on a CSV of columns name a model (segrnn:64, ...)")

    def check(self, cfg: TrainConfig) -> None:
        opt = cfg.options
        if opt.panel:
            return _check_panel(cfg)
        if not opt.target:
            raise ConfigError("target: forecasting needs the target column (--target COL, a "
                              "comma-separated list, or all)")
        for name in ("lookback", "horizon", "step"):
            if getattr(opt, name) < 1:
                raise ConfigError(f"{name}: must be positive, got {getattr(opt, name)}")
        check_quantiles(opt.quantiles or None, "quantiles (--quantiles)")
        if opt.normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization (--normalization): expected one of "
                              f"{NORMALIZATIONS}, got {opt.normalization!r}")
        if opt.decoding not in DECODINGS:
            raise ConfigError(f"decoding (--decoding): expected one of {DECODINGS}, got "
                              f"{opt.decoding!r}")
        if not 0.0 <= opt.dropout < 1.0:
            raise ConfigError(f"dropout (--dropout): must be in [0, 1), got {opt.dropout}")
        if not 1 <= opt.plot_step <= opt.horizon:
            raise ConfigError(f"plot_step (--plot-step): the horizon step to plot must be in "
                              f"[1, {opt.horizon}], got {opt.plot_step}")
        if specs.cuts_segments(cfg.model) and (opt.segment < 1 or opt.steps() % opt.segment):
            raise ConfigError(f"segment (--segment): {cfg.model} cuts the window of {opt.steps()} "
                              f"steps into whole segments, and {opt.segment} does not divide "
                              f"{opt.steps()}; choose a --lookback that is a multiple of the "
                              f"segment or another --segment")

    def build(self, cfg: TrainConfig, prep: dict) -> Model:
        opt, columns = cfg.options, prep["columns"]
        layer = specs.forecaster(
            cfg.model, opt.horizon, [columns.index(t) for t in prep["targets"]],
            segment=opt.segment, dropout=opt.dropout, normalization=opt.normalization,
            decoding=opt.decoding, channel_embedding=not opt.no_channel_embedding,
            quantiles=opt.quantiles or None)
        model = training.compiled_forecaster(layer, optimizer(cfg), opt.loss,
                                             opt.quantiles or None)
        model.build((None, opt.steps(), len(columns)))
        return model

    def prepare(self, cfg: TrainConfig, for_doctor: bool = False) -> Prepared:
        if cfg.options.panel:
            return panel_task.prepare(cfg)
        data, borders, names = _series(cfg, cfg.data, bad_cells="keep" if for_doctor else "raise")
        normalizer = _tolerant_normalizer(data.values[:borders[0]]) if for_doctor \
            else Normalizer().fit(data.values, 0, borders[0])
        prep = {"columns": data.columns, "targets": names, "normalizer": normalizer.to_config()}
        train, val, _ = _windows(cfg, data, normalizer, borders)
        source = {"file": cfg.data, "columns": data.columns, "lines": data.lines,
                  "bad_cells": data.bad_cells}
        return Prepared(prep, self.build(cfg, prep),
                        {"x": train, "y": None, "validation_data": val}, source)

    def fit(self, cfg: TrainConfig, ready: Prepared, **fit_options):
        return training.fit_forecaster(ready.model, ready.data["x"], **fit_options)

    def evaluate(self, run: Run, path: str, out_dir: Path | None) -> dict:
        if run.config.options.panel:
            return panel_task.evaluate(run, path, out_dir)
        cfg, opt = run.config, run.config.options
        data, borders, names = _series(cfg, path, run.preprocessing)
        normalizer = Normalizer.from_config(run.preprocessing["normalizer"])
        train, val, test = _windows(cfg, data, normalizer, borders)
        truth = test.targets()  # (N, H, C') standardized
        out = training.predictions(run.model, test)  # (N, H, C'[, Q])
        quantiles = opt.quantiles or None
        point = out[..., scoring.point_index(quantiles)] if quantiles else out
        baselines = scoring.baseline_forecasts(train, val, test, opt.season, cfg.seed)
        std, mean = normalizer.std[data.targets], normalizer.mean[data.targets]
        metrics = scoring.scores(point, baselines, truth, std, names)
        if quantiles:
            metrics["quantiles"] = scoring.quantile_scores(out, truth, quantiles)
        if out_dir is not None:
            k = opt.plot_step - 1

            def units(values: np.ndarray) -> np.ndarray:  # (N, C') at step k
                return values * std + mean

            interval = (units(out[:, k, :, 0]), units(out[:, k, :, -1])) if quantiles else None
            plots.forecast(names, units(truth[:, k]), {cfg.model: units(point[:, k])},
                           out_dir / "forecast.png", opt.delay + opt.plot_step, opt.horizon,
                           interval, None if not quantiles else (quantiles[0], quantiles[-1]))
        return metrics

    def predict(self, run: Run, path: str, future: str | None = None
                ) -> tuple[list[str], list[list]]:
        """The next ``horizon`` values of each target after the file's last row, in its units
        (with quantiles, one column per level after the point forecast); for a panel, of every
        series, as a long table (``future``: the known-future covariates of those steps)."""
        if run.config.options.panel:
            return panel_task.predict(run, path, future)
        opt, prep = run.config.options, run.preprocessing
        data = series.load_series(path, prep["targets"], prep["columns"])
        normalizer = Normalizer.from_config(prep["normalizer"])
        if len(data.values) < opt.lookback:
            raise ConfigError(f"predict: {path} has {len(data.values)} rows, the model reads "
                              f"lookback={opt.lookback}")
        window = normalizer.transform(data.values[-opt.lookback:][::opt.step])
        out = run.model.predict(window[None].astype(np.float32), verbose=0)[0].astype(np.float64)
        std, mean = normalizer.std[data.targets], normalizer.mean[data.targets]
        quantiles = opt.quantiles or []
        if quantiles:  # (H, C', Q): the point forecast first, then every level
            point = out[..., scoring.point_index(quantiles)]
            columns = [point * std + mean] + [out[..., i] * std + mean
                                              for i in range(len(quantiles))]
        else:
            columns = [out * std + mean]  # (H, C')
        header = ["step", *prep["targets"],
                  *[f"{t}_q{q:g}" for q in quantiles for t in prep["targets"]]]
        rows = [[opt.delay + i + 1, *[float(v) for c in columns for v in c[i]]]
                for i in range(opt.horizon)]
        return header, rows

    def loss(self, cfg: TrainConfig, prep: dict):
        opt = cfg.options
        return losses.Pinball(opt.quantiles) if opt.quantiles else opt.loss

    def summary(self, metrics: dict) -> list[str]:
        if "panel" in metrics:
            return panel_task.verdict(metrics)
        return scoring.verdict(metrics) if "standardized" in metrics else []


def _check_panel(cfg: TrainConfig) -> None:
    """The options of a panel run (each error names its option)."""
    opt = cfg.options
    for name in ("lookback", "horizon"):
        if getattr(opt, name) < 1:
            raise ConfigError(f"{name} (--{name}): must be positive, got {getattr(opt, name)}")
    if opt.step != 1 or opt.delay != 0:
        raise ConfigError("step, delay (--step, --delay): a panel's windows read every step and "
                          "forecast from the next one; leave them at 1 and 0")
    if opt.test_size and opt.test_size % opt.horizon:
        raise ConfigError(f"test_size (--test-size): {opt.test_size} is not a multiple of the "
                          f"horizon {opt.horizon} (the test is forecast {opt.horizon} steps at a "
                          "time)")
    for name in ("min_length", "test_size", "val_size", "windows_per_series",
                 "backtest_windows", "backtest_step"):
        if getattr(opt, name) < 0:
            raise ConfigError(f"{name}: must be >= 0, got {getattr(opt, name)}")
    check_quantiles(opt.quantiles or None, "quantiles (--quantiles)")
    if opt.normalization not in (*NORMALIZATIONS, "log"):
        raise ConfigError(f"normalization (--normalization): expected one of "
                          f"{(*NORMALIZATIONS, 'log')}, got {opt.normalization!r}")
    if opt.normalization == "log" and (specs.parse(cfg.model)[0] != "esrnn"
                                       or opt.scaling != "mean"):
        raise ConfigError("normalization (--normalization): log is ES-RNN's multiplicative "
                          "model: an esrnn spec on positive windows (--scaling mean)")
    covariates = opt.future_covariates or opt.static_covariates or opt.calendar \
        or opt.series_embedding
    if covariates and not specs.takes_covariates(auto.resolve(cfg.model, opt)):
        raise ConfigError(f"model (--model): {cfg.model} takes no covariates; segrnn and the plain "
                          "recurrent forecasters (gru:32, lstm:64, ...) read known-future, static "
                          "and series-id covariates")
    if cfg.model != auto.AUTO and specs.cuts_segments(cfg.model) and opt.lookback % opt.segment:
        raise ConfigError(f"segment (--segment): {cfg.model} cuts the window of {opt.lookback} "
                          f"steps into whole segments, and {opt.segment} does not divide it")


def _series(cfg: TrainConfig, path: str, prep: dict | None = None, bad_cells: str = "raise"):
    """The series, its (train, validation, test) row borders and the target names."""
    opt = cfg.options
    names = prep["targets"] if prep else series.target_names(opt.target, path, opt.features)
    data = series.load_series(path, names, prep["columns"] if prep else opt.features, bad_cells)
    return data, series.split_rows(len(data.values), opt.split), names


def _windows(cfg: TrainConfig, data: series.SeriesData, normalizer: Normalizer, borders):
    """(train, validation, test) windows of the protocol; only the training ones shuffled."""
    opt = cfg.options
    return split_windows(data.values, borders, opt.lookback, opt.horizon, data.targets,
                         opt.delay, opt.step, cfg.batch_size, cfg.seed, normalizer)


def _tolerant_normalizer(rows: np.ndarray) -> Normalizer:
    """Statistics of the finite values of training rows (N, F), a constant or empty column
    scaled by 1: the doctor sees the windows of a broken file, and reports what is broken."""
    finite = np.isfinite(rows)
    count = np.maximum(finite.sum(axis=0), 1)
    mean = np.where(finite, rows, 0.0).sum(axis=0) / count
    std = np.sqrt((np.where(finite, rows - mean, 0.0) ** 2).sum(axis=0) / count)
    return Normalizer(mean, np.where(std > 0, std, 1.0))


register(Forecast())
