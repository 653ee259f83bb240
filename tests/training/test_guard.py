"""fit's NaN guard: roll back, stop or raise on a non-finite loss, gradient or weight."""

import types

import numpy as np
import pytest
import torch

from helpers import Sqrt
from rnnkit import layers
from rnnkit.callbacks import NonFiniteError, NonFiniteWarning
from rnnkit.errors import ConfigError
from rnnkit.models import Sequential
from rnnkit.optimizers import SGD
from rnnkit.training import guard


def make_model(lr=0.1, seed=0):
    torch.manual_seed(seed)
    model = Sequential([Sqrt(input_shape=(4, 2)), layers.SimpleRNN(3), layers.Dense(1)])
    model.compile(SGD(lr), "mse")
    return model


def data(bad_batches=(2,), batch_size=4, n=16):
    """Positive inputs; the first sample of each batch in ``bad_batches`` has a negative entry."""
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(n, 4, 2))).astype("float32")
    for b in bad_batches:
        x[b * batch_size, 1, 0] = -1.0
    return x, rng.normal(size=(n, 1)).astype("float32")


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_rollback_skips_the_batch_and_lowers_the_learning_rate():
    x, y = data(bad_batches=(2,))
    model = make_model()
    with pytest.warns(NonFiniteWarning, match=r"non-finite loss at epoch 1, batch 2: rolled back"
                                              r".*learning rate 0\.1 -> 0\.05"):
        history = model.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    # the same training by hand: batches 0 and 1 at lr 0.1, batch 2 skipped, batch 3 at 0.05
    manual = make_model()
    manual.fit(x[:8], y[:8], batch_size=4, shuffle=False, verbose=0, on_nan=None)
    manual.optimizer.learning_rate = 0.05
    manual.fit(x[12:], y[12:], batch_size=4, shuffle=False, verbose=0, on_nan=None)
    assert all(torch.equal(p, q) for p, q in zip(params(model), params(manual)))
    assert model.optimizer.learning_rate == 0.05
    (event,) = history.nan_events
    assert (event.epoch, event.batch, event.what) == (0, 2, "loss")
    assert np.isfinite(history.history["loss"][0])


def test_stop_keeps_the_weights_from_before_the_batch():
    x, y = data(bad_batches=(1,))
    model = make_model()
    with pytest.warns(NonFiniteWarning, match="batch 1: restored the weights .* stopped"):
        history = model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, on_nan="stop")
    manual = make_model()
    manual.fit(x[:4], y[:4], batch_size=4, shuffle=False, verbose=0, on_nan=None)
    assert all(torch.equal(p, q) for p, q in zip(params(model), params(manual)))
    assert len(history.history["loss"]) == 1


def test_raise_names_epoch_and_batch_and_restores():
    x, y = data(bad_batches=(3,))
    model = make_model()
    with pytest.raises(NonFiniteError, match="non-finite loss at epoch 1, batch 3"):
        model.fit(x, y, batch_size=4, shuffle=False, verbose=0, on_nan="raise")
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_without_the_guard_nan_spreads_into_the_weights():
    x, y = data(bad_batches=(0,))
    model = make_model()
    model.fit(x, y, batch_size=4, shuffle=False, verbose=0, on_nan=None)
    assert not all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_a_diverging_run_gives_up_after_max_rollbacks():
    x, y = data(bad_batches=())
    model = make_model(lr=1e30)  # the first step is finite, every later one overflows
    with pytest.warns(NonFiniteWarning, match=r"non-finite (loss|gradient|weight)") as record:
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert len(record) == 4  # three rollbacks, then the fourth stops training
    assert "4 non-finite batches in a row" in str(record[-1].message)
    assert [e.batch for e in history.nan_events] == [1, 2, 3, 0]
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_the_doctor_findings_are_in_the_report():
    class Finding:
        check, severity = "non-finite-values", "error"
        message, suggestion = "x has a negative entry under sqrt.", "drop the row."

    seen = []

    def doctor(model, x, y, batch_size):
        seen.append(tuple(x.shape))
        return types.SimpleNamespace(findings=[Finding()])

    real = guard.register_doctor(doctor)
    try:
        x, y = data(bad_batches=(1,))
        with pytest.warns(NonFiniteWarning,
                          match=r"the doctor finds:\n  - \[non-finite-values\] x has"):
            make_model().fit(x, y, batch_size=4, shuffle=False, verbose=0)
    finally:
        guard.register_doctor(real)
    assert seen == [(4, 4, 2)]


def test_guard_arguments_are_checked():
    x, y = data(bad_batches=())
    model = make_model()
    with pytest.raises(ConfigError, match=r"on_nan must be one of .*got 'skip'"):
        model.fit(x, y, verbose=0, on_nan="skip")
    with pytest.raises(ConfigError, match=r"nan_lr_factor must be in \(0, 1\), got 2"):
        model.fit(x, y, verbose=0, nan_lr_factor=2)


def test_the_real_doctor_runs_on_the_bad_batch():
    x, y = data(bad_batches=(1,))
    with pytest.warns(NonFiniteWarning):
        history = make_model().fit(x, y, batch_size=4, shuffle=False, verbose=0, on_nan="stop")
    (event,) = history.nan_events
    assert not any(f.startswith("(the doctor could not run") for f in event.findings), event.findings
