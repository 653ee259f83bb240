"""ETTh1 oil temperature (OT) forecasting on the standard split of the long-horizon literature.

Informer/Autoformer/DLinear protocol: 12/4/4 months train/validation/test, every column
standardized with the training statistics, windows of 96 hours predict the next 24 or 96 hours
of OT, test MAE and MSE on the standardized scale. Compared: the last value (the lecture's
"common sense"), a linear model on the window (least squares), and GRU, LSTM, bidirectional GRU
and dilated GRU (dilations 1, 2, 4, 8) followed by Dense(horizon), trained with MSE and Adam,
keeping the weights of the best validation epoch.

    python examples/etth1_reproduction.py --path ../shared/data/timeseries/ETTh1.csv \
        [--horizons 24,96] [--models gru:32,lstm:32,bidirectional-gru:32,dilated-gru:32] \
        [--epochs 10] [--features OT]   # univariate (S); --features all for all 7 columns (MS)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from rnnkit.callbacks import EarlyStopping
from rnnkit.data import timeseries as ts
from rnnkit.datasets import ett
from rnnkit.optimizers import Adam
from rnnkit.tasks import forecasting, specs

LOOKBACK = 96


def split_windows(splits: ett.ETTSplits, columns: list[int], horizon: int, batch_size: int):
    """Train/val/test WindowDatasets on the standardized columns; the target OT is the last."""
    data = splits.full.values[:, columns]
    target = len(columns) - 1
    train_end, val_end, test_end = splits.borders
    ranges = [(0, train_end), (train_end - LOOKBACK, val_end), (val_end - LOOKBACK, test_end)]
    return [ts.WindowDataset(data, LOOKBACK, 0, start=s, end=e - horizon + 1, horizon=horizon,
                             target=target, batch_size=batch_size, shuffle=i == 0, seed=0)
            for i, (s, e) in enumerate(ranges)]


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    err = pred - truth
    return {"mae": float(np.abs(err).mean()), "mse": float((err**2).mean())}


def train_model(spec: str, horizon: int, train, val, args) -> tuple[object, float]:
    torch.manual_seed(args.seed)
    model = forecasting.forecaster(specs.recurrent_layer(spec), horizon, "mse",
                                   Adam(learning_rate=args.lr, clipnorm=1.0))
    start = time.perf_counter()
    model.fit(train, validation_data=val, epochs=args.epochs, verbose=args.verbose,
              callbacks=[EarlyStopping(patience=3, restore_best_weights=True)])
    return model, time.perf_counter() - start


def run_horizon(splits, columns, horizon: int, args) -> list[dict]:
    train, val, test = split_windows(splits, columns, horizon, args.batch_size)
    truth = test.targets()
    rows = [{"model": "last value", **scores(ts.last_value(test), truth), "seconds": 0.0},
            {"model": "linear (least squares)", **scores(ts.linear(train, test), truth),
             "seconds": 0.0}]
    for spec in args.models.split(","):
        model, seconds = train_model(spec, horizon, train, val, args)
        pred = model.predict(test.batches(), verbose=0).astype(np.float64)
        rows.append({"model": spec, **scores(pred, truth), "seconds": seconds})
        print(f"H={horizon} {spec}: {rows[-1]}", flush=True)
    return rows


def table(results: dict, args) -> str:
    lines = [f"ETTh1, target OT, features {args.features}, lookback {LOOKBACK}, 12/4/4-month split, "
             f"standardized; test set; at most {args.epochs} epochs (early stopping, patience 3)", "",
             "| model | " + " | ".join(f"H={h} MSE | H={h} MAE" for h in results) + " | time |",
             "|---|" + "---|---|" * len(results) + "---|"]
    names = [r["model"] for r in next(iter(results.values()))]
    for i, name in enumerate(names):
        cells = " | ".join(f"{rows[i]['mse']:.4f} | {rows[i]['mae']:.4f}" for rows in results.values())
        seconds = sum(rows[i]["seconds"] for rows in results.values())
        lines.append(f"| {name} | {cells} | {seconds:.0f} s |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=None, help="ETTh1.csv (default: download)")
    parser.add_argument("--horizons", default="24,96")
    parser.add_argument("--models", default="gru:32,lstm:32,bidirectional-gru:32,dilated-gru:32")
    parser.add_argument("--features", default="OT", help="'OT' (univariate) or 'all'")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = ett.load(args.path, standardize=True)
    columns = list(range(len(ett.COLUMNS))) if args.features == "all" else [ett.COLUMNS.index("OT")]
    results = {int(h): run_horizon(splits, columns, int(h), args) for h in args.horizons.split(",")}
    print(table(results, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
