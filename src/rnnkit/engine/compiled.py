"""The compiled kernel: the fused families' hand-written BPTT with the time loop in C++.

Dimension legend: B batch, T time, I input features, H units, G gates, K lags, L the largest lag,
O feedback outputs.

The plan is the fused kernel's (``engine/fused.py``) — the input projection A·x_t + b as one GEMM
over all t outside the Function, one recurrent GEMM per step into preallocated buffers, the
recurrent weight gradient as one GEMM over all T·B rows after the loop — but the loops run in C++
(``csrc/fused_cells.cpp``), so a step costs no Python and no per-op dispatch from Python. The
forward keeps only the gate activations and the states; derivatives are taken from the activation
outputs, and the backward keeps the gradient of the lag history in a ring of L+1 slots, so the
memory held for backward is below the reference loop's autograd graph. The input projection is
computed time-major, and the LSTM families overwrite it with their gate activations in place, so no
(T, B, G·H) tensor is transposed or allocated twice. With several threads (the extension is built
with OpenMP) the batch is split into one chunk of rows per thread, each running the whole time
loop with no synchronisation per step, while the recurrent weight fits ``SPLIT_BATCH_MAX_BYTES``;
a larger weight would be streamed through every core's cache each step, so then one loop runs on
all rows with BLAS threading each GEMM. The weight-gradient GEMMs after the loop use all threads.

The standard cells (SimpleRNN, LSTM without peepholes or coupling, GRU with reset_after; one lag,
no recurrent mask) up to ``TILE_MAX_UNITS`` units take register tiles instead (``CompiledTiles``,
``ops.tile_*``): weights packed once per call, a step's products for a few rows and one vector of
units in vector registers with the gate math on them, batch-major with the input projection
inside, so none of the buffers above exist (see csrc/fused_cells.cpp).

Families: SimpleCell (and TeacherForcedCell, a SimpleRNN recurrence on its own projection); LSTMCell
(standard, peephole full/diagonal, coupled); GRUCell (reset_after True and False); FeedbackCell
(output feedback, o_{t-1} fed back, with or without the short-cut D x_t); all with lags, masks and
recurrent masks. Activations (output_activation too): linear, tanh, sigmoid and relu (their
derivatives follow from their outputs); anything else stays on ``fused``. CPU, float32 and float64.

The extension is built with ``torch.utils.cpp_extension.load`` at its first use (g++ and ninja;
about 2 minutes on one core since the tiles: 115-150 s measured on 2026-11-30) into
``$RNNKIT_EXT_DIR``, or torch's extensions directory when that is unset, and reused from there.
When the build fails, ``supports`` says "C++ extension unavailable: <reason>": ``backend="auto"``
then takes ``fused`` (``rnnkit.engine.explain`` shows why) and ``backend="compiled"`` raises
``BackendError`` with that reason.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pathlib
import subprocess
import sys

import torch
from torch import Tensor

from .. import activations
from ..cells import FeedbackCell, GRUCell, LSTMCell, SimpleCell, TeacherForcedCell
from .fused import activation_roles, first_order_only, run_time_major
from .registry import ScanSpec, register
from .scan import records_grad

log = logging.getLogger(__name__)

SOURCE = pathlib.Path(__file__).with_name("csrc") / "fused_cells.cpp"
EXTENSION = "rnnkit_fused_cells"  # also the operator namespace: torch.ops.rnnkit_fused_cells
ACTIVATION_CODES = {activations.linear: 0, torch.tanh: 1, torch.sigmoid: 2, torch.relu: 3}
PEEPHOLE_CODES = {None: 0, "full": 1, "diagonal": 2}
_BUILD_ERRORS = (RuntimeError, OSError, ImportError, subprocess.SubprocessError)
# Threads split the batch (one chunk of rows each, the whole time loop per thread) while the
# recurrent weight fits this budget; above it every thread would stream the weight through its own
# cache each step, so the loop runs once on all rows and BLAS threads each GEMM instead.
# Measured on 2 cores (benchmarks/NOTES.md): splitting wins at H=32 and H=128 (weights up to
# 512 KiB), one loop wins at H=256 (LSTM 1 MiB: 0.91 vs 0.95 of torch.nn.LSTM; lags (1, 2) 2 MiB:
# 1.34 vs 1.49).
SPLIT_BATCH_MAX_BYTES = 512 << 10


def split_batch(*weights: Tensor) -> bool:
    """Whether the weights a step reads (together) fit the split budget."""
    return sum(w.numel() * w.element_size() for w in weights) <= SPLIT_BATCH_MAX_BYTES


def arch_flags() -> tuple[list[str], str]:
    """Compiler flags for the vector units torch found on this CPU, and a suffix for the library's
    name (so a build cache shared between machines never loads code for the wrong CPU).

    The gate loops and the tiles vectorise 16 floats wide with AVX-512, 8 with AVX2 and FMA, 4 with
    the baseline SSE2. torch's capability follows ATEN_CPU_CAPABILITY where that is set, which may
    name more than the CPU has; the hardware checks (cpuinfo's, the same ones torch makes) have the
    last word, so a build never holds instructions this CPU lacks (SIGILL at the first call).
    """
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512" and _cpu_has("avx512"):
        return ["-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl"], "_avx512"
    if capability in ("AVX2", "AVX512") and _cpu_has("avx2"):
        return ["-mavx2", "-mfma"], "_avx2"
    return [], ""


def _cpu_has(unit: str) -> bool:
    """cpuinfo's answer for "avx2" (torch's AVX2 capability adds FMA) or "avx512" (F, DQ, BW and VL:
    the flags above); torch versions without the check rely on the capability alone."""
    check = getattr(torch.cpu, f"_is_{unit}_supported", None)
    return check() if check is not None else True


def library_name(source: pathlib.Path, name: str, suffix: str) -> str:
    """``name``, the CPU suffix and the first 12 hex digits of the source's SHA-256.

    torch keeps one build per name in its cache and rebuilds it whenever the source differs; two
    checkouts or rnnkit versions sharing the cache would rebuild over each other, and a process
    would wait minutes on another's build (torchrun workers in the tests ran past their timeout
    that way). Keyed by the source, each finds its own build.
    """
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    return f"{name}{suffix}_{digest}"


# -fno-trapping-math (as torch's own build): lets the compiler turn the activations' clamps into
# vector min/max; values do not change.
CFLAGS = ["-O3", "-fno-trapping-math"]


def build(source: pathlib.Path = SOURCE, build_dir: str | None = None,
          name: str = EXTENSION) -> tuple[object | None, str]:
    """Compile (or reuse the cached build of) the extension and load its operators.

    name is the library's file name, before the CPU suffix of ``arch_flags`` and the source's hash
    (``library_name``).
    -> (torch.ops namespace, "") or (None, "C++ extension unavailable: <reason>").
    """
    from torch.utils import cpp_extension

    # torch runs `ninja` from PATH; the one pip installed beside this Python counts too
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    build_dir = build_dir or os.environ.get("RNNKIT_EXT_DIR") or None
    if build_dir:
        os.makedirs(build_dir, exist_ok=True)
    failure = None
    arch, suffix = arch_flags()
    for openmp in (["-fopenmp"], []):  # without OpenMP (a compiler lacking it) the loops run on one thread
        try:
            cpp_extension.load(name=library_name(source, name, suffix), sources=[str(source)],
                               extra_cflags=[*CFLAGS, *arch, *openmp],
                               extra_ldflags=openmp, build_directory=build_dir,
                               is_python_module=False, verbose=False)
        except _BUILD_ERRORS as exc:
            failure = exc
            continue
        return getattr(torch.ops, EXTENSION), ""  # the namespace TORCH_LIBRARY declares
    log.warning("rnnkit: building the compiled kernel failed; falling back to 'fused':\n%s", failure)
    return None, f"C++ extension unavailable: {type(failure).__name__}: {_summary(failure)}"


def _summary(exc: BaseException) -> str:
    """The first line of a build error (without the compiler command) and its 'error' lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
    head = lines[0].split(": [", 1)[0]  # ninja appends the failing command after ": [1/2]"
    errors = [line for line in lines[1:] if "error" in line.lower()][:3]
    return "; ".join([head, *errors])[:600]


