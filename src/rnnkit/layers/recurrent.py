"""Recurrent layers with Keras's names and semantics: RNN(cell), SimpleRNN, LSTM, GRU.

A layer holds a cell (built lazily from the input's feature size), applies Keras's initializers,
dropout, regularizers and constraints, and calls ``engine.scan``; the engine picks the kernel
(``self.last_kernel`` says which ran). Shapes: x (B, T, I) -> (B, T, H) with
``return_sequences`` or (B, H) without; ``return_state`` adds the final state tensors.

Under a mask (B, T) a masked step keeps the state; its output is the previous step's output, as
Keras's default ``zero_output_for_mask=False`` has it (zeros before the first real step), or zeros
with ``zero_output_for_mask=True``.

``RNN`` is the layer itself: its arguments, build, shapes and the call. Its other concerns
are mixins, each in its own file: Keras-style cells (``rnn_keras_cells.py``), dropout
(``rnn_dropout.py``), the start state and the carried state of a stateful layer (``rnn_state.py``),
the readout and the learned initial state (``rnn_readout.py``), one step at a time
(``rnn_streaming.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .. import activations
from ..cells import Cell, FeedbackCell, GRUCell, LSTMCell, SimpleCell, TeacherForcedCell
from ..engine import scan
from ..errors import ConfigError, ShapeError
from . import cells as _cells
from .base import Layer
from .keras_weights import params_from_keras, params_to_keras
from .rnn_dropout import SequenceDropout
from .rnn_keras_cells import KerasCellHost
from .rnn_readout import Readout, ReadoutAndInitialState
from .rnn_state import StatefulState
from .rnn_streaming import Streaming

__all__ = ["RNN", "SimpleRNN", "LSTM", "GRU", "Readout", "hold_masked"]


class RNN(KerasCellHost, SequenceDropout, StatefulState, ReadoutAndInitialState, Streaming, Layer):
    """Runs a cell along the time axis (Keras's ``RNN``).

    ``cell`` is one of: an rnnkit engine Cell (``rnnkit.cells``), or a callable
    ``input_size -> Cell`` so the input size can be inferred on first call; a Keras-style cell
    layer (``layers.LSTMCell(32)``, which runs on the same kernels as ``LSTM(32)``, or a user's
    cell with ``state_size`` and ``call(inputs, states)``, run on the reference kernel); or a
    list of cells (``StackedRNNCells``). ``dilation`` makes h_t depend on h_{t-d};
    ``output_units`` adds the lecture's output layer o_t = g(C h_t), ``shortcut`` the short-cut
    o_t = g(C h_t + D x_t). ``unroll`` is accepted and changes nothing: Keras unrolls its Python
    loop into the graph, rnnkit's kernels run the loop themselves. ``seed`` seeds the dropout
    masks. ``backend`` names the kernel ("auto": the fastest that can run it).
    """

    supports_masking = True
    input_rank = 3
    float_inputs = True  # integer sequences are cast to floats, as Keras's RNNs take them

    def __init__(self, cell=None, *, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 zero_output_for_mask: bool = False, dilation: int = 1, dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, seed: int | None = None,
                 output_units: int | None = None, output_activation=None,
                 shortcut: bool = False, learn_initial_state: bool = False,
                 backend: str = "auto", **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(cell, (list, tuple)):
            cell = _cells.StackedRNNCells(cell)
        # not a registered submodule: its parameters are registered once, under ``self.cell``
        object.__setattr__(self, "_cell_arg", cell)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.dilation = int(dilation)
        if self.dilation < 1:
            raise ConfigError(f"{self.name}: dilation must be >= 1, got {dilation}")
        self.set_dropout(dropout, recurrent_dropout, seed)
        self.take_cell_dropout(seed)
        self.output_units = None if output_units is None else int(output_units)
        self.output_activation = output_activation
        self.shortcut = bool(shortcut)
        if self.shortcut and self.output_units is None and not self.has_feedback:
            raise ConfigError(f"{self.name}: shortcut=True needs output_units (o_t = g(C h_t + D x_t))")
        self.learn_initial_state = bool(learn_initial_state)
        self.backend = backend
        self.last_kernel: str | None = None
        self.states: tuple[Tensor, ...] | None = None  # carried between calls when stateful
        self.cell: Cell | None = None
        self.readout: Readout | None = None
        self.initial_state: nn.ParameterList | None = None

    # -- configuration ---------------------------------------------------------------------
    has_feedback = False

    @property
    def units(self) -> int:
        if hasattr(self, "_units"):
            return self._units
        return self._probe_cell(None).hidden_size

    def make_cell(self, input_size: int) -> Cell:
        cell = self._cell_arg
        if _cells.is_keras_cell(cell):
            return self.engine_cell_of(cell, input_size)
        if isinstance(cell, nn.Module):
            return cell
        if callable(cell):
            return cell(input_size)
        raise ConfigError(f"{self.name}: RNN needs a cell (an rnnkit Cell, a callable "
                          f"input_size -> Cell, a Keras-style cell or a list of cells), got {cell!r}")

    def init_weights(self) -> None:
        """Keras's initializers; the generic RNN keeps the cell's own."""

    def build(self, input_shape) -> None:
        features = input_shape[-1]
        if features is None:
            raise ShapeError(f"{self.name}: the feature size (last axis) must be known")
        features = int(features)
        self.cell = (self.make_cell(features) if self.keras_cell is None
                     else self.build_keras_cell(input_shape[0], features))
        self._units = self.cell.hidden_size
        if self.cell.input_size != features:
            raise ShapeError(f"{self.name}: the cell expects {self.cell.input_size} input "
                             f"features, got input shape {tuple(input_shape)}")
        self.init_weights()
        self.build_readout_and_initial_state(features)
        self.built = True

    def _probe_cell(self, features):
        """The engine cell once built; before, one made for ``features`` inputs (1 when unknown)
        to read sizes from, without touching torch's random state."""
        if self.cell is not None:
            return self.cell
        with torch.random.fork_rng(devices=[]):
            return self.make_cell(int(features or 1))

    @property
    def out_features(self) -> int:
        return self.output_units if self.output_units is not None else self.units

    def state_structure(self) -> list:
        """Keras's ``state_size`` as a list: one entry per state tensor (an int), or for a stack
        one per cell (an int, or a list of ints for a cell with several states)."""
        if self.sizes_from_keras_cell:
            return self.keras_state_structure()
        return list(self._probe_cell(None).state_sizes())

    def compute_output_shape(self, input_shape):
        """Output shape (and state shapes with ``return_state``) for an input shape; works
        before the layer is built."""
        batch, steps = input_shape[0], input_shape[1]
        if self.sizes_from_keras_cell:
            size = self.output_units or self.keras_output_size()
        else:
            size = self.output_units or self._probe_cell(input_shape[-1]).hidden_size
        out = (batch, steps, size) if self.return_sequences else (batch, size)
        if not self.return_state:
            return out
        states = _cells.nest_state([(batch, n) for n in _cells.flatten_sizes(
            self.state_structure())], self.state_structure())
        return [out, *states]

    def compute_mask(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        return mask if self.return_sequences else None

    # -- running -----------------------------------------------------------------------------
    def check_input_shape(self, shape) -> None:
        super().check_input_shape(shape)
        if self.cell is not None and shape[-1] != self.cell.input_size:
            raise ShapeError(f"{self.name} ({type(self).__name__}): expected input with "
                             f"{self.cell.input_size} features (last axis), got shape {tuple(shape)}")
        if shape[1] == 0:
            raise ShapeError(f"{self.name}: got an empty sequence (T = 0), shape {tuple(shape)}")

    def run_cell(self, x: Tensor, state, mask: Tensor | None, rmask: Tensor | None, targets):
        """Scan the cell; returns (hidden sequence (B, T, H), final state)."""
        stack = self.scannable_stack
        if stack is not None:
            return self.run_stack(stack, x, state, mask)
        backend, exclude = self.kernel_choice()
        ys, final, self.last_kernel = scan(
            self.cell, x, state, mask=mask, reverse=self.go_backwards, dilation=self.dilation,
            backend=backend, recurrent_mask=rmask, exclude=exclude)
        return ys, final

    def kernel_choice(self) -> tuple[str, tuple[str, ...]]:
        """What this layer asks the engine for: (backend, kernels ``auto`` must not choose).
        Bidirectional and Stacked hand the same to ``engine.scan_layers``."""
        return self.backend, ()

    def forward(self, x: Tensor, mask: Tensor | None = None, initial_state=None,
                targets: Tensor | None = None):
        if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
            raise ShapeError(f"{self.name}: mask must have shape (B, T) = {tuple(x.shape[:2])}, "
                             f"got {tuple(mask.shape)}")
        state = self.start_state(x, initial_state)
        xin, rmask = self.dropout_masks(x)
        try:
            ys, final = self.run_cell(xin, state, mask, rmask, targets)  # (B, T, H)
        finally:
            self.forget_cell_dropout()
        self.carry_state(final)
        seq = self.output_sequence(ys, x)
        if mask is not None:
            mask = mask.to(torch.bool)
            seq = seq * mask[..., None].to(seq.dtype) if self.zero_output_for_mask else \
                hold_masked(seq, mask, self.go_backwards)
        if self.return_sequences:
            out = seq.flip(1) if self.go_backwards else seq
        elif self.output_is_first_state:
            out = final[0]
        else:
            out = seq[torch.arange(x.shape[0], device=x.device), self.last_index(mask, x)]
        if not self.return_state:
            return out
        return [out, *_cells.nest_state(final, self.state_structure())]

    def last_index(self, mask: Tensor | None, x: Tensor) -> Tensor:
        """Per sequence, the step processed last: the last real step, or the first going backwards."""
        batch, steps = x.shape[:2]
        t = torch.arange(steps, device=x.device).expand(batch, steps)
        if mask is None:
            return t[:, 0] if self.go_backwards else t[:, -1]
        if self.go_backwards:
            return torch.where(mask, t, steps).amin(dim=1).clamp(max=steps - 1)
        return torch.where(mask, t, 0).amax(dim=1)

    # -- weights as Keras arrays: the cell's, then the readout's and the initial state's ---------
    def get_weights(self):
        return self.cell_weights() + params_to_keras(self.extra_weights())

    def set_weights(self, weights) -> None:
        n = len(self.cell_weights())
        self.set_cell_weights(list(weights[:n]))
        params_from_keras(self.extra_weights(), list(weights[n:]), self.name, offset=n)


def hold_masked(seq: Tensor, mask: Tensor, reverse: bool) -> Tensor:
    """Keras's ``zero_output_for_mask=False``: a masked step's output is the output of the step
    processed before it (zeros before the first real step). seq (B, T, O), mask (B, T) bool;
    ``reverse``: the steps were processed from T-1 down to 0."""
    steps = mask.shape[1]
    if reverse:  # the nearest real step at or after t, found on the flipped mask
        before = _last_real_step(mask.flip(1)).flip(1)
        source = torch.where(before >= 0, steps - 1 - before, before)
    else:
        source = _last_real_step(mask)
    held = seq.gather(1, source.clamp(min=0)[..., None].expand(-1, -1, seq.shape[-1]))
    return held * (source >= 0)[..., None].to(seq.dtype)


def _last_real_step(mask: Tensor) -> Tensor:
    """(B, T) bool -> (B, T): the index of the last real step at or before t, -1 where none.
    Built from cumsum, scatter and gather (no cummax), so ONNX export can trace it."""
    batch, steps = mask.shape
    t = torch.arange(steps, device=mask.device).expand(batch, steps)
    count = mask.long().cumsum(dim=1)  # real steps in 0..t
    kth = torch.zeros(batch, steps + 1, dtype=torch.long, device=mask.device)
    kth = kth.scatter(1, torch.where(mask, count, 0), torch.where(mask, t, 0))  # k-th real step
    return torch.where(count > 0, kth.gather(1, count), -1)


class _KerasRNN(RNN, _cells.KerasWeightArgs):
    """Shared by SimpleRNN, LSTM and GRU: units, activations, initializers, regularizers,
    constraints."""

    def __init__(self, units: int, activation="tanh", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, lags=(1,), **kwargs: Any):
        super().__init__(None, **kwargs)
        if int(units) < 1:
            raise ConfigError(f"{self.name}: units must be a positive integer, got {units}")
        self._units = int(units)
        self.activation = activation
        activations.get(activation, f"{self.name}.activation")
        self.use_bias = bool(use_bias)
        self.lags = lags
        self.set_weight_args(kernel_initializer, recurrent_initializer, bias_initializer,
                             kernel_regularizer, recurrent_regularizer, bias_regularizer,
                             kernel_constraint, recurrent_constraint, bias_constraint)

    def init_weights(self) -> None:
        self.init_cell(self.cell, getattr(self, "unit_forget_bias", False))


class _CudnnArgs:
    """LSTM's and GRU's ``use_cudnn``: "auto" lets ``backend`` choose; True runs torch's fused
    kernel (``backend="native"``: cuDNN on a GPU) or raises saying why it cannot; False never
    runs it. ``implementation`` (Keras's 1 or 2, or 0) changes nothing here."""

    def set_cudnn(self, use_cudnn, implementation) -> None:
        if use_cudnn not in ("auto", True, False):
            raise ConfigError(f"{self.name}: use_cudnn must be 'auto', True or False, got "
                              f"{use_cudnn!r}")
        if use_cudnn is True and self.backend not in ("auto", "native"):
            raise ConfigError(f"{self.name}: use_cudnn=True runs torch's fused kernel, "
                              f"backend='native'; it contradicts backend={self.backend!r}")
        if use_cudnn is False and self.backend == "native":
            raise ConfigError(f"{self.name}: use_cudnn=False contradicts backend='native'")
        self.use_cudnn = use_cudnn
        self.implementation = _cells.check_implementation(self.name, implementation)

    def kernel_choice(self) -> tuple[str, tuple[str, ...]]:
        if self.use_cudnn == "auto":
            return super().kernel_choice()
        return ("native", ()) if self.use_cudnn else (self.backend, ("native",))


class SimpleRNN(_KerasRNN):
    """Fully-connected RNN, the lecture's a_t = g(W_aa a_{t-1} + W_ax x_t + b_a).

    The lecture's variants are arguments:
      activation='linear' with output_units: the linear dynamical system h_t = A x_t + B h_{t-1},
      o_t = C h_t; output_units: o_t = g(C h_t); shortcut=True: o_t = g(C h_t + D x_t);
      lags=(1, 2): h_t = f(A x_t + B¹h_{t-1} + B²h_{t-2}); lags=(1, s): recurrent skip connection;
      feedback=True: h_t = f(A x_t + Bⁱh_{t-1} + Bᵒo_{t-1}) (needs output_units);
      teacher_forcing=True: in training, the true y_{t-1} (``targets=``) replaces o_{t-1}.

    >>> layer = SimpleRNN(32, activation="relu", return_sequences=True)
    >>> layer(torch.randn(8, 100, 3)).shape
    torch.Size([8, 100, 32])
    """

    def __init__(self, units: int, activation="tanh", feedback: bool = False,
                 teacher_forcing: bool = False, **kwargs: Any):
        self._feedback = bool(feedback) or bool(teacher_forcing)
        super().__init__(units, activation=activation, **kwargs)
        self.teacher_forcing = bool(teacher_forcing)
        if self._feedback and self.output_units is None:
            raise ConfigError(f"{self.name}: feedback=True needs output_units (the o_t fed back)")

    @property
    def has_feedback(self) -> bool:
        return self._feedback

    def make_cell(self, input_size: int) -> Cell:
        if self.has_feedback:
            return FeedbackCell(input_size, self._units, self.output_units, self.activation,
                                self.output_activation, self.shortcut, self.lags, self.use_bias)
        return SimpleCell(input_size, self._units, self.activation, self.lags, self.use_bias)

    def init_weights(self) -> None:
        super().init_weights()
        if self.has_feedback:
            with torch.no_grad():
                for name in ("weight_oh", "weight_ho", "weight_io"):
                    p = getattr(self.cell, name)
                    if p is not None:
                        self.kernel_initializer(p)
                if self.cell.bias_o is not None:
                    self.cell.bias_o.zero_()

    def output_sequence(self, ys: Tensor, x: Tensor) -> Tensor:
        if self.has_feedback:
            return self.cell.output(ys, x)
        return super().output_sequence(ys, x)

    def run_cell(self, x, state, mask, rmask, targets):
        if not (self.teacher_forcing and self.training and targets is not None):
            return super().run_cell(x, state, mask, rmask, targets)
        expected = (*x.shape[:2], self.output_units)
        if tuple(targets.shape) != expected:
            raise ShapeError(f"{self.name}: teacher forcing needs targets of shape {expected}, "
                             f"got {tuple(targets.shape)}")
        # y_{t-1} with y_0 = 0, in the order the steps are processed.
        y = targets.flip(1) if self.go_backwards else targets
        y_prev = torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], dim=1)
        y_prev = y_prev.flip(1) if self.go_backwards else y_prev
        forced = TeacherForcedCell(self.cell)
        ys, final, self.last_kernel = scan(
            forced, torch.cat([x, y_prev.to(x.dtype)], dim=-1), state[:1], mask=mask,
            reverse=self.go_backwards, dilation=self.dilation, backend=self.backend,
            recurrent_mask=rmask)
        x_last = x[torch.arange(x.shape[0], device=x.device), self.last_index(mask, x)]
        return ys, (final[0], self.cell.output(final[0], x_last))


