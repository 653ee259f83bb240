"""Keras-style ``losses`` module: ``from rnnkit import losses; losses.binary_crossentropy``."""

from .training.losses import (
    MAE,
    MSE,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    Loss,
    MeanAbsoluteError,
    MeanAbsoluteLogError,
    MeanSquaredError,
    Pinball,
    SparseCategoricalCrossentropy,
    binary_crossentropy,
    categorical_crossentropy,
    get,
    huber,
    mae,
    mean_absolute_error,
    mean_absolute_log_error,
    mean_squared_error,
    mse,
    pinball,
    sparse_categorical_crossentropy,
)

__all__ = [
    "Loss", "BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError", "MeanAbsoluteLogError", "Huber", "Pinball",
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
    "mean_squared_error", "mean_absolute_error", "mean_absolute_log_error", "huber", "pinball",
    "mse", "mae", "MSE", "MAE", "get",
]
