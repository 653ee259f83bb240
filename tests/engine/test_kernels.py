"""Every fast kernel against the reference loop: outputs, final states and every gradient.

Random seeded weights, random upstream gradients into all outputs (final states included),
float64 to 1e-10 and float32 to 1e-5; masks, reverse, dilation, lags, recurrent masks, B=1, T=1.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch.func import functional_call

from rnnkit.cells import FeedbackCell, GRUCell, LinearCell, LSTMCell, SimpleCell, TeacherForcedCell
from rnnkit.engine import BackendError, ScanSpec, compiled, explain, native, registry, scan, select
from rnnkit.engine.compiled import COMPILED
from rnnkit.engine.fused import block_steps

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}

CELLS = {
    "tanh": lambda lags: SimpleCell(3, 4, lags=lags),
    "relu": lambda lags: SimpleCell(3, 4, activation="relu", lags=lags),
    "elu": lambda lags: SimpleCell(3, 4, activation="elu", lags=lags),
    "linear": lambda lags: LinearCell(3, 4, lags=lags),
    "lstm": lambda lags: LSTMCell(3, 4, lags=lags),
    "lstm_nobias": lambda lags: LSTMCell(3, 4, lags=lags, bias=False),
    "peephole_full": lambda lags: LSTMCell(3, 4, lags=lags, peephole="full"),
    "peephole_diag": lambda lags: LSTMCell(3, 4, lags=lags, peephole="diagonal"),
    "coupled": lambda lags: LSTMCell(3, 4, lags=lags, coupled=True),
    "coupled_peephole": lambda lags: LSTMCell(3, 4, lags=lags, coupled=True, peephole="full"),
    "lstm_hard_sigmoid": lambda lags: LSTMCell(3, 4, lags=lags, recurrent_activation="hard_sigmoid"),
    "gru": lambda lags: GRUCell(3, 4, lags=lags),
    "gru_nobias": lambda lags: GRUCell(3, 4, lags=lags, bias=False),
    "gru_reset_before": lambda lags: GRUCell(3, 4, lags=lags, reset_after=False),
    "feedback": lambda lags: FeedbackCell(3, 4, 2, lags=lags),
    "feedback_shortcut": lambda lags: FeedbackCell(3, 4, 2, output_activation="tanh",
                                                   shortcut=True, lags=lags),
    "teacher_forced": lambda lags: TeacherForcedCell(FeedbackCell(1, 4, 2, lags=lags)),
    "teacher_forced_linear": lambda lags: TeacherForcedCell(
        FeedbackCell(1, 4, 2, activation="linear", lags=lags)),
}
NATIVE_CELLS = ["tanh", "relu", "lstm", "lstm_nobias", "gru", "gru_nobias"]
PARALLEL_CELLS = ["linear", "teacher_forced_linear"]

# name -> scan options; "mask" is random, "packed" post-padding (lengths 5, 3, 1; "packed_long"
# 6, 5, 4: every dilated sub-row keeps a real step), "rmask" a recurrent mask
CASES = {
    "plain": {},
    "mask": {"mask": "random"},
    "packed": {"mask": "packed"},
    "reverse_mask": {"reverse": True, "mask": "random"},
    "dilation": {"dilation": 2},
    "dilation_mask": {"dilation": 3, "mask": "packed", "reverse": True},
    "dilation_packed": {"dilation": 2, "mask": "packed_long"},
    "lags": {"lags": (1, 2)},
    "lags_mask": {"lags": (1, 3), "mask": "random"},
    "lags_skip_packed": {"lags": (2, 3), "mask": "packed"},
    "rmask": {"rmask": True, "lags": (1, 2)},
    "rmask_mask": {"rmask": True, "mask": "random"},
    "batch1": {"batch": 1},
    "steps1": {"steps": 1},
}


def input_size(cell) -> int:
    if isinstance(cell, TeacherForcedCell):
        return cell.cell.input_size + cell.cell.out_size
    return cell.input_size


def make_mask(kind: str, batch: int, steps: int) -> torch.Tensor:
    if kind.startswith("packed"):
        lengths = torch.tensor([5, 3, 1] if kind == "packed" else [6, 5, 4])[:batch]
        lengths = lengths.clamp(max=steps)
        return torch.arange(steps) < lengths[:, None]
    mask = torch.rand(batch, steps) > 0.35
    mask[0] = True
    mask[-1, -1] = False
    return mask


def setup(cell_name: str, case: str, dtype):
    """A seeded cell, inputs and scan options for one test case."""
    opts = dict(CASES[case])
    torch.manual_seed(0)
    cell = CELLS[cell_name](opts.pop("lags", (1,))).to(dtype)
    batch, steps = opts.pop("batch", 3), opts.pop("steps", 6)
    x = torch.randn(batch, steps, input_size(cell), dtype=dtype, requires_grad=True)
    state = tuple(torch.randn(batch, n, dtype=dtype, requires_grad=True)
                  for n in cell.state_sizes())
    if "mask" in opts:
        opts["mask"] = make_mask(opts["mask"], batch, steps)
    if opts.pop("rmask", False):
        keep = torch.rand(batch, len(cell.lags) * cell.hidden_size) > 0.3
        opts["recurrent_mask"] = keep.to(dtype) / 0.7
    return cell, x, state, opts


def run_with_grads(cell, x, state, opts, backend):
    """Outputs, final state, and gradients of x, the initial state and every parameter."""
    out = scan(cell, x, state, backend=backend, **opts)
    gen = torch.Generator().manual_seed(1)
    ups = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in (out.outputs, *out.state)]
    loss = sum((t * u).sum() for t, u in zip((out.outputs, *out.state), ups, strict=True))
    params = list(cell.parameters())
    grads = torch.autograd.grad(loss, [x, *state, *params], allow_unused=True,
                                materialize_grads=True)
    return [out.outputs, *out.state, *grads], out.kernel


def assert_matches_reference(cell_name, case, backend, dtype):
    cell, x, state, opts = setup(cell_name, case, dtype)
    expected, _ = run_with_grads(cell, x, state, opts, "reference")
    got, kernel = run_with_grads(cell, x, state, opts, backend)
    assert kernel == backend
    assert_all_close(got, expected, TOL[dtype])


def assert_all_close(got, expected, tol):
    """Outputs, final states and gradients, pairwise, naming the first tensor that differs."""
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(g, e, atol=tol, rtol=tol, msg=lambda m, i=i: f"tensor {i}: {m}")


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


def gradcheck_scan(cell, backend: str, opts: dict) -> bool:
    """float64 gradcheck of scan on ``backend``: input, initial state and every parameter."""
    batch, steps = 2, 4
    x = torch.randn(batch, steps, input_size(cell), dtype=torch.float64, requires_grad=True)
    state = [torch.randn(batch, n, dtype=torch.float64, requires_grad=True)
             for n in cell.state_sizes()]
    if "mask" in opts:
        opts["mask"] = make_mask(opts["mask"], batch, steps)
    if opts.pop("rmask", False):
        opts["recurrent_mask"] = torch.rand(batch, len(cell.lags) * cell.hidden_size,
                                            dtype=torch.float64)
    module = ScanModule(cell, backend, opts)
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    count = len(state)

    def fn(x, *tensors):
        weights = dict(zip(names, tensors[count:], strict=True))
        return functional_call(module, weights, (x, *tensors[:count]))

    return torch.autograd.gradcheck(fn, (x, *state, *params))


class ScanModule(torch.nn.Module):
    """scan(cell, ...) as a module, so functional_call can swap the cell's parameters."""

    def __init__(self, cell, backend, opts):
        super().__init__()
        self.cell, self.backend, self.opts = cell, backend, opts

    def forward(self, x, *state):
        res = scan(self.cell, x, state, backend=self.backend, **self.opts)
        assert res.kernel == self.backend
        return (res.outputs, *res.state)