# -- the autograd Functions ---------------------------------------------------------------------
def _lags(cfg) -> list[int]:
    return list(cfg["lags"])


class CompiledSimple(torch.autograd.Function):
    """h_t = f(xw_t + (h_lags * rm) @ W^T): xw (T, B, H), h0 (B, H), w (H, K·H) -> ys, h_T."""

    @staticmethod
    def forward(ctx, xw, h0, w, m, rm, ops, cfg):
        hbuf = ops.simple_forward(xw, h0, w, m, rm, _lags(cfg), cfg["act"], split_batch(w))
        ctx.save_for_backward(hbuf, w, m, rm)
        ctx.ops, ctx.cfg = ops, cfg
        return outputs(hbuf, cfg["lags"][-1], m), hbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last):
        hbuf, w, m, rm = ctx.saved_tensors
        cfg = ctx.cfg
        dxw, dh0, dw = ctx.ops.simple_backward(dys, dh_last, hbuf, w, m, rm, _lags(cfg),
                                               cfg["act"], split_batch(w))
        return dxw, dh0, dw, None, None, None, None


class CompiledLSTM(torch.autograd.Function):
    """LSTM, peephole (full or diagonal) and coupled: xw (T·B, G·H), h0 c0 (B, H) -> ys, h_T, c_T, a.

    xw is the kernel's own projection (``CompiledKernel.run``), rows time-major: the forward
    overwrites it with the gate activations a, which backward needs, so no second (T, B, G·H)
    buffer is allocated. It is returned (marked dirty) as a fourth output that callers drop.
    Autograd allows this only for a tensor that is not a view, hence the 2-D (T·B, G·H) layout.
    """

    @staticmethod
    def forward(ctx, xw, h0, c0, w, peep_prev, peep_out, m, rm, ops, cfg):
        a = xw
        hbuf, cbuf = ops.lstm_forward(a.view(-1, *h0.shape[:1], a.shape[-1]), h0, c0, w, peep_prev,
                                      peep_out, m, rm, _lags(cfg), cfg["act"], cfg["ract"],
                                      cfg["coupled"], cfg["peephole"], split_batch(w))
        ctx.mark_dirty(a)
        ctx.set_materialize_grads(False)  # the gradient of a is never used: no zeros of its size
        ctx.save_for_backward(a, hbuf, cbuf, w, peep_prev, peep_out, m, rm)
        ctx.ops, ctx.cfg = ops, cfg
        return outputs(hbuf, cfg["lags"][-1], m), hbuf[-1].clone(), cbuf[-1].clone(), a

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last, dc_last, _da):
        a, hbuf, cbuf, w, peep_prev, peep_out, m, rm = ctx.saved_tensors
        cfg = ctx.cfg
        a = a.view(-1, *cbuf.shape[1:2], a.shape[-1])  # (T, B, G·H)
        dys, dh_last, dc_last = _zeros_for_none(
            (dys, dh_last, dc_last), ((a.shape[0], *cbuf.shape[1:]), cbuf.shape[1:], cbuf.shape[1:]), a)
        dxw, dh0, dc0, dw, dpp, dpo = ctx.ops.lstm_backward(
            dys, dh_last, dc_last, a, hbuf, cbuf, w, peep_prev, peep_out, m, rm,
            _lags(cfg), cfg["act"], cfg["ract"], cfg["coupled"], cfg["peephole"], split_batch(w))
        return dxw.view(-1, dxw.shape[-1]), dh0, dc0, dw, dpp, dpo, None, None, None, None


