"""M4 Hourly with rnnkit's ESRNN layer: train on windows of the train file, score val and test.

Protocol: the model sees only Hourly-train.csv. It is trained on windows that end before the
last 48 training values of each series, which are the validation set (model selection). The
same trained models (global, windowed: no refit) then forecast the 48 test values from the end
of the whole training series, scored once on Hourly-test.csv. Each series is divided by its
training mean (the per-series scaler; positive, as the log scale needs). Prints OWA, sMAPE,
MASE (M4's definitions, Naive2's published figures) and the training time.

    PYTHONPATH=src python examples/m4_hourly_model.py    # the best recipe: val OWA 0.456, test 0.431
    PYTHONPATH=src python examples/m4_hourly_model.py --val-only --steps 1000 --ensemble 1
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from rnnkit.layers import GRU, LSTM
from rnnkit.layers.esrnn import ESRNN

DATA = Path(__file__).resolve().parents[1] / ".." / ".." / "shared" / "data" / "m4"
HORIZON, SEASON = 48, 24
NAIVE2_SMAPE, NAIVE2_MASE = 18.383, 2.395


def read_series(path: Path) -> list[np.ndarray]:
    """One float array per row of an M4 file (the id column dropped, padding cells skipped)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [np.array([float(v) for v in row[1:] if v != ""]) for row in rows]


def scores(history: list[np.ndarray], actual: np.ndarray, forecast: np.ndarray) -> dict:
    """M4's sMAPE and MASE (averaged over series) and OWA against Naive2's published figures."""
    smape = 200 * np.mean(np.abs(actual - forecast) / (np.abs(actual) + np.abs(forecast)), axis=1)
    scale = np.array([np.mean(np.abs(h[SEASON:] - h[:-SEASON])) for h in history])
    mase = np.mean(np.abs(actual - forecast), axis=1) / scale
    s, m = float(smape.mean()), float(mase.mean())
    return {"owa": 0.5 * (s / NAIVE2_SMAPE + m / NAIVE2_MASE), "smape": s, "mase": m}


class Panel:
    """Series of unequal length in one padded array; windows are index arithmetic."""

    def __init__(self, series: list[np.ndarray], lookback: int, recent: int | None):
        self.lengths = np.array([len(s) for s in series])
        self.values = np.zeros((len(series), self.lengths.max()), dtype=np.float32)
        for i, s in enumerate(series):
            self.values[i, :len(s)] = s
        self.lookback = lookback
        # window ends t (exclusive) from lookback to length - H; ``recent`` keeps the last ones
        self.first = np.full(len(series), lookback)
        if recent is not None:
            self.first = np.maximum(self.first, self.lengths - HORIZON - recent)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Series drawn uniformly (balanced), then a window end: x (B, L, 1), y (B, H)."""
        rows = rng.integers(0, len(self.lengths), size)
        last = self.lengths[rows] - HORIZON
        ends = rng.integers(self.first[rows], last + 1)
        steps = ends[:, None] + np.arange(-self.lookback, HORIZON)[None, :]
        window = self.values[rows[:, None], steps]  # (B, L+H)
        return (torch.from_numpy(window[:, :self.lookback, None]),
                torch.from_numpy(window[:, self.lookback:]))

    def last_windows(self) -> torch.Tensor:
        """The window that ends at each series' end: (N, L, 1)."""
        steps = self.lengths[:, None] + np.arange(-self.lookback, 0)[None, :]
        return torch.from_numpy(self.values[np.arange(len(self.lengths))[:, None], steps][..., None])


def build(args) -> ESRNN:
    cell = {"lstm": LSTM, "gru": GRU}[args.cell](args.units, backend=args.backend)
    model = ESRNN(cell, HORIZON, SEASON, dilations=args.dilations, skip=not args.no_skip,
                  dropout=args.dropout, quantiles=None)
    model.ensure_built((None, args.lookback, 1))
    return model


def pinball_log(forecast: torch.Tensor, actual: torch.Tensor, tau: float) -> torch.Tensor:
    """Pinball loss at level tau on log values: a relative error, as sMAPE and ES-RNN's loss."""
    diff = torch.log(actual.clamp_min(1e-6)) - torch.log(forecast.clamp_min(1e-6))
    return torch.maximum(tau * diff, (tau - 1) * diff).mean()


def train(series: list[np.ndarray], args, seed: int) -> ESRNN:
    """Fits one model on windows of ``series`` (already scaled) for ``args.steps`` batches."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build(args)
    panel = Panel(series, args.lookback, args.recent)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.1)
    model.train()
    for step in range(args.steps):
        x, y = panel.batch(rng, args.batch)
        loss = pinball_log(model(x)[:, :, 0], y, args.tau)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if args.verbose and step % 200 == 0:
            print(f"  step {step} loss {loss.item():.4f}", flush=True)
    model.eval()
    return model


def forecast(models: list[ESRNN], series: list[np.ndarray], lookback: int) -> np.ndarray:
    """The median over models of each series' H-step forecast from its end: (N, H)."""
    x = Panel(series, lookback, None).last_windows()
    with torch.no_grad():
        outs = np.stack([m(x)[:, :, 0].numpy() for m in models])
    return np.median(outs, axis=0)


def run(history: list[np.ndarray], args) -> tuple[list[ESRNN], float]:
    """Trains the ensemble on ``history`` (raw values, each divided by its own mean)."""
    means = [h.mean() for h in history]
    start = time.perf_counter()
    models = [train([h / m for h, m in zip(history, means)], args, args.seed + k)
              for k in range(args.ensemble)]
    return models, time.perf_counter() - start


def predict(models, history, lookback) -> np.ndarray:
    means = np.array([h.mean() for h in history])
    return forecast(models, [h / m for h, m in zip(history, means)], lookback) * means[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookback", type=int, default=336)
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--backend", default="native",
                        help="the recurrent kernel (torch's fused LSTM/GRU is fastest here)")
    parser.add_argument("--dilations", type=int, nargs="+", default=[1, 7])
    parser.add_argument("--no-skip", action="store_true")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--recent", type=int, default=None,
                        help="window ends only in the last RECENT steps before each series' end")
    parser.add_argument("--ensemble", type=int, default=3, help="models (seeds), median forecast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (two were slower than one on the shared 2-core machine)")
    parser.add_argument("--val-only", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_series = read_series(DATA / "Hourly-train.csv")
    fit_part = [s[:-HORIZON] for s in train_series]
    val_actual = np.stack([s[-HORIZON:] for s in train_series])
    models, seconds = run(fit_part, args)
    for k, model in enumerate(models):
        alone = scores(fit_part, val_actual, predict([model], fit_part, args.lookback))
        print(f"val   model {k}: OWA {alone['owa']:.4f}", flush=True)
    val = scores(fit_part, val_actual, predict(models, fit_part, args.lookback))
    print(f"val   OWA {val['owa']:.4f}  sMAPE {val['smape']:.3f}  MASE {val['mase']:.3f}  "
          f"train {seconds:.0f} s", flush=True)
    if args.val_only:
        return
    test_actual = np.stack(read_series(DATA / "Hourly-test.csv"))
    test = scores(train_series, test_actual, predict(models, train_series, args.lookback))
    print(f"test  OWA {test['owa']:.4f}  sMAPE {test['smape']:.3f}  MASE {test['mase']:.3f}")


if __name__ == "__main__":
    main()
