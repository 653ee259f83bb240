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


SMALLEST = 5e-324  # the smallest positive float64, a denormal: a flushing thread reads it as 0


def require_every_thread():
    if not denormals.set_flush_denormal(True):
        pytest.skip("no FTZ/DAZ or no libgomp here: only the calling thread can be set")
    denormals.set_flush_denormal(False)


def python_floats_are_ieee() -> bool:
    """Python's own arithmetic on the calling thread keeps denormals (no DAZ there)."""
    return SMALLEST * 1.0 > 0.0 and repr(SMALLEST) == "5e-324"


@pytest.mark.parametrize("flush", [True, False])
def test_fit_flushes_its_steps_on_every_thread_and_restores(flush, two_threads, monkeypatch):
    require_every_thread()
    model = _model(flush_denormals=flush)
    in_steps, in_callbacks = [], []
    train_step = model.train_step

    def probed_step(batch):  # reads the flags where the step computes
        in_steps.append(surviving_denormals())
        return train_step(batch)

    monkeypatch.setattr(model, "train_step", probed_step)

    class Probe(Callback):  # reads the flags where user code runs
        def on_train_batch_end(self, batch, logs=None):
            in_callbacks.append((python_floats_are_ieee(), surviving_denormals()))

    x, y = np.random.rand(8, 5, 3).astype("float32"), np.random.rand(8, 1).astype("float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[Probe()])
    assert in_steps == [0, 0] if flush else in_steps == [1 << 21] * 2
    assert all(ieee for ieee, _ in in_callbacks)  # callbacks never see flushed Python floats
    if flush:  # between steps the workers stay flushed (half the op), the calling thread does not
        assert all(0 < left < 1 << 21 for _, left in in_callbacks)
    assert surviving_denormals() == 1 << 21 and python_floats_are_ieee()  # default afterwards


def test_fit_messages_print_denormal_arguments_exactly():
    """What broke CI once: a refusal formatted on a flushing thread printed 5e-324 as 0.0."""
    from rnnkit.errors import ConfigError
    x, y = np.random.rand(8, 5, 3).astype("float32"), np.random.rand(8, 1).astype("float32")
    with pytest.raises(ConfigError, match="got 5e-324"):
        _model().fit(x, y, batch_size=SMALLEST, verbose=0)


def test_evaluate_outside_fit_leaves_the_flags_alone(monkeypatch):
    model = _model()
    x, y = np.random.rand(8, 5, 3).astype("float32"), np.random.rand(8, 1).astype("float32")
    seen = []
    test_step = model.test_step
    monkeypatch.setattr(model, "test_step", lambda batch: seen.append(surviving_denormals())
                        or test_step(batch))
    model.evaluate(x, y, verbose=0)
    assert seen == [1 << 21]


def test_tbptt_steps_are_flushed_too(two_threads, monkeypatch):
    require_every_thread()
    model = Sequential([layers.LSTM(4, return_sequences=True), layers.Dense(1)])
    model.compile("rmsprop", "mse")
    seen = []
    train_step = model.train_step  # TBPTT windows run through the model's one train step
    monkeypatch.setattr(model, "train_step", lambda batch: seen.append(surviving_denormals())
                        or train_step(batch))
    x, y = np.random.rand(2, 12, 3).astype("float32"), np.random.rand(2, 12, 1).astype("float32")
    model.fit(x, y, tbptt=(4, 4), epochs=1, verbose=0)
    assert seen == [0, 0, 0]
