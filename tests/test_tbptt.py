"""Truncated BPTT: the weights after an epoch equal a hand-written torch.nn loop that detaches
the state every k1 steps; the memory held for backward stays flat as the series grows."""

import numpy as np
import pytest
import torch

from rnnkit import layers, optimizers
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
