"""LSTM, with the lecture's peephole connections and coupled forget gate.

The lecture (gate order here i, f, g = C̃, o, as torch.nn and Keras):

    f_t = σ(W_f·[C_{t-1}, h_{t-1}, x_t] + b_f)      (C_{t-1} only with peepholes)
    i_t = σ(W_i·[C_{t-1}, h_{t-1}, x_t] + b_i)      (C_{t-1} only with peepholes)
    C̃_t = tanh(W_C·[h_{t-1}, x_t] + b_C)
    C_t = f_t * C_{t-1} + i_t * C̃_t                  (coupled: f_t * C_{t-1} + (1 - f_t) * C̃_t)
    o_t = σ(W_o·[C_t, h_{t-1}, x_t] + b_o)          (C_t only with peepholes)
    h_t = o_t * tanh(C_t)

``peephole="full"`` (or True) uses full matrices on C as the lecture writes W·[C, h, x];
``peephole="diagonal"`` the per-unit weights of Gers & Schmidhuber (TF's PeepholeLSTMCell).
The coupled cell has no input gate: G = 3 gates (f, g, o) instead of 4 (i, f, g, o).

Parameters: weight_ih (G·H, I), weight_hh (G·H, K·H), bias (G·H,);
peep_prev (P·H, H) or (P·H,) for the P gates that see C_{t-1} (i, f; or f when coupled);
peep_out (H, H) or (H,) for the output gate seeing C_t.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import activations
from .base import Cell, State, report_gates

PEEPHOLES = (None, "full", "diagonal")


def normalize_peephole(peephole) -> str | None:
    if peephole is True:
        return "full"
    if peephole is False or peephole is None:
        return None
    if peephole in PEEPHOLES:
        return peephole
    raise ValueError(f"peephole must be False, True, 'full' or 'diagonal', got {peephole!r}")


class LSTMCell(Cell):
    """One LSTM step; see the module docstring for the equations."""

    state_count = 2  # (h, c)

    def __init__(self, input_size, hidden_size, lags=(1,), bias=True, peephole=False,
                 coupled=False, activation="tanh", recurrent_activation="sigmoid"):
        self.peephole = normalize_peephole(peephole)
        self.coupled = bool(coupled)
        self.gates = 3 if self.coupled else 4
        self.activation = activations.get(activation, "LSTMCell")
        self.recurrent_activation = activations.get(recurrent_activation, "LSTMCell")
        super().__init__(input_size, hidden_size, lags=lags, bias=bias)
        if self.peephole is not None:
            h, p = self.hidden_size, self.prev_peep_gates
            shape_prev = (p * h, h) if self.peephole == "full" else (p * h,)
            shape_out = (h, h) if self.peephole == "full" else (h,)
            self.peep_prev = nn.Parameter(torch.empty(shape_prev))
            self.peep_out = nn.Parameter(torch.empty(shape_out))
            bound = 1.0 / math.sqrt(h)
            nn.init.uniform_(self.peep_prev, -bound, bound)
            nn.init.uniform_(self.peep_out, -bound, bound)

    @property
    def prev_peep_gates(self) -> int:
        """How many gates see C_{t-1}: i and f, or only f when coupled."""
        return 1 if self.coupled else 2

    def peep(self, weight: Tensor, c: Tensor) -> Tensor:
        if self.peephole == "full":
            return c @ weight.t()
        return c.repeat(1, weight.shape[0] // c.shape[1]) * weight

    def step(self, xw_t: Tensor, state: State, h_lags: Tensor) -> tuple[Tensor, State]:
        hs = self.hidden_size
        c_prev = state[1]
        z = xw_t + self.recurrent(h_lags)  # (B, G·H)
        if self.peephole is not None:
            p = self.prev_peep_gates * hs
            z = torch.cat([z[:, :p] + self.peep(self.peep_prev, c_prev), z[:, p:]], dim=1)
        sig, act = self.recurrent_activation, self.activation
        if self.coupled:
            zf, zg, zo = z.split(hs, dim=1)
            f = sig(zf)
            c = f * c_prev + (1 - f) * act(zg)
            gates = {"f": f}
        else:
            zi, zf, zg, zo = z.split(hs, dim=1)
            i, f = sig(zi), sig(zf)
            c = f * c_prev + i * act(zg)
            gates = {"i": i, "f": f}
        if self.peephole is not None:
            zo = zo + self.peep(self.peep_out, c)
        o = sig(zo)
        report_gates(**gates, o=o)
        h = o * act(c)
        return h, (h, c)

    def extra_repr(self) -> str:
        extra = ""
        if self.peephole:
            extra += f", peephole={self.peephole!r}"
        if self.coupled:
            extra += ", coupled=True"
        return super().extra_repr() + extra
