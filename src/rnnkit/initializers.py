"""Weight initializers by Keras name or as Keras's classes. Each fills a torch tensor in place.

Fans follow Keras for the transposed layout: a torch weight (out, in) is Keras's kernel (in, out),
so fan_in = in and fan_out = out either way (a 1-D tensor of n has fan_in = fan_out = n, as in
Keras), and orthogonal on (G·H, H) is the transpose of Keras's orthogonal (H, G·H).

Names (``"glorot_uniform"``) resolve to functions; the classes (``Constant(0.01)``,
``VarianceScaling(2.0, "fan_in")``, ``GlorotUniform(seed=1)``) carry arguments and write them in a
layer's config (``get_config``/``from_config``, as Keras's do). An initializer given a ``seed``
draws the same values on every call, as a seeded Keras initializer does; the values are torch's,
not Keras's (the two use different random generators).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .configured import Configured
from .errors import ConfigError

# The standard deviation of a standard normal truncated to [-2, 2]: Keras divides by it so the
# truncated draw has the requested variance.
_TRUNCATED_STD = 0.87962566103423978


class Initializer(Configured):
    """Base class: ``init(tensor)`` fills the tensor in place and returns it."""

    def __call__(self, t: Tensor) -> Tensor:
        raise NotImplementedError


class _Seeded(Initializer):
    """An initializer drawing random numbers: from torch's global generator, or from its own
    generator started at ``seed`` on every call (the same values each time)."""

    def __init__(self, seed: int | None = None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"{type(self).__name__}: seed must be an integer or None, got {seed!r}")
        self.seed = seed

    def generator(self, t: Tensor) -> torch.Generator | None:
        if self.seed is None:
            return None
        return torch.Generator(device=t.device).manual_seed(self.seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}


class Zeros(Initializer):
    def __call__(self, t: Tensor) -> Tensor:
        return nn.init.zeros_(t)


class Ones(Initializer):
    def __call__(self, t: Tensor) -> Tensor:
        return nn.init.ones_(t)


class Constant(Initializer):
    """Every entry ``value``."""

    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def __call__(self, t: Tensor) -> Tensor:
        return nn.init.constant_(t, self.value)

    def get_config(self) -> dict:
        return {"value": self.value}


class RandomUniform(_Seeded):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, t: Tensor) -> Tensor:
        with torch.no_grad():
            return t.uniform_(self.minval, self.maxval, generator=self.generator(t))

    def get_config(self) -> dict:
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class RandomNormal(_Seeded):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, t: Tensor) -> Tensor:
        with torch.no_grad():
            return t.normal_(self.mean, self.stddev, generator=self.generator(t))

    def get_config(self) -> dict:
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class TruncatedNormal(RandomNormal):
    """Normal values more than two standard deviations from the mean redrawn (as Keras)."""

    def __call__(self, t: Tensor) -> Tensor:
        lo, hi = self.mean - 2 * self.stddev, self.mean + 2 * self.stddev
        return nn.init.trunc_normal_(t, self.mean, self.stddev, lo, hi,
                                     generator=self.generator(t))


def fans(t: Tensor) -> tuple[float, float]:
    """(fan_in, fan_out) as Keras computes them for the same weight in its (in, out) layout."""
    if t.dim() == 0:
        return 1.0, 1.0
    if t.dim() == 1:
        return float(t.shape[0]), float(t.shape[0])
    receptive = math.prod(t.shape[2:])
    return float(t.shape[1] * receptive), float(t.shape[0] * receptive)


class VarianceScaling(_Seeded):
    """Values of variance ``scale / n``, n = fan_in, fan_out or their mean (``mode``), drawn from
    a truncated normal, a normal or a uniform distribution (Keras's definition)."""

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed: int | None = None):
        super().__init__(seed)
        if not float(scale) > 0:
            raise ConfigError(f"VarianceScaling: scale must be positive, got {scale!r}")
        if mode not in self.MODES:
            raise ConfigError(f"VarianceScaling: mode must be one of {self.MODES}, got {mode!r}")
        if distribution == "normal":  # Keras's legacy name
            distribution = "truncated_normal"
        if distribution not in self.DISTRIBUTIONS:
            raise ConfigError(f"VarianceScaling: distribution must be one of "
                              f"{self.DISTRIBUTIONS}, got {distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def __call__(self, t: Tensor) -> Tensor:
        fan_in, fan_out = fans(t)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        g = self.generator(t)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            with torch.no_grad():
                return t.uniform_(-limit, limit, generator=g)
        if self.distribution == "untruncated_normal":
            with torch.no_grad():
                return t.normal_(0.0, math.sqrt(variance), generator=g)
        std = math.sqrt(variance) / _TRUNCATED_STD
        return nn.init.trunc_normal_(t, 0.0, std, -2 * std, 2 * std, generator=g)

    def get_config(self) -> dict:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                **super().get_config()}


class _NamedScaling(VarianceScaling):
    """A VarianceScaling with Keras's fixed arguments for a named scheme; only the seed varies."""

    ARGS: tuple[float, str, str] = (1.0, "fan_in", "truncated_normal")

    def __init__(self, seed: int | None = None):
        super().__init__(*self.ARGS, seed=seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}


class GlorotUniform(_NamedScaling):
    ARGS = (1.0, "fan_avg", "uniform")


