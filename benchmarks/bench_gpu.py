"""GPU runs: cuDNN (torch.nn) against rnnkit's kernels on CUDA, batch 1-256, hidden 32-1024.

Tables (forward+backward, ms, medians of interleaved rounds, T=100, I=H):
  * standard LSTM and GRU: torch.nn (cuDNN) vs rnnkit's layers (``native``, the same cuDNN op);
  * the families cuDNN cannot run, on the ``gpu`` kernel (Triton pointwise + cuBLAS) and on ``fused``
    (torch ops from Python), against torch.nn.LSTM at the same shape and the reference loop.

Without CUDA nothing is measured: ``run`` returns None and ``make bench`` keeps the GPU section
already in docs/benchmarks.md (or says that none was measured). ``--device cpu --quick`` runs the
same code on CPU at small sizes to check the script itself (the gpu column then reads n/a).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import bench_kernels
import torch
from common import interleaved, table, verdict
from markers import marked

from rnnkit import layers
from rnnkit.engine import ScanSpec, kernels, scan

BATCHES = (1, 16, 64, 256)
HIDDEN = (32, 128, 512, 1024)
STEPS = 100
MARK = "gpu"


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> Callable[[], None]:
    """Forward+backward of fn's outputs, waiting for the device so the time is the work's."""
    def run():
        fn().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return run


def families(h: int) -> dict:
    """bench_kernels' families (I=H) that the gpu kernel takes: all but feedback and linear."""
    return {name: cell for name, cell in bench_kernels.families(h, h).items()
            if not name.startswith(("feedback", "linear"))}


def runs_on(kernel: str, cell, x: torch.Tensor) -> bool:
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=x.device, dtype=x.dtype,
                    batch=x.shape[0], steps=x.shape[1])
    return kernels()[kernel].supports(cell, spec)[0]


def standard(b: int, h: int, device, rounds: int) -> list[list]:
    x = torch.randn(b, STEPS, h, device=device, requires_grad=True)
    contenders, rows = {}, []
    for name, tnn, rk in (("LSTM", torch.nn.LSTM, layers.LSTM), ("GRU", torch.nn.GRU, layers.GRU)):
        ref = tnn(h, h, batch_first=True).to(device)
        layer = rk(h, return_sequences=True).to(device)
        layer(x)
        contenders[f"torch.nn.{name}"] = timed(lambda ref=ref: ref(x)[0], device)
        contenders[f"rnnkit.{name}"] = timed(lambda layer=layer: layer(x), device)
    ms = interleaved(contenders, rounds)
    for name in ("LSTM", "GRU"):
        ratio = ms[f"rnnkit.{name}"] / ms[f"torch.nn.{name}"]
        rows.append([b, h, name, ms[f"torch.nn.{name}"], ms[f"rnnkit.{name}"], f"{ratio:.2f}",
                     verdict(ratio <= 1.05)])
    return rows


def others(b: int, h: int, device, rounds: int, ref_rounds: int) -> list[list]:
    x = torch.randn(b, STEPS, h, device=device, requires_grad=True)
    lstm = torch.nn.LSTM(h, h, batch_first=True).to(device)
    cells = {name: cell.to(device) for name, cell in families(h).items()}
    contenders = {"torch.nn.LSTM": timed(lambda: lstm(x)[0], device)}
    for name, cell in cells.items():
        for k in ("gpu", "fused"):
            if runs_on(k, cell, x):
                contenders[f"{name}/{k}"] = timed(
                    lambda cell=cell, k=k: scan(cell, x, backend=k).outputs, device)
    ms = interleaved(contenders, rounds)
    refs = interleaved({name: timed(lambda cell=cell: scan(cell, x, backend="reference").outputs,
                                    device) for name, cell in cells.items()}, ref_rounds, warmup=0)
    rows = []
    for name in cells:
        gpu = ms.get(f"{name}/gpu")
        best = gpu if gpu is not None else ms[f"{name}/fused"]
        vs_lstm = best / ms["torch.nn.LSTM"]
        rows.append([b, h, name, ms["torch.nn.LSTM"], "n/a" if gpu is None else gpu,
                     ms[f"{name}/fused"], f"{vs_lstm:.2f}", verdict(vs_lstm <= 1.5), refs[name],
                     f"{refs[name] / best:.1f}"])
    return rows


def run(rounds: int = 5, ref_rounds: int = 2, device: str | None = None,
        batches=BATCHES, hidden=HIDDEN) -> str | None:
    """The GPU section (markdown between markers), or None without CUDA (unless device='cpu')."""
    if device is None:
        if not torch.cuda.is_available():
            return None
        device = "cuda"
    dev = torch.device(device)
    torch.manual_seed(0)
    std, oth = [], []
    for h in hidden:
        for b in batches:
            std += standard(b, h, dev, rounds)
            oth += others(b, h, dev, rounds, ref_rounds)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU (script check only)"
    return marked(MARK, "\n\n".join([
        f"### GPU: {where}, T={STEPS}, I=H, forward+backward (ms, median)",
        "Standard cells, torch.nn (cuDNN) vs rnnkit layers (native kernel):",
        table(["B", "H", "cell", "torch.nn", "rnnkit", "ratio", "<= 1.05x"], std),
        "Families cuDNN cannot run, on the gpu kernel (Triton + cuBLAS) and fused (torch ops), "
        "vs torch.nn.LSTM (cuDNN); speed-up is over the reference loop:",
        table(["B", "H", "family", "torch.nn.LSTM", "gpu", "fused", "vs LSTM", "<= 1.5x",
               "reference", "speed-up"], oth),
        "Command: `python benchmarks/bench_gpu.py`.",
    ]))


def placeholder() -> str:
    return marked(MARK, "\n".join([
        "### GPU",
        "",
        "No GPU has been available to this project's runs, so the cuDNN and gpu-kernel tables "
        "(`python benchmarks/bench_gpu.py`, batch 1-256, hidden 32-1024) are not measured yet. "
        "The gpu kernel's numbers are verified on CPU in Triton's interpreter "
        "(tests/engine/test_gpu_kernel.py); its speed is unknown.",
    ]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when present")
    parser.add_argument("--quick", action="store_true", help="two small shapes, few rounds")
    args = parser.parse_args()
    if args.quick:
        out = run(rounds=2, ref_rounds=1, device=args.device, batches=(1, 16), hidden=(32,))
    else:
        out = run(device=args.device)
    print(out if out is not None else "No CUDA device: nothing measured (see --device cpu).")


if __name__ == "__main__":
    main()