def _zeros_for_none(grads, shapes, like: Tensor) -> list[Tensor]:
    """Gradients autograd left as None (outputs not used) as zeros: expanded, so they cost nothing."""
    return [like.new_zeros(()).expand(shape) if g is None else g
            for g, shape in zip(grads, shapes, strict=True)]


class CompiledGRU(torch.autograd.Function):
    """GRU, reset gate after or before the matmul: xw (T, B, 3H), h0 (B, H) -> ys, h_T."""

    @staticmethod
    def forward(ctx, xw, h0, w, bias_hh, m, rm, ops, cfg):
        a, extra, hbuf = ops.gru_forward(xw, h0, w, bias_hh, m, rm, _lags(cfg), cfg["act"],
                                         cfg["ract"], cfg["reset_after"], split_batch(w))
        ctx.save_for_backward(a, extra, hbuf, w, m, rm)
        ctx.ops, ctx.cfg, ctx.has_bias = ops, cfg, bias_hh is not None
        return outputs(hbuf, cfg["lags"][-1], m), hbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last):
        a, extra, hbuf, w, m, rm = ctx.saved_tensors
        cfg = ctx.cfg
        dxw, dh0, dw, db = ctx.ops.gru_backward(
            dys, dh_last, a, extra, hbuf, w, ctx.has_bias, m, rm, _lags(cfg),
            cfg["act"], cfg["ract"], cfg["reset_after"], split_batch(w))
        return dxw, dh0, dw, db, None, None, None, None


