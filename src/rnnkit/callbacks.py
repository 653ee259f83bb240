"""Keras-style ``callbacks`` module: ``from rnnkit.callbacks import EarlyStopping, History``."""

from .training.callbacks import (
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgbarLogger,
    ProgressBar,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)
from .training.guard import NanEvent, NonFiniteError, NonFiniteWarning

__all__ = ["Callback", "CallbackList", "History", "ProgressBar", "ProgbarLogger",
           "TerminateOnNaN", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau",
           "LearningRateScheduler", "CSVLogger", "TensorBoard",
           "NanEvent", "NonFiniteError", "NonFiniteWarning"]
