"""ETTh1 long-horizon forecasting: SegRNN, NLinear, DLinear and last value on the standard
protocol, with a peer library (neuralforecast) in the same run.

Protocol (Informer, DLinear, SegRNN): rows 0-8640 train, 8640-11520 validation, 11520-14400
test (12/4/4 months), every column standardized with the training mean and std; validation and
test windows start ``lookback`` rows before their border and every test window is scored
(2881 - H of them); MSE and MAE on the standardized scale, the mean over windows, steps and
channels. Settings: M (7 columns predict 7), S (OT predicts OT).

Rows: last value; NLinear and DLinear trained on the same windows (LTSF-Linear's recipe: Adam
5e-3, batch 32, at most 10 epochs, learning rate halved each epoch, patience 3); each model
spec (``segrnn:128``, ``segrnn-lstm:128``, ...) with SegRNN's published recipe for the lookback
(scripts/SegRNN/*/etth1.sh of lss-1138/SegRNN: Adam, learning rate decayed by 0.8 per epoch
after the third, early stopping on the validation MSE with the best weights restored) and the
epoch cap and patience given here; the peer library's LSTM (neuralforecast) on the same split.

Every row is appended to ``--results`` (JSON lines) as soon as it is measured; rows already
there are skipped, so a killed run continues where it stopped. ``--table`` prints the markdown
tables of a results file beside the published figures.

    python examples/etth1_reproduction.py --path ../shared/data/timeseries/ETTh1.csv \\
        --settings M,S --lookbacks 96,720 --horizons 96,192,336,720 \\
        --models segrnn:128,segrnn-lstm:128 --epochs 10 --results etth1.jsonl
    python examples/etth1_reproduction.py --table etth1.jsonl
    python examples/etth1_reproduction.py --time-steps 3 --models segrnn:512,segrnn:128   # s/epoch
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from rnnkit.callbacks import Callback
from rnnkit.data import timeseries as ts
from rnnkit.datasets import ett
from rnnkit.optimizers import Adam
from rnnkit.tasks import forecasting, specs

# SegRNN's published configurations for ETTh1, by lookback (lss-1138/SegRNN,
# scripts/SegRNN/Lookback_96/etth1.sh and scripts/SegRNN/etth1.sh, both M; the S script,
# univariate/etth1.sh, uses the L=720 one at H=336 and 720): segment, dropout, learning rate,
# batch, patience. Other lookbacks take the nearest one's.
RECIPES = {
    96: {"segment": 24, "dropout": 0.5, "lr": 1e-3, "batch": 256, "patience": 10},
    720: {"segment": 24, "dropout": 0.1, "lr": 3e-4, "batch": 64, "patience": 5},
}
PUBLISHED = {  # (setting, row) -> {H: (MSE, MAE)}; the table and its sources
    ("M", "SegRNN L=720"): {96: (.351, .392), 192: (.392, .414), 336: (.423, .433), 720: (.466, .472)},
    ("M", "SegRNN L=96"): {96: (.368, .395), 192: (.408, .419), 336: (.444, .440), 720: (.446, .457)},
    ("M", "NLinear L=336"): {96: (.374, .394), 192: (.408, .415), 336: (.429, .427), 720: (.440, .453)},
    ("M", "DLinear L=336"): {96: (.375, .399), 192: (.405, .416), 336: (.439, .443), 720: (.472, .490)},
    ("M", "PatchTST/64"): {96: (.370, .400), 192: (.413, .429), 336: (.422, .440), 720: (.447, .468)},
    ("S", "NLinear L=336"): {96: (.053, .177), 192: (.069, .204), 336: (.081, .226), 720: (.080, .226)},
}


def recipe(lookback: int) -> dict:
    return dict(RECIPES[min(RECIPES, key=lambda k: abs(k - lookback))])


class EpochTimes(Callback):
    """Wall-clock seconds of every epoch (training and validation)."""

    def on_train_begin(self, logs=None):
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


class BatchTimes(Callback):
    """Wall-clock seconds of every training step."""

    def on_train_begin(self, logs=None):
        self.seconds: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def done_rows(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["setting"], r["lookback"], r["horizon"], r["model"]) for r in rows}


def append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def train_spec(spec: str, setting: str, lookback: int, horizon: int, data, args) -> dict:
    """One model spec trained with SegRNN's recipe for the lookback; its test errors."""
    r = recipe(lookback)
    train, val, test = (ds.rebatched(r["batch"]) for ds in data)
    torch.manual_seed(args.seed)
    segrnn = specs.is_segrnn(spec)
    layer = specs.forecaster(spec, horizon, targets=list(range(len(test.target_columns))),
                             segment=r["segment"], dropout=r["dropout"] if segrnn else 0.0,
                             channel_embedding=setting != "S", backend=args.backend)
    model = forecasting.compiled_forecaster(layer, Adam(learning_rate=r["lr"]))
    timer = EpochTimes()
    patience = min(r["patience"], args.patience) if args.patience else r["patience"]
    callbacks = [timer, *forecasting.training_callbacks(r["lr"], patience, 0.8, 3)]
    start = time.perf_counter()
    history = forecasting.fit_forecaster(model, train, val, args.epochs, callbacks, args.verbose,
                                         args.seed)
    seconds = time.perf_counter() - start
    val_loss = history.history["val_loss"]
    pred = forecasting.predictions(model, test)
    return {**forecasting.errors(pred, test.targets()), "seconds": seconds,
            "epochs": len(val_loss), "best_epoch": int(np.argmin(val_loss)) + 1,
            "seconds_per_epoch": float(np.median(timer.seconds)), "val_mse": float(min(val_loss)),
            "kept_untrained": history.kept_untrained,
            "recipe": {**r, "patience": patience, "max_epochs": args.epochs},
            "kernel": getattr(layer.recurrent, "last_kernel", None)}


