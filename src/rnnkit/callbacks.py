"""Keras-style ``callbacks`` module: ``from rnnkit.callbacks import Callback, History``."""

from .training.callbacks import Callback, CallbackList, History, ProgbarLogger, ProgressBar

__all__ = ["Callback", "CallbackList", "History", "ProgressBar", "ProgbarLogger"]
