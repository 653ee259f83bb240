"""Output feedback and teacher forcing.

The lecture:  h_t = f(A x_t + Bⁱ h_{t-1} + Bᵒ o_{t-1}),   o_t = g(C h_t [+ D x_t]),   o_0 = 0.
With teacher forcing the true y_{t-1} is fed instead of o_{t-1} during training: then Bᵒ y_{t-1}
is known in advance and joins the input projection, and the recurrence is an ordinary one on the
input [x_t, y_{t-1}] (``TeacherForcedCell``, which shares this cell's parameters).

Parameters: weight_ih A (H, I), weight_hh Bⁱ (H, K·H), bias (H,), weight_oh Bᵒ (H, O),
weight_ho C (O, H), bias_o (O,), and weight_io D (O, I) with ``shortcut=True``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import activations
from .base import Cell, State


class FeedbackCell(Cell):
    """State (h, o): the output o_{t-1} is fed back into the next step."""

    gates = 1
    state_count = 2

    def __init__(self, input_size, hidden_size, output_size, activation="tanh",
                 output_activation=None, shortcut=False, lags=(1,), bias=True):
        self.activation = activations.get(activation, "FeedbackCell")
        self.output_activation = activations.get(output_activation, "FeedbackCell")
        self.out_size = int(output_size)
        self.shortcut = bool(shortcut)
        super().__init__(input_size, hidden_size, lags=lags, bias=bias)
        h, o = self.hidden_size, self.out_size
        self.weight_oh = nn.Parameter(torch.empty(h, o))
        self.weight_ho = nn.Parameter(torch.empty(o, h))
        self.bias_o = nn.Parameter(torch.empty(o)) if bias else None
        self.weight_io = nn.Parameter(torch.empty(o, self.input_size)) if shortcut else None
        bound = 1.0 / math.sqrt(h)
        for p in (self.weight_oh, self.weight_ho, self.bias_o, self.weight_io):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)

    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size, self.out_size)

    def project(self, x: Tensor) -> Tensor:
        """[A x_t + b, D x_t + b_o] for all t: (B, T, I) -> (B, T, H + O)."""
        xa = nn.functional.linear(x, self.weight_ih, self.bias)
        xd = self.output_direct(x)
        return torch.cat([xa, xd.expand(*xa.shape[:-1], self.out_size)], dim=-1)

    def output_direct(self, x: Tensor) -> Tensor:
        """D x + b_o (the short-cut and output bias), or zeros."""
        xd = x.new_zeros(self.out_size) if self.weight_io is None else x @ self.weight_io.t()
        return xd if self.bias_o is None else xd + self.bias_o

    def output(self, h: Tensor, x: Tensor) -> Tensor:
        """o_t = g(C h_t + D x_t + b_o) for any leading dims."""
        return self.output_activation(h @ self.weight_ho.t() + self.output_direct(x))

    def step(self, xw_t: Tensor, state: State, h_lags: Tensor) -> tuple[Tensor, State]:
        xa, xd = xw_t[:, : self.hidden_size], xw_t[:, self.hidden_size:]
        o_prev = state[1]
        h = self.activation(xa + self.recurrent(h_lags) + o_prev @ self.weight_oh.t())
        o = self.output_activation(h @ self.weight_ho.t() + xd)
        return h, (h, o)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", output_size={self.out_size}, shortcut={self.shortcut}"


class TeacherForcedCell(nn.Module):
    """The FeedbackCell run on [x_t, y_{t-1}]: h_t = f(A x_t + Bᵒ y_{t-1} + Bⁱ h_{t-1} + b).

    Holds no parameters of its own; it reads those of ``cell``.
    """

    state_count = 1

    def __init__(self, cell: FeedbackCell):
        super().__init__()
        self.cell = cell
        self.lags = cell.lags
        self.hidden_size = cell.hidden_size
        self.gates = 1

    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def zero_state(self, batch: int, like: Tensor) -> State:
        return (like.new_zeros(batch, self.hidden_size),)

    @property
    def weight_hh(self) -> Tensor:
        return self.cell.weight_hh

    @property
    def num_lags(self) -> int:
        return len(self.lags)

    def recurrent(self, h_lags: Tensor) -> Tensor:
        return self.cell.recurrent(h_lags)

    def project(self, xy: Tensor) -> Tensor:
        """xy = [x_t, y_{t-1}] (B, T, I + O) -> A x_t + Bᵒ y_{t-1} + b (B, T, H)."""
        c = self.cell
        x, y_prev = xy[..., : c.input_size], xy[..., c.input_size:]
        return nn.functional.linear(x, c.weight_ih, c.bias) + y_prev @ c.weight_oh.t()

    def step(self, xw_t: Tensor, state: State, h_lags: Tensor) -> tuple[Tensor, State]:
        h = self.cell.activation(xw_t + self.cell.recurrent(h_lags))
        return h, (h,)
