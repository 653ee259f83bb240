"""The linear recurrence at T=4096: parallel scan vs the reference loop (target >= 10x)."""

from __future__ import annotations

import torch
from common import fwd_bwd, interleaved, setup, table, verdict

from rnnkit.cells import LinearCell
from rnnkit.engine import scan


def run(rounds: int = 3, batch: int = 16, steps: int = 4096, hidden: int = 32) -> str:
    setup()
    cell = LinearCell(hidden, hidden)
    with torch.no_grad():
        cell.weight_hh.mul_(0.5)  # keep the system stable over 4096 steps
    x = torch.randn(batch, steps, hidden, requires_grad=True)
    ms = interleaved({b: fwd_bwd(lambda b=b: scan(cell, x, backend=b).outputs)
                      for b in ("parallel", "fused", "reference")}, rounds)
    speedup = ms["reference"] / ms["parallel"]
    rows = [[f"({batch}, {steps}, {hidden}, {hidden})", ms["reference"], ms["fused"],
             ms["parallel"], f"{speedup:.1f}", verdict(speedup >= 10)]]
    return "\n\n".join([
        "### Linear recurrence (forward+backward, ms, median)",
        table(["(B, T, I, H)", "reference", "fused", "parallel", "speed-up vs reference",
               ">= 10x"], rows),
    ])


if __name__ == "__main__":
    print(run())
