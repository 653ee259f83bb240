"""fit() on the lecture's IMDB LSTM model vs a hand-written torch loop (and Keras 3 if installed).

Embedding(10000, 32) -> LSTM(32) -> Dense(1, sigmoid), batch 128, length 500, RMSprop, binary
cross-entropy. Target: rnnkit's per-step time <= 1.10x the hand-written loop's, and below Keras 3's
on every backend. Random token ids: the step time does not depend on the data.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import torch
from common import THREADS, interleaved, setup, table, verdict

BATCH, STEPS_T, VOCAB, UNITS = 128, 500, 10000, 32


def data(batches: int):
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB, size=(batches * BATCH, STEPS_T))
    y = rng.integers(0, 2, size=(batches * BATCH, 1)).astype("float32")
    return x, y


def rnnkit_fit(batches: int):
    from rnnkit.layers import LSTM, Dense, Embedding
    from rnnkit.models import Sequential

    model = Sequential([Embedding(VOCAB, 32), LSTM(UNITS), Dense(1, activation="sigmoid")])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
    x, y = data(batches)

    def epoch():
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    return epoch, model


def torch_loop(batches: int, flush: bool = False):
    """The hand-written loop: torch.nn modules, RMSprop with Keras's defaults; flush=True runs it
    with denormals flushed on every thread, as rnnkit's fit does (training/denormals.py)."""
    from rnnkit.training.denormals import flush_denormals

    emb, lstm, dense = torch.nn.Embedding(VOCAB, 32), torch.nn.LSTM(32, UNITS, batch_first=True), \
        torch.nn.Linear(UNITS, 1)
    params = [*emb.parameters(), *lstm.parameters(), *dense.parameters()]
    opt = torch.optim.RMSprop(params, lr=1e-3, alpha=0.9, eps=1e-7)
    x, y = data(batches)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def epoch():
        with flush_denormals(flush):
            for i in range(0, len(xs), BATCH):
                opt.zero_grad()
                _, (h, _) = lstm(emb(xs[i:i + BATCH]))
                loss = loss_fn(dense(h[0]), ys[i:i + BATCH])
                loss.backward()
                opt.step()
    return epoch


KERAS_SCRIPT = """
import os, sys, time, json, numpy as np, keras
b, t, n = 128, 500, int(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.integers(1, 10000, size=(n * b, t)); y = rng.integers(0, 2, size=(n * b, 1))
m = keras.Sequential([keras.layers.Embedding(10000, 32), keras.layers.LSTM(32),
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


def keras_ms(backend: str, batches: int) -> float | None:
    env = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS=str(THREADS))
    proc = subprocess.run([keras_python(backend), "-c", KERAS_SCRIPT, str(batches)], env=env,
                          capture_output=True, text=True, timeout=600)
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


def run(rounds: int = 5, batches: int = 4) -> str:
    setup()
    rk_epoch, model = rnnkit_fit(batches)
    ms = interleaved({"torch loop": torch_loop(batches), "torch loop, flushed": torch_loop(batches, True),
                      "rnnkit fit()": rk_epoch}, rounds)
    per_step = {k: v / batches for k, v in ms.items()}
    kernel = next(m.last_kernel for m in model.modules() if hasattr(m, "last_kernel"))
    ratio = per_step["rnnkit fit()"] / per_step["torch loop"]
    flushed = per_step["torch loop, flushed"]
    rows = [["hand-written torch loop (torch.nn.LSTM)", per_step["torch loop"], "1.00", ""],
            ["the same loop, denormals flushed on every thread", flushed,
             f"{flushed / per_step['torch loop']:.2f}", ""],
            [f"rnnkit fit() (kernel: {kernel}; flushes denormals)", per_step["rnnkit fit()"],
             f"{ratio:.2f}", verdict(ratio <= 1.10)]]
    notes = []
    if importlib.util.find_spec("keras") is None:
        notes.append("Keras is not installed, so no Keras runs (install the `bench` extra).")
    else:
        for backend in ("jax", "tensorflow", "torch"):
            k = keras_ms(backend, batches)
            if k is None:
                notes.append(f"Keras backend {backend} did not run.")
                continue
            rows.append([f"Keras 3 ({backend})", k, f"{k / per_step['torch loop']:.2f}",
                         verdict(per_step["rnnkit fit()"] < k)])
    notes.append(f"rnnkit fit() against the flushed loop: {per_step['rnnkit fit()'] / flushed:.2f}x "
                 "(the overhead of fit itself).")
    return "\n\n".join([
        f"### IMDB LSTM model, ms per training step (B={BATCH}, T={STEPS_T}, median of "
        f"{rounds} epochs of {batches} steps)",
        table(["contender", "ms/step", "vs torch loop", "target met"], rows), *notes,
    ])


if __name__ == "__main__":
    print(run())
