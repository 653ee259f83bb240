"""The gpu kernel: the fused families' hand-written BPTT with Triton pointwise kernels, on CUDA.

Dimension legend: B batch, T time, I input features, H units, G gates, K lags, L the largest lag.

For the cells cuDNN cannot run (peephole and coupled LSTM, GRU reset_after=False, lags, any of
linear/tanh/sigmoid/relu), haste's plan:
  * the input projection A·x_t + b for all t is one GEMM (``cell.project``, outside the Function);
  * per step, one torch GEMM for the recurrent term (cuBLAS) and one fused Triton kernel
    (``triton_cells``) for all the gate math, the mask and the state update; a full peephole matrix
    on C_t, and the reset gate of GRU reset_after=False, need a GEMM in between, so those take two;
  * the backward: per step one Triton kernel for the pointwise derivatives plus the recurrent GEMM
    into the gradient of the lag history; the recurrent weight gradients as one GEMM over all t.
The conventions are the fused kernel's (``engine/fused.py``): ``hbuf`` (L+T, B, H) holds h_t in slot
L+t with h0 in slots 0..L-1; masked steps carry every state and output zeros; a mask that is not
post-padding is compacted first when lags > 1. Derivatives come from activation outputs, so the
forward keeps activations (written over the pre-activations), h and C only.

``supports`` needs a CUDA device, triton importable, float32 or float64. ``backend="auto"`` never
takes it on CPU. ``triton_cells`` (and with it triton) is imported at the first run, never by
``import rnnkit``. Without a GPU the same code runs in Triton's interpreter:
``interpreter_kernel()`` gives an unregistered copy for CPU tensors, which the tests use.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
from torch import Tensor

from ..cells import GRUCell, LSTMCell, SimpleCell
from . import compiled
from .fused import (
    all_lags,
    first_order_only,
    grad_history,
    history,
    lag_at,
    peephole_weight_grad,
    recurrent_back,
    run_time_major,
    spread,
    weight_grad,
)
from .registry import ScanSpec, register

ACTIVATION_CODES = compiled.ACTIVATION_CODES
DTYPES = (torch.float32, torch.float64)


# -- loading triton_cells ----------------------------------------------------------------------------
def load_triton_cells(interpret: bool = False):
    """The ``triton_cells`` module, or (interpret=True) a separate copy of it whose kernels run in
    Triton's interpreter: executed with TRITON_INTERPRET=1, which ``@triton.jit`` reads when it
    decorates. triton itself is imported before, without it (its own jit functions and lazily
    imported modules expect the mode they were imported in), and the variable is restored right
    after, so nothing else is affected.
    """
    if not interpret:
        from . import triton_cells

        return triton_cells
    import triton  # noqa: F401
    origin = importlib.util.find_spec(f"{__package__}.triton_cells").origin
    spec = importlib.util.spec_from_file_location(f"{__package__}._triton_cells_interpreted",
                                                  origin)
    module = importlib.util.module_from_spec(spec)
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        spec.loader.exec_module(module)
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before
    return module


def triton_reason() -> str:
    """'' when triton can be imported, else why not (without importing it when it is absent)."""
    if importlib.util.find_spec("triton") is None:
        return "triton not installed"
    try:
        import triton  # noqa: F401
    except Exception as exc:  # a broken install: say what it raised rather than hide it
        return f"triton not importable: {type(exc).__name__}: {exc}"
    return ""


# -- the autograd Functions ------------------------------------------------------------------------
def _masks(m: Tensor | None, steps: int) -> list:
    """Per-step mask rows (B,) of m (T, B), or None for every step."""
    return [None] * steps if m is None else list(m.unbind(0))


def _outputs(hbuf: Tensor, lmax: int, m: Tensor | None) -> Tensor:
    """y_t = h_t on real steps, 0 on masked ones: (T, B, H)."""
    ys = hbuf[lmax:]
    return ys if m is None else ys * m.unsqueeze(-1)


def _grad_history(dys: Tensor, dh_last: Tensor, m: Tensor | None, lmax: int) -> Tensor:
    return grad_history(dys, dh_last, None if m is None else m.unsqueeze(-1), lmax)


class GPUSimple(torch.autograd.Function):
    """h_t = f(xw_t + (h_lags * rm) @ W^T): xw (T, B, H), h0 (B, H), w (H, K·H) -> ys, h_T."""

    @staticmethod
    def forward(ctx, xw, h0, w, m, rm, ops, cfg):
        steps, lags = xw.shape[0], cfg["lags"]
        lmax = lags[-1]
        hbuf = history(h0, steps, lmax)
        hs, xs, ms, wt = hbuf.unbind(0), xw.unbind(0), _masks(m, steps), w.t()
        for t in range(steps):
            # z_t into h_t's slot; the kernel applies f (and the mask) in place
            torch.addmm(xs[t], lag_at(hs, t, lags, lmax, rm), wt, out=hs[lmax + t])
            ops.simple_forward(hs[lmax + t], hs[lmax + t - 1], ms[t], cfg["act"])
        ctx.save_for_backward(hbuf, w, m, rm)
        ctx.ops, ctx.cfg = ops, cfg
        return _outputs(hbuf, lmax, m), hbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last):
        hbuf, w, m, rm = ctx.saved_tensors
        lags = ctx.cfg["lags"]
        lmax, steps = lags[-1], dys.shape[0]
        dh = _grad_history(dys, dh_last, m, lmax)
        dz = torch.empty_like(dh[lmax:])
        dhs, dzs, hs, ms = dh.unbind(0), dz.unbind(0), hbuf.unbind(0), _masks(m, steps)
        for t in range(steps - 1, -1, -1):
            ctx.ops.simple_backward(dhs[lmax + t], dhs[lmax + t - 1], hs[lmax + t], dzs[t], ms[t],
                                    ctx.cfg["act"])
            recurrent_back(dhs, t, dzs[t], w, lags, lmax, rm)
        dw = weight_grad(dz, all_lags(hbuf, steps, lags, rm))
        return dz, dh[:lmax].sum(0), dw, None, None, None, None


class GPULSTM(torch.autograd.Function):
    """LSTM, peephole (full or diagonal) and coupled: xw (T, B, G·H), h0 c0 (B, H) -> ys, h_T, c_T."""

    @staticmethod
    def forward(ctx, xw, h0, c0, w, peep_prev, peep_out, m, rm, ops, cfg):
        (steps, _, gh), hid, lags = xw.shape, h0.shape[1], cfg["lags"]
        lmax, full = lags[-1], cfg["peephole"] == "full"
        npre = cfg["prev_gates"] * hid
        diag_pp, diag_po = (None, None) if full else (peep_prev, peep_out)
        hbuf, cbuf = history(h0, steps, lmax), history(c0, steps, 1)
        a = torch.empty_like(xw)  # pre-activations, then (in place) activations
        hs, cs, as_, xs, ms, wt = (*(b.unbind(0) for b in (hbuf, cbuf, a, xw)), _masks(m, steps),
                                   w.t())
        for t in range(steps):
            at = torch.addmm(xs[t], lag_at(hs, t, lags, lmax, rm), wt, out=as_[t])
            if full:
                at[:, :npre].addmm_(cs[t], peep_prev.t())
            ops.lstm_forward(at, cs[t], cs[t + 1], hs[lmax + t - 1], hs[lmax + t], ms[t], diag_pp,
                             diag_po, cfg["act"], cfg["ract"], cfg["coupled"], True, not full)
            if full:  # o sees C_t through a matrix: a GEMM between the two halves
                at[:, gh - hid:].addmm_(cs[t + 1], peep_out.t())
                ops.lstm_forward(at, cs[t], cs[t + 1], hs[lmax + t - 1], hs[lmax + t], ms[t],
                                 None, None, cfg["act"], cfg["ract"], cfg["coupled"], False, True)
        ctx.save_for_backward(a, hbuf, cbuf, w, peep_prev, peep_out, m, rm)
        ctx.ops, ctx.cfg = ops, cfg
        return _outputs(hbuf, lmax, m), hbuf[-1].clone(), cbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last, dc_last):
        a, hbuf, cbuf, w, peep_prev, peep_out, m, rm = ctx.saved_tensors
        cfg, ops = ctx.cfg, ctx.ops
        lags, (steps, _, gh), hid = cfg["lags"], a.shape, hbuf.shape[2]
        lmax, full, npre = lags[-1], cfg["peephole"] == "full", cfg["prev_gates"] * hid
        diag_pp, diag_po = (None, None) if full else (peep_prev, peep_out)
        dh = _grad_history(dys, dh_last, m, lmax)
        dz = torch.empty_like(a)
        dc = torch.empty_like(cbuf[0]).copy_(dc_last)  # dL/dC_t, then dL/dC_{t-1}
        dhs, dzs, as_, cs, ms = (*(b.unbind(0) for b in (dh, dz, a, cbuf)), _masks(m, steps))
        flags = (cfg["act"], cfg["ract"], cfg["coupled"])
        for t in range(steps - 1, -1, -1):
            args = (as_[t], cs[t], cs[t + 1], dhs[lmax + t], dhs[lmax + t - 1], dc)
            dcx = None
            if full:
                ops.lstm_backward(*args, None, dzs[t], ms[t], None, None, *flags, False, True)
                dcx = dzs[t][:, gh - hid:] @ peep_out
            ops.lstm_backward(*args, dcx, dzs[t], ms[t], diag_pp, diag_po, *flags, True, not full)
            if full:
                dc.addmm_(dzs[t][:, :npre], peep_prev)
            recurrent_back(dhs, t, dzs[t], w, lags, lmax, rm)
        dw = weight_grad(dz, all_lags(hbuf, steps, lags, rm))
        dpp = None if peep_prev is None else peephole_weight_grad(dz[..., :npre], cbuf[:-1], full)
        dpo = None if peep_out is None else peephole_weight_grad(dz[..., gh - hid:], cbuf[1:], full)
        return dz, dh[:lmax].sum(0), dc, dw, dpp, dpo, None, None, None, None


class GPUGRU(torch.autograd.Function):
    """GRU, reset gate after the recurrent matmul: xw (T, B, 3H), h0 (B, H), w (3H, K·H) -> ys, h_T."""

    @staticmethod
    def forward(ctx, xw, h0, w, bias_hh, m, rm, ops, cfg):
        steps, lags = xw.shape[0], cfg["lags"]
        lmax = lags[-1]
        hbuf = history(h0, steps, lmax)
        gh = torch.empty_like(xw)  # (h_lags * rm) @ W^T + b_hh
        a = torch.empty_like(xw)  # r, z, n
        hs, ghs, as_, xs, ms, wt = (*(b.unbind(0) for b in (hbuf, gh, a, xw)), _masks(m, steps),
                                    w.t())
        for t in range(steps):
            hl = lag_at(hs, t, lags, lmax, rm)
            if bias_hh is None:
                torch.mm(hl, wt, out=ghs[t])
            else:
                torch.addmm(bias_hh, hl, wt, out=ghs[t])
            ops.gru_forward(xs[t], ghs[t], as_[t], hs[lmax + t - 1], hs[lmax + t], ms[t],
                            cfg["act"], cfg["ract"])
        ctx.save_for_backward(a, gh, hbuf, w, m, rm)
        ctx.ops, ctx.cfg, ctx.has_bias = ops, cfg, bias_hh is not None
        return _outputs(hbuf, lmax, m), hbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last):
        a, gh, hbuf, w, m, rm = ctx.saved_tensors
        lags, steps = ctx.cfg["lags"], a.shape[0]
        lmax = lags[-1]
        dh = _grad_history(dys, dh_last, m, lmax)
        dx, dgh = torch.empty_like(a), torch.empty_like(a)
        dhs, dxs, dghs, as_, ghs, hs = (b.unbind(0) for b in (dh, dx, dgh, a, gh, hbuf))
        ms = _masks(m, steps)
        for t in range(steps - 1, -1, -1):
            ctx.ops.gru_backward(as_[t], ghs[t], hs[lmax + t - 1], dhs[lmax + t], dhs[lmax + t - 1],
                                 dxs[t], dghs[t], ms[t], ctx.cfg["act"], ctx.cfg["ract"])
            recurrent_back(dhs, t, dghs[t], w, lags, lmax, rm)
        dw = weight_grad(dgh, all_lags(hbuf, steps, lags, rm))
        db = dgh.sum((0, 1)) if ctx.has_bias else None
        return dx, dh[:lmax].sum(0), dw, db, None, None, None, None


class GPUGRUResetBefore(torch.autograd.Function):
    """GRU with the reset gate on h before the matmul (reset_after=False): xw (T, B, 3H) -> ys, h_T."""

    @staticmethod
    def forward(ctx, xw, h0, w, m, rm, ops, cfg):
        (steps, batch, _), hid, lags = xw.shape, h0.shape[1], cfg["lags"]
        lmax = lags[-1]
        hbuf = history(h0, steps, lmax)
        a = torch.empty_like(xw)  # r, z, n
        rh = xw.new_empty(steps, batch, len(lags) * hid)  # r_t * h_lags (T, B, K·H)
        hs, as_, rhs, xs, ms = (*(b.unbind(0) for b in (hbuf, a, rh, xw)), _masks(m, steps))
        w_rz, w_n = w[:2 * hid].t(), w[2 * hid:].t()
        for t in range(steps):
            hl = lag_at(hs, t, lags, lmax, rm).contiguous()
            ops.gru_rb_gates(torch.addmm(xs[t][:, :2 * hid], hl, w_rz), hl, as_[t], rhs[t],
                             cfg["ract"])
            ops.gru_rb_out(torch.addmm(xs[t][:, 2 * hid:], rhs[t], w_n), as_[t], hs[lmax + t - 1],
                           hs[lmax + t], ms[t], cfg["act"])
        ctx.save_for_backward(a, rh, hbuf, w, m, rm)
        ctx.ops, ctx.cfg = ops, cfg
        return _outputs(hbuf, lmax, m), hbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last):
        a, rh, hbuf, w, m, rm = ctx.saved_tensors
        cfg, ops = ctx.cfg, ctx.ops
        lags, (steps, _, g3) = cfg["lags"], a.shape
        lmax, hid = lags[-1], g3 // 3
        hl_all = all_lags(hbuf, steps, lags, rm).contiguous()  # (T, B, K·H)
        dh = _grad_history(dys, dh_last, m, lmax)
        dx = torch.empty_like(a)
        dhs, dxs, as_, hs, hls = (b.unbind(0) for b in (dh, dx, a, hbuf, hl_all))
        ms = _masks(m, steps)
        w_rz, w_n = w[:2 * hid], w[2 * hid:]
        for t in range(steps - 1, -1, -1):
            ops.gru_rb_backward_zn(as_[t], hs[lmax + t - 1], dhs[lmax + t], dhs[lmax + t - 1],
                                   dxs[t], ms[t], cfg["act"], cfg["ract"])
            drh = dxs[t][:, 2 * hid:] @ w_n  # (B, K·H)
            ops.gru_rb_backward_r(drh, hls[t], as_[t], dxs[t], cfg["ract"])
            dhl = drh.addmm_(dxs[t][:, :2 * hid], w_rz)
            spread(dhs, t, dhl if rm is None else dhl * rm, lags, lmax)
        dw = torch.cat([weight_grad(dx[..., :2 * hid], hl_all),
                        weight_grad(dx[..., 2 * hid:], rh)], dim=0)
        return dx, dh[:lmax].sum(0), dw, None, None, None, None


# -- which cells -----------------------------------------------------------------------------------
def cell_reason(cell) -> str:
    """Why the gpu families (the compiled kernel's) cannot run this cell, or '' when they can."""
    return compiled.cell_reason(cell, "gpu")


def _config(cell) -> dict:
    cfg = {"lags": cell.lags, "act": ACTIVATION_CODES[cell.activation]}
    if isinstance(cell, (LSTMCell, GRUCell)):
        cfg["ract"] = ACTIVATION_CODES[cell.recurrent_activation]
    if isinstance(cell, LSTMCell):
        cfg.update(coupled=cell.coupled, peephole=cell.peephole, prev_gates=cell.prev_peep_gates)
    return cfg


def _family(ops, cell, xw, state, mask, recurrent_mask):
    """run_time_major's family for this kernel: (T, B, G·H) inputs, float (T, B) masks."""
    xw = xw.view(-1, state[0].shape[0], xw.shape[-1])
    m = None if mask is None else mask.t().to(xw.dtype).contiguous()  # (T, B)
    rm = None if recurrent_mask is None else recurrent_mask.to(xw.dtype)
    return _run_family(ops, cell, xw, tuple(s.contiguous() for s in state), m, rm)


def _run_family(ops, cell, xw, state, m, rm):
    """xw (T, B, G·H) time-major, m (T, B) float or None -> ys (T, B, H), final state."""
    cfg = _config(cell)
    if isinstance(cell, SimpleCell):
        return GPUSimple.apply(xw, state[0], cell.weight_hh, m, rm, ops, cfg)
    if isinstance(cell, LSTMCell):
        peeps = [getattr(cell, n, None) for n in ("peep_prev", "peep_out")]
        peeps = [None if p is None else p.contiguous() for p in peeps]
        return GPULSTM.apply(xw, *state, cell.weight_hh, *peeps, m, rm, ops, cfg)
    if cell.reset_after:
        return GPUGRU.apply(xw, state[0], cell.weight_hh, cell.bias_hh, m, rm, ops, cfg)
    return GPUGRUResetBefore.apply(xw, state[0], cell.weight_hh, m, rm, ops, cfg)


class GPUKernel:
    """Registered as "gpu" for CUDA tensors; ``interpret=True`` is the CPU test copy."""

    def __init__(self, name: str = "gpu", rank: int = 25, interpret: bool = False):
        self.name, self.rank, self.interpret = name, rank, interpret
        self.device_type = "cpu" if interpret else "cuda"
        self._ops = None

    def ops(self):
        if self._ops is None:
            self._ops = load_triton_cells(self.interpret)
        return self._ops

    def supports(self, cell, spec: ScanSpec) -> tuple[bool, str]:
        if spec.device.type != self.device_type:
            where = "Triton's interpreter runs on CPU tensors" if self.interpret else \
                "the gpu kernel needs a CUDA device"
            reason = f"{where}, got {spec.device.type}"
        elif spec.dtype not in DTYPES:
            reason = f"the gpu kernel takes float32 and float64, not {spec.dtype}"
        else:
            reason = cell_reason(cell) or triton_reason()
        return not reason, reason

    def run(self, cell, x, state, mask, recurrent_mask):
        """x (B, T, I), state tuple of (B, H) -> ys (B, T, H), final state tuple."""
        ops = self.ops()
        return run_time_major(functools.partial(_family, ops), cell, x, state, mask, recurrent_mask)


GPU = register(GPUKernel())


def interpreter_kernel() -> GPUKernel:
    """The gpu kernel for CPU tensors, its Triton kernels run by Triton's interpreter.

    For tests on machines without a GPU: not registered, so ``backend="auto"`` never sees it;
    to run it through ``scan`` a test registers it for the test's duration. Its rank (1000) is
    behind the reference kernel's, which runs everything.
    """
    return GPUKernel(name="gpu_interpreter", rank=1000, interpret=True)
