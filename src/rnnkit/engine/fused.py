"""The fused kernel: one autograd.Function per cell family with hand-written BPTT.

Dimension legend: B batch, T time, I input features, H units, G gates, K lags, L the largest lag,
O feedback outputs, C the steps of one backward block (``block_steps``).

Each family follows the same plan (haste's and ATen's):
  * the input projection A·x_t + b for every t is one GEMM (``cell.project``, outside the Function,
    so autograd gives its weight gradients as one GEMM over all t too), on x made time-major first:
    only x (I wide) is ever transposed, never the G·H-wide projection or its gradient;
  * a tight forward loop, time-major, writing states, gate activations and, only where a derivative
    needs them, pre-activations into preallocated buffers;
  * a tight backward loop that needs only the recurrent GEMM and a few pointwise products per step.
    The factors that do not depend on the incoming gradient (σ'(z), tanh'(c), ...) are computed
    vectorised over a block of C steps at a time, walking backward (C ≤ 64 and C ≤ T/8), so their
    scratch is a few (C, B, H) and never T long; a factor shaped like a slice of the input gradient
    is written into that slice and scaled in place by its step. Where the only factor is f'(z) of
    an output h = f(z) with f tanh or sigmoid (SimpleCell, FeedbackCell), aten's own backward
    kernel applies it per step from h, with no factor buffer at all;
  * the recurrent weight gradients as GEMMs over all t after the loop (per block where an operand
    would otherwise need a T-long copy: a recurrent mask, a GRU's reset-scaled gradient).

Memory: the backward allocates no (T, B, ·H) buffer besides the input gradient it returns. The
gradient of h_t accumulates in a slice of that input gradient (dz_o for LSTM, dz_r for GRU, dz for
the others), which step t reads before it writes its own gradient there. Derivatives that follow
from a stored output (tanh, sigmoid, linear) are taken from it, so neither pre-activations nor
act(c) are kept for them. benchmarks/bench_memory.py counts the block scratch.

History: ``hbuf`` (L+T, B, H) holds h_{t} in slot L+t; slots 0..L-1 hold h0 (the reference's lag
history starts as h0). Masked steps carry every state and output zeros. Under a mask that is not
post-padding, lags > 1 would read the wrong history from the time-major buffer, so the real steps
of each row are first gathered to its front (a masked step is the identity, so this is exact).
Double backward is not supported: it raises (``first_order_only``) rather than
silently dropping the second-order terms of the recurrence.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import activations
from ..cells import FeedbackCell, GRUCell, LSTMCell, SimpleCell, TeacherForcedCell
from .registry import ScanSpec, register

_ELEMENTWISE_NAMES = (
    "linear", "tanh", "relu", "sigmoid", "hard_sigmoid", "elu", "selu", "gelu", "softplus",
    "softsign", "swish", "silu", "exponential", "leaky_relu",
)
_ELEMENTWISE = {activations.get(n) for n in _ELEMENTWISE_NAMES}


def first_order_only(backward):
    """Run a hand-written backward without a graph; refuse create_graph=True with a clear error."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "the fused kernel's hand-written BPTT is first order only: double backward "
                "(create_graph=True) needs backend='reference'"
            )
        return backward(ctx, *grads)

    return wrapper


# -- shared pieces ----------------------------------------------------------------------------
BLOCK = 64  # most steps whose backward factors are held at once


def autograd_deriv(fn, z: Tensor) -> Tensor:
    """fn'(z) for any elementwise activation, through autograd: shapes of z."""
    with torch.enable_grad():
        leaf = z.detach().requires_grad_()
        a = fn(leaf)
        (da,) = torch.autograd.grad(a, leaf, torch.ones_like(a))
    return da


FROM_OUTPUT = (torch.tanh, torch.sigmoid, activations.linear)  # fn' follows from fn(z) alone


def deriv(fn, z: Tensor | None, a: Tensor) -> Tensor:
    """fn'(z) given a = fn(z), for a block of steps: from a alone for FROM_OUTPUT (z may be None)."""
    if fn is torch.tanh:
        return 1 - a * a
    if fn is torch.sigmoid:
        return a - a * a
    if fn is activations.linear:
        return torch.ones_like(a)
    return autograd_deriv(fn, z)


# aten's own backward kernels: g * fn'(z) from a = fn(z) in one pass
BACKWARD_FROM_OUTPUT = {torch.tanh: torch.ops.aten.tanh_backward.grad_input,
                        torch.sigmoid: torch.ops.aten.sigmoid_backward.grad_input}


def step_derivs(fn, z: Tensor | None, t0: int, t1: int) -> list[Tensor | None]:
    """fn'(z_t) for t in [t0, t1), per step, for ``scale``; Nones where it needs none (FROM_OUTPUT)."""
    return [None] * (t1 - t0) if fn in FROM_OUTPUT else autograd_deriv(fn, z[t0:t1]).unbind(0)


def scale(fn, g: Tensor, a: Tensor, d: Tensor | None, out: Tensor) -> Tensor:
    """out <- g * fn'(z) for one step (B, N), given a = fn(z) or d = fn'(z) from ``step_derivs``."""
    if d is not None:
        return torch.mul(g, d, out=out)
    if fn is activations.linear:
        return out.copy_(g)
    return BACKWARD_FROM_OUTPUT[fn](g, a, grad_input=out)


