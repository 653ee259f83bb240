"""``RNN``'s part that runs Keras-style cells: ``RNN(layers.LSTMCell(32))``, ``RNN([cells])``, a user's cell.

Three kinds of cell come in as ``RNN(cell)``, and each runs the fastest way it can:

- one of rnnkit's cell layers (``layers.LSTMCell``, ...) brings its engine cell, so the layer runs
  on the kernels ``LSTM(32)`` runs on, with the cell's dropout, seed and regularizers;
- a ``StackedRNNCells`` of them runs as one scan per cell (``run_stack``), each cell on the fast
  kernels over the previous cell's output sequence, which is what the stacked step computes;
- any other Keras-style cell (a user's ``state_size`` and ``call(inputs, states)``, or a stack
  holding one) runs through ``KerasCellAdapter`` on the reference kernel, its step being arbitrary
  Python; it draws its own dropout, forgotten after every call as Keras forgets it.

Its sizes are the cell's own (``state_size``, ``output_size``); the weights are the cell's arrays.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..engine import scan
from ..errors import ConfigError
from .cells import (
    KerasCell,
    KerasCellAdapter,
    StackedRNNCells,
    build_cell,
    cell_output_size,
    is_keras_cell,
    reset_dropout,
)
from .keras_weights import cell_from_keras, cell_to_keras


class KerasCellHost:
    """Mixin of ``RNN``: the Keras-style cell the layer was given (``_cell_arg``) and how it runs.

    Reads the layer's ``_cell_arg``, ``cell`` (the engine cell once built), ``name``,
    ``training``, ``go_backwards``, ``dilation`` and ``backend``; sets ``last_kernel``.
    """

    @property
    def keras_cell(self):
        """The Keras-style cell this layer runs (a cell layer, a stack or a user's cell), or
        None for an engine cell."""
        return self._cell_arg if is_keras_cell(self._cell_arg) else None

    def take_cell_dropout(self, seed: int | None) -> None:
        """With a Keras-style cell, dropout and seed are the cell's: the layer refuses its own,
        and takes a cell layer's rates and seeds (so wrappers see the dropout it will draw)."""
        cell = self.keras_cell
        if cell is None:
            return
        if self.dropout or self.recurrent_dropout or seed is not None:
            raise ConfigError(f"{self.name}: with a Keras-style cell, dropout, "
                              "recurrent_dropout and seed are the cell's arguments "
                              f"(e.g. LSTMCell(units, dropout=0.2)), not {type(self).__name__}'s")
        if isinstance(cell, KerasCell):
            self.dropout, self.recurrent_dropout = cell.dropout, cell.recurrent_dropout
            self._seeds = cell._seeds

    def engine_cell_of(self, keras_cell, input_size: int) -> nn.Module:
        """The engine cell a Keras-style cell runs as: a cell layer's own (made for
        ``input_size`` inputs while it is unbuilt, to read sizes from), else an adapter."""
        if isinstance(keras_cell, KerasCell):
            return keras_cell.cell if keras_cell.cell is not None else keras_cell.make_cell(input_size)
        return KerasCellAdapter(keras_cell)

    def build_keras_cell(self, batch: int | None, features: int) -> nn.Module:
        """Build the Keras-style cell for steps (B, I), as Keras builds cells, and return the
        engine cell it runs as; a cell layer's regularizers become the layer's (same paths:
        ``cell.weight_ih`` ...)."""
        keras_cell = self.keras_cell
        build_cell(keras_cell, (batch, features))
        if isinstance(keras_cell, KerasCell):
            self._regularizers.extend(keras_cell._regularizers)
            return keras_cell.cell
        adapter = KerasCellAdapter(keras_cell)
        adapter.input_size = features
        adapter.train(self.training)  # the cell sees the layer's mode
        return adapter

    @property
    def sizes_from_keras_cell(self) -> bool:
        """The cell has no engine cell to read sizes from before it runs (a user's cell, a
        stack): its ``state_size`` and ``output_size`` say them."""
        keras_cell = self.keras_cell
        return keras_cell is not None and not isinstance(keras_cell, KerasCell)

    def keras_state_structure(self) -> list:
        """Keras's ``state_size`` of the cell as a list (nested per cell for a stack)."""
        size = self.keras_cell.state_size
        return list(size) if isinstance(size, (list, tuple)) else [size]

    def keras_output_size(self) -> int:
        return cell_output_size(self.keras_cell)

    @property
    def cell_draws_dropout(self) -> bool:
        """The cell (a user's, or a stack through the adapter) applies its own dropout."""
        return isinstance(self.cell, KerasCellAdapter)

    @property
    def scannable_stack(self) -> StackedRNNCells | None:
        """The stack of rnnkit cell layers this layer runs one scan per cell, or None."""
        stack = self.keras_cell
        return stack if isinstance(stack, StackedRNNCells) and stack.scannable else None

    def run_stack(self, stack: StackedRNNCells, x: Tensor, state, mask: Tensor | None):
        """rnnkit cell layers stacked: one scan per cell over the previous cell's outputs
        (B, T, H_l), each cell with its own dropout; returns (last outputs, final states)."""
        finals, offset = [], 0
        for cell_layer in stack.cells:
            cell = cell_layer.cell
            n = len(cell.state_sizes())
            rmask = None
            if self.training and cell_layer.dropout > 0:
                x = x * cell_layer._seeds.keep_mask(x, (x.shape[0], 1, x.shape[2]),
                                                     cell_layer.dropout)
            if self.training and cell_layer.recurrent_dropout > 0:
                rmask = cell_layer._seeds.keep_mask(x, (x.shape[0], cell.hidden_size),
                                                    cell_layer.recurrent_dropout)
            x, final, self.last_kernel = scan(
                cell, x, state[offset:offset + n], mask=mask, reverse=self.go_backwards,
                dilation=self.dilation, backend=self.backend, recurrent_mask=rmask)
            finals.extend(final)
            offset += n
        return x, tuple(finals)

    def forget_cell_dropout(self) -> None:
        """Keras's RNN resets its cell's dropout masks after every call."""
        if self.keras_cell is not None:
            reset_dropout(self.keras_cell)

    def cell_weights(self) -> list:
        """The cell's Keras arrays (empty before the layer is built)."""
        if self.cell is None:
            return []
        if isinstance(self.cell, KerasCellAdapter):
            return self.cell.layer.get_weights()
        return cell_to_keras(self.cell)

    def set_cell_weights(self, weights) -> None:
        if isinstance(self.cell, KerasCellAdapter):
            self.cell.layer.set_weights(weights)
        else:
            cell_from_keras(self.cell, weights, self.name)
