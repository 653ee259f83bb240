"""The trainer's data feed: arrays sliced into batches, or an iterable of batches.

A batch is ``(x, y, sample_weight)`` of tensors (y and sample_weight may be None). Integer arrays
(token ids, class labels) become int64, everything else float32.

Every run can resume, so a feed says where it is: ``BatchStream.state_dict()`` gives its position
in the current pass (and for arrays the pass's sample order), ``load_state_dict`` puts it back, and
the next batch is the one an uninterrupted run would have taken. Arrays always can. An iterable
of batches can when it has the two methods itself (``is_resumable``), as torch's stateful
data loaders do: ``state_dict()`` at any moment between batches returns what, given to
``load_state_dict`` on a fresh copy, makes its next ``iter()`` continue with the next batch, its
shuffling RNG state included (``rnnkit.data.WindowDataset`` is one). A plain generator cannot,
and ``fit`` says so before training when asked to checkpoint it.
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

    def order(self, shuffle: bool, pass_index: int = 0) -> Tensor:
        """The sample order of one pass: a fresh permutation (torch's generator) or 0..n-1."""
        return torch.randperm(self.n) if shuffle else torch.arange(self.n)

    def batches(self, batch_size: int, shuffle: bool) -> Iterator[Batch]:
        order = self.order(shuffle)
        for start in range(0, self.n, batch_size):
            part = self.take(order[start:start + batch_size])
            yield part.x, part.y, part.sample_weight

    def num_batches(self, batch_size: int) -> int:
        return -(-self.n // batch_size)


def _count(a: Tensor, name: str) -> int:
    if a.dim() == 0:
        raise ShapeError(f"{name}: expected an array with a sample axis, got a scalar")
    return a.shape[0]


def is_resumable(source) -> bool:
    """Whether an iterable of batches can say where it is (``state_dict``/``load_state_dict``)."""
    return callable(getattr(source, "state_dict", None)) \
        and callable(getattr(source, "load_state_dict", None))


class BatchStream:
    """Batches one epoch at a time, from ArrayData or from an iterable of batches.

    Without ``steps`` an epoch is one pass (re-iterating the iterable). With ``steps`` each epoch
    takes that many batches from one iterator kept across epochs (arrays cycle through reshuffled
    passes), as Keras's ``steps_per_epoch``; ``ran_out`` tells that the iterable ended before.
    ``state_dict`` / ``load_state_dict``: see the module docstring.
    """

    def __init__(self, source: ArrayData | Iterable, batch_size: int = 32, shuffle: bool = False,
                 steps: int | None = None):
        if steps is not None and steps <= 0:
            raise ConfigError(f"steps must be a positive integer or None, got {steps!r}")
        self.source, self.batch_size, self.shuffle, self.steps = source, batch_size, shuffle, steps
        self.ran_out = False
        self._iterator: Iterator | None = None
        # arrays: the current pass's sample order (None between passes), batches of it handed
        # out, and passes begun (DistributedSampler reshuffles by pass)
        self._order: Tensor | None = None
        self._position = 0
        self._passes = 0

    @property
    def steps_per_epoch(self) -> int | None:
        if self.steps is not None:
            return self.steps
        if isinstance(self.source, ArrayData):
            return self.source.num_batches(self.batch_size)
        return None

    @property
    def arrays(self) -> ArrayData | None:
        """The arrays batches are cut from (None for an iterable)."""
        return self.source if isinstance(self.source, ArrayData) else None

    def epoch(self, first_step: int = 0) -> Iterator[Batch]:
        """This epoch's batches; ``first_step`` > 0 when a resumed epoch already had as many."""
        if self.steps is None:
            yield from self._one_pass()
            return
        if self._iterator is None:
            self._iterator = self._endless() if isinstance(self.source, ArrayData) \
                else (unpack(b) for b in self.source)
        count = 0
        for batch in itertools.islice(self._iterator, self.steps - first_step):
            count += 1
            yield batch
        self.ran_out = count < self.steps - first_step

    def _one_pass(self) -> Iterator[Batch]:
        if isinstance(self.source, ArrayData):
            yield from self._array_pass()
            return
        for batch in self.source:
            yield unpack(batch)

    def _endless(self) -> Iterator[Batch]:
        while True:
            yield from self._array_pass()

    def _array_pass(self) -> Iterator[Batch]:
        if self._order is None:  # a new pass; a resumed one keeps its order and position
            self._order = self.source.order(self.shuffle, self._passes)
            self._position, self._passes = 0, self._passes + 1
        size = self.batch_size
        while self._position * size < len(self._order):
            part = self.source.take(self._order[self._position * size:(self._position + 1) * size])
            self._position += 1
            yield part.x, part.y, part.sample_weight
        self._order = None

    # -- resuming --------------------------------------------------------------------------------
    @property
    def resumable(self) -> bool:
        return isinstance(self.source, ArrayData) or is_resumable(self.source)

    def state_dict(self) -> dict:
        """Where the stream is: for arrays the pass's order and how many of its batches went."""
        if isinstance(self.source, ArrayData):
            return {"order": self._order, "position": self._position, "passes": self._passes}
        if is_resumable(self.source):
            return {"source": self.source.state_dict()}
        raise ConfigError(f"a {type(self.source).__name__} cannot say where it is (it has no "
                          "state_dict/load_state_dict)")

    def load_state_dict(self, state: dict) -> None:
        self._iterator = None
        if isinstance(self.source, ArrayData):
            self._order, self._position = state["order"], state["position"]
            self._passes = state.get("passes", 1)
        else:
            self.source.load_state_dict(state["source"])

    def describe(self) -> dict:
        """What a checkpoint records of the data, to refuse resuming on other data."""
        if isinstance(self.source, ArrayData):
            return {"samples": self.source.n, "batch_size": self.batch_size,
                    "shuffle": self.shuffle}
        size = len(self.source) if hasattr(self.source, "__len__") else None
        return {"source": type(self.source).__name__, "batches": size, "steps": self.steps}

    def example(self) -> Tensor | None:
        """An input sample to build the model from before a checkpoint is loaded into it."""
        return self.source.x[:1] if isinstance(self.source, ArrayData) else None


def warn_ran_out(steps: int | None, epochs: int) -> None:
    warnings.warn("Your input ran out of data; interrupting training. Make sure that your "
                  f"dataset or generator can generate at least steps_per_epoch * epochs = "
                  f"{steps} * {epochs} batches.", UserWarning, stacklevel=3)
