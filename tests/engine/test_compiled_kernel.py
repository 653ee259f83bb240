"""The compiled (C++) kernel against the reference loop, and what it refuses.

Outputs, final states and the gradients of input, initial state and every parameter under random
upstream gradients into all outputs; float64 to 1e-10, float32 to 1e-5; masks, reverse, dilation,
lags, recurrent masks, B=1, T=1; every family: SimpleRNN (and teacher forcing), LSTM, GRU, output
feedback. The first test to run builds the extension (about a minute).
"""

from __future__ import annotations

import re

import pytest
import torch

from helpers import (
    CASES,
    CELLS,
    TOL,
    gradcheck_scan,
    run_with_grads,
    saved_bytes,
    setup,
)
from rnnkit import layers
from rnnkit.cells import FeedbackCell, GRUCell, LSTMCell, SimpleCell, TeacherForcedCell
from rnnkit.engine import BackendError, ScanSpec, compiled, gpu, scan

EXTRA_CELLS = {
    "sigmoid": lambda lags: SimpleCell(3, 4, activation="sigmoid", lags=lags),
    "lstm_relu": lambda lags: LSTMCell(3, 4, lags=lags, activation="relu"),
    "gru_reset_before_nobias": lambda lags: GRUCell(3, 4, lags=lags, reset_after=False, bias=False),
    # with CELLS' feedback (tanh, output linear) and feedback_shortcut (tanh, tanh, D x_t)
    "feedback_relu_sigmoid": lambda lags: FeedbackCell(3, 4, 2, activation="relu",
                                                       output_activation="sigmoid", lags=lags),
    "feedback_sigmoid_relu_nobias": lambda lags: FeedbackCell(
        3, 4, 2, activation="sigmoid", output_activation="relu", shortcut=True, bias=False,
        lags=lags),
    "feedback_linear": lambda lags: FeedbackCell(3, 4, 3, activation="linear",
                                                 output_activation="linear", lags=lags),
    "teacher_forced_relu": lambda lags: TeacherForcedCell(FeedbackCell(1, 4, 2, activation="relu",
                                                                       lags=lags)),
}
COMPILED_CELLS = ["tanh", "relu", "linear", "lstm", "lstm_nobias", "peephole_full", "peephole_diag",
                  "coupled", "coupled_peephole", "gru", "gru_nobias", "gru_reset_before",
                  "feedback", "feedback_shortcut", "teacher_forced", "teacher_forced_linear",
                  *EXTRA_CELLS]


def make_cell(name: str, lags):
    return (EXTRA_CELLS.get(name) or CELLS[name])(lags)


def assert_compiled_matches_reference(cell_name: str, case: str, dtype, monkeypatch) -> None:
    if cell_name in EXTRA_CELLS:  # helpers.setup builds its cells from CELLS
        monkeypatch.setitem(CELLS, cell_name, EXTRA_CELLS[cell_name])
    cell, x, state, opts = setup(cell_name, case, dtype)
    expected, _ = run_with_grads(cell, x, state, opts, "reference")
    got, kernel = run_with_grads(cell, x, state, opts, "compiled")
    assert kernel == "compiled"
    tol = TOL[dtype]
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(g, e, atol=tol, rtol=tol, msg=lambda m, i=i: f"tensor {i}: {m}")


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cell_name", COMPILED_CELLS)
def test_compiled_matches_reference_float64(cell_name, case, monkeypatch):
    assert_compiled_matches_reference(cell_name, case, torch.float64, monkeypatch)


@pytest.mark.parametrize("case", ["plain", "mask", "lags_mask", "rmask", "dilation_mask"])
@pytest.mark.parametrize("cell_name", COMPILED_CELLS)
def test_compiled_matches_reference_float32(cell_name, case, monkeypatch):
    assert_compiled_matches_reference(cell_name, case, torch.float32, monkeypatch)


THREADED_CELLS = ["tanh", "peephole_full", "peephole_diag", "coupled", "gru", "gru_reset_before",
                  "feedback_shortcut", "teacher_forced"]
THREADED_CASES = ["mask", "lags_mask", "rmask", "reverse_mask", "dilation"]


