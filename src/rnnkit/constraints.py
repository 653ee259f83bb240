"""Weight constraints with Keras's names: max_norm, min_max_norm, non_neg, unit_norm.

A constraint is applied as Keras applies it: to the weight after every optimizer step. Layers
attach it to the parameter (``param.constraint``, like a Keras variable's); one hook on torch's
optimizers (``torch.optim.optimizer.register_optimizer_step_post_hook``, installed when the first
constraint is attached) projects every such parameter after ``step()``, so it holds in ``fit``
and in a hand-written torch loop alike. ``axis`` refers to Keras's (in, out) layout of a kernel:
``axis=0`` (the default) bounds the norm of each unit's incoming weights, as in Keras.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook

from .configured import Configured
from .errors import ConfigError

_EPSILON = 1e-7  # Keras's backend.epsilon()


class Constraint(Configured):
    """Base class: ``constraint(w)`` returns the projected weight, w in Keras's layout."""

    def __call__(self, w: Tensor) -> Tensor:
        return w


def _norms(w: Tensor, axis) -> Tensor:
    return w.square().sum(dim=axis, keepdim=True).sqrt()


class MaxNorm(Constraint):
    """Rescales each unit's weights (over ``axis``) to a norm of at most ``max_value``."""

    def __init__(self, max_value: float = 2.0, axis=0):
        self.max_value, self.axis = float(max_value), axis

    def __call__(self, w: Tensor) -> Tensor:
        norms = _norms(w, self.axis)
        return w * (norms.clamp(0, self.max_value) / (_EPSILON + norms))

    def get_config(self) -> dict:
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(Constraint):
    """Norms moved into [min_value, max_value] at ``rate`` (1: at once), as Keras."""

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis=0):
        self.min_value, self.max_value = float(min_value), float(max_value)
        self.rate, self.axis = float(rate), axis

    def __call__(self, w: Tensor) -> Tensor:
        norms = _norms(w, self.axis)
        desired = self.rate * norms.clamp(self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (_EPSILON + norms))

    def get_config(self) -> dict:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


class NonNeg(Constraint):
    """Negative weights set to zero."""

    def __call__(self, w: Tensor) -> Tensor:
        return w * (w >= 0).to(w.dtype)


class UnitNorm(Constraint):
    """Each unit's weights (over ``axis``) scaled to norm 1."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w: Tensor) -> Tensor:
        return w / (_EPSILON + _norms(w, self.axis))

    def get_config(self) -> dict:
        return {"axis": self.axis}


_BY_NAME = {"max_norm": MaxNorm, "min_max_norm": MinMaxNorm, "non_neg": NonNeg,
            "unit_norm": UnitNorm}
CLASSES = {cls.__name__: cls for cls in (MaxNorm, MinMaxNorm, NonNeg, UnitNorm)}


def get(constraint, where: str = "constraint"):
    """None, a name, a Keras config dict, a Constraint or any callable w -> projected w."""
    if constraint is None or callable(constraint):
        return constraint
    if isinstance(constraint, str) and constraint in _BY_NAME:
        return _BY_NAME[constraint]()
    if isinstance(constraint, str) and constraint in CLASSES:
        return CLASSES[constraint]()
    if isinstance(constraint, dict) and constraint.get("class_name") in CLASSES:
        return CLASSES[constraint["class_name"]].from_config(dict(constraint.get("config") or {}))
    raise ConfigError(f"{where}: unknown constraint {constraint!r}; expected one of "
                      f"{sorted(_BY_NAME)}, a class of rnnkit.constraints or a callable")


def serialize(constraint) -> dict | None:
    if isinstance(constraint, Constraint) and CLASSES.get(type(constraint).__name__) is type(constraint):
        return {"class_name": type(constraint).__name__, "config": constraint.get_config()}
    return None


# -- applying ------------------------------------------------------------------------------------
_HOOK = None


def attach(param: Tensor, constraint) -> None:
    """Project ``param`` with ``constraint`` after every optimizer step (not before the first,
    as in Keras: initial weights are the initializer's)."""
    global _HOOK
    param.constraint = constraint
    if _HOOK is None:
        _HOOK = register_optimizer_step_post_hook(_after_step)


def apply(param: Tensor) -> None:
    """Project one parameter in place with its ``constraint``, in Keras's layout (a 2-D torch
    weight (out, in) is seen as Keras's (in, out) kernel)."""
    constraint = getattr(param, "constraint", None)
    if constraint is None:
        return
    with torch.no_grad():
        keras_view = param.t() if param.dim() == 2 else param
        projected = constraint(keras_view)
        param.copy_(projected.t() if param.dim() == 2 else projected)


def _after_step(optimizer, args, kwargs) -> None:
    for group in optimizer.param_groups:
        for param in group["params"]:
            if getattr(param, "constraint", None) is not None:
                apply(param)
