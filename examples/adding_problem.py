"""The adding problem (Hochreiter & Schmidhuber 1997): which cells learn a long-term dependency?

Each sequence has T steps of two features: a random value in [0, 1) and a marker that is 1 at
exactly two steps (one in each half). The target is the sum of the two marked values, so the
network must carry information across up to T steps. Always answering 1.0 gives the variance of
the sum, MSE ≈ 0.167; a cell "learns the dependency" when its validation MSE falls below 0.01.

    python examples/adding_problem.py [--steps 100] [--epochs 8] [--cells simple,lstm,gru] [--write-doc]

--write-doc puts the table into docs/results.md (its ``demo`` block, which the README copies).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import torch

from rnnkit import layers
from rnnkit.models import Sequential
from rnnkit.optimizers import Adam

SOLVED_MSE = 0.01
CELLS = {
    "SimpleRNN": lambda units: layers.SimpleRNN(units),
    "LSTM": lambda units: layers.LSTM(units),
    "GRU": lambda units: layers.GRU(units),
}


def adding_batch(rng: np.random.Generator, n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """x (n, T, 2) float32 and y (n, 1): the sum of the two marked values."""
    values = rng.random((n, steps), dtype=np.float32)
    marks = np.zeros((n, steps), dtype=np.float32)
    rows = np.arange(n)
    marks[rows, rng.integers(0, steps // 2, n)] = 1.0
    marks[rows, rng.integers(steps // 2, steps, n)] = 1.0
    return np.stack([values, marks], -1), (values * marks).sum(1, keepdims=True)


def batches(seed: int, batch_size: int, steps: int):
    rng = np.random.default_rng(seed)
    while True:
        yield adding_batch(rng, batch_size, steps)


def train(name: str, args) -> dict:
    torch.manual_seed(args.seed)
    model = Sequential([CELLS[name](args.units), layers.Dense(1)])
    model.compile(optimizer=Adam(learning_rate=args.lr, clipnorm=1.0), loss="mse")
    x_val, y_val = adding_batch(np.random.default_rng(10_000), 1000, args.steps)
    start = time.perf_counter()
    history = model.fit(batches(args.seed, args.batch_size, args.steps),
                        steps_per_epoch=args.steps_per_epoch, epochs=args.epochs,
                        validation_data=(x_val, y_val), verbose=args.verbose)
    val = history.history["val_loss"]
    solved_at = next((i + 1 for i, v in enumerate(val) if v < SOLVED_MSE), None)
    return {"cell": name, "val_mse": val[-1], "solved_at": solved_at,
            "seconds": time.perf_counter() - start, "kernel": model.layers[0].last_kernel}


def title(args) -> str:
    return (f"Adding problem, T = {args.steps}, {args.units} units, "
            f"{args.epochs} epochs × {args.steps_per_epoch} batches of {args.batch_size}")


def table(rows: list[dict]) -> str:
    baseline = 2 / 12  # variance of the sum of two U(0, 1) values
    lines = [
        f"| cell | final val MSE | vs. constant guess ({baseline:.3f}) | learned the dependency "
        f"(MSE < {SOLVED_MSE}) | first epoch below | kernel | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        learned = "yes" if r["val_mse"] < SOLVED_MSE else "no"
        epoch = r["solved_at"] or "-"
        lines.append(f"| {r['cell']} | {r['val_mse']:.4f} | {r['val_mse'] / baseline:.1%} | "
                     f"{learned} | {epoch} | {r['kernel']} | {r['seconds']:.0f} s |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="sequence length T")
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument("--write-doc", action="store_true", help="write the table into docs/results.md")
    args = parser.parse_args(argv)
    rows = [train(name, args) for name in args.cells.split(",")]
    print(f"\n{title(args)}\n\n{table(rows)}")
    if args.write_doc:
        write_doc(table(rows))


def write_doc(text: str) -> None:
    """The table into docs/results.md's ``demo`` block (benchmarks/markers.py keeps the markers)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    import markers

    markers.write_marked("demo", text, markers.RESULTS_DOC)


if __name__ == "__main__":
    main()
