"""Forward+backward of every cell family: rnnkit vs torch.nn and vs the reference loop.

Targets: standard SimpleRNN/LSTM/GRU through rnnkit layers (``auto``) at the IMDB shape
(128, 500, 32, 32) LSTM <= 0.55x, GRU <= 0.40x, SimpleRNN <= 0.40x torch.nn, and <= 1.0x at
(64, 100, 256, 256) (``STANDARD_TARGETS``); every other family
<= 1.5x torch.nn.LSTM at the same shape and >= 3x faster than the reference loop. The other families
run on both loop kernels, compiled (C++, built at first use) and fused (torch ops from Python).
"""

from __future__ import annotations

import time

import torch
from common import fwd_bwd, interleaved, setup, table, verdict
from markers import marked

from rnnkit.cells import FeedbackCell, GRUCell, LinearCell, LSTMCell, SimpleCell
from rnnkit.engine import ScanSpec, kernels, scan
from rnnkit.interop.torch_nn import from_torch

SHAPES = [(128, 500, 32, 32), (64, 100, 256, 256)]  # (B, T, I, H)
STANDARD_TARGETS = {((128, 500, 32, 32), "LSTM"): 0.55, ((128, 500, 32, 32), "GRU"): 0.40,
                    ((128, 500, 32, 32), "SimpleRNN"): 0.40}  # else 1.0


def standard(shape, rounds: int) -> list[list]:
    """torch.nn.RNN/LSTM/GRU vs rnnkit's SimpleRNN/LSTM/GRU layers (auto), side by side."""
    b, t, i, h = shape
    x = torch.randn(b, t, i, requires_grad=True)
    pairs = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
    ms, kernels = {}, {}
    for name, tnn in pairs.items():  # each pair on its own, 3x the rounds
        ref = tnn(i, h, batch_first=True)
        # the same weights: the time of backward depends on how many gradients decay to denormals
        layer = from_torch(ref, return_sequences=True)
        layer(x)
        kernels[name] = layer.last_kernel
        ms.update(interleaved({f"torch.nn.{name}": fwd_bwd(lambda ref=ref: ref(x)[0]),
                               f"rnnkit.{name}": fwd_bwd(lambda layer=layer: layer(x))}, 3 * rounds))
    rows = []
    for name in pairs:
        ratio = ms[f"rnnkit.{name}"] / ms[f"torch.nn.{name}"]
        target = STANDARD_TARGETS.get((shape, name), 1.0)
        rows.append([f"{shape}", name, kernels[name], ms[f"torch.nn.{name}"],
                     ms[f"rnnkit.{name}"], f"{ratio:.2f}", f"<= {target:.2f}", verdict(ratio <= target)])
    return rows


def families(i: int, h: int) -> dict:
    return {
        "LSTM peephole full": LSTMCell(i, h, peephole="full"),
        "LSTM peephole diagonal": LSTMCell(i, h, peephole="diagonal"),
        "LSTM coupled": LSTMCell(i, h, coupled=True),
        "GRU reset_after=False": GRUCell(i, h, reset_after=False),
        "SimpleRNN lags=(1, 2)": SimpleCell(i, h, lags=(1, 2)),
        "LSTM lags=(1, 2)": LSTMCell(i, h, lags=(1, 2)),
        "feedback (O=8)": FeedbackCell(i, h, 8),
        "linear (loop kernels)": LinearCell(i, h),
    }


def compiled_runs(cell, x) -> bool:
    """Whether the compiled (C++) kernel supports the cell; building it at first use."""
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=x.device, dtype=x.dtype,
                    batch=x.shape[0], steps=x.shape[1])
    return kernels()["compiled"].supports(cell, spec)[0]


def others(shape, rounds: int, ref_seconds: float) -> list[list]:
    """Each non-standard family on the compiled and fused kernels vs torch.nn.LSTM and the reference.

    The verdicts judge the kernel ``auto`` would take of the two loops: compiled where it runs. The
    speed-up over the reference comes from a second run that times that kernel and the reference
    loop side by side, in as many rounds (3 to 9; 1 when ``ref_seconds`` is 0) as fit in about
    ``ref_seconds``.
    """
    b, t, i, h = shape
    x = torch.randn(b, t, i, requires_grad=True)
    lstm = torch.nn.LSTM(i, h, batch_first=True)
    cells = families(i, h)
    contenders = {"torch.nn.LSTM": fwd_bwd(lambda: lstm(x)[0])}
    best = {}
    for name, cell in cells.items():
        backends = ["compiled", "fused"] if compiled_runs(cell, x) else ["fused"]
        best[name] = backends[0]
        for k in backends:
            contenders[f"{name}/{k}"] = fwd_bwd(lambda cell=cell, k=k: scan(cell, x, backend=k).outputs)
    ms = interleaved(contenders, rounds)
    rows = []
    for name, cell in cells.items():
        reference = fwd_bwd(lambda cell=cell: scan(cell, x, backend="reference").outputs)
        start = time.perf_counter()
        reference()  # the warm-up call, timed to size the rounds
        took = time.perf_counter() - start
        ref_rounds = min(9, max(3, int(ref_seconds / took))) if ref_seconds > 0 else 1
        pair = interleaved({"kernel": contenders[f"{name}/{best[name]}"], "reference": reference},
                           ref_rounds, warmup=0)
        vs_lstm = ms[f"{name}/{best[name]}"] / ms["torch.nn.LSTM"]
        speedup = pair["reference"] / pair["kernel"]
        rows.append([f"{shape}", name, ms["torch.nn.LSTM"], ms.get(f"{name}/compiled", "n/a"),
                     ms[f"{name}/fused"], f"{vs_lstm:.2f}", verdict(vs_lstm <= 1.5),
                     pair["reference"], pair["kernel"], f"{speedup:.1f}", verdict(speedup >= 3)])
    return rows


def run(rounds: int = 7, ref_seconds: float = 8.0) -> str:
    setup()
    std, oth = [], []
    for shape in SHAPES:
        std += standard(shape, rounds)
        oth += others(shape, rounds, ref_seconds)
    return "\n\n".join([
        marked("standard_cells", "\n\n".join([
            "### Standard cells: rnnkit layers vs torch.nn (forward+backward, ms, median)",
            table(["(B, T, I, H)", "cell", "kernel", "torch.nn", "rnnkit", "ratio", "target", "met"], std)])),
        "### Other cell families on the compiled (C++) and fused kernels (forward+backward, ms, "
        "median; ratios for compiled where it runs, else fused)",
        table(["(B, T, I, H)", "family", "torch.nn.LSTM", "compiled", "fused", "vs LSTM", "<= 1.5x",
               "reference", "kernel beside it", "speed-up", ">= 3x"], oth),
        "The speed-up is measured side by side: the chosen kernel and the reference loop "
        "interleaved in one run of 3-9 rounds (\"kernel beside it\"), after the table's own run.",
    ])


if __name__ == "__main__":
    print(run())
