"""How the compiled kernel should use two threads: split the batch, or one loop with BLAS threads.

``compiled.SPLIT_BATCH_MAX_BYTES`` picks by the recurrent weight's size; this script times both
modes side by side (the budget switched per contender) against torch.nn.LSTM, forward+backward.

    python benchmarks/bench_split.py
"""

from __future__ import annotations

import torch
from common import interleaved, setup

from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.engine import compiled, scan

SHAPES = [(128, 500, 32, 32), (64, 100, 128, 128), (64, 100, 256, 256)]  # (B, T, I, H)


def main(rounds: int = 9) -> None:
    setup()
    for b, t, i, h in SHAPES:
        x = torch.randn(b, t, i, requires_grad=True)
        lstm = torch.nn.LSTM(i, h, batch_first=True)
        cells = {"LSTM": LSTMCell(i, h), "peephole full": LSTMCell(i, h, peephole="full"),
                 "lags (1, 2)": LSTMCell(i, h, lags=(1, 2)),
                 "GRU reset_after=False": GRUCell(i, h, reset_after=False)}
        contenders = {"torch.nn.LSTM": lambda lstm=lstm, x=x: lstm(x)[0].sum().backward()}
        for name, cell in cells.items():
            for mode, budget in (("split", 1 << 40), ("one loop", 0)):
                def run(cell=cell, budget=budget, x=x):
                    compiled.SPLIT_BATCH_MAX_BYTES = budget
                    scan(cell, x, backend="compiled").outputs.sum().backward()
                contenders[f"{name} / {mode}"] = run
        saved = compiled.SPLIT_BATCH_MAX_BYTES
        try:
            ms = interleaved(contenders, rounds)
        finally:
            compiled.SPLIT_BATCH_MAX_BYTES = saved
        print(f"(B, T, I, H) = {(b, t, i, h)}: ms, ratio to torch.nn.LSTM")
        for name, v in ms.items():
            print(f"  {name:32s} {v:7.1f}  {v / ms['torch.nn.LSTM']:.2f}")


if __name__ == "__main__":
    main()
