"""neuralforecast's RNN and LSTM (and NHITS) on M4 Hourly, on the competition's split, as comparison rows.

rnnkit's M4 Hourly forecaster is compared with Nixtla's neuralforecast models on the same data: each
model sees only `Hourly-train.csv` and forecasts the 48 values of `Hourly-test.csv`. neuralforecast is
no dependency of rnnkit: this script runs in its own virtualenv (rnnkit's benchmark calls it as a
subprocess when that venv is given) and imports nothing from rnnkit.

Set up the venv (torch first, from the CPU wheel on disk: an unpinned torch would pull the CUDA
packages; with torch already satisfied pip resolves neuralforecast 3.3.0 without another torch)::

    python3 -m venv /work/venvs/nf
    /work/venvs/nf/bin/pip install torch==2.13.0
    /work/venvs/nf/bin/pip install neuralforecast==3.3.0

Measured with torch 2.13.0+cpu, neuralforecast 3.3.0, pytorch-lightning 2.6.6, pandas 3.1.2,
numpy 2.4.6 (the JSON records the versions of each run).

Run::

    /work/venvs/nf/bin/python benchmarks/m4_neuralforecast.py --out /tmp/nf_m4            # LSTM, RNN
    /work/venvs/nf/bin/python benchmarks/m4_neuralforecast.py --out /tmp/nf_m4 --models LSTM,RNN,NHITS
    /work/venvs/nf/bin/python benchmarks/m4_neuralforecast.py --out /tmp/nf_smoke --smoke  # seconds

It writes to `--out`: `forecasts.csv` (long: unique_id, step 1..48, one column per model) and
`run.json` (versions, settings, each model's hyperparameters, training and prediction wall time,
sMAPE, MASE, OWA), and prints a markdown table.

Hyperparameters: the `config_lstm` search space of neuralforecast's end-to-end walkthrough on M4
Hourly (h=48) is input_size in {48, 96, 144}, encoder_hidden_size in {64, 128}, encoder_n_layers in
{2, 4}, learning_rate log-uniform in [1e-4, 1e-2], scaler_type 'robust', max_steps in {500, 1000},
batch_size in {1, 4}. One fixed point of that space is used for both recurrent models (no tuning, as
for rnnkit's row): input_size 96 (four days), two layers of 128 units, learning rate 1e-3, robust
scaling, 500 steps, 4 series per batch (128 windows drawn from them), MAE loss (neuralforecast's
default; the M4 scores are absolute-error based). The cheaper end of the space for steps and input
keeps the two models within about 15 minutes on a shared 2-core machine. NHITS keeps its library
defaults but for the same input size, steps, scaler and batch.

Threads: on a loaded 2-core machine (load average 7) a training step of the LSTM took 9.6 s with two
torch threads against 0.9 s with one (OpenMP threads wait on each other when the cores are taken);
give `--threads 1` there, and the default two on a quiet machine.

Measured 2026-12-08 on the shared 2-core machine (other agents running: load average 6 to 10, so the
times are upper bounds), `--threads 1`, seed 1, all 414 series, the versions above:

| model, steps | sMAPE | MASE | OWA | train s | predict s |
|---|---|---|---|---|---|
| LSTM, 500 | 14.618 | 1.419 | 0.694 | 285.6 | 1.0 |
| RNN, 500 | 15.023 | 1.487 | 0.719 | 57.9 | 0.4 |
| NHITS, 500 | 14.338 | 1.310 | 0.663 | 177.3 | 0.9 |
| LSTM, 1000 | 14.494 | 1.380 | 0.682 | 933.8 | 1.9 |
| RNN, 1000 | 14.689 | 1.409 | 0.694 | 283.5 | 1.4 |
| SeasonalNaive | 13.912 | 1.193 | 0.628 | - | - |

The seasonal naive row gives 13.912 and 1.193, the Naive S figures for Hourly in M4's results table as
we remember them (not re-checked against the paper here). Untuned at these settings, none of the three
networks beats it.

Scores as in M4: sMAPE and MASE per series (MASE scaled by the in-sample seasonal naive error at
m = 24), averaged over series; OWA = (sMAPE / 18.383 + MASE / 2.395) / 2 with the published Naive2
figures. A seasonal naive row (the last 24 values repeated), computed here, checks the scoring.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

HORIZON = 48
SEASON = 24
NAIVE2_SMAPE = 18.383
NAIVE2_MASE = 2.395
RECURRENT = ("LSTM", "RNN")
KNOWN_MODELS = (*RECURRENT, "NHITS")


@dataclass(frozen=True)
class Settings:
    """What every model of one run shares."""

    input_size: int
    max_steps: int
    batch_size: int
    learning_rate: float
    seed: int


def default_data_dir() -> Path:
    """RNNKIT_SHARED_DATA/m4 when set, else the shared data folder beside the repository."""
    root = os.environ.get("RNNKIT_SHARED_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    return base / "m4"


def read_m4_wide(path: Path) -> dict[str, np.ndarray]:
    """One M4 file as {series id: values}: column "V1" is the id, the padding cells are dropped."""
    frame = pd.read_csv(path, index_col="V1", dtype={"V1": str})
    return {str(uid): row.dropna().to_numpy(dtype=np.float64) for uid, row in frame.iterrows()}


def long_frame(train: dict[str, np.ndarray]) -> pd.DataFrame:
    """neuralforecast's long format: unique_id, ds (the step number, 1-based), y."""
    parts = [pd.DataFrame({"unique_id": uid, "ds": np.arange(1, len(y) + 1), "y": y})
             for uid, y in train.items()]
    return pd.concat(parts, ignore_index=True)


