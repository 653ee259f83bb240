"""Where the compiled kernel's tiles stop paying: tiles against its BLAS loops, by units H.

The standard cells (SimpleRNN, LSTM, GRU) run on tiles (``ops.tile_*``: a step's products in vector
registers over weights packed once per call, the gate math on the tiles' values) up to
``compiled.TILE_MAX_UNITS`` units, and on the loops that call BLAS per step above it (training:
the projection GEMM then one recurrent GEMM per step; inference: ``ops.infer``). This script times
both side by side (the threshold switched per contender), forward+backward and forward only under
``torch.no_grad()``, at I = H, and prints tiles / BLAS; the threshold is the largest H where tiles
stay ahead.

    python benchmarks/bench_tiles.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import os

import torch
from common import env_prefix, interleaved, machine, setup, table, write_marked

from rnnkit.cells import GRUCell, LSTMCell, SimpleCell
from rnnkit.engine import compiled, scan

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, H 32 and 128 only")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    text = run(3, (32, 128)) if args.quick else run()
    print(text)
    if not args.no_write:
        write_marked("bench_tiles", text)


if __name__ == "__main__":
    main()
