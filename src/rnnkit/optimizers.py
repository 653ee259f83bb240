"""Keras-style ``optimizers`` module: ``from rnnkit.optimizers import RMSprop``."""

from .training.optimizers import SGD, Adagrad, Adam, Optimizer, RMSprop, get

__all__ = ["Optimizer", "RMSprop", "Adam", "SGD", "Adagrad", "get"]
