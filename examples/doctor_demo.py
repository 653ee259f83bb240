"""The doctor on three broken setups of the lecture's kind; prints each report.

1. unnormalized data (values around 1000) into a ReLU SimpleRNN trained by SGD without clipping;
2. a sigmoid output layer with categorical crossentropy;
3. a CSV with NaN rows: rnnkit.data.read_table refuses it (file, line, column); read leniently
   with numpy, the windows go to the doctor, which names the CSV lines and columns.

    .venv/bin/python examples/doctor_demo.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from rnnkit import doctor, layers
from rnnkit.data import DataFormatError, Normalizer, WindowDataset, read_table
from rnnkit.models import Sequential
from rnnkit.optimizers import SGD


def unnormalized_relu() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(1000.0, 50.0, size=(256, 40, 3)).astype(np.float32)  # (B, T, F) raw readings
    y = x[:, -1, :1] - 1000.0
    model = Sequential([layers.SimpleRNN(32, activation="relu"), layers.Dense(1)])
    model.compile(optimizer=SGD(learning_rate=0.01), loss="mse")
    print(doctor(model, x, y, batch_size=64, probe_steps=10))


def sigmoid_categorical() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 20, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=300)
    y = np.eye(3, dtype=np.float32)[labels]  # one-hot (B, C)
    model = Sequential([layers.LSTM(16), layers.Dense(3, activation="sigmoid")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["acc"])
    print(doctor(model, x, y, batch_size=32, probe_steps=5))


def write_csv(path: Path) -> None:
    rng = np.random.default_rng(2)
    t = np.arange(600)
    temp = 10 + 8 * np.sin(2 * np.pi * t / 144) + rng.normal(0, 0.5, len(t))
    pressure = 990 + rng.normal(0, 3, len(t))
    lines = ["p (mbar),T (degC)"]
    for i, (p, c) in enumerate(zip(pressure, temp)):
        if i in (97, 98, 311):  # a logger that wrote NaN for three readings
            c = float("nan")
        lines.append(f"{p:.2f},{c:.2f}")
    path.write_text("\n".join(lines) + "\n")


def csv_with_nan_rows() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weather.csv"
        write_csv(path)
        try:
            read_table(path)
        except DataFormatError as e:
            print(f"read_table refuses the file: {str(e).replace(tmp + '/', '')}")
        values = np.genfromtxt(path, delimiter=",", skip_header=1)  # lenient: keeps the NaNs
        normalizer = Normalizer(np.nanmean(values[:400], axis=0), np.nanstd(values[:400], axis=0))
        train = WindowDataset(values, lookback=48, delay=6, start=0, end=400, target=1,
                              batch_size=32, normalizer=normalizer)
        model = Sequential([layers.GRU(16), layers.Dense(1)])
        model.compile(optimizer="rmsprop", loss="mae")
        source = {"file": path.name, "columns": ["p (mbar)", "T (degC)"], "row_offset": 2,
                  "target_column": "T (degC)"}
        print(doctor(model, train, source=source, probe_steps=5))


if __name__ == "__main__":
    torch.manual_seed(0)
    for title, demo in (("1. unnormalized data, ReLU SimpleRNN, SGD without clipping",
                         unnormalized_relu),
                        ("2. sigmoid output with categorical crossentropy", sigmoid_categorical),
                        ("3. NaN rows in a CSV", csv_with_nan_rows)):
        print(f"== {title}")
        demo()
        print()
