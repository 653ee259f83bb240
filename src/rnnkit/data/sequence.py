"""``pad_sequences`` with the semantics of ``keras.utils.pad_sequences``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, ShapeError


def pad_sequences(sequences: Sequence, maxlen: int | None = None, dtype="int32",
                  padding: str = "pre", truncating: str = "pre", value=0.0) -> np.ndarray:
    """N sequences of varying length as one (N, maxlen, *S) array, as Keras does.

    Sequences longer than ``maxlen`` lose values at the start (``truncating="pre"``) or the end
    (``"post"``); shorter ones are filled with ``value`` before (``padding="pre"``) or after
    (``"post"``). ``maxlen=None`` is the longest length. S, the shape of one step, is taken from
    the first non-empty sequence and every other must match it.

    >>> pad_sequences([[1, 2, 3], [4]], maxlen=2)
    array([[2, 3],
           [0, 4]], dtype=int32)
    """
    _check_mode("padding", padding)
    _check_mode("truncating", truncating)
    lengths, step_shape = _lengths_and_step_shape(sequences)
    if maxlen is None:
        maxlen = max(lengths, default=0)
    if isinstance(value, str) and dtype is not object and not np.issubdtype(dtype, np.str_):
        raise ConfigError(f"pad_sequences: value {value!r} is a string but dtype is {dtype}; use "
                          "dtype=object for variable-length strings")
    out = np.full((len(sequences), maxlen, *step_shape), value, dtype=dtype)
    if maxlen == 0:
        return out
    for i, seq in enumerate(sequences):
        if not len(seq):
            continue
        kept = np.asarray(seq[-maxlen:] if truncating == "pre" else seq[:maxlen], dtype=dtype)
        if kept.shape[1:] != step_shape:
            raise ShapeError(f"pad_sequences: sequence {i} has steps of shape {kept.shape[1:]}, "
                             f"expected {step_shape} (the first non-empty sequence's)")
        if padding == "pre":
            out[i, maxlen - len(kept):] = kept
        else:
            out[i, :len(kept)] = kept
    return out


def _check_mode(name: str, mode: str) -> None:
    if mode not in ("pre", "post"):
        raise ConfigError(f"pad_sequences: {name} must be 'pre' or 'post', got {mode!r}")


def _lengths_and_step_shape(sequences: Sequence) -> tuple[list[int], tuple[int, ...]]:
    if not hasattr(sequences, "__len__"):
        raise ConfigError("pad_sequences: sequences must be a list of sequences, got "
                          f"{type(sequences).__name__}")
    lengths, step_shape = [], None
    for i, seq in enumerate(sequences):
        try:
            lengths.append(len(seq))
        except TypeError:
            raise ShapeError(f"pad_sequences: sequence {i} is not a sequence: {seq!r}") from None
        if step_shape is None and len(seq):
            step_shape = np.asarray(seq).shape[1:]
    return lengths, step_shape or ()
