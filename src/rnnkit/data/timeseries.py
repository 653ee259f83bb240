"""Time-series windows, normalization and baselines, as in the lecture's temperature example.

A window is anchored at a row r: its inputs are rows ``r - lookback, r - lookback + step, ...``
(all < r) and its target is column ``target`` of row ``r + delay`` (the next ``horizon`` rows for
multi-step targets). Anchors run over ``[start + lookback, end)``: ``start``/``end`` are the
lecture's ``min_index``/``max_index`` and cut the series into train/validation/test splits.

Series larger than memory: :func:`csv_to_npy` turns a CSV into a ``.npy`` file chunk by chunk and
returns it memory-mapped; windows and :class:`Normalizer` read such an array a batch at a time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ShapeError
from .csv import DataFormatError, iter_chunks

Batch = tuple[np.ndarray, np.ndarray]


@dataclass
class Series:
    """A multivariate series: ``values`` (N, C) with ``columns`` (C names) and ``timestamps``
    (N,) datetime64[s]."""

    columns: list[str]
    values: np.ndarray
    timestamps: np.ndarray

    def rows(self, start: int, end: int) -> Series:
        """Rows ``[start, end)`` as a Series (views, not copies)."""
        return Series(self.columns, self.values[start:end], self.timestamps[start:end])


def generator(data: np.ndarray, lookback: int, delay: int, min_index: int,
              max_index: int | None, shuffle: bool = False, batch_size: int = 128,
              step: int = 6, target: int = 1, rng=None) -> Iterator[Batch]:
    """The lecture's endless generator of (samples (B, T, F), targets (B,)) batches.

    T = ``len(range(0, lookback, step))``. With ``shuffle`` each batch draws B anchors uniformly
    from ``[min_index + lookback, max_index)`` (with ``rng.randint``; default the global
    ``np.random``); without, anchors run in order and wrap to the start once a full batch no longer
    fits. ``max_index=None`` means ``len(data) - delay - 1``. Use it with
    ``model.fit(gen, steps_per_epoch=...)``.
    """
    if max_index is None:
        max_index = len(data) - delay - 1
    _check_target_column(data, target, "generator")
    _check_anchor_range(data, lookback, delay, 1, min_index, max_index)
    rng = np.random if rng is None else rng
    offsets = np.arange(-lookback, 0, step)
    i = min_index + lookback
    while True:
        if shuffle:
            rows = rng.randint(min_index + lookback, max_index, size=batch_size)
        else:
            if i + batch_size >= max_index:
                i = min_index + lookback
            rows = np.arange(i, min(i + batch_size, max_index))
            i += len(rows)
        yield data[rows[:, None] + offsets], data[rows + delay, target]


def _check_target_column(data: np.ndarray, target: int, where: str) -> None:
    columns = data.shape[1] if data.ndim == 2 else 0
    if not -columns <= int(target) < columns:
        raise ConfigError(f"{where}: target column {target} does not exist; the data has "
                          f"{columns} columns (0..{columns - 1})")


class WindowDataset:
    """Batches of (x (B, T, F) float32, y (B,) or (B, horizon) float32), one pass per epoch.

    The class version of :func:`generator`: every anchor of ``[start + lookback, end)`` once per
    epoch, reshuffled each epoch when ``shuffle``, the last batch possibly smaller. ``end=None`` is
    the last anchor whose targets exist. A fitted ``normalizer`` is applied to every batch, so the
    data itself can stay raw and on disk (``np.memmap``).

    It says where it is, so a run on it resumes exactly (``fit(checkpoint_dir=...)``):
    ``state_dict()`` between batches gives the shuffling RNG's state at the start of the current
    pass and how many of its batches went; after ``load_state_dict``, the next pass draws the same
    order and continues with the next batch. One pass at a time.

    >>> ds = WindowDataset(np.arange(20.0).reshape(10, 2), lookback=4, delay=0, step=2, target=1)
    >>> x, y = next(iter(ds)); x.shape, y[:2].tolist()
    ((6, 2, 2), [9.0, 11.0])
    """

    def __init__(self, data: np.ndarray, lookback: int, delay: int, start: int = 0,
                 end: int | None = None, step: int = 1, horizon: int = 1, target: int = 1,
                 batch_size: int = 128, shuffle: bool = False, seed: int | None = None,
                 normalizer: Normalizer | None = None):
        if data.ndim != 2:
            raise ShapeError(f"WindowDataset: expected data of shape (N, F), got {data.shape}")
        if step < 1 or horizon < 1 or batch_size < 1:
            raise ConfigError(f"WindowDataset: step, horizon and batch_size must be >= 1, got "
                              f"{step}, {horizon}, {batch_size}")
        if end is None:
            end = len(data) - delay - horizon + 1
        _check_target_column(data, target, "WindowDataset")
        _check_anchor_range(data, lookback, delay, horizon, start, end)
        self.data, self.target, self.normalizer = data, target, normalizer
        self.batch_size, self.shuffle, self.horizon = batch_size, shuffle, horizon
        self.anchors = np.arange(start + lookback, end)
        self.offsets = np.arange(-lookback, 0, step)
        self.delay = delay
        self._rng = np.random.default_rng(seed)
        self._pass_rng: dict | None = None  # the RNG's state when the current pass began
        self._position = 0  # batches of the current pass handed out

    def __len__(self) -> int:
        return -(-len(self.anchors) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        return self.batches(self.shuffle)

    def batches(self, shuffle: bool = False) -> Iterator[Batch]:
        """One pass over all windows, in anchor order unless ``shuffle``."""
        if self._pass_rng is None:
            self._pass_rng, self._position = self._rng.bit_generator.state, 0
        else:  # a pass put back by load_state_dict: the same order, from the next batch
            self._rng.bit_generator.state = self._pass_rng
        order = self._rng.permutation(self.anchors) if shuffle else self.anchors
        while self._position * self.batch_size < len(order):
            i = self._position * self.batch_size
            self._position += 1
            yield self.window(order[i:i + self.batch_size])
        self._pass_rng, self._position = None, 0

    def state_dict(self) -> dict:
        """Where the iteration is (see the class docstring); JSON values only."""
        rng = self._rng.bit_generator.state if self._pass_rng is None else self._pass_rng
        return {"rng": rng, "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``: the next ``batches()`` resumes that pass."""
        self._rng.bit_generator.state = state["rng"]
        self._pass_rng = state["rng"] if state["position"] else None
        self._position = state["position"]

    def window(self, anchors: np.ndarray) -> Batch:
        """The windows at ``anchors`` (B,): x (B, T, F) and y (B,) or (B, horizon)."""
        x = self.data[anchors[:, None] + self.offsets]
        if self.normalizer is not None:
            x = self.normalizer.transform(x)
        return x.astype(np.float32), self.column(self.target_rows(anchors)).astype(np.float32)

    def target_rows(self, anchors: np.ndarray) -> np.ndarray:
        """(B,) anchors -> the rows of their targets, (B,) or (B, horizon)."""
        rows = anchors[:, None] + self.delay + np.arange(self.horizon)
        return rows[:, 0] if self.horizon == 1 else rows

    def last_input_rows(self) -> np.ndarray:
        """(N,) the row of the last input step of every window, in anchor order."""
        return self.anchors + self.offsets[-1]

    def column(self, rows: np.ndarray) -> np.ndarray:
        """The target column at ``rows`` (any shape), normalized like the targets."""
        values = np.asarray(self.data[rows, self.target], dtype=np.float64)
        if self.normalizer is None:
            return values
        return (values - self.normalizer.mean[self.target]) / self.normalizer.std[self.target]

    def targets(self) -> np.ndarray:
        """All targets in anchor order: (N,) or (N, horizon), float64."""
        return self.column(self.target_rows(self.anchors))


