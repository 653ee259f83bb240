"""``Forecaster``: a panel forecaster in Python, on a pandas DataFrame in the long format
(``unique_id, ds, y`` plus covariates), as neuralforecast's ``NeuralForecast`` is used::

    fc = Forecaster("segrnn:64", horizon=48, lookback=96, season=24)
    fc.fit(train_df)                         # one global model over every series
    forecasts = fc.predict()                 # unique_id, ds, y_pred (and y_q0.1 ... per quantile)
    cv = fc.backtest(df, windows=3, step=48) # rolling origins, as cross_validation
    fc.save("run/model"); fc = Forecaster.load("run/model")

``rnnkit train --id-col unique_id ...`` is a thin layer over the same calls
(:mod:`rnnkit.tasks.forecasting.task`). Per-series scaling is fit on each series' own history
every time data is read (training rows at fit, everything before the forecast at predict), so new
data of other series can be forecast; a series-id embedding needs the series it was trained on.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.panel import Panel, advance
from ...data.panel_windows import PanelWindows
from ...errors import ConfigError
from ...models import Model, load_model
from ...training.checkpoint import seed_everything
from ..protocol import TrainConfig, optimizer, training_callbacks
from . import auto, training
from . import panel as pipeline
from .options import ForecastOptions
from .scoring import point_index


class Forecaster:
    """A global forecaster over many series; its options are ``rnnkit train``'s forecast
    options (``ForecastOptions``) and the common ones (``epochs``, ``learning_rate``, ...)."""

    def __init__(self, model: str = "segrnn:64", horizon: int = 24, lookback: int = 96, *,
                 id_col: str = "unique_id", time_col: str = "ds", target: str = "y",
                 seed: int = 0, **options):
        common = {k: options.pop(k) for k in ("epochs", "batch_size", "optimizer",
                                              "learning_rate", "patience", "lr_decay", "threads")
                  if k in options}
        opt = ForecastOptions(target=target, lookback=lookback, horizon=horizon, id_col=id_col,
                              time_col=time_col, **options)
        self.config = TrainConfig(task="forecast", model=model, seed=seed, options=opt, **common)
        self.config.data = "<DataFrame>"
        self.config.check()
        self.model: Model | None = None
        self.state: dict = {}
        self.history: dict = {}

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> Forecaster:
        out = cls.__new__(cls)
        out.config, out.model, out.state, out.history = cfg, None, {}, {}
        return out

    @property
    def options(self) -> ForecastOptions:
        return self.config.options

    # -- training -------------------------------------------------------------------------------
    def prepare(self, data, test_size: int = 0) -> tuple[pipeline.PanelSplit, dict]:
        """Read ``data`` (DataFrame or CSV path), split it (``test_size`` steps held out at the
        end of every series), build the untrained model; -> (split, windows)."""
        cfg, opt = self.config, self.options
        seed_everything(cfg.seed)
        cut = pipeline.split(opt, _panel(opt, data), test_size)
        sets = pipeline.windows(opt, cut, cfg.batch_size, cfg.seed)
        layout = sets["train"].layout
        self.model = pipeline.build(auto.resolve(cfg.model, opt), opt, layout, len(cut.panel),
                                    optimizer(cfg))
        self.state = {"ids": list(cut.panel.ids), "layout": layout.to_config(),
                      "columns": cut.panel.columns, "covariates": cut.covariates,
                      "static_categories": cut.panel.static_categories,
                      "dropped": cut.dropped}
        return cut, sets

    def fit(self, df, verbose: int = 0, checkpoint_dir=None, resume=None) -> Forecaster:
        """Train on every series of ``df``: the last ``val_size`` steps (default the horizon)
        of each series are the validation that early stopping and the kept weights look at."""
        _, sets = self.prepare(df)
        self.history = self.train(sets, verbose, checkpoint_dir=checkpoint_dir,
                                  resume=resume).history
        return self

    def train(self, sets: dict, verbose: int = 0, **fit_options):
        cfg = self.config
        return training.fit_forecaster(
            self.model, sets["train"], sets["val"], cfg.epochs, verbose=verbose, seed=cfg.seed,
            callbacks=training_callbacks(cfg.learning_rate, cfg.patience, cfg.lr_decay),
            **fit_options)

    # -- forecasting ------------------------------------------------------------------------------
    def predict(self, df, future_df=None):
        """The next ``horizon`` steps after the end of every series of ``df`` (the history to
        forecast from), as a long DataFrame: id, time, ``<target>_pred`` per target (and
        ``<target>_q<level>`` per quantile). ``future_df`` holds the known-future covariates of
        those steps (id, time, covariates), required when the model has any."""
        self._check_fitted("predict")
        opt = self.options
        panel = self._aligned(_panel(opt, df))
        if panel.future is not None:
            panel = panel.extend(opt.horizon, future_df, opt.id_col, opt.time_col)
        ends = panel.lengths() - panel.appended
        borders = np.stack([ends, ends, ends], axis=1)
        scaler = pipeline.SeriesScaler(mode=opt.scaling).fit(panel, borders)
        cut = pipeline.PanelSplit(panel, borders, [], scaler, self.state["covariates"])
        ds = PanelWindows(pipeline.standardized(panel, cut.covariates), None, opt.lookback,
                          opt.horizon, "predict", scaler=cut.scaler,
                          series_id=bool(opt.series_embedding))
        out = pipeline.forecast(self.model, ds, cut.scaler)  # (S, H, C'[, Q])
        times = _future_times(panel, opt.horizon)
        frame = {opt.id_col: np.repeat(panel.ids, opt.horizon), opt.time_col: times.reshape(-1)}
        frame.update(_columns(out, panel, self.options.quantiles))
        return pd.DataFrame(frame)

    def backtest(self, df, windows: int = 1, step: int | None = None, refit: bool = False):
        """Rolling-origin evaluation, as neuralforecast's ``cross_validation`` and darts'
        ``historical_forecasts``: ``windows`` forecast origins ``step`` steps apart (default the
        horizon), the last one ``horizon`` steps before each series' end. Without ``refit`` the
        model is trained once, on what comes before the first origin; with it, anew before every
        origin. -> (long DataFrame: id, time, cutoff, actual, ``<target>_pred``; the metrics of
        each window and their mean)."""
        if windows < 1:
            raise ConfigError(f"backtest: windows must be >= 1, got {windows}")
        opt = self.options
        step = step or opt.horizon
        full = _panel(opt, df)
        frames, per_window = [], []
        for k in range(windows):
            back = (windows - 1 - k) * step  # rows cut off every series' end for window k
            data = _truncate(full, back)
            if refit or k == 0:
                _, sets = self.prepare(_truncate(data, opt.horizon))
                self.history = self.train(sets).history
            cut = pipeline.split(opt, data, opt.horizon)
            test = pipeline.windows(opt, cut, self.config.batch_size, self.config.seed)["test"]
            frame, metrics = self.score_window(cut, test)
            frames.append(frame)
            per_window.append(metrics)
        mean = {k: float(np.mean([w[k] for w in per_window])) for k in per_window[0]}
        return pd.concat(frames, ignore_index=True), {"windows": per_window, "mean": mean}

    def score_window(self, cut: pipeline.PanelSplit, test: PanelWindows):
        """(long DataFrame of the test windows' forecasts beside the actual values, the model's
        M4 scores on them)."""
        opt = self.options
        model = pipeline.forecast(self.model, test, cut.test_scaler)
        truth = pipeline.actuals(test, cut.test_scaler)
        point = model[..., point_index(opt.quantiles)] if model.ndim == 4 else model
        _, summary = pipeline.scores(truth, point, {}, cut, test, opt.season)
        origins = test.origins()
        times = np.stack([cut.panel.times[cut.panel.offsets[s] + o + np.arange(opt.horizon)]
                          for s, o in origins])
        cutoff = np.array([cut.panel.times[cut.panel.offsets[s] + o - 1] for s, o in origins])
        frame = {opt.id_col: np.repeat([cut.panel.ids[s] for s, _ in origins], opt.horizon),
                 opt.time_col: times.reshape(-1), "cutoff": np.repeat(cutoff, opt.horizon)}
        names = [cut.panel.columns[t] for t in test.layout.targets]
        for j, name in enumerate(names):
            frame[name] = truth[:, :, j].reshape(-1)
        frame.update(_columns(model, cut.panel, opt.quantiles, names))
        return pd.DataFrame(frame), summary["model"]

    # -- saving ---------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """The model (``Model.save``) with the options and what reading new data needs."""
        self._check_fitted("save")
        self.model.preprocessing = {"task": "forecast", "train": self.config.flat(),
                                    "panel": self.state}
        return self.model.save(path)

    @classmethod
    def load(cls, path) -> Forecaster:
        model = load_model(path)
        stored = model.preprocessing
        if "panel" not in stored:
            raise ConfigError(f"Forecaster.load: {path} holds no panel forecaster (saved by "
                              "Forecaster.save or a panel run's model/)")
        out = cls.from_config(TrainConfig.from_flat(stored["train"], str(path)))
        out.model, out.state = model, stored["panel"]
        model.compile(optimizer(out.config), "mse")
        model.eval()
        return out

    # -- helpers --------------------------------------------------------------------------------
    def _check_fitted(self, what: str) -> None:
        if self.model is None:
            raise ConfigError(f"Forecaster.{what}: fit the forecaster first (or Forecaster.load)")

    def _aligned(self, panel: Panel) -> Panel:
        """With a series-id embedding, the series it was trained on, in that order."""
        if not self.options.series_embedding:
            return panel
        known = {name: i for i, name in enumerate(panel.ids)}
        missing = [name for name in self.state["ids"] if name not in known]
        extra = sorted(set(panel.ids) - set(self.state["ids"]))
        if extra:
            raise ConfigError(f"predict: series {extra[:5]} were not trained on; a model with "
                              "a series-id embedding (--series-embedding) forecasts its own series")
        if missing:
            raise ConfigError(f"predict: series {missing[:5]} are missing; a model with a "
                              "series-id embedding needs the history of every series it knows")
        return panel.select([known[name] for name in self.state["ids"]])


def _panel(opt: ForecastOptions, data) -> Panel:
    return data if isinstance(data, Panel) else pipeline.read(opt, data)


def _truncate(panel: Panel, rows: int) -> Panel:
    """Every series without its last ``rows`` rows."""
    if rows == 0:
        return panel
    lengths = panel.lengths() - rows
    if (lengths < 1).any():
        i = int(np.argmax(lengths < 1))
        raise ConfigError(f"backtest: series {panel.ids[i]!r} has {panel.length(i)} rows, fewer "
                          f"than the {rows} the earlier forecast origins need")
    keep = np.concatenate([np.arange(panel.offsets[i], panel.offsets[i] + n)
                           for i, n in enumerate(lengths)])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return replace(panel, offsets=offsets, times=panel.times[keep], values=panel.values[keep],
                   future=None if panel.future is None else panel.future[keep])


def _future_times(panel: Panel, horizon: int) -> np.ndarray:
    """(S, H) the times of the forecast steps: the appended rows, or the steps after the end."""
    if panel.appended:
        return np.stack([panel.times[panel.offsets[i + 1] - horizon:panel.offsets[i + 1]]
                         for i in range(len(panel))])
    last = panel.times[panel.offsets[1:] - 1]
    return np.stack([advance(last, panel.freq, j) for j in range(1, horizon + 1)], axis=1)


def _columns(out: np.ndarray, panel: Panel, quantiles, names=None) -> dict:
    """Forecast columns of a long table: ``<target>_pred`` and ``<target>_q<level>``."""
    names = names or [panel.columns[t] for t in panel.targets]
    point = out[..., point_index(quantiles)] if out.ndim == 4 else out
    cols = {f"{name}_pred": point[:, :, j].reshape(-1) for j, name in enumerate(names)}
    for q, level in enumerate(quantiles or []):
        cols.update({f"{name}_q{level:g}": out[:, :, j, q].reshape(-1)
                     for j, name in enumerate(names)})
    return cols

