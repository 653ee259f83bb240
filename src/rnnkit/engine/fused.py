"""The fused kernel: one autograd.Function per cell family with hand-written BPTT.

Dimension legend: B batch, T time, I input features, H units, G gates, K lags, L the largest lag,
O feedback outputs.

Each family follows the same plan (haste's and ATen's):
  * the input projection A·x_t + b for every t is one GEMM (``cell.project``, outside the Function,
    so autograd gives its weight gradients as one GEMM over all t too);
  * a tight forward loop, time-major, writing pre-activations and states into preallocated buffers;
  * a tight backward loop that needs only the recurrent GEMM and a few pointwise products per step:
    every factor that does not depend on the incoming gradient (σ'(z), tanh'(c), ...) is computed
    for all t at once before the loop;
  * the recurrent weight gradients as one GEMM over all t after the loop.

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
def act_grad(fn, z: Tensor) -> tuple[Tensor, Tensor]:
    """fn(z) and fn'(z) for an elementwise activation, for all t at once: shapes of z."""
    if fn is torch.tanh:
        a = torch.tanh(z)
        return a, 1 - a * a
    if fn is torch.sigmoid:
        a = torch.sigmoid(z)
        return a, a - a * a
    if fn is activations.linear:
        return z, torch.ones_like(z)
    with torch.enable_grad():
        leaf = z.detach().requires_grad_()
        a = fn(leaf)
        (da,) = torch.autograd.grad(a, leaf, torch.ones_like(a))
    return a.detach(), da


def apply_into(fn, z: Tensor, out: Tensor) -> Tensor:
    """out <- fn(z) without a temporary where torch has an out= variant."""
    if fn is torch.tanh or fn is torch.sigmoid:
        return fn(z, out=out)
    return out.copy_(fn(z))


def history(h0: Tensor, steps: int, lmax: int) -> Tensor:
    """(L+T, B, H) buffer whose first L slots are h0."""
    buf = h0.new_empty(lmax + steps, *h0.shape)
    buf[:lmax] = h0
    return buf


def lag_at(slots: list[Tensor], t: int, lags, lmax: int, rm: Tensor | None) -> Tensor:
    """[h_{t-l} for l in lags] (B, K·H), times the recurrent mask."""
    hl = slots[lmax + t - 1] if lags == (1,) else torch.cat([slots[lmax + t - l] for l in lags], 1)
    return hl if rm is None else hl * rm


def all_lags(hbuf: Tensor, steps: int, lags, rm: Tensor | None) -> Tensor:
    """lag_at for every t: (T, B, K·H)."""
    lmax = lags[-1]
    hl = torch.cat([hbuf[lmax - l: lmax - l + steps] for l in lags], dim=2)
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
    """Gradient buffer shaped like hbuf: dys (masked steps output constants) plus dh_T."""
    dh = dys.new_zeros(lmax + dys.shape[0], *dys.shape[1:])
    dh[lmax:] = dys if m is None else dys * m
    dh[-1] += dh_last
    return dh


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


# -- SimpleCell / TeacherForcedCell -----------------------------------------------------------
class SimpleScan(torch.autograd.Function):
    """h_t = f(xw_t + (h_lags * rm) @ W^T) for an elementwise f."""

    @staticmethod
    def forward(ctx, xw, h0, w, m, rm, act, lags):
        """xw (T, B, H), h0 (B, H), w (H, K·H), m (T, B, 1) bool, rm (B, K·H) -> ys, h_T."""
        steps, lmax = xw.shape[0], lags[-1]
        hbuf = history(h0, steps, lmax)
        z = torch.empty_like(xw)
        slots, zs, xs, ms = hbuf.unbind(0), z.unbind(0), xw.unbind(0), mask_lists(m, xw.dtype)[0]
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
        lags, lmax, steps = ctx.lags, ctx.lags[-1], z.shape[0]
        _, da = act_grad(ctx.act, z)  # (T, B, H)
        dh = grad_history(dys, dh_last, m, lmax)
        dz = torch.empty_like(z)
        dh_slots, dzs, das = dh.unbind(0), dz.unbind(0), da.unbind(0)
        _, mf, keep = mask_lists(m, z.dtype)
        for t in range(steps - 1, -1, -1):
            g = carry_back(dh_slots, lmax + t, keep, mf, t)
            dzt = torch.mul(g, das[t], out=dzs[t])
            recurrent_back(dh_slots, t, dzt, w, lags, lmax, rm)
        dw = weight_grad(dz, all_lags(hbuf, steps, lags, rm))
        return dz, dh[:lmax].sum(0), dw, None, None, None, None


