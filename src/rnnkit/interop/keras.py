"""Old home of the Keras weight layouts; they live in :mod:`rnnkit.layers.keras_weights` now
(layers use them in ``get_weights`` / ``set_weights``, and layers sit below interop)."""

from ..layers.keras_weights import cell_from_keras, cell_to_keras

__all__ = ["cell_to_keras", "cell_from_keras"]