def build_model(name: str, s: Settings, trainer: dict):
    """One neuralforecast model of the run, with its hyperparameters as a plain dict."""
    from neuralforecast.models import LSTM, NHITS, RNN

    common = dict(h=HORIZON, input_size=s.input_size, max_steps=s.max_steps, scaler_type="robust",
                  learning_rate=s.learning_rate, batch_size=s.batch_size, random_seed=s.seed)
    if name in RECURRENT:
        hp = dict(common, encoder_n_layers=2, encoder_hidden_size=128, decoder_hidden_size=128)
        cls = LSTM if name == "LSTM" else RNN
    else:
        hp, cls = common, NHITS
    return cls(**hp, **trainer), hp


def fit_predict(name: str, df: pd.DataFrame, s: Settings, trainer: dict) -> tuple[pd.DataFrame, dict]:
    """Train one model alone (so its time is its own) and forecast the 48 steps after each series."""
    from neuralforecast import NeuralForecast

    model, hp = build_model(name, s, trainer)
    nf = NeuralForecast(models=[model], freq=1)
    start = time.perf_counter()
    nf.fit(df=df)
    fitted = time.perf_counter()
    fc = nf.predict()
    done = time.perf_counter()
    fc = fc.reset_index() if "unique_id" not in fc.columns else fc
    return fc[["unique_id", "ds", name]], {"hyperparameters": hp, "train_seconds": fitted - start,
                                           "predict_seconds": done - fitted}


def to_steps(fc: pd.DataFrame, lengths: dict[str, int], name: str) -> pd.Series:
    """A model's forecasts indexed by (unique_id, step 1..48), step counted from each series' end."""
    step = fc["ds"].to_numpy() - fc["unique_id"].map(lengths).to_numpy()
    return pd.Series(fc[name].to_numpy(), index=pd.MultiIndex.from_arrays(
        [fc["unique_id"].astype(str).to_numpy(), step], names=["unique_id", "step"]), name=name)


def seasonal_naive(train: dict[str, np.ndarray]) -> pd.Series:
    """The last day of each series repeated over the horizon (the scorer's check)."""
    index, values = [], []
    for uid, y in train.items():
        index += [(uid, k) for k in range(1, HORIZON + 1)]
        values.append(np.resize(y[-SEASON:], HORIZON))
    return pd.Series(np.concatenate(values), index=pd.MultiIndex.from_tuples(
        index, names=["unique_id", "step"]), name="SeasonalNaive")


