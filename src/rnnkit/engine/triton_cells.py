"""Triton pointwise kernels of the gpu kernel: one step of each cell family's gate math.

Dimension legend: B batch, H units, G gates, K lags. Every kernel runs over the B·H elements of
one step (element e is row b = e // H, unit j = e % H); the recurrent GEMMs stay in torch (cuBLAS),
``engine/gpu.py`` calls them and these kernels in turn. Gate rows are contiguous (B, G·H) blocks in
the order of ``cells`` (LSTM i, f, g, o or coupled f, g, o; GRU r, z, n). A mask row m_b = 0 keeps
the previous state; in the backward it sends the state gradient to the previous step unchanged.

Activation codes: 0 linear, 1 tanh, 2 sigmoid, 3 relu. Derivatives are taken from the activation's
output, so the forward keeps activations only.

Importing this module imports triton: ``engine/gpu.py`` does so lazily, at the kernel's first use.
The ``@triton.jit`` decorator decides when this module is imported whether the kernels compile for
the GPU or run in Triton's interpreter (``TRITON_INTERPRET=1``, numpy on CPU tensors). The kernels
use only Triton builtins (``tl.exp``, ``tl.where``, ...) and the helpers below, never
``triton.language``'s own jit functions (``tl.sigmoid``): those are decorated when triton itself is
imported, so they would break an interpreted copy of this module loaded after triton
(``gpu.interpreter_kernel``).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl
from torch import Tensor

MAX_BLOCK = 1024


def _interpreting() -> bool:
    """Whether ``@triton.jit`` makes interpreted functions right now (it reads this when decorating)."""
    knobs = getattr(triton, "knobs", None)  # triton >= 3.4; before, the decorator read the variable
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _device_function(fn):
    """@triton.jit for the helpers the kernels call; a plain function under the interpreter, which
    runs the same code inside the kernel but would re-patch triton.language at every call of a
    jit function (about a millisecond each, most of a launch)."""
    return fn if _interpreting() else triton.jit(fn)


# -- activations -----------------------------------------------------------------------------------
@_device_function
def _sigmoid(z):
    e = tl.exp(-tl.abs(z))  # in (0, 1]: no overflow for any z
    return tl.where(z >= 0, 1 / (1 + e), e / (1 + e))


@_device_function
def _tanh(z):
    e = tl.exp(-2 * tl.abs(z))
    t = (1 - e) / (1 + e)
    return tl.where(z >= 0, t, -t)


@_device_function
def _act(z, CODE: tl.constexpr):
    a = z
    if CODE == 1:
        a = _tanh(z)
    elif CODE == 2:
        a = _sigmoid(z)
    elif CODE == 3:
        a = tl.where(z > 0, z, 0.0)
    return a


@_device_function
def _times_dact(x, a, CODE: tl.constexpr):
    """x * act'(z) given a = act(z)."""
    y = x
    if CODE == 1:
        y = x * (1 - a * a)
    elif CODE == 2:
        y = x * (a - a * a)
    elif CODE == 3:
        y = tl.where(a > 0, x, 0.0)
    return y


@_device_function
def _carry(dh_ptr, dhp_ptr, m_ptr, e, b, ok, HAS_MASK: tl.constexpr):
    """dL/dh_t of the new state; on masked rows all of it goes to dh_{t-1} (slot dhp) instead."""
    g = tl.load(dh_ptr + e, mask=ok)
    if HAS_MASK:
        keep = tl.load(m_ptr + b, mask=ok) != 0
        tl.store(dhp_ptr + e, tl.load(dhp_ptr + e, mask=ok) + tl.where(keep, 0.0, g), mask=ok)
        g = tl.where(keep, g, 0.0)
    return g