def _check_anchor_range(data, lookback: int, delay: int, horizon: int, start: int,
                        end: int) -> None:
    if lookback < 1 or delay < 0:
        raise ConfigError(f"windows: lookback must be >= 1 and delay >= 0, got {lookback}, "
                          f"{delay}")
    if start < 0 or end + delay + horizon - 1 > len(data):
        raise ConfigError(f"windows: rows [{start}, {end}) with delay {delay} and horizon "
                          f"{horizon} do not fit in a series of {len(data)} rows")
    if start + lookback >= end:
        raise ConfigError(f"windows: no window fits: the first anchor start + lookback = "
                          f"{start + lookback} is not below end = {end}")


class Normalizer:
    """Per-column standardization ``(x - mean) / std`` with statistics of a training range.

    ``std`` is the population standard deviation (ddof=0), as ``array.std(axis=0)`` in the
    lecture. Fitting reads the range in chunks, so a memory-mapped series never loads whole.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)

    def fit(self, data: np.ndarray, start: int = 0, end: int | None = None,
            chunk_rows: int = 1 << 16) -> Normalizer:
        """Statistics of rows ``[start, end)`` of ``data`` (N, F); returns self."""
        end = len(data) if end is None else end
        if not 0 <= start < end <= len(data):
            raise ConfigError(f"Normalizer.fit: rows [{start}, {end}) are not a non-empty range "
                              f"of a series of {len(data)} rows")
        count, mean, m2 = 0, 0.0, 0.0
        for lo in range(start, end, chunk_rows):
            chunk = np.asarray(data[lo:min(lo + chunk_rows, end)], dtype=np.float64)
            _check_finite(chunk, lo)
            n, c_mean = len(chunk), chunk.mean(axis=0)
            delta = c_mean - mean
            m2 = m2 + ((chunk - c_mean) ** 2).sum(axis=0) + delta**2 * count * n / (count + n)
            mean = mean + delta * n / (count + n)
            count += n
        std = np.sqrt(m2 / count)
        if np.any(std == 0):
            raise DataFormatError(f"Normalizer.fit: column {int(np.argmax(std == 0))} is "
                                  f"constant over rows [{start}, {end}); it cannot be scaled")
        self.mean, self.std = mean, std
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(..., F) raw -> (..., F) standardized."""
        return (x - self._require_mean()) / self.std

    def inverse_transform(self, x: np.ndarray, column: int | None = None) -> np.ndarray:
        """(..., F) standardized -> raw; with ``column``, x holds only that column (any shape)."""
        mean = self._require_mean()
        if column is None:
            return x * self.std + mean
        return x * self.std[column] + mean[column]

    def to_config(self) -> dict:
        """A JSON-serialisable dict for :meth:`from_config`."""
        return {"mean": self._require_mean().tolist(), "std": self.std.tolist()}

    @classmethod
    def from_config(cls, config: dict) -> Normalizer:
        return cls(config["mean"], config["std"])

    def _require_mean(self) -> np.ndarray:
        if self.mean is None:
            raise ConfigError("Normalizer: call fit(train_data) first")
        return self.mean


