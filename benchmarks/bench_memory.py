"""Memory held for backward: the fused kernel vs the reference loop at the same shape.

Counted as the bytes of the distinct storages autograd saves (saved_tensors_hooks) — the part of
peak memory that grows with T. The fused backward also allocates its per-step factors, about
(G + 2)·T·B·H numbers, while it runs; that is listed too.
"""

from __future__ import annotations

import torch
from common import setup, table, verdict

from rnnkit.cells import GRUCell, LSTMCell, SimpleCell
from rnnkit.engine import scan


def saved_bytes(fn) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def run(batch: int = 128, steps: int = 500, size: int = 32) -> str:
    setup()
    x = torch.randn(batch, steps, size, requires_grad=True)
    cells = {"LSTM": LSTMCell(size, size), "LSTM peephole": LSTMCell(size, size, peephole="full"),
             "GRU": GRUCell(size, size), "SimpleRNN": SimpleCell(size, size)}
    rows = []
    for name, cell in cells.items():
        ref = saved_bytes(lambda cell=cell: scan(cell, x, backend="reference").outputs)
        fused = saved_bytes(lambda cell=cell: scan(cell, x, backend="fused").outputs)
        scratch = (cell.gates + 2) * steps * batch * size * 4
        rows.append([name, f"{ref / 2**20:.1f}", f"{fused / 2**20:.1f}",
                     f"{(fused + scratch) / 2**20:.1f}", verdict(fused + scratch <= ref)])
    return "\n\n".join([
        f"### Memory saved for backward, MiB (B={batch}, T={steps}, I=H={size}, float32)",
        table(["cell", "reference", "fused", "fused + backward scratch", "<= reference"], rows),
    ])


if __name__ == "__main__":
    print(run())
