"""Elman / SimpleRNN cell and the linear dynamical system.

The lecture:  a_t = g(W_aa a_{t-1} + W_ax x_t + b_a),  g tanh or ReLU;
as a shallow RNN:  h_t = f(A x_t + B h_{t-1});  with higher-order states
h_t = f(A x_t + B¹ h_{t-1} + B² h_{t-2} + ...)  (``lags=(1, 2)``; ``lags=(1, s)`` is a recurrent
skip connection). With f linear it is the linear dynamical system h_t = A x_t + B h_{t-1}.

Here A = ``weight_ih`` (H, I), [B¹ .. Bᴷ] = ``weight_hh`` (H, K·H), b = ``bias`` (H,).
"""

from __future__ import annotations

from torch import Tensor

from .. import activations
from .base import Cell, State


class SimpleCell(Cell):
    """h_t = f(A x_t + Σ_k Bᵏ h_{t-l_k} + b) for any activation f.

    >>> cell = SimpleCell(3, 4, activation="relu")
    >>> xw = cell.project(torch.randn(2, 5, 3))      # (B, T, H)
    """

    gates = 1

    def __init__(self, input_size, hidden_size, activation="tanh", lags=(1,), bias=True):
        self.activation = activations.get(activation, "SimpleCell")
        super().__init__(input_size, hidden_size, lags=lags, bias=bias)

    @property
    def is_linear(self) -> bool:
        return self.activation is activations.linear

    def step(self, xw_t: Tensor, state: State, h_lags: Tensor) -> tuple[Tensor, State]:
        h = self.activation(xw_t + self.recurrent(h_lags))  # (B, H)
        return h, (h,)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={activations.name_of(self.activation)}"


def LinearCell(input_size, hidden_size, lags=(1,), bias=True) -> SimpleCell:
    """The linear dynamical system h_t = A x_t + B h_{t-1} (+ b): a SimpleCell with f = identity."""
    return SimpleCell(input_size, hidden_size, activation="linear", lags=lags, bias=bias)
