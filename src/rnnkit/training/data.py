"""Data for fit/evaluate/predict: arrays sliced into batches, or an iterable of batches.

A batch is ``(x, y, sample_weight)`` of tensors (y and sample_weight may be None). Integer arrays
(token ids, class labels) become int64, everything else float32.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataFormatError, ShapeError

Batch = tuple


def device_of(module: torch.nn.Module) -> torch.device:
    """The device of a module's parameters (the CPU for a module without any)."""
    p = next(module.parameters(), None)
    return torch.device("cpu") if p is None else p.device


def to_tensor(a, what: str = "x") -> Tensor:
    """int/uint arrays -> int64, bool/float arrays -> float32; a ShapeError for ragged lists."""
    if isinstance(a, Tensor):
        t = a
    else:
        try:
            arr = np.asarray(a)
            if arr.dtype.kind in "USO":  # torch's own message would blame the shape
                raise DataFormatError(f"{what}: expected numbers, got {_first_text(arr)} "
                                      f"(dtype {arr.dtype}); convert text to numbers first "
                                      "(e.g. TextVectorizer for words)")
            t = torch.as_tensor(arr)
        except (ValueError, TypeError) as e:
            if isinstance(e, DataFormatError):
                raise

            raise ShapeError(f"{what}: cannot make an array of it ({e}); pad sequences to one "
                             "length first") from None
    if t.is_floating_point() or t.dtype == torch.bool:
        return t.to(torch.float32)
    if t.is_complex():
        raise ShapeError(f"{what}: complex values are not supported (dtype {t.dtype})")
    return t.to(torch.int64)


def _first_text(arr: np.ndarray) -> str:
    """The first entry that is not a number, as 'text' at index [i, j]."""
    for index in np.ndindex(arr.shape):
        try:
            float(arr[index])
        except (TypeError, ValueError):
            return f"{str(arr[index])!r} at index {list(index)}"
    return "numbers stored as text"


def check_finite(t: Tensor, what: str) -> None:
    """A DataFormatError naming the first NaN/inf of a float tensor: sample, step, feature."""
    if not t.is_floating_point():
        return
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return
    index = [int(i) for i in bad.nonzero()[0]]
    axes = {1: ["sample"], 2: ["sample", "feature"], 3: ["sample", "step", "feature"]}.get(
        t.dim(), [f"axis {k}" for k in range(t.dim())])
    at = ", ".join(f"{a} {i}" for a, i in zip(axes, index))
    raise DataFormatError(f"{what}: non-finite value {float(t[tuple(index)])} at {at} "
                          f"({int(bad.sum())} non-finite values in total); drop or impute them "
                          "before training (rnnkit.doctor(model, x, y) lists them)")


def is_array_like(a) -> bool:
    """Arrays, tensors and nested lists of numbers; a list of tuples is a list of batches."""
    if isinstance(a, list):
        return not (a and isinstance(a[0], tuple))
    return isinstance(a, (np.ndarray, Tensor))


