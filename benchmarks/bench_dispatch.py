"""Which kernel is fastest where: the grid that ``backend="auto"``'s rule comes from.

For SimpleRNN, LSTM and GRU (the standard cells, which several kernels run) on a grid of batch B,
units H, steps T, with and without a post-padded mask, every kernel that can run the point
(``native``: torch's fused op, ``compiled``: the C++ loop, ``fused``: torch ops from Python; the
parallel scan runs linear cells only) is timed forward+backward, interleaved, and the table prints
each time, the best kernel, the one ``auto`` takes (``rnnkit.engine.select``) and
auto / best. Target: auto never more than 10 % slower than the best kernel at any point.

A second table times forward-only inference (under ``torch.no_grad()``) at a few points, and a
third compares the native path that runs both directions or a whole stack in one torch call
(``engine.scan_layers`` on native, taken by ``Bidirectional`` and ``Stacked`` where auto runs
native) with the layers one by one on the kernel ``auto`` takes for each.

    python benchmarks/bench_dispatch.py [--quick] [--cells LSTM,GRU] [--no-write]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import torch
from common import env_prefix, interleaved, machine, setup, table, verdict, write_marked

from rnnkit import layers
from rnnkit.cells import GRUCell, LSTMCell, SimpleCell
from rnnkit.engine import ScanSpec, kernels, scan, scan_layers, select

CELLS = {"SimpleRNN": SimpleCell, "LSTM": LSTMCell, "GRU": GRUCell}
BATCHES, HIDDEN, STEPS = (1, 16, 128), (16, 32, 64, 128, 256, 512), (50, 500)
TOLERANCE = 1.10  # auto may be this much slower than the best kernel at a point
BUDGET_S = 1.2  # seconds of timing per kernel and point; rounds = budget / one call, 3..11


def post_padded(batch: int, steps: int) -> torch.Tensor:
    """(B, T) bool: row b real on its first len_b steps, lengths spread over [T/2, T]."""
    lengths = torch.linspace(steps, max(1, steps // 2), batch).round().long()
    return torch.arange(steps) < lengths[:, None]


def spec_of(x: torch.Tensor, mask: torch.Tensor | None) -> ScanSpec:
    return ScanSpec(has_mask=mask is not None, has_recurrent_mask=False, device=x.device,
                    dtype=x.dtype, batch=x.shape[0], steps=x.shape[1],
                    mask_packable=mask is not None, requires_grad=x.requires_grad)


def rounds_for(contenders: dict) -> int:
    """Warm each contender up once, timing the slowest, and size the rounds to the budget."""
    slowest = 0.0
    for fn in contenders.values():
        start = time.perf_counter()
        fn()
        slowest = max(slowest, time.perf_counter() - start)
    return min(11, max(3, int(BUDGET_S / max(slowest, 1e-6))))


def point(name: str, b: int, h: int, t: int, masked: bool, train: bool, quick: bool) -> list:
    """One row of the grid: ms per kernel, best, auto's choice, auto / best."""
    cell = CELLS[name](h, h)
    x = torch.randn(b, t, h, requires_grad=train)
    mask = post_padded(b, t) if masked else None
    spec = spec_of(x, mask)
    runnable = [k for k in ("native", "compiled", "fused") if kernels()[k].supports(cell, spec)[0]]

    def contender(k):
        def run():
            out = scan(cell, x, mask=mask, backend=k).outputs
            if train:
                out.sum().backward()
        if train:
            return run

        def no_grad_run():
            with torch.no_grad():
                run()
        return no_grad_run

    contenders = {k: contender(k) for k in runnable}
    rounds = 2 if quick else rounds_for(contenders)
    ms = interleaved(contenders, rounds, warmup=0 if not quick else 1)
    best = min(ms, key=ms.get)
    auto = select(cell, spec).name
    ratio = ms[auto] / ms[best]
    times = [ms.get(k, "-") for k in ("native", "compiled", "fused")]
    return [name, b, h, t, "yes" if masked else "no", *times, best, auto, f"{ratio:.2f}",
            verdict(ratio <= TOLERANCE)]


HEAD = ["cell", "B", "H", "T", "mask", "native", "compiled", "fused", "best", "auto", "auto / best",
        "<= 1.10x"]


