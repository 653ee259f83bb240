"""Keras's cell layers: SimpleRNNCell, LSTMCell, GRUCell, StackedRNNCells, DropoutRNNCell.

Two kinds of "cell" live in rnnkit, and the names say which:

- ``rnnkit.cells.LSTMCell(input_size, hidden_size)`` and its siblings are the *engine's* cells: the
  parameters and one step of the lecture's equations, run along a sequence by ``engine.scan`` on
  any kernel. They take torch's arguments (sizes known up front).
- ``rnnkit.layers.LSTMCell(units, ...)`` and its siblings here are *Keras's* cell layers: Keras's
  arguments (initializers, regularizers, constraints, dropout, seed), built lazily from the first
  input, callable for one step as ``cell(x_t, states) -> (output, new_states)``, and usable in
  ``RNN(cell)``, ``RNN([cells])`` and ``StackedRNNCells``. Each builds one engine cell
  (``cell_layer.cell``), so an ``RNN(layers.LSTMCell(32))`` runs on the same fast kernels as
  ``LSTM(32)`` and computes the same numbers.

A cell written by a user in Keras's style, a Layer with ``state_size`` (an int or a list of ints),
optionally ``output_size``, ``build(input_shape)`` and ``call(inputs, states) -> (output, states)``,
runs in ``RNN`` too, on the reference kernel (``KerasCellAdapter``): its step is arbitrary Python,
which no fused kernel can run.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from .. import activations, constraints, initializers
from ..cells import GRUCell as _EngineGRUCell
from ..cells import LSTMCell as _EngineLSTMCell
from ..cells import SimpleCell
from ..errors import ConfigError, ShapeError
from .base import Layer
from .container import Container
from .keras_weights import cell_from_keras, cell_to_keras


# -- dropout ----------------------------------------------------------------------------------
class Seeds:
    """Keras's ``seed=``: a torch generator per device, started at ``seed`` and advancing with
    every draw, so a layer made with the same seed draws the same dropout masks; None draws from
    torch's global generator."""

    def __init__(self, seed: int | None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"seed must be an integer or None, got {seed!r}")
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def keep_mask(self, like: Tensor, shape, rate: float) -> Tensor:
        """Inverted dropout's mask of ``shape``: 0 with probability ``rate``, else 1/(1-rate)."""
        keep = 1.0 - rate
        probs = like.new_full(tuple(shape), keep)
        return torch.bernoulli(probs, generator=self.generator(like.device)) / keep


def check_rate(where: str, arg: str, rate) -> float:
    if not 0.0 <= float(rate) < 1.0:
        raise ConfigError(f"{where}: {arg} must be in [0, 1), got {rate}")
    return float(rate)


class DropoutRNNCell:
    """Keras's mixin for cells: one dropout mask per sequence for the input and one for the
    recurrent state, drawn at the first step and reused until ``RNN`` resets them after the
    sequence. Needs ``dropout`` and ``recurrent_dropout``; draws from ``seed_generator`` (a
    torch.Generator) when the cell has one, else from its ``seed``, else from torch's generator."""

    def _draw_mask(self, step_input: Tensor, rate: float) -> Tensor:
        generator = getattr(self, "seed_generator", None)
        if isinstance(generator, torch.Generator):
            keep = 1.0 - rate
            draw = torch.bernoulli(torch.full(tuple(step_input.shape), keep, dtype=step_input.dtype,
                                              device=generator.device), generator=generator)
            return draw.to(step_input.device) / keep
        seeds = getattr(self, "_seeds", None) or Seeds(getattr(self, "seed", None))
        self._seeds = seeds
        return seeds.keep_mask(step_input, step_input.shape, rate)

    def get_dropout_mask(self, step_input: Tensor) -> Tensor | None:
        if getattr(self, "_dropout_mask", None) is None and self.dropout > 0:
            self._dropout_mask = self._draw_mask(step_input, self.dropout)
        return getattr(self, "_dropout_mask", None)

    def get_recurrent_dropout_mask(self, step_input: Tensor) -> Tensor | None:
        if getattr(self, "_recurrent_dropout_mask", None) is None and self.recurrent_dropout > 0:
            self._recurrent_dropout_mask = self._draw_mask(step_input, self.recurrent_dropout)
        return getattr(self, "_recurrent_dropout_mask", None)

    def reset_dropout_mask(self) -> None:
        self._dropout_mask = None

    def reset_recurrent_dropout_mask(self) -> None:
        self._recurrent_dropout_mask = None


