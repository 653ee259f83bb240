"""Conversions between rnnkit and other libraries' weight layouts (Keras, torch.nn)."""

from .keras import cell_from_keras, cell_to_keras

__all__ = ["cell_to_keras", "cell_from_keras"]
