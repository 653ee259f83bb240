"""Activation functions by Keras name, or any callable."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .errors import ConfigError


def linear(x: Tensor) -> Tensor:
    return x


def hard_sigmoid(x: Tensor) -> Tensor:
    # Keras 3: relu6(x + 3) / 6
    return torch.nn.functional.hardsigmoid(x)


def softmax(x: Tensor) -> Tensor:
    return torch.softmax(x, dim=-1)


_BY_NAME: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": linear,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "softmax": softmax,
    "elu": torch.nn.functional.elu,
    "selu": torch.selu,
    "gelu": torch.nn.functional.gelu,
    "softplus": torch.nn.functional.softplus,
    "softsign": torch.nn.functional.softsign,
    "swish": torch.nn.functional.silu,
    "silu": torch.nn.functional.silu,
    "exponential": torch.exp,
    "leaky_relu": torch.nn.functional.leaky_relu,
}


def get(activation, where: str = "activation") -> Callable[[Tensor], Tensor]:
    """Resolve a Keras activation name (or None for linear, or a callable)."""
    if activation is None:
        return linear
    if callable(activation):
        return activation
    if isinstance(activation, str) and activation in _BY_NAME:
        return _BY_NAME[activation]
    raise ConfigError(
        f"{where}: unknown activation {activation!r}; expected one of {sorted(_BY_NAME)} "
        "or a callable"
    )


def name_of(fn) -> str:
    for name, f in _BY_NAME.items():
        if f is fn:
            return name
    return getattr(fn, "__name__", repr(fn))


def registered_name(fn) -> str | None:
    """The name ``fn`` is registered under, or None for a callable rnnkit does not name."""
    return next((name for name, f in _BY_NAME.items() if f is fn), None)
