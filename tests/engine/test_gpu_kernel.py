"""The gpu (Triton) kernel: its refusals everywhere, its numbers wherever triton is installed.

Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors
(``gpu.interpreter_kernel()``, registered here for this module only); with CUDA the same checks
run on the GPU without the interpreter. Each is compared with the reference loop: outputs, final
states and the gradients of input, initial state and every parameter under random upstream
gradients into all outputs; float64 to 1e-10, float32 to 1e-5; masks, reverse, dilation, lags,
recurrent masks, B=1, T=1; and a float64 gradcheck of each autograd.Function.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch
from torch.func import functional_call

from helpers import CASES, CELLS, TOL, ScanModule, assert_all_close, make_mask, setup
from rnnkit.cells import FeedbackCell, GRUCell, LSTMCell, SimpleCell
from rnnkit.engine import BackendError, ScanSpec, compiled, gpu, registry, scan

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
needs_cuda = pytest.mark.skipif(not (HAS_TRITON and HAS_CUDA), reason="needs triton and CUDA")

EXTRA_CELLS = {
    "sigmoid": lambda lags: SimpleCell(3, 4, activation="sigmoid", lags=lags),
    "lstm_relu": lambda lags: LSTMCell(3, 4, lags=lags, activation="relu"),
    "coupled_peephole_diag": lambda lags: LSTMCell(3, 4, lags=lags, coupled=True,
                                                   peephole="diagonal"),
    "gru_reset_before_nobias": lambda lags: GRUCell(3, 4, lags=lags, reset_after=False, bias=False),
}
GPU_CELLS = ["tanh", "relu", "linear", "lstm", "lstm_nobias", "peephole_full", "peephole_diag",
             "coupled", "coupled_peephole", "gru", "gru_nobias", "gru_reset_before", *EXTRA_CELLS]
FLOAT32_CASES = ["plain", "mask", "lags_mask", "rmask"]
# the interpreter takes milliseconds per launch: every case for one cell per kernel path
# (simple; LSTM in one launch, diagonal and coupled; LSTM with a full peephole in two halves; GRU
# after; GRU before), the mask, lag and recurrent-mask cases for the others
PATH_CELLS = ["tanh", "peephole_full", "peephole_diag", "coupled", "gru", "gru_reset_before"]
INTERPRETED_FLOAT64 = ([(c, k) for c in PATH_CELLS for k in CASES]
                       + [(c, k) for c in GPU_CELLS if c not in PATH_CELLS for k in FLOAT32_CASES])
INTERPRETED_FLOAT32 = [(c, k) for c in GPU_CELLS for k in ("plain", "lags_mask")]


def cuda_spec(dtype=torch.float32) -> ScanSpec:
    return ScanSpec(has_mask=False, has_recurrent_mask=False, device=torch.device("cuda"),
                    dtype=dtype, batch=2, steps=3)


# -- everywhere: imports, refusals, auto -----------------------------------------------------------
def test_import_leaves_triton_alone_and_reports_it_missing():
    """import rnnkit never imports triton; with triton absent the kernel says so."""
    code = (
        "import sys\n"
        "import rnnkit\n"
        "from rnnkit.engine import gpu\n"
        "assert 'triton' not in sys.modules, 'import rnnkit imported triton'\n"
        "sys.modules['triton'] = None\n"  # as if it were not installed
        "print(gpu.triton_reason())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "triton not installed"


def test_without_triton_cuda_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)
    assert gpu.GPU.supports(LSTMCell(3, 4, peephole="full"), cuda_spec()) == (
        False, "triton not installed")


def test_explicit_gpu_on_cpu_raises_with_the_reason():
    with pytest.raises(BackendError, match=re.escape(
            "backend 'gpu' cannot run LSTMCell: the gpu kernel needs a CUDA device, got cpu")):
        scan(LSTMCell(3, 4, peephole="diagonal"), torch.randn(2, 3, 3), backend="gpu")


@pytest.mark.parametrize("cell_name", GPU_CELLS[:12])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_never_supports_cpu(cell_name, dtype):
    """So backend="auto" never takes it on CPU, whatever the cell."""
    spec = ScanSpec(has_mask=True, has_recurrent_mask=False, device=torch.device("cpu"),
                    dtype=dtype, batch=2, steps=3)
    assert gpu.GPU.supports(CELLS[cell_name]((1, 2)), spec) == (
        False, "the gpu kernel needs a CUDA device, got cpu")


def test_auto_on_cpu_takes_another_kernel():
    loop = "compiled" if compiled.COMPILED.ops()[0] is not None else "native"  # the CPU rule
    assert scan(LSTMCell(3, 4), torch.randn(2, 3, 3)).kernel == loop


@pytest.mark.parametrize("cell,dtype,reason", [
    (FeedbackCell(3, 4, 2), torch.float32, "no gpu family for FeedbackCell"),
    (SimpleCell(3, 4, activation="elu"), torch.float32, "activation='elu'"),
    (LSTMCell(3, 4, recurrent_activation="hard_sigmoid"), torch.float32,
     "recurrent_activation='hard_sigmoid'"),
    (GRUCell(3, 4), torch.bfloat16, "the gpu kernel takes float32 and float64, not torch.bfloat16"),
])
def test_refusals_on_cuda(cell, dtype, reason):
    ok, why = gpu.GPU.supports(cell, cuda_spec(dtype))
    assert not ok
    assert reason in why


def test_gpu_is_registered_after_native_and_parallel():
    """On CUDA: cuDNN for the standard cells, the parallel scan for linear ones, then gpu."""
    kernels = registry.kernels()
    assert kernels["native"].rank < kernels["parallel"].rank < kernels["gpu"].rank == 25
    assert kernels["gpu"].rank < kernels["compiled"].rank


# -- the Triton kernels in Triton's interpreter, on CPU --------------------------------------------
@pytest.fixture(scope="module")
def interpreted():
    """The interpreter copy of the gpu kernel, registered while this module's tests run."""
    kernel = gpu.interpreter_kernel()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._KERNELS, kernel.name, kernel)
        yield kernel.name