class LSTM(_CudnnArgs, _KerasRNN):
    """Long Short-Term Memory (Hochreiter & Schmidhuber 1997), Keras's LSTM layer.

    peephole=True/'full': the gates see the cell state as the lecture writes W·[C, h, x];
    'diagonal': per-unit peepholes (Gers & Schmidhuber). coupled=True: C_t = f C_{t-1} + (1-f) C̃_t.
    unit_forget_bias=True starts the forget-gate bias at 1 (Keras's default).
    use_cudnn and implementation: see ``_CudnnArgs``.
    """

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 unit_forget_bias: bool = True, peephole=False, coupled: bool = False,
                 use_cudnn="auto", implementation: int = 2, **kwargs: Any):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = recurrent_activation
        activations.get(recurrent_activation, f"{self.name}.recurrent_activation")
        self.unit_forget_bias = bool(unit_forget_bias)
        self.peephole, self.coupled = peephole, bool(coupled)
        self.set_cudnn(use_cudnn, implementation)

    def make_cell(self, input_size: int) -> Cell:
        return LSTMCell(input_size, self._units, self.lags, self.use_bias, self.peephole,
                        self.coupled, self.activation, self.recurrent_activation)


class GRU(_CudnnArgs, _KerasRNN):
    """Gated Recurrent Unit (Cho et al. 2014), Keras's GRU layer.

    reset_after=True (default; torch, cuDNN, Keras 3) applies the reset gate after the recurrent
    matrix and has a separate recurrent bias; reset_after=False is the lecture's formula.
    use_cudnn and implementation: see ``_CudnnArgs``.
    """

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 reset_after: bool = True, use_cudnn="auto", implementation: int = 2,
                 **kwargs: Any):
        self.reset_after = bool(reset_after)  # read by set_weight_args: one penalty, two biases
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = recurrent_activation
        activations.get(recurrent_activation, f"{self.name}.recurrent_activation")
        self.set_cudnn(use_cudnn, implementation)

    def make_cell(self, input_size: int) -> Cell:
        return GRUCell(input_size, self._units, self.lags, self.use_bias, self.reset_after,
                       self.activation, self.recurrent_activation)
