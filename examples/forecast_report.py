"""Write the HTML report of a generated forecast panel: hourly series with a daily cycle, a model's
forecast with an 80% interval, and two baselines (naive, seasonal naive).

    python examples/forecast_report.py report.html [--series 20]
    chromium --headless --screenshot=docs/report.png --window-size=1280,2080 file://$PWD/report.html

(docs/report.png was made this way.) The forecasts are made up here, not trained: this shows the page.
"""

from __future__ import annotations

import argparse

import numpy as np

from rnnkit.report import write_report

HISTORY, HORIZON, SEASON = 24 * 7, 48, 24


def _metrics(y: np.ndarray, f: np.ndarray, insample: np.ndarray) -> dict[str, float]:
    scale = np.mean(np.abs(insample[SEASON:] - insample[:-SEASON]))
    err = y - f
    return {"smape": float(200 * np.mean(np.abs(err) / (np.abs(y) + np.abs(f)))),
            "mase": float(np.mean(np.abs(err)) / scale),
            "mae": float(np.mean(np.abs(err))), "mse": float(np.mean(err ** 2))}


def make_panel(n_series: int = 20, seed: int = 0) -> dict:
    """The report data (rnnkit.report.write_report's schema) of ``n_series`` generated series."""
    rng = np.random.default_rng(seed)
    hours = np.datetime64("2016-07-01T00:00") + np.arange(HISTORY + HORIZON) * np.timedelta64(1, "h")
    stamps = np.datetime_as_string(hours).tolist()  # ISO strings, "2016-07-01T00:00"
    hour = np.arange(HISTORY + HORIZON)
    series, sums = [], {"model": [], "naive": [], "seasonal_naive": []}
    for i in range(n_series):
        level, amp = rng.uniform(20, 200), rng.uniform(0.1, 0.5)
        clean = level * (1 + amp * np.sin(2 * np.pi * (hour - rng.integers(24)) / SEASON)
                         + 0.0005 * rng.normal() * hour)
        noise = rng.uniform(0.03, 0.08) * level
        y = clean + rng.normal(0, noise, hour.size)
        past, future = y[:HISTORY], y[HISTORY:]
        model = clean[HISTORY:] * rng.uniform(0.97, 1.03)  # the "model": the cycle, a little off in level
        spread = 1.28 * noise * np.sqrt(1 + 2 * np.arange(HORIZON) / HORIZON)
        naive = np.full(HORIZON, past[-1])
        seasonal = np.tile(past[-SEASON:], HORIZON // SEASON)
        forecasts = {"model": model, "naive": naive, "seasonal_naive": seasonal}
        metrics = {name: _metrics(future, f, past) for name, f in forecasts.items()}
        for name, m in metrics.items():
            sums[name].append(m)
        series.append({
            "id": f"MT_{i + 1:03d}",
            "history": {"t": stamps[:HISTORY], "y": past},
            "actual": {"t": stamps[HISTORY:], "y": future},
            "forecasts": {"model": {"y": model, "lo": model - spread, "hi": model + spread},
                          "naive": {"y": naive}, "seasonal_naive": {"y": seasonal}},
            "metrics": metrics["model"]})
    mean = {name: {k: float(np.mean([m[k] for m in rows])) for k in rows[0]} for name, rows in sums.items()}
    for name in mean:
        mean[name]["owa"] = 0.5 * (mean[name]["smape"] / mean["naive"]["smape"]
                                   + mean[name]["mase"] / mean["naive"]["mase"])
    epochs = np.arange(1, 31)
    return {"title": "electricity · segrnn:gru:64 · L=168, H=48",
            "summary": {"model": mean["model"],
                        "baselines": {"naive": mean["naive"], "seasonal_naive": mean["seasonal_naive"]}},
            "series": series,
            "interval": {"lower": 0.1, "upper": 0.9},
            "history": {"loss": 0.9 * np.exp(-epochs / 6) + 0.12 + 0.004 * rng.normal(size=30),
                        "val_loss": 0.8 * np.exp(-epochs / 7) + 0.16 + 0.004 * np.maximum(0, epochs - 20)
                        + 0.005 * rng.normal(size=30)},
            "config": {"model": "segrnn:gru:64", "lookback": HISTORY, "horizon": HORIZON,
                       "epochs": 30, "batch_size": 64, "optimizer": {"name": "adam", "lr": 0.001},
                       "loss": "quantile", "quantiles": [0.1, 0.5, 0.9], "seed": seed}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--series", type=int, default=20)
    args = parser.parse_args()
    print(write_report(args.path, make_panel(args.series)))


if __name__ == "__main__":
    main()
