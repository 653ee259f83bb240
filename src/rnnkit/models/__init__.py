"""Models: Keras's Sequential and the Model base with compile / fit / evaluate / predict."""

from .model import Model
from .sequential import Sequential

__all__ = ["Model", "Sequential"]
