"""Models: Keras's Sequential and the Model base with compile / fit / evaluate / predict."""

from .model import Model
from .persistence import load_model
from .sequential import Sequential

__all__ = ["Model", "Sequential", "load_model"]
