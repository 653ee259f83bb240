"""Metrics with Keras's names: running weighted means over an epoch.

``'acc'``/``'accuracy'`` picks binary, categorical or sparse categorical accuracy as Keras does,
from the loss (or, for other losses, from the shapes of the first batch), and keeps the name the
user wrote, so History has ``acc`` and ``val_acc``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError
from . import losses as _losses


def binary_accuracy(y_true: Tensor, y_pred: Tensor, threshold: float = 0.5) -> Tensor:
    """mean_c [y == (p > threshold)]: (B, ..., C) -> (B, ...)."""
    return (y_true == (y_pred > threshold).to(y_true.dtype)).float().mean(dim=-1)


def categorical_accuracy(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """[argmax y == argmax p]: (B, ..., C) -> (B, ...)."""
    return (y_true.argmax(dim=-1) == y_pred.argmax(dim=-1)).float()


def sparse_categorical_accuracy(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """[y == argmax p] with integer targets (B, ...) and outputs (B, ..., C)."""
    return (y_true.long() == y_pred.argmax(dim=-1)).float()


class Metric:
    """A running weighted mean: ``update_state(...)``, ``result()``, ``reset_state()``."""

    def __init__(self, name: str):
        self.name = name
        self.reset_state()

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Mean(Metric):
    """The weighted mean of the values given to ``update_state(values, sample_weight)``."""

    @torch.no_grad()
    def update_state(self, values, sample_weight=None) -> None:
        values = torch.as_tensor(values, dtype=torch.float64)
        w = torch.ones_like(values) if sample_weight is None else \
            _losses.align_weight(sample_weight, values)
        self.total += float((values * w).sum())
        self.count += float(w.sum())


class MeanMetricWrapper(Metric):
    """Mean over samples and steps of ``fn(y_true, y_pred) -> (B, ...)``, weighted by
    ``sample_weight`` (a 0/1 mask drops the steps that do not count)."""

    sparse = False

    def __init__(self, fn, name: str | None = None, **kwargs):
        self.fn = fn
        self.kwargs = kwargs
        super().__init__(name or fn.__name__)

    @torch.no_grad()
    def update_state(self, y_true, y_pred: Tensor, sample_weight=None) -> None:
        y_pred = y_pred.detach()
        y = _losses.align_target(y_true, y_pred, sparse=self.sparse, where=f"metric {self.name}")
        values = self.fn(y, y_pred, **self.kwargs).double()
        w = torch.ones_like(values) if sample_weight is None else \
            _losses.align_weight(sample_weight, values)
        self.total += float((values * w).sum())
        self.count += float(w.sum())


class BinaryAccuracy(MeanMetricWrapper):
    def __init__(self, name: str = "binary_accuracy", threshold: float = 0.5):
        super().__init__(binary_accuracy, name, threshold=threshold)


class CategoricalAccuracy(MeanMetricWrapper):
    def __init__(self, name: str = "categorical_accuracy"):
        super().__init__(categorical_accuracy, name)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    sparse = True

    def __init__(self, name: str = "sparse_categorical_accuracy"):
        super().__init__(sparse_categorical_accuracy, name)


class MeanAbsoluteError(MeanMetricWrapper):
    def __init__(self, name: str = "mean_absolute_error"):
        super().__init__(_losses.mean_absolute_error, name)


class MeanSquaredError(MeanMetricWrapper):
    def __init__(self, name: str = "mean_squared_error"):
        super().__init__(_losses.mean_squared_error, name)


_ACCURACY_BY_LOSS = {
    _losses.binary_crossentropy: BinaryAccuracy,
    _losses.categorical_crossentropy: CategoricalAccuracy,
    _losses.sparse_categorical_crossentropy: SparseCategoricalAccuracy,
}


class _AutoAccuracy(Metric):
    """'acc' as Keras resolves it: by the loss when it is a cross-entropy, else by the shapes of
    the first batch (1 output unit: binary; integer targets without the class axis: sparse)."""

    def __init__(self, name: str, loss_fn=None):
        cls = _ACCURACY_BY_LOSS.get(loss_fn)
        self.resolved = cls(name=name) if cls else None
        super().__init__(name)

    def reset_state(self) -> None:
        if self.resolved is not None:
            self.resolved.reset_state()

    def result(self) -> float:
        return self.resolved.result() if self.resolved is not None else 0.0

    def update_state(self, y_true, y_pred: Tensor, sample_weight=None) -> None:
        if self.resolved is None:
            self.resolved = _accuracy_for_shapes(torch.as_tensor(y_true), y_pred)(name=self.name)
        self.resolved.update_state(y_true, y_pred, sample_weight)


def _accuracy_for_shapes(y_true: Tensor, y_pred: Tensor) -> type[MeanMetricWrapper]:
    if y_pred.dim() == 1 or y_pred.shape[-1] == 1:
        return BinaryAccuracy
    if y_true.dim() == y_pred.dim() - 1 or y_true.shape[-1] == 1:
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


_BY_NAME = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
}


def get(identifier, loss=None, where: str = "metrics"):
    """A metric from a Keras name (named as written), a Metric, or a function (y_true, y_pred).

    ``loss`` (a losses.Loss) decides what 'acc'/'accuracy' means.
    """
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ("acc", "accuracy"):
        return _AutoAccuracy(identifier, getattr(loss, "fn", None))
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier](name=identifier)
    if callable(identifier) and not isinstance(identifier, type):
        return MeanMetricWrapper(identifier)
    raise ConfigError(f"{where}: unknown metric {identifier!r}; expected one of "
                      f"{sorted(['acc', 'accuracy', *_BY_NAME])}, a Metric, or a function "
                      "(y_true, y_pred)")
