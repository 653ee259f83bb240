"""The lecture's "variety of sequential transductions" as thin layers over Sequential/Model.

classification (many-to-one), transduction (one output per step), generation (character LM)
and seq2seq (encoder-decoder) all train with ``Model.fit``; they differ only in which steps the
loss counts (see :mod:`rnnkit.tasks.masks`). :mod:`rnnkit.tasks.specs` builds recurrent layers
from strings such as ``"bidirectional-gru:32"``.

Each task module registers its :class:`~rnnkit.tasks.protocol.Task` (the CLI's ``--task``) when
imported here: a new task is one module plus one import line.
"""

from . import classification, forecasting, generation, masks, protocol, seq2seq, specs, transduction
from .classification import sequence_classifier
from .generation import language_model, sample
from .masks import dont_care, last_step_mask, padding_mask
from .seq2seq import Seq2Seq
from .specs import recurrent_layer
from .transduction import sequence_tagger

__all__ = [
    "classification", "forecasting", "generation", "protocol", "masks", "seq2seq", "specs", "transduction",
    "Seq2Seq", "dont_care", "language_model", "last_step_mask", "padding_mask",
    "recurrent_layer", "sample", "sequence_classifier", "sequence_tagger",
]