# -- Keras's initialization, shared with the recurrent layers ----------------------------------------
def init_recurrent(weight: Tensor, units: int, init) -> None:
    """Apply the recurrent initializer to each lag's (G·H, H) block, as Keras would to one."""
    with torch.no_grad():
        for block in weight.split(units, dim=1):
            fill = torch.empty_like(block)
            init(fill)
            block.copy_(fill)


def init_keras_weights(cell, units: int, kernel_init, recurrent_init, bias_init,
                       unit_forget_bias: bool = False) -> None:
    """Keras's initial weights for an engine cell: kernel, recurrent kernel (per lag), biases;
    an LSTM's forget-gate bias at 1 with ``unit_forget_bias`` and its peepholes at 0."""
    with torch.no_grad():
        kernel_init(cell.weight_ih)
        init_recurrent(cell.weight_hh, units, recurrent_init)
        for b in (cell.bias, getattr(cell, "bias_hh", None)):
            if b is not None:
                bias_init(b)
        if isinstance(cell, _EngineLSTMCell):
            if cell.peephole is not None:
                cell.peep_prev.zero_()
                cell.peep_out.zero_()
            if unit_forget_bias and cell.bias is not None:
                f = 0 if cell.coupled else 1  # gate order (i, f, g, o) or (f, g, o)
                cell.bias[f * units:(f + 1) * units] = 1.0


def attach_constraints(cell, kernel_constraint, recurrent_constraint, bias_constraint) -> None:
    """Keras's constraints on an engine cell's weights, applied after every optimizer step."""
    pairs = [(cell.weight_ih, kernel_constraint), (cell.weight_hh, recurrent_constraint),
             (cell.bias, bias_constraint), (getattr(cell, "bias_hh", None), bias_constraint)]
    for param, constraint in pairs:
        if param is not None and constraint is not None:
            constraints.attach(param, constraint)


class KerasWeightArgs:
    """Keras's weight arguments of a recurrent layer or cell, resolved and validated: the
    initializers, regularizers (on the parameters ``cell.weight_ih``, ...) and constraints."""

    def set_weight_args(self, kernel_initializer, recurrent_initializer, bias_initializer,
                        kernel_regularizer, recurrent_regularizer, bias_regularizer,
                        kernel_constraint, recurrent_constraint, bias_constraint) -> None:
        self.kernel_initializer = initializers.get(kernel_initializer, self.name)
        self.recurrent_initializer = initializers.get(recurrent_initializer, self.name)
        self.bias_initializer = initializers.get(bias_initializer, self.name)
        self.kernel_constraint = constraints.get(kernel_constraint, f"{self.name}.kernel_constraint")
        self.recurrent_constraint = constraints.get(recurrent_constraint,
                                                    f"{self.name}.recurrent_constraint")
        self.bias_constraint = constraints.get(bias_constraint, f"{self.name}.bias_constraint")
        self.add_regularizer("cell.weight_ih", kernel_regularizer)
        self.add_regularizer("cell.weight_hh", recurrent_regularizer)
        if self.use_bias:
            # a GRU's two biases are Keras's one (2, 3H) bias: one penalty, as in Keras
            two = getattr(self, "reset_after", False)
            self.add_regularizer(("cell.bias", "cell.bias_hh") if two else "cell.bias",
                                 bias_regularizer)

    def init_cell(self, cell, unit_forget_bias: bool = False) -> None:
        init_keras_weights(cell, self.units, self.kernel_initializer, self.recurrent_initializer,
                           self.bias_initializer, unit_forget_bias)
        attach_constraints(cell, self.kernel_constraint, self.recurrent_constraint,
                           self.bias_constraint)