def apply_into(fn, z: Tensor, out: Tensor) -> Tensor:
    """out <- fn(z) without a temporary where torch has an out= variant."""
    if fn is torch.tanh or fn is torch.sigmoid:
        return fn(z, out=out)
    return out.copy_(fn(z))


def block_steps(steps: int) -> int:
    """C: at most BLOCK steps, and at most T/8, so that block scratch stays small beside T-long state."""
    return max(1, min(BLOCK, -(-steps // 8)))


def blocks(steps: int):
    """The blocks [t0, t1) of C steps that cover [0, T), the last one first."""
    size = block_steps(steps)
    for t1 in range(steps, 0, -size):
        yield max(t1 - size, 0), t1


def preactivations(like: Tensor, steps: int, shape, keep: bool):
    """A (T, *shape) buffer for pre-activations and its per-step views; where the backward does not
    need them (keep False), None and one scratch of the step's shape for every step."""
    if keep:
        buf = like.new_empty(steps, *shape)
        return buf, buf.unbind(0)
    return None, [like.new_empty(shape)] * steps


def history(h0: Tensor, steps: int, lmax: int) -> Tensor:
    """(L+T, B, H) buffer whose first L slots are h0."""
    buf = h0.new_empty(lmax + steps, *h0.shape)
    buf[:lmax] = h0
    return buf


def lag_at(slots: list[Tensor], t: int, lags, lmax: int, rm: Tensor | None) -> Tensor:
    """[h_{t-l} for l in lags] (B, K·H), times the recurrent mask."""
    hl = slots[lmax + t - 1] if lags == (1,) else torch.cat([slots[lmax + t - l] for l in lags], 1)
    return hl if rm is None else hl * rm


def all_lags(hbuf: Tensor, steps: int, lags, rm: Tensor | None, start: int = 0) -> Tensor:
    """lag_at for t in [start, start + steps): (steps, B, K·H); a view of hbuf for one lag, no mask."""
    lmax, t0, t1 = lags[-1], start, start + steps
    if lags == (1,) and rm is None:
        return hbuf[lmax - 1 + t0:lmax - 1 + t1]
    hl = torch.cat([hbuf[lmax - l + t0:lmax - l + t1] for l in lags], dim=2)
    return hl if rm is None else hl * rm


def store(slots: list[Tensor], i: int, new: Tensor, m: list[Tensor] | None, t: int) -> None:
    """slot i <- new, or the previous slot's value where step t is masked."""
    if m is None:
        if new.data_ptr() != slots[i].data_ptr():
            slots[i].copy_(new)
    else:
        torch.where(m[t], new, slots[i - 1], out=slots[i])


def outputs(hbuf: Tensor, lmax: int, m: Tensor | None) -> Tensor:
    """y_t = h_t on real steps, 0 on masked ones: (T, B, H)."""
    ys = hbuf[lmax:]
    return ys if m is None else ys * m


def grad_history(dys: Tensor, dh_last: Tensor, m: Tensor | None, lmax: int) -> Tensor:
    """Gradient buffer shaped like hbuf: dys (masked steps output constants) plus dh_T.

    The GPU kernel's; the fused backward accumulates in place instead (``grad_slots``).
    """
    dh = dys.new_zeros(lmax + dys.shape[0], *dys.shape[1:])
    dh[lmax:] = dys if m is None else dys * m
    dh[-1] += dh_last
    return dh


def grad_slots(acc: Tensor, dys: Tensor, dh_last: Tensor, m: Tensor | None, lmax: int):
    """Gradient slots shaped like hbuf's: (dh0 (L, B, H), [slot 0, ..., slot L+T-1] each (B, H)).

    Slot L+t is acc[t], a (T, B, H) slice of the input gradient that step t overwrites only after
    reading the slot, so dh needs no T-long buffer. It starts as dys (masked steps output
    constants) plus dh_T.
    """
    if m is None:
        acc.copy_(dys)
    else:
        torch.mul(dys, m, out=acc)
    dh0 = acc.new_zeros(lmax, *acc.shape[1:])
    slots = [*dh0.unbind(0), *acc.unbind(0)]
    slots[-1] += dh_last
    return dh0, slots


def carry_back(dh_slots: list[Tensor], i: int, keep, mf, t: int) -> Tensor:
    """Split slot i's gradient: a masked step passes it to slot i-1; returns the new-state part."""
    g = dh_slots[i]
    if keep is None:
        return g
    dh_slots[i - 1].addcmul_(g, keep[t])
    return g * mf[t]


def spread(dh_slots: list[Tensor], t: int, dhl: Tensor, lags, lmax: int) -> None:
    """Add the gradient of [h_{t-l} for l in lags] (B, K·H) into the history slots."""
    hid = dh_slots[0].shape[1]
    for k, l in enumerate(lags):
        dh_slots[lmax + t - l].add_(dhl[:, k * hid:(k + 1) * hid])


def recurrent_back(dh_slots, t: int, dz: Tensor, w: Tensor, lags, lmax: int, rm) -> None:
    """Backprop dz (B, G·H) through z = (h_lags * rm) @ W^T into the history slots."""
    if lags == (1,) and rm is None:
        dh_slots[lmax + t - 1].addmm_(dz, w)
        return
    dhl = dz @ w  # (B, K·H)
    spread(dh_slots, t, dhl if rm is None else dhl * rm, lags, lmax)


def mask_lists(m: Tensor | None, dtype):
    """Per-step views of the mask (T, B, 1): bools, and floats m and 1 - m."""
    if m is None:
        return None, None, None
    mf = m.to(dtype)
    return m.unbind(0), mf.unbind(0), (1 - mf).unbind(0)


def weight_grad(dz: Tensor, inputs: Tensor) -> Tensor:
    """Σ_t dz_t^T inputs_t as one GEMM: (T, B, N), (T, B, M) -> (N, M)."""
    return dz.flatten(0, 1).t() @ inputs.flatten(0, 1)


def lag_weight_grad(dz: Tensor, hbuf: Tensor, lags, rm: Tensor | None) -> Tensor:
    """Σ_t dz_t^T (h_lags_t * rm): dz (T, B, N) -> (N, K·H); one GEMM for one lag and no mask,
    else one per block, so that the lagged history is never copied whole."""
    steps = dz.shape[0]
    if lags == (1,) and rm is None:
        return weight_grad(dz, all_lags(hbuf, steps, lags, rm))
    return sum((weight_grad(dz[t0:t1], all_lags(hbuf, t1 - t0, lags, rm, t0))
                for t0, t1 in blocks(steps)), dz.new_zeros(dz.shape[2], len(lags) * hbuf.shape[2]))


# -- SimpleCell / TeacherForcedCell -----------------------------------------------------------
class SimpleScan(torch.autograd.Function):
    """h_t = f(xw_t + (h_lags * rm) @ W^T) for an elementwise f."""

    @staticmethod
    def forward(ctx, xw, h0, w, m, rm, act, lags):
        """xw (T, B, H), h0 (B, H), w (H, K·H), m (T, B, 1) bool, rm (B, K·H) -> ys, h_T."""
        steps, lmax = xw.shape[0], lags[-1]
        hbuf = history(h0, steps, lmax)
        z, zs = preactivations(xw, steps, xw.shape[1:], act not in FROM_OUTPUT)
        slots, xs, ms = hbuf.unbind(0), xw.unbind(0), mask_lists(m, xw.dtype)[0]
        wt = w.t()
        for t in range(steps):
            zt = torch.addmm(xs[t], lag_at(slots, t, lags, lmax, rm), wt, out=zs[t])
            h = apply_into(act, zt, slots[lmax + t]) if ms is None else act(zt)
            store(slots, lmax + t, h, ms, t)
        ctx.save_for_backward(z, hbuf, w, m, rm)
        ctx.act, ctx.lags = act, lags
        return outputs(hbuf, lmax, m), hbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last):
        z, hbuf, w, m, rm = ctx.saved_tensors
        lags, lmax, steps = ctx.lags, ctx.lags[-1], dys.shape[0]
        dz = torch.empty_like(hbuf[lmax:])  # (T, B, H); dz[t] holds dh_t until step t reads it
        dh0, dh_slots = grad_slots(dz, dys, dh_last, m, lmax)
        dzs = dh_slots[lmax:]
        hs, act = hbuf.unbind(0), ctx.act
        _, mf, keep = mask_lists(m, dz.dtype)
        for t0, t1 in blocks(steps):
            das = step_derivs(act, z, t0, t1)
            for t in range(t1 - 1, t0 - 1, -1):
                g = carry_back(dh_slots, lmax + t, keep, mf, t)
                dzt = scale(act, g, hs[lmax + t], das[t - t0], dzs[t])
                recurrent_back(dh_slots, t, dzt, w, lags, lmax, rm)
        dw = lag_weight_grad(dz, hbuf, lags, rm)
        return dz, dh0.sum(0), dw, None, None, None, None


# -- LSTMCell ----------------------------------------------------------------------------------
def peep_forward(z: Tensor, c: Tensor, weight: Tensor, full: bool) -> None:
    """z (B, P·H) += peephole(c (B, H)) in place: c @ weight^T, or c * weight per gate."""
    if full:
        z.addmm_(c, weight.t())
    else:
        z.view(c.shape[0], -1, c.shape[1]).addcmul_(c.unsqueeze(1), weight.view(-1, c.shape[1]))


class LSTMScan(torch.autograd.Function):
    """LSTM, peephole (full or diagonal) and coupled; see ``cells.lstm`` for the equations.

    The forward keeps the activations a of every gate (pre-activations z only for activations
    whose derivative needs them) and c; the backward recomputes act(c) block by block.
    """

    @staticmethod
    def forward(ctx, xw, h0, c0, w, peep_prev, peep_out, m, rm, cfg):
        """xw (T, B, G·H), h0 c0 (B, H), w (G·H, K·H) -> ys (T, B, H), h_T, c_T."""
        steps, lmax, hid = xw.shape[0], cfg.lags[-1], h0.shape[1]
        gh, npre, full = xw.shape[2], cfg.prev_gates * hid, cfg.peephole == "full"
        hbuf, cbuf = history(h0, steps, lmax), history(c0, steps, 1)
        wt, sig, act = w.t(), cfg.ract, cfg.act
        z, zs = preactivations(xw, steps, xw.shape[1:], sig not in FROM_OUTPUT or act not in FROM_OUTPUT)
        a, tc = torch.empty_like(xw), torch.empty_like(h0)
        hs, cs, as_, xs = (b.unbind(0) for b in (hbuf, cbuf, a, xw))
        ms = mask_lists(m, xw.dtype)[0]
        gate = slice(hid, 2 * hid) if cfg.coupled else slice(2 * hid, 3 * hid)
        for t in range(steps):
            zt, at, c_prev = zs[t], as_[t], cs[t]
            torch.addmm(xs[t], lag_at(hs, t, cfg.lags, lmax, rm), wt, out=zt)
            if peep_prev is not None:
                peep_forward(zt[:, :npre], c_prev, peep_prev, full)
            apply_into(sig, zt, at)  # every gate; g is overwritten next, o too with peepholes
            apply_into(act, zt[:, gate], at[:, gate])
            c_out = cs[t + 1] if ms is None else None
            if cfg.coupled:  # c = f * c_prev + (1 - f) * g
                c = torch.lerp(at[:, gate], c_prev, at[:, :hid], out=c_out)
            else:
                c = torch.addcmul(at[:, hid:2 * hid] * c_prev, at[:, :hid], at[:, gate], out=c_out)
            store(cs, t + 1, c, ms, t)
            if peep_out is not None:
                peep_forward(zt[:, gh - hid:], c, peep_out, full)
                apply_into(sig, zt[:, gh - hid:], at[:, gh - hid:])
            apply_into(act, c, tc)  # (B, H) scratch: the backward recomputes act(c)
            h_out = hs[lmax + t] if ms is None else None
            store(hs, lmax + t, torch.mul(at[:, gh - hid:], tc, out=h_out), ms, t)
        ctx.save_for_backward(z, a, hbuf, cbuf, w, peep_prev, peep_out, m, rm)
        ctx.cfg = cfg
        return outputs(hbuf, lmax, m), hbuf[-1].clone(), cbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last, dc_last):
        z, a, hbuf, cbuf, w, peep_prev, peep_out, m, rm = ctx.saved_tensors
        cfg = ctx.cfg
        lags, lmax, (steps, batch, gh) = cfg.lags, cfg.lags[-1], a.shape
        hid, full = hbuf.shape[2], cfg.peephole == "full"
        npre, ng = cfg.prev_gates * hid, gh // hid - 1  # ng gates before o
        dz = torch.empty_like(a)  # (T, B, G·H); dz_o[t] holds dh_t until step t reads it
        dh0, dh_slots = grad_slots(dz[..., gh - hid:], dys, dh_last, m, lmax)
        dzs = dz.unbind(0)
        _, mf, keep = mask_lists(m, a.dtype)

        def run_block(t0, t1, dc_run):
            """Steps t1-1 down to t0; the block's factors die on return, before the next block's."""
            zb = None if z is None else z[t0:t1]
            f, po, qc = lstm_factors(dz[t0:t1], zb, a[t0:t1], cbuf[t0:t1 + 1], cfg)
            fs, pos, qcs = f.unbind(0), po.unbind(0), qc.unbind(0)
            for t in range(t1 - 1, t0 - 1, -1):
                j = t - t0
                g = carry_back(dh_slots, lmax + t, keep, mf, t)
                if keep is not None:
                    dc_carry, dc_run = dc_run * keep[t], dc_run * mf[t]
                dzt = dzs[t]
                dc = torch.addcmul(dc_run, g, qcs[j])  # before dz_o overwrites g
                dzo = torch.mul(g, pos[j], out=dzt[:, gh - hid:])
                if peep_out is not None:
                    dc += peephole_grad_c(dzo, peep_out, full, hid)
                dzt[:, :gh - hid].view(batch, ng, hid).mul_(dc.unsqueeze(1))  # k * dc
                dc_run = dc * fs[j]
                if peep_prev is not None:
                    dc_run += peephole_grad_c(dzt[:, :npre], peep_prev, full, hid)
                if keep is not None:
                    dc_run += dc_carry
                recurrent_back(dh_slots, t, dzt, w, lags, lmax, rm)
            return dc_run

        dc_run = dc_last.clone()
        for t0, t1 in blocks(steps):
            dc_run = run_block(t0, t1, dc_run)
        dw = lag_weight_grad(dz, hbuf, lags, rm)
        dpp = None if peep_prev is None else peephole_weight_grad(dz[..., :npre], cbuf[:-1], full)
        dpo = None if peep_out is None else peephole_weight_grad(dz[..., gh - hid:], cbuf[1:], full)
        return dz, dh0.sum(0), dc_run, dw, dpp, dpo, None, None, None


def lstm_factors(dz: Tensor, z: Tensor | None, a: Tensor, cbuf: Tensor, cfg):
    """What the LSTM backward loop needs that does not depend on the gradient, for C steps.

    z, a (C, B, G·H) gate pre-activations (None when not needed) and activations, cbuf (C+1, B, H)
    c_{t-1} and c_t. Writes k into dz[..., :(G-1)·H] (C, B, (G-1)·H), so that dz_gates = k * dc
    in place; returns f (C, B, H), po with dz_o = dh * po and qc with dc += dh * qc (C, B, H).
    Temporaries die within their statement: the scratch peaks at four (C, B, H).
    """
    hid = cbuf.shape[2]
    c_prev, c = cbuf[:-1], cbuf[1:]
    k = dz[..., :a.shape[2] - hid]

    def act(j):
        return a[..., j * hid:(j + 1) * hid]

    def grad(j, fn):
        return deriv(fn, None if z is None else z[..., j * hid:(j + 1) * hid], act(j))

    if cfg.coupled:  # c = f * c_prev + (1 - f) * g
        f = act(0)
        torch.mul(c_prev - act(1), grad(0, cfg.ract), out=k[..., :hid])
        torch.mul(1 - f, grad(1, cfg.act), out=k[..., hid:])
    else:
        f = act(1)
        torch.mul(act(2), grad(0, cfg.ract), out=k[..., :hid])
        torch.mul(c_prev, grad(1, cfg.ract), out=k[..., hid:2 * hid])
        torch.mul(act(0), grad(2, cfg.act), out=k[..., 2 * hid:])
    o = a.shape[2] // hid - 1
    tc = cfg.act(c)
    po = tc * grad(o, cfg.ract)
    return f, po, act(o) * deriv(cfg.act, c, tc)


def peephole_grad_c(dz: Tensor, weight: Tensor, full: bool, hid: int) -> Tensor:
    """Gradient into c (B, H) from dz (B, P·H) through the peephole term."""
    if full:
        return dz @ weight
    return (dz * weight).view(dz.shape[0], -1, hid).sum(1)


def peephole_weight_grad(dz: Tensor, c: Tensor, full: bool) -> Tensor:
    """Σ_t of the peephole weight gradient: dz (T, B, P·H), c (T, B, H) -> (P·H, H) or (P·H,)."""
    if full:
        return weight_grad(dz, c)
    hid = c.shape[2]
    return sum(((dz[t0:t1].reshape(t1 - t0, c.shape[1], -1, hid) * c[t0:t1].unsqueeze(2)).sum((0, 1))
                for t0, t1 in blocks(c.shape[0])), dz.new_zeros(dz.shape[2] // hid, hid)).flatten()


# -- GRUCell -----------------------------------------------------------------------------------
def gru_factors(dx: Tensor, h_prev: Tensor, zrz: Tensor, zn: Tensor, cfg):
    """What the GRU backward loop needs that does not depend on the gradient, for C steps.

    zrz (C, B, 2H), zn (C, B, H) pre-activations, h_prev (C, B, H). Writes [∂h/∂z_pre, ∂h/∂n_pre]
    into dx[..., H:] (C, B, 2H), so that both are scaled by dh in place; returns rz (C, B, 2H)
    [r, z] and σ'(r_pre) (C, B, H).
    """
    hid = zn.shape[2]
    rz, n = cfg.ract(zrz), cfg.act(zn)
    torch.mul(h_prev - n, deriv(cfg.ract, zrz[..., hid:], rz[..., hid:]), out=dx[..., hid:2 * hid])
    torch.mul(1 - rz[..., hid:], deriv(cfg.act, zn, n), out=dx[..., 2 * hid:])
    return rz, deriv(cfg.ract, zrz[..., :hid], rz[..., :hid])


class GRUScan(torch.autograd.Function):
    """GRU with the reset gate after the recurrent matmul (torch's, Keras 3's default)."""

    @staticmethod
    def forward(ctx, xw, h0, w, bias_hh, m, rm, cfg):
        """xw (T, B, 3H), h0 (B, H), w (3H, K·H), bias_hh (3H,) -> ys (T, B, H), h_T."""
        steps, lmax, hid = xw.shape[0], cfg.lags[-1], h0.shape[1]
        hbuf = history(h0, steps, lmax)
        gh = torch.empty_like(xw)  # (T, B, 3H): (h_lags * rm) @ W^T + b_hh
        zrz = xw.new_empty(steps, *h0.shape[:1], 2 * hid)  # pre-activations of r, z
        zn = torch.empty_like(hbuf[lmax:])  # pre-activation of n
        hs, ghs, zrzs, zns, xs = (b.unbind(0) for b in (hbuf, gh, zrz, zn, xw))
        ms = mask_lists(m, xw.dtype)[0]
        wt, sig, act = w.t(), cfg.ract, cfg.act
        for t in range(steps):
            hl = lag_at(hs, t, cfg.lags, lmax, rm)
            if bias_hh is None:
                ght = torch.mm(hl, wt, out=ghs[t])
            else:
                ght = torch.addmm(bias_hh, hl, wt, out=ghs[t])
            rz = sig(torch.add(xs[t][:, :2 * hid], ght[:, :2 * hid], out=zrzs[t]))
            n = act(torch.addcmul(xs[t][:, 2 * hid:], rz[:, :hid], ght[:, 2 * hid:], out=zns[t]))
            h_out = hs[lmax + t] if ms is None else None
            store(hs, lmax + t, torch.lerp(n, hs[lmax + t - 1], rz[:, hid:], out=h_out), ms, t)
        ctx.save_for_backward(hbuf, gh, zrz, zn, w, m, rm)
        ctx.cfg, ctx.has_bias = cfg, bias_hh is not None
        return outputs(hbuf, lmax, m), hbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last):
        hbuf, gh, zrz, zn, w, m, rm = ctx.saved_tensors
        cfg = ctx.cfg
        lags, lmax, (steps, batch, hid) = cfg.lags, cfg.lags[-1], zn.shape
        dxw = torch.empty_like(gh)  # (T, B, 3H); dx_r[t] holds dh_t until step t reads it
        dh0, dh_slots = grad_slots(dxw[..., :hid], dys, dh_last, m, lmax)
        dxs = dxw.unbind(0)
        dgt = gh.new_empty(batch, 3 * hid)  # gradient of gh_t
        dw_n = torch.zeros_like(w[2 * hid:])
        db_n = gh.new_zeros(hid) if ctx.has_bias else None
        _, mf, keep = mask_lists(m, zn.dtype)

        def run_block(t0, t1):
            """Steps t1-1 down to t0; the block's factors die on return, before the next block's."""
            h_prev = hbuf[lmax - 1 + t0:lmax - 1 + t1]
            rz, dr_pre = gru_factors(dxw[t0:t1], h_prev, zrz[t0:t1], zn[t0:t1], cfg)
            prs = dr_pre.mul_(gh[t0:t1, :, 2 * hid:]).unbind(0)
            rs, zgs = rz[..., :hid].unbind(0), rz[..., hid:].unbind(0)
            for t in range(t1 - 1, t0 - 1, -1):
                j = t - t0
                g = carry_back(dh_slots, lmax + t, keep, mf, t)
                dh_slots[lmax + t - 1].addcmul_(g, zgs[j])  # before dx_r overwrites g
                dx = dxs[t]
                dx[:, hid:].view(batch, 2, hid).mul_(g.unsqueeze(1))  # dz_pre, dn_pre
                torch.mul(dx[:, 2 * hid:], prs[j], out=dx[:, :hid])  # dr_pre
                dgt[:, :2 * hid] = dx[:, :2 * hid]
                torch.mul(dx[:, 2 * hid:], rs[j], out=dgt[:, 2 * hid:])
                recurrent_back(dh_slots, t, dgt, w, lags, lmax, rm)
            dgn = dxw[t0:t1, :, 2 * hid:] * rz[..., :hid]  # gradient of gh_n, (C, B, H)
            dw_n.add_(weight_grad(dgn, all_lags(hbuf, t1 - t0, lags, rm, t0)))
            if db_n is not None:
                db_n.add_(dgn.sum((0, 1)))

        for t0, t1 in blocks(steps):
            run_block(t0, t1)
        dw = torch.cat([lag_weight_grad(dxw[..., :2 * hid], hbuf, lags, rm), dw_n], dim=0)
        db = None if db_n is None else torch.cat([dxw[..., :2 * hid].sum((0, 1)), db_n])
        return dxw, dh0.sum(0), dw, db, None, None, None


class GRUResetBeforeScan(torch.autograd.Function):
    """GRU with the reset gate on h before the matmul (Cho; the lecture): reset_after=False."""

    @staticmethod
    def forward(ctx, xw, h0, w, m, rm, cfg):
        """xw (T, B, 3H), h0 (B, H), w (3H, K·H) -> ys (T, B, H), h_T."""
        steps, lmax, hid = xw.shape[0], cfg.lags[-1], h0.shape[1]
        nlags = len(cfg.lags)
        hbuf = history(h0, steps, lmax)
        zrz = xw.new_empty(steps, h0.shape[0], 2 * hid)
        zn = torch.empty_like(hbuf[lmax:])
        rh = xw.new_empty(steps, h0.shape[0], nlags * hid)  # r_t * h_lags, (T, B, K·H)
        hs, zrzs, zns, rhs, xs = (b.unbind(0) for b in (hbuf, zrz, zn, rh, xw))
        ms = mask_lists(m, xw.dtype)[0]
        w_rz, w_n = w[:2 * hid].t(), w[2 * hid:].t()
        for t in range(steps):
            hl = lag_at(hs, t, cfg.lags, lmax, rm)
            rz = cfg.ract(torch.addmm(xs[t][:, :2 * hid], hl, w_rz, out=zrzs[t]))
            r = rz[:, :hid] if nlags == 1 else rz[:, :hid].repeat(1, nlags)
            zt = torch.addmm(xs[t][:, 2 * hid:], torch.mul(r, hl, out=rhs[t]), w_n, out=zns[t])
            h_out = hs[lmax + t] if ms is None else None
            h = torch.lerp(cfg.act(zt), hs[lmax + t - 1], rz[:, hid:], out=h_out)
            store(hs, lmax + t, h, ms, t)
        ctx.save_for_backward(hbuf, zrz, zn, rh, w, m, rm)
        ctx.cfg = cfg
        return outputs(hbuf, lmax, m), hbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last):
        hbuf, zrz, zn, rh, w, m, rm = ctx.saved_tensors
        cfg = ctx.cfg
        lags, lmax, (steps, batch, hid) = cfg.lags, cfg.lags[-1], zn.shape
        nlags = len(lags)
        dxw = zn.new_empty(steps, batch, 3 * hid)  # dx_r[t] holds dh_t until step t reads it
        dh0, dh_slots = grad_slots(dxw[..., :hid], dys, dh_last, m, lmax)
        dxs = dxw.unbind(0)
        w_rz, w_n = w[:2 * hid], w[2 * hid:]
        _, mf, keep = mask_lists(m, zn.dtype)

        def run_block(t0, t1):
            """Steps t1-1 down to t0; the block's factors die on return, before the next block's."""
            h_prev = hbuf[lmax - 1 + t0:lmax - 1 + t1]
            rz, dr_pre = gru_factors(dxw[t0:t1], h_prev, zrz[t0:t1], zn[t0:t1], cfg)
            r = rz[..., :hid]
            r_rep = r if nlags == 1 else r.repeat(1, 1, nlags)  # (C, B, K·H)
            hls = all_lags(hbuf, t1 - t0, lags, rm, t0).unbind(0)
            dr_fs, zgs, rrs = dr_pre.unbind(0), rz[..., hid:].unbind(0), r_rep.unbind(0)
            for t in range(t1 - 1, t0 - 1, -1):
                j = t - t0
                g = carry_back(dh_slots, lmax + t, keep, mf, t)
                dh_slots[lmax + t - 1].addcmul_(g, zgs[j])  # before dx_r overwrites g
                dx = dxs[t]
                dx[:, hid:].view(batch, 2, hid).mul_(g.unsqueeze(1))  # dz_pre, dn_pre
                drh = dx[:, 2 * hid:] @ w_n  # (B, K·H)
                dr = (drh * hls[j]).view(batch, nlags, hid).sum(1)
                torch.mul(dr, dr_fs[j], out=dx[:, :hid])
                dhl = torch.addmm(drh * rrs[j], dx[:, :2 * hid], w_rz)
                spread(dh_slots, t, dhl if rm is None else dhl * rm, lags, lmax)

        for t0, t1 in blocks(steps):
            run_block(t0, t1)
        dw = torch.cat([lag_weight_grad(dxw[..., :2 * hid], hbuf, lags, rm),
                        weight_grad(dxw[..., 2 * hid:], rh)], dim=0)
        return dxw, dh0.sum(0), dw, None, None, None


# -- FeedbackCell ------------------------------------------------------------------------------
class FeedbackScan(torch.autograd.Function):
    """h_t = f(xa_t + (h_lags * rm) @ W^T + o_{t-1} @ W_oh^T), o_t = g(h_t @ W_ho^T + xd_t)."""

    @staticmethod
    def forward(ctx, xw, h0, o0, w, w_oh, w_ho, m, rm, cfg):
        """xw (T, B, H + O): [A x_t + b, D x_t + b_o]; h0 (B, H), o0 (B, O) -> ys, h_T, o_T."""
        steps, lmax, hid = xw.shape[0], cfg.lags[-1], h0.shape[1]
        hbuf, obuf = history(h0, steps, lmax), history(o0, steps, 1)
        z, zs = preactivations(xw, steps, h0.shape, cfg.act not in FROM_OUTPUT)
        u, us = preactivations(xw, steps, o0.shape, cfg.out_act not in FROM_OUTPUT)  # of the outputs
        hs, os_, xs = (b.unbind(0) for b in (hbuf, obuf, xw))
        ms = mask_lists(m, xw.dtype)[0]
        wt, w_oh_t, w_ho_t = w.t(), w_oh.t(), w_ho.t()
        for t in range(steps):
            zt = torch.addmm(xs[t][:, :hid], lag_at(hs, t, cfg.lags, lmax, rm), wt, out=zs[t])
            zt.addmm_(os_[t], w_oh_t)
            h = apply_into(cfg.act, zt, hs[lmax + t]) if ms is None else cfg.act(zt)
            ut = torch.addmm(xs[t][:, hid:], h, w_ho_t, out=us[t])
            o = apply_into(cfg.out_act, ut, os_[t + 1]) if ms is None else cfg.out_act(ut)
            store(hs, lmax + t, h, ms, t)
            store(os_, t + 1, o, ms, t)
        ctx.save_for_backward(z, u, hbuf, obuf, w, w_oh, w_ho, m, rm)
        ctx.cfg = cfg
        return outputs(hbuf, lmax, m), hbuf[-1].clone(), obuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last, do_last):
        z, u, hbuf, obuf, w, w_oh, w_ho, m, rm = ctx.saved_tensors
        cfg = ctx.cfg
        lags, lmax, (steps, batch, hid) = cfg.lags, cfg.lags[-1], dys.shape
        dxw = dys.new_empty(steps, batch, hid + obuf.shape[2])  # [dz, du]
        dz, du = dxw[..., :hid], dxw[..., hid:]  # dz[t] holds dh_t until step t reads it
        dh0, dh_slots = grad_slots(dz, dys, dh_last, m, lmax)
        dzs, dus = dh_slots[lmax:], du.unbind(0)
        hs, os_ = hbuf.unbind(0), obuf.unbind(0)
        _, mf, keep = mask_lists(m, dys.dtype)
        do_run = do_last.clone()
        for t0, t1 in blocks(steps):
            das, dous = step_derivs(cfg.act, z, t0, t1), step_derivs(cfg.out_act, u, t0, t1)
            for t in range(t1 - 1, t0 - 1, -1):
                j = t - t0
                g = carry_back(dh_slots, lmax + t, keep, mf, t)
                if keep is not None:
                    do_carry, do_run = do_run * keep[t], do_run * mf[t]
                dut = scale(cfg.out_act, do_run, os_[t + 1], dous[j], dus[t])
                dzt = scale(cfg.act, torch.addmm(g, dut, w_ho), hs[lmax + t], das[j], dzs[t])
                do_run = dzt @ w_oh
                if keep is not None:
                    do_run += do_carry
                recurrent_back(dh_slots, t, dzt, w, lags, lmax, rm)
        dw = lag_weight_grad(dz, hbuf, lags, rm)
        dw_oh, dw_ho = weight_grad(dz, obuf[:-1]), weight_grad(du, hbuf[lmax:])
        return dxw, dh0.sum(0), do_run, dw, dw_oh, dw_ho, None, None, None