class CompiledFeedback(torch.autograd.Function):
    """h_t = f(xa_t + (h_lags * rm) @ W^T + o_{t-1} @ W_oh^T), o_t = g(h_t @ W_ho^T + xd_t):
    xw (T, B, H+O) = [xa, xd], h0 (B, H), o0 (B, O), w (H, K·H), w_oh (H, O), w_ho (O, H)
    -> ys (T, B, H), h_T, o_T."""

    @staticmethod
    def forward(ctx, xw, h0, o0, w, w_oh, w_ho, m, rm, ops, cfg):
        split = split_batch(w, w_oh, w_ho)
        hbuf, obuf = ops.feedback_forward(xw, h0, o0, w, w_oh, w_ho, m, rm, _lags(cfg), cfg["act"],
                                          cfg["out_act"], split)
        ctx.save_for_backward(hbuf, obuf, w, w_oh, w_ho, m, rm)
        ctx.ops, ctx.cfg = ops, cfg
        return outputs(hbuf, cfg["lags"][-1], m), hbuf[-1].clone(), obuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last, do_last):
        hbuf, obuf, w, w_oh, w_ho, m, rm = ctx.saved_tensors
        cfg = ctx.cfg
        dxw, dh0, do0, dw, dw_oh, dw_ho = ctx.ops.feedback_backward(
            dys, dh_last, do_last, hbuf, obuf, w, w_oh, w_ho, m, rm, _lags(cfg), cfg["act"],
            cfg["out_act"], split_batch(w, w_oh, w_ho))
        return dxw, dh0, do0, dw, dw_oh, dw_ho, None, None, None, None


def outputs(hbuf: Tensor, lmax: int, m: Tensor | None) -> Tensor:
    """y_t = h_t on real steps, 0 on masked ones: (T, B, H)."""
    ys = hbuf[lmax:]
    return ys if m is None else ys * m.unsqueeze(-1)


# -- which cells ---------------------------------------------------------------------------------
# The cells each kernel has families for: the gpu kernel runs the compiled kernel's families less
# output feedback and teacher forcing, for which it has no Triton kernels.
FAMILIES = {
    "compiled": (SimpleCell, LSTMCell, GRUCell, FeedbackCell, TeacherForcedCell),
    "gpu": (SimpleCell, LSTMCell, GRUCell),
}


def cell_reason(cell, kernel: str = "compiled") -> str:
    """Why the families of ``kernel`` ("compiled", or "gpu", which runs the same families less
    output feedback) cannot run this cell, or '' when they can."""
    families = FAMILIES[kernel]
    if type(cell) not in families:
        names = ", ".join(f.__name__ for f in families)
        return f"no {kernel} family for {type(cell).__name__} ({names} only)"
    for role, fn in activation_roles(cell).items():
        if fn not in ACTIVATION_CODES:
            return (f"{role}={activations.name_of(fn)!r}: the {kernel} kernel takes linear, tanh, "
                    "sigmoid and relu")
    return ""


_CODE_KEYS = {"activation": "act", "recurrent_activation": "ract", "output_activation": "out_act"}


def _config(cell) -> dict:
    cfg = {"lags": cell.lags}
    cfg.update({_CODE_KEYS[role]: ACTIVATION_CODES[fn] for role, fn in activation_roles(cell).items()})
    if isinstance(cell, LSTMCell):
        cfg.update(coupled=cell.coupled, peephole=PEEPHOLE_CODES[cell.peephole])
    if isinstance(cell, GRUCell):
        cfg["reset_after"] = cell.reset_after
    return cfg


def _family(ops, cell, xw, state, mask, recurrent_mask):
    """run_time_major's family for this kernel: float (T, B) masks, contiguous states, and xw
    (T·B, G·H) owned outright, since the LSTM families write their gates into it."""
    if xw._base is not None or not xw.is_contiguous():
        xw = xw.clone(memory_format=torch.contiguous_format)
    m = None if mask is None else mask.t().to(xw.dtype).contiguous()  # (T, B)
    rm = None if recurrent_mask is None else recurrent_mask.to(xw.dtype).contiguous()
    return _run_family(ops, cell, xw, tuple(s.contiguous() for s in state), m, rm)


