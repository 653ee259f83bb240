"""Shared timing: contenders interleaved round by round, medians, markdown tables.

The machine is shared and noisy, so each round runs every contender once (in a rotating order)
and the median over rounds is reported; ratios are taken between medians of the same run.
"""

from __future__ import annotations

import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable

import markers
import torch

THREADS = int(os.environ.get("RNNKIT_BENCH_THREADS", "2"))
# RNNKIT_BENCH_CLOCK=cpu times the process's CPU seconds instead of the wall clock: with one thread
# (RNNKIT_BENCH_THREADS=1) that ignores the time other processes hold the core, so a loaded shared
# machine still gives comparable figures; with more threads it counts their spin-waits too.
CLOCK = time.process_time if os.environ.get("RNNKIT_BENCH_CLOCK") == "cpu" else time.perf_counter


def env_prefix() -> str:
    """The RNNKIT_BENCH_* settings of this run, as they go before a command."""
    names = ("RNNKIT_BENCH_THREADS", "RNNKIT_BENCH_CLOCK")
    return "".join(f"{n}={os.environ[n]} " for n in names if n in os.environ)


def setup() -> None:
    """The same thread count for every contender."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)


def interleaved(contenders: dict[str, Callable[[], None]], rounds: int,
                warmup: int = 1) -> dict[str, float]:
    """Median milliseconds per call of each contender, measured side by side."""
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            contenders[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = CLOCK()
            contenders[name]()
            times[name].append((CLOCK() - start) * 1e3)
    return {n: statistics.median(t) for n, t in times.items()}


def table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {THREADS} threads, CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}, no GPU"
            if not torch.cuda.is_available() else f"GPU {torch.cuda.get_device_name()}")


def fwd_bwd(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """A contender that runs fn (returning outputs) and backpropagates their sum."""
    def run():
        fn().sum().backward()
    return run


DOC = markers.BENCHMARKS_DOC
NOTES = pathlib.Path(__file__).parent / "NOTES.md"


def write_marked(name: str, text: str) -> None:
    """Replace the section ``name`` of docs/benchmarks.md, or add it before the notes."""
    notes = NOTES.read_text().strip() if NOTES.exists() else ""
    markers.write_marked(name, text, DOC, before=notes)
