"""Keras-style ``metrics`` module: ``from rnnkit.metrics import BinaryAccuracy``."""

from .training.metrics import (
    BinaryAccuracy,
    CategoricalAccuracy,
    Mean,
    MeanAbsoluteError,
    MeanMetricWrapper,
    MeanSquaredError,
    Metric,
    SparseCategoricalAccuracy,
    binary_accuracy,
    categorical_accuracy,
    get,
    sparse_categorical_accuracy,
)

__all__ = [
    "Metric", "Mean", "MeanMetricWrapper", "BinaryAccuracy", "CategoricalAccuracy",
    "SparseCategoricalAccuracy", "MeanAbsoluteError", "MeanSquaredError",
    "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy", "get",
]
