"""Keras optimizers as specs that build torch.optim optimizers.

``RMSprop(learning_rate=1e-3, clipnorm=1.0)`` holds hyperparameters; ``build(params)`` creates the
torch optimizer; ``step()`` clips the gradients as Keras does, then steps. RMSprop, Adam and
Adagrad follow Keras's update rules exactly (ε inside the square root for RMSprop and Adagrad,
Adam's ε added to √v before the bias correction), which torch's built-ins do not; SGD is
torch's, the same as Keras's at a constant learning rate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError, NotBuiltError


class _KerasRMSprop(torch.optim.Optimizer):
    """v ← ρv + (1-ρ)g²;  Δ = lr·g / √(v - ḡ² + ε) (ḡ only when centered);
    with momentum m ← μm + Δ, w ← w - m; else w ← w - Δ."""

    def __init__(self, params, lr, rho, momentum, eps, centered):
        super().__init__(params, dict(lr=lr, rho=rho, momentum=momentum, eps=eps,
                                      centered=centered))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, rho, mu, eps = group["lr"], group["rho"], group["momentum"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                v = state.setdefault("velocity", torch.zeros_like(p))
                v.mul_(rho).addcmul_(g, g, value=1 - rho)
                if group["centered"]:
                    avg = state.setdefault("average_grad", torch.zeros_like(p))
                    avg.mul_(rho).add_(g, alpha=1 - rho)
                    denom = v - avg.square() + eps
                else:
                    denom = v + eps
                increment = lr * g * torch.rsqrt(denom)
                if mu > 0:
                    m = state.setdefault("momentum", torch.zeros_like(p))
                    p.sub_(m.mul_(mu).add_(increment))
                else:
                    p.sub_(increment)


class _KerasAdam(torch.optim.Optimizer):
    """m ← m + (g - m)(1-β₁); v ← v + (g² - v)(1-β₂);
    w ← w - lr·√(1-β₂ᵗ)/(1-β₁ᵗ) · m / (√v + ε)  (v̂ = max v so far when amsgrad)."""

    def __init__(self, params, lr, beta_1, beta_2, eps, amsgrad):
        super().__init__(params, dict(lr=lr, beta_1=beta_1, beta_2=beta_2, eps=eps,
                                      amsgrad=amsgrad))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["beta_1"], group["beta_2"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                t = state["step"] = state.get("step", 0) + 1
                m = state.setdefault("m", torch.zeros_like(p))
                v = state.setdefault("v", torch.zeros_like(p))
                m.add_((g - m) * (1 - b1))
                v.add_((g.square() - v) * (1 - b2))
                if group["amsgrad"]:
                    v_hat = state.setdefault("v_hat", torch.zeros_like(p))
                    torch.maximum(v_hat, v, out=v_hat)
                    v = v_hat
                alpha = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
                p.sub_(alpha * m / (v.sqrt() + group["eps"]))


class _KerasAdagrad(torch.optim.Optimizer):
    """a ← a + g² (a₀ = initial_accumulator_value);  w ← w - lr·g / √(a + ε)."""

    def __init__(self, params, lr, initial_accumulator_value, eps):
        super().__init__(params, dict(lr=lr, initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                acc = self.state[p].setdefault(
                    "accumulator", torch.full_like(p, group["initial_accumulator_value"]))
                acc.addcmul_(g, g)
                p.sub_(group["lr"] * g * torch.rsqrt(acc + group["eps"]))


def _clip_by_norm(g: Tensor, clip: float) -> Tensor:
    return g * (clip / torch.clamp(torch.linalg.vector_norm(g), min=clip))


class Optimizer:
    """A Keras optimizer: hyperparameters and gradient clipping; ``build(params)`` makes the
    torch optimizer, ``step()`` clips and steps, ``zero_grad()`` clears.

    Clipping as Keras 3: ``clipnorm`` scales each gradient tensor to norm ≤ clipnorm on its own,
    ``global_clipnorm`` scales all together to global norm ≤ global_clipnorm, ``clipvalue``
    clamps each entry to [-clipvalue, clipvalue]; at most one of them.
    ``lr`` is accepted as Keras 2's name for ``learning_rate``.
    """

    def __init__(self, learning_rate: float, *, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 name: str | None = None, lr: float | None = None):
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        given = {k: v for k, v in clips.items() if v is not None}
        if len(given) > 1:
            raise ConfigError(f"{type(self).__name__}: only one of clipnorm, clipvalue and "
                              f"global_clipnorm can be set, got {given}")
        for key, value in given.items():
            if value <= 0:
                raise ConfigError(f"{type(self).__name__}: {key} must be > 0, got {value}")
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.name = name or type(self).__name__.lower()
        self._learning_rate = float(learning_rate if lr is None else lr)
        self.torch_optimizer: torch.optim.Optimizer | None = None
        self.params: list[Tensor] = []
        self.iterations = 0

    def _make(self, params: list[Tensor]) -> torch.optim.Optimizer:
        raise NotImplementedError

    @property
    def built(self) -> bool:
        return self.torch_optimizer is not None

    def build(self, params) -> torch.optim.Optimizer:
        """Create the torch optimizer over ``params`` (the trainable parameters)."""
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ConfigError(f"{self.name}: no trainable parameters to optimize")
        self.torch_optimizer = self._make(self.params)
        return self.torch_optimizer

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._learning_rate = float(value)
        if self.torch_optimizer is not None:
            for group in self.torch_optimizer.param_groups:
                group["lr"] = self._learning_rate

    lr = learning_rate

    def zero_grad(self) -> None:
        self._require_built("zero_grad")
        self.torch_optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """Clip the gradients (Keras's rule), then update the parameters."""
        self._require_built("step")
        self.clip_gradients()
        self.torch_optimizer.step()
        self.iterations += 1

    @torch.no_grad()
    def clip_gradients(self) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        if self.clipnorm is not None:
            for g in grads:
                g.copy_(_clip_by_norm(g, self.clipnorm))
        elif self.global_clipnorm is not None:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                         for g in grads]))
            scale = self.global_clipnorm / torch.clamp(norm, min=self.global_clipnorm)
            for g in grads:
                g.mul_(scale)
        elif self.clipvalue is not None:
            for g in grads:
                g.clamp_(-self.clipvalue, self.clipvalue)

    def _require_built(self, what: str) -> None:
        if self.torch_optimizer is None:
            raise NotBuiltError(f"{self.name}: call build(params) before {what}()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(learning_rate={self._learning_rate})"


class RMSprop(Optimizer):
    """Keras's RMSprop (defaults lr 0.001, ρ 0.9, momentum 0, ε 1e-7, not centered)."""

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered

    def _make(self, params):
        return _KerasRMSprop(params, self.learning_rate, self.rho, self.momentum, self.epsilon,
                             self.centered)


class Adam(Optimizer):
    """Keras's Adam (defaults lr 0.001, β₁ 0.9, β₂ 0.999, ε 1e-7)."""

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad

    def _make(self, params):
        return _KerasAdam(params, self.learning_rate, self.beta_1, self.beta_2, self.epsilon,
                          self.amsgrad)


class SGD(Optimizer):
    """SGD with optional (Nesterov) momentum (defaults lr 0.01, momentum 0)."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum, self.nesterov = momentum, nesterov

    def _make(self, params):
        return torch.optim.SGD(params, lr=self.learning_rate, momentum=self.momentum,
                               nesterov=self.nesterov)


class Adagrad(Optimizer):
    """Keras's Adagrad (defaults lr 0.001, initial accumulator 0.1, ε 1e-7)."""

    def __init__(self, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon

    def _make(self, params):
        return _KerasAdagrad(params, self.learning_rate, self.initial_accumulator_value,
                             self.epsilon)


_BY_NAME = {"rmsprop": RMSprop, "adam": Adam, "sgd": SGD, "adagrad": Adagrad}


def get(identifier, where: str = "optimizer") -> Optimizer:
    """An Optimizer from a Keras name ('rmsprop', 'adam', 'sgd', 'adagrad'; any case) or itself."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ConfigError(f"{where}: unknown optimizer {identifier!r}; expected one of "
                      f"{sorted(_BY_NAME)} or an rnnkit Optimizer")