# -- LSTMCell ----------------------------------------------------------------------------------
def peep_forward(z: Tensor, c: Tensor, weight: Tensor, full: bool) -> None:
    """z (B, P·H) += peephole(c (B, H)) in place: c @ weight^T, or c * weight per gate."""
    if full:
        z.addmm_(c, weight.t())
    else:
        z.view(c.shape[0], -1, c.shape[1]).addcmul_(c.unsqueeze(1), weight.view(-1, c.shape[1]))


class LSTMScan(torch.autograd.Function):
    """LSTM, peephole (full or diagonal) and coupled; see ``cells.lstm`` for the equations.

    The forward keeps pre-activations z and activations a of every gate, and tanh(c), so the
    backward recomputes nothing.
    """

    @staticmethod
    def forward(ctx, xw, h0, c0, w, peep_prev, peep_out, m, rm, cfg):
        """xw (T, B, G·H), h0 c0 (B, H), w (G·H, K·H) -> ys (T, B, H), h_T, c_T."""
        steps, lmax, hid = xw.shape[0], cfg.lags[-1], h0.shape[1]
        gh, npre, full = xw.shape[2], cfg.prev_gates * hid, cfg.peephole == "full"
        hbuf, cbuf = history(h0, steps, lmax), history(c0, steps, 1)
        z, a, tc = torch.empty_like(xw), torch.empty_like(xw), torch.empty_like(hbuf[lmax:])
        hs, cs, zs, as_, tcs, xs = (b.unbind(0) for b in (hbuf, cbuf, z, a, tc, xw))
        ms = mask_lists(m, xw.dtype)[0]
        wt, sig, act = w.t(), cfg.ract, cfg.act
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
            apply_into(act, c, tcs[t])
            h_out = hs[lmax + t] if ms is None else None
            store(hs, lmax + t, torch.mul(at[:, gh - hid:], tcs[t], out=h_out), ms, t)
        # pre-activations only matter to activations whose derivative needs them
        keep_z = not {sig, act} <= {torch.tanh, torch.sigmoid}
        ctx.save_for_backward(z if keep_z else None, a, tc, hbuf, cbuf, w, peep_prev, peep_out, m,
                              rm)
        ctx.cfg = cfg
        return outputs(hbuf, lmax, m), hbuf[-1].clone(), cbuf[-1].clone()

    @staticmethod
    @first_order_only
    def backward(ctx, dys, dh_last, dc_last):
        z, a, tc, hbuf, cbuf, w, peep_prev, peep_out, m, rm = ctx.saved_tensors
        cfg = ctx.cfg
        lags, lmax, (steps, batch, gh) = cfg.lags, cfg.lags[-1], a.shape
        hid, full = hbuf.shape[2], cfg.peephole == "full"
        npre = cfg.prev_gates * hid
        f, k, po, qc = lstm_factors(z, a, tc, cbuf, cfg)
        dh = grad_history(dys, dh_last, m, lmax)
        dz = torch.empty_like(a)
        dh_slots, dzs = dh.unbind(0), dz.unbind(0)
        fs, ks, pos, qcs = f.unbind(0), k.unbind(0), po.unbind(0), qc.unbind(0)
        _, mf, keep = mask_lists(m, a.dtype)
        ng = gh // hid - 1  # gates before o
        dc_run = dc_last.clone()
        for t in range(steps - 1, -1, -1):
            g = carry_back(dh_slots, lmax + t, keep, mf, t)
            if keep is not None:
                dc_carry, dc_run = dc_run * keep[t], dc_run * mf[t]
            dzt = dzs[t]
            dzo = torch.mul(g, pos[t], out=dzt[:, gh - hid:])
            dc = torch.addcmul(dc_run, g, qcs[t])
            if peep_out is not None:
                dc += peephole_grad_c(dzo, peep_out, full, hid)
            torch.mul(ks[t].view(batch, ng, hid), dc.unsqueeze(1),
                      out=dzt[:, :gh - hid].view(batch, ng, hid))
            dc_run = dc * fs[t]
            if peep_prev is not None:
                dc_run += peephole_grad_c(dzt[:, :npre], peep_prev, full, hid)
            if keep is not None:
                dc_run += dc_carry
            recurrent_back(dh_slots, t, dzt, w, lags, lmax, rm)
        dw = weight_grad(dz, all_lags(hbuf, steps, lags, rm))
        dpp = None if peep_prev is None else peephole_weight_grad(dz[..., :npre], cbuf[:-1], full)
        dpo = None if peep_out is None else peephole_weight_grad(dz[..., gh - hid:], cbuf[1:], full)
        return dz, dh[:lmax].sum(0), dc_run, dw, dpp, dpo, None, None, None