def score(train: dict[str, np.ndarray], test: dict[str, np.ndarray], forecast: pd.Series) -> dict:
    """M4's sMAPE (%) and MASE (m = 24) averaged over series, and OWA against the published Naive2."""
    smapes, mases = [], []
    for uid, y in test.items():
        f = forecast.loc[uid].reindex(range(1, len(y) + 1)).to_numpy()  # (48,)
        if np.isnan(f).any():
            raise ValueError(f"series {uid}: no forecast (or NaN) for some of steps 1..{len(y)}")
        x = train[uid]
        smapes.append(200.0 * np.mean(np.abs(y - f) / (np.abs(y) + np.abs(f))))
        mases.append(np.mean(np.abs(y - f)) / np.mean(np.abs(x[SEASON:] - x[:-SEASON])))
    smape, mase = float(np.mean(smapes)), float(np.mean(mases))
    return {"smape": smape, "mase": mase, "owa": 0.5 * (smape / NAIVE2_SMAPE + mase / NAIVE2_MASE)}


def versions() -> dict[str, str]:
    names = ("neuralforecast", "torch", "pytorch-lightning", "pandas", "numpy")
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def table(results: dict[str, dict]) -> str:
    lines = ["| model | sMAPE | MASE | OWA | train s | predict s |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        times = (f"{r['train_seconds']:.1f} | {r['predict_seconds']:.1f}" if "train_seconds" in r
                 else "- | -")
        lines.append(f"| {name} | {r['smape']:.3f} | {r['mase']:.3f} | {r['owa']:.3f} | {times} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for forecasts.csv and run.json")
    p.add_argument("--data-dir", type=Path, default=None, help="folder of Hourly-train.csv, Hourly-test.csv")
    p.add_argument("--models", default="LSTM,RNN", help=f"comma-separated, of {', '.join(KNOWN_MODELS)}")
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=4, help="series per batch")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="5 series, 10 steps: checks the plumbing")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(KNOWN_MODELS))
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {', '.join(KNOWN_MODELS)}")
    return args


def load(data_dir: Path, limit: int | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Train and test values of the first `limit` series (all when None)."""
    paths = [data_dir / "Hourly-train.csv", data_dir / "Hourly-test.csv"]
    for path in paths:
        if not path.is_file():
            sys.exit(f"{path}: not found (give --data-dir, or set RNNKIT_SHARED_DATA)")
    train, test = (read_m4_wide(p) for p in paths)
    ids = list(train)[:limit]
    return {u: train[u] for u in ids}, {u: test[u] for u in ids}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load_average = os.getloadavg()[0]
    import torch

    torch.set_num_threads(args.threads)
    train, test = load(args.data_dir or default_data_dir(), 5 if args.smoke else None)
    s = Settings(args.input_size, 10 if args.smoke else args.max_steps, args.batch_size,
                 args.learning_rate, args.seed)
    # No progress bars, logs or checkpoints: they would cost time and litter the working folder.
    trainer = dict(accelerator="cpu", devices=1, enable_progress_bar=False, logger=False,
                   enable_checkpointing=False, enable_model_summary=False)
    df = long_frame(train)
    lengths = {u: len(y) for u, y in train.items()}
    forecasts = {"SeasonalNaive": seasonal_naive(train)}
    results: dict[str, dict] = {}
    for name in args.models:
        fc, timing = fit_predict(name, df, s, trainer)
        forecasts[name] = to_steps(fc, lengths, name)
        results[name] = timing
        print(f"{name}: trained in {timing['train_seconds']:.1f} s", flush=True)
    for name, fc in forecasts.items():
        results[name] = {**results.get(name, {}), **score(train, test, fc)}
    write(args, s, forecasts, results, load_average)
    print(table(results))


def write(args: argparse.Namespace, s: Settings, forecasts: dict[str, pd.Series], results: dict,
          load_average: float) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    models = pd.concat([forecasts[m] for m in args.models], axis=1).sort_index()
    models.reset_index().to_csv(args.out / "forecasts.csv", index=False)
    run = {"versions": versions(), "threads": args.threads, "smoke": args.smoke,
           "series": len(models.index.get_level_values(0).unique()), "horizon": HORIZON,
           "settings": asdict(s), "load_average_at_start": load_average, "results": results}
    (args.out / "run.json").write_text(json.dumps(run, indent=2))


if __name__ == "__main__":
    main()
