"""IO transduction (tagging): one output per input step, "don't care" steps masked out.

``Embedding`` (for token ids) -> a recurrent layer with ``return_sequences`` -> ``Dense(C,
softmax)`` at every step; train with ``sample_weight`` = the (B, T) weights of
:func:`rnnkit.tasks.masks.dont_care`, so unlabeled steps add nothing to loss or accuracy.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..layers import Dense, Embedding, Layer
from ..models import Sequential


def sequence_tagger(recurrent: Layer, num_tags: int, vocab_size: int | None = None,
                    embed_dim: int = 32, optimizer="rmsprop") -> Sequential:
    """A compiled tagger: (B, T) ids or (B, T, I) features -> (B, T, C) tag probabilities.
    ``recurrent`` must return sequences."""
    if not getattr(recurrent, "return_sequences", False):
        raise ConfigError(f"sequence_tagger: {recurrent.name} must have return_sequences=True "
                          "(one output per step)")
    if num_tags < 2:
        raise ConfigError(f"sequence_tagger: need at least 2 tags, got {num_tags}")
    layers = [] if vocab_size is None else [Embedding(vocab_size, embed_dim)]
    model = Sequential([*layers, recurrent, Dense(num_tags, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["acc"])
    return model
