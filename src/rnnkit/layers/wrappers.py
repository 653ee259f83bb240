"""Layers built from recurrent layers: Bidirectional, Stacked, DilatedRNN.

The lecture's bidirectional RNN  h^p_t = f(A^p x_t + B^p h^p_{t-1}),  h^f_t = f(A^f x_t + B^f h^f_{t+1}),
o_t = g(C^p h^p_t + C^f h^f_t)  is ``Bidirectional(layer)`` followed by a Dense on the merged states.
Stacked layers feed each layer's sequence to the next; the dilated RNN (Chang et al. 2017) stacks
layers whose recurrences skip s^(l) = M^(l-1+l0) steps, optionally closed by a convolution.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import engine
from ..errors import ConfigError
from .base import Layer
from .cells import KerasCell
from .container import Container
from .recurrent import GRU, LSTM, RNN, SimpleRNN, hold_masked

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def clone_layer(layer: RNN, name: str, **overrides: Any) -> RNN:
    """A fresh, unbuilt copy of a recurrent layer with some attributes changed. A built layer is
    made again from its config, with new weights, as Keras's Bidirectional does."""
    if not isinstance(layer, RNN):
        raise ConfigError(f"{name}: expected a recurrent layer (SimpleRNN, LSTM, GRU, RNN), "
                          f"got {type(layer).__name__}")
    if layer.built:
        new = type(layer).from_config(layer.get_config())
        for attr in ("use_cudnn",):  # not in the config (Keras keeps it the same way)
            if hasattr(layer, attr):
                setattr(new, attr, getattr(layer, attr))
    else:
        new = copy.deepcopy(layer)
    new.name = name
    for key, value in overrides.items():
        setattr(new, key, value)
    return new


def _plain(layer) -> bool:
    """A SimpleRNN/LSTM/GRU, or an RNN of one of Keras's cell layers, whose forward is its scan
    and nothing else (no dropout drawn, no readout, carried state, dilation or hooks): what one
    engine call for several layers (``engine.scan_layers``) can stand in for."""
    cell_layer = type(layer) is RNN and isinstance(layer.keras_cell, KerasCell)
    if type(layer) not in (SimpleRNN, LSTM, GRU) and not cell_layer:
        return False
    dropout = layer.training and (layer.dropout > 0 or layer.recurrent_dropout > 0)
    return (layer.built and layer.readout is None and not layer.has_feedback
            and layer.dilation == 1 and not layer.stateful and not dropout and not layer.hooked)


def _scan_together(layers, x: Tensor, states, mask: Tensor | None, bidirectional: bool = False):
    """``engine.scan_layers`` on the (plain) layers' cells with what each layer asks of the
    engine (its backend, use_cudnn's exclusion), each layer's ``last_kernel`` set; None when the
    engine does not run them in one call."""
    choices = [layer.kernel_choice() for layer in layers]
    out = engine.scan_layers([layer.cell for layer in layers], x, states, mask, bidirectional,
                             backend=[backend for backend, _ in choices],
                             exclude=[exclude for _, exclude in choices])
    if out is not None:
        for layer in layers:
            layer.last_kernel = out.kernel
    return out


