"""Forecasting a panel (issue 17): the long table through the CLI and the Forecaster object,
covariates reaching the model, backtests, and bad input that names what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from rnnkit import cli
from rnnkit.errors import ConfigError, DataFormatError, RnnkitError
from rnnkit.layers import GRU
from rnnkit.layers.forecasting import RecurrentForecaster, SegRNN
from rnnkit.tasks.forecasting.forecaster import Forecaster

H, L = 6, 12


def panel_frame(series: int = 5, length: int = 80, promo_effect: float = 0.0, seed: int = 0):
    """Hourly-like series of different lengths and starts; ``promo`` (0/1, random) adds
    ``promo_effect`` to y at its own step; ``kind`` is a text static covariate."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in range(series):
        n = length + 4 * s
        t = np.arange(n)
        promo = (rng.random(n) < 0.3).astype(float)
        y = 10 + s + np.sin(2 * np.pi * t / 6) + promo_effect * promo \
            + 0.05 * rng.standard_normal(n)
        frames.append(pd.DataFrame({"unique_id": f"S{s}", "ds": t + 3 * s, "y": y,
                                    "promo": promo, "kind": "ab"[s % 2]}))
    return pd.concat(frames, ignore_index=True)


def last_steps(df: pd.DataFrame, k: int):
    """(df without the last k rows of every series, those rows)."""
    rank = df.groupby("unique_id").cumcount(ascending=False)
    return df[rank >= k].reset_index(drop=True), df[rank < k].reset_index(drop=True)