def unpack(batch) -> Batch:
    """A batch as Keras reads one: (x, y), (x, y, sample_weight) or a bare x; as tensors."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        batch = (batch,)
    if not 1 <= len(batch) <= 3:
        raise ShapeError("a batch must be x, (x, y) or (x, y, sample_weight); got a sequence of "
                         f"{len(batch)} items")
    x, y, sw = (*batch, None, None)[:3]
    return (to_tensor(x, "x"), None if y is None else to_tensor(y, "y"),
            None if sw is None else to_tensor(sw, "sample_weight"))


class ArrayData:
    """x, y and sample_weight as tensors sharing the first (sample) axis."""

    def __init__(self, x, y=None, sample_weight=None, role: str = ""):
        """``role`` prefixes the arrays' names in errors (e.g. "validation_data ")."""
        self.x = to_tensor(x, f"{role}x")
        self.y = None if y is None else to_tensor(y, f"{role}y")
        self.sample_weight = None if sample_weight is None else \
            to_tensor(sample_weight, f"{role}sample_weight")
        self.n = _count(self.x, "x")
        for name, a in (("y", self.y), ("sample_weight", self.sample_weight)):
            if a is not None and _count(a, name) != self.n:
                raise ShapeError(f"x and {name} must have the same number of samples: x has "
                                 f"{self.n}, {name} has {_count(a, name)}")
        if self.n == 0:
            raise ShapeError("x has no samples (empty data)")
        for name, a in (("x", self.x), ("y", self.y), ("sample_weight", self.sample_weight)):
            if a is not None:
                check_finite(a, f"{role}{name}")  # before any training step, so nothing is half-trained

    def take(self, index) -> ArrayData:
        part = ArrayData.__new__(ArrayData)
        part.x = self.x[index]
        part.y = None if self.y is None else self.y[index]
        part.sample_weight = None if self.sample_weight is None else self.sample_weight[index]
        part.n = len(part.x)
        return part

    def split(self, validation_split: float) -> tuple[ArrayData, ArrayData]:
        """The first part for training, the LAST ``validation_split`` fraction for validation
        (before any shuffling), as Keras."""
        split_at = int(np.floor(self.n * (1.0 - validation_split)))
        if split_at in (0, self.n):
            raise ShapeError(f"validation_split={validation_split} leaves no samples for "
                             f"{'training' if split_at == 0 else 'validation'} out of {self.n}")
        return self.take(slice(0, split_at)), self.take(slice(split_at, self.n))

    def batches(self, batch_size: int, shuffle: bool) -> Iterator[Batch]:
        order = torch.randperm(self.n) if shuffle else torch.arange(self.n)
        for start in range(0, self.n, batch_size):
            part = self.take(order[start:start + batch_size])
            yield part.x, part.y, part.sample_weight

    def num_batches(self, batch_size: int) -> int:
        return -(-self.n // batch_size)


def _count(a: Tensor, name: str) -> int:
    if a.dim() == 0:
        raise ShapeError(f"{name}: expected an array with a sample axis, got a scalar")
    return a.shape[0]


class BatchStream:
    """Batches one epoch at a time, from ArrayData or from an iterable of batches.

    Without ``steps`` an epoch is one pass (re-iterating the iterable). With ``steps`` each epoch
    takes that many batches from one iterator kept across epochs (arrays cycle through reshuffled
    passes), as Keras's ``steps_per_epoch``; ``ran_out`` tells that the iterable ended before.
    """

    def __init__(self, source: ArrayData | Iterable, batch_size: int = 32, shuffle: bool = False,
                 steps: int | None = None):
        if steps is not None and steps <= 0:
            raise ConfigError(f"steps must be a positive integer or None, got {steps!r}")
        self.source, self.batch_size, self.shuffle, self.steps = source, batch_size, shuffle, steps
        self.ran_out = False
        self._iterator: Iterator | None = None

    @property
    def steps_per_epoch(self) -> int | None:
        if self.steps is not None:
            return self.steps
        if isinstance(self.source, ArrayData):
            return self.source.num_batches(self.batch_size)
        return None

    def epoch(self) -> Iterator[Batch]:
        if self.steps is None:
            yield from self._one_pass()
            return
        if self._iterator is None:
            self._iterator = self._endless() if isinstance(self.source, ArrayData) \
                else (unpack(b) for b in self.source)
        count = 0
        for batch in itertools.islice(self._iterator, self.steps):
            count += 1
            yield batch
        self.ran_out = count < self.steps

    def _one_pass(self) -> Iterator[Batch]:
        if isinstance(self.source, ArrayData):
            yield from self.source.batches(self.batch_size, self.shuffle)
            return
        for batch in self.source:
            yield unpack(batch)

    def _endless(self) -> Iterator[Batch]:
        while True:
            yield from self.source.batches(self.batch_size, self.shuffle)


def warn_ran_out(steps: int | None, epochs: int) -> None:
    warnings.warn("Your input ran out of data; interrupting training. Make sure that your "
                  f"dataset or generator can generate at least steps_per_epoch * epochs = "
                  f"{steps} * {epochs} batches.", UserWarning, stacklevel=3)