# -- selection and refusals ------------------------------------------------------------------------
@pytest.mark.parametrize("cell_name,expected", [
    ("tanh", "compiled"), ("relu", "compiled"), ("lstm", "compiled"), ("gru", "compiled"),
    ("linear", "parallel"), ("peephole_full", "compiled"), ("coupled", "compiled"),
    ("gru_reset_before", "compiled"), ("feedback", "compiled"), ("feedback_shortcut", "compiled"),
    ("teacher_forced", "compiled"), ("teacher_forced_linear", "parallel"), ("elu", "fused"),
])
def test_auto_picks_the_fastest_supporting_kernel(cell_name, expected):
    """Training (the cell's weights record gradients): on CPU the measured rule
    (registry.NATIVE_FROM_UNITS) puts compiled before torch's fused op for the standard cells."""
    if expected == "compiled" and COMPILED.ops()[0] is None:
        # no C++ toolchain: the build failure is the reason compiled refuses
        expected = "native" if cell_name in NATIVE_CELLS else "fused"
    cell = CELLS[cell_name]((1,))
    x = torch.randn(2, 3, input_size(cell))
    assert scan(cell, x).kernel == expected


@pytest.mark.parametrize("cell_name,expected", [
    ("tanh", "compiled"), ("relu", "compiled"), ("lstm", "compiled"), ("lstm_nobias", "compiled"),
    ("gru", "compiled"), ("peephole_full", "compiled"),
])
def test_auto_for_inference_follows_the_rule(cell_name, expected):
    """Under no_grad the rule's inference column at H=4: compiled (its tiles) for every cell."""
    if COMPILED.ops()[0] is None:
        expected = "native" if cell_name in NATIVE_CELLS else "fused"
    cell = CELLS[cell_name]((1,))
    with torch.no_grad():
        assert scan(cell, torch.randn(2, 3, 3)).kernel == expected