IMPLEMENTATIONS = (0, 1, 2)


def check_implementation(where: str, implementation) -> int:
    """Keras's ``implementation`` (1: many small products, 2: one batched product per step; 0
    is Keras 2's legacy value): the same numbers either way; rnnkit always batches the input
    projection of all steps into one product and picks the kernel by ``backend``."""
    if implementation not in IMPLEMENTATIONS:
        raise ConfigError(f"{where}: implementation must be one of {IMPLEMENTATIONS}, got "
                          f"{implementation!r}")
    return int(implementation)


# -- the cell layers -----------------------------------------------------------------------------
class KerasCell(Layer, DropoutRNNCell, KerasWeightArgs):
    """Shared by SimpleRNNCell, LSTMCell and GRUCell: Keras's arguments, a lazily built engine
    cell, one step when called, Keras's weights."""

    def __init__(self, units: int, activation="tanh", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ConfigError(f"{self.name}: units must be a positive integer, got {units}")
        self.units = int(units)
        self.activation = activation
        activations.get(activation, f"{self.name}.activation")
        self.use_bias = bool(use_bias)
        self.dropout = check_rate(self.name, "dropout", dropout)
        self.recurrent_dropout = check_rate(self.name, "recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self._seeds = Seeds(seed)
        self.cell: nn.Module | None = None
        self.set_weight_args(kernel_initializer, recurrent_initializer, bias_initializer,
                             kernel_regularizer, recurrent_regularizer, bias_regularizer,
                             kernel_constraint, recurrent_constraint, bias_constraint)

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self) -> int:
        return self.units

    def make_cell(self, input_size: int) -> nn.Module:
        raise NotImplementedError

    def build(self, input_shape) -> None:
        features = input_shape[-1]
        if features is None:
            raise ShapeError(f"{self.name}: the feature size (last axis) must be known")
        self.cell = self.make_cell(int(features))
        self.init_cell(self.cell, getattr(self, "unit_forget_bias", False))

    def get_initial_state(self, batch_size: int | None = None) -> list[Tensor]:
        sizes = self.state_size if isinstance(self.state_size, list) else [self.state_size]
        return [torch.zeros(batch_size or 1, n, dtype=self.compute_dtype()) for n in sizes]

    def forward(self, inputs: Tensor, states, training: bool | None = None):
        """One step: x_t (B, I) and the state list -> (output (B, H), new state list)."""
        single = not isinstance(states, (list, tuple))
        states = tuple(torch.as_tensor(s, dtype=inputs.dtype, device=inputs.device)
                       for s in ((states,) if single else states))
        x, h = inputs, states[0]
        if self.training:
            dp, rdp = self.get_dropout_mask(x), self.get_recurrent_dropout_mask(h)
            x = x if dp is None else x * dp
            h = h if rdp is None else h * rdp
        y, new = self.cell.step(self.cell.project(x), states, h)
        return y, (new[0] if single else list(new))

    def get_weights(self):
        return cell_to_keras(self.cell) if self.cell is not None else []

    def set_weights(self, weights) -> None:
        cell_from_keras(self.cell, list(weights), self.name)


class SimpleRNNCell(KerasCell):
    """Keras's SimpleRNNCell: h_t = f(W x_t + U h_{t-1} + b) (engine cell: ``cells.SimpleCell``)."""

    def make_cell(self, input_size: int) -> nn.Module:
        return SimpleCell(input_size, self.units, self.activation, bias=self.use_bias)


class LSTMCell(KerasCell):
    """Keras's LSTMCell, state [h, c] (engine cell: ``cells.LSTMCell``)."""

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 use_bias: bool = True, unit_forget_bias: bool = True, implementation: int = 2,
                 **kwargs: Any):
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        self.recurrent_activation = recurrent_activation
        activations.get(recurrent_activation, f"{self.name}.recurrent_activation")
        self.unit_forget_bias = bool(unit_forget_bias)
        self.implementation = check_implementation(self.name, implementation)

    @property
    def state_size(self):
        return [self.units, self.units]

    def make_cell(self, input_size: int) -> nn.Module:
        return _EngineLSTMCell(input_size, self.units, bias=self.use_bias,
                               activation=self.activation,
                               recurrent_activation=self.recurrent_activation)


