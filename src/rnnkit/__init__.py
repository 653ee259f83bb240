"""rnnkit: every recurrent network of the lecture as a tested, fast PyTorch layer."""

from . import (
    callbacks,
    cells,
    data,
    datasets,
    engine,
    errors,
    interop,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
)
from .diagnosis import doctor
from .version import __version__

__all__ = [
    "cells", "data", "datasets", "engine", "errors", "interop", "layers", "models", "losses", "metrics",
    "optimizers", "regularizers", "callbacks", "doctor", "__version__",
]