@pytest.mark.parametrize("case", THREADED_CASES)
@pytest.mark.parametrize("cell_name", THREADED_CELLS)
def test_rows_split_over_threads(cell_name, case, two_threads, monkeypatch):
    """B=20 on two threads: each thread runs the time loop on its own chunk of rows."""
    assert compiled.split_batch(make_cell(cell_name, (1,)).weight_hh)
    monkeypatch.setitem(CASES, "wide", {**CASES[case], "batch": 20})
    assert_compiled_matches_reference(cell_name, "wide", torch.float64, monkeypatch)


@pytest.mark.parametrize("case", THREADED_CASES)
@pytest.mark.parametrize("cell_name", THREADED_CELLS)
def test_rows_of_each_step_over_threads(cell_name, case, two_threads, monkeypatch):
    """A weight over the split budget: one time loop on all rows, its pointwise loops threaded
    (B=1100 rows is over their grain at H=4) and its GEMMs threaded by BLAS."""
    monkeypatch.setattr(compiled, "SPLIT_BATCH_MAX_BYTES", 0)
    assert not compiled.split_batch(make_cell(cell_name, (1,)).weight_hh)
    monkeypatch.setitem(CASES, "wide", {**CASES[case], "batch": 1100})
    assert_compiled_matches_reference(cell_name, "wide", torch.float64, monkeypatch)


@pytest.mark.parametrize("cell_name", ["tanh", "peephole_diag", "gru", "gru_reset_before",
                                       "feedback", "feedback_shortcut"])
