"""Losses with Keras's names, formulas and probability clipping.

The functions give the loss per sample and step: the mean (or sum, for cross-entropies over
classes) over the last axis, (B, ..., C) -> (B, ...). A ``Loss`` reduces that to a scalar: the
mean over the entries whose weight is non-zero, so a 0/1 "don't care" mask of shape (B, T)
averages over the steps that count, which makes classification, transduction and generation
one training loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, ShapeError

EPSILON = 1e-7  # Keras's backend.epsilon(): probabilities are clipped to [ε, 1 - ε]


def _clip(p: Tensor) -> Tensor:
    return p.clamp(EPSILON, 1.0 - EPSILON)


def binary_crossentropy(y_true: Tensor, y_pred: Tensor, from_logits: bool = False) -> Tensor:
    """-mean_c [y log p + (1 - y) log(1 - p)], p clipped (or p = σ(logits))."""
    if from_logits:
        values = F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
    else:
        p = _clip(y_pred)
        values = -(y_true * torch.log(p) + (1.0 - y_true) * torch.log1p(-p))
    return values.mean(dim=-1)


def _log_probs(y_pred: Tensor, from_logits: bool) -> Tensor:
    if from_logits:
        return torch.log_softmax(y_pred, dim=-1)
    return torch.log(_clip(y_pred / y_pred.sum(dim=-1, keepdim=True)))


def categorical_crossentropy(y_true: Tensor, y_pred: Tensor, from_logits: bool = False) -> Tensor:
    """-Σ_c y_c log p_c with one-hot (or soft) targets; p renormalized and clipped, as Keras."""
    return -(y_true * _log_probs(y_pred, from_logits)).sum(dim=-1)


def sparse_categorical_crossentropy(y_true: Tensor, y_pred: Tensor,
                                    from_logits: bool = False) -> Tensor:
    """-log p_{y} with integer class targets y of shape y_pred.shape[:-1]."""
    logp = _log_probs(y_pred, from_logits)
    return -logp.gather(-1, y_true.long().unsqueeze(-1)).squeeze(-1)


def mean_squared_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return (y_pred - y_true).square().mean(dim=-1)


def mean_absolute_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return (y_pred - y_true).abs().mean(dim=-1)


def mean_absolute_log_error(y_true: Tensor, y_pred: Tensor, eps: float = 1e-6) -> Tensor:
    """mean_c |log ŷ - log y|, both clamped to ``eps`` from below: a relative error, for positive
    series (ES-RNN trains its multiplicative model on log values; a panel's ``--scaling mean``
    keeps positive series positive)."""
    return (y_pred.clamp(min=eps).log() - y_true.clamp(min=eps).log()).abs().mean(dim=-1)


def huber(y_true: Tensor, y_pred: Tensor, delta: float = 1.0) -> Tensor:
    """mean_c of ½e² where |e| ≤ δ, else δ|e| - ½δ²."""
    err = (y_pred - y_true).abs()
    return torch.where(err <= delta, 0.5 * err.square(), delta * err - 0.5 * delta**2).mean(-1)


def pinball(y_true: Tensor, y_pred: Tensor, quantiles: Tensor) -> Tensor:
    """The quantile (pinball) loss, mean over the Q levels τ: y_pred (..., Q) holds one forecast
    per level, y_true (...) the truth; max(τ·e, (τ - 1)·e) with e = y - ŷ_τ. (...) per entry."""
    err = y_true.unsqueeze(-1) - y_pred
    tau = quantiles.to(y_pred)
    return torch.maximum(tau * err, (tau - 1.0) * err).mean(dim=-1)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error


def align_target(y_true, y_pred: Tensor, *, sparse: bool, where: str) -> Tensor:
    """Targets in the shape the loss needs, or a ShapeError naming ``where`` and both shapes.

    Dense targets get y_pred's shape (a missing or extra trailing axis of size 1 is fixed, as
    Keras does); sparse targets get y_pred.shape[:-1] and must be class ids in [0, C).
    """
    y = torch.as_tensor(y_true, device=y_pred.device)
    want = tuple(y_pred.shape[:-1]) if sparse else tuple(y_pred.shape)
    if y.dim() == len(want) + 1 and y.shape[-1] == 1:
        y = y.squeeze(-1)
    elif not sparse and y.dim() == len(want) - 1 and want[-1] == 1:
        y = y.unsqueeze(-1)
    if tuple(y.shape) != want:
        hint = ""
        if not sparse and tuple(y.shape) == want[:-1] and want[-1] > 1:
            hint = " (for integer class labels use sparse_categorical_crossentropy)"
        raise ShapeError(f"{where}: targets of shape {tuple(torch.as_tensor(y_true).shape)} do "
                         f"not fit the model output of shape {tuple(y_pred.shape)}{hint}")
    if not sparse:
        return y.to(y_pred.dtype)
    classes = y_pred.shape[-1]
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ShapeError(f"{where}: class id {bad} is outside [0, {classes}) for a model output "
                         f"of shape {tuple(y_pred.shape)}")
    return y.long()


def align_weight(weight, values: Tensor, where: str = "sample_weight") -> Tensor:
    """``weight`` broadcast to ``values``' shape; a (B,) weight on (B, T) values weighs samples."""
    w = torch.as_tensor(weight, device=values.device).to(values.dtype)
    while w.dim() < values.dim():
        w = w.unsqueeze(-1)
    while w.dim() > values.dim() and w.shape[-1] == 1:
        w = w.squeeze(-1)
    try:
        return w.expand_as(values)
    except RuntimeError:
        raise ShapeError(f"{where}: weights of shape {tuple(torch.as_tensor(weight).shape)} do "
                         f"not fit per-step losses of shape {tuple(values.shape)}") from None


