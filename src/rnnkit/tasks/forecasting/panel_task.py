"""The forecast task on a panel (``--id-col``): the run's steps as calls of the
:class:`~.forecaster.Forecaster`, plus what a run directory holds beyond the model:
``per_series.csv`` (every series' sMAPE, MASE, MAE, MSE for the model and each baseline),
``forecasts.csv`` (the test forecasts, long), ``backtest.csv`` with ``--backtest-windows``, and
metrics.json's ``"panel"`` part::

    {"model": {"smape", "mase", "owa", "mae", "mse"},
     "baselines": {"naive", "seasonal_naive", "naive2", "nlinear", "dlinear": {...}}}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import report
from ...errors import ConfigError
from ..protocol import Prepared, Run, TrainConfig
from ..runs import write_csv
from . import auto
from . import panel as pipeline
from .forecaster import Forecaster
from .scoring import point_index, quantile_scores

NAMES = {"naive": "naive", "seasonal_naive": "seasonal naive", "naive2": "Naive2",
         "nlinear": "NLinear", "dlinear": "DLinear"}


def prepare(cfg: TrainConfig) -> Prepared:
    fc = Forecaster.from_config(cfg)
    _, sets = fc.prepare(cfg.data, _test_size(cfg.options))
    return Prepared({"panel": fc.state}, fc.model,
                    {"x": sets["train"], "y": None, "validation_data": sets["val"]},
                    {"file": cfg.data})


def _test_size(opt) -> int:
    return opt.test_size or opt.horizon


def forecaster(run: Run) -> Forecaster:
    fc = Forecaster.from_config(run.config)
    fc.model, fc.state, fc.history = run.model, run.preprocessing["panel"], run.history
    return fc


def evaluate(run: Run, path: str, out_dir: Path | None) -> dict:
    """The test part (the last ``test_size`` steps of every series) scored as M4 scores it,
    with every baseline fit on the same history."""
    cfg, opt = run.config, run.config.options
    cut = pipeline.split(opt, pipeline.read(opt, path), _test_size(opt))
    chosen = None
    linear = pipeline.linear_models(cut, opt, cfg.seed)  # baselines, and auto's candidates
    if cfg.model == auto.AUTO:  # chosen on validation, before the test is read
        run.model, chosen = auto.select(run.model, cut, opt, cfg.seed, linear)
    test = pipeline.windows(opt, cut, cfg.batch_size, cfg.seed)["test"]
    out = pipeline.forecast(run.model, test, cut.test_scaler)  # (N, H, C'[, Q])
    point = out[..., point_index(opt.quantiles)] if out.ndim == 4 else out
    truth = pipeline.actuals(test, cut.test_scaler)
    baselines = {**pipeline.statistical_baselines(cut, test, opt.season),
                 **pipeline.linear_baselines(cut, opt, linear, cfg.seed)}
    rows, summary = pipeline.scores(truth, point, baselines, cut, test, opt.season)
    summary["naive2"] = summary.pop("Naive2")
    metrics = {"model": summary["model"],
               "panel": {"model": summary["model"],
                         "baselines": {k: summary[k] for k in NAMES if k in summary}},
               "series": len(cut.panel), "windows": len(truth),
               "dropped": {"count": len(cut.dropped), "series": cut.dropped[:100]}}
    if chosen is not None:
        metrics["auto"] = chosen
    if opt.quantiles:
        metrics["quantiles"] = quantile_scores(out, truth, opt.quantiles)
    if out_dir is not None:
        write_csv(out_dir / "per_series.csv", list(rows[0]), [list(r.values()) for r in rows])
        fc = forecaster(run)
        frame, _ = fc.score_window(cut, test)
        frame.to_csv(out_dir / "forecasts.csv", index=False)
        if opt.backtest_windows:
            metrics["backtest"] = _backtest(run, path, out_dir)
        report.write_report(out_dir / "report.html",
                            report_data(run, cut, test, out, baselines, rows, metrics))
    return metrics


def report_data(run: Run, cut: pipeline.PanelSplit, test, out: np.ndarray, baselines: dict,
                rows: list[dict], metrics: dict) -> dict:
    """report.html's input (:func:`rnnkit.report.write_report`): the last test window of every
    series (first target) with four horizons of history, the baselines and the metrics."""
    opt, panel = run.config.options, cut.panel
    horizon, last = opt.horizon, {}
    for k, (s, origin) in enumerate(test.origins()):
        last[int(s)] = (k, int(origin))  # the last window of each series
    by_id = {r["id"]: r for r in rows if r["model"] == "model"}
    series = []
    for s, (k, origin) in last.items():
        start, t = panel.offsets[s], panel.times
        before = np.arange(max(0, origin - 4 * horizon), origin) + start
        ahead = np.arange(origin, origin + horizon) + start
        target = test.layout.targets[0]
        model = {"y": (out[k, :, 0, point_index(opt.quantiles)] if out.ndim == 4
                       else out[k, :, 0])}
        if out.ndim == 4:
            model.update(lo=out[k, :, 0, 0], hi=out[k, :, 0, -1])
        name = next((i for i in by_id if i.split("@")[0].split("/")[0] == panel.ids[s]),
                    panel.ids[s])
        series.append({
            "id": panel.ids[s],
            "history": {"t": t[before], "y": panel.values[before, target]},
            "actual": {"t": t[ahead], "y": panel.values[ahead, target]},
            "forecasts": {"model": model, **{b: {"y": v[k, :, 0]} for b, v in baselines.items()}},
            "metrics": {m: by_id[name][m] for m in ("smape", "mase", "mae", "mse")}
            if name in by_id else {}})
    levels = opt.quantiles
    return {"title": f"{run.config.model} on {Path(run.config.data).name}",
            "summary": metrics["panel"], "series": series,
            "interval": {"lower": levels[0], "upper": levels[-1]} if levels else None,
            "history": run.history, "config": run.config.flat()}


def _backtest(run: Run, path: str, out_dir: Path) -> dict:
    """A fresh forecaster of the run's options, backtested on the run's data."""
    opt = run.config.options
    fc = Forecaster.from_config(run.config)
    frame, metrics = fc.backtest(path, opt.backtest_windows, opt.backtest_step or None,
                                 opt.backtest_refit)
    frame.to_csv(out_dir / "backtest.csv", index=False)
    return metrics


def predict(run: Run, path: str, future: str | None) -> tuple[list[str], list[list]]:
    opt = run.config.options
    future_df = None
    if future is not None:
        future_df = pd.read_csv(future)
    elif opt.future_covariates:
        raise ConfigError(f"predict: the model reads the known-future covariates "
                          f"{opt.future_covariates}; give their values over the next "
                          f"{opt.horizon} steps of every series with --future FILE (columns "
                          f"{opt.id_col}, {opt.time_col}, {', '.join(opt.future_covariates)})")
    frame = forecaster(run).predict(path, future_df)
    return list(frame.columns), frame.astype(object).values.tolist()


def verdict(metrics: dict) -> list[str]:
    """The model's panel sMAPE/MASE/OWA beside the best baseline's."""
    model, baselines = metrics["panel"]["model"], metrics["panel"]["baselines"]
    best = min(baselines, key=lambda k: baselines[k]["owa"])
    lines = [f"test on {metrics['series']} series: model sMAPE {model['smape']:.3f}, MASE "
             f"{model['mase']:.3f}, OWA {model['owa']:.3f}; best baseline {NAMES[best]} OWA "
             f"{baselines[best]['owa']:.3f}"]
    if metrics["dropped"]["count"]:
        lines.append(f"{metrics['dropped']['count']} series were too short for one training "
                     f"window and left out: {', '.join(metrics['dropped']['series'][:10])}")
    if "auto" in metrics:
        lines.insert(0, f"auto chose {metrics['auto']['why']}")
    if model["owa"] > baselines[best]["owa"]:
        lines.append(f"the model is {100 * (model['owa'] / baselines[best]['owa'] - 1):.3g}% "
                     f"worse than {NAMES[best]} on test (OWA)")
    return lines