def peer_lstm(setting: str, lookback: int, horizon: int, splits: ett.ETTSplits, args) -> dict:
    """neuralforecast's LSTM on the same standardized rows: trained on the training rows,
    early-stopped on the validation rows, one forecast from every test window (step 1)."""
    import pandas as pd
    from neuralforecast import NeuralForecast
    from neuralforecast.losses.pytorch import MSE
    from neuralforecast.models import LSTM

    end = splits.borders[2]
    values = splits.full.values[:end] if splits.standardized else \
        splits.normalizer.transform(splits.full.values[:end])
    columns = ["OT"] if setting == "S" else splits.full.columns
    frames = [pd.DataFrame({"unique_id": name, "ds": np.arange(end),
                            "y": values[:, splits.full.columns.index(name)]}) for name in columns]
    model = LSTM(h=horizon, input_size=lookback, loss=MSE(), max_steps=args.peer_steps,
                 val_check_steps=100, early_stop_patience_steps=3, random_seed=args.seed,
                 scaler_type="standard", accelerator="cpu", enable_progress_bar=False,
                 logger=False, enable_model_summary=False)
    nf = NeuralForecast(models=[model], freq=1)
    test_rows = splits.borders[2] - splits.borders[1]
    start = time.perf_counter()
    cv = nf.cross_validation(pd.concat(frames), val_size=splits.borders[1] - splits.borders[0],
                             test_size=test_rows, n_windows=None, step_size=1, refit=False)
    seconds = time.perf_counter() - start
    windows = cv["cutoff"].nunique()
    if windows != test_rows - horizon + 1:
        raise RuntimeError(f"neuralforecast scored {windows} test windows, the protocol "
                           f"{test_rows - horizon + 1}")
    err = cv["LSTM"].to_numpy() - cv["y"].to_numpy()
    return {"mse": float((err**2).mean()), "mae": float(np.abs(err).mean()),
            "seconds": seconds, "windows": int(windows), "max_steps": args.peer_steps}


def run(args) -> None:
    torch.set_num_threads(args.threads)
    results = Path(args.results)
    done = done_rows(results)
    splits = ett.load(args.path, standardize=True)
    try:
        import neuralforecast  # noqa: F401
        peer = args.peer
    except ImportError:
        print("neuralforecast is not installed (pip install neuralforecast): no peer rows")
        peer = False
    for setting in args.settings.split(","):
        for lookback in (int(v) for v in args.lookbacks.split(",")):
            for horizon in (int(v) for v in args.horizons.split(",")):
                key = (setting, lookback, horizon)
                data = ett.windows(splits, lookback, horizon, setting, seed=args.seed)
                rows = ["last value", "NLinear", "DLinear", *args.models.split(",")]
                if peer and lookback in _ints(args.peer_lookbacks) \
                        and horizon in _ints(args.peer_horizons):
                    rows.append("neuralforecast LSTM")
                for name in rows:
                    if (*key, name) in done:
                        continue
                    row = {"setting": setting, "lookback": lookback, "horizon": horizon,
                           "model": name, **measure(name, key, data, splits, args)}
                    append(results, row)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def measure(name: str, key: tuple, data, splits, args) -> dict:
    setting, lookback, horizon = key
    train, val, test = data
    if name == "last value":
        return {**forecasting.errors(ts.last_value(test), test.targets()), "seconds": 0.0}
    if name in ("NLinear", "DLinear"):
        start = time.perf_counter()
        model = forecasting.linear_baseline(name.lower(), horizon,
                                            range(len(test.target_columns)), train, val,
                                            args.seed)
        seconds = time.perf_counter() - start
        return {**forecasting.errors(forecasting.predictions(model, test), test.targets()),
                "seconds": seconds}
    if name == "neuralforecast LSTM":
        return peer_lstm(setting, lookback, horizon, splits, args)
    return train_spec(name, setting, lookback, horizon, data, args)


