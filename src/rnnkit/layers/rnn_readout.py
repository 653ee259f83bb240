"""``RNN``'s parameters around its cell: the lecture's output layer and the learned initial state.

``output_units`` adds the shallow RNN's output layer o_t = g(C h_t + b) (``Readout``),
``shortcut=True`` its short-cut o_t = g(C h_t + D x_t + b); ``learn_initial_state=True`` makes
h_0 (and c_0) parameters instead of zeros. Both are weights Keras has no twin for: they follow the
cell's arrays in ``get_weights``, transposed to Keras's (in, out) convention.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import activations, initializers
from ..cells import GRUCell, LSTMCell, SimpleCell


class Readout(nn.Module):
    """The shallow RNN's output layer o_t = g(C h_t [+ D x_t] + b): (B, T, H) -> (B, T, O)."""

    def __init__(self, hidden: int, inputs: int, units: int, activation, shortcut: bool):
        super().__init__()
        self.activation = activations.get(activation, "output_activation")
        self.weight_ho = nn.Parameter(initializers.glorot_uniform(torch.empty(units, hidden)))
        self.bias_o = nn.Parameter(torch.zeros(units))
        self.weight_io = (nn.Parameter(initializers.glorot_uniform(torch.empty(units, inputs)))
                          if shortcut else None)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        z = nn.functional.linear(h, self.weight_ho, self.bias_o)
        if self.weight_io is not None:
            z = z + x @ self.weight_io.t()
        return self.activation(z)


class ReadoutAndInitialState:
    """Mixin of ``RNN``: builds and applies the readout and the learned initial state.

    Reads the layer's ``cell``, ``units``, ``output_units``, ``output_activation``,
    ``shortcut``, ``has_feedback`` and ``learn_initial_state``; sets ``readout`` and
    ``initial_state`` (None when the layer has none).
    """

    def build_readout_and_initial_state(self, features: int) -> None:
        """Once the cell is built, for inputs of ``features`` features."""
        if self.output_units is not None and not self.has_feedback:  # a feedback cell has its own
            self.readout = Readout(self.units, features, self.output_units,
                                   self.output_activation, self.shortcut)
        if self.learn_initial_state:
            self.initial_state = nn.ParameterList(
                nn.Parameter(torch.zeros(n)) for n in self.cell.state_sizes())

    def default_state(self, batch: int, like: Tensor) -> tuple[Tensor, ...]:
        """The start state without ``initial_state`` or a carried one: each (B, n), in
        ``like``'s dtype and device."""
        if self.initial_state is not None:
            return tuple(p.to(like.dtype).expand(batch, -1) for p in self.initial_state)
        return tuple(self.cell.zero_state(batch, like))

    def output_sequence(self, ys: Tensor, x: Tensor) -> Tensor:
        """The outputs (B, T, out) of the cell's outputs ys (B, T, H) and the inputs x (B, T, I)."""
        return ys if self.readout is None else self.readout(ys, x)

    @property
    def output_is_first_state(self) -> bool:
        """The last output is the final state's first tensor (h_T): one of rnnkit's cells without
        an output layer. Any other cell's output (a user's Cell subclass, a Keras-style cell) can
        differ from its states, so the last output is taken from the output sequence."""
        return (self.readout is None and not self.has_feedback
                and type(self.cell) in (SimpleCell, LSTMCell, GRUCell))

    def extra_weights(self) -> list[nn.Parameter]:
        """The parameters after the cell's, in ``get_weights``'s order: C, b, D, then h_0 (c_0)."""
        out = []
        if self.readout is not None:
            out += [p for p in (self.readout.weight_ho, self.readout.bias_o,
                                self.readout.weight_io) if p is not None]
        if self.initial_state is not None:
            out += list(self.initial_state)
        return out
