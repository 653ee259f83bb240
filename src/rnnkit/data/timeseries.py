"""Time-series windows, normalization and baselines, as in the lecture's temperature example.

A window is anchored at a row r: its inputs are rows ``r - lookback, r - lookback + step, ...``
(all < r) and its target is column ``target`` of row ``r + delay`` (the next ``horizon`` rows for
multi-step targets; several columns when ``target`` is a list). Anchors run over
``[start + lookback, end)``: ``start``/``end`` are the lecture's ``min_index``/``max_index`` and cut
the series into train/validation/test splits. :func:`split_windows` makes the three splits of the
long-horizon forecasting protocol (Informer, DLinear, SegRNN) from row borders.

Series larger than memory: :func:`csv_to_npy` turns a CSV into a ``.npy`` file chunk by chunk and
returns it memory-mapped; windows and :class:`Normalizer` read such an array a batch at a time.
"""

from __future__ import annotations

import copy
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
    """Batches of (x (B, T, F) float32, y float32), one pass per epoch; y is (B,) or (B, horizon)
    for one ``target`` column, (B, horizon, C') for a list of C' target columns.

    The class version of :func:`generator`: every anchor of ``[start + lookback, end)`` once per
    epoch, the last batch possibly smaller (none is dropped). ``end=None`` is the last anchor
    whose targets exist. A fitted ``normalizer`` is applied to every batch, so the data itself can
    stay raw and on disk (``np.memmap``).

    Order: without ``shuffle`` the anchors run in row order. With ``shuffle`` the k-th pass
    (k = 0, 1, ...; iterating the dataset counts passes) takes the anchors in the permutation of
    ``numpy.random.default_rng([seed, k])``: the same seed gives the same batches in the same
    order, epoch after epoch, in any process, and :meth:`epoch_order` gives any epoch's order
    without replaying the ones before it (``seed=None`` draws a seed once, here: a fresh random
    order every pass, and still one that a resumed run can draw again).

    It says where it is, so a run on it resumes exactly (``fit(checkpoint_dir=...)``):
    ``state_dict()`` between batches gives the seed, the pass and how many of its batches went;
    after ``load_state_dict``, the next ``batches()`` continues that pass with its next batch.
    One pass at a time.

    >>> ds = WindowDataset(np.arange(20.0).reshape(10, 2), lookback=4, delay=0, step=2, target=1)
    >>> x, y = next(iter(ds)); x.shape, y[:2].tolist()
    ((6, 2, 2), [9.0, 11.0])
    """

    def __init__(self, data: np.ndarray, lookback: int, delay: int, start: int = 0,
                 end: int | None = None, step: int = 1, horizon: int = 1,
                 target: int | Sequence[int] = 1, batch_size: int = 128, shuffle: bool = False,
                 seed: int | None = None, normalizer: Normalizer | None = None):
        if data.ndim != 2:
            raise ShapeError(f"WindowDataset: expected data of shape (N, F), got {data.shape}")
        if step < 1 or horizon < 1 or batch_size < 1:
            raise ConfigError(f"WindowDataset: step, horizon and batch_size must be >= 1, got "
                              f"{step}, {horizon}, {batch_size}")
        if end is None:
            end = len(data) - delay - horizon + 1
        self.several = not isinstance(target, (int, np.integer))
        self.target_columns = [int(t) for t in target] if self.several else [int(target)]
        if not self.target_columns:
            raise ConfigError("WindowDataset: target is an empty list of columns")
        for column in self.target_columns:
            _check_target_column(data, column, "WindowDataset")
        _check_anchor_range(data, lookback, delay, horizon, start, end)
        self.data, self.target, self.normalizer = data, target, normalizer
        self.batch_size, self.shuffle, self.horizon = batch_size, shuffle, horizon
        self.anchors = np.arange(start + lookback, end)
        self.offsets = np.arange(-lookback, 0, step)
        self.delay = delay
        # seed=None still fixes a seed, drawn here, so that a run without one resumes exactly
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
        self._epoch = 0  # shuffled passes finished
        self._position = 0  # batches of the current pass handed out

    def __len__(self) -> int:
        return -(-len(self.anchors) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        """The next pass, in :meth:`epoch_order`."""
        return self.batches(self.shuffle)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The anchors of pass ``epoch`` (0-based) in the order its batches take them: row order,
        or with ``shuffle`` the permutation of ``default_rng([seed, epoch])``."""
        if not self.shuffle:
            return self.anchors
        return self._permutation(epoch)

    def batches(self, shuffle: bool = False) -> Iterator[Batch]:
        """One pass over all windows: in anchor order, or with ``shuffle`` in the next pass's
        permutation (the pass counter advances at the pass's end). A pass left unfinished (or
        put back by :meth:`load_state_dict`) continues with its next batch."""
        order = self._permutation(self._epoch) if shuffle else self.anchors
        return self._batches(order, shuffle)

    def rebatched(self, batch_size: int) -> WindowDataset:
        """The same windows (and shuffling) in batches of ``batch_size``."""
        if batch_size < 1:
            raise ConfigError(f"WindowDataset: batch_size must be >= 1, got {batch_size}")
        out = copy.copy(self)
        out.batch_size, out._epoch, out._position = int(batch_size), 0, 0
        return out

    def columns(self, columns: Sequence[int]) -> WindowDataset:
        """The same windows reading only ``columns`` of the data (a copy of them), the targets
        renumbered among them (each target must be one of them)."""
        cols = [int(c) for c in columns]
        missing = [t for t in self.target_columns if t not in cols]
        if missing:
            raise ConfigError(f"WindowDataset.columns: the target columns {missing} are not "
                              f"among {cols}")
        out = copy.copy(self)
        out.data = np.ascontiguousarray(np.asarray(self.data)[:, cols])
        out.target_columns = [cols.index(t) for t in self.target_columns]
        out.target = out.target_columns if self.several else out.target_columns[0]
        if self.normalizer is not None:
            out.normalizer = Normalizer(self.normalizer.mean[cols], self.normalizer.std[cols])
        out._epoch, out._position = 0, 0
        return out

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.anchors)

    def _batches(self, order: np.ndarray, shuffled: bool) -> Iterator[Batch]:
        while self._position * self.batch_size < len(order):
            i = self._position * self.batch_size
            self._position += 1
            yield self.window(order[i:i + self.batch_size])
        self._position = 0
        self._epoch += int(shuffled)

    def state_dict(self) -> dict:
        """Where the iteration is (see the class docstring); JSON values only."""
        return {"seed": self.seed, "epoch": self._epoch, "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``: the next ``batches()`` resumes that pass."""
        self.seed, self._epoch = int(state["seed"]), int(state["epoch"])
        self._position = int(state["position"])

    def window(self, anchors: np.ndarray) -> Batch:
        """The windows at ``anchors`` (B,): x (B, T, F) and y (B,), (B, horizon) or
        (B, horizon, C')."""
        x = self.data[anchors[:, None] + self.offsets]
        if self.normalizer is not None:
            x = self.normalizer.transform(x)
        return x.astype(np.float32), self.column(self.target_rows(anchors)).astype(np.float32)

    def target_rows(self, anchors: np.ndarray) -> np.ndarray:
        """(B,) anchors -> the rows of their targets, (B,) or (B, horizon) ((B, horizon) for
        several target columns)."""
        rows = anchors[:, None] + self.delay + np.arange(self.horizon)
        return rows[:, 0] if self.horizon == 1 and not self.several else rows

    def last_input_rows(self) -> np.ndarray:
        """(N,) the row of the last input step of every window, in anchor order."""
        return self.anchors + self.offsets[-1]

    def column(self, rows: np.ndarray) -> np.ndarray:
        """The target column at ``rows`` (any shape), normalized like the targets; for several
        target columns, rows.shape + (C',)."""
        cols = self.target_columns if self.several else self.target_columns[0]
        values = np.asarray(self.data[rows][..., cols], dtype=np.float64)
        if self.normalizer is None:
            return values
        return (values - self.normalizer.mean[cols]) / self.normalizer.std[cols]

    def targets(self) -> np.ndarray:
        """All targets in anchor order: (N,), (N, horizon) or (N, horizon, C'), float64."""
        return self.column(self.target_rows(self.anchors))


def split_windows(data: np.ndarray, borders: Sequence[int], lookback: int, horizon: int,
                  target: int | Sequence[int], delay: int = 0, step: int = 1,
                  batch_size: int = 128, seed: int | None = None,
                  normalizer: Normalizer | None = None) -> list[WindowDataset]:
    """Train, validation and test windows of the long-horizon protocol (Informer, DLinear,
    SegRNN): ``borders`` = (end of train, end of validation, end of test) rows. Every target row
    of a split lies inside it; validation and test windows start ``lookback`` rows before their
    border, so every row of the test split is a target once per horizon step and all
    ``end - start - delay - horizon + 1`` windows are scored (none dropped). Only the training
    windows are shuffled (see :class:`WindowDataset` for the order)."""
    b0, b1, b2 = (int(b) for b in borders)
    if not 0 < b0 < b1 < b2 <= len(data):
        raise ConfigError(f"split: the borders {b0}, {b1}, {b2} must increase and fit in the "
                          f"{len(data)} rows of the series")
    starts, ends = (0, b0 - lookback, b1 - lookback), (b0, b1, b2)
    names = ("training", "validation", "test")
    out = []
    for i, (start, end) in enumerate(zip(starts, ends)):
        rows = end - (0 if i == 0 else ends[i - 1])
        needed = delay + horizon + (lookback if i == 0 else 0)
        if rows < needed:
            reads = "lookback + delay + horizon" if i == 0 else \
                "delay + horizon (its windows read their lookback from the rows before it)"
            raise ConfigError(f"split: the {names[i]} part has {rows} rows, fewer than one window "
                              f"needs: {reads} = {needed}")
        out.append(WindowDataset(data, lookback, delay, start=max(start, 0),
                                 end=end - delay - horizon + 1, step=step, horizon=horizon,
                                 target=target, batch_size=batch_size, shuffle=i == 0, seed=seed,
                                 normalizer=normalizer))
    return out


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
    target column. Aligned with ``ds.targets()``."""
    last = ds.column(ds.last_input_rows())  # (N,) or (N, C')
    if ds.horizon == 1 and not ds.several:
        return last
    return np.repeat(last[:, None], ds.horizon, axis=1)


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
    return pred.reshape(len(pred), *ds.targets().shape[1:])


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