class Bidirectional(Layer):
    """Runs ``layer`` forwards and a copy of it backwards, and merges their outputs.

    merge_mode: 'concat' (B, T, 2H), 'sum', 'mul', 'ave' (B, T, H), or None: [forward, backward].
    With return_state the result is [output, *forward_states, *backward_states] (with merge_mode
    None: [forward, backward, *forward_states, *backward_states]), as in Keras. ``weights``:
    Keras arrays (forward's then backward's) loaded when the layer is built. As in Keras, the two
    layers output zeros at masked steps when they return sequences.
    """

    supports_masking = True
    input_rank = 3
    float_inputs = True

    def __init__(self, layer: RNN, merge_mode: str | None = "concat", weights=None,
                 backward_layer: RNN | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if merge_mode not in MERGE_MODES:
            raise ConfigError(f"{self.name}: merge_mode must be one of {MERGE_MODES}, "
                              f"got {merge_mode!r}")
        self.merge_mode = merge_mode
        self.forward_layer = clone_layer(layer, f"forward_{layer.name.removeprefix('forward_')}")
        if backward_layer is None:
            self.backward_layer = clone_layer(
                layer, f"backward_{layer.name.removeprefix('backward_')}",
                go_backwards=not layer.go_backwards)
        else:
            if not isinstance(backward_layer, RNN):
                raise ConfigError(f"{self.name}: backward_layer must be a recurrent layer, got "
                                  f"{type(backward_layer).__name__}")
            self.backward_layer = backward_layer
            if hasattr(layer, "use_cudnn"):
                backward_layer.use_cudnn = layer.use_cudnn
        self._verify_layers()
        for sub in (self.forward_layer, self.backward_layer):
            sub.zero_output_for_mask = sub.return_sequences  # Keras forces this too
        self.initial_weights = None if weights is None else [np.asarray(w) for w in weights]
        self.stateful = layer.stateful
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state

    def _verify_layers(self) -> None:
        f, b = self.forward_layer, self.backward_layer
        if f.go_backwards == b.go_backwards:
            raise ConfigError(f"{self.name}: the forward and backward layers must differ in "
                              f"go_backwards; both have go_backwards={f.go_backwards}")
        for attr in ("stateful", "return_sequences", "return_state"):
            if getattr(f, attr) != getattr(b, attr):
                raise ConfigError(f"{self.name}: forward and backward layers must agree on {attr}: "
                                  f"{getattr(f, attr)} and {getattr(b, attr)}")

    def build(self, input_shape) -> None:
        self.forward_layer.ensure_built(input_shape)
        self.backward_layer.ensure_built(input_shape)
        if self.initial_weights is not None:
            self.set_weights(self.initial_weights)
            self.initial_weights = None

    def merge(self, fwd: Tensor, bwd: Tensor):
        if self.merge_mode == "concat":
            return torch.cat([fwd, bwd], dim=-1)
        if self.merge_mode == "sum":
            return fwd + bwd
        if self.merge_mode == "mul":
            return fwd * bwd
        if self.merge_mode == "ave":
            return (fwd + bwd) / 2
        return [fwd, bwd]

    def forward(self, x: Tensor, mask: Tensor | None = None, initial_state=None):
        init_f = init_b = None
        if initial_state is not None:
            half = len(initial_state) // 2
            init_f, init_b = initial_state[:half], initial_state[half:]
        result = self.run_together(x, mask, init_f, init_b)
        if result is None:
            result = self.run_separately(x, mask, init_f, init_b)
        out, states_f, states_b = result
        if not self.return_state:
            return out
        head = out if isinstance(out, list) else [out]
        return [*head, *states_f, *states_b]

    def run_together(self, x, mask, init_f, init_b):
        """Both directions in one engine call (``engine.scan_layers``): merged output, states;
        None where the engine cannot (then ``run_separately``). It takes a forward layer and its
        go_backwards twin only."""
        f, b = self.forward_layer, self.backward_layer
        if not (_plain(f) and _plain(b)) or f.go_backwards or not b.go_backwards \
                or f.return_state != b.return_state:
            return None
        f.check_input_shape(tuple(x.shape))
        starts = [f.start_state(x, init_f), b.start_state(x, init_b)]
        together = _scan_together([f, b], x, starts, mask, bidirectional=True)
        if together is None:
            return None
        ys, (states_f, states_b) = together.outputs, together.states  # (B, T, 2H)
        if not self.return_sequences:
            out = self.merge(states_f[0], states_b[0])
        elif self.merge_mode == "concat":
            out = ys  # already [forward, backward] along the last axis
        else:
            out = self.merge(*ys.split(f.units, dim=-1))
        return out, states_f, states_b

    def run_separately(self, x, mask, init_f, init_b):
        """The two layers one after the other: merged output, states."""
        fwd = self.forward_layer(x, mask=mask, initial_state=init_f)
        bwd = self.backward_layer(x, mask=mask, initial_state=init_b)
        states_f = states_b = ()
        if self.return_state:
            (fwd, *states_f), (bwd, *states_b) = fwd, bwd
        if self.return_sequences:
            bwd = bwd.flip(1)  # the backward layer returns its outputs in processing order
        return self.merge(fwd, bwd), states_f, states_b

    @property
    def last_kernel(self) -> str | None:
        return self.forward_layer.last_kernel

    def compute_mask(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        out, states = (shape[0], shape[1:]) if self.return_state else (shape, [])
        if self.merge_mode == "concat":
            out = (*out[:-1], out[-1] * 2)
        heads = [out, out] if self.merge_mode is None else [out]
        if not self.return_state:
            return heads if self.merge_mode is None else out
        return [*heads, *states, *states]

    def get_weights(self):
        return self.forward_layer.get_weights() + self.backward_layer.get_weights()

    def set_weights(self, weights) -> None:
        n = len(self.forward_layer.get_weights())
        self.forward_layer.set_weights(weights[:n])
        self.backward_layer.set_weights(weights[n:])

    def reset_state(self) -> None:
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    def reset_states(self) -> None:
        """Keras 2's name for ``reset_state``."""
        self.reset_state()


class Stacked(Container, Layer):
    """Recurrent layers run one after another, each on the previous one's output sequence.

    ``Stacked([LSTM(64, return_sequences=True), LSTM(32)])``, or ``Stacked(LSTM(32), depth=3)``:
    copies of one layer, all returning sequences but the last, which keeps the template's choice.
    """

    supports_masking = True
    input_rank = 3
    float_inputs = True

    def __init__(self, layers, depth: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if depth is not None:
            if int(depth) < 1:
                raise ConfigError(f"{self.name}: depth must be >= 1, got {depth}")
            template = layers
            layers = [clone_layer(template, f"{template.name}_{i}", return_sequences=True)
                      for i in range(int(depth) - 1)]
            layers.append(clone_layer(template, f"{template.name}_{int(depth) - 1}"))
        layers = list(layers)
        if not layers:
            raise ConfigError(f"{self.name}: needs at least one layer")
        for layer in layers[:-1]:
            if not getattr(layer, "return_sequences", False):
                raise ConfigError(f"{self.name}: every layer but the last must have "
                                  f"return_sequences=True; {layer.name} does not")
        self.layers = nn.ModuleList(layers)
        self.return_sequences = getattr(layers[-1], "return_sequences", False)

    def parts(self) -> list:
        return list(self.layers)

    def build(self, input_shape) -> None:
        self.build_parts(input_shape)

    def forward(self, x: Tensor, mask: Tensor | None = None):
        out = self.run_together(x, mask)
        if out is not None:
            return out
        for layer in self.layers:
            y = layer(x, mask=mask)
            mask = layer.compute_mask(x, mask)
            x = y
        return x

    def run_together(self, x: Tensor, mask: Tensor | None):
        """Every layer in one engine call (``engine.scan_layers``); None where the engine cannot
        (then the layers run one by one). It takes layers all going forwards, only the last
        returning its state."""
        layers = list(self.layers)
        if len(layers) < 2 or not all(_plain(layer) for layer in layers) \
                or any(layer.go_backwards or layer.return_state for layer in layers[:-1]) \
                or layers[-1].go_backwards:
            return None
        first, last = layers[0], layers[-1]
        first.check_input_shape(tuple(x.shape))
        starts = [layer.start_state(x, None) for layer in layers]
        together = _scan_together(layers, x, starts, mask)
        if together is None:
            return None
        ys, finals = together.outputs, together.states
        out = ys if last.return_sequences else finals[-1][0]  # (B, T, H) or (B, H)
        if last.return_sequences and mask is not None and not last.zero_output_for_mask:
            out = hold_masked(out, mask, reverse=False)  # packed steps past the end are zeros
        return [out, *finals[-1]] if last.return_state else out

    def compute_mask(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        return mask if self.return_sequences else None


def exponential_dilations(num_layers: int, base: int = 2, l0: int = 0) -> tuple[int, ...]:
    """The lecture's s^(l) = M^(l-1+l0) for l = 1..L."""
    return tuple(base ** (l - 1 + l0) for l in range(1, num_layers + 1))


class DilatedRNN(Container, Layer):
    """A stack of recurrent layers, layer l skipping s^(l) steps (Chang et al. 2017).

    ``DilatedRNN(32, dilations=(1, 2, 4, 8))`` stacks SimpleRNN(32) layers; pass a layer
    (e.g. ``GRU(32)``) to stack copies of it. Without ``dilations``, ``num_layers``, ``base`` M and
    ``l0`` give s^(l) = M^(l-1+l0). final_conv=True appends the paper's convolution: a causal
    Conv1D whose kernel spans the last layer's dilation, joining its interleaved recurrences.
    ``get_weights``: the levels' Keras arrays, then the convolution's kernel (w, H, H) and bias.
    """

    supports_masking = True
    input_rank = 3
    float_inputs = True

    def __init__(self, layer_or_units, dilations=None, num_layers: int | None = None,
                 base: int = 2, l0: int = 0, final_conv: bool = False,
                 return_sequences: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if dilations is None:
            if num_layers is None:
                raise ConfigError(f"{self.name}: give dilations=(1, 2, 4, ...) or num_layers")
            dilations = exponential_dilations(int(num_layers), int(base), int(l0))
        self.dilations = tuple(int(d) for d in dilations)
        if not self.dilations or min(self.dilations) < 1:
            raise ConfigError(f"{self.name}: dilations must be integers >= 1, got {dilations}")
        template = (SimpleRNN(int(layer_or_units)) if isinstance(layer_or_units, int)
                    else layer_or_units)
        self.levels = nn.ModuleList(
            clone_layer(template, f"{self.name}_level{i}", dilation=d, return_sequences=True,
                        return_state=False, zero_output_for_mask=True)
            for i, d in enumerate(self.dilations))
        self.final_conv = bool(final_conv)
        self.return_sequences = bool(return_sequences)
        self.conv_weight: nn.Parameter | None = None
        self.conv_bias: nn.Parameter | None = None

    def parts(self) -> list:
        return list(self.levels)

    def own_weights(self) -> list[nn.Parameter]:
        """The closing convolution's kernel (C, C, w) and bias, when built."""
        return [p for p in (self.conv_weight, self.conv_bias) if p is not None]

    def build(self, input_shape) -> None:
        shape = self.build_parts(input_shape)
        if self.final_conv:
            channels, width = shape[-1], self.dilations[-1]
            bound = 1.0 / math.sqrt(channels * width)
            self.conv_weight = nn.Parameter(
                torch.empty(channels, channels, width).uniform_(-bound, bound))
            self.conv_bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, mask: Tensor | None = None):
        for level in self.levels:
            x = level(x, mask=mask)  # (B, T, H)
        if self.final_conv:
            width = self.dilations[-1]
            seq = nn.functional.pad(x.transpose(1, 2), (width - 1, 0))  # causal: (B, H, T+w-1)
            x = nn.functional.conv1d(seq, self.conv_weight, self.conv_bias).transpose(1, 2)
        if self.return_sequences:
            return x if mask is None else x * mask[..., None].to(x.dtype)
        return x[torch.arange(x.shape[0], device=x.device), self.levels[-1].last_index(mask, x)]

    @property
    def last_kernel(self) -> str | None:
        return self.levels[-1].last_kernel

    def compute_mask(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        shape = super().compute_output_shape(input_shape)
        return shape if self.return_sequences else (shape[0], shape[-1])
