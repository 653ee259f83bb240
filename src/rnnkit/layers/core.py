"""Keras's core layers as torch modules: Dense, Embedding, Dropout, normalization, Conv1D, pooling.

Weights live in torch's layout (Dense ``weight`` (units, I), Conv1D ``weight`` (filters, I, k));
``get_weights``/``set_weights`` speak Keras's layout, which for both is torch's with the axes
reversed: kernel (I, units) and (k, I, filters). Sequence inputs are channels-last (B, T, C).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import activations, initializers
from ..errors import ConfigError, ShapeError
from .base import Layer, Shape


def _to_numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


class _KerasWeights(Layer):
    """A layer whose Keras weights are listed as (tensor, reversed_axes) in Keras's order."""

    def keras_weights(self) -> list[tuple[Tensor, bool]]:
        return [(p, False) for p in self.parameters()]

    def set_kernel_options(self, activation, use_bias: bool, kernel_initializer, bias_initializer,
                           kernel_regularizer, bias_regularizer) -> None:
        """Keras's shared arguments of a layer with a ``weight`` kernel and an optional ``bias``."""
        self.activation = activations.get(activation, f"{self.name}.activation")
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer,
                                                   f"{self.name}.kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, f"{self.name}.bias_initializer")
        self.add_regularizer("weight", kernel_regularizer)
        if use_bias:
            self.add_regularizer("bias", bias_regularizer)

    def get_weights(self) -> list[np.ndarray]:
        return [_to_numpy(t.permute(*reversed(range(t.dim()))) if rev else t)
                for t, rev in self.keras_weights()]

    def set_weights(self, weights) -> None:
        slots = self.keras_weights()
        if len(weights) != len(slots):
            raise ShapeError(f"{self.name}: set_weights expected {len(slots)} arrays, "
                             f"got {len(weights)}")
        with torch.no_grad():
            for i, ((t, rev), w) in enumerate(zip(slots, weights)):
                w = torch.as_tensor(np.asarray(w))
                if rev:
                    w = w.permute(*reversed(range(w.dim())))
                if tuple(w.shape) != tuple(t.shape):
                    want = tuple(reversed(t.shape)) if rev else tuple(t.shape)
                    got = tuple(reversed(w.shape)) if rev else tuple(w.shape)
                    raise ShapeError(f"{self.name}: weight {i} expected shape {want}, got {got}")
                t.copy_(w.to(t.dtype))

    def count_params(self) -> int:
        return sum(t.numel() for t, _ in self.keras_weights())


def _check_min_rank(layer: Layer, shape: Shape, rank: int) -> None:
    if len(shape) < rank:
        raise ShapeError(f"{layer.name} ({type(layer).__name__}): expected input of rank >= "
                         f"{rank}, got shape {tuple(shape)} (rank {len(shape)})")


def _known_last_dim(layer: Layer, shape: Shape) -> int:
    if shape[-1] is None:
        raise ShapeError(f"{layer.name}: the last dimension of the input must be known, "
                         f"got shape {tuple(shape)}")
    return int(shape[-1])


def _check_features(layer: Layer, x: Tensor, expected: int) -> None:
    if not x.is_floating_point():
        raise ShapeError(f"{layer.name} ({type(layer).__name__}): expected a float input, got "
                         f"dtype {x.dtype} (token ids go through an Embedding first)")
    if x.shape[-1] != expected:
        raise ShapeError(f"{layer.name} ({type(layer).__name__}): expected {expected} input "
                         f"features on the last axis, got shape {tuple(x.shape)}")


class Dense(_KerasWeights):
    """y = activation(x · Wᵀ + b) on the last axis of any-rank input: (B, ..., I) -> (B, ..., units).

    Keras's ``input_dim=I`` means ``input_shape=(I,)`` here. Masks pass through unchanged.
    """

    supports_masking = True

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, *, input_dim=None, **kwargs):
        if input_dim is not None and kwargs.get("input_shape") is None:
            kwargs["input_shape"] = (int(input_dim),)
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ConfigError(f"{self.name}: units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.set_kernel_options(activation, use_bias, kernel_initializer, bias_initializer,
                                kernel_regularizer, bias_regularizer)

    def build(self, input_shape: Shape) -> None:
        _check_min_rank(self, input_shape, 2)
        self.in_features = _known_last_dim(self, input_shape)
        self.weight = nn.Parameter(torch.empty(self.units, self.in_features))  # (units, I)
        self.kernel_initializer(self.weight)
        self.bias = nn.Parameter(self.bias_initializer(torch.empty(self.units))) \
            if self.use_bias else None

    def keras_weights(self) -> list[tuple[Tensor, bool]]:
        if not self.built:
            return []
        return [(self.weight, True)] + ([(self.bias, False)] if self.use_bias else [])

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        _check_features(self, x, self.in_features)
        return self.activation(F.linear(x, self.weight, self.bias))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.units)


