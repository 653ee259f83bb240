"""Denormal floats flushed to zero on every CPU thread torch computes on, as TensorFlow and XLA do.

Why: gradients that flow back through hundreds of recurrent steps from one final state (the
lecture's IMDB model: Embedding → LSTM → Dense on h_T) shrink into the denormal range
(|x| < 1.2e-38 in float32), where many CPUs compute up to two orders of magnitude slower. On this
project's 2-core machine torch's own LSTM training step took 297 ms with denormals and 80 ms with
them flushed (``benchmarks/bench_fit.py``); nothing a network learns depends on numbers that
small. TensorFlow and XLA (so Keras on both) flush them in their threads by default.

``torch.set_flush_denormal`` sets the FTZ/DAZ flags of the calling thread only, while torch's
intra-op threads are OpenMP threads with flags of their own. ``set_flush_denormal`` therefore also
runs a parallel region of torch's OpenMP runtime (libgomp's ``GOMP_parallel``, through ctypes) in
which every thread of the team sets its own flags; where that runtime is not libgomp it reaches
the calling thread only and says so.

The calling thread also runs Python. Flushed, Python's own float arithmetic there treats
denormals as zero too (``repr(5e-324)`` gives ``0.0``), so ``fit`` flushes it only while a step
computes (``steps_flushed``) and leaves callbacks, validation of arguments and error messages
with IEEE floats; torch's worker threads stay flushed for the whole fit.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os

import torch

_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@functools.cache
def _gomp_parallel():
    """libgomp's GOMP_parallel(fn, data, num_threads, flags), from torch's own copy, or None."""
    bundled = os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1")
    for path in (bundled, "libgomp.so.1"):
        try:
            fn = ctypes.CDLL(path).GOMP_parallel
        except (OSError, AttributeError):
            continue
        fn.argtypes = [_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        fn.restype = None
        return fn
    return None


def set_flush_denormal(on: bool) -> bool:
    """FTZ/DAZ on (or off) for the calling thread and torch's intra-op threads.

    -> True when every thread was reached; False when the CPU has no such flags or only the
    calling thread could be set (an OpenMP runtime other than libgomp).
    """
    if not torch.set_flush_denormal(on):
        return False
    parallel = _gomp_parallel()
    if parallel is None:
        return False
    each_thread = _CALLBACK(lambda _: torch.set_flush_denormal(on))  # runs in every team thread
    parallel(each_thread, None, torch.get_num_threads(), 0)
    return True


@contextlib.contextmanager
def flush_denormals(on: bool = True, calling_thread: bool = True):
    """Denormals flushed to zero inside the block; off again after it (torch's default).

    ``calling_thread=False`` flushes torch's worker threads only: the calling thread is then
    flushed just inside ``steps_flushed`` blocks (how ``fit`` runs).
    """
    if not on:
        yield
        return
    set_flush_denormal(True)
    if not calling_thread:
        torch.set_flush_denormal(False)
    try:
        yield
    finally:
        set_flush_denormal(False)


@contextlib.contextmanager
def steps_flushed(on: bool = True):
    """The calling thread flushed inside the block (a step's torch computation), off after it."""
    if not on:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
