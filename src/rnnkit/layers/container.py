"""Layers made of parts run one after another: their shapes and weights, written once.

``Stacked`` runs its layers, ``DilatedRNN`` its levels, ``StackedRNNCells`` its cells (within each
step), each part on the previous part's output. So a part is built for the shape the one before
hands on, the container's output shape is the last part's, and its weights are the parts' Keras
arrays in order, then any parameters the container adds itself (``DilatedRNN``'s convolution).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from .keras_weights import params_from_keras, params_to_keras


class Container:
    """Mixin of a Layer made of ``parts()`` run in a chain.

    A container says which parts it has (``parts``) and, where its parts are not layers over
    sequences, how a part is built and what shape it hands on (``build_part``,
    ``part_output_shape``); parameters of its own go in ``own_weights``. Its ``build`` calls
    ``build_parts`` (a Layer's ``build`` must be its own, so that it is wrapped as Layer wraps it).
    """

    def parts(self) -> list:
        raise NotImplementedError

    def build_part(self, part, shape) -> None:
        part.ensure_built(shape)

    def part_output_shape(self, part, shape):
        return part.compute_output_shape(shape)

    def own_weights(self) -> list[nn.Parameter]:
        """Parameters of the container itself, after the parts' in ``get_weights``."""
        return []

    def build_parts(self, input_shape) -> tuple:
        """Build each part for the shape the previous part hands on; returns the last part's
        output shape."""
        shape = tuple(input_shape)
        for part in self.parts():
            self.build_part(part, shape)
            shape = self.part_output_shape(part, shape)
        return shape

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for part in self.parts():
            shape = self.part_output_shape(part, shape)
        return shape

    def get_weights(self) -> list[np.ndarray]:
        return [w for part in self.parts() for w in part.get_weights()] + \
            params_to_keras(self.own_weights())

    def set_weights(self, weights) -> None:
        weights = list(weights)
        given = 0
        for part in self.parts():
            n = len(part.get_weights())
            part.set_weights(weights[given:given + n])
            given += n
        params_from_keras(self.own_weights(), weights[given:], self.name, offset=given)
