"""Streaming: engine.step and Layer.step, one step at a time, against the whole-sequence run.

Every cell family (lags (1,)) on every kernel that runs it, float64 to 1e-10 and float32 to 1e-5,
with masks, B=1 and T=1: stepping along a sequence gives the outputs and final state of ``scan``.
"""

from __future__ import annotations

import pytest
import torch

from helpers import CELLS, NATIVE_CELLS, TOL, input_size, make_mask
from rnnkit import layers
from rnnkit.cells import LSTMCell, SimpleCell
from rnnkit.engine import ScanSpec, kernels, scan, step, stepper
from rnnkit.errors import ConfigError, ShapeError

STEP_CELLS = list(CELLS)
BACKENDS = ["auto", "reference", "fused", "compiled", "native"]


def runs(cell, backend: str, x) -> bool:
    if backend == "auto":
        return True
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=x.device, dtype=x.dtype,
                    batch=x.shape[0], steps=1)
    return kernels()[backend].supports(cell, spec)[0]


def stepped(cell, x, state, mask, backend):
    """(outputs (B, T, H), final state) from one step call per t."""
    ys = []
    for t in range(x.shape[1]):
        y, state, _ = step(cell, x[:, t], state, None if mask is None else mask[:, t], backend)
        ys.append(y)
    return torch.stack(ys, dim=1), state


# float64 everywhere; float32 with a mask at B=3, T=6; B=1 and T=1 unmasked
CASES = [(torch.float64, (3, 6), False), (torch.float64, (3, 6), True),
         (torch.float32, (3, 6), True), (torch.float64, (1, 6), False),
         (torch.float64, (3, 1), False)]


@pytest.mark.parametrize("dtype,shape,masked", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell_name", STEP_CELLS)
def test_steps_equal_the_whole_sequence(cell_name, backend, dtype, shape, masked):
    torch.manual_seed(0)
    cell = CELLS[cell_name]((1,)).to(dtype)
    batch, steps = shape
    x = torch.randn(batch, steps, input_size(cell), dtype=dtype)
    if not runs(cell, backend, x):
        pytest.skip(f"{backend} does not run {cell_name}")
    state = tuple(torch.randn(batch, n, dtype=dtype) for n in cell.state_sizes())
    mask = make_mask("random", batch, steps) if masked else None
    expected = scan(cell, x, state, mask=mask, backend="reference")
    ys, final = stepped(cell, x, state, mask, backend)
    tol = TOL[dtype]
    for g, e in zip((ys, *final), (expected.outputs, *expected.state), strict=True):
        torch.testing.assert_close(g, e, atol=tol, rtol=tol)


@pytest.mark.parametrize("cell_name", STEP_CELLS)
def test_auto_steps_on_torchs_cell_op_where_native_runs(cell_name):
    cell = CELLS[cell_name]((1,))
    out = step(cell, torch.randn(2, input_size(cell)))
    assert out.kernel == ("native" if cell_name in NATIVE_CELLS else "reference")


LAYERS = {
    "simple": lambda: layers.SimpleRNN(5, return_sequences=True),
    "lstm": lambda: layers.LSTM(5, return_sequences=True),
    "gru": lambda: layers.GRU(5, return_sequences=True),
    "gru_reset_before": lambda: layers.GRU(5, reset_after=False, return_sequences=True),
    "peephole": lambda: layers.LSTM(5, peephole=True, return_sequences=True),
    "readout": lambda: layers.SimpleRNN(5, output_units=2, shortcut=True, return_sequences=True),
    "feedback": lambda: layers.SimpleRNN(5, output_units=2, feedback=True, return_sequences=True),
    "learned_start": lambda: layers.GRU(5, learn_initial_state=True, return_sequences=True),
}


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_layer_steps_equal_the_layer_call(kind, masked):
    torch.manual_seed(0)
    layer = LAYERS[kind]()
    # a step has no previous output to repeat on a masked row: it gives zeros there, as the
    # whole-sequence call does with zero_output_for_mask=True (the caller holds its last y)
    layer.zero_output_for_mask = masked
    x = torch.randn(3, 7, 4, dtype=torch.float64)
    mask = make_mask("random", 3, 7) if masked else None
    layer.ensure_built(tuple(x.shape))
    layer.double()
    with torch.no_grad():
        for p in layer.parameters():  # learned start states and zero-initialized weights too
            p.uniform_(-0.5, 0.5)
        expected = layer(x, mask=mask)
        states, ys = None, []
        for t in range(x.shape[1]):
            y, states = layer.step(x[:, t], states, mask=None if mask is None else mask[:, t])
            ys.append(y)
    torch.testing.assert_close(torch.stack(ys, dim=1), expected, atol=1e-10, rtol=1e-10)


def test_a_stateful_layer_carries_its_states_between_steps():
    layer = layers.LSTM(4, stateful=True, return_sequences=True)
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        expected = layer(x)
        layer.reset_states()
        ys = [layer.step(x[:, t])[0] for t in range(5)]
    torch.testing.assert_close(torch.stack(ys, dim=1), expected, atol=1e-6, rtol=1e-6)


def test_step_refusals_name_the_problem():
    with pytest.raises(ConfigError, match=r"lags=\(1, 2\) needs its last 2 states"):
        step(SimpleCell(3, 4, lags=(1, 2)), torch.randn(2, 3))
    with pytest.raises(ShapeError, match=r"expected x_t of shape \(B, I\)"):
        step(LSTMCell(3, 4), torch.randn(2, 1, 3))
    with pytest.raises(ShapeError, match=r"mask must be \(B,\) = \(2,\)"):
        step(LSTMCell(3, 4), torch.randn(2, 3), mask=torch.ones(2, 1, dtype=torch.bool))
    with pytest.raises(ConfigError, match="go_backwards or dilation"):
        layers.LSTM(4, go_backwards=True).step(torch.randn(2, 3))
    with pytest.raises(ShapeError, match="expected x_t of shape"):
        layers.GRU(4).step(torch.randn(2, 5, 3))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_the_bound_stepper_equals_step(kind):
    torch.manual_seed(0)
    layer = LAYERS[kind]()
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        expected = layer(x)
        fn, states, ys = layer.stepper(), None, []
        for t in range(5):
            y, states = fn(x[:, t], states)
            ys.append(y)
    torch.testing.assert_close(torch.stack(ys, dim=1), expected, atol=1e-6, rtol=1e-6)
    if kind in ("simple", "lstm", "gru"):
        assert fn.kernel == layer.last_kernel == "native"  # one call of torch's cell op
    elif kind in ("gru_reset_before", "peephole"):
        assert fn.kernel == layer.last_kernel == "reference"  # the engine's bound cell step
    else:
        assert fn.__name__ == "<lambda>"  # readout, feedback, learned start: the layer's step


def test_stepper_follows_in_place_weight_updates_and_needs_a_built_layer():
    layer = layers.GRU(3)
    with pytest.raises(Exception, match="build the layer first"):
        layer.stepper()
    layer.ensure_built((1, 1, 2))
    fn = layer.stepper()
    x = torch.randn(1, 2)
    with torch.no_grad():
        before = fn(x)[0]
        layer.cell.weight_ih.mul_(2)
        torch.testing.assert_close(fn(x)[0], layer.step(x)[0])
    assert not torch.equal(before, fn(x)[0])
    assert stepper(LSTMCell(2, 3)).kernel == "native"
    assert stepper(LSTMCell(2, 3, peephole=True)).kernel == "reference"
    assert stepper(LSTMCell(2, 3), backend="compiled").kernel == "compiled"