def _check_finite(chunk: np.ndarray, first_row: int) -> None:
    bad = np.argwhere(~np.isfinite(chunk))
    if len(bad):
        i, j = bad[0]
        raise DataFormatError(f"Normalizer.fit: row {first_row + i}, column {j}: not a finite "
                              f"number ({chunk[i, j]})")


def last_value(ds: WindowDataset) -> np.ndarray:
    """The lecture's "common sense" forecast: every target equals the last input value of the
    target column. (N,) or (N, horizon), aligned with ``ds.targets()``."""
    last = ds.column(ds.last_input_rows())
    return last if ds.horizon == 1 else np.repeat(last[:, None], ds.horizon, axis=1)


def seasonal_naive(ds: WindowDataset, season: int) -> np.ndarray:
    """Every target equals the latest value one or more whole ``season``s (in rows) before it
    that was already observed at the window's last input step. Aligned with ``ds.targets()``."""
    if season < 1:
        raise ConfigError(f"seasonal_naive: season must be >= 1 row, got {season}")
    rows = ds.target_rows(ds.anchors)
    last = ds.last_input_rows().reshape(-1, *([1] * (rows.ndim - 1)))
    source = rows - season * (-(-(rows - last) // season))
    if source.min() < 0:
        raise ConfigError(f"seasonal_naive: season {season} reaches before the first row for "
                          f"the first window; start the split later")
    return ds.column(source)


def linear(train: WindowDataset, ds: WindowDataset, ridge: float = 0.0) -> np.ndarray:
    """Least squares (with bias) from the flattened window (T·F) to the targets, fit on
    ``train`` and applied to ``ds``; aligned with ``ds.targets()``.

    The normal equations are accumulated batch by batch, so ``train`` may stream from disk.
    ``ridge`` adds ``ridge * I`` to them (not to the bias).
    """
    gram, cross = 0.0, 0.0
    for x, y in train.batches():
        a = _design(x)
        gram = gram + a.T @ a
        cross = cross + a.T @ y.reshape(len(y), -1)
    penalty = ridge * np.eye(len(gram))
    penalty[-1, -1] = 0.0
    weights = np.linalg.lstsq(gram + penalty, cross, rcond=None)[0]
    pred = np.concatenate([_design(x) @ weights for x, _ in ds.batches()])
    return pred[:, 0] if ds.horizon == 1 else pred


def _design(x: np.ndarray) -> np.ndarray:
    """(B, T, F) windows -> (B, T·F + 1) float64 rows with a trailing 1 for the bias."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return np.hstack([flat, np.ones((len(x), 1))])


def evaluate(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """``{"mae": ..., "rmse": ...}`` of predictions against targets of the same shape."""
    predictions, targets = np.asarray(predictions), np.asarray(targets)
    if predictions.shape != targets.shape:
        raise ShapeError(f"evaluate: predictions {predictions.shape} and targets "
                         f"{targets.shape} differ in shape")
    err = predictions.astype(np.float64) - targets
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}


def csv_to_npy(csv_path: str | Path, npy_path: str | Path, numeric: Sequence[str] | None = None,
               text: Sequence[str] = (), dtype=np.float32,
               chunk_rows: int = 1 << 16) -> np.memmap:
    """Converts the numeric columns of a CSV (see :func:`rnnkit.data.csv.iter_chunks`) to a
    ``.npy`` file of shape (N, C), chunk by chunk, and opens it memory-mapped (read-only).

    Columns named in ``text`` (dates) are skipped. The file appears atomically: a crash leaves no
    partial ``npy_path``.
    """
    npy_path = Path(npy_path)
    with tempfile.TemporaryDirectory(dir=npy_path.parent) as tmp:
        raw_path = Path(tmp) / "values.raw"
        rows, width = 0, 0
        with open(raw_path, "wb") as raw:
            for chunk in iter_chunks(csv_path, numeric, text, chunk_rows):
                raw.write(chunk.values.astype(dtype).tobytes())
                rows, width = rows + len(chunk.values), chunk.values.shape[1]
        _raw_to_npy(raw_path, Path(tmp) / "values.npy", dtype, (rows, width), chunk_rows)
        os.replace(Path(tmp) / "values.npy", npy_path)
    return np.load(npy_path, mmap_mode="r")


def _raw_to_npy(raw_path: Path, out_path: Path, dtype, shape: tuple[int, int],
                chunk_rows: int) -> None:
    source = np.memmap(raw_path, dtype=dtype, mode="r", shape=shape)
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=dtype, shape=shape)
    for lo in range(0, shape[0], chunk_rows):
        out[lo:lo + chunk_rows] = source[lo:lo + chunk_rows]
    out.flush()
    del out, source
