"""The compiled kernel's register tiles (``ops.tile_forward/tile_backward/tile_infer``: SimpleRNN,
LSTM and GRU with one lag, up to ``compiled.TILE_MAX_UNITS`` units) against the reference loop.

Outputs, final states and the gradients of input, initial state and every parameter under random
upstream gradients into all outputs; float64 to 1e-10, float32 to 1e-5; hidden sizes on both sides
of TILE_MAX_UNITS and of the vector width (1, 7, 16, 33, 128 on tiles; 129 on the BLAS loops), batches
that fill a tile block and leave a remainder, masks, reverse, dilation, B=1, T=1, saturating inputs,
two threads, float64 gradcheck of the tiles' autograd Function, and the forward-only tile loop. The
build's vector flags (and its AVX2 build of the tiles): test_compiled_build.py.
"""

from __future__ import annotations

import pytest
import torch

from helpers import CASES, TOL, gradcheck_scan, make_mask, run_with_grads
from rnnkit.cells import GRUCell, LSTMCell, SimpleCell
from rnnkit.engine import compiled, scan

INPUTS = 5
TILE_CELLS = {
    "tanh": lambda h: SimpleCell(INPUTS, h),
    "sigmoid": lambda h: SimpleCell(INPUTS, h, activation="sigmoid"),
    "relu_nobias": lambda h: SimpleCell(INPUTS, h, activation="relu", bias=False),
    "lstm": lambda h: LSTMCell(INPUTS, h),
    "lstm_relu_nobias": lambda h: LSTMCell(INPUTS, h, activation="relu", bias=False),
    "gru": lambda h: GRUCell(INPUTS, h),
    "gru_nobias": lambda h: GRUCell(INPUTS, h, bias=False),
}
# 1 and 7: one short group; 16: whole AVX-512 float groups; 33: groups and a tail of one;
# 128 the largest on tiles; 129 the first on the BLAS loops
UNITS = [1, 7, 16, 33, compiled.TILE_MAX_UNITS, compiled.TILE_MAX_UNITS + 1]
# the scan options the tiles take (one lag, no recurrent mask); lags and recurrent masks stay on
# the BLAS loops (test_compiled_kernel)
TILE_CASES = ["plain", "mask", "packed", "reverse_mask", "dilation", "dilation_mask", "dilation_packed",
              "batch1", "steps1"]


def setup(cell_name: str, units: int, dtype, opts: dict, batch: int = 13, steps: int = 7,
          scale: float = 1.0):
    """A seeded cell, inputs and scan options; B=13 fills a block of tile rows and leaves a rest."""
    opts = dict(opts)
    torch.manual_seed(0)
    cell = TILE_CELLS[cell_name](units).to(dtype)
    batch, steps = opts.pop("batch", batch), opts.pop("steps", steps)
    x = (scale * torch.randn(batch, steps, INPUTS, dtype=dtype)).requires_grad_()
    state = tuple(torch.randn(batch, n, dtype=dtype, requires_grad=True) for n in cell.state_sizes())
    if "mask" in opts:
        opts["mask"] = tile_mask(opts["mask"], batch, steps)
    return cell, x, state, opts


def tile_mask(kind: str, batch: int, steps: int) -> torch.Tensor:
    """CASES' masks for any batch: "random"; "packed" post-padding with lengths from 1 to T (the
    first row whole); "packed_long" lengths over T/2, so every dilated sub-row keeps a real step."""
    if kind == "random":
        return make_mask(kind, batch, steps)
    low = 1 if kind == "packed" else steps // 2 + 1
    lengths = torch.randint(low, steps + 1, (batch,))
    lengths[0] = steps
    return torch.arange(steps) < lengths[:, None]


@pytest.fixture
def tiles_taken(monkeypatch):
    """How many training runs went to the tiles."""
    calls = []
    real = compiled.tiled
    monkeypatch.setattr(compiled, "tiled", lambda *a: calls.append(1) or real(*a))
    return calls


def assert_tiles_match_reference(cell, x, state, opts, dtype, tiles_taken, on_tiles=True):
    expected, _ = run_with_grads(cell, x, state, opts, "reference")
    got, kernel = run_with_grads(cell, x, state, opts, "compiled")
    assert kernel == "compiled"
    assert bool(tiles_taken) == on_tiles
    tol = TOL[dtype]
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(g, e, atol=tol, rtol=tol, msg=lambda m, i=i: f"tensor {i}: {m}")


