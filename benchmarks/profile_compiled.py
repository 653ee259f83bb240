"""Where the compiled kernel's time goes: GEMM, gate math, memory traffic, overhead (Linux perf).

For each standard cell at the IMDB shape (B, T, I, H) = (128, 500, 32, 32), forward+backward on one
thread, a worker process warms the kernel up, then runs it in a loop while ``perf record`` samples
it; the samples are grouped by the symbol they fall in:

- GEMM: the BLAS kernels (MKL's ``mkl_blas_*``, ``sgemm``), input projection and weight gradients
  included;
- gate math: the extension's own loops (``rnnkit_fused_cells*.so``): activations, c and h, their
  derivatives, the gradient ring;
- ATen elementwise: ATen's vectorised kernels around the loop (``Sleef``, ``VectorizedLoop``,
  sums): the time-major copy of x, the bias gradient, the outputs' mask and the benchmark's loss;
- memory: page faults and zeroing of fresh buffers (``clear_page``, ``page_fault``), ``memcpy``
  and ``memset``;
- threads: OpenMP's runtime (``libgomp``: waiting at barriers, starting parallel regions);
- Python and dispatch: the interpreter, autograd, torch's dispatcher and allocator.

    python benchmarks/profile_compiled.py [--seconds 8] [--no-write]

Needs ``perf`` (linux-tools) and permission to sample (perf_event_paranoid <= 2 for one's own
processes); without it the section says so.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from common import machine, table, write_marked

SHAPE = (128, 500, 32, 32)
CELLS = ("SimpleRNN", "LSTM", "GRU")
GROUPS = [  # (group, pattern on "dso symbol"), first match wins
    ("GEMM", r"mkl_blas|sgemm|dgemm|gemm_kernel|mkl_"),
    ("gate math", r"rnnkit_fused_cells"),
    ("ATen elementwise", r"Sleef|Vectorized|vectorized|sigmoid|tanh|add_kernel|mul_kernel|_sum"),
    ("memory", r"clear_page|page_fault|memcpy|memset|memmove|__memcpy|folio|do_anonymous|_copy_"),
    ("threads", r"libgomp|GOMP|omp_"),
    ("Python and dispatch", r"libpython|_Py|c10::|torch::autograd|at::|libtorch_python|malloc|free"),
]

WORKER = """
import sys, time, torch
from rnnkit.cells import GRUCell, LSTMCell, SimpleCell
from rnnkit.engine import scan
torch.set_num_threads(1)
b, t, i, h = {shape}
cell = {{"SimpleRNN": SimpleCell, "LSTM": LSTMCell, "GRU": GRUCell}}[sys.argv[1]](i, h)
x = torch.randn(b, t, i, requires_grad=True)
def run():
    scan(cell, x, backend="compiled").outputs.sum().backward()
for _ in range(3):
    run()
start, cpu, n = time.perf_counter(), time.process_time(), 0
while time.perf_counter() - start < 2.0:
    run(); n += 1
print((time.process_time() - cpu) / n * 1e3, flush=True)  # CPU ms per call, then the profiled loop
print("ready", flush=True)
end = time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < end:
    run()
"""


def perf_report(data: str) -> list[tuple[float, str]]:
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym",
                          "-g", "none", "--stdio", "--percent-limit", "0"],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*)", line)
        if m:
            rows.append((float(m.group(1)), m.group(2)))
    return rows


def group_of(symbol: str) -> str:
    return next((g for g, pattern in GROUPS if re.search(pattern, symbol)), "other")


def profile(cell: str, seconds: float, tmp: str) -> tuple[float, dict[str, float]]:
    """CPU ms per forward+backward (one thread: other processes do not inflate it), and the share
    of samples per group."""
    worker = subprocess.Popen([sys.executable, "-c", WORKER.format(shape=SHAPE), cell, str(seconds)],
                              stdout=subprocess.PIPE, text=True, env=os.environ)
    ms = float(worker.stdout.readline())
    worker.stdout.readline()  # "ready"
    data = os.path.join(tmp, f"{cell}.data")
    rec = subprocess.Popen(["perf", "record", "-F", "999", "-o", data, "-p", str(worker.pid), "--",
                            "sleep", str(seconds - 0.5)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec.wait()
    worker.wait()
    shares: dict[str, float] = {}
    for pct, symbol in perf_report(data):
        shares[group_of(symbol)] = shares.get(group_of(symbol), 0.0) + pct
    total = sum(shares.values()) or 1.0
    return ms, {g: 100 * v / total for g, v in shares.items()}


def run(seconds: float = 8.0) -> str:
    title = (f"### Where the compiled kernel's time goes (forward+backward at {SHAPE}, one thread, "
             "share of perf samples)")
    if shutil.which("perf") is None:
        return f"{title}\n\n`perf` is not installed here, so no profile."
    names = [g for g, _ in GROUPS] + ["other"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in CELLS:
            ms, shares = profile(cell, seconds, tmp)
            rows.append([cell, ms, *(f"{shares.get(g, 0.0):.0f} %" for g in names)])
    load = os.getloadavg()[0]
    return "\n\n".join([
        title,
        table(["cell", "CPU ms per call", *names], rows),
        f"Command: `python benchmarks/profile_compiled.py` ({machine()}, profiled on 1 thread; "
        f"load average {load:.2f}; {time.strftime('%Y-%m-%d')}). Groups by symbol: GEMM = BLAS "
        "kernels (recurrent products, input projection, weight gradients); gate math = the "
        "extension's own loops; ATen elementwise = the copies, sums and loss around the kernel; "
        "memory = page faults, zeroing and copies; threads = OpenMP's runtime; Python and "
        "dispatch = interpreter, autograd, dispatcher, allocator.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="profiled seconds per cell")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    text = run(args.seconds)
    print(text)
    if not args.no_write:
        write_marked("profile_compiled", text)


if __name__ == "__main__":
    main()
