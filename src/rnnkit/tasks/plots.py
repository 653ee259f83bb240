"""Old home of the run figures; every figure lives in :mod:`rnnkit.plots` now."""

from ..plots import confusion, forecast, training_curves

__all__ = ["training_curves", "forecast", "confusion"]
