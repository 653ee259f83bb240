"""rnnkit: every recurrent network of the lecture as a tested, fast PyTorch layer."""

from . import (
    callbacks,
    cells,
    data,
    datasets,
    engine,
    errors,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
)

__version__ = "0.1.0"

__all__ = [
    "cells", "data", "datasets", "engine", "errors", "layers", "models", "losses", "metrics",
    "optimizers", "regularizers", "callbacks", "__version__",
]
