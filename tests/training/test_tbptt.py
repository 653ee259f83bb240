"""Truncated BPTT: the weights after an epoch equal a hand-written torch.nn loop that detaches
the state every k1 steps; the memory held for backward stays flat as the series grows."""

import numpy as np
import pytest
import torch

from helpers import CrashAfter, Sqrt
from rnnkit import constraints, layers, optimizers
from rnnkit.errors import ConfigError, ShapeError
from rnnkit.interop import to_torch
from rnnkit.models import Sequential
from rnnkit.training.tbptt import saved_memory

LR = 0.1


def _model(units=5):
    torch.manual_seed(0)
    model = Sequential([layers.GRU(units, return_sequences=True), layers.Dense(1)])
    model.build((None, None, 3))
    model.compile(optimizers.SGD(LR), "mse")
    return model


def _series(steps, batch=2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, steps, 3, generator=g)
    return x, x[..., :1].cumsum(1) * 0.1


def _torch_tbptt(model, x, y, k1, k2):
    """The same TBPTT(k1, k2) on torch.nn.GRU + nn.Linear with plain SGD."""
    gru = to_torch(model.layers[0])
    dense = torch.nn.Linear(5, 1)
    with torch.no_grad():
        dense.weight.copy_(model.layers[1].weight)
        dense.bias.copy_(model.layers[1].bias)
    params = [*gru.parameters(), *dense.parameters()]
    states = [torch.zeros(1, x.shape[0], 5)]  # the state at the start of each block
    for start in range(0, x.shape[1], k1):
        stop = min(start + k1, x.shape[1])
        begin = max(stop - k2, 0)
        h0 = states[max(len(states) - k2 // k1, 0)] if k2 > k1 else states[-1]
        out, h = gru(x[:, begin:stop], h0.detach())
        loss = ((dense(out[:, -(stop - start):]) - y[:, start:stop]) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= LR * g
        states.append(h.detach())
    return gru, dense


@pytest.mark.parametrize("k1, k2", [(6, 6), (4, 8)])
def test_weights_equal_a_hand_written_torch_loop(k1, k2):
    model = _model()
    x, y = _series(24)
    gru, dense = _torch_tbptt(model, x, y, k1, k2)
    model.fit(x, y, tbptt=(k1, k2), epochs=1, verbose=0)
    cell = model.layers[0].cell
    for ours, theirs in ((cell.weight_ih, gru.weight_ih_l0), (cell.weight_hh, gru.weight_hh_l0),
                         (cell.bias, gru.bias_ih_l0), (cell.bias_hh, gru.bias_hh_l0),
                         (model.layers[1].weight, dense.weight)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert not model.layers[0].stateful and model.layers[0].states is None  # restored


def test_truncation_changes_the_gradient():
    """TBPTT(6, 6) on 24 steps is not full BPTT with one update per 6 steps of data."""
    truncated, full = _model(), _model()
    x, y = _series(24)
    truncated.fit(x, y, tbptt=6, verbose=0)
    full.fit(x, y, tbptt=(6, 24), verbose=0)
    diff = (truncated.layers[0].cell.weight_hh - full.layers[0].cell.weight_hh).abs().max()
    assert diff > 1e-4


def _peak(steps, tbptt):
    model = _model()
    x, y = _series(steps)
    with saved_memory() as meter:
        if tbptt:
            model.fit(x, y, tbptt=tbptt, verbose=0)
        else:
            model.fit(x.numpy(), y.numpy(), batch_size=2, shuffle=False, verbose=0)
    return meter.peak


def test_memory_held_for_backward_is_flat_with_tbptt():
    short, long = _peak(100, (10, 10)), _peak(400, (10, 10))
    assert short == long
    full_short, full_long = _peak(100, None), _peak(400, None)
    assert full_long > 3.5 * full_short
    assert long < full_short / 5


def test_history_reports_the_loss_per_epoch():
    model = _model()
    x, y = _series(40)
    history = model.fit(x, y, tbptt=8, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_tbptt_errors():
    model = _model()
    x, y = _series(12)
    with pytest.raises(ConfigError, match=r"k2 a multiple of k1, got \(4, 6\)"):
        model.fit(x, y, tbptt=(4, 6), verbose=0)
    with pytest.raises(ShapeError, match=r"expected x \(B, T, I\) and per-step targets"):
        model.fit(x, y[:, :5], tbptt=4, verbose=0)
    last = Sequential([layers.GRU(3), layers.Dense(1)])
    last.compile("sgd", "mse")
    with pytest.raises(ShapeError, match=r"must output a sequence .* return_sequences=True"):
        last.fit(x, y, tbptt=4, verbose=0)
    both = Sequential([layers.Bidirectional(layers.GRU(3, return_sequences=True)),
                       layers.Dense(1)])
    both.compile("sgd", "mse")
    with pytest.raises(ConfigError, match=r"runs backwards .* cannot be carried"):
        both.fit(x, y, tbptt=4, verbose=0)
    dense = Sequential([layers.Dense(1)])
    dense.compile("sgd", "mse")
    with pytest.raises(ConfigError, match=r"has no recurrent layer"):
        dense.fit(np.zeros((2, 4, 3), "float32"), np.zeros((2, 4, 1), "float32"), tbptt=2,
                  verbose=0)


# -- TBPTT is fit's loop: one train step, the guard, precision, checkpoints --------------------
def _dropout_model(seed=0):
    torch.manual_seed(seed)
    model = Sequential([layers.GRU(5, return_sequences=True, dropout=0.2), layers.Dense(1)])
    model.build((None, None, 3))
    model.compile(optimizers.SGD(LR), "mse")
    return model


@pytest.mark.parametrize("weights", [None, "per series", "per step"])
def test_a_window_as_long_as_the_series_is_plain_fit(weights):
    """TBPTT(T) on series of T steps is fit on the B series as one batch: the same weights,
    bit for bit (dropout masks and sample weights included), epoch after epoch."""
    x, y = _series(16, batch=3)
    sample_weight = {None: None, "per series": torch.tensor([1.0, 0.5, 2.0]),
                     "per step": (torch.arange(16) % 3 != 0).float().expand(3, 16)}[weights]
    windowed, plain = _dropout_model(), _dropout_model()
    torch.manual_seed(4)
    h1 = windowed.fit(x, y, tbptt=16, epochs=3, verbose=0, sample_weight=sample_weight)
    torch.manual_seed(4)
    h2 = plain.fit(x, y, batch_size=3, shuffle=False, epochs=3, verbose=0,
                   sample_weight=sample_weight)
    assert all(torch.equal(p, q) for p, q in zip(windowed.parameters(), plain.parameters()))
    assert h1.history == h2.history


def test_the_nan_guard_rolls_back_a_window():
    from rnnkit.callbacks import NonFiniteWarning

    torch.manual_seed(0)
    model = Sequential([Sqrt(input_shape=(None, 3)), layers.GRU(4, return_sequences=True),
                        layers.Dense(1)])
    model.compile(optimizers.SGD(LR), "mse")
    x, y = _series(24)
    x = x.abs()
    x[0, 13, 1] = -1.0  # window 2 of TBPTT(6): steps 12..17
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(NonFiniteWarning, match=r"non-finite loss at epoch 1, batch 2: rolled back"
                                              r".*learning rate 0\.1 -> 0\.05"):
        history = model.fit(x, y, tbptt=6, verbose=0)
    (event,) = history.nan_events
    assert (event.epoch, event.batch, event.what) == (0, 2, "loss")
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert not all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # trained on
    assert np.isfinite(history.history["loss"][0])


def test_bf16_runs_under_tbptt():
    x, y = _series(24)
    full, low = _model(), _model()
    low.compile(optimizers.SGD(LR), "mse", precision="bf16")
    start = [p.detach().clone() for p in full.parameters()]
    h32 = full.fit(x, y, tbptt=(6, 12), epochs=2, verbose=0)
    h16 = low.fit(x, y, tbptt=(6, 12), epochs=2, verbose=0)
    assert h16.history["loss"] != h32.history["loss"]  # autocast ran
    for p0, p32, p16 in zip(start, full.parameters(), low.parameters()):
        moved = (p32 - p0).abs().max()
        assert (p16 - p32).abs().max() <= 5e-2 * moved + 1e-6  # TOLERANCES["bf16"]["gradients"]


def test_a_crashed_tbptt_run_resumes_to_the_same_weights(tmp_path):
    """Killed after window 5 of 8 in the second epoch (k2 = 2·k1: two carried states saved)."""
    x, y = _series(32, batch=3)
    args = dict(tbptt=(4, 8), epochs=3, verbose=0, validation_data=(x[:2], y[:2]))
    straight = _dropout_model()
    torch.manual_seed(1)
    straight.fit(x, y, **args)
    crashed = _dropout_model()
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(x, y, checkpoint_dir=tmp_path / "ck", checkpoint_every=1,
                    callbacks=[CrashAfter(13)], **args)
    resumed = _dropout_model(seed=9)  # other initial weights: all come from the checkpoint
    history = resumed.fit(x, y, resume=tmp_path / "ck", **args)
    assert all(torch.equal(p, q) for p, q in zip(straight.parameters(), resumed.parameters()))
    assert history.history == straight.history.history
    assert not resumed.layers[0].stateful and resumed.layers[0].states is None


def test_constraints_hold_after_every_tbptt_window():
    """Keras applies a constraint after every optimizer step: under TBPTT that is every window."""
    from rnnkit.training.callbacks import Callback

    torch.manual_seed(0)
    gru = layers.GRU(5, return_sequences=True, kernel_constraint="non_neg",
                     recurrent_constraint=constraints.MaxNorm(0.3))
    model = Sequential([gru, layers.Dense(1)])
    model.build((None, None, 3))
    model.compile(optimizers.SGD(1.0), "mse")
    seen = []

    class Watch(Callback):
        def on_train_batch_end(self, step, logs=None):
            # torch's (G·H, H) is Keras's (H, G·H) transposed: Keras's axis 0 is a row here
            w_ih, w_hh = gru.cell.weight_ih.detach(), gru.cell.weight_hh.detach()
            seen.append((float(w_ih.min()), float(w_hh.norm(dim=1).max())))

    x, y = _series(12)
    model.fit(x.numpy(), y.numpy(), tbptt=(4, 4), epochs=2, verbose=0, callbacks=[Watch()])
    assert len(seen) == 6  # 3 windows a pass, 2 passes
    assert all(low >= 0 and norm <= 0.3 + 1e-6 for low, norm in seen), seen


def test_tbptt_refuses_what_it_cannot_cut():
    model = _model()
    x, y = _series(12)
    with pytest.raises(ConfigError, match=r"tbptt cuts arrays .* neither a generator nor "
                                          r"steps_per_epoch"):
        model.fit(x, y, tbptt=4, steps_per_epoch=2, verbose=0)
