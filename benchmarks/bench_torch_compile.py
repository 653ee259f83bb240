"""torch.compile of the cell step against rnnkit's loop kernels (CPU, forward+backward).

The speed issue asks whether a compiled path — torch.compile of the step, or a C++ extension
built by the package — beats pure torch ops on CPU. This times, side by side, the reference loop
with its eager step, the same loop with ``cell.step`` under ``torch.compile`` (inductor: the
step's forward and backward each become one generated C++ kernel, the loop stays in Python), the
``fused`` kernel (torch ops, hand-written BPTT) and the ``compiled`` kernel (rnnkit's C++
extension). Compiling the whole loop instead would unroll T steps into one graph: minutes of
compilation at T=500, so it is not a candidate.

    python benchmarks/bench_torch_compile.py [--no-write]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from common import fwd_bwd, interleaved, setup, table, write_marked

from rnnkit.cells import GRUCell, LSTMCell
from rnnkit.engine import scan

SHAPES = [(128, 500, 32, 32), (64, 100, 256, 256)]  # (B, T, I, H)
KERNELS = ("reference", "torch.compile step", "fused", "compiled")


def families(i: int, h: int) -> dict:
    return {"LSTM peephole full": LSTMCell(i, h, peephole="full"),
            "GRU reset_after=False": GRUCell(i, h, reset_after=False)}


def contenders(cell, x) -> tuple[dict, float]:
    """The four ways to run ``cell`` and the seconds torch.compile took (its first call)."""
    traced = copy.deepcopy(cell)
    traced.step = torch.compile(traced.step, dynamic=False)
    run = {k: fwd_bwd(lambda k=k: scan(cell, x, backend=k).outputs) for k in ("fused", "compiled")}
    run["reference"] = fwd_bwd(lambda: scan(cell, x, backend="reference").outputs)
    run["torch.compile step"] = fwd_bwd(lambda: scan(traced, x, backend="reference").outputs)
    start = time.perf_counter()
    run["torch.compile step"]()
    return run, time.perf_counter() - start


def run(rounds: int = 3) -> str:
    setup()
    rows = []
    for b, t, i, h in SHAPES:
        x = torch.randn(b, t, i, requires_grad=True)
        for name, cell in families(i, h).items():
            fns, took = contenders(cell, x)
            ms = interleaved(fns, rounds)
            rows.append([f"{(b, t, i, h)}", name, *(ms[k] for k in KERNELS), f"{took:.0f}",
                         f"{ms['torch.compile step'] / ms['compiled']:.1f}"])
    return "\n\n".join([
        "### torch.compile of the step vs the loop kernels (forward+backward, ms, median)",
        table(["(B, T, I, H)", "family", *KERNELS, "torch.compile first call (s)",
               "torch.compile step / compiled"], rows),
        f"Command: `python benchmarks/bench_torch_compile.py` ({rounds} interleaved rounds, torch "
        f"{torch.__version__}, inductor's C++ backend; the first call includes compiling, from "
        "inductor's on-disk cache when an earlier run filled it: 35 s cold for the first cell). "
        "The step compiled by torch.compile still "
        "runs one Python iteration, one generated forward kernel and, in backward, one generated "
        "kernel per step; rnnkit's C++ extension runs the whole loop in C++, so the package "
        "builds that and uses torch.compile nowhere.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    text = run()
    print(text)
    if not args.no_write:
        write_marked("bench_torch_compile", text)


if __name__ == "__main__":
    main()
