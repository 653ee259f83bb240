"""The lecture's "don't care" masks: one training loop, four task shapes.

Every task trains a model whose loss is averaged over the (B, T) entries of a 0/1 weight:

  classification (many-to-one)   1 at the last real step only (or a (B,) output, no mask)
  IO transduction (tagging)      1 at every step whose label is known, 0 at "don't care" steps
  generation (language model)    1 at every real (non-padding) next-token step
  seq2seq (encoder-decoder)      1 at every target step up to and including end-of-sequence

The weights go to ``fit(..., sample_weight=w)`` or come from ``Model.call_with_mask``; the loss's
weighted mean (rnnkit.training.losses.weighted_mean) does the rest.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError


def last_step_mask(lengths, steps: int) -> np.ndarray:
    """(B,) sequence lengths -> (B, T) float32, 1 at step ``length - 1`` of each row."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or (lengths < 1).any() or (lengths > steps).any():
        raise ShapeError(f"last_step_mask: lengths must be a (B,) array in [1, {steps}], "
                         f"got {lengths.tolist()}")
    mask = np.zeros((len(lengths), steps), dtype=np.float32)
    mask[np.arange(len(lengths)), lengths - 1] = 1.0
    return mask


def dont_care(labels, ignore: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) integer labels with ``ignore`` at "don't care" steps -> (labels with those steps set
    to class 0, (B, T) float32 weights that are 0 there and 1 elsewhere)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ShapeError(f"dont_care: expected (B, T) labels, got shape {labels.shape}")
    weights = (labels != ignore).astype(np.float32)
    return np.where(labels == ignore, 0, labels).astype(np.int64), weights


def padding_mask(ids, pad: int = 0) -> np.ndarray:
    """(B, T) token ids -> (B, T) float32, 0 where the id is ``pad``."""
    return (np.asarray(ids) != pad).astype(np.float32)
