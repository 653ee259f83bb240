"""Recurrent layers with Keras's names and semantics: RNN(cell), SimpleRNN, LSTM, GRU.

A layer holds a cell (built lazily from the input's feature size), applies Keras's initializers,
dropout and regularizers, and calls ``engine.scan``; the engine picks the kernel
(``self.last_kernel`` says which ran). Shapes: x (B, T, I) -> (B, T, H) with
``return_sequences`` or (B, H) without; ``return_state`` adds the final state tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .. import activations, initializers
from ..cells import Cell, FeedbackCell, GRUCell, LSTMCell, SimpleCell, TeacherForcedCell
from ..engine import scan
from ..engine import step as engine_step
from ..engine import stepper as engine_stepper
from ..errors import ConfigError, NotBuiltError, ShapeError
from ..interop.keras import cell_from_keras, cell_to_keras
from .base import Layer


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


class RNN(Layer):
    """Runs a cell along the time axis (Keras's ``RNN``).

    ``cell`` is an rnnkit Cell, or a callable ``input_size -> Cell`` so the input size can be
    inferred on first call. ``dilation`` makes h_t depend on h_{t-d}; ``output_units`` adds the
    lecture's output layer o_t = g(C h_t), ``shortcut`` the short-cut o_t = g(C h_t + D x_t).
    """

    supports_masking = True
    input_rank = 3

    def __init__(self, cell=None, *, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, dilation: int = 1,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 output_units: int | None = None, output_activation=None,
                 shortcut: bool = False, learn_initial_state: bool = False,
                 backend: str = "auto", unroll: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self._cell_arg = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.dilation = int(dilation)
        if self.dilation < 1:
            raise ConfigError(f"{self.name}: dilation must be >= 1, got {dilation}")
        for arg, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= float(rate) < 1.0:
                raise ConfigError(f"{self.name}: {arg} must be in [0, 1), got {rate}")
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
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
        return self._units

    def make_cell(self, input_size: int) -> Cell:
        cell = self._cell_arg
        if isinstance(cell, nn.Module):
            return cell
        if callable(cell):
            return cell(input_size)
        raise ConfigError(f"{self.name}: RNN needs a cell (an rnnkit Cell or a callable "
                          f"input_size -> Cell), got {cell!r}")

    def init_weights(self) -> None:
        """Keras's initializers; the generic RNN keeps the cell's own."""

    def build(self, input_shape) -> None:
        features = input_shape[-1]
        if features is None:
            raise ShapeError(f"{self.name}: the feature size (last axis) must be known")
        self.cell = self.make_cell(int(features))
        self._units = self.cell.hidden_size
        if self.cell.input_size != features:
            raise ShapeError(f"{self.name}: the cell expects {self.cell.input_size} input "
                             f"features, got input shape {tuple(input_shape)}")
        self.init_weights()
        if self.output_units is not None and not self.has_feedback:
            self.readout = Readout(self._units, int(features), self.output_units,
                                   self.output_activation, self.shortcut)
        if self.learn_initial_state:
            self.initial_state = nn.ParameterList(
                nn.Parameter(torch.zeros(n)) for n in self.cell.state_sizes())
        self.built = True

    @property
    def out_features(self) -> int:
        return self.output_units if self.output_units is not None else self._units

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        out = (batch, steps, self.out_features) if self.return_sequences else (
            batch, self.out_features)
        if not self.return_state:
            return out
        return [out] + [(batch, n) for n in self.cell.state_sizes()]

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

    def start_state(self, x: Tensor, initial_state) -> tuple[Tensor, ...]:
        batch = x.shape[0]
        if initial_state is not None:
            states = (initial_state,) if isinstance(initial_state, Tensor) else tuple(initial_state)
            sizes = self.cell.state_sizes()
            got = [tuple(s.shape) for s in states]
            if got != [(batch, n) for n in sizes]:
                raise ShapeError(f"{self.name}: initial_state expected shapes "
                                 f"{[(batch, n) for n in sizes]}, got {got}")
            return states
        if self.stateful and self.states is not None:
            if self.states[0].shape[0] != batch:
                raise ShapeError(f"{self.name}: stateful layer got batch {batch} after batch "
                                 f"{self.states[0].shape[0]}; call reset_states() first")
            return self.states
        if self.initial_state is not None:
            return tuple(p.to(x.dtype).expand(batch, -1) for p in self.initial_state)
        return self.cell.zero_state(batch, x)

    def dropout_masks(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Keras's dropout: one mask per sequence, the same at every step."""
        if not self.training:
            return x, None
        if self.dropout > 0:
            keep = 1.0 - self.dropout
            x = x * torch.bernoulli(x.new_full((x.shape[0], 1, x.shape[2]), keep)) / keep
        rmask = None
        if self.recurrent_dropout > 0:
            keep = 1.0 - self.recurrent_dropout
            width = self.cell.num_lags * self._units
            rmask = torch.bernoulli(x.new_full((x.shape[0], width), keep)) / keep
        return x, rmask

    def run_cell(self, x: Tensor, state, mask: Tensor | None, rmask: Tensor | None, targets):
        """Scan the cell; returns (hidden sequence (B, T, H), final state)."""
        ys, final, self.last_kernel = scan(
            self.cell, x, state, mask=mask, reverse=self.go_backwards, dilation=self.dilation,
            backend=self.backend, recurrent_mask=rmask)
        return ys, final

    def forward(self, x: Tensor, mask: Tensor | None = None, initial_state=None,
                targets: Tensor | None = None):
        if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
            raise ShapeError(f"{self.name}: mask must have shape (B, T) = {tuple(x.shape[:2])}, "
                             f"got {tuple(mask.shape)}")
        state = self.start_state(x, initial_state)
        xin, rmask = self.dropout_masks(x)
        ys, final = self.run_cell(xin, state, mask, rmask, targets)  # (B, T, H)
        if self.stateful:
            self.states = tuple(s.detach() for s in final)
        seq = self.output_sequence(ys, x)
        if mask is not None:
            seq = seq * mask[..., None].to(seq.dtype)
        if self.return_sequences:
            out = seq.flip(1) if self.go_backwards else seq
        elif self.readout is None and not self.has_feedback:
            out = final[0]
        else:
            out = seq[torch.arange(x.shape[0], device=x.device), self.last_index(mask, x)]
        return [out, *final] if self.return_state else out

    def output_sequence(self, ys: Tensor, x: Tensor) -> Tensor:
        return ys if self.readout is None else self.readout(ys, x)

    def step(self, x_t: Tensor, states=None, mask: Tensor | None = None):
        """One step for online use: x_t (B, I) and the states after step t-1 (None: the layer's
        start state) -> (y_t (B, out), states after step t), as calling the layer on the whole
        sequence computes step by step (no dropout: the layer as in inference). A stateful layer
        carries the states itself when ``states`` is None.

        >>> layer = LSTM(8)
        >>> y, states = layer.step(torch.randn(1, 3))
        >>> y, states = layer.step(torch.randn(1, 3), states)
        """
        if x_t.dim() != 2:
            raise ShapeError(f"{self.name}.step: expected x_t of shape (B, I), got {tuple(x_t.shape)}")
        if self.go_backwards or self.dilation > 1:
            raise ConfigError(f"{self.name}.step: a layer with go_backwards or dilation > 1 reads "
                              "steps that have not come yet; call it on the whole sequence")
        x = x_t[:, None]  # (B, 1, I)
        self.ensure_built(tuple(x.shape))
        self.check_input_shape(tuple(x.shape))
        state = self.start_state(x, states)
        y, final, self.last_kernel = engine_step(self.cell, x_t, state, mask, self.backend)
        if self.stateful and states is None:
            self.states = tuple(s.detach() for s in final)
        out = self.output_sequence(y[:, None], x)[:, 0]
        return (out if mask is None else out * mask[:, None].to(out.dtype)), final

    def stepper(self):
        """``f(x_t, states) -> (y_t, states)``: ``step`` with its checks done once, for a
        streaming loop (states None: the start state). A layer whose output is its state (no
        readout or feedback, not stateful) gets the engine's bound step (``engine.stepper``),
        which for the standard cells is one call of torch's cell op; any other calls ``step``."""
        if self.cell is None:
            raise NotBuiltError(f"{self.name}.stepper: build the layer first (call it, or "
                                "build(input_shape))")
        plain = (self.readout is None and not self.has_feedback and not self.stateful
                 and self.initial_state is None and not self.go_backwards and self.dilation == 1)
        if not plain:
            return lambda x_t, states=None: self.step(x_t, states)
        fn = engine_stepper(self.cell, self.backend)
        self.last_kernel = fn.kernel
        return fn

    def last_index(self, mask: Tensor | None, x: Tensor) -> Tensor:
        """Per sequence, the step processed last: the last real step, or the first going backwards."""
        batch, steps = x.shape[:2]
        t = torch.arange(steps, device=x.device).expand(batch, steps)
        if mask is None:
            return t[:, 0] if self.go_backwards else t[:, -1]
        if self.go_backwards:
            return torch.where(mask, t, steps).amin(dim=1).clamp(max=steps - 1)
        return torch.where(mask, t, 0).amax(dim=1)

    def reset_states(self) -> None:
        self.states = None

    # -- weights as Keras arrays --------------------------------------------------------------
    def extra_weights(self) -> list[nn.Parameter]:
        out = []
        if self.readout is not None:
            out += [p for p in (self.readout.weight_ho, self.readout.bias_o,
                                self.readout.weight_io) if p is not None]
        if self.initial_state is not None:
            out += list(self.initial_state)
        return out

    def get_weights(self):
        extra = [p.detach().cpu().numpy().copy() for p in self.extra_weights()]
        extra = [a.T if a.ndim == 2 else a for a in extra]
        return cell_to_keras(self.cell) + extra

    def set_weights(self, weights) -> None:
        n = len(cell_to_keras(self.cell))
        cell_from_keras(self.cell, list(weights[:n]), self.name)
        rest = [torch.as_tensor(w.T if w.ndim == 2 else w) for w in weights[n:]]
        params = self.extra_weights()
        if len(rest) != len(params) or any(r.shape != p.shape for r, p in zip(rest, params)):
            raise ShapeError(f"{self.name}: set_weights expected "
                             f"{n + len(params)} arrays, got {len(weights)}")
        with torch.no_grad():
            for r, p in zip(rest, params):
                p.copy_(r.to(p.dtype))


def _init_recurrent(weight: Tensor, units: int, init) -> None:
    """Apply the recurrent initializer to each lag's (G·H, H) block, as Keras would to one."""
    with torch.no_grad():
        for block in weight.split(units, dim=1):
            fill = torch.empty_like(block)
            init(fill)
            block.copy_(fill)


class _KerasRNN(RNN):
    """Shared by SimpleRNN, LSTM and GRU: units, activations, initializers, regularizers."""

    def __init__(self, units: int, activation="tanh", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, lags=(1,), **kwargs: Any):
        super().__init__(None, **kwargs)
        if int(units) < 1:
            raise ConfigError(f"{self.name}: units must be a positive integer, got {units}")
        self._units = int(units)
        self.activation = activation
        activations.get(activation, f"{self.name}.activation")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, self.name)
        self.recurrent_initializer = initializers.get(recurrent_initializer, self.name)
        self.bias_initializer = initializers.get(bias_initializer, self.name)
        self.lags = lags
        self.add_regularizer("cell.weight_ih", kernel_regularizer)
        self.add_regularizer("cell.weight_hh", recurrent_regularizer)
        if self.use_bias:
            self.add_regularizer("cell.bias", bias_regularizer)

    def init_weights(self) -> None:
        cell = self.cell
        with torch.no_grad():
            self.kernel_initializer(cell.weight_ih)
            _init_recurrent(cell.weight_hh, self._units, self.recurrent_initializer)
            for b in (cell.bias, getattr(cell, "bias_hh", None)):
                if b is not None:
                    self.bias_initializer(b)


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