def deriv(fn, z: Tensor | None, a: Tensor) -> Tensor:
    """fn'(z) for all t at once, given a = fn(z): from a for tanh and sigmoid (z may be None)."""
    if fn is torch.tanh:
        return 1 - a * a
    if fn is torch.sigmoid:
        return a - a * a
    return act_grad(fn, z)[1]


def lstm_factors(z: Tensor, a: Tensor, tc: Tensor, cbuf: Tensor, cfg):
    """Everything the LSTM backward loop needs that does not depend on the gradient, for all t.

    z, a (T, B, G·H) gate pre-activations (None for tanh/sigmoid) and activations,
    tc (T, B, H) act(c), cbuf (T+1, B, H)
    -> f (T, B, H); k (T, B, (G-1)·H) with dz_gates = k * dc; po (T, B, H) with dz_o = dh * po;
    qc (T, B, H) with dc += dh * qc.
    """
    hid = cbuf.shape[2]
    c_prev = cbuf[:-1]

    def gate(j, fn):
        sl = slice(j * hid, (j + 1) * hid)
        return a[..., sl], deriv(fn, None if z is None else z[..., sl], a[..., sl])

    if cfg.coupled:
        (f, df), (g, dg) = gate(0, cfg.ract), gate(1, cfg.act)
        k = torch.cat([(c_prev - g) * df, (1 - f) * dg], dim=2)
    else:
        (i, di), (f, df), (g, dg) = gate(0, cfg.ract), gate(1, cfg.ract), gate(2, cfg.act)
        k = torch.cat([g * di, c_prev * df, i * dg], dim=2)
    o, do = gate(a.shape[2] // hid - 1, cfg.ract)
    dtc = deriv(cfg.act, cbuf[1:], tc)
    return f, k, tc * do, o * dtc


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
    return (dz.reshape(*c.shape[:2], -1, hid) * c.unsqueeze(2)).sum((0, 1)).flatten()


# -- GRUCell -----------------------------------------------------------------------------------
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
        rz, drz = act_grad(cfg.ract, zrz)
        n, dn = act_grad(cfg.act, zn)
        r, zg = rz[..., :hid], rz[..., hid:]
        h_prev = hbuf[lmax - 1:lmax - 1 + steps]
        pzn = torch.cat([(h_prev - n) * drz[..., hid:], (1 - zg) * dn], dim=2)  # (T, B, 2H)
        pr = gh[..., 2 * hid:] * drz[..., :hid]
        dh = grad_history(dys, dh_last, m, lmax)
        dxw, dgh = torch.empty_like(gh), torch.empty_like(gh)
        dh_slots, dxs, dghs = dh.unbind(0), dxw.unbind(0), dgh.unbind(0)
        pzns, prs, rs, zgs = pzn.unbind(0), pr.unbind(0), r.unbind(0), zg.unbind(0)
        _, mf, keep = mask_lists(m, zn.dtype)
        for t in range(steps - 1, -1, -1):
            g = carry_back(dh_slots, lmax + t, keep, mf, t)
            dx, dgt = dxs[t], dghs[t]
            torch.mul(pzns[t].view(batch, 2, hid), g.unsqueeze(1),
                      out=dx[:, hid:].view(batch, 2, hid))  # dz_pre, dn_pre
            torch.mul(dx[:, 2 * hid:], prs[t], out=dx[:, :hid])  # dr_pre
            dgt[:, :2 * hid] = dx[:, :2 * hid]
            torch.mul(dx[:, 2 * hid:], rs[t], out=dgt[:, 2 * hid:])
            dh_slots[lmax + t - 1].addcmul_(g, zgs[t])
            recurrent_back(dh_slots, t, dgt, w, lags, lmax, rm)
        dw = weight_grad(dgh, all_lags(hbuf, steps, lags, rm))
        db = dgh.sum((0, 1)) if ctx.has_bias else None
        return dxw, dh[:lmax].sum(0), dw, db, None, None, None


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
        rz, drz = act_grad(cfg.ract, zrz)
        n, dn = act_grad(cfg.act, zn)
        r, zg = rz[..., :hid], rz[..., hid:]
        h_prev = hbuf[lmax - 1:lmax - 1 + steps]
        pzn = torch.cat([(h_prev - n) * drz[..., hid:], (1 - zg) * dn], dim=2)  # (T, B, 2H)
        hl_all = all_lags(hbuf, steps, lags, rm)  # (T, B, K·H)
        r_rep = r if nlags == 1 else r.repeat(1, 1, nlags)
        dh = grad_history(dys, dh_last, m, lmax)
        dxw = zn.new_empty(steps, batch, 3 * hid)
        dh_slots, dxs = dh.unbind(0), dxw.unbind(0)
        pzns, dr_fs, zgs, hls, rrs = (b.unbind(0) for b in (pzn, drz[..., :hid], zg, hl_all, r_rep))
        w_rz, w_n = w[:2 * hid], w[2 * hid:]
        _, mf, keep = mask_lists(m, zn.dtype)
        for t in range(steps - 1, -1, -1):
            g = carry_back(dh_slots, lmax + t, keep, mf, t)
            dx = dxs[t]
            torch.mul(pzns[t].view(batch, 2, hid), g.unsqueeze(1),
                      out=dx[:, hid:].view(batch, 2, hid))  # dz_pre, dn_pre
            drh = dx[:, 2 * hid:] @ w_n  # (B, K·H)
            dr = (drh * hls[t]).view(batch, nlags, hid).sum(1)
            torch.mul(dr, dr_fs[t], out=dx[:, :hid])
            dhl = torch.addmm(drh * rrs[t], dx[:, :2 * hid], w_rz)
            spread(dh_slots, t, dhl if rm is None else dhl * rm, lags, lmax)
            dh_slots[lmax + t - 1].addcmul_(g, zgs[t])
        dw = torch.cat([weight_grad(dxw[..., :2 * hid], hl_all),
                        weight_grad(dxw[..., 2 * hid:], rh)], dim=0)
        return dxw, dh[:lmax].sum(0), dw, None, None, None


# -- FeedbackCell ------------------------------------------------------------------------------
class FeedbackScan(torch.autograd.Function):
    """h_t = f(xa_t + (h_lags * rm) @ W^T + o_{t-1} @ W_oh^T), o_t = g(h_t @ W_ho^T + xd_t)."""

    @staticmethod
    def forward(ctx, xw, h0, o0, w, w_oh, w_ho, m, rm, cfg):
        """xw (T, B, H + O): [A x_t + b, D x_t + b_o]; h0 (B, H), o0 (B, O) -> ys, h_T, o_T."""
        steps, lmax, hid = xw.shape[0], cfg.lags[-1], h0.shape[1]
        hbuf, obuf = history(h0, steps, lmax), history(o0, steps, 1)
        z = xw.new_empty(steps, *h0.shape)
        u = xw.new_empty(steps, *o0.shape)  # output pre-activations
        hs, os_, zs, us, xs = (b.unbind(0) for b in (hbuf, obuf, z, u, xw))
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
        lags, lmax, steps = cfg.lags, cfg.lags[-1], z.shape[0]
        _, da = act_grad(cfg.act, z)
        _, dou = act_grad(cfg.out_act, u)
        dh = grad_history(dys, dh_last, m, lmax)
        dz, du = torch.empty_like(z), torch.empty_like(u)
        dh_slots, dzs, dus, das, dous = (b.unbind(0) for b in (dh, dz, du, da, dou))
        _, mf, keep = mask_lists(m, z.dtype)
        do_run = do_last.clone()
        for t in range(steps - 1, -1, -1):
            g = carry_back(dh_slots, lmax + t, keep, mf, t)
            if keep is not None:
                do_carry, do_run = do_run * keep[t], do_run * mf[t]
            dut = torch.mul(do_run, dous[t], out=dus[t])
            dzt = torch.mul(torch.addmm(g, dut, w_ho), das[t], out=dzs[t])
            do_run = dzt @ w_oh
            if keep is not None:
                do_run += do_carry
            recurrent_back(dh_slots, t, dzt, w, lags, lmax, rm)
        dw = weight_grad(dz, all_lags(hbuf, steps, lags, rm))
        dw_oh, dw_ho = weight_grad(dz, obuf[:-1]), weight_grad(du, hbuf[lmax:])
        return (torch.cat([dz, du], dim=2), dh[:lmax].sum(0), do_run, dw, dw_oh, dw_ho,
                None, None, None)


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


def _activations_of(cell) -> dict[str, object]:
    if isinstance(cell, TeacherForcedCell):
        return {"activation": cell.cell.activation}
    names = ("activation", "recurrent_activation", "output_activation")
    return {n: getattr(cell, n) for n in names if hasattr(cell, n)}


def _cell_reason(cell) -> str:
    if not isinstance(cell, (SimpleCell, TeacherForcedCell, LSTMCell, GRUCell, FeedbackCell)):
        return f"no fused family for {type(cell).__name__}"
    for role, fn in _activations_of(cell).items():
        if fn not in _ELEMENTWISE:
            return (f"{role}={activations.name_of(fn)!r} is not an elementwise activation the "
                    "fused backward knows")
    return ""


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


class FusedKernel:
    name = "fused"
    rank = 50

    def supports(self, cell, spec: ScanSpec) -> tuple[bool, str]:
        reason = _cell_reason(cell)
        return (not reason), reason

    def run(self, cell, x, state, mask, recurrent_mask):
        """x (B, T, I), state tuple of (B, ·) -> ys (B, T, H), final state tuple."""
        if torch.is_autocast_enabled(x.device.type):
            # the hand-written backward is written for one dtype: under mixed precision the
            # recurrence runs in float32 (upcast), as autocast runs its own precision-sensitive ops
            with torch.autocast(x.device.type, enabled=False):
                return self.run(cell, x.float(), tuple(s.float() for s in state), mask,
                                recurrent_mask)
        xw = cell.project(x)  # (B, T, G·H)
        order = None
        if mask is not None and cell.lags != (1,) and not is_prefix(mask):
            order = compaction(mask)
            xw, mask = gather_time(xw, order), mask.gather(1, order)
        m = None if mask is None else mask.t().unsqueeze(-1)  # (T, B, 1)
        ys, *final = _run_family(cell, xw.transpose(0, 1).contiguous(), state, m, recurrent_mask)
        ys = ys.transpose(0, 1)  # (B, T, H)
        if order is not None:
            ys = gather_time(ys, order.argsort(dim=1))
        return ys, tuple(final)


FUSED = register(FusedKernel())
