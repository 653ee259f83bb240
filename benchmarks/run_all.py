"""Run every benchmark and write docs/benchmarks.md (``make bench``).

Each script measures its contenders side by side, interleaved, and reports medians and ratios.
``--quick`` takes fewer rounds (for a smoke run; the committed tables come from the full run).
"""

from __future__ import annotations

import datetime
import os
import pathlib
import sys
import time
from collections.abc import Collection

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import bench_dispatch  # noqa: E402
import bench_fit  # noqa: E402
import bench_floor  # noqa: E402
import bench_gpu  # noqa: E402
import bench_inference  # noqa: E402
import bench_kernels  # noqa: E402
import bench_memory  # noqa: E402
import bench_parallel  # noqa: E402
import profile_compiled  # noqa: E402
import torch  # noqa: E402
from common import DOC, NOTES, machine  # noqa: E402
from markers import BLOCK, marked  # noqa: E402

from rnnkit.engine import kernels  # noqa: E402


def compiled_status() -> str:
    """Whether the compiled (C++) kernel built here, and how long its first use took."""
    start = time.perf_counter()
    ops, reason = kernels()["compiled"].ops()
    took = time.perf_counter() - start
    if ops is None:
        return f"Compiled kernel: not available ({reason}); its columns read n/a."
    return f"Compiled kernel: C++ extension built or loaded from cache in {took:.1f} s."


def main() -> None:
    quick = "--quick" in sys.argv
    load_before = os.getloadavg()[0]
    status = compiled_status()
    sections = [
        bench_kernels.run(rounds=3 if quick else 7, ref_seconds=0.0 if quick else 8.0),
        bench_floor.section(bench_floor.run(rounds=2 if quick else 5)),
        bench_parallel.run(rounds=1 if quick else 3),
        bench_memory.run(),
        bench_fit.run(rounds=2 if quick else 5, batches=2 if quick else 4),
        marked("bench_dispatch", bench_dispatch.run(quick=quick)),
        marked("bench_inference", bench_inference.run(rounds=2 if quick else 9)),
        marked("profile_compiled", profile_compiled.run(seconds=3 if quick else 8)),
    ]
    gpu = bench_gpu.run(rounds=2 if quick else 5, ref_rounds=1 if quick else 2)
    if gpu is not None:  # without CUDA the GPU section already in the doc is kept
        sections.append(gpu)
    elif not DOC.exists() or "<!-- gpu: begin -->" not in DOC.read_text():
        sections.append(bench_gpu.placeholder())
    for s in sections:
        print(s, "\n", flush=True)
    head = [
        "# Benchmarks",
        "",
        f"Produced by `make bench` (`python benchmarks/run_all.py{' --quick' if quick else ''}`)"
        f" on {datetime.date.today()}.",
        f"Machine: {machine()}; load average {load_before:.2f} before the run, "
        f"{os.getloadavg()[0]:.2f} after it (the run itself keeps both cores busy).",
        gpu_line(),
        status,
        "All contenders run side by side in one process, interleaved round by round; "
        "times are medians (ms). The machine is shared with other work, so expect ±20 % noise.",
        "",
        "",
    ]
    notes = NOTES.read_text() if NOTES.exists() else ""
    DOC.parent.mkdir(exist_ok=True)
    fresh = {name for s in sections for name in marker_names(s)}
    kept = marked_sections(DOC.read_text(), skip=fresh) if DOC.exists() else []
    DOC.write_text("\n".join(head) + "\n\n".join(sections + kept) + "\n\n" + notes)


def gpu_line() -> str:
    if torch.cuda.is_available():
        return f"GPU present ({torch.cuda.get_device_name(0)}); these tables are CPU runs."
    return "No GPU was available, so the suite ran on CPU only."


def marker_names(text: str) -> list[str]:
    return [m.group(1) for m in BLOCK.finditer(text)]


def marked_sections(doc: str, skip: Collection[str] = ()) -> list[str]:
    """Sections other scripts own (between <!-- name: begin --> and <!-- name: end -->): kept,
    except those this run wrote anew (named in skip)."""
    return [m.group(0) for m in BLOCK.finditer(doc) if m.group(1) not in skip]


if __name__ == "__main__":
    main()
