"""The Layer contract shared by every rnnkit layer.

A Layer is a torch.nn.Module whose parameters may be created lazily: ``build(input_shape)`` runs
on the first call (or when the shape is given up front, as Keras's ``input_shape=``), so
``SimpleRNN(32)`` needs no input size. Masks flow as Keras's do: ``forward(x, mask=None)`` for
layers with ``supports_masking``; ``compute_mask(x, mask)`` gives the mask for the next layer.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from operator import attrgetter

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from . import config as _config
from . import regularizers as _regularizers

_COUNTERS: dict[str, itertools.count] = defaultdict(lambda: itertools.count(1))


def auto_name(cls_name: str) -> str:
    # Keras's rule: SimpleRNN -> simple_rnn, Conv1D -> conv1d, GlobalAveragePooling1D -> ...
    snake = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls_name)
    snake = re.sub(r"([a-z])([A-Z])", r"\1_\2", snake).lower()
    n = next(_COUNTERS[snake])
    return snake if n == 1 else f"{snake}_{n - 1}"


Shape = tuple


class Layer(nn.Module):
    """Base class: lazy build, input checks, masks, regularization, Keras weights."""

    supports_masking = False
    input_rank: int | None = None  # expected rank of the input, batch included

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _config.register(cls)

    def __new__(cls, *args, **kwargs):
        # Keras 3 does the same: the config of a layer is the arguments it was made from.
        layer = super().__new__(cls)
        object.__setattr__(layer, "_init_args", _config.bound_arguments(cls, args, kwargs))
        return layer

    def __init__(self, *, name: str | None = None, input_shape=None, input_dim=None,
                 trainable: bool = True, dtype=None):
        super().__init__()
        self.name = name or auto_name(type(self).__name__)
        if input_shape is None and input_dim is not None:
            input_shape = (None, int(input_dim))
        self.declared_input_shape = None if input_shape is None else tuple(input_shape)
        self.built = False
        self.trainable = trainable
        self.dtype_policy = dtype
        self._regularizers: list[tuple[str, object]] = []

    # -- building ----------------------------------------------------------------------
    def build(self, input_shape: Shape) -> None:
        """Create parameters for an input of ``input_shape`` (batch dim first, may be None)."""
        self.built = True

    def ensure_built(self, input_shape: Shape) -> None:
        if not self.built:
            self.check_input_shape(input_shape)
            self.build(tuple(input_shape))
            self.built = True
            self.requires_grad_(self.trainable)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def check_input_shape(self, shape: Shape) -> None:
        if self.input_rank is not None and len(shape) != self.input_rank:
            raise ShapeError(
                f"{self.name} ({type(self).__name__}): expected input of rank {self.input_rank}, "
                f"got shape {tuple(shape)} (rank {len(shape)})"
            )

    def __call__(self, x, *args, **kwargs):
        if isinstance(x, Tensor):
            self.check_input_shape(tuple(x.shape))
            if not self.built:
                self.ensure_built(tuple(x.shape))
                self.to(device=x.device)
                if x.is_floating_point() and x.dtype != torch.get_default_dtype():
                    self.to(dtype=x.dtype)
        return super().__call__(x, *args, **kwargs)

    @property
    def hooked(self) -> bool:
        """Whether hooks are registered on this layer: a path that computes its output without
        calling it (``Bidirectional``, ``Stacked`` running their layers in one engine call) must
        not be taken, or the hooks would not run."""
        return bool(self._forward_hooks or self._forward_pre_hooks or self._backward_hooks
                    or self._backward_pre_hooks)

    # -- masks ---------------------------------------------------------------------------
    def compute_mask(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        return mask if self.supports_masking else None

    # -- regularization --------------------------------------------------------------------
    def add_regularizer(self, param_name: str, regularizer) -> None:
        """Penalise parameter ``param_name`` (dotted paths like 'cell.weight_ih' allowed)."""
        reg = _regularizers.get(regularizer, f"{self.name}.{param_name}")
        if reg is not None:
            self._regularizers.append((param_name, reg))

    def regularization_loss(self) -> Tensor | float:
        """The sum of the weight penalties of this layer and every layer inside it, or 0.0."""
        total: Tensor | float = 0.0
        for module in self.modules():
            if isinstance(module, Layer):
                for param_name, reg in module._regularizers:
                    total = total + reg(attrgetter(param_name)(module))
        return total

    # -- weights as arrays (Keras order and layout where a layer overrides) -------------------
    def get_weights(self) -> list[np.ndarray]:
        return [p.detach().cpu().numpy().copy() for p in self.parameters()]

    def set_weights(self, weights) -> None:
        params = list(self.parameters())
        if len(weights) != len(params):
            raise ShapeError(
                f"{self.name}: set_weights expected {len(params)} arrays, got {len(weights)}"
            )
        with torch.no_grad():
            for i, (p, w) in enumerate(zip(params, weights)):
                w = torch.as_tensor(np.asarray(w))
                if tuple(w.shape) != tuple(p.shape):
                    raise ShapeError(
                        f"{self.name}: weight {i} expected shape {tuple(p.shape)}, "
                        f"got {tuple(w.shape)}"
                    )
                p.copy_(w.to(p.dtype))

    def count_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- config (Keras's get_config / from_config) -------------------------------------------
    def get_config(self) -> dict:
        """The constructor's arguments as JSON values, with the current ``name`` and
        ``trainable``; ``type(layer).from_config(config)`` makes an equal, unbuilt layer."""
        if self._init_args is None:
            raise ConfigError(f"{self.name} ({type(self).__name__}): its constructor arguments "
                              "were not recorded (it takes *args); override get_config()")
        args = {**self._init_args, "name": self.name, "trainable": self.trainable}
        return {k: _config.serialize_value(v, self, k) for k, v in args.items()}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Layer:
        """The layer ``get_config`` describes (nested layers resolved by class name)."""
        return cls(**{k: _config.deserialize_value(k, v, custom_objects)
                      for k, v in config.items()})


def top_layers(module: nn.Module):
    """The rnnkit Layers directly under ``module`` (looking through plain containers)."""
    for child in module.children():
        if isinstance(child, Layer):
            yield child
        else:
            yield from top_layers(child)
