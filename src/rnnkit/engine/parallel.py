"""The parallel kernel: a linear recurrence as a parallel prefix scan, O(log T) depth.

Dimension legend: B batch, T time, H units, K lags, L the largest lag, N = L·H.

The linear dynamical system h_t = A x_t + b + Σ_k Bᵏ h_{t-l_k} is first order in the stacked
state s_t = [h_t, h_{t-1}, ..., h_{t-L+1}] (B, N): s_t = s_{t-1} M + e_t with the companion matrix M
(N, N) and e_t = [A x_t + b, 0, ..., 0]. Prepending s_{-1} = [h0, ..., h0] (the reference's lag
history) as e_{-1}, an odd–even reduction solves it in ceil(log2(T+1)) levels of batched GEMMs:
    s_{2i+1} = s_{2i-1} M² + (e_{2i} M + e_{2i+1})   — the same problem on half the steps, with M²;
    s_{2i}   = s_{2i-1} M + e_{2i}                    — filled in on the way back.
The levels halve, so the work is O(T) GEMM rows, not O(T log T) as in a doubling (Hillis–Steele)
scan. Autograd differentiates it (also O(log T) depth).
Masked steps are the identity, so the real steps of each row are gathered to its front first;
rows then end at their own length.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import activations
from ..cells import SimpleCell, TeacherForcedCell
from .fused import compaction, gather_time, is_prefix
from .registry import ScanSpec, register

MAX_STATE = 2048  # N above this makes M^d (N, N) GEMMs cost more than the loop saves


def _activation(cell):
    if isinstance(cell, SimpleCell):
        return cell.activation
    if isinstance(cell, TeacherForcedCell):
        return cell.cell.activation
    return None


def companion(w: Tensor, lags: tuple[int, ...]) -> Tensor:
    """M (N, N) with s_t = s_{t-1} M + e_t; w (H, K·H) holds [B¹ .. Bᴷ]."""
    hid, lmax = w.shape[0], lags[-1]
    m = w.new_zeros(lmax * hid, lmax * hid)
    for k, l in enumerate(lags):
        m[(l - 1) * hid:l * hid, :hid] = w[:, k * hid:(k + 1) * hid].t()
    if lmax > 1:
        m[:-hid, hid:] = torch.eye((lmax - 1) * hid, dtype=w.dtype, device=w.device)
    return m


def linear_scan(xw: Tensor, h0: Tensor, w: Tensor, lags: tuple[int, ...]) -> Tensor:
    """h_t for every t of h_t = xw_t + Σ_k h_{t-l_k} Bᵏᵀ: xw (B, T, H), h0 (B, H) -> (B, T, H)."""
    batch, steps, hid = xw.shape
    lmax = lags[-1]
    e = xw if lmax == 1 else torch.cat([xw, xw.new_zeros(batch, steps, (lmax - 1) * hid)], 2)
    e = torch.cat([h0.repeat(1, lmax).unsqueeze(1), e], dim=1)  # (B, T+1, N)
    return odd_even_scan(e, companion(w, lags))[:, 1:, :hid]


def odd_even_scan(e: Tensor, m: Tensor) -> Tensor:
    """s_t = s_{t-1} m + e_t with s_{-1} = 0, for every t: e (B, T, N), m (N, N) -> (B, T, N)."""
    batch, steps, size = e.shape
    if steps == 1:
        return e
    if steps % 2:
        e = torch.cat([e, e.new_zeros(batch, 1, size)], dim=1)
    even, odd = e[:, 0::2], e[:, 1::2]  # (B, T/2, N) each
    s_odd = odd_even_scan(even @ m + odd, m @ m)
    s_before = torch.cat([s_odd.new_zeros(batch, 1, size), s_odd[:, :-1]], dim=1)  # s_{2i-1}
    s_even = s_before @ m + even
    return torch.stack([s_even, s_odd], dim=2).reshape(batch, -1, size)[:, :steps]


class ParallelKernel:
    name = "parallel"
    rank = 20

    def supports(self, cell, spec: ScanSpec) -> tuple[bool, str]:
        act = _activation(cell)
        if act is None:
            return False, f"{type(cell).__name__} is not a linear recurrence"
        if act is not activations.linear:
            name = activations.name_of(act)
            return False, f"the recurrence is linear only with activation='linear', not {name!r}"
        if spec.has_recurrent_mask:
            return False, "a per-row recurrent mask makes the transition matrix differ per row"
        if cell.lags[-1] * cell.hidden_size > MAX_STATE:
            return False, (f"stacked state of {cell.lags[-1]}·{cell.hidden_size} units exceeds "
                           f"{MAX_STATE}: the scan's N×N GEMMs would cost more than the loop")
        return True, ""

    def run(self, cell, x, state, mask, recurrent_mask):
        """x (B, T, I), state (h0 (B, H),) -> ys (B, T, H), (h_T,)."""
        xw = cell.project(x)  # (B, T, H)
        h0 = state[0]
        if mask is None:
            ys = linear_scan(xw, h0, cell.weight_hh, cell.lags)
            return ys, (ys[:, -1],)
        order = None if is_prefix(mask) else compaction(mask)
        if order is not None:
            xw, mask = gather_time(xw, order), mask.gather(1, order)
        hs = linear_scan(xw, h0, cell.weight_hh, cell.lags)
        ys = hs * mask.unsqueeze(-1)
        final = _last_real(hs, h0, mask.sum(dim=1))
        if order is not None:
            ys = gather_time(ys, order.argsort(dim=1))
        return ys, (final,)


def _last_real(hs: Tensor, h0: Tensor, lengths: Tensor) -> Tensor:
    """h at each row's last real step, h0 where a row has none: hs (B, T, H) -> (B, H)."""
    rows = torch.arange(hs.shape[0], device=hs.device)
    last = hs[rows, (lengths - 1).clamp(min=0)]
    return torch.where((lengths > 0).unsqueeze(-1), last, h0)


PARALLEL = register(ParallelKernel())