def _run_family(ops, cell, xw, state, m, rm):
    """xw (T·B, G·H) rows time-major (G·H: H+O for FeedbackCell), m (T, B) float or None
    -> ys (T, B, H), final state."""
    cfg = _config(cell)
    if isinstance(cell, LSTMCell):
        *out, _ = CompiledLSTM.apply(xw, *state, cell.weight_hh, getattr(cell, "peep_prev", None),
                                     getattr(cell, "peep_out", None), m, rm, ops, cfg)
        return out
    xw = xw.view(-1, state[0].shape[0], xw.shape[-1])  # (T, B, G·H)
    if isinstance(cell, (SimpleCell, TeacherForcedCell)):
        return CompiledSimple.apply(xw, state[0], cell.weight_hh, m, rm, ops, cfg)
    if isinstance(cell, FeedbackCell):
        return CompiledFeedback.apply(xw, *state, cell.weight_hh, cell.weight_oh, cell.weight_ho, m,
                                      rm, ops, cfg)
    return CompiledGRU.apply(xw, state[0], cell.weight_hh, cell.bias_hh, m, rm, ops, cfg)


INFER_KINDS = {SimpleCell: 0, LSTMCell: 1, GRUCell: 2}
# The standard cells run on tiles (ops.tile_*: a step's products in vector registers over weights
# packed once per call, gate math on the tiles' values, batch-major, no projection buffer; see
# csrc/fused_cells.cpp) up to this many units, in training and inference. Above it a tile
# re-streams weights that have outgrown the core's cache at every step, and BLAS's GEMMs (the
# loops above, and the forward-only ``ops.infer``) take over (benchmarks/bench_tiles.py).
TILE_MAX_UNITS = 128


def _kind(cell) -> int | None:
    return INFER_KINDS.get(type(cell))


def standard_reason(cell, x: Tensor, recurrent_mask: Tensor | None) -> str:
    """Why the tiles and the forward-only loop cannot run this cell, or '' when they can: a standard
    cell (SimpleRNN, LSTM without peepholes or coupling, GRU with reset_after) with one lag, no
    recurrent mask, no autocast."""
    if _kind(cell) is None:
        return f"no forward-only loop for {type(cell).__name__}"
    if isinstance(cell, LSTMCell) and (cell.peephole is not None or cell.coupled):
        return "no forward-only loop for peephole or coupled LSTMs"
    if isinstance(cell, GRUCell) and not cell.reset_after:
        return "no forward-only loop for reset_after=False"
    if cell.lags != (1,) or recurrent_mask is not None:
        return "the forward-only loop has one lag and no recurrent mask"
    if torch.is_autocast_enabled(x.device.type):
        return "autocast runs the training path"
    return ""


def inference_reason(cell, x: Tensor, state, recurrent_mask: Tensor | None) -> str:
    """Why this run cannot take the forward-only path (``ops.tile_infer`` or ``ops.infer``), or ''
    when it can: nothing records gradients and ``standard_reason`` has no objection."""
    if records_grad(cell, x, state):
        return "autograd records this run"
    return standard_reason(cell, x, recurrent_mask)


def tiles_fit(cell) -> bool:
    return cell.hidden_size <= TILE_MAX_UNITS


def _acts(cell) -> tuple[int, int]:
    cfg = _config(cell)
    return cfg["act"], cfg.get("ract", ACTIVATION_CODES[torch.sigmoid])


