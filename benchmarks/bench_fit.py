"""fit() on the lecture's three IMDB models vs a hand-written torch loop (and Keras 3 if installed).

Embedding(10000, 32) -> SimpleRNN(32) / LSTM(32) / GRU(32) -> Dense(1, sigmoid), batch 128,
length 500, RMSprop, binary cross-entropy. Targets: rnnkit's per-step time below Keras 3's on every
backend for each cell, the GRU model at most 0.5x Keras on JAX. Random token ids: the step time
does not depend on the data. The torch loop runs torch.nn's layer of the same kind, plain and with
denormals flushed on every thread (as fit does).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import torch
from common import THREADS, env_prefix, interleaved, setup, table, verdict
from markers import marked

BATCH, STEPS_T, VOCAB, UNITS = 128, 500, 10000, 32
CELLS = ("SimpleRNN", "LSTM", "GRU")
TORCH_LAYERS = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}


def data(batches: int):
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB, size=(batches * BATCH, STEPS_T))
    y = rng.integers(0, 2, size=(batches * BATCH, 1)).astype("float32")
    return x, y


def rnnkit_fit(cell: str, batches: int):
    from rnnkit import layers
    from rnnkit.models import Sequential

    recurrent = getattr(layers, cell)(UNITS)
    model = Sequential([layers.Embedding(VOCAB, 32), recurrent, layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
    x, y = data(batches)

    def epoch():
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    return epoch, recurrent


def torch_loop(cell: str, batches: int, flush: bool = False):
    """The hand-written loop: torch.nn modules, RMSprop with Keras's defaults; flush=True runs it
    with denormals flushed on every thread, as rnnkit's fit does (training/denormals.py)."""
    from rnnkit.training.denormals import flush_denormals

    emb, rnn, dense = torch.nn.Embedding(VOCAB, 32), TORCH_LAYERS[cell](32, UNITS, batch_first=True), \
        torch.nn.Linear(UNITS, 1)
    params = [*emb.parameters(), *rnn.parameters(), *dense.parameters()]
    opt = torch.optim.RMSprop(params, lr=1e-3, alpha=0.9, eps=1e-7)
    x, y = data(batches)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def epoch():
        with flush_denormals(flush):
            for i in range(0, len(xs), BATCH):
                opt.zero_grad()
                _, h = rnn(emb(xs[i:i + BATCH]))
                h = h[0] if isinstance(h, tuple) else h  # LSTM: (h, c)
                loss = loss_fn(dense(h[0]), ys[i:i + BATCH])
                loss.backward()
                opt.step()
    return epoch


KERAS_SCRIPT = """
import os, sys, time, json, numpy as np, keras
b, t, n, cell = 128, 500, int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
x = rng.integers(1, 10000, size=(n * b, t)); y = rng.integers(0, 2, size=(n * b, 1))
m = keras.Sequential([keras.layers.Embedding(10000, 32), getattr(keras.layers, cell)(32),
                      keras.layers.Dense(1, activation="sigmoid")])
m.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
m.fit(x[:2 * b], y[:2 * b], batch_size=b, epochs=1, verbose=0)
start = time.perf_counter(); m.fit(x, y, batch_size=b, epochs=1, verbose=0)
print(json.dumps((time.perf_counter() - start) * 1e3 / n))
"""


def keras_python(backend: str) -> str:
    """The interpreter for a Keras run: this one, or $RNNKIT_KERAS_PYTHON_<BACKEND> (say a venv
    with tensorflow-cpu, kept out of the project's own because of its size)."""
    return os.environ.get(f"RNNKIT_KERAS_PYTHON_{backend.upper()}", sys.executable)


def keras_ms(backend: str, cell: str, batches: int) -> float | None:
    env = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS=str(THREADS))
    proc = subprocess.run([keras_python(backend), "-c", KERAS_SCRIPT, str(batches), cell], env=env,
                          capture_output=True, text=True, timeout=600)
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


KERAS_BACKENDS = ("jax", "tensorflow", "torch")


def one_cell(cell: str, rounds: int, batches: int) -> tuple[list[list], list[str], dict]:
    rk_epoch, layer = rnnkit_fit(cell, batches)
    ms = interleaved({"torch loop": torch_loop(cell, batches),
                      "torch loop, flushed": torch_loop(cell, batches, True),
                      "rnnkit fit()": rk_epoch}, rounds)
    per_step = {k: v / batches for k, v in ms.items()}
    loop, flushed, fit = per_step["torch loop"], per_step["torch loop, flushed"], per_step["rnnkit fit()"]
    rows = [[cell, f"hand-written torch loop (torch.nn.{TORCH_LAYERS[cell].__name__})", loop, "1.00", ""],
            [cell, "the same loop, denormals flushed on every thread", flushed, f"{flushed / loop:.2f}", ""],
            [cell, f"rnnkit fit() (kernel: {layer.last_kernel}; flushes denormals)", fit,
             f"{fit / loop:.2f}", ""]]
    notes, keras = [], {}
    if importlib.util.find_spec("keras") is None and not any(
            os.environ.get(f"RNNKIT_KERAS_PYTHON_{b.upper()}") for b in KERAS_BACKENDS):
        notes.append("Keras is not installed, so no Keras runs (install the `bench` extra).")
        return rows, notes, keras
    for backend in KERAS_BACKENDS:
        k = keras_ms(backend, cell, batches)
        if k is None:
            notes.append(f"{cell}: Keras backend {backend} did not run.")
            continue
        keras[backend] = k
        target = fit < k and (cell != "GRU" or backend != "jax" or fit <= 0.5 * k)
        rows.append([cell, f"Keras 3 ({backend})", k, f"{k / loop:.2f}", verdict(target)])
    return rows, notes, keras


def run(rounds: int = 5, batches: int = 4) -> str:
    setup()
    rows, notes, ratios = [], [], []
    for cell in CELLS:
        cell_rows, cell_notes, keras = one_cell(cell, rounds, batches)
        rows += cell_rows
        notes += cell_notes
        fit = cell_rows[2][2]
        ratios.append(f"{cell} {fit / cell_rows[1][2]:.2f}x the flushed loop"
                      + "".join(f", {fit / k:.2f}x Keras-{b}" for b, k in keras.items()))
    notes.append(marked("fit_summary", "rnnkit fit() per step: " + "; ".join(ratios) + "."))
    return "\n\n".join([
        f"### The lecture's IMDB models, ms per training step (B={BATCH}, T={STEPS_T}, median of "
        f"{rounds} epochs of {batches} steps)",
        table(["model", "contender", "ms/step", "vs torch loop", "target met"], rows), *notes,
        "Targets: rnnkit faster than Keras 3 on every backend, and the GRU model at most 0.5x Keras "
        f"on JAX. Command: `{env_prefix()}python benchmarks/bench_fit.py` (Keras from "
        "`RNNKIT_KERAS_PYTHON_<BACKEND>` interpreters where set).",
    ])


if __name__ == "__main__":
    print(run())