# -- the kernel --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FamilyConfig:
    """The non-tensor settings a family's Function needs."""

    lags: tuple[int, ...]
    act: object = None
    ract: object = None  # recurrent (gate) activation
    out_act: object = None  # feedback output activation
    coupled: bool = False
    peephole: str | None = None
    prev_gates: int = 0  # LSTM gates that see C_{t-1} through a peephole


def activation_roles(cell) -> dict[str, object]:
    """The cell's activations by role (activation, recurrent_activation, output_activation)."""
    if isinstance(cell, TeacherForcedCell):
        return {"activation": cell.cell.activation}
    names = ("activation", "recurrent_activation", "output_activation")
    return {n: getattr(cell, n) for n in names if hasattr(cell, n)}


def _cell_reason(cell) -> str:
    if not isinstance(cell, (SimpleCell, TeacherForcedCell, LSTMCell, GRUCell, FeedbackCell)):
        return f"no fused family for {type(cell).__name__}"
    for role, fn in activation_roles(cell).items():
        if fn not in _ELEMENTWISE:
            return (f"{role}={activations.name_of(fn)!r} is not an elementwise activation the "
                    "fused backward knows")
    return ""


def _family(cell, xw, state, mask, rm):
    """run_time_major's family for this kernel: (T, B, G·H) inputs, a (T, B, 1) bool mask."""
    m = None if mask is None else mask.t().unsqueeze(-1)
    return _run_family(cell, xw.view(-1, state[0].shape[0], xw.shape[-1]), state, m, rm)