# -- SimpleCell ------------------------------------------------------------------------------------
@triton.jit
def _simple_forward(h_ptr, hp_ptr, m_ptr, n, H, ACT: tl.constexpr, HAS_MASK: tl.constexpr,
                    BLOCK: tl.constexpr):
    """h (B, H): z_t in, h_t = act(z_t) out (h_{t-1} from hp on masked rows)."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < n
    h = _act(tl.load(h_ptr + e, mask=ok), ACT)
    if HAS_MASK:
        keep = tl.load(m_ptr + e // H, mask=ok) != 0
        h = tl.where(keep, h, tl.load(hp_ptr + e, mask=ok))
    tl.store(h_ptr + e, h, mask=ok)


@triton.jit
def _simple_backward(dh_ptr, dhp_ptr, h_ptr, dz_ptr, m_ptr, n, H, ACT: tl.constexpr,
                     HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    """dz_t (B, H) = dL/dh_t * act'(z_t)."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < n
    g = _carry(dh_ptr, dhp_ptr, m_ptr, e, e // H, ok, HAS_MASK)
    tl.store(dz_ptr + e, _times_dact(g, tl.load(h_ptr + e, mask=ok), ACT), mask=ok)


# -- LSTMCell --------------------------------------------------------------------------------------
@_device_function
def _lstm_cell(row, cp_ptr, c_ptr, pp_ptr, e, j, ok, keep, H, ACT: tl.constexpr, RACT: tl.constexpr,
               COUPLED: tl.constexpr, DIAG: tl.constexpr, HAS_MASK: tl.constexpr):
    """Gates before o and C_t; writes their activations over the pre-activations at row."""
    c_prev = tl.load(cp_ptr + e, mask=ok)
    if COUPLED:
        zf = tl.load(row, mask=ok)
        if DIAG:
            zf += tl.load(pp_ptr + j, mask=ok) * c_prev
        f = _act(zf, RACT)
        g = _act(tl.load(row + H, mask=ok), ACT)
        c = f * c_prev + (1 - f) * g
        tl.store(row, f, mask=ok)
        tl.store(row + H, g, mask=ok)
    else:
        zi = tl.load(row, mask=ok)
        zf = tl.load(row + H, mask=ok)
        if DIAG:
            zi += tl.load(pp_ptr + j, mask=ok) * c_prev
            zf += tl.load(pp_ptr + H + j, mask=ok) * c_prev
        i = _act(zi, RACT)
        f = _act(zf, RACT)
        g = _act(tl.load(row + 2 * H, mask=ok), ACT)
        c = f * c_prev + i * g
        tl.store(row, i, mask=ok)
        tl.store(row + H, f, mask=ok)
        tl.store(row + 2 * H, g, mask=ok)
    if HAS_MASK:
        c = tl.where(keep, c, c_prev)
    tl.store(c_ptr + e, c, mask=ok)
    return c


@triton.jit
def _lstm_forward(a_ptr, cp_ptr, c_ptr, hp_ptr, h_ptr, m_ptr, pp_ptr, po_ptr, n, H,
                  G: tl.constexpr, ACT: tl.constexpr, RACT: tl.constexpr, COUPLED: tl.constexpr,
                  DIAG: tl.constexpr, HAS_MASK: tl.constexpr, CELL: tl.constexpr, OUT: tl.constexpr,
                  BLOCK: tl.constexpr):
    """a (B, G·H) pre-activations in, activations out; C_{t-1} cp -> C_t c; h_{t-1} hp -> h_t h.

    CELL: the gates before o and C_t; OUT: o and h_t. Both in one launch unless the peephole on
    C_t is a full matrix, which needs a GEMM between the two.
    """
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < n
    b = e // H
    j = e - b * H
    row = a_ptr + b * (G * H) + j
    keep = ok
    if HAS_MASK:
        keep = tl.load(m_ptr + b, mask=ok) != 0
    if CELL:
        c = _lstm_cell(row, cp_ptr, c_ptr, pp_ptr, e, j, ok, keep, H, ACT, RACT, COUPLED, DIAG,
                       HAS_MASK)
    else:
        c = tl.load(c_ptr + e, mask=ok)
    if OUT:
        zo = tl.load(row + (G - 1) * H, mask=ok)
        if DIAG:
            zo += tl.load(po_ptr + j, mask=ok) * c
        o = _act(zo, RACT)
        tl.store(row + (G - 1) * H, o, mask=ok)
        h = o * _act(c, ACT)
        if HAS_MASK:
            h = tl.where(keep, h, tl.load(hp_ptr + e, mask=ok))
        tl.store(h_ptr + e, h, mask=ok)


@triton.jit
def _lstm_backward(a_ptr, cp_ptr, c_ptr, dh_ptr, dhp_ptr, dc_ptr, dcx_ptr, dz_ptr, m_ptr, pp_ptr,
                   po_ptr, n, H, G: tl.constexpr, ACT: tl.constexpr, RACT: tl.constexpr,
                   COUPLED: tl.constexpr, DIAG: tl.constexpr, HAS_MASK: tl.constexpr,
                   HAS_DCX: tl.constexpr, CELL: tl.constexpr, OUT: tl.constexpr,
                   BLOCK: tl.constexpr):
    """dz (B, G·H) from dL/dh_t (dh) and dL/dC_t (dc); dc becomes dL/dC_{t-1}.

    OUT: dz_o; CELL: the other gates, dL/dC_{t-1} and the mask's carry into dh_{t-1} (dhp).
    dcx: the gradient into C_t through a full peephole on o (dz_o @ peep_out), from torch.
    """
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < n
    b = e // H
    j = e - b * H
    row = a_ptr + b * (G * H) + j
    drow = dz_ptr + b * (G * H) + j
    o = tl.load(row + (G - 1) * H, mask=ok)
    tc = _act(tl.load(c_ptr + e, mask=ok), ACT)
    if CELL:
        g = _carry(dh_ptr, dhp_ptr, m_ptr, e, b, ok, HAS_MASK)
    else:
        g = tl.load(dh_ptr + e, mask=ok)
        if HAS_MASK:
            g = tl.where(tl.load(m_ptr + b, mask=ok) != 0, g, 0.0)
    if OUT:
        dzo = _times_dact(g * tc, o, RACT)
        tl.store(drow + (G - 1) * H, dzo, mask=ok)
    if CELL:
        dc_in = tl.load(dc_ptr + e, mask=ok)
        dc = dc_in
        if HAS_MASK:
            keep = tl.load(m_ptr + b, mask=ok) != 0
            dc = tl.where(keep, dc_in, 0.0)
        dc += _times_dact(g * o, tc, ACT)
        if DIAG:
            dc += dzo * tl.load(po_ptr + j, mask=ok)
        if HAS_DCX:
            dc += tl.load(dcx_ptr + e, mask=ok)
        c_prev = tl.load(cp_ptr + e, mask=ok)
        if COUPLED:
            f = tl.load(row, mask=ok)
            gg = tl.load(row + H, mask=ok)
            dzf = _times_dact(dc * (c_prev - gg), f, RACT)
            tl.store(drow, dzf, mask=ok)
            tl.store(drow + H, _times_dact(dc * (1 - f), gg, ACT), mask=ok)
            dcp = dc * f
            if DIAG:
                dcp += dzf * tl.load(pp_ptr + j, mask=ok)
        else:
            i = tl.load(row, mask=ok)
            f = tl.load(row + H, mask=ok)
            gg = tl.load(row + 2 * H, mask=ok)
            dzi = _times_dact(dc * gg, i, RACT)
            dzf = _times_dact(dc * c_prev, f, RACT)
            tl.store(drow, dzi, mask=ok)
            tl.store(drow + H, dzf, mask=ok)
            tl.store(drow + 2 * H, _times_dact(dc * i, gg, ACT), mask=ok)
            dcp = dc * f
            if DIAG:
                dcp += dzi * tl.load(pp_ptr + j, mask=ok) + dzf * tl.load(pp_ptr + H + j, mask=ok)
        if HAS_MASK:
            dcp += tl.where(keep, 0.0, dc_in)
        tl.store(dc_ptr + e, dcp, mask=ok)


# -- GRUCell, reset after the recurrent matmul ------------------------------------------------------
@triton.jit
def _gru_forward(x_ptr, gh_ptr, a_ptr, hp_ptr, h_ptr, m_ptr, n, H, ACT: tl.constexpr,
                 RACT: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    """x, gh (B, 3H): A x_t + b and (h_lags * rm) @ W^T + b_hh; a (B, 3H) <- r, z, n; h_t."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < n
    b = e // H
    k = b * (3 * H) + e - b * H
    ghn = tl.load(gh_ptr + k + 2 * H, mask=ok)
    r = _act(tl.load(x_ptr + k, mask=ok) + tl.load(gh_ptr + k, mask=ok), RACT)
    z = _act(tl.load(x_ptr + k + H, mask=ok) + tl.load(gh_ptr + k + H, mask=ok), RACT)
    nn = _act(tl.load(x_ptr + k + 2 * H, mask=ok) + r * ghn, ACT)
    hp = tl.load(hp_ptr + e, mask=ok)
    h = (1 - z) * nn + z * hp
    if HAS_MASK:
        h = tl.where(tl.load(m_ptr + b, mask=ok) != 0, h, hp)
    tl.store(a_ptr + k, r, mask=ok)
    tl.store(a_ptr + k + H, z, mask=ok)
    tl.store(a_ptr + k + 2 * H, nn, mask=ok)
    tl.store(h_ptr + e, h, mask=ok)


@triton.jit
def _gru_backward(a_ptr, gh_ptr, hp_ptr, dh_ptr, dhp_ptr, dx_ptr, dgh_ptr, m_ptr, n, H,
                  ACT: tl.constexpr, RACT: tl.constexpr, HAS_MASK: tl.constexpr,
                  BLOCK: tl.constexpr):
    """dx (B, 3H): dL/d(A x_t + b); dgh (B, 3H): dL/d(gh); dh_{t-1} += z * dL/dh_t."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < n
    b = e // H
    k = b * (3 * H) + e - b * H
    g = _carry(dh_ptr, dhp_ptr, m_ptr, e, b, ok, HAS_MASK)
    r = tl.load(a_ptr + k, mask=ok)
    z = tl.load(a_ptr + k + H, mask=ok)
    nn = tl.load(a_ptr + k + 2 * H, mask=ok)
    hp = tl.load(hp_ptr + e, mask=ok)
    dn = _times_dact(g * (1 - z), nn, ACT)
    dz = _times_dact(g * (hp - nn), z, RACT)
    dr = _times_dact(dn * tl.load(gh_ptr + k + 2 * H, mask=ok), r, RACT)
    tl.store(dx_ptr + k, dr, mask=ok)
    tl.store(dx_ptr + k + H, dz, mask=ok)
    tl.store(dx_ptr + k + 2 * H, dn, mask=ok)
    tl.store(dgh_ptr + k, dr, mask=ok)
    tl.store(dgh_ptr + k + H, dz, mask=ok)
    tl.store(dgh_ptr + k + 2 * H, dn * r, mask=ok)
    tl.store(dhp_ptr + e, tl.load(dhp_ptr + e, mask=ok) + g * z, mask=ok)


# -- GRUCell, reset before the recurrent matmul (the lecture's) -------------------------------------
@triton.jit
def _gru_rb_gates(rz_ptr, hl_ptr, a_ptr, rh_ptr, n, H, K: tl.constexpr, RACT: tl.constexpr,
                  BLOCK: tl.constexpr):
    """rz (B, 2H) pre-activations -> a[:, :2H] (B, 3H) r, z; rh (B, K·H) = r * h_lags."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < n
    b = e // H
    j = e - b * H
    r = _act(tl.load(rz_ptr + b * (2 * H) + j, mask=ok), RACT)
    z = _act(tl.load(rz_ptr + b * (2 * H) + H + j, mask=ok), RACT)
    tl.store(a_ptr + b * (3 * H) + j, r, mask=ok)
    tl.store(a_ptr + b * (3 * H) + H + j, z, mask=ok)
    for lag in range(K):
        q = b * (K * H) + lag * H + j
        tl.store(rh_ptr + q, r * tl.load(hl_ptr + q, mask=ok), mask=ok)


@triton.jit
def _gru_rb_out(npre_ptr, a_ptr, hp_ptr, h_ptr, m_ptr, n, H, ACT: tl.constexpr,
                HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    """n_t = act(npre (B, H)) into a[:, 2H:]; h_t = (1 - z) * n_t + z * h_{t-1}."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < n
    b = e // H
    k = b * (3 * H) + e - b * H
    nn = _act(tl.load(npre_ptr + e, mask=ok), ACT)
    z = tl.load(a_ptr + k + H, mask=ok)
    hp = tl.load(hp_ptr + e, mask=ok)
    h = (1 - z) * nn + z * hp
    if HAS_MASK:
        h = tl.where(tl.load(m_ptr + b, mask=ok) != 0, h, hp)
    tl.store(a_ptr + k + 2 * H, nn, mask=ok)
    tl.store(h_ptr + e, h, mask=ok)


@triton.jit
def _gru_rb_backward_zn(a_ptr, hp_ptr, dh_ptr, dhp_ptr, dx_ptr, m_ptr, n, H, ACT: tl.constexpr,
                        RACT: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    """dx[:, H:] (B, 3H) <- dL/dz_pre, dL/dn_pre; dh_{t-1} += z * dL/dh_t."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < n
    b = e // H
    k = b * (3 * H) + e - b * H
    g = _carry(dh_ptr, dhp_ptr, m_ptr, e, b, ok, HAS_MASK)
    z = tl.load(a_ptr + k + H, mask=ok)
    nn = tl.load(a_ptr + k + 2 * H, mask=ok)
    hp = tl.load(hp_ptr + e, mask=ok)
    tl.store(dx_ptr + k + H, _times_dact(g * (hp - nn), z, RACT), mask=ok)
    tl.store(dx_ptr + k + 2 * H, _times_dact(g * (1 - z), nn, ACT), mask=ok)
    tl.store(dhp_ptr + e, tl.load(dhp_ptr + e, mask=ok) + g * z, mask=ok)


@triton.jit
def _gru_rb_backward_r(drh_ptr, hl_ptr, a_ptr, dx_ptr, n, H, K: tl.constexpr, RACT: tl.constexpr,
                       BLOCK: tl.constexpr):
    """drh (B, K·H) = dL/d(r * h_lags) in, dL/dh_lags through it out; dx[:, :H] <- dL/dr_pre."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = e < n
    b = e // H
    j = e - b * H
    r = tl.load(a_ptr + b * (3 * H) + j, mask=ok)
    q = b * (K * H) + j
    d = tl.load(drh_ptr + q, mask=ok)
    dr = d * tl.load(hl_ptr + q, mask=ok)
    tl.store(drh_ptr + q, d * r, mask=ok)
    for lag in range(1, K):
        q = b * (K * H) + lag * H + j
        d = tl.load(drh_ptr + q, mask=ok)
        dr += d * tl.load(hl_ptr + q, mask=ok)
        tl.store(drh_ptr + q, d * r, mask=ok)
    tl.store(dx_ptr + b * (3 * H) + j, _times_dact(dr, r, RACT), mask=ok)


# -- launchers: tensors of one step, shapes in the docstrings -------------------------------------
def _grid(n: int) -> tuple[tuple[int], int]:
    block = min(MAX_BLOCK, triton.next_power_of_2(n))
    return (-(-n // block),), block


def _ptr(t: Tensor | None, fallback: Tensor) -> Tensor:
    """Optional tensors are passed as a pointer the kernel never reads (its flag is off)."""
    return fallback if t is None else t


def simple_forward(h: Tensor, hp: Tensor, m: Tensor | None, act: int) -> None:
    """h (B, H): z_t in, h_t out; hp (B, H) h_{t-1}; m (B,) or None."""
    grid, block = _grid(h.numel())
    _simple_forward[grid](h, hp, _ptr(m, h), h.numel(), h.shape[1], act, m is not None, block)


def simple_backward(dh: Tensor, dhp: Tensor, h: Tensor, dz: Tensor, m: Tensor | None,
                    act: int) -> None:
    """dz (B, H) <- dL/dz_t; dhp (B, H) += the mask's carry."""
    grid, block = _grid(h.numel())
    _simple_backward[grid](dh, dhp, h, dz, _ptr(m, h), h.numel(), h.shape[1], act, m is not None,
                           block)


def lstm_forward(a: Tensor, cp: Tensor, c: Tensor, hp: Tensor, h: Tensor, m: Tensor | None,
                 pp: Tensor | None, po: Tensor | None, act: int, ract: int, coupled: bool,
                 cell: bool, out: bool) -> None:
    """a (B, G·H); cp, c, hp, h (B, H); pp (P·H,), po (H,) diagonal peepholes or None."""
    grid, block = _grid(c.numel())
    _lstm_forward[grid](a, cp, c, hp, h, _ptr(m, a), _ptr(pp, a), _ptr(po, a), c.numel(),
                        c.shape[1], a.shape[1] // c.shape[1], act, ract, coupled, pp is not None,
                        m is not None, cell, out, block)


def lstm_backward(a: Tensor, cp: Tensor, c: Tensor, dh: Tensor, dhp: Tensor, dc: Tensor,
                  dcx: Tensor | None, dz: Tensor, m: Tensor | None, pp: Tensor | None,
                  po: Tensor | None, act: int, ract: int, coupled: bool, cell: bool,
                  out: bool) -> None:
    """a, dz (B, G·H); cp, c, dh, dhp, dc, dcx (B, H)."""
    grid, block = _grid(c.numel())
    _lstm_backward[grid](a, cp, c, dh, dhp, dc, _ptr(dcx, a), dz, _ptr(m, a), _ptr(pp, a),
                         _ptr(po, a), c.numel(), c.shape[1], a.shape[1] // c.shape[1], act, ract,
                         coupled, pp is not None, m is not None, dcx is not None, cell, out, block)


def gru_forward(x: Tensor, gh: Tensor, a: Tensor, hp: Tensor, h: Tensor, m: Tensor | None,
                act: int, ract: int) -> None:
    """x, gh, a (B, 3H); hp, h (B, H)."""
    grid, block = _grid(h.numel())
    _gru_forward[grid](x, gh, a, hp, h, _ptr(m, h), h.numel(), h.shape[1], act, ract,
                       m is not None, block)


def gru_backward(a: Tensor, gh: Tensor, hp: Tensor, dh: Tensor, dhp: Tensor, dx: Tensor,
                 dgh: Tensor, m: Tensor | None, act: int, ract: int) -> None:
    """a, gh, dx, dgh (B, 3H); hp, dh, dhp (B, H)."""
    grid, block = _grid(hp.numel())
    _gru_backward[grid](a, gh, hp, dh, dhp, dx, dgh, _ptr(m, hp), hp.numel(), hp.shape[1], act,
                        ract, m is not None, block)


def gru_rb_gates(rz: Tensor, hl: Tensor, a: Tensor, rh: Tensor, ract: int) -> None:
    """rz (B, 2H); hl, rh (B, K·H); a (B, 3H)."""
    hid = rz.shape[1] // 2
    grid, block = _grid(rz.shape[0] * hid)
    _gru_rb_gates[grid](rz, hl, a, rh, rz.shape[0] * hid, hid, hl.shape[1] // hid, ract, block)


def gru_rb_out(npre: Tensor, a: Tensor, hp: Tensor, h: Tensor, m: Tensor | None,
               act: int) -> None:
    """npre, hp, h (B, H); a (B, 3H)."""
    grid, block = _grid(h.numel())
    _gru_rb_out[grid](npre, a, hp, h, _ptr(m, h), h.numel(), h.shape[1], act, m is not None,
                      block)


def gru_rb_backward_zn(a: Tensor, hp: Tensor, dh: Tensor, dhp: Tensor, dx: Tensor,
                       m: Tensor | None, act: int, ract: int) -> None:
    """a, dx (B, 3H); hp, dh, dhp (B, H)."""
    grid, block = _grid(hp.numel())
    _gru_rb_backward_zn[grid](a, hp, dh, dhp, dx, _ptr(m, hp), hp.numel(), hp.shape[1], act, ract,
                              m is not None, block)


def gru_rb_backward_r(drh: Tensor, hl: Tensor, a: Tensor, dx: Tensor, ract: int) -> None:
    """drh, hl (B, K·H); a, dx (B, 3H)."""
    hid = a.shape[1] // 3
    grid, block = _grid(a.shape[0] * hid)
    _gru_rb_backward_r[grid](drh, hl, a, dx, a.shape[0] * hid, hid, drh.shape[1] // hid, ract,
                             block)
