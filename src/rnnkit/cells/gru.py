"""GRU, with the reset gate applied after (cuDNN, torch, Keras 3 default) or before (Cho, the lecture).

Gate order r, z, n as torch.nn (Keras stores z, r, n; interop converts). With lags the recurrent
terms see [h_{t-l} for l in lags]; the interpolation always uses h_{t-1}.

reset_after=True  (torch.nn.GRU, Keras reset_after=True, separate recurrent bias b_h):
    r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

reset_after=False (the lecture: h̃_t = tanh(W·[r_t * h_{t-1}, x_t])):
    n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}))

The lecture writes h_t = (1 - z_t) * h_{t-1} + z_t * h̃_t; that is the same cell with z_t ↦ 1 - z_t,
i.e. σ(a) ↦ σ(-a): its W_z is our -W_z. We keep torch's and Keras's convention so weights move freely.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import activations
from .base import Cell, State, report_gates


class GRUCell(Cell):
    gates = 3

    def __init__(self, input_size, hidden_size, lags=(1,), bias=True, reset_after=True,
                 activation="tanh", recurrent_activation="sigmoid"):
        self.reset_after = bool(reset_after)
        self.activation = activations.get(activation, "GRUCell")
        self.recurrent_activation = activations.get(recurrent_activation, "GRUCell")
        super().__init__(input_size, hidden_size, lags=lags, bias=bias)
        if self.reset_after and bias:
            self.bias_hh = nn.Parameter(torch.empty(self.gates * self.hidden_size))
            bound = 1.0 / math.sqrt(self.hidden_size)
            nn.init.uniform_(self.bias_hh, -bound, bound)
        else:
            self.bias_hh = None

    def step(self, xw_t: Tensor, state: State, h_lags: Tensor) -> tuple[Tensor, State]:
        hs, h_prev = self.hidden_size, state[0]
        sig, act = self.recurrent_activation, self.activation
        xr, xz, xn = xw_t.split(hs, dim=1)
        if self.reset_after:
            gh = self.recurrent(h_lags)  # (B, 3H)
            if self.bias_hh is not None:
                gh = gh + self.bias_hh
            hr, hz, hn = gh.split(hs, dim=1)
            r, z = sig(xr + hr), sig(xz + hz)
            n = act(xn + r * hn)
        else:
            w_rz, w_n = self.weight_hh[: 2 * hs], self.weight_hh[2 * hs:]
            hr, hz = (h_lags @ w_rz.t()).split(hs, dim=1)
            r, z = sig(xr + hr), sig(xz + hz)
            n = act(xn + (r.repeat(1, self.num_lags) * h_lags) @ w_n.t())
        report_gates(r=r, z=z)
        h = (1 - z) * n + z * h_prev
        return h, (h,)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reset_after={self.reset_after}"
