"""``RNN``'s dropout, as Keras draws it: one mask per sequence, the same at every step.

``dropout`` drops input features, one (B, 1, I) mask for all steps; ``recurrent_dropout`` drops
units of the recurrent state h_{t-lag} (every lag), one (B, K·H) mask handed to the engine, which
applies it at every step. Both only in training; ``seed`` makes the draws repeatable. A
Keras-style cell run through the adapter (a user's cell, a stack holding one) draws its own.
"""

from __future__ import annotations

from torch import Tensor

from .cells import Seeds, check_rate


class SequenceDropout:
    """Mixin of ``RNN``: its dropout arguments and masks.

    Reads the layer's ``name``, ``training``, ``cell``, ``units`` and ``cell_draws_dropout``.
    """

    def set_dropout(self, dropout: float, recurrent_dropout: float, seed: int | None) -> None:
        self.dropout = check_rate(self.name, "dropout", dropout)
        self.recurrent_dropout = check_rate(self.name, "recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self._seeds = Seeds(seed)

    def dropout_masks(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """x (B, T, I) -> (x with the input mask applied, the recurrent mask (B, K·H) or None)."""
        if not self.training or self.cell_draws_dropout:
            return x, None
        if self.dropout > 0:
            x = x * self._seeds.keep_mask(x, (x.shape[0], 1, x.shape[2]), self.dropout)
        rmask = None
        if self.recurrent_dropout > 0:
            width = self.cell.num_lags * self.units
            rmask = self._seeds.keep_mask(x, (x.shape[0], width), self.recurrent_dropout)
        return x, rmask