class GRUCell(KerasCell):
    """Keras's GRUCell (engine cell: ``cells.GRUCell``); reset_after as in ``layers.GRU``."""

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 use_bias: bool = True, reset_after: bool = True, implementation: int = 2,
                 **kwargs: Any):
        self.reset_after = bool(reset_after)  # read by set_weight_args for bias_hh
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        self.recurrent_activation = recurrent_activation
        activations.get(recurrent_activation, f"{self.name}.recurrent_activation")
        self.implementation = check_implementation(self.name, implementation)

    def make_cell(self, input_size: int) -> nn.Module:
        return _EngineGRUCell(input_size, self.units, bias=self.use_bias,
                              reset_after=self.reset_after, activation=self.activation,
                              recurrent_activation=self.recurrent_activation)


def is_keras_cell(cell) -> bool:
    """A Keras-style cell: has ``state_size`` and is callable as cell(inputs, states)."""
    return hasattr(cell, "state_size") and (callable(cell) or hasattr(cell, "call"))


def cell_output_size(cell) -> int:
    """The width of a Keras-style cell's output: its ``output_size``, else its first state's."""
    size = getattr(cell, "output_size", None)
    if size is not None:
        return int(size)
    state = cell.state_size
    return int(state[0] if isinstance(state, (list, tuple)) else state)


class StackedRNNCells(Container, Layer):
    """Keras's StackedRNNCells: cells run one after another within each step, as one cell;
    ``RNN(StackedRNNCells(cells))`` is ``RNN(cells)``. Its state is the list of the cells'
    states. A stack of rnnkit cell layers runs as one scan per cell on the fast kernels."""

    def __init__(self, cells, **kwargs: Any):
        super().__init__(**kwargs)
        cells = list(cells)
        if not cells:
            raise ConfigError(f"{self.name}: needs at least one cell")
        for cell in cells:
            if not is_keras_cell(cell):
                raise ConfigError(f"{self.name}: every cell needs a `state_size` and must be "
                                  f"callable as cell(inputs, states); got {type(cell).__name__}")
        self.cells = nn.ModuleList(cells) if all(isinstance(c, nn.Module) for c in cells) \
            else cells

    @property
    def state_size(self) -> list:
        return [cell.state_size for cell in self.cells]

    @property
    def output_size(self) -> int:
        return cell_output_size(self.cells[-1])

    @property
    def scannable(self) -> bool:
        """All cells are rnnkit's cell layers: the stack runs as one engine scan per cell."""
        return all(isinstance(cell, KerasCell) for cell in self.cells)

    def parts(self) -> list:
        return list(self.cells)

    def build_part(self, part, shape) -> None:
        build_cell(part, shape)

    def part_output_shape(self, part, shape):
        """A step's shape (B, I) -> the cell's output's (B, H)."""
        return (shape[0], cell_output_size(part))

    def build(self, input_shape) -> None:
        self.build_parts(input_shape)

    def get_initial_state(self, batch_size: int | None = None) -> list:
        return [initial_state(cell, batch_size or 1, self.compute_dtype(), None)
                for cell in self.cells]

    def forward(self, inputs: Tensor, states, training: bool | None = None):
        new_states = []
        for cell, state in zip(self.cells, states):
            nested = isinstance(state, (list, tuple))
            y, new = call_cell(cell, inputs, list(state) if nested else [state], self.training)
            new = list(new) if isinstance(new, (list, tuple)) else [new]
            new_states.append(new if nested or len(new) != 1 else new[0])
            inputs = y
        return inputs, new_states


# -- running a Keras-style cell ---------------------------------------------------------------
def build_cell(cell, step_shape) -> None:
    """Build a cell for steps of shape (B, I) (Keras builds cells with that shape)."""
    if isinstance(cell, Layer):
        cell.ensure_built(tuple(step_shape))
    elif hasattr(cell, "build") and not getattr(cell, "built", False):
        cell.build(tuple(step_shape))
        cell.built = True