@pytest.mark.parametrize("units", UNITS)
@pytest.mark.parametrize("cell_name", list(TILE_CELLS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_tiles_match_reference_across_widths(dtype, cell_name, units, tiles_taken):
    cell, x, state, opts = setup(cell_name, units, dtype, {"mask": "random"})
    assert_tiles_match_reference(cell, x, state, opts, dtype, tiles_taken,
                                 on_tiles=units <= compiled.TILE_MAX_UNITS)


@pytest.mark.parametrize("case", TILE_CASES)
@pytest.mark.parametrize("cell_name", ["tanh", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_tiles_match_reference_in_every_case(dtype, cell_name, case, tiles_taken):
    cell, x, state, opts = setup(cell_name, 33, dtype, CASES[case])
    assert_tiles_match_reference(cell, x, state, opts, dtype, tiles_taken)


def outputs_and_grads(cell, x, state, opts, backend, ups):
    """Outputs, final state, and the gradients of x, the initial state and every parameter under
    the upstream gradients ups (cast to the run's dtype)."""
    out = scan(cell, x, state, backend=backend, **opts)
    loss = sum((t * u.to(t.dtype)).sum() for t, u in zip((out.outputs, *out.state), ups, strict=True))
    return [out.outputs, *out.state, *torch.autograd.grad(loss, [x, *state, *cell.parameters()])]


@pytest.mark.parametrize("cell_name", ["tanh", "sigmoid", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_tiles_saturated_gates(dtype, cell_name, tiles_taken):
    """Inputs 30 times larger: the vector exp's clamps and sigmoid's reciprocal at their ends.

    In float32 the gradients' sums of products of inputs near 30 cancel, so float32 rounding alone
    (the reference loop's as much as the tiles') leaves errors near 1e-4 in small entries: float32
    runs are held to the float64 reference loop, within 1e-5 of each tensor's largest entry."""
    cell, x, state, opts = setup(cell_name, 20, torch.float64, {"mask": "random"}, scale=30.0)
    out = scan(cell, x, state, backend="reference", **opts)
    ups = [torch.randn_like(t) for t in (out.outputs, *out.state)]  # the same ones for both runs
    expected = outputs_and_grads(cell, x, state, opts, "reference", ups)
    if dtype == torch.float32:
        cell = cell.float()
        x = x.detach().float().requires_grad_()
        state = tuple(s.detach().float().requires_grad_() for s in state)
    got = outputs_and_grads(cell, x, state, opts, "compiled", ups)
    assert tiles_taken
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        tol = TOL[dtype] * (1.0 if dtype == torch.float64 else e.abs().max().item())
        torch.testing.assert_close(g.double(), e, atol=tol, rtol=TOL[dtype],
                                   msg=lambda m, i=i: f"tensor {i}: {m}")


@pytest.mark.parametrize("train", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("cell_name", ["tanh", "sigmoid", "relu_nobias", "lstm", "lstm_relu_nobias",
                                       "gru"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_tiles_propagate_nan_as_the_reference(dtype, cell_name, train):
    """A NaN input gives NaN where the reference loop's are (the vector clamps and relu keep NaN),
    so the trainer's NaN guard and TerminateOnNaN see it."""
    cell, x, state, opts = setup(cell_name, 20, dtype, {})
    x = x.detach().clone()
    x[2, 3, 1] = float("nan")
    with torch.set_grad_enabled(train):
        got = scan(cell, x.requires_grad_(train), state, backend="compiled")
        expected = scan(cell, x, state, backend="reference")
    for g, e in zip((got.outputs, *got.state), (expected.outputs, *expected.state), strict=True):
        assert e.isnan().any()
        assert torch.equal(g.isnan(), e.isnan())


@pytest.mark.parametrize("cell_name", ["tanh", "lstm", "gru"])
def test_tiles_over_two_threads(cell_name, two_threads, tiles_taken):
    """B=29 on two threads: each thread's rows in blocks of tile rows, and a remainder; the threads'
    weight-gradient sums added up."""
    cell, x, state, opts = setup(cell_name, 33, torch.float64, {"mask": "random"}, batch=29)
    assert_tiles_match_reference(cell, x, state, opts, torch.float64, tiles_taken)


@pytest.mark.parametrize("use", ["outputs", "h", "c", "outputs_sum"])
@pytest.mark.parametrize("cell_name", ["tanh", "lstm", "gru"])
def test_tiles_gradient_of_one_output_only(cell_name, use, tiles_taken):
    """Outputs the loss does not use reach backward as None; outputs.sum() sends an expanded
    (stride-0) gradient, which the backward reads in place."""
    if use == "c" and cell_name != "lstm":
        pytest.skip("only the LSTM has a cell state")
    cell, x, state, opts = setup(cell_name, 7, torch.float64, {"mask": "random"}, batch=3, steps=5)
    grads = {}
    for backend in ("reference", "compiled"):
        out = scan(cell, x, state, backend=backend, **opts)
        picked = {"outputs": out.outputs ** 2, "outputs_sum": out.outputs, "h": out.state[0] ** 2,
                  "c": out.state[-1] ** 2}[use]
        grads[backend] = torch.autograd.grad(picked.sum(), [x, *state, *cell.parameters()],
                                             allow_unused=True, materialize_grads=True)
    assert tiles_taken
    for got, expected in zip(grads["compiled"], grads["reference"], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


GRADCHECK = [("tanh", 3, {"mask": "random"}), ("relu_nobias", 17, {"reverse": True}),
             ("lstm", 3, {"mask": "random"}), ("lstm_relu_nobias", 17, {"mask": "random"}),
             ("gru", 3, {"mask": "random", "reverse": True}), ("gru_nobias", 17, {"mask": "random"})]


@pytest.mark.parametrize("cell_name,units,opts", GRADCHECK,
                         ids=[f"{c}-{h}" for c, h, _ in GRADCHECK])
def test_tiles_gradcheck(cell_name, units, opts, tiles_taken):
    """float64 gradcheck of CompiledTiles (through scan): input, initial state and every parameter."""
    torch.manual_seed(0)
    cell = TILE_CELLS[cell_name](units).double()
    assert gradcheck_scan(cell, "compiled", dict(opts))
    assert tiles_taken


@pytest.mark.parametrize("case", ["mask", "reverse_mask", "dilation_packed", "batch1", "steps1"])
@pytest.mark.parametrize("units", UNITS)
@pytest.mark.parametrize("cell_name", ["tanh", "lstm", "gru_nobias"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_tile_inference_matches_reference(dtype, cell_name, units, case, monkeypatch):
    """Under no_grad the standard cells up to TILE_MAX_UNITS take ops.tile_infer, above it ops.infer."""
    cell, x, state, opts = setup(cell_name, units, dtype, CASES[case])
    fits = []
    real = compiled.tiles_fit
    monkeypatch.setattr(compiled, "tiles_fit", lambda c: fits.append(real(c)) or fits[-1])
    with torch.no_grad():
        got = scan(cell, x, state, backend="compiled", **opts)
        expected = scan(cell, x, state, backend="reference", **opts)
    assert fits and all(f == (units <= compiled.TILE_MAX_UNITS) for f in fits)
    tol = TOL[dtype]
    for g, e in zip((got.outputs, *got.state), (expected.outputs, *expected.state), strict=True):
        torch.testing.assert_close(g, e, atol=tol, rtol=tol)


def test_tiles_decline_lags_and_recurrent_masks(tiles_taken):
    """What the tiles do not run (lags, recurrent masks, subclasses) goes to the BLAS loops."""
    x = torch.randn(2, 4, INPUTS)
    scan(SimpleCell(INPUTS, 4, lags=(1, 2)), x, backend="compiled")
    scan(GRUCell(INPUTS, 4), x, recurrent_mask=torch.ones(2, 4), backend="compiled")
    scan(GRUCell(INPUTS, 4, reset_after=False), x, backend="compiled")
    scan(LSTMCell(INPUTS, 4, peephole="diagonal"), x, backend="compiled")
    assert not tiles_taken
    scan(GRUCell(INPUTS, 4), x, backend="compiled")
    assert tiles_taken


