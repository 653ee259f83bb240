"""Sequence classification (many-to-one): one label per sequence, binary or multi-class.

``Embedding`` (for token ids) -> a recurrent layer returning its last output -> ``Dense``:
one sigmoid unit with binary cross-entropy for two classes, C softmax units with sparse
categorical cross-entropy for more, as the lecture's IMDB model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.csv import DataFormatError
from ..errors import ConfigError
from ..layers import Dense, Embedding, Layer
from ..models import Sequential


def sequence_classifier(recurrent: Layer, num_classes: int, vocab_size: int | None = None,
                        embed_dim: int = 32, optimizer="rmsprop") -> Sequential:
    """A compiled classifier: ids (B, T) (with ``vocab_size``) or features (B, T, I) ->
    probabilities (B, 1) for two classes, (B, C) for C > 2. Padding id 0 is masked."""
    if num_classes < 2:
        raise ConfigError(f"sequence_classifier: need at least 2 classes, got {num_classes}")
    layers = [] if vocab_size is None else [Embedding(vocab_size, embed_dim, mask_zero=True)]
    binary = num_classes == 2
    layers += [recurrent, Dense(1 if binary else num_classes,
                                activation="sigmoid" if binary else "softmax")]
    model = Sequential(layers)
    model.compile(optimizer=optimizer, metrics=["acc"],
                  loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy")
    return model


def class_ids(labels: Sequence[str], classes: Sequence[str], source: str = "labels",
              lines: Sequence[int] | None = None, column: str = "label") -> np.ndarray:
    """Labels -> (N,) int64 ids in ``classes``; a label outside them raises DataFormatError
    naming ``source``, the line and the column."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        if label not in index:
            line = lines[i] if lines is not None else i + 1
            raise DataFormatError(f"{source}: line {line}, column {column!r}: label {label!r} is "
                                  f"not one of the classes {list(classes)}")
        out[i] = index[label]
    return out


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """(N, 1) sigmoid or (N, C) softmax outputs -> (N,) class ids."""
    if probabilities.shape[-1] == 1:
        return (probabilities[:, 0] > 0.5).astype(np.int64)
    return probabilities.argmax(-1)


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(true), np.asarray(pred)), 1)
    return out