def _run_family(cell, xw, state, m, rm):
    """Dispatch to the family's Function: xw (T, B, G·H) time-major -> ys (T, B, H), state."""
    lags = cell.lags
    if isinstance(cell, SimpleCell):
        return SimpleScan.apply(xw, state[0], cell.weight_hh, m, rm, cell.activation, lags)
    if isinstance(cell, TeacherForcedCell):
        return SimpleScan.apply(xw, state[0], cell.weight_hh, m, rm, cell.cell.activation, lags)
    if isinstance(cell, LSTMCell):
        cfg = FamilyConfig(lags, cell.activation, cell.recurrent_activation, coupled=cell.coupled,
                           peephole=cell.peephole, prev_gates=cell.prev_peep_gates)
        return LSTMScan.apply(xw, *state, cell.weight_hh, getattr(cell, "peep_prev", None),
                              getattr(cell, "peep_out", None), m, rm, cfg)
    if isinstance(cell, GRUCell):
        cfg = FamilyConfig(lags, cell.activation, cell.recurrent_activation)
        if cell.reset_after:
            return GRUScan.apply(xw, state[0], cell.weight_hh, cell.bias_hh, m, rm, cfg)
        return GRUResetBeforeScan.apply(xw, state[0], cell.weight_hh, m, rm, cfg)
    cfg = FamilyConfig(lags, cell.activation, out_act=cell.output_activation)
    return FeedbackScan.apply(xw, *state, cell.weight_hh, cell.weight_oh, cell.weight_ho, m, rm,
                              cfg)


