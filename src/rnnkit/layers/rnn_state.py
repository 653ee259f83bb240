"""``RNN``'s part that says which state a call starts from, and keeps the final one when stateful.

A call starts from the ``initial_state`` it is given, else (``stateful=True``) from the state the
previous call left, else from the layer's default state (zeros, or the learned initial state).
A stateful layer keeps its final state, detached, for the next call until ``reset_state()``:
Keras's stateful RNNs, carried across batches of one long series (TBPTT carries them too).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ShapeError
from .cells import flatten_state, nest_state


class StatefulState:
    """Mixin of ``RNN``: the start state of a call and the state a stateful layer carries.

    Reads the layer's ``cell``, ``name``, ``stateful``, ``states`` (the carried state, None when
    there is none), ``default_state``, ``state_structure`` and ``compute_dtype``.
    """

    def get_initial_state(self, batch_size: int) -> list:
        """The state a call starts from without ``initial_state``: zeros (or the learned
        initial state), as Keras's list (nested per cell for a stack)."""
        if self.cell is None:
            raise ShapeError(f"{self.name}: get_initial_state needs the layer built (call it "
                             "once, or build(input_shape))")
        param = next(self.cell.parameters(), None)
        like = torch.zeros((), dtype=self.compute_dtype(),
                           device=None if param is None else param.device)
        state = self.default_state(int(batch_size), like)
        return nest_state(state, self.state_structure())

    def start_state(self, x: Tensor, initial_state) -> tuple[Tensor, ...]:
        """The state tensors, each (B, n), a call on x (B, T, I) starts from."""
        batch = x.shape[0]
        if initial_state is not None:
            states = tuple(flatten_state(initial_state))
            sizes = self.cell.state_sizes()
            got = [tuple(s.shape) for s in states]
            if got != [(batch, n) for n in sizes]:
                raise ShapeError(f"{self.name}: initial_state expected shapes "
                                 f"{[(batch, n) for n in sizes]}, got {got}")
            return tuple(s.to(x.dtype) for s in states)
        if self.stateful and self.states is not None:
            if self.states[0].shape[0] != batch:
                raise ShapeError(f"{self.name}: a stateful layer keeps the batch size of its "
                                 f"state: expected batch size {self.states[0].shape[0]}, got "
                                 f"{batch}; call reset_state() first to start over")
            return self.states
        return self.default_state(batch, x)

    def carry_state(self, final: tuple[Tensor, ...]) -> None:
        """A stateful layer keeps a call's final state for the next call, cut from the graph
        (backpropagation stops at the call's first step, as in Keras)."""
        if self.stateful:
            self.states = tuple(s.detach() for s in final)

    def reset_state(self) -> None:
        """Keras 3's name: a stateful layer starts from zeros again at its next call."""
        self.states = None

    def reset_states(self) -> None:
        """Keras 2's name for ``reset_state``."""
        self.reset_state()