def test_expanded_upstream_gradient(cell_name):
    """outputs.sum() sends an expanded (stride-0) gradient, which the backward reads in place."""
    cell = CELLS[cell_name]((1, 2)).double()
    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    grads = {}
    for backend in ("reference", "compiled"):
        out = scan(cell, x, backend=backend)
        grads[backend] = torch.autograd.grad(out.outputs.sum(), [x, *cell.parameters()])
    for got, expected in zip(grads["compiled"], grads["reference"], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("use", ["outputs", "h", "c"])
@pytest.mark.parametrize("cell_name", ["lstm", "peephole_full", "coupled_peephole"])
def test_lstm_gradient_of_one_output_only(cell_name, use):
    """Outputs the loss does not use reach backward as None (the in-place gate buffer among them)."""
    cell = CELLS[cell_name]((1, 2)).double()
    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(3, 5) > 0.3
    grads = {}
    for backend in ("reference", "compiled"):
        out = scan(cell, x, mask=mask, backend=backend)
        picked = {"outputs": out.outputs, "h": out.state[0], "c": out.state[1]}[use]
        grads[backend] = torch.autograd.grad((picked ** 2).sum(), [x, *cell.parameters()])
    for got, expected in zip(grads["compiled"], grads["reference"], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("use", ["outputs", "h", "o"])
@pytest.mark.parametrize("cell_name", ["feedback", "feedback_shortcut"])
def test_feedback_gradient_of_one_output_only(cell_name, use):
    """The outputs the loss does not use send zeros: o0 still gets its gradient through h."""
    cell = CELLS[cell_name]((1, 2)).double()
    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(3, n, dtype=torch.float64, requires_grad=True)
                  for n in cell.state_sizes())
    mask = torch.rand(3, 5) > 0.3
    grads = {}
    for backend in ("reference", "compiled"):
        out = scan(cell, x, state, mask=mask, backend=backend)
        picked = {"outputs": out.outputs, "h": out.state[0], "o": out.state[1]}[use]
        grads[backend] = torch.autograd.grad((picked ** 2).sum(), [x, *state, *cell.parameters()])
    assert grads["compiled"][2].abs().sum() > 0  # o0 reaches every output through Bᵒ
    for got, expected in zip(grads["compiled"], grads["reference"], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


# -- gradcheck of each autograd.Function, float64, tiny sizes -------------------------------------
GRADCHECK = [
    ("tanh", {"mask": "random", "lags": (1, 2)}),
    ("relu", {"rmask": True}),
    ("lstm", {"mask": "random", "lags": (1, 3)}),
    ("peephole_full", {"mask": "random"}),
    ("peephole_diag", {"lags": (1, 2), "rmask": True}),
    ("coupled_peephole", {"mask": "random"}),
    ("gru", {"mask": "random", "lags": (1, 2)}),
    ("gru_reset_before", {"mask": "random", "lags": (1, 2), "rmask": True}),
    ("feedback", {"mask": "random", "lags": (1, 2)}),
    ("feedback_shortcut", {"mask": "random", "rmask": True}),
    ("feedback_relu_sigmoid", {"lags": (1, 3), "rmask": True}),
    ("teacher_forced", {"mask": "random", "lags": (1, 2)}),
]


@pytest.mark.parametrize("cell_name,opts", GRADCHECK, ids=[c for c, _ in GRADCHECK])
def test_gradcheck(cell_name, opts):
    opts = dict(opts)
    cell = make_cell(cell_name, opts.pop("lags", (1,))).double()
    assert gradcheck_scan(cell, "compiled", opts)


def test_double_backward_is_refused():
    cell = GRUCell(3, 4, reset_after=False).double()
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = scan(cell, x, backend="compiled")
    with pytest.raises(RuntimeError, match="first order only"):
        torch.autograd.grad(out.outputs.sum(), x, create_graph=True)


def test_autocast_runs_the_recurrence_in_float32():
    cell = LSTMCell(3, 4, peephole="diagonal")
    x = torch.randn(2, 5, 3)
    expected = scan(cell, x, backend="compiled").outputs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = scan(cell, x, backend="compiled").outputs
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


# -- selection and refusals (the build, and auto without it: test_compiled_build.py) ----------
@pytest.mark.parametrize("cell", [LSTMCell(3, 4, peephole="full"), LSTMCell(3, 4, coupled=True),
                                  GRUCell(3, 4, reset_after=False), SimpleCell(3, 4, lags=(1, 2)),
                                  FeedbackCell(3, 4, 2),
                                  FeedbackCell(3, 4, 2, output_activation="sigmoid", shortcut=True,
                                               lags=(1, 2)),
                                  TeacherForcedCell(FeedbackCell(1, 4, 2))])
def test_auto_prefers_compiled_over_fused(cell):
    assert scan(cell, torch.randn(2, 3, 3)).kernel == "compiled"


@pytest.mark.parametrize("cell", [FeedbackCell(3, 4, 2, output_activation="softplus"),
                                  FeedbackCell(3, 4, 2, activation="elu"),
                                  TeacherForcedCell(FeedbackCell(1, 4, 2, activation="elu"))])
def test_auto_leaves_feedback_activations_it_lacks_to_fused(cell):
    assert scan(cell, torch.randn(2, 3, 3)).kernel == "fused"


def test_feedback_layers_run_on_compiled():
    free = layers.SimpleRNN(5, output_units=2, feedback=True, return_sequences=True)
    free(torch.randn(2, 4, 3))
    assert free.last_kernel == "compiled"
    forced = layers.SimpleRNN(5, output_units=2, teacher_forcing=True, return_sequences=True)
    forced.train()
    forced(torch.randn(2, 4, 3), targets=torch.randn(2, 4, 2))
    assert isinstance(forced.cell, FeedbackCell)
    assert forced.last_kernel == "compiled"  # the TeacherForcedCell's scan


@pytest.mark.parametrize("cell", [FeedbackCell(3, 4, 2), TeacherForcedCell(FeedbackCell(1, 4, 2))])
def test_the_gpu_kernel_keeps_refusing_feedback(cell):
    assert compiled.cell_reason(cell) == ""
    assert gpu.cell_reason(cell) == (f"no gpu family for {type(cell).__name__} "
                                     "(SimpleCell, LSTMCell, GRUCell only)")


class OwnCell(SimpleCell):
    """A subclass: its step may differ from the SimpleRNN family's, so no kernel assumes it."""


@pytest.mark.parametrize("cell,dtype,reason", [
    (OwnCell(3, 4), torch.float32, "no compiled family for OwnCell"),
    (FeedbackCell(3, 4, 2, output_activation="softplus"), torch.float32,
     "output_activation='softplus': the compiled kernel takes linear, tanh, sigmoid and relu"),
    (TeacherForcedCell(FeedbackCell(1, 4, 2, activation="elu")), torch.float32, "activation='elu'"),
    (SimpleCell(3, 4, activation="elu"), torch.float32, "activation='elu'"),
    (LSTMCell(3, 4, recurrent_activation="hard_sigmoid"), torch.float32,
     "recurrent_activation='hard_sigmoid'"),
    (GRUCell(3, 4), torch.bfloat16, "float32 and float64, not torch.bfloat16"),
])
def test_explicit_compiled_that_cannot_run_raises_with_reason(cell, dtype, reason):
    x = torch.randn(2, 3, 3, dtype=dtype)
    with pytest.raises(BackendError, match=re.escape("backend 'compiled' cannot run") + ".*"
                       + re.escape(reason)):
        scan(cell.to(dtype), x, backend="compiled")


def test_refuses_other_devices():
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=torch.device("meta"),
                    dtype=torch.float32, batch=2, steps=3)
    ok, reason = compiled.COMPILED.supports(LSTMCell(3, 4), spec)
    assert not ok
    assert reason == "the C++ extension runs on CPU only, not meta"


@pytest.mark.parametrize("cell", [LSTMCell(8, 16, peephole="full"), GRUCell(8, 16),
                                  GRUCell(8, 16, reset_after=False), SimpleCell(8, 16, lags=(1, 2)),
                                  FeedbackCell(8, 16, 4, shortcut=True, lags=(1, 2))])
def test_saves_less_for_backward_than_the_reference(cell):
    x = torch.randn(4, 20, 8, requires_grad=True)
    ref = saved_bytes(lambda: scan(cell, x, backend="reference"))
    got = saved_bytes(lambda: scan(cell, x, backend="compiled"))
    assert got < ref


# -- forward only: the inference loop (no_grad, nothing saved) -------------------------------------
INFER_CELLS = ["tanh", "relu", "linear", "lstm", "lstm_nobias", "gru", "gru_nobias"]
INFER_CASES = ["plain", "mask", "packed", "reverse_mask", "dilation", "dilation_mask", "batch1",
               "steps1"]
infer = compiled.infer  # the real one, which the spy below calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", INFER_CASES)
@pytest.mark.parametrize("cell_name", INFER_CELLS)
def test_inference_loop_matches_reference(cell_name, case, dtype, monkeypatch):
    """Under no_grad the standard cells take ops.infer (x read in place, no projection buffer)."""
    cell, x, state, opts = setup(cell_name, case, dtype)
    assert compiled.inference_reason(cell, x.detach(), state, None) == "autograd records this run"
    taken = []
    monkeypatch.setattr(compiled, "infer", lambda *a: taken.append(1) or infer(*a))
    with torch.no_grad():
        got = scan(cell, x, state, backend="compiled", **opts)
        expected = scan(cell, x, state, backend="reference", **opts)
    assert taken
    tol = TOL[dtype]
    for g, e in zip((got.outputs, *got.state), (expected.outputs, *expected.state), strict=True):
        torch.testing.assert_close(g, e, atol=tol, rtol=tol)



@pytest.mark.parametrize("cell", [LSTMCell(3, 4), GRUCell(3, 4), SimpleCell(3, 4),
                                  LSTMCell(3, 4, peephole="full"), SimpleCell(3, 4, lags=(1, 2))])
def test_inference_saves_nothing_for_backward(cell):
    x = torch.randn(4, 20, 3)
    with torch.no_grad():
        assert saved_bytes(lambda: scan(cell, x, backend="compiled")) == 0
        assert saved_bytes(lambda: layers.LSTM(4)(x)) == 0


@pytest.mark.parametrize("cell,reason", [
    (LSTMCell(3, 4, peephole="diagonal"), "peephole or coupled"),
    (GRUCell(3, 4, reset_after=False), "reset_after=False"),
    (SimpleCell(3, 4, lags=(1, 2)), "one lag"),
    (FeedbackCell(3, 4, 2), "no forward-only loop for FeedbackCell"),
])
def test_inference_loop_declines_what_it_does_not_run(cell, reason):
    with torch.no_grad():
        assert reason in compiled.inference_reason(cell, torch.randn(2, 3, 3), (torch.zeros(2, 4),),
                                                   None)


def test_predict_takes_the_inference_path():
    """predict runs under no_grad: GRU and LSTM (H=5) on the forward-only tiles (the rule), both
    equal to the reference loop."""
    from rnnkit.models import Sequential

    x = torch.randn(6, 9, 3).numpy()
    for layer_cls, kernel in ((layers.GRU, "compiled"), (layers.LSTM, "compiled")):
        torch.manual_seed(0)
        rnn = layer_cls(5)
        model = Sequential([rnn, layers.Dense(1)])
        model.build((None, 9, 3))
        got = model.predict(x, verbose=0)
        assert rnn.last_kernel == kernel
        rnn.backend = "reference"
        torch.testing.assert_close(torch.as_tensor(got), torch.as_tensor(model.predict(x, verbose=0)),
                                   atol=1e-5, rtol=1e-5)