def grid(cells, quick: bool) -> list[list]:
    rows = []
    for name, t, b, h, masked in itertools.product(cells, STEPS, BATCHES, HIDDEN, (False, True)):
        rows.append(point(name, b, h, t, masked, train=True, quick=quick))
        print(" | ".join(str(v) if not isinstance(v, float) else f"{v:.1f}" for v in rows[-1]),
              flush=True)
    return rows


INFERENCE_POINTS = [(b, h, 500) for b in BATCHES for h in (32, 128, 512)]


def inference(cells, quick: bool) -> list[list]:
    return [point(name, b, h, t, False, train=False, quick=quick)
            for name in cells for b, h, t in INFERENCE_POINTS]


def together(quick: bool) -> list[list]:
    """Bidirectional and 2-layer stacks: one native call for all vs the layers one by one."""
    rows = []
    for (b, t, i, h), name, kind in itertools.product(
            [(128, 500, 32, 32), (64, 100, 256, 256)], ("LSTM", "GRU"), ("Bidirectional", "Stacked")):
        layer_cls = {"LSTM": layers.LSTM, "GRU": layers.GRU}[name]
        x = torch.randn(b, t, i, requires_grad=True)
        torch.manual_seed(0)
        if kind == "Bidirectional":
            model = layers.Bidirectional(layer_cls(h, return_sequences=True))
        else:
            model = layers.Stacked([layer_cls(h, return_sequences=True) for _ in range(2)])
        model(x)
        inner = ([model.forward_layer, model.backward_layer] if kind == "Bidirectional"
                 else list(model.layers))
        cells = [layer.cell for layer in inner]
        starts = [cell.zero_state(b, x) for cell in cells]

        def one_call(cells=cells, starts=starts, x=x, both=kind == "Bidirectional"):
            out = scan_layers(cells, x, starts, None, bidirectional=both, backend="native")
            out.outputs.sum().backward()

        def separately(model=model, x=x):
            model(x).sum().backward()

        ms = interleaved({"one native call": one_call, "layers one by one (auto)": separately},
                         2 if quick else 5)
        auto_kernel = inner[0].last_kernel
        ratio = ms["layers one by one (auto)"] / ms["one native call"]
        rows.append([f"{(b, t, i, h)}", f"{kind}({name})", ms["one native call"],
                     ms["layers one by one (auto)"], auto_kernel, f"{ratio:.2f}",
                     verdict(ratio <= TOLERANCE)])
    return rows


def run(cells=tuple(CELLS), quick: bool = False) -> str:
    setup()
    load = os.getloadavg()[0]
    train_rows = grid(cells, quick)
    infer_rows = inference(cells, quick)
    pair_rows = together(quick)
    misses = [r for r in train_rows + infer_rows if r[-1] != "yes"]
    rounds_text = ("2 interleaved rounds per point" if quick else
                   f"3-11 interleaved rounds per point, sized to {BUDGET_S} s a kernel")
    n = len(train_rows) + len(infer_rows)
    return "\n\n".join([
        "### Kernel choice: every kernel on the grid, forward+backward (ms, median)",
        table(HEAD, train_rows),
        "### Kernel choice for inference: forward only under torch.no_grad() (ms, median)",
        table(HEAD, infer_rows),
        f"auto within {TOLERANCE:.2f}x of the best kernel at {n - len(misses)} of {n} points."
        + ("" if not misses else " Misses: " + "; ".join(
            f"{r[0]} B={r[1]} H={r[2]} T={r[3]} mask={r[4]}: {r[10]}x" for r in misses)),
        "### Bidirectional and stacked layers: one native call for all directions/layers vs the "
        "layers one by one on auto's kernel (forward+backward, ms, median)",
        table(["(B, T, I, H)", "model", "one native call", "layers one by one (auto)", "auto's kernel",
               "one by one / one call", "<= 1.10x"], pair_rows),
        f"Command: `{env_prefix()}python benchmarks/bench_dispatch.py{' --quick' if quick else ''}` "
        f"(I = H, post-padded masks with lengths from T/2 to T, {rounds_text}; {machine()}; "
        f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after). The reference loop is not "
        "timed: it runs everything and is never the fastest. On CPU torch's packed-sequence backward "
        "is O(T²), so native declines masks there and masked points compare compiled and fused.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds a point")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated: SimpleRNN,LSTM,GRU")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    text = run(tuple(args.cells.split(",")), args.quick)
    print(text)
    if not args.no_write:
        write_marked("bench_dispatch", text)


if __name__ == "__main__":
    main()
