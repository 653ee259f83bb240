"""Every fast kernel against the reference loop: outputs, final states and every gradient.

Random seeded weights, random upstream gradients into all outputs (final states included),
float64 to 1e-10 and float32 to 1e-5; masks, reverse, dilation, lags, recurrent masks, B=1, T=1.
"""

from __future__ import annotations

import pytest
import torch

from helpers import (
    CASES,
    CELLS,
    NATIVE_CELLS,
    PARALLEL_CELLS,
    TOL,
    assert_all_close,
    gradcheck_scan,
    input_size,
    run_with_grads,
    saved_bytes,
    setup,
)
from rnnkit.cells import GRUCell, LinearCell, LSTMCell, SimpleCell
from rnnkit.engine import native, scan
from rnnkit.engine.fused import block_steps


def assert_matches_reference(cell_name, case, backend, dtype):
    cell, x, state, opts = setup(cell_name, case, dtype)
    expected, _ = run_with_grads(cell, x, state, opts, "reference")
    got, kernel = run_with_grads(cell, x, state, opts, backend)
    assert kernel == backend
    assert_all_close(got, expected, TOL[dtype])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_fused_matches_reference_float64(cell_name, case):
    assert_matches_reference(cell_name, case, "fused", torch.float64)


@pytest.mark.parametrize("case", ["plain", "mask", "lags_mask", "rmask"])
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_fused_matches_reference_float32(cell_name, case):
    assert_matches_reference(cell_name, case, "fused", torch.float32)


@pytest.fixture
def packed_on_cpu(monkeypatch):
    """The packed-sequence path, which the native kernel takes on GPU only, run on CPU."""
    monkeypatch.setattr(native, "PACKED_ON_CPU", True)


@pytest.mark.parametrize("case", ["plain", "packed", "dilation", "dilation_packed", "batch1",
                                  "steps1"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell_name", NATIVE_CELLS)
def test_native_matches_reference(cell_name, case, dtype, packed_on_cpu):
    assert_matches_reference(cell_name, case, "native", dtype)


def test_native_reverse_without_mask():
    cell, x, state, _ = setup("lstm", "plain", torch.float64)
    opts = {"reverse": True}
    expected, _ = run_with_grads(cell, x, state, opts, "reference")
    got, _ = run_with_grads(cell, x, state, opts, "native")
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("case", ["plain", "mask", "packed", "reverse_mask", "dilation_mask",
                                  "lags", "lags_mask", "lags_skip_packed", "batch1", "steps1"])
@pytest.mark.parametrize("cell_name", PARALLEL_CELLS)
def test_parallel_matches_reference(cell_name, case):
    assert_matches_reference(cell_name, case, "parallel", torch.float64)


def test_parallel_long_sequence_float32():
    torch.manual_seed(0)
    cell = LinearCell(3, 4)
    with torch.no_grad():
        cell.weight_hh.mul_(0.5)  # a stable system, as a long linear recurrence must be
    x = torch.randn(2, 300, 3)
    ref = scan(cell, x, backend="reference")
    par = scan(cell, x, backend="parallel")
    torch.testing.assert_close(par.outputs, ref.outputs, atol=1e-5, rtol=1e-5)


# -- gradcheck: every custom autograd.Function, float64, tiny sizes --------------------------------
GRADCHECK = [
    ("tanh", {"mask": "random", "lags": (1, 2)}),
    ("elu", {"rmask": True}),
    ("peephole_full", {"mask": "random"}),
    ("peephole_diag", {"lags": (1, 2)}),
    ("coupled", {"rmask": True}),
    ("gru", {"mask": "random", "lags": (1, 2)}),
    ("gru_reset_before", {"mask": "random", "lags": (1, 2)}),
    ("feedback_shortcut", {"mask": "random", "lags": (1, 2)}),
    ("linear", {"mask": "random", "lags": (1, 2), "backend": "parallel"}),
]


@pytest.mark.parametrize("cell_name,opts", GRADCHECK, ids=[c for c, _ in GRADCHECK])
def test_gradcheck(cell_name, opts):
    opts = dict(opts)
    backend = opts.pop("backend", "fused")
    torch.manual_seed(0)
    cell = CELLS[cell_name](opts.pop("lags", (1,))).double()
    assert gradcheck_scan(cell, backend, opts)


def test_fused_double_backward_is_refused():
    cell = LSTMCell(3, 4, peephole="diagonal").double()
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = scan(cell, x, backend="fused")
    with pytest.raises(RuntimeError, match="first order only"):
        torch.autograd.grad(out.outputs.sum(), x, create_graph=True)


# -- the fused backward in blocks of steps, and what it keeps ----------------------------------------
@pytest.mark.parametrize("case", ["plain", "lags_mask", "rmask_mask"])
@pytest.mark.parametrize("cell_name", ["tanh", "elu", "peephole_diag", "coupled", "lstm_hard_sigmoid",
                                       "gru", "gru_reset_before", "feedback_shortcut"])
def test_fused_backward_blocks_match_reference(cell_name, case, monkeypatch):
    # T=22: blocks of 3 steps and a last one of 1, across which dh and the carried dc, do pass
    assert block_steps(22) == 3
    monkeypatch.setitem(CASES, "blocks", {**CASES[case], "steps": 22})
    assert_matches_reference(cell_name, "blocks", "fused", torch.float64)




@pytest.mark.parametrize("cell", [LSTMCell(3, 4), LSTMCell(3, 4, peephole="full"),
                                  LSTMCell(3, 4, coupled=True), GRUCell(3, 4),
                                  GRUCell(3, 4, reset_after=False), SimpleCell(3, 4)],
                         ids=["lstm", "peephole", "coupled", "gru", "gru_reset_before", "tanh"])
def test_fused_saves_no_more_than_reference(cell):
    # the memory target: pre-activations and act(c) are not kept where σ, tanh follow from outputs
    x = torch.randn(3, 40, 3, requires_grad=True)
    fused = saved_bytes(lambda: scan(cell, x, backend="fused"))
    assert fused <= saved_bytes(lambda: scan(cell, x, backend="reference"))


@pytest.mark.parametrize("cell_name", ["tanh", "peephole_diag", "gru", "gru_reset_before", "feedback"])
def test_fused_zero_steps_pass_the_state_through(cell_name):
    cell = CELLS[cell_name]((1, 2)).double()
    x = torch.randn(2, 0, input_size(cell), dtype=torch.float64)
    state = tuple(torch.randn(2, n, dtype=torch.float64, requires_grad=True) for n in cell.state_sizes())
    out = scan(cell, x, state, backend="fused")
    assert all(torch.equal(s, s0) for s, s0 in zip(out.state, state, strict=True))
    grads = torch.autograd.grad(sum((s * 3).sum() for s in out.state), state)
    assert all(torch.equal(g, torch.full_like(g, 3.0)) for g in grads)