def run_with_grads(cell, x, state, opts, backend):
    """Outputs, final state, and gradients of x, the initial state and every parameter."""
    out = scan(cell, x, state, backend=backend, **opts)
    gen = torch.Generator().manual_seed(1)
    results = (out.outputs, *out.state)
    ups = [torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device) for t in results]
    loss = sum((t * u).sum() for t, u in zip(results, ups, strict=True))
    grads = torch.autograd.grad(loss, [x, *state, *cell.parameters()], allow_unused=True,
                                materialize_grads=True)
    return [*results, *grads], out.kernel


def assert_matches_reference(cell_name, case, dtype, backend, monkeypatch, device="cpu"):
    if cell_name in EXTRA_CELLS:  # helpers.setup builds its cells from CELLS
        monkeypatch.setitem(CELLS, cell_name, EXTRA_CELLS[cell_name])
    cell, x, state, opts = setup(cell_name, case, dtype)
    cell = cell.to(device)
    x = x.detach().to(device).requires_grad_()
    state = tuple(s.detach().to(device).requires_grad_() for s in state)
    opts = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in opts.items()}
    expected, _ = run_with_grads(cell, x, state, opts, "reference")
    got, kernel = run_with_grads(cell, x, state, opts, backend)
    assert kernel == backend
    assert_all_close(got, expected, TOL[dtype])


@needs_triton
@pytest.mark.parametrize("cell_name,case", INTERPRETED_FLOAT64)
def test_interpreted_matches_reference_float64(cell_name, case, interpreted, monkeypatch):
    assert_matches_reference(cell_name, case, torch.float64, interpreted, monkeypatch)


@needs_triton
@pytest.mark.parametrize("cell_name,case", INTERPRETED_FLOAT32)
def test_interpreted_matches_reference_float32(cell_name, case, interpreted, monkeypatch):
    assert_matches_reference(cell_name, case, torch.float32, interpreted, monkeypatch)


# one case per autograd.Function and kernel path: simple, LSTM (single kernel, diagonal, full
# peephole in two halves, coupled), GRU after and before
GRADCHECK = [
    ("tanh", {"mask": "random", "lags": (1, 2)}),
    ("relu", {"rmask": True}),
    ("lstm", {"mask": "random", "lags": (1, 3)}),
    ("peephole_full", {"mask": "random"}),
    ("peephole_diag", {"lags": (1, 2), "rmask": True}),
    ("coupled_peephole", {"mask": "random"}),
    ("coupled_peephole_diag", {"mask": "random"}),
    ("gru", {"mask": "random", "lags": (1, 2)}),
    ("gru_reset_before", {"mask": "random", "lags": (1, 2), "rmask": True}),
]


