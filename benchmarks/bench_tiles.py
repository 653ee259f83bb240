"""Where the compiled kernel's tiles stop paying: tiles against its BLAS loops, by units H.

The standard cells (SimpleRNN, LSTM, GRU) run on tiles (``ops.tile_*``: a step's products in vector
registers over weights packed once per call, the gate math on the tiles' values) up to
``compiled.TILE_MAX_UNITS`` units, and on the loops that call BLAS per step above it (training:
the projection GEMM then one recurrent GEMM per step; inference: ``ops.infer``). This script times
both side by side (the threshold switched per contender), forward+backward and forward only under
``torch.no_grad()``, at I = H, and prints tiles / BLAS; the threshold is the largest H where tiles
stay ahead. ``--imdb`` times, at the lecture's IMDB shape (128, 500, 32, 32), torch.nn, rnnkit's
layer (``auto``), native, and the compiled kernel on tiles and on its BLAS loops (the kernel before
the tiles), forward+backward and forward only, side by side.

    python benchmarks/bench_tiles.py [--quick] [--imdb] [--no-write]
"""

from __future__ import annotations

import argparse
import os

import torch
from common import env_prefix, interleaved, machine, setup, table, write_marked

from rnnkit.cells import GRUCell, LSTMCell, SimpleCell
from rnnkit.engine import compiled, scan
from rnnkit.interop.torch_nn import from_torch

CELLS = {"SimpleRNN": SimpleCell, "LSTM": LSTMCell, "GRU": GRUCell}
HIDDEN = (16, 32, 64, 128, 256)
BATCHES = (16, 128)
STEPS = 100


def contender(cell, x: torch.Tensor, units: int, train: bool):
    """One call of the compiled kernel with TILE_MAX_UNITS = units (0: the BLAS loops)."""
    def run():
        compiled.TILE_MAX_UNITS = units
        if train:
            scan(cell, x, backend="compiled").outputs.sum().backward()
        else:
            with torch.no_grad():
                scan(cell, x, backend="compiled")
    return run


def run(rounds: int = 7, hidden=HIDDEN) -> str:
    setup()
    saved = compiled.TILE_MAX_UNITS
    rows = []
    try:
        for name, cls in CELLS.items():
            for h in hidden:
                for b in BATCHES:
                    cell = cls(h, h)
                    cells = []
                    for train in (True, False):
                        x = torch.randn(b, STEPS, h, requires_grad=train)
                        ms = interleaved({"tiles": contender(cell, x, 1 << 30, train),
                                          "BLAS": contender(cell, x, 0, train)}, rounds)
                        cells += [ms["tiles"], ms["BLAS"], f"{ms['tiles'] / ms['BLAS']:.2f}"]
                    rows.append([name, h, b, *cells])
                    print(rows[-1], flush=True)
    finally:
        compiled.TILE_MAX_UNITS = saved
    return "\n\n".join([
        f"### The compiled kernel's tiles against its BLAS loops (ms, median, T={STEPS}, I = H)",
        table(["cell", "H", "B", "fwd+bwd tiles", "fwd+bwd BLAS", "tiles / BLAS",
               "inference tiles", "inference BLAS", "tiles / BLAS"], rows),
        f"Command: `{env_prefix()}python benchmarks/bench_tiles.py` ({machine()}; load average "
        f"{os.getloadavg()[0]:.2f}; {rounds} interleaved rounds). The tiles run the standard cells "
        f"up to `compiled.TILE_MAX_UNITS` = {saved} units.",
    ])


IMDB = (128, 500, 32, 32)  # (B, T, I, H)
TORCH = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}


def imdb(rounds: int = 7) -> str:
    """torch.nn, the layer on auto, native, compiled on tiles and on its BLAS loops at the IMDB shape."""
    setup()
    b, t, i, h = IMDB
    saved = compiled.TILE_MAX_UNITS
    rows = []
    try:
        for name, tnn in TORCH.items():
            ref = tnn(i, h, batch_first=True)
            layer = from_torch(ref, return_sequences=True)  # the same weights
            cell = layer.cell
            for train in (True, False):
                x = torch.randn(b, t, i, requires_grad=train)

                def timed(fn, units=saved, train=train):
                    def run():
                        compiled.TILE_MAX_UNITS = units
                        if train:
                            fn().sum().backward()
                        else:
                            with torch.no_grad():
                                fn()
                    return run

                ms = interleaved({
                    "torch.nn": timed(lambda ref=ref, x=x: ref(x)[0]),
                    "auto": timed(lambda layer=layer, x=x: layer(x)),
                    "native": timed(lambda cell=cell, x=x: scan(cell, x, backend="native").outputs),
                    "tiles": timed(lambda cell=cell, x=x: scan(cell, x, backend="compiled").outputs),
                    "BLAS": timed(lambda cell=cell, x=x: scan(cell, x, backend="compiled").outputs, 0),
                }, rounds)
                compiled.TILE_MAX_UNITS = saved
                with torch.set_grad_enabled(train):
                    layer(x)
                ratios = [f"{ms[k] / ms['torch.nn']:.2f}" for k in ("auto", "native", "tiles", "BLAS")]
                rows.append([name, "fwd+bwd" if train else "forward only", layer.last_kernel,
                             *ms.values(), *ratios])
                print(rows[-1], flush=True)
    finally:
        compiled.TILE_MAX_UNITS = saved
    return "\n\n".join([
        f"### At the IMDB shape {IMDB}: torch.nn, auto, native, compiled on tiles and on its BLAS "
        "loops (ms, median; ratios to torch.nn)",
        table(["cell", "pass", "auto took", "torch.nn", "auto", "native", "tiles", "BLAS",
               "auto / torch.nn", "native / torch.nn", "tiles / torch.nn", "BLAS / torch.nn"], rows),
        f"Command: `{env_prefix()}python benchmarks/bench_tiles.py --imdb` ({machine()}; load "
        f"average {os.getloadavg()[0]:.2f}; {rounds} interleaved rounds).",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, H 32 and 128 only")
    parser.add_argument("--imdb", action="store_true",
                        help="the IMDB shape: torch.nn, auto, native, tiles and BLAS loops")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.imdb:
        text, marker = imdb(3 if args.quick else 7), "bench_tiles_imdb"
    else:
        text, marker = (run(3, (32, 128)) if args.quick else run()), "bench_tiles"
    print(text)
    if not args.no_write:
        write_marked(marker, text)


if __name__ == "__main__":
    main()
