"""Memory held for backward: the compiled and fused kernels vs the reference loop at the same shape.

Counted as the bytes of the distinct storages autograd saves (saved_tensors_hooks) — the part of
peak memory that grows with T. The fused backward also allocates, while it runs, the factors of
one block of C = min(64, ⌈T/8⌉) steps at a time (``block_steps``): at their peak 4·C·B·H numbers
for LSTM, 6·C·B·H for GRU, none for SimpleRNN (tanh' is read from h_t step by step); that is
listed too (not the input gradient it returns, as for every kernel). The compiled backward
allocates, for GRU, one (T, B, H) operand of its weight gradient; beyond that only per-step
buffers of at most (2G + L + 5)·B·H numbers (the gradient ring included), which do not grow with
T and, like the reference's per-step temporaries, are not counted.
"""

from __future__ import annotations

import torch
from common import setup, table, verdict

from rnnkit.cells import GRUCell, LSTMCell, SimpleCell
from rnnkit.engine import scan
from rnnkit.engine.fused import block_steps


def saved_bytes(fn) -> int:
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def compiled_scratch(cell, batch: int, steps: int) -> int:
    """Numbers growing with T that the compiled backward allocates besides its returned gradients."""
    per_sequence = 1 if isinstance(cell, GRUCell) else 0  # (T, B, H) temporaries
    return per_sequence * steps * batch * cell.hidden_size


def fused_scratch(cell, batch: int, steps: int) -> int:
    """Numbers the fused backward allocates besides its returned gradients, at their peak."""
    per_block_step = {LSTMCell: 4, GRUCell: 6, SimpleCell: 0}[type(cell)]  # (C, B, H) buffers
    return per_block_step * block_steps(steps) * batch * cell.hidden_size


def run(batch: int = 128, steps: int = 500, size: int = 32) -> str:
    setup()
    x = torch.randn(batch, steps, size, requires_grad=True)
    cells = {"LSTM": LSTMCell(size, size), "LSTM peephole": LSTMCell(size, size, peephole="full"),
             "GRU": GRUCell(size, size), "GRU reset_after=False": GRUCell(size, size, reset_after=False),
             "SimpleRNN": SimpleCell(size, size)}
    rows = []
    for name, cell in cells.items():
        ref = saved_bytes(lambda cell=cell: scan(cell, x, backend="reference").outputs)
        fused = saved_bytes(lambda cell=cell: scan(cell, x, backend="fused").outputs)
        comp = saved_bytes(lambda cell=cell: scan(cell, x, backend="compiled").outputs)
        scratch = fused_scratch(cell, batch, steps) * 4
        comp_scratch = compiled_scratch(cell, batch, steps) * 4
        rows.append([name, f"{ref / 2**20:.1f}", f"{fused / 2**20:.1f}",
                     f"{(fused + scratch) / 2**20:.1f}", verdict(fused + scratch <= ref),
                     f"{comp / 2**20:.1f}", f"{(comp + comp_scratch) / 2**20:.1f}",
                     verdict(comp + comp_scratch <= ref)])
    return "\n\n".join([
        f"### Memory saved for backward, MiB (B={batch}, T={steps}, I=H={size}, float32)",
        table(["cell", "reference", "fused", "fused + backward scratch", "<= reference", "compiled",
               "compiled + backward scratch", "<= reference"], rows),
    ])


if __name__ == "__main__":
    print(run())
