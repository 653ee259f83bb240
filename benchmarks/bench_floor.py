"""The GEMM floor: the largest speed-up over the reference loop that any step-by-step kernel can reach.

A kernel that runs a recurrence step by step must still do the cell's matrix products, forward and
backward: the input projection x W_ihᵀ over all T·B rows, the T recurrent products h_{t-1} W_hhᵀ (and
C W_pᵀ for full-matrix peepholes), the T products dZ_t W_hh for dh_{t-1} (and dC), the weight gradients
dZᵀ·act each as one GEMM over all T·B rows, and dx = dZ W_ih. This script times exactly those GEMMs
into preallocated outputs, with the faster weight layout of the two (W or Wᵀ contiguous) for each,
and nothing else: no gate math, no autograd. reference / floor bounds the speed-up over the reference
loop of any kernel that does these GEMMs with torch's BLAS on this machine (a parallel scan does other
work and is not bound by it). torch.nn.LSTM, oneDNN's fused RNN primitive, shows how far torch's
own fused LSTM gets above the reference loop and whether it beats the floor.

    python benchmarks/bench_floor.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import torch
from bench_kernels import SHAPES, families
from common import fwd_bwd, interleaved, machine, setup, table, verdict, write_marked
from markers import marked

from rnnkit.cells import FeedbackCell, GRUCell, LSTMCell
from rnnkit.engine import scan

FWD, STEP_FWD, STEP_BWD, BWD = "forward, once", "forward, per step", "backward, per step", "backward, once"
PHASES = (FWD, STEP_FWD, STEP_BWD, BWD)


@dataclass(frozen=True)
class Gemm:
    """out (m, n) = a (m, k) @ b (k, n), T times (a per-step phase) or once over all T·B rows.

    weight: b is a parameter, whose layout a kernel may choose once per call (W or Wᵀ contiguous).
    a_t: a is the transpose of a stored (k, m) activation (weight gradients dZᵀ·act).
    """

    what: str
    m: int
    k: int
    n: int
    phase: str
    weight: bool = True
    a_t: bool = False

    @property
    def per_step(self) -> bool:
        return self.phase in (STEP_FWD, STEP_BWD)


def plan(cell, b: int, t: int) -> list[Gemm]:
    """The GEMMs any step-by-step kernel for ``cell`` must do at batch b over t steps."""
    hs, n = cell.hidden_size, b * t
    if isinstance(cell, FeedbackCell):
        return feedback_plan(cell, b, n)
    gh = cell.gates * hs
    return [Gemm("x W_ihᵀ", n, cell.input_size, gh, FWD), *recurrent_plan(cell, b, n),
            Gemm("dW_ih = dZᵀ x", gh, n, cell.input_size, BWD, weight=False, a_t=True),
            Gemm("dx = dZ W_ih", n, gh, cell.input_size, BWD)]


def recurrent_plan(cell, b: int, n: int) -> list[Gemm]:
    hs = cell.hidden_size
    kh, gh = cell.num_lags * hs, cell.gates * hs
    if isinstance(cell, GRUCell) and not cell.reset_after:
        # r must be known before (r * h) W_nᵀ, and d(r * h) before dr: two dependent GEMMs per step.
        return [Gemm("h W_rzᵀ", b, kh, 2 * hs, STEP_FWD), Gemm("(r*h) W_nᵀ", b, kh, hs, STEP_FWD),
                Gemm("dn W_n", b, hs, kh, STEP_BWD), Gemm("dz_rz W_rz", b, 2 * hs, kh, STEP_BWD),
                Gemm("dW_rz", 2 * hs, n, kh, BWD, weight=False, a_t=True),
                Gemm("dW_n", hs, n, kh, BWD, weight=False, a_t=True)]
    gemms = [Gemm("h W_hhᵀ", b, kh, gh, STEP_FWD), Gemm("dZ W_hh", b, gh, kh, STEP_BWD),
             Gemm("dW_hh = dZᵀ h", gh, n, kh, BWD, weight=False, a_t=True)]
    if isinstance(cell, LSTMCell) and cell.peephole == "full":
        ph = cell.prev_peep_gates * hs
        gemms += [Gemm("C_{t-1} P_prevᵀ", b, hs, ph, STEP_FWD), Gemm("C_t P_outᵀ", b, hs, hs, STEP_FWD),
                  Gemm("dz_o P_out", b, hs, hs, STEP_BWD), Gemm("dz_if P_prev", b, ph, hs, STEP_BWD),
                  Gemm("dP_prev", ph, n, hs, BWD, weight=False, a_t=True),
                  Gemm("dP_out", hs, n, hs, BWD, weight=False, a_t=True)]
    return gemms


def feedback_plan(cell: FeedbackCell, b: int, n: int) -> list[Gemm]:
    """h_t = f(A x_t + Bⁱ h_lags + Bᵒ o_{t-1}), o_t = g(C h_t + D x_t): [Bⁱ, Bᵒ] as one matrix on [h, o]."""
    hs, o, i = cell.hidden_size, cell.out_size, cell.input_size
    ko = cell.num_lags * hs + o
    gemms = [Gemm("x Aᵀ", n, i, hs, FWD),
             Gemm("[h, o] [Bⁱ, Bᵒ]ᵀ", b, ko, hs, STEP_FWD), Gemm("h Cᵀ", b, hs, o, STEP_FWD),
             Gemm("dz [Bⁱ, Bᵒ]", b, hs, ko, STEP_BWD), Gemm("do C", b, o, hs, STEP_BWD),
             Gemm("d[Bⁱ, Bᵒ]", hs, n, ko, BWD, weight=False, a_t=True),
             Gemm("dC", o, n, hs, BWD, weight=False, a_t=True),
             Gemm("dA", hs, n, i, BWD, weight=False, a_t=True), Gemm("dx = dz A", n, hs, i, BWD)]
    if cell.shortcut:
        gemms += [Gemm("x Dᵀ", n, i, o, FWD), Gemm("dD", o, n, i, BWD, weight=False, a_t=True),
                  Gemm("dx += do D", n, o, i, BWD)]
    return gemms


def flops(gemms: list[Gemm], t: int) -> float:
    return sum(2.0 * g.m * g.k * g.n * (t if g.per_step else 1) for g in gemms)


def calls(gemms: list[Gemm], t: int) -> int:
    return sum(t if g.per_step else 1 for g in gemms)


class Pool:
    """Operands shared between plans (they never run at the same time): memory of the largest plan.

    Inputs are random and never written; outputs are only written, so values stay finite.
    """

    def __init__(self):
        self.tensors: dict[tuple, torch.Tensor] = {}
        self.layouts: dict[tuple, bool] = {}

    def take(self, shape: tuple[int, ...], used: dict, out: bool = False) -> torch.Tensor:
        """A tensor of this shape not yet used by the plan being built."""
        key = (shape, out)
        slot = used[key] = used.get(key, -1) + 1
        if (key, slot) not in self.tensors:
            self.tensors[key, slot] = torch.empty(shape) if out else torch.randn(shape)
        return self.tensors[key, slot]


def median_us(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times)


def weight_operand(g: Gemm, pool: Pool, used: dict) -> torch.Tensor:
    """W stored as (k, n), or as (n, k) used transposed: whichever mm runs faster here (cached)."""
    key = (g.m, g.k, g.n)
    if key not in pool.layouts:
        a, out = torch.randn(g.m, g.k), torch.empty(g.m, g.n)
        w_nn, w_nt = torch.randn(g.k, g.n), torch.randn(g.n, g.k).t()
        reps = 20 if g.m * g.k * g.n < 2**24 else 3
        pool.layouts[key] = (median_us(lambda: torch.mm(a, w_nn, out=out), reps)
                             <= median_us(lambda: torch.mm(a, w_nt, out=out), reps))
    return pool.take((g.k, g.n), used) if pool.layouts[key] else pool.take((g.n, g.k), used).t()


def operands(g: Gemm, t: int, pool: Pool, used: dict) -> list[tuple]:
    """(a, b, out) for each call: one per step slice in a per-step phase, else one."""
    b = weight_operand(g, pool, used) if g.weight else pool.take((g.k, g.n), used)
    if not g.per_step:
        a = pool.take((g.k, g.m), used).t() if g.a_t else pool.take((g.m, g.k), used)
        return [(a, b, pool.take((g.m, g.n), used, out=True))]
    a_steps = pool.take((t, g.m, g.k), used).unbind(0)  # (T, m, k)
    out_steps = pool.take((t, g.m, g.n), used, out=True).unbind(0)  # (T, m, n)
    return [(a, b, out) for a, out in zip(a_steps, out_steps)]


def floor_contender(gemms: list[Gemm], t: int, pool: Pool):
    """One forward+backward's GEMMs in a kernel's order: the per-step phases step by step."""
    used: dict = {}
    work = []
    for phase in PHASES:
        ops = [operands(g, t, pool, used) for g in gemms if g.phase == phase]
        work += [call for step in zip(*ops) for call in step]  # per step, all its GEMMs

    def run():
        for a, b, out in work:
            torch.mm(a, b, out=out)
    return run


def throughput() -> tuple[float, float]:
    """GFLOP/s of one large (1024³) product, and the cost of one GEMM call alone (1×1, µs)."""
    a, b, out = torch.randn(1024, 1024), torch.randn(1024, 1024), torch.empty(1024, 1024)
    big = median_us(lambda: torch.mm(a, b, out=out), 5)
    one, one_out = torch.randn(1, 1), torch.empty(1, 1)
    return 2 * 1024**3 / big / 1e3, median_us(lambda: torch.mm(one, one, out=one_out), 200)


def cells_of(i: int, h: int) -> dict:
    return {"LSTM (standard)": LSTMCell(i, h), **families(i, h)}


def measure(shape, rounds: int, pool: Pool) -> tuple[list[list], list, dict]:
    """Reference loops, floors and torch.nn.LSTM interleaved in one run, so all see the same load."""
    b, t, i, h = shape
    x = torch.randn(b, t, i, requires_grad=True)
    lstm = torch.nn.LSTM(i, h, batch_first=True)
    cells = cells_of(i, h)
    plans = {name: plan(cell, b, t) for name, cell in cells.items()}
    contenders = {f"{name}/floor": floor_contender(p, t, pool) for name, p in plans.items()}
    contenders |= {f"{name}/reference": fwd_bwd(lambda cell=cell: scan(cell, x, backend="reference").outputs)
                   for name, cell in cells.items()}
    contenders["torch.nn.LSTM"] = fwd_bwd(lambda: lstm(x)[0])
    ms = interleaved(contenders, rounds)
    rows, bounds = [], {}
    for name, gemms in plans.items():
        ref, floor = ms[f"{name}/reference"], ms[f"{name}/floor"]
        bounds[name] = (ref / floor, ref / 3 - floor)
        rows.append([f"{shape}", name, calls(gemms, t), f"{flops(gemms, t) / 1e9:.2f}", ref, floor,
                     f"{flops(gemms, t) / floor / 1e6:.0f}", f"{ref / floor:.2f}", ref / 3 - floor,
                     verdict(ref / floor >= 3)])
    ref, floor, fused = ms["LSTM (standard)/reference"], ms["LSTM (standard)/floor"], ms["torch.nn.LSTM"]
    lstm_row = [f"{shape}", ref, fused, f"{ref / fused:.2f}", floor, f"{fused / floor:.2f}"]
    del bounds["LSTM (standard)"]
    return rows, lstm_row, bounds


def summary(shape, bounds: dict) -> str:
    """One line per shape: the range of reference/floor over the non-standard families."""
    ratios = [r for r, _ in bounds.values()]
    rooms = [room for _, room in bounds.values()]
    short = [n for n, (r, _) in bounds.items() if r < 3]
    verdict_text = (f"below 3 for {', '.join(short)}: 3x is impossible there" if short else
                    "at least 3 for every family: the GEMMs alone do not rule 3x out")
    return (f"- {shape}: reference / floor is {min(ratios):.2f}–{max(ratios):.2f}, {verdict_text}; "
            f"at 3x a kernel has {min(rooms):.1f}–{max(rooms):.1f} ms left for everything but the GEMMs.")


def run(rounds: int = 5) -> str:
    setup()
    load_before = os.getloadavg()[0]
    peak, per_call = throughput()
    pool = Pool()
    rows, lstm_rows, lines = [], [], []
    for shape in SHAPES:
        r, lstm_row, bounds = measure(shape, rounds, pool)
        rows += r
        lstm_rows.append(lstm_row)
        lines.append(summary(shape, bounds))
    return "\n\n".join([
        "### The GEMM floor: the largest speed-up over the reference loop any kernel doing the cell's "
        "GEMMs can reach (forward+backward, ms, median)",
        table(["(B, T, I, H)", "family", "GEMM calls", "GFLOP", "reference", "GEMM floor",
               "floor GFLOP/s", "reference / floor", "room at 3x (ms)", ">= 3x possible"], rows),
        "\n".join(lines),
        f"The floor is the cell's GEMMs alone (input projection, per-step recurrent and peephole "
        f"products, their backward, weight gradients over all T·B rows, dx) into preallocated outputs "
        f"(`torch.mm(out=)`, faster weight layout of two), no gate math: every step-by-step kernel "
        f"does at least this. \"Room at 3x\" = reference / 3 − floor: what a kernel 3x faster than the "
        f"reference has left for its gate math, memory traffic and overhead. On this machine "
        f"({machine()}) one 1024×1024×1024 product runs at {peak:.0f} GFLOP/s and one GEMM call "
        f"costs {per_call:.1f} µs alone (1×1), which the \"GEMM calls\" column turns into the "
        f"floor's share of call overhead. Load average {load_before:.2f} before the run, "
        f"{os.getloadavg()[0]:.2f} after: small two-thread GEMMs stall when another process holds "
        f"a core, so read this table only from a run on an otherwise idle machine.",
        "### torch.nn.LSTM (oneDNN's fused RNN) against the reference loop and the LSTM GEMM floor "
        "(forward+backward, ms, median)",
        table(["(B, T, I, H)", "reference LSTMCell", "torch.nn.LSTM", "torch.nn.LSTM speed-up",
               "LSTM GEMM floor", "torch.nn.LSTM / floor"], lstm_rows),
        "Command: `python benchmarks/bench_floor.py`.",
    ])


def section(text: str) -> str:
    return marked("bench_floor", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    text = run(rounds=2 if args.quick else 5)
    print(text)
    if not args.no_write:
        write_marked("bench_floor", text)


if __name__ == "__main__":
    main()
