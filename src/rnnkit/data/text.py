"""Text to integer ids, word or character level, as Keras's ``TextVectorization`` layer.

Id 0 is padding (token ``""``), id 1 is out-of-vocabulary (``"[UNK]"``), then the vocabulary by
decreasing frequency in the texts given to :meth:`TextVectorizer.fit`. Fit on the training split
only; save :meth:`TextVectorizer.to_config` with the model so prediction uses the same mapping.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, NotBuiltError

PAD, OOV = "", "[UNK]"
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
_STANDARDIZE = ("lower_and_strip_punctuation", "lower", None)
_SPLIT = ("whitespace", "character")


class TextVectorizer:
    """Maps N texts to an (N, L) int64 array of token ids.

    Args:
        max_tokens: size of the id space, padding and OOV included; the ``max_tokens - 2`` most
            frequent tokens are kept (ties broken as Keras: the greater string first).
            None keeps every token.
        split: ``"whitespace"`` (words) or ``"character"``.
        standardize: ``"lower_and_strip_punctuation"`` (Keras's default), ``"lower"`` or None.
        output_sequence_length: L; longer texts lose their end, shorter ones are padded at the
            end with 0. None pads to the longest text of each call.
        vocabulary: tokens in id order (without padding and OOV) instead of fitting.

    >>> v = TextVectorizer().fit(["the cat", "the dog"])
    >>> v.transform(["the bird"]).tolist()
    [[2, 1]]
    """

    def __init__(self, max_tokens: int | None = None, split: str = "whitespace",
                 standardize: str | None = "lower_and_strip_punctuation",
                 output_sequence_length: int | None = None,
                 vocabulary: Sequence[str] | None = None):
        _check_choice("split", split, _SPLIT)
        _check_choice("standardize", standardize, _STANDARDIZE)
        if max_tokens is not None and max_tokens < 2:
            raise ConfigError(f"TextVectorizer: max_tokens must be at least 2 (padding and OOV), "
                              f"got {max_tokens}")
        self.max_tokens, self.split, self.standardize = max_tokens, split, standardize
        self.output_sequence_length = output_sequence_length
        self._index: dict[str, int] | None = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary)

    def tokenize(self, text: str) -> list[str]:
        """One text as its list of tokens, after standardization."""
        if self.standardize is not None:
            text = text.lower()
        if self.standardize == "lower_and_strip_punctuation":
            text = _PUNCTUATION.sub("", text)
        return list(text) if self.split == "character" else text.split()

    def fit(self, texts: Iterable[str]) -> TextVectorizer:
        """Builds the vocabulary from ``texts`` (the training split); returns self."""
        counts = Counter(tok for text in _texts(texts) for tok in self.tokenize(text))
        ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        keep = None if self.max_tokens is None else self.max_tokens - 2
        self.set_vocabulary([tok for tok, _ in ranked[:keep]])
        return self

    def set_vocabulary(self, tokens: Sequence[str]) -> None:
        """Uses ``tokens`` (without padding and OOV) as the vocabulary, in id order from 2."""
        tokens = list(tokens)
        reserved = [t for t in tokens if t in (PAD, OOV)]
        if reserved or len(set(tokens)) != len(tokens):
            raise ConfigError("TextVectorizer: the vocabulary must hold distinct tokens and not "
                              f"{PAD!r} or {OOV!r} (ids 0 and 1 are reserved)")
        if self.max_tokens is not None and len(tokens) + 2 > self.max_tokens:
            raise ConfigError(f"TextVectorizer: {len(tokens)} tokens + padding + OOV exceed "
                              f"max_tokens={self.max_tokens}")
        self._index = {tok: i + 2 for i, tok in enumerate(tokens)}

    @property
    def vocabulary(self) -> list[str]:
        """All tokens in id order: padding, OOV, then the fitted ones."""
        return [PAD, OOV, *self._require_index()]

    def transform(self, texts: Iterable[str]) -> np.ndarray:
        """N texts -> (N, L) int64 ids (see ``output_sequence_length``)."""
        index = self._require_index()
        ids = [[index.get(tok, 1) for tok in self.tokenize(t)] for t in _texts(texts)]
        length = self.output_sequence_length
        if length is None:
            length = max(map(len, ids), default=0)
        out = np.zeros((len(ids), length), dtype=np.int64)
        for i, seq in enumerate(ids):
            seq = seq[:length]
            out[i, :len(seq)] = seq
        return out

    def inverse(self, ids) -> list[str]:
        """(N, L) ids -> N texts: tokens joined by spaces (words) or nothing (characters),
        padding dropped, unknown ids shown as the OOV token."""
        vocab = self.vocabulary
        joiner = "" if self.split == "character" else " "
        return [joiner.join(vocab[i] if 0 <= i < len(vocab) else OOV for i in row if i != 0)
                for row in np.asarray(ids, dtype=np.int64).reshape(len(ids), -1).tolist()]

    def to_config(self) -> dict:
        """A JSON-serialisable dict that :meth:`from_config` turns back into this vectorizer."""
        return {"max_tokens": self.max_tokens, "split": self.split,
                "standardize": self.standardize,
                "output_sequence_length": self.output_sequence_length,
                "vocabulary": self.vocabulary[2:]}

    @classmethod
    def from_config(cls, config: dict) -> TextVectorizer:
        return cls(**config)

    def _require_index(self) -> dict[str, int]:
        if self._index is None:
            raise NotBuiltError("TextVectorizer: call fit(texts) on the training split (or pass "
                                "vocabulary=) before using it")
        return self._index


def _texts(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        raise ConfigError("TextVectorizer: expected a list of texts, got one string; wrap it in "
                          "a list")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ConfigError(f"TextVectorizer: text {i} is a {type(t).__name__}, not a str")
    return texts


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"TextVectorizer: {name} must be one of {choices}, got {value!r}")