def weighted_mean(values: Tensor, weight=None) -> Tensor:
    """Σ w·v / #(w ≠ 0): the mean over the entries that count (all of them when w is None)."""
    if weight is None:
        return values.mean()
    w = align_weight(weight, values)
    return (values * w).sum() / (w != 0).sum().clamp(min=1)


class Loss:
    """A per-step loss function reduced to a scalar: ``loss(y_true, y_pred, sample_weight)``.

    ``sample_weight`` (or a 0/1 mask) has a shape broadcastable to the per-step loss,
    e.g. (B,) or (B, T) for outputs (B, T, C).
    """

    sparse = False

    def __init__(self, fn, name: str | None = None, **kwargs):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(self).__name__)
        self.kwargs = kwargs

    def __call__(self, y_true, y_pred: Tensor, sample_weight=None) -> Tensor:
        y = align_target(y_true, y_pred, sparse=self.sparse, where=f"loss {self.name}")
        return weighted_mean(self.fn(y, y_pred, **self.kwargs), sample_weight)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class BinaryCrossentropy(Loss):
    def __init__(self, from_logits: bool = False, name: str = "binary_crossentropy"):
        super().__init__(binary_crossentropy, name, from_logits=from_logits)


class CategoricalCrossentropy(Loss):
    def __init__(self, from_logits: bool = False, name: str = "categorical_crossentropy"):
        super().__init__(categorical_crossentropy, name, from_logits=from_logits)


class SparseCategoricalCrossentropy(Loss):
    sparse = True

    def __init__(self, from_logits: bool = False, name: str = "sparse_categorical_crossentropy"):
        super().__init__(sparse_categorical_crossentropy, name, from_logits=from_logits)


class MeanSquaredError(Loss):
    def __init__(self, name: str = "mean_squared_error"):
        super().__init__(mean_squared_error, name)


class MeanAbsoluteError(Loss):
    def __init__(self, name: str = "mean_absolute_error"):
        super().__init__(mean_absolute_error, name)


class MeanAbsoluteLogError(Loss):
    def __init__(self, name: str = "mean_absolute_log_error"):
        super().__init__(mean_absolute_log_error, name)


class Huber(Loss):
    def __init__(self, delta: float = 1.0, name: str = "huber_loss"):
        super().__init__(huber, name, delta=delta)


class Pinball(Loss):
    """The pinball loss of quantile forecasts: outputs (..., Q) for the levels ``quantiles``
    against targets (...); averaged over the levels, then over the entries that count. Its
    minimiser is the τ-quantile of the targets' distribution, one per output."""

    def __init__(self, quantiles, name: str = "pinball"):
        levels = [float(q) for q in quantiles]
        if not levels or any(not 0.0 < q < 1.0 for q in levels):
            raise ConfigError(f"loss {name}: quantiles must lie strictly between 0 and 1, got "
                              f"{list(quantiles)}")
        super().__init__(pinball, name, quantiles=torch.tensor(levels))
        self.quantiles = levels

    def __call__(self, y_true, y_pred: Tensor, sample_weight=None) -> Tensor:
        if y_pred.shape[-1] != len(self.quantiles):
            raise ShapeError(f"loss {self.name}: the model output {tuple(y_pred.shape)} must end "
                             f"with one value per quantile ({len(self.quantiles)})")
        y = align_target(y_true, y_pred[..., 0], sparse=False, where=f"loss {self.name}")
        return weighted_mean(self.fn(y, y_pred, **self.kwargs), sample_weight)


_BY_NAME = {
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
    "mean_absolute_log_error": MeanAbsoluteLogError, "male": MeanAbsoluteLogError,
}


_BY_FN = {
    binary_crossentropy: BinaryCrossentropy, categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError, huber: Huber,
    mean_absolute_log_error: MeanAbsoluteLogError,
}


def get(identifier, where: str = "loss") -> Loss:
    """A Loss from a Keras name, a Loss, or a function ``fn(y_true, y_pred) -> per-step loss``."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if callable(identifier) and not isinstance(identifier, type):
        return _BY_FN[identifier]() if identifier in _BY_FN else Loss(identifier)
    raise ConfigError(f"{where}: unknown loss {identifier!r}; expected one of "
                      f"{sorted(_BY_NAME)}, a Loss, or a function (y_true, y_pred)")