def test_auto_order_follows_the_crossover_in_units(monkeypatch):
    """A crossover at H=8: native first from 8 units on, compiled below; explain says why."""
    if COMPILED.ops()[0] is None:
        pytest.skip("the compiled kernel did not build here")
    monkeypatch.setitem(registry.NATIVE_FROM_UNITS, ("GRUCell", "training"), 8)
    x = torch.randn(2, 3, 3)
    assert scan(GRUCell(3, 4), x).kernel == "compiled"
    assert scan(GRUCell(3, 8), x).kernel == "native"
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=x.device, dtype=x.dtype,
                    batch=2, steps=3)
    small, large = explain(GRUCell(3, 4), spec), explain(GRUCell(3, 8), spec)
    def runnable(verdicts):
        return [k for k, v in verdicts.items() if v.startswith(("chosen: ", "can run it"))]

    assert runnable(small)[:2] == ["compiled", "native"]
    assert runnable(large)[:2] == ["native", "compiled"]
    assert small["compiled"].startswith("chosen: GRUCell training on CPU at H=4: the compiled C++ "
                                        "loop is faster than torch's fused op (native) below H=8")
    assert small["native"] == "can run it; compiled comes first"
    assert large["native"].startswith("chosen: GRUCell training on CPU at H=8: torch's fused op "
                                      "(native) is the fastest from H=8 on")


def test_explain_names_what_cannot_run():
    spec = ScanSpec(has_mask=True, has_recurrent_mask=False, device=torch.device("cpu"),
                    dtype=torch.float32, batch=2, steps=3, mask_packable=True)
    verdicts = explain(LSTMCell(3, 4), spec)
    assert "O(T²)" in verdicts["native"]  # masks on CPU: native declines
    assert verdicts["parallel"] == "LSTMCell is not a linear recurrence"
    chosen = [k for k, v in verdicts.items() if v.startswith("chosen: ")]
    assert chosen == [select(LSTMCell(3, 4), spec).name]


def test_auto_falls_back_from_native_for_unpackable_masks_and_lags(monkeypatch,
                                                                  lstm_inference_on_native):
    cell = LSTMCell(3, 4)
    x = torch.randn(2, 4, 3)
    holes = torch.tensor([[True, False, True, True], [True, True, True, True]])
    loop = "compiled" if COMPILED.ops()[0] is not None else "fused"
    assert scan(cell, x, mask=holes).kernel == loop
    assert scan(LSTMCell(3, 4, lags=(1, 2)), x).kernel == loop
    packed = torch.tensor([[True, True, False, False], [True, True, True, True]])
    assert scan(cell, x, mask=packed).kernel == loop  # torch's packed backward is O(T²) on CPU
    monkeypatch.setattr(native, "PACKED_ON_CPU", True)
    with torch.no_grad():  # inference, where the (pinned) rule puts native first for LSTM
        assert scan(cell, x, mask=packed).kernel == "native"


@pytest.mark.parametrize("cell,backend,opts,reason", [
    (LSTMCell(3, 4, peephole=True), "native", {}, "peephole"),
    (LSTMCell(3, 4, coupled=True), "native", {}, "coupled"),
    (GRUCell(3, 4, reset_after=False), "native", {}, "reset_after=True"),
    (SimpleCell(3, 4, activation="elu"), "native", {}, "'elu'"),
    (SimpleCell(3, 4, lags=(1, 2)), "native", {}, "lags=(1, 2)"),
    (LSTMCell(3, 4), "native", {"recurrent_mask": torch.ones(2, 4)}, "recurrent mask"),
    (LSTMCell(3, 4), "native", {"mask": torch.tensor([[False, True, True]] * 2)}, "packed"),
    (FeedbackCell(3, 4, 2), "native", {}, "FeedbackCell"),
    (SimpleCell(3, 4), "parallel", {}, "'tanh'"),
    (LSTMCell(3, 4), "parallel", {}, "not a linear recurrence"),
    (LinearCell(3, 4), "parallel", {"recurrent_mask": torch.ones(2, 4)}, "recurrent mask"),
    (SimpleCell(3, 4, activation="softmax"), "fused", {}, "elementwise"),
    (SimpleCell(3, 4, activation=lambda z: z * 2), "fused", {}, "elementwise"),
])
def test_explicit_backend_that_cannot_run_raises_with_reason(cell, backend, opts, reason):
    with pytest.raises(BackendError, match=re.escape(reason)):
        scan(cell, torch.randn(2, 3, 3), backend=backend, **opts)


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


def saved_bytes(run) -> int:
    """Bytes of the distinct storages autograd saves while run() builds its graph."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(storages.values())


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


def test_inference_crossover_sends_wide_cells_to_native():
    """NATIVE_FROM_UNITS' inference column: SimpleRNN and GRU on native from H=512; LSTM on the
    compiled tiles up to their largest H and on native above it."""
    if COMPILED.ops()[0] is None:
        pytest.skip("the compiled kernel did not build here")
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=torch.device("cpu"),
                    dtype=torch.float32, batch=1, steps=3, requires_grad=False)
    for cell_type in (SimpleCell, GRUCell):
        assert select(cell_type(2, 256), spec).name == "compiled"
        assert select(cell_type(2, 512), spec).name == "native"
    tiles = compiled.TILE_MAX_UNITS
    assert registry.NATIVE_FROM_UNITS[("LSTMCell", "inference")] == tiles + 1
    assert select(LSTMCell(2, tiles), spec).name == "compiled"
    assert select(LSTMCell(2, tiles + 1), spec).name == "native"