def compaction(mask: Tensor) -> Tensor:
    """Per row, the order that puts its real steps first, in time order: (B, T) long."""
    return torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices


def is_prefix(mask: Tensor) -> bool:
    """True when no row of mask (B, T) has a real step after a masked one."""
    return not bool((mask[:, 1:] & ~mask[:, :-1]).any())


def gather_time(x: Tensor, order: Tensor) -> Tensor:
    """x (B, T, N) reordered along time by order (B, T)."""
    return x.gather(1, order.unsqueeze(-1).expand_as(x))


def run_time_major(family, cell, x: Tensor, state, mask: Tensor | None,
                   recurrent_mask: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The frame every loop kernel (fused, compiled, gpu) runs its families in.

    Mixed precision upcasts to float32 (a hand-written backward is written for one dtype, as
    autocast runs its own precision-sensitive ops); under lags a mask that is not post-padding is
    compacted (the projection is per step, so x is reordered first); the input projection is one
    GEMM written time-major, (T·B, G·H) rows, so only the I-wide x is ever transposed; the outputs
    go back to (B, T, H) in the input's order.
    family(cell, xw (T·B, G·H), state, mask (B, T) bool or None, recurrent_mask) -> ys (T, B, H),
    *final state.
    """
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return run_time_major(family, cell, x.float(), tuple(s.float() for s in state), mask,
                                  recurrent_mask)
    order = None
    if mask is not None and cell.lags != (1,) and not is_prefix(mask):
        order = compaction(mask)  # lags read slot L+t-l, exact once real steps come first
        x, mask = gather_time(x, order), mask.gather(1, order)
    xw = cell.project(x.transpose(0, 1).reshape(-1, x.shape[-1]))
    ys, *final = family(cell, xw, state, mask, recurrent_mask)
    ys = ys.transpose(0, 1)  # (B, T, H)
    if order is not None:
        ys = gather_time(ys, order.argsort(dim=1))
    return ys, tuple(final)


class FusedKernel:
    name = "fused"
    rank = 50

    def supports(self, cell, spec: ScanSpec) -> tuple[bool, str]:
        reason = _cell_reason(cell)
        return (not reason), reason

    def run(self, cell, x, state, mask, recurrent_mask):
        """x (B, T, I), state tuple of (B, ·) -> ys (B, T, H), final state tuple."""
        return run_time_major(_family, cell, x, state, mask, recurrent_mask)


FUSED = register(FusedKernel())