class LSTM(_KerasRNN):
    """Long Short-Term Memory (Hochreiter & Schmidhuber 1997), Keras's LSTM layer.

    peephole=True/'full': the gates see the cell state as the lecture writes W·[C, h, x];
    'diagonal': per-unit peepholes (Gers & Schmidhuber). coupled=True: C_t = f C_{t-1} + (1-f) C̃_t.
    unit_forget_bias=True starts the forget-gate bias at 1 (Keras's default).
    """

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 unit_forget_bias: bool = True, peephole=False, coupled: bool = False,
                 **kwargs: Any):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = recurrent_activation
        activations.get(recurrent_activation, f"{self.name}.recurrent_activation")
        self.unit_forget_bias = bool(unit_forget_bias)
        self.peephole, self.coupled = peephole, bool(coupled)

    def make_cell(self, input_size: int) -> Cell:
        return LSTMCell(input_size, self._units, self.lags, self.use_bias, self.peephole,
                        self.coupled, self.activation, self.recurrent_activation)

    def init_weights(self) -> None:
        super().init_weights()
        cell = self.cell
        with torch.no_grad():
            if cell.peephole is not None:
                cell.peep_prev.zero_()
                cell.peep_out.zero_()
            if self.unit_forget_bias and cell.bias is not None:
                f = 0 if cell.coupled else 1  # gate order (i, f, g, o) or (f, g, o)
                cell.bias[f * self._units:(f + 1) * self._units] = 1.0


class GRU(_KerasRNN):
    """Gated Recurrent Unit (Cho et al. 2014), Keras's GRU layer.

    reset_after=True (default; torch, cuDNN, Keras 3) applies the reset gate after the recurrent
    matrix and has a separate recurrent bias; reset_after=False is the lecture's formula.
    """

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 reset_after: bool = True, **kwargs: Any):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = recurrent_activation
        activations.get(recurrent_activation, f"{self.name}.recurrent_activation")
        self.reset_after = bool(reset_after)

    def make_cell(self, input_size: int) -> Cell:
        return GRUCell(input_size, self._units, self.lags, self.use_bias, self.reset_after,
                       self.activation, self.recurrent_activation)