def test_cli_and_forecaster_give_the_same_forecasts_and_metrics(tmp_path):
    df = panel_frame()
    df.to_csv(tmp_path / "panel.csv", index=False)
    out = tmp_path / "run"
    cli.run(["train", "forecast", "--data", str(tmp_path / "panel.csv"), "--id-col", "unique_id",
             "--time-col", "ds", "--target", "y", "--model", "gru:4", "--lookback", str(L),
             "--horizon", str(H), "--epochs", "2", "--out", str(out), "--quiet",
             "--backtest-windows", "2", "--backtest-step", "3"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["backtest"]["windows"]) == 2
    assert len(pd.read_csv(out / "backtest.csv")) == 2 * 5 * H
    assert set(metrics["panel"]["baselines"]) == {"naive", "seasonal_naive", "naive2", "nlinear",
                                                  "dlinear"}
    assert metrics["panel"]["baselines"]["naive2"]["owa"] == pytest.approx(1.0)
    cli_forecasts = pd.read_csv(out / "forecasts.csv")
    per_series = pd.read_csv(out / "per_series.csv")
    assert sorted(per_series["id"].unique()) == [f"S{s}" for s in range(5)]
    assert (out / "report.html").is_file()

    history, future = last_steps(df, H)
    fc = Forecaster("gru:4", horizon=H, lookback=L, epochs=2).fit(history)
    mine = fc.predict(history)
    assert list(mine.columns) == ["unique_id", "ds", "y_pred"]
    merged = mine.merge(cli_forecasts, on=["unique_id", "ds"])
    assert len(merged) == 5 * H
    np.testing.assert_allclose(merged["y_pred_x"], merged["y_pred_y"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(merged["y"], future.set_index(["unique_id", "ds"]).loc[
        list(zip(merged["unique_id"], merged["ds"])), "y"].to_numpy())


def test_a_known_future_covariate_that_drives_the_target_is_used():
    df = panel_frame(series=6, length=160, promo_effect=3.0)
    history, future = last_steps(df, H)
    errors = {}
    for covariates in ([], ["promo"]):
        fc = Forecaster("segrnn:16", horizon=H, lookback=L, segment=6, epochs=15, seed=1,
                        future_covariates=covariates, learning_rate=3e-3, batch_size=16,
                        lr_decay=1.0)
        fc.fit(history)
        given = future[["unique_id", "ds", "promo"]]
        pred = fc.predict(history, given if covariates else None)
        merged = pred.merge(future, on=["unique_id", "ds"])
        errors[bool(covariates)] = float(np.abs(merged["y_pred"] - merged["y"]).mean())
    assert errors[True] < 0.5 * errors[False], errors


@pytest.mark.parametrize("kind", ["segrnn", "recurrent"])
def test_every_covariate_kind_reaches_the_model_and_the_future_targets_do_not(kind):
    layout = {"lookback": 12, "horizon": 6, "channels": 1, "future": 2, "static": 1, "series": 3}
    layer = SegRNN(GRU(8), 6, 6, covariates=layout) if kind == "segrnn" else \
        RecurrentForecaster(GRU(8), 6, covariates=layout)
    x = torch.randn(2, 18, 5)
    x[:, 12:, 0] = 0
    x[:, :, 4] = torch.tensor([[0.0], [1.0]])
    layer(x)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.5)
    base = layer(x)

    def changed(column: int, rows: slice, value: float = 1.0) -> bool:
        y = x.clone()
        y[:, rows, column] += value
        return not torch.allclose(layer(y), base)

    assert changed(1, slice(12, 18)) and changed(2, slice(12, 18))  # future over the horizon
    assert changed(3, slice(None))  # static
    assert changed(4, slice(None))  # series ids 0, 1 -> 1, 2
    assert not changed(0, slice(12, 18))  # the future of the target itself is never read


def test_permuting_the_series_permutes_the_forecasts():
    df = panel_frame()
    fc = Forecaster("gru:4", horizon=H, lookback=L, epochs=1).fit(df)
    order = ["S3", "S0", "S4", "S1", "S2"]
    shuffled = pd.concat([df[df.unique_id == s] for s in order], ignore_index=True)
    a = fc.predict(df).set_index(["unique_id", "ds"]).sort_index()
    b = fc.predict(shuffled).set_index(["unique_id", "ds"]).sort_index()
    np.testing.assert_allclose(a["y_pred"], b["y_pred"], rtol=1e-6)


def test_backtest_origins_and_counts():
    df = panel_frame(series=3, length=70)
    fc = Forecaster("gru:4", horizon=H, lookback=L, epochs=1)
    frame, metrics = fc.backtest(df, windows=3, step=4)
    assert len(frame) == 3 * 3 * H and len(metrics["windows"]) == 3
    for sid, rows in frame.groupby("unique_id"):
        end = df[df.unique_id == sid]["ds"].max()
        assert sorted(rows["cutoff"].unique()) == [end - H - 8, end - H - 4, end - H]
        assert (rows["ds"] > rows["cutoff"]).all() and (rows["ds"] <= rows["cutoff"] + H).all()
    assert metrics["mean"]["smape"] == pytest.approx(np.mean([w["smape"]
                                                              for w in metrics["windows"]]))


def test_quantiles_give_one_column_per_level():
    df = panel_frame(series=3)
    fc = Forecaster("gru:4", horizon=H, lookback=L, epochs=1, quantiles=[0.1, 0.5, 0.9]).fit(df)
    out = fc.predict(df)
    assert list(out.columns) == ["unique_id", "ds", "y_pred", "y_q0.1", "y_q0.5", "y_q0.9"]
    np.testing.assert_allclose(out["y_pred"], out["y_q0.5"])


def test_save_and_load_give_the_same_forecasts(tmp_path):
    df = panel_frame(series=3)
    fc = Forecaster("gru:4", horizon=H, lookback=L, epochs=1, static_covariates=["kind"],
                    series_embedding=True).fit(df)
    fc.save(tmp_path / "fc")
    again = Forecaster.load(tmp_path / "fc")
    pd.testing.assert_frame_equal(fc.predict(df), again.predict(df))
    with pytest.raises(ConfigError, match=r"series \['S9'\] were not trained on"):
        again.predict(df.assign(unique_id=df.unique_id.replace("S0", "S9")))


def _train(tmp_path, *extra):
    return cli.run(["train", "forecast", "--data", str(tmp_path / "panel.csv"), "--id-col",
                    "unique_id", "--lookback", str(L), "--horizon", str(H), "--model", "gru:4",
                    "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet", *extra])


def test_bad_panels_name_the_option_series_and_row_and_write_no_run(tmp_path):
    df = panel_frame(series=2)
    df.to_csv(tmp_path / "panel.csv", index=False)
    with pytest.raises(ConfigError, match=r"no column 'series_id' \(--id-col\)"):
        _train(tmp_path, "--id-col", "series_id")
    pd.concat([df, df.iloc[[5]]]).to_csv(tmp_path / "panel.csv", index=False)
    with pytest.raises(RnnkitError, match=r"S0.*duplicate|duplicate.*S0"):
        _train(tmp_path)
    df.iloc[::-1].to_csv(tmp_path / "panel.csv", index=False)
    with pytest.raises(RnnkitError, match=r"--sort"):
        _train(tmp_path)
    df.to_csv(tmp_path / "panel.csv", index=False)
    with pytest.raises(DataFormatError, match=r"no series is long enough"):
        _train(tmp_path, "--lookback", "120")
    with pytest.raises(ConfigError, match=r"model \(--model\): .* takes no covariates"):
        cli.run(["train", "forecast", "--data", str(tmp_path / "panel.csv"), "--id-col",
                 "unique_id", "--model", "esrnn:8", "--future-covariates", "promo",
                 "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_predict_needs_the_future_covariates(tmp_path):
    df = panel_frame(series=2)
    df.to_csv(tmp_path / "panel.csv", index=False)
    _train(tmp_path, "--future-covariates", "promo")
    with pytest.raises(ConfigError, match=r"--future FILE"):
        cli.run(["predict", str(tmp_path / "run"), "--data", str(tmp_path / "panel.csv")])
    rows = []
    for sid, g in df.groupby("unique_id"):
        rows += [(sid, g.ds.max() + j, 1.0) for j in range(1, H + 1)]
    pd.DataFrame(rows, columns=["unique_id", "ds", "promo"]).iloc[:-1].to_csv(
        tmp_path / "future.csv", index=False)
    with pytest.raises(DataFormatError, match=r"series 'S1', ds"):
        cli.run(["predict", str(tmp_path / "run"), "--data", str(tmp_path / "panel.csv"),
                 "--future", str(tmp_path / "future.csv")])
    pd.DataFrame(rows, columns=["unique_id", "ds", "promo"]).to_csv(tmp_path / "future.csv",
                                                                    index=False)
    cli.run(["predict", str(tmp_path / "run"), "--data", str(tmp_path / "panel.csv"),
             "--future", str(tmp_path / "future.csv"), "--out", str(tmp_path / "pred.csv")])
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["unique_id", "ds", "y_pred"] and len(pred) == 2 * H


def test_auto_chooses_on_validation_only(tmp_path):
    df = panel_frame(series=4)
    chosen = []
    for k, frame in enumerate((df, df.assign(y=np.where(
            df.groupby("unique_id").cumcount(ascending=False) < H,
            np.random.default_rng(1).normal(50, 10, len(df)), df.y)))):
        frame.to_csv(tmp_path / f"p{k}.csv", index=False)
        cli.run(["train", "forecast", "--data", str(tmp_path / f"p{k}.csv"), "--id-col",
                 "unique_id", "--model", "auto", "--lookback", str(L), "--horizon", str(H),
                 "--segment", "6", "--epochs", "1", "--out", str(tmp_path / f"run{k}"),
                 "--quiet"])
        metrics = json.loads((tmp_path / f"run{k}" / "metrics.json").read_text())
        chosen.append(metrics["auto"])
        assert set(metrics["auto"]["candidates"]) >= {"segrnn:64", "nlinear", "dlinear",
                                                      "seasonal_naive"}
    assert chosen[0] == chosen[1]  # the test rows changed, nothing chosen did
    again = cli.run(["predict", str(tmp_path / "run0"), "--data", str(tmp_path / "p0.csv"),
                     "--out", str(tmp_path / "pred.csv")])
    assert again == 0 and len(pd.read_csv(tmp_path / "pred.csv")) == 4 * H
    with pytest.raises(ConfigError, match=r"auto chooses among forecasters of a panel"):
        cli.run(["train", "forecast", "--data", "x.csv", "--target", "y", "--model", "auto"])