def call_cell(cell, inputs: Tensor, states: list, training: bool):
    """One step of a Keras-style cell, with ``training`` when its call takes it."""
    if isinstance(cell, Layer):
        return cell(inputs, states, training=training)
    fn = cell.call if hasattr(cell, "call") else cell
    if "training" in inspect.signature(fn).parameters:
        return fn(inputs, states, training=training)
    return fn(inputs, states)


def initial_state(cell, batch: int, dtype, device):
    """The cell's ``get_initial_state(batch_size)``, or zeros of its ``state_size``; nested as
    the state is (a tensor for an int size, a list for a list of sizes)."""
    fn = getattr(cell, "get_initial_state", None)
    if fn is not None:
        state = fn(batch_size=batch)
        if isinstance(cell.state_size, (list, tuple)):
            return [_place(s, dtype, device) for s in state]
        return _place(state[0] if isinstance(state, (list, tuple)) else state, dtype, device)
    if isinstance(cell.state_size, (list, tuple)):
        return [torch.zeros(batch, int(n), dtype=dtype, device=device) for n in cell.state_size]
    return torch.zeros(batch, int(cell.state_size), dtype=dtype, device=device)


def _place(value, dtype, device):
    if isinstance(value, (list, tuple)):
        return [_place(v, dtype, device) for v in value]
    return torch.as_tensor(value).to(dtype=dtype, device=device)


def flatten_sizes(structure) -> list[int]:
    if isinstance(structure, (list, tuple)):
        return [n for item in structure for n in flatten_sizes(item)]
    return [int(structure)]


def flatten_state(state) -> list[Tensor]:
    if isinstance(state, (list, tuple)):
        return [t for item in state for t in flatten_state(item)]
    return [state]


def nest_state(flat, structure):
    """The flat tensors in the shape of ``structure`` (ints and lists of them)."""
    flat = list(flat)

    def take(node):
        if isinstance(node, (list, tuple)):
            return [take(item) for item in node]
        return flat.pop(0)

    return take(structure)


def reset_dropout(cell) -> None:
    """Forget the dropout masks of a sequence (Keras's RNN does this after every call)."""
    for c in getattr(cell, "cells", None) or [cell]:
        if isinstance(c, DropoutRNNCell):
            c.reset_dropout_mask()
            c.reset_recurrent_dropout_mask()


class KerasCellAdapter(nn.Module):
    """A Keras-style cell (a user's, or a StackedRNNCells) as an engine cell for the reference
    kernel: ``project`` is the identity and ``step`` calls the cell. Its state is the cell's
    state flattened to a tuple of (B, n) tensors; the layer nests it again for the user."""

    lags = (1,)
    num_lags = 1

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.input_size: int | None = None

    @property
    def structure(self):
        size = self.layer.state_size
        return list(size) if isinstance(size, (list, tuple)) else [size]

    @property
    def hidden_size(self) -> int:
        return cell_output_size(self.layer)

    @property
    def output_size(self) -> int:
        return cell_output_size(self.layer)

    def state_sizes(self) -> tuple[int, ...]:
        return tuple(flatten_sizes(self.structure))

    def zero_state(self, batch: int, like: Tensor) -> tuple[Tensor, ...]:
        state = initial_state(self.layer, batch, like.dtype, like.device)
        return tuple(flatten_state(state))

    def project(self, x: Tensor) -> Tensor:
        return x

    def step(self, x_t: Tensor, state, h_lags: Tensor):
        nested = nest_state(state, self.layer.state_size) \
            if isinstance(self.layer.state_size, (list, tuple)) else [state[0]]
        y, new = call_cell(self.layer, x_t, nested, self.training)
        new = flatten_state(new if isinstance(new, (list, tuple)) else [new])
        if len(new) != len(state):
            raise ShapeError(f"{type(self.layer).__name__}: call returned {len(new)} state "
                             f"tensors, its state_size {self.layer.state_size} says {len(state)}")
        return y, tuple(new)
