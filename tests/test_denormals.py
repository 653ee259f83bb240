"""Denormals flushed on every CPU thread while fit runs (training/denormals.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit import layers
from rnnkit.models import Sequential
from rnnkit.training import denormals
from rnnkit.training.callbacks import Callback

DENORMAL_BITS = 0x000AE398  # a float32 of about 1e-39: below the smallest normal, 1.18e-38


@pytest.fixture(autouse=True)
def unflushed_after(two_threads):
    """Two threads (the conftest fixture), and torch's default flags again after each test."""
    yield
    denormals.set_flush_denormal(False)


def surviving_denormals() -> int:
    """Denormals left by an op big enough to run on every intra-op thread."""
    # made from its bits: converting 1e-39 to float32 on a flushing thread would already give 0
    x = torch.full((1 << 21,), DENORMAL_BITS, dtype=torch.int32).view(torch.float32)
    return int((x * 1.0).count_nonzero())


def test_every_thread_flushes_and_unflushes(two_threads):
    assert surviving_denormals() == 1 << 21
    if not denormals.set_flush_denormal(True):
        pytest.skip("no FTZ/DAZ or no libgomp here: only the calling thread can be set")
    assert surviving_denormals() == 0  # the worker thread's half too, not just the caller's
    denormals.set_flush_denormal(False)
    assert surviving_denormals() == 1 << 21


def test_the_calling_thread_alone_leaves_the_workers_half(two_threads):
    """Why set_flush_denormal runs a parallel region: torch's own call reaches one thread."""
    assert surviving_denormals() == 1 << 21  # the worker threads exist (flags off) from here on
    if denormals._gomp_parallel() is None or not torch.set_flush_denormal(True):
        pytest.skip("no FTZ/DAZ or no libgomp here")
    assert 0 < surviving_denormals() < 1 << 21


def _model(**compile_args):
    model = Sequential([layers.LSTM(4), layers.Dense(1)])
    model.compile("rmsprop", "mse", **compile_args)
    return model


@pytest.mark.parametrize("flush", [True, False])
def test_fit_flushes_while_it_runs_and_restores(flush, two_threads, monkeypatch):
    seen = []
    real = denormals.set_flush_denormal
    monkeypatch.setattr(denormals, "set_flush_denormal", lambda on: seen.append(on) or real(on))
    model = _model(flush_denormals=flush)

    class Probe(Callback):  # reads the flags inside fit
        def on_epoch_end(self, epoch, logs=None):
            seen.append(surviving_denormals())

    x, y = np.random.rand(8, 5, 3).astype("float32"), np.random.rand(8, 1).astype("float32")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[Probe()])
    if flush:
        assert seen[0] is True and seen[-1] is False
        assert seen[1] == 0  # flushed inside fit, on every thread
    else:
        assert seen == [1 << 21]
    assert surviving_denormals() == 1 << 21  # torch's default again afterwards