def epoch_times(args) -> None:
    """The median time of ``--time-steps`` training steps of each spec and configuration, and the
    training epoch it implies (steps per epoch × step; validation not included)."""
    torch.set_num_threads(args.threads)
    splits = ett.load(args.path, standardize=True)
    print("| setting | L | H | model | batch | ms/step | s/epoch (training) |")
    print("|---|---|---|---|---|---|---|")
    for setting in args.settings.split(","):
        for lookback in _ints(args.lookbacks):
            for horizon in _ints(args.horizons):
                r = recipe(lookback)
                train = ett.windows(splits, lookback, horizon, setting)[0].rebatched(r["batch"])
                for spec in args.models.split(","):
                    layer = specs.forecaster(spec, horizon, list(range(len(train.target_columns))),
                                             segment=r["segment"], dropout=r["dropout"],
                                             channel_embedding=setting != "S",
                                             backend=args.backend)
                    model = forecasting.compiled_forecaster(layer, Adam(learning_rate=r["lr"]))
                    timer = BatchTimes()
                    model.fit(train, epochs=1, steps_per_epoch=args.time_steps + 1, verbose=0,
                              callbacks=[timer])
                    step = float(np.median(timer.seconds[1:]))  # the first builds and warms up
                    print(f"| {setting} | {lookback} | {horizon} | {spec} | {r['batch']} | "
                          f"{1000 * step:.0f} | {step * len(train):.0f} |", flush=True)


def table(path: str) -> str:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    out = []
    for setting in sorted({r["setting"] for r in rows}):
        mine = [r for r in rows if r["setting"] == setting]
        horizons = sorted({r["horizon"] for r in mine})
        out += [f"**{setting} setting** (test MSE / MAE, standardized; {_seconds_note(mine)})", "",
                "| row | " + " | ".join(f"H={h}" for h in horizons) + " |",
                "|---|" + "---|" * len(horizons)]
        for lookback in sorted({r["lookback"] for r in mine}):
            for name in dict.fromkeys(r["model"] for r in mine if r["lookback"] == lookback):
                cells = []
                for h in horizons:
                    hit = [r for r in mine if (r["lookback"], r["horizon"], r["model"]) ==
                           (lookback, h, name)]
                    cells.append(_cell(hit[0]) if hit else "-")
                out.append(f"| {name}, L={lookback} | " + " | ".join(cells) + " |")
        for (s, name), figures in PUBLISHED.items():
            if s == setting:
                out.append(f"| published: {name} | " + " | ".join(
                    f"{figures[h][0]:.3f} / {figures[h][1]:.3f}" if h in figures else "-"
                    for h in horizons) + " |")
        out.append("")
    return "\n".join(out)


def _cell(row: dict) -> str:
    extra = ""
    if "seconds_per_epoch" in row:
        extra = f" ({row['epochs']} ep, {row['seconds_per_epoch']:.0f} s/ep)"
    elif row.get("seconds", 0) >= 1:
        extra = f" ({row['seconds']:.0f} s)"
    return f"{row['mse']:.3f} / {row['mae']:.3f}{extra}"


def _seconds_note(rows) -> str:
    total = sum(r.get("seconds", 0.0) for r in rows)
    return f"{total / 3600:.1f} h of training in all" if total >= 3600 else \
        f"{math.ceil(total / 60)} min of training in all"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=None, help="ETTh1.csv (default: download)")
    parser.add_argument("--settings", default="M,S")
    parser.add_argument("--lookbacks", default="96,720")
    parser.add_argument("--horizons", default="96,192,336,720")
    parser.add_argument("--models", default="segrnn:128,segrnn-lstm:128")
    parser.add_argument("--epochs", type=int, default=30, help="epoch cap (published: 30)")
    parser.add_argument("--patience", type=int, default=0,
                        help="cap on the published patience (0: as published)")
    parser.add_argument("--backend", default="auto", help="kernel of the recurrent layer")
    parser.add_argument("--no-peer", dest="peer", action="store_false")
    parser.add_argument("--peer-lookbacks", default="96")
    parser.add_argument("--peer-horizons", default="96,192,336,720")
    parser.add_argument("--peer-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a busy 2-core machine)")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--results", default="etth1.jsonl")
    parser.add_argument("--table", default=None, help="print the tables of a results file")
    parser.add_argument("--time-steps", type=int, default=0,
                        help="only time this many training steps per configuration")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table))
    elif args.time_steps:
        epoch_times(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
