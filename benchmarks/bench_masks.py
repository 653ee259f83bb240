"""Masked LSTM on CPU: torch's packed-sequence path (native) against the compiled kernel.

Why the native kernel declines masks on CPU: the packed backward grows as T² there. Post-padding
masks (row lengths drawn from [T/2, T]), B=64, I=H=32, one thread, forward+backward.

    python benchmarks/bench_masks.py
"""

from __future__ import annotations

import torch
from common import interleaved

from rnnkit import engine
from rnnkit.cells import LSTMCell
from rnnkit.engine import scan


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with engine.options(packed_on_cpu=True):  # the path the kernel declines, timed on purpose
        _compare()


def _compare(rounds: int = 3) -> None:
    for steps in (125, 250, 500):
        x = torch.randn(64, steps, 32, requires_grad=True)
        lengths = torch.randint(steps // 2, steps + 1, (64,))
        mask = torch.arange(steps)[None] < lengths[:, None]
        cell = LSTMCell(32, 32)
        def run(kernel, cell=cell, x=x, mask=mask):
            return lambda: scan(cell, x, mask=mask, backend=kernel).outputs.sum().backward()

        ms = interleaved({k: run(k) for k in ("native", "compiled")}, rounds)
        print(f"T={steps}: packed (native) {ms['native']:.1f} ms, compiled {ms['compiled']:.1f} ms")


if __name__ == "__main__":
    main()