def infer(ops, cell, x: Tensor, state, mask: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The forward-only run: x (B, T, I) -> ys (B, T, H), final state; saves nothing."""
    kind = _kind(cell)
    m = None if mask is None else mask.to(x.dtype)
    c0 = state[1] if kind == 1 else None
    args = (x, state[0], c0, cell.weight_ih, cell.weight_hh, cell.bias,
            getattr(cell, "bias_hh", None), m, kind, *_acts(cell))
    if tiles_fit(cell):
        ys, h, c = ops.tile_infer(*args)
    else:
        ys, h, c = ops.infer(*args, split_batch(cell.weight_ih, cell.weight_hh))
    return ys, (h, c) if kind == 1 else (h,)


class CompiledTiles(torch.autograd.Function):
    """The standard cells on tiles, batch-major: x (B, T, I), h0 (and c0 for LSTM) (B, H) -> ys
    (B, T, H), h_T (and c_T). The input projection is part of it (x, W_ih and the biases are inputs),
    so no (T, B, G·H) projection or gradient exists outside the C++ loops."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, bias, bias_hh, m, ops, kind, act, ract):
        a, ghn, hbuf, cbuf = ops.tile_forward(x, h0, c0, w_ih, w_hh, bias, bias_hh, m, kind, act, ract)
        ctx.save_for_backward(x, w_ih, w_hh, a, ghn, hbuf, cbuf, m)
        ctx.set_materialize_grads(False)  # unused outputs' gradients stay None: no zeros of their size
        ctx.ops, ctx.cfg = ops, (kind, act, ract)
        ctx.grads_of = (bias is not None, bias_hh is not None)
        ys = hbuf[:, 1:]
        if m is not None:
            ys = ys * m.unsqueeze(-1)
        final = (hbuf[:, -1].clone(),) if kind != 1 else (hbuf[:, -1].clone(), cbuf[:, -1].clone())
        return ys, *final

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last, dc_last=None):
        x, w_ih, w_hh, a, ghn, hbuf, cbuf, m = ctx.saved_tensors
        kind, act, ract = ctx.cfg
        state = (x.shape[0], hbuf.shape[2])
        dys, dh_last, dc_last = _zeros_for_none(
            (dys, dh_last, dc_last if kind == 1 else dh_last),
            ((*x.shape[:2], hbuf.shape[2]), state, state), hbuf)
        dx, dh0, dc0, dw_ih, dw_hh, db, dbh = ctx.ops.tile_backward(
            dys, dh_last, dc_last if kind == 1 else None, x, w_ih, w_hh, a, ghn, hbuf, cbuf, m, kind,
            act, ract, ctx.needs_input_grad[0])
        has_bias, has_bias_hh = ctx.grads_of
        return (dx, dh0, dc0 if kind == 1 else None, dw_ih, dw_hh, db if has_bias else None,
                dbh if has_bias_hh else None, None, None, None, None, None)


def tiled(ops, cell, x: Tensor, state, mask: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The training run on tiles: x (B, T, I) -> ys (B, T, H), final state."""
    kind = _kind(cell)
    m = None if mask is None else mask.to(x.dtype).contiguous()
    c0 = state[1].contiguous() if kind == 1 else None
    ys, *final = CompiledTiles.apply(x.contiguous(), state[0].contiguous(), c0, cell.weight_ih,
                                     cell.weight_hh, cell.bias, getattr(cell, "bias_hh", None), m, ops,
                                     kind, *_acts(cell))
    return ys, tuple(final)


class CompiledKernel:
    name = "compiled"
    rank = 30

    def __init__(self):
        self._ops = None
        self._reason: str | None = None  # None: not built yet

    def ops(self) -> tuple[object | None, str]:
        """The extension's operators, built at first use; (None, reason) when the build failed."""
        if self._ops is None and self._reason is None:
            self._ops, self._reason = build()
        return self._ops, self._reason or ""

    def supports(self, cell, spec: ScanSpec) -> tuple[bool, str]:
        reason = cell_reason(cell)
        if not reason and spec.device.type != "cpu":
            reason = f"the C++ extension runs on CPU only, not {spec.device.type}"
        if not reason and spec.dtype not in (torch.float32, torch.float64):
            reason = f"the C++ extension takes float32 and float64, not {spec.dtype}"
        if reason:
            return False, reason
        ops, reason = self.ops()
        return ops is not None, reason

    def run(self, cell, x, state, mask, recurrent_mask):
        """x (B, T, I), state tuple of (B, H) -> ys (B, T, H), final state tuple."""
        ops, _ = self.ops()
        if not inference_reason(cell, x, state, recurrent_mask):
            return infer(ops, cell, x, state, mask)
        if tiles_fit(cell) and not standard_reason(cell, x, recurrent_mask):
            return tiled(ops, cell, x, state, mask)
        return run_time_major(functools.partial(_family, ops), cell, x, state, mask, recurrent_mask)


COMPILED = register(CompiledKernel())