@needs_triton
@pytest.mark.parametrize("cell_name,opts", GRADCHECK, ids=[c for c, _ in GRADCHECK])
def test_interpreted_gradcheck(cell_name, opts, interpreted):
    # fast mode (random projections v^T J u) keeps the interpreter's thousands of launches to tens
    assert gradcheck_gpu(cell_name, opts, interpreted, "cpu", fast_mode=True)


def gradcheck_gpu(cell_name: str, opts: dict, backend: str, device: str, fast_mode: bool) -> bool:
    """float64 gradcheck of scan on ``backend``: x, initial state and every parameter."""
    opts = dict(opts)
    cell = (EXTRA_CELLS.get(cell_name) or CELLS[cell_name])(opts.pop("lags", (1,)))
    cell = cell.to(device, torch.float64)
    batch, steps = 2, 4
    x = torch.randn(batch, steps, 3, dtype=torch.float64, device=device, requires_grad=True)
    state = [torch.randn(batch, n, dtype=torch.float64, device=device, requires_grad=True)
             for n in cell.state_sizes()]
    if "mask" in opts:
        opts["mask"] = make_mask(opts["mask"], batch, steps).to(device)
    if opts.pop("rmask", False):
        opts["recurrent_mask"] = torch.rand(batch, len(cell.lags) * cell.hidden_size,
                                            dtype=torch.float64, device=device)
    module = ScanModule(cell, backend, opts)
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]

    def fn(x, *tensors):
        weights = dict(zip(names, tensors[len(state):], strict=True))
        return functional_call(module, weights, (x, *tensors[:len(state)]))

    return torch.autograd.gradcheck(fn, (x, *state, *params), fast_mode=fast_mode)


@needs_triton
def test_interpreter_copy_leaves_the_environment_alone():
    before = os.environ.get("TRITON_INTERPRET")
    module = gpu.load_triton_cells(interpret=True)
    assert os.environ.get("TRITON_INTERPRET") == before
    assert type(module._simple_forward).__name__ == "InterpretedFunction"


@needs_triton
def test_interpreted_double_backward_is_refused(interpreted):
    cell = GRUCell(3, 4, reset_after=False).double()
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = scan(cell, x, backend=interpreted)
    with pytest.raises(RuntimeError, match="first order only"):
        torch.autograd.grad(out.outputs.sum(), x, create_graph=True)


@needs_triton
def test_interpreted_autocast_runs_the_recurrence_in_float32(interpreted):
    cell = LSTMCell(3, 4, peephole="diagonal")
    x = torch.randn(2, 5, 3)
    expected = scan(cell, x, backend=interpreted).outputs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = scan(cell, x, backend=interpreted).outputs
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


# -- on a CUDA machine: compiled Triton kernels ------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cell_name", GPU_CELLS)
def test_cuda_matches_reference_float64(cell_name, case, monkeypatch):
    assert_matches_reference(cell_name, case, torch.float64, "gpu", monkeypatch, "cuda")


@needs_cuda
@pytest.mark.parametrize("case", FLOAT32_CASES)
@pytest.mark.parametrize("cell_name", GPU_CELLS)
def test_cuda_matches_reference_float32(cell_name, case, monkeypatch):
    # TF32 matmuls would put the reference itself off by ~1e-3
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    assert_matches_reference(cell_name, case, torch.float32, "gpu", monkeypatch, "cuda")


@needs_cuda
@pytest.mark.parametrize("cell_name,opts", GRADCHECK, ids=[c for c, _ in GRADCHECK])
def test_cuda_gradcheck(cell_name, opts):
    assert gradcheck_gpu(cell_name, opts, "gpu", "cuda", fast_mode=False)


@needs_cuda
def test_cuda_auto_takes_gpu_for_cells_cudnn_cannot_run():
    x = torch.randn(2, 3, 3, device="cuda")
    assert scan(LSTMCell(3, 4, peephole="full").cuda(), x).kernel == "gpu"
    assert scan(GRUCell(3, 4, reset_after=False).cuda(), x).kernel == "gpu"
    assert scan(LSTMCell(3, 4).cuda(), x).kernel == "native"
