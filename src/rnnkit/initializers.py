"""Weight initializers by Keras name. Each fills a torch tensor in place.

Fans follow Keras for the transposed layout: a torch weight (out, in) is Keras's kernel (in, out),
so glorot's bound sqrt(6 / (fan_in + fan_out)) is the same, and orthogonal on (G·H, H) is the
transpose of Keras's orthogonal (H, G·H).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .errors import ConfigError


def zeros(t: Tensor) -> Tensor:
    return nn.init.zeros_(t)


def ones(t: Tensor) -> Tensor:
    return nn.init.ones_(t)


def glorot_uniform(t: Tensor) -> Tensor:
    return nn.init.xavier_uniform_(t) if t.dim() >= 2 else nn.init.uniform_(t, -0.05, 0.05)


def glorot_normal(t: Tensor) -> Tensor:
    return nn.init.xavier_normal_(t) if t.dim() >= 2 else nn.init.normal_(t, 0, 0.05)


def he_uniform(t: Tensor) -> Tensor:
    return nn.init.kaiming_uniform_(t, nonlinearity="relu")


def he_normal(t: Tensor) -> Tensor:
    return nn.init.kaiming_normal_(t, nonlinearity="relu")


def orthogonal(t: Tensor) -> Tensor:
    if t.dim() < 2:
        return glorot_uniform(t)
    with torch.no_grad():
        return nn.init.orthogonal_(t)


def random_uniform(t: Tensor) -> Tensor:
    return nn.init.uniform_(t, -0.05, 0.05)


def random_normal(t: Tensor) -> Tensor:
    return nn.init.normal_(t, 0.0, 0.05)


_BY_NAME: dict[str, Callable[[Tensor], Tensor]] = {
    "zeros": zeros, "ones": ones, "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal, "he_uniform": he_uniform, "he_normal": he_normal,
    "orthogonal": orthogonal, "uniform": random_uniform, "random_uniform": random_uniform,
    "normal": random_normal, "random_normal": random_normal,
}


def get(init, where: str = "initializer") -> Callable[[Tensor], Tensor]:
    if callable(init):
        return init
    if isinstance(init, str) and init in _BY_NAME:
        return _BY_NAME[init]
    raise ConfigError(f"{where}: unknown initializer {init!r}; expected one of {sorted(_BY_NAME)}")


def registered_name(fn) -> str | None:
    """The name ``fn`` is registered under, or None for a callable rnnkit does not name."""
    return next((name for name, f in _BY_NAME.items() if f is fn), None)
