"""What several test modules share, in one place: ``import helpers`` from any test (tests/ holds the
rootdir conftest.py, so pytest puts tests/ on sys.path). No test module imports another.

- where things are: the repository root and the shared data folder;
- the kernel cases: cells, scan options and tolerances every kernel is checked against the
  reference loop with, and the runs and checks that do it;
- training: a callback that crashes fit after some batches, and a layer that makes NaN.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.func import functional_call

from rnnkit import layers
from rnnkit.callbacks import Callback
from rnnkit.cells import FeedbackCell, GRUCell, LinearCell, LSTMCell, SimpleCell, TeacherForcedCell
from rnnkit.engine import scan

REPO = Path(__file__).resolve().parents[1]
# the real data files, read-only, beside the repository (../shared/data) unless RNNKIT_SHARED_DATA says
SHARED_DATA = Path(os.environ.get("RNNKIT_SHARED_DATA", REPO.parent / "shared" / "data"))

# -- the kernel cases ------------------------------------------------------------------------------
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


def assert_all_close(got, expected, tol):
    """Outputs, final states and gradients, pairwise, naming the first tensor that differs."""
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        torch.testing.assert_close(g, e, atol=tol, rtol=tol, msg=lambda m, i=i: f"tensor {i}: {m}")


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


def saved_bytes(run) -> int:
    """Bytes of the distinct storages autograd saves while run() builds its graph."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(storages.values())


# -- training --------------------------------------------------------------------------------------
class CrashAfter(Callback):
    """Crashes fit after ``after`` training batches: a KeyboardInterrupt, as a Ctrl-C would (not
    an Exception, so nothing in fit mistakes it for an error of its own to handle)."""

    def __init__(self, after: int):
        super().__init__()
        self.after, self.seen = after, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt


class Sqrt(layers.Layer):
    """sqrt(x): NaN where an input is negative, so finite data can still make a NaN loss."""

    def forward(self, x):
        return torch.sqrt(x)
