"""Peak memory against sequence length, with and without truncated BPTT.

One LSTM(64) -> Dense(1) model (B=16, I=8, float32) trained for one epoch on one series of T steps
(a target per step): full BPTT (one update over all T steps) against TBPTT(k1=k2=100). Two figures
per run: the bytes autograd holds for backward at its peak (``rnnkit.training.tbptt.saved_memory``,
exact), and the growth of the process's peak RSS during training (each run in a fresh process;
includes allocator and library overheads, so noisier). Writes its own section of
docs/benchmarks.md (between markers; the other sections are left alone).

    python benchmarks/tbptt_memory.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

B, I, H, K = 16, 8, 64, 100


def one_run(steps: int, tbptt: bool) -> dict:
    """Train once in this process; the peak saved bytes and the RSS growth, in MiB."""
    import torch

    from rnnkit import layers, optimizers
    from rnnkit.models import Sequential
    from rnnkit.training.tbptt import saved_memory

    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(B, steps, I)
    y = x[..., :1].cumsum(1) * 0.01
    model = Sequential([layers.LSTM(H, return_sequences=True), layers.Dense(1)])
    model.build((None, None, I))
    model.compile(optimizers.SGD(0.01), "mse")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with saved_memory() as meter:
        if tbptt:
            model.fit(x, y, tbptt=K, verbose=0)
        else:
            model.fit(x, y, batch_size=B, shuffle=False, verbose=0)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base  # KiB on Linux
    return {"saved": meter.peak / 2**20, "rss": grown / 2**10}


def measure(steps: int, tbptt: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(steps), str(int(tbptt))],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(lengths: list[int]) -> str:
    rows = [f"### Peak memory against sequence length, with and without truncated BPTT "
            f"(LSTM({H}), B={B}, I={I}, float32, TBPTT k1=k2={K})", "",
            "| T | full BPTT: held for backward (MiB) | TBPTT: held for backward (MiB) | "
            "full BPTT: peak RSS growth (MiB) | TBPTT: peak RSS growth (MiB) |",
            "|---|---|---|---|---|"]
    for steps in lengths:
        full, trunc = measure(steps, False), measure(steps, True)
        rows.append(f"| {steps} | {full['saved']:.1f} | {trunc['saved']:.1f} | "
                    f"{full['rss']:.1f} | {trunc['rss']:.1f} |")
        print(rows[-1], flush=True)
    rows += ["", "Command: `python benchmarks/tbptt_memory.py`. \"Held for backward\" is exact (the "
             "tensors autograd saves, at their peak); RSS growth is the process's peak resident "
             "memory during training minus before it, one fresh process per cell."]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter series")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], bool(args.one[1]))))
        return
    lengths = [500, 1000, 2000] if args.quick else [500, 1000, 2000, 4000, 8000]
    text = table(lengths)
    if not args.no_write:
        from common import write_marked

        write_marked("tbptt_memory", text)


if __name__ == "__main__":
    main()
