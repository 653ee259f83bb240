"""IMDB sentiment, Chollet's Deep Learning with Python (1st ed.), §6.2-6.3: which cell reads reviews best?

The book's recipe: the 10,000 most frequent words, reviews cut to their last 500 words (pre-padded),
Embedding(10000, 32) -> recurrent layer(32) -> Dense(1, sigmoid), RMSprop, binary cross-entropy,
batch 128, 10 epochs, validation_split 0.2. Published best validation accuracy: SimpleRNN 0.846,
LSTM 0.893, bidirectional LSTM 0.886.

    python examples/imdb_reproduction.py --path ../shared/data/imdb/imdb_rebuilt.npz \
        [--models simple,lstm,gru,bilstm,peephole,coupled] [--epochs 10] [--train-samples 25000]

``--train-samples`` takes the first N training reviews (the book uses all 25,000, 20% of them for
validation); ``--threads`` limits torch's CPU threads on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rnnkit import layers
from rnnkit.data import pad_sequences
from rnnkit.datasets import imdb
from rnnkit.models import Sequential

PUBLISHED = {"simple": 0.846, "lstm": 0.893, "bilstm": 0.886}
MODELS = {
    "simple": ("SimpleRNN", lambda: layers.SimpleRNN(32)),
    "lstm": ("LSTM", lambda: layers.LSTM(32)),
    "gru": ("GRU", lambda: layers.GRU(32)),
    "bilstm": ("Bidirectional LSTM", lambda: layers.Bidirectional(layers.LSTM(32))),
    "peephole": ("LSTM, peepholes", lambda: layers.LSTM(32, peephole=True)),
    "coupled": ("LSTM, coupled forget gate", lambda: layers.LSTM(32, coupled=True)),
}


def load(path: str, num_words: int, maxlen: int, train_samples: int | None):
    """x (N, maxlen) int ids and y (N,) float labels of the training split."""
    (x_train, y_train), _ = imdb.load_data(path=path, num_words=num_words)
    if train_samples:
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    return pad_sequences(list(x_train), maxlen=maxlen), y_train.astype("float32")


def run(key: str, x, y, args) -> dict:
    torch.manual_seed(args.seed)
    name, make = MODELS[key]
    model = Sequential([layers.Embedding(args.num_words, 32), make(),
                        layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
    start = time.perf_counter()
    history = model.fit(x, y, epochs=args.epochs, batch_size=128, validation_split=0.2,
                        verbose=args.verbose)
    val = history.history["val_acc"]
    best = max(range(len(val)), key=val.__getitem__)
    return {"model": name, "key": key, "best_val_acc": val[best], "best_epoch": best + 1,
            "val_acc": val, "seconds": time.perf_counter() - start,
            "published": PUBLISHED.get(key), "kernel": model.layers[1].last_kernel}


def table(rows: list[dict], args, n: int) -> str:
    lines = [f"IMDB, {args.num_words} words, maxlen {args.maxlen}, {n} training reviews "
             f"(20% of them for validation), {args.epochs} epochs, batch 128, RMSprop", "",
             "| model | best val acc (epoch) | published (10 epochs, 25,000 reviews) | kernel | "
             "time |", "|---|---|---|---|---|"]
    for r in rows:
        published = "-" if r["published"] is None else f"{r['published']:.3f}"
        lines.append(f"| {r['model']} | {r['best_val_acc']:.3f} ({r['best_epoch']}) | "
                     f"{published} | {r['kernel']} | {r['seconds']:.0f} s |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=None, help="imdb.npz (default: download Keras's)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-words", type=int, default=10000)
    parser.add_argument("--maxlen", type=int, default=500)
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = load(args.path, args.num_words, args.maxlen, args.train_samples)
    rows = []
    for key in args.models.split(","):
        rows.append(run(key, x, y, args))
        print(table(rows, args, len(x)), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