class GlorotNormal(_NamedScaling):
    ARGS = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_NamedScaling):
    ARGS = (2.0, "fan_in", "uniform")


class HeNormal(_NamedScaling):
    ARGS = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_NamedScaling):
    ARGS = (1.0, "fan_in", "uniform")


class LecunNormal(_NamedScaling):
    ARGS = (1.0, "fan_in", "truncated_normal")


class Orthogonal(_Seeded):
    """An orthogonal matrix (rows or columns orthonormal) times ``gain``; 1-D tensors get
    glorot_uniform, which Keras would refuse."""

    def __init__(self, gain: float = 1.0, seed: int | None = None):
        super().__init__(seed)
        self.gain = float(gain)

    def __call__(self, t: Tensor) -> Tensor:
        if t.dim() < 2:
            return GlorotUniform(self.seed)(t)
        with torch.no_grad():
            return nn.init.orthogonal_(t, self.gain, generator=self.generator(t))

    def get_config(self) -> dict:
        return {"gain": self.gain, **super().get_config()}


class Identity(Initializer):
    """``gain`` times the identity matrix (ones on the diagonal of a non-square matrix)."""

    def __init__(self, gain: float = 1.0):
        self.gain = float(gain)

    def __call__(self, t: Tensor) -> Tensor:
        if t.dim() != 2:
            raise ConfigError(f"Identity initializer: needs a 2-D weight, got shape {tuple(t.shape)}")
        with torch.no_grad():
            return nn.init.eye_(t).mul_(self.gain)

    def get_config(self) -> dict:
        return {"gain": self.gain}


# -- the functions behind the names -------------------------------------------------------------
def zeros(t: Tensor) -> Tensor:
    return nn.init.zeros_(t)


def ones(t: Tensor) -> Tensor:
    return nn.init.ones_(t)


def glorot_uniform(t: Tensor) -> Tensor:
    return GlorotUniform()(t)


def glorot_normal(t: Tensor) -> Tensor:
    return GlorotNormal()(t)


def he_uniform(t: Tensor) -> Tensor:
    return HeUniform()(t)


def he_normal(t: Tensor) -> Tensor:
    return HeNormal()(t)


def lecun_uniform(t: Tensor) -> Tensor:
    return LecunUniform()(t)


def lecun_normal(t: Tensor) -> Tensor:
    return LecunNormal()(t)


def orthogonal(t: Tensor) -> Tensor:
    return Orthogonal()(t)


def identity(t: Tensor) -> Tensor:
    return Identity()(t)


def random_uniform(t: Tensor) -> Tensor:
    return RandomUniform()(t)


def random_normal(t: Tensor) -> Tensor:
    return RandomNormal()(t)


def truncated_normal(t: Tensor) -> Tensor:
    return TruncatedNormal()(t)


def variance_scaling(t: Tensor) -> Tensor:
    return VarianceScaling()(t)


_BY_NAME: dict[str, Callable[[Tensor], Tensor]] = {
    "zeros": zeros, "ones": ones, "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal, "he_uniform": he_uniform, "he_normal": he_normal,
    "lecun_uniform": lecun_uniform, "lecun_normal": lecun_normal,
    "orthogonal": orthogonal, "identity": identity, "uniform": random_uniform,
    "random_uniform": random_uniform, "normal": random_normal, "random_normal": random_normal,
    "truncated_normal": truncated_normal, "variance_scaling": variance_scaling,
}

# Keras's class names, as a layer config writes them.
CLASSES: dict[str, type[Initializer]] = {cls.__name__: cls for cls in (
    Zeros, Ones, Constant, RandomUniform, RandomNormal, TruncatedNormal, VarianceScaling,
    GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Orthogonal,
    Identity)}
CLASSES["IdentityInitializer"] = Identity  # Keras 3's own name for it


def get(init, where: str = "initializer") -> Callable[[Tensor], Tensor]:
    """A name, a Keras config dict ``{"class_name": ..., "config": {...}}``, an Initializer or any
    callable that fills a tensor in place."""
    if callable(init):
        return init
    if isinstance(init, str) and init in _BY_NAME:
        return _BY_NAME[init]
    if isinstance(init, str) and init in CLASSES:
        return CLASSES[init]()
    if isinstance(init, dict) and init.get("class_name") in CLASSES:
        return CLASSES[init["class_name"]].from_config(dict(init.get("config") or {}))
    raise ConfigError(f"{where}: unknown initializer {init!r}; expected one of {sorted(_BY_NAME)}, "
                      f"a class of rnnkit.initializers ({', '.join(sorted(CLASSES))}) or a "
                      "callable that fills a tensor in place")


def registered_name(fn) -> str | None:
    """The name ``fn`` is registered under, or None for a callable rnnkit does not name."""
    return next((name for name, f in _BY_NAME.items() if f is fn), None)


def serialize(init) -> str | dict | None:
    """A name for the named functions, ``{"class_name", "config"}`` for an Initializer; None if
    neither (a user's function cannot be written as JSON)."""
    name = registered_name(init)
    if name is not None:
        return name
    if isinstance(init, Initializer) and CLASSES.get(type(init).__name__) is type(init):
        return {"class_name": type(init).__name__, "config": init.get_config()}
    return None