class Embedding(_KerasWeights):
    """Token ids (B, ...) -> vectors (B, ..., output_dim), a lookup in ``weight`` (input_dim, D).

    With ``mask_zero`` id 0 is padding and the mask ``x != 0`` goes to the next layer.
    ``input_length`` (Keras 2) is accepted and ignored: shapes come from the data.
    """

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform",
                 embeddings_regularizer=None, mask_zero: bool = False, input_length=None,
                 **kwargs):
        super().__init__(**kwargs)
        if int(input_dim) <= 0 or int(output_dim) <= 0:
            raise ConfigError(f"{self.name}: input_dim and output_dim must be positive, got "
                              f"input_dim={input_dim!r}, output_dim={output_dim!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.mask_zero = mask_zero
        self.embeddings_initializer = initializers.get(
            embeddings_initializer, f"{self.name}.embeddings_initializer")
        self.add_regularizer("weight", embeddings_regularizer)

    def build(self, input_shape: Shape) -> None:
        self.weight = nn.Parameter(torch.empty(self.input_dim, self.output_dim))
        self.embeddings_initializer(self.weight)

    def __call__(self, x, *args, **kwargs):
        # Validate before Layer.__call__ builds (and might cast) on a bad first input.
        x = self.as_input(x)
        if isinstance(x, Tensor):
            self.check_inputs(x)
        return super().__call__(x, *args, **kwargs)

    def check_inputs(self, x: Tensor) -> None:
        """Token ids must be integers in [0, input_dim)."""
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ShapeError(f"{self.name} (Embedding): expected integer token ids, got dtype "
                             f"{x.dtype}; convert the input to int64 (input_dim={self.input_dim})")
        if x.numel() == 0 or torch.compiler.is_exporting():
            return  # an exported graph cannot branch on data; eager calls are checked
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= self.input_dim:
            bad = lo if lo < 0 else hi
            raise ShapeError(f"{self.name} (Embedding): token id {bad} is outside "
                             f"[0, input_dim={self.input_dim})")

    def forward(self, x: Tensor) -> Tensor:
        return F.embedding(x, self.weight)

    def compute_mask(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        return x != 0 if self.mask_zero else None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape, self.output_dim)


class Masking(Layer):
    """Keras's Masking: a step whose features all equal ``mask_value`` is masked for the layers
    after it (``compute_mask``: (B, T) True where a feature differs), and its features are set
    to zero. In a Sequential the mask reaches the recurrent layers, which skip masked steps."""

    supports_masking = True

    def __init__(self, mask_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def compute_mask(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return (x != self.mask_value).any(dim=-1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return x * self.compute_mask(x)[..., None].to(x.dtype)


class Dropout(Layer):
    """Zero each entry with probability ``rate`` and scale the rest by 1/(1-rate) in a training
    call (``training=True``, or after ``module.train()``); the identity otherwise. Any shape;
    masks pass through."""

    supports_masking = True

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"{self.name}: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return F.dropout(x, self.rate, self.training)


def _resolve_axis(layer: Layer, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ConfigError(f"{layer.name}: axis {axis} is out of range for input of rank {rank}")
    return axis % rank


def _broadcast_shape(axis: int, rank: int, size: int) -> list[int]:
    shape = [1] * rank
    shape[axis] = size
    return shape


class _Normalization(_KerasWeights):
    """Shared parameters of the normalizations: gamma (``weight``) and beta (``bias``) over axis."""

    supports_masking = True

    def __init__(self, axis: int, epsilon: float, center: bool, scale: bool,
                 beta_initializer, gamma_initializer, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer, f"{self.name}.beta_initializer")
        self.gamma_initializer = initializers.get(gamma_initializer,
                                                  f"{self.name}.gamma_initializer")

    def build(self, input_shape: Shape) -> None:
        _check_min_rank(self, input_shape, 2)
        self.rank = len(input_shape)
        self.axis_index = _resolve_axis(self, self.axis, self.rank)
        size = input_shape[self.axis_index]
        if size is None:
            raise ShapeError(f"{self.name}: the size of axis {self.axis} must be known, "
                             f"got shape {tuple(input_shape)}")
        self.size = int(size)
        self.weight = nn.Parameter(self.gamma_initializer(torch.empty(self.size))) \
            if self.scale else None
        self.bias = nn.Parameter(self.beta_initializer(torch.empty(self.size))) \
            if self.center else None

    def _affine(self, normalized: Tensor) -> Tensor:
        shape = _broadcast_shape(self.axis_index, normalized.dim(), self.size)
        if self.weight is not None:
            normalized = normalized * self.weight.view(shape)
        if self.bias is not None:
            normalized = normalized + self.bias.view(shape)
        return normalized

    def keras_weights(self) -> list[tuple[Tensor, bool]]:
        if not self.built:
            return []
        return [(t, False) for t in (self.weight, self.bias) if t is not None]


class BatchNormalization(_Normalization):
    """Normalize each feature of ``axis`` over the batch (and time):
    y = γ (x - μ) / √(σ² + ε) + β, on (B, C) or (B, T, C).

    Training mode uses the batch's biased moments (masked steps excluded) and updates
    moving = momentum · moving + (1 - momentum) · batch, as Keras; eval mode uses the moving ones.
    The moving statistics are buffers, counted as Keras's non-trainable weights.
    """

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", **kwargs):
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         **kwargs)
        self.momentum = float(momentum)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer,
                                                        f"{self.name}.moving_mean_initializer")
        self.moving_variance_initializer = initializers.get(
            moving_variance_initializer, f"{self.name}.moving_variance_initializer")

    def build(self, input_shape: Shape) -> None:
        super().build(input_shape)
        self.register_buffer("running_mean", self.moving_mean_initializer(torch.empty(self.size)))
        self.register_buffer("running_var",
                             self.moving_variance_initializer(torch.empty(self.size)))

    def keras_weights(self) -> list[tuple[Tensor, bool]]:
        if not self.built:
            return []
        return super().keras_weights() + [(self.running_mean, False), (self.running_var, False)]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        shape = _broadcast_shape(self.axis_index, x.dim(), self.size)
        if self.training:
            mean, var = self._batch_moments(x, mask)
            with torch.no_grad():
                self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)
                self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var)
        else:
            mean, var = self.running_mean, self.running_var
        return self._affine((x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.epsilon))

    def _batch_moments(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        dims = [d for d in range(x.dim()) if d != self.axis_index]
        if mask is None or self.axis_index != x.dim() - 1:
            return x.mean(dims), x.var(dims, unbiased=False)
        w = mask.to(x.dtype).unsqueeze(-1).expand_as(x)  # (B, T, C)
        count = w.sum(dims).clamp(min=1.0)
        mean = (x * w).sum(dims) / count
        var = (w * (x - mean).square()).sum(dims) / count
        return mean, var


class LayerNormalization(_Normalization):
    """Normalize each sample over ``axis``: y = γ (x - μ) / √(σ² + ε) + β (biased σ², as Keras)."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 **kwargs):
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         **kwargs)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mean = x.mean(self.axis_index, keepdim=True)
        var = x.var(self.axis_index, unbiased=False, keepdim=True)
        return self._affine((x - mean) * torch.rsqrt(var + self.epsilon))


def _same_padding(length: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same': output ceil(T / stride), the odd padding step on the right."""
    total = max((math.ceil(length / stride) - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


def _window_output_length(length, kernel: int, stride: int, padding: str):
    if length is None:
        return None
    if padding == "valid":
        return max((length - kernel) // stride + 1, 0)
    return math.ceil(length / stride)


def _check_padding(layer: Layer, padding: str, allowed: tuple[str, ...]) -> str:
    if padding not in allowed:
        raise ConfigError(f"{layer.name}: unknown padding {padding!r}; expected one of "
                          f"{list(allowed)}")
    return padding


class Conv1D(_KerasWeights):
    """1-D convolution over time on channels-last input: (B, T, I) -> (B, T', filters).

    padding 'valid' (T' = ⌊(T - d(k-1) - 1)/s⌋ + 1), 'same' (T' = ⌈T/s⌉) or 'causal' (left-pad
    d(k-1), so output t sees inputs ≤ t). ``weight`` is torch's (filters, I, k).
    """

    input_rank = 3

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid",
                 dilation_rate=1, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _single(kernel_size)
        self.strides = _single(strides)
        self.dilation_rate = _single(dilation_rate)
        self.padding = _check_padding(self, padding, ("valid", "same", "causal"))
        if self.strides > 1 and self.dilation_rate > 1:
            raise ConfigError(f"{self.name}: strides > 1 with dilation_rate > 1 is not supported "
                              f"(got strides={strides}, dilation_rate={dilation_rate}), as Keras")
        self.set_kernel_options(activation, use_bias, kernel_initializer, bias_initializer,
                                kernel_regularizer, bias_regularizer)

    @property
    def receptive_field(self) -> int:
        return self.dilation_rate * (self.kernel_size - 1) + 1

    def build(self, input_shape: Shape) -> None:
        self.in_channels = _known_last_dim(self, input_shape)
        self.weight = nn.Parameter(torch.empty(self.filters, self.in_channels, self.kernel_size))
        self.kernel_initializer(self.weight)
        self.bias = nn.Parameter(self.bias_initializer(torch.empty(self.filters))) \
            if self.use_bias else None

    def keras_weights(self) -> list[tuple[Tensor, bool]]:
        if not self.built:
            return []
        return [(self.weight, True)] + ([(self.bias, False)] if self.use_bias else [])

    def forward(self, x: Tensor) -> Tensor:
        _check_features(self, x, self.in_channels)
        x = x.transpose(1, 2)  # (B, I, T)
        if self.padding == "causal":
            x = F.pad(x, (self.receptive_field - 1, 0))
        elif self.padding == "same":
            x = F.pad(x, _same_padding(x.shape[-1], self.receptive_field, self.strides))
        y = F.conv1d(x, self.weight, self.bias, stride=self.strides, dilation=self.dilation_rate)
        return self.activation(y.transpose(1, 2))  # (B, T', filters)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        mode = "same" if self.padding == "causal" else self.padding
        steps = _window_output_length(input_shape[1], self.receptive_field, self.strides, mode)
        return (input_shape[0], steps, self.filters)


def _single(value) -> int:
    if isinstance(value, (tuple, list)):
        (value,) = value
    return int(value)


class MaxPooling1D(Layer):
    """Max over windows of ``pool_size`` steps: (B, T, C) -> (B, T', C), T' as Conv1D's."""

    input_rank = 3

    def __init__(self, pool_size=2, strides=None, padding: str = "valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _single(pool_size)
        self.strides = self.pool_size if strides is None else _single(strides)
        self.padding = _check_padding(self, padding, ("valid", "same"))

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)  # (B, C, T)
        if self.padding == "same":
            x = F.pad(x, _same_padding(x.shape[-1], self.pool_size, self.strides),
                      value=-math.inf)
        return F.max_pool1d(x, self.pool_size, self.strides).transpose(1, 2)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        steps = _window_output_length(input_shape[1], self.pool_size, self.strides, self.padding)
        return (input_shape[0], steps, input_shape[2])


class _GlobalPooling1D(Layer):
    """Pools the time axis away: (B, T, C) -> (B, C); the mask ends here."""

    input_rank = 3
    supports_masking = True

    def compute_mask(self, x: Tensor, mask: Tensor | None) -> None:
        return None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], input_shape[2])


class GlobalMaxPooling1D(_GlobalPooling1D):
    """Max over time, masked steps excluded (Keras ignores the mask here): (B, T, C) -> (B, C)."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            return x.amax(dim=1)
        keep = mask.bool().unsqueeze(-1)  # (B, T, 1)
        y = x.masked_fill(~keep, -math.inf).amax(dim=1)
        return y.masked_fill(~keep.any(dim=1), 0.0)  # all-masked rows: 0, not -inf


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the unmasked time steps: (B, T, C) -> (B, C)."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            return x.mean(dim=1)
        w = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        return (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


class Flatten(Layer):
    """(B, d1, d2, ...) -> (B, d1·d2·...)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], size)


class TimeDistributed(Layer):
    """Apply ``layer`` to every time step: (B, T, ...) -> (B, T, ...'), by folding T into B."""

    supports_masking = True

    def __init__(self, layer: Layer, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, Layer):
            raise ConfigError(f"{self.name}: expected an rnnkit Layer to wrap, "
                              f"got {type(layer).__name__}")
        self.layer = layer

    def build(self, input_shape: Shape) -> None:
        _check_min_rank(self, input_shape, 3)
        self.layer.ensure_built((None, *input_shape[2:]))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, T = x.shape[:2]
        y = self.layer(x.reshape(B * T, *x.shape[2:]))
        return y.reshape(B, T, *y.shape[1:])

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (*input_shape[:2], *inner[1:])

    def get_weights(self) -> list[np.ndarray]:
        return self.layer.get_weights()

    def set_weights(self, weights) -> None:
        self.layer.set_weights(weights)

    def count_params(self) -> int:
        return self.layer.count_params()
