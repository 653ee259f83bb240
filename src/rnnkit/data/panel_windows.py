"""Lazy windows over a :class:`~rnnkit.data.panel.Panel`: index arithmetic, never a copied
(windows, L, C) array; the bookkeeping is O(S) and a batch is built when it is asked for.

A window of series s has its origin at row o of the series (the first forecast step): history
rows ``o - L .. o - 1``, targets rows ``o .. o + H - 1``. Its input is one tensor, laid out by
:class:`WindowLayout`, so the trainer, ONNX export and the Model API need nothing new:

- no future or static covariates and no id column: ``x`` (B, L, C), the scaled history;
- otherwise ``x`` (B, L + H, C + F + K + E): rows 0..L-1 of the first C columns hold the scaled
  history and rows L..L+H-1 of them are 0 (never the future targets); the F columns hold the
  known-future covariates over all L + H steps; the K columns repeat the series' statics on
  every row; E = 1 optional column holds the series index (a float, for an id embedding).

``y`` is (B, H, C') scaled targets. Legend: B batch, S series, L lookback, H horizon, C value
channels, C' targets, F future covariates, K static columns.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError
from .panel import Panel, SeriesScaler

Batch = tuple[np.ndarray, np.ndarray]
SPLITS = ("train", "val", "test", "predict")


@dataclass(frozen=True)
class WindowLayout:
    """How one window is packed into ``x`` (see the module docstring), so a model can slice it."""

    lookback: int
    horizon: int
    channels: int
    targets: tuple[int, ...]
    future: int = 0
    static: int = 0
    series_id: bool = False

    @property
    def packed(self) -> bool:
        """Whether x has the L + H rows and the extra columns."""
        return bool(self.future or self.static or self.series_id)

    @property
    def steps(self) -> int:
        return self.lookback + self.horizon if self.packed else self.lookback

    @property
    def width(self) -> int:
        return self.channels + self.future + self.static + int(self.series_id)

    @property
    def future_columns(self) -> slice:
        return slice(self.channels, self.channels + self.future)

    @property
    def static_columns(self) -> slice:
        start = self.channels + self.future
        return slice(start, start + self.static)

    @property
    def id_column(self) -> int | None:
        return self.width - 1 if self.series_id else None

    def to_config(self) -> dict:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_config(cls, config: dict) -> WindowLayout:
        return cls(**{**config, "targets": tuple(config["targets"])})


class PanelWindows:
    """The windows of one split of a panel, in batches of (x float32, y (B, H, C') float32);
    the protocol of :class:`~rnnkit.data.timeseries.WindowDataset` (``len`` = batches per pass,
    ``iter``, ``batches``, ``state_dict``/``load_state_dict``), so ``Model.fit`` and exact
    resuming work on it.

    ``borders`` (S, 3) from :func:`~rnnkit.data.panel.split_borders` (None for 'predict'); every
    series must make a window: keep those :func:`~rnnkit.data.panel.check_lengths` keeps.
    ``split``:

    - 'train': origins ``L .. borders[s, 0] - H`` (every target in the training part), drawn
      balanced across series so long ones don't dominate. A pass is k rounds
      (k = ``windows_per_series``, default the median number of training windows per series);
      round r visits every series once, in the order of ``default_rng([seed, pass, r])
      .permutation(S)``; batch b of the pass draws the origin of each of its visits from
      ``default_rng([seed, pass, b])``. So every batch follows from (seed, pass, b) alone:
      memory O(S + B), and ``state_dict()`` = {seed, epoch, position} resumes exactly.
    - 'val': every origin whose horizon lies inside the validation part, in (series, origin)
      order.
    - 'test': origins ``borders[s, 1] + j·H``: one per series when the test part is H steps,
      rolling forecasts every H steps when it is a multiple of H (other sizes raise).
    - 'predict': one window per series at its end (after the rows that
      :meth:`~rnnkit.data.panel.Panel.extend` appended, if any); y is NaN.

    ``scaler`` (a fitted :class:`~rnnkit.data.panel.SeriesScaler`) scales history and targets;
    known-future covariates and statics are used as they are.
    """

    def __init__(self, panel: Panel, borders: np.ndarray | None, lookback: int, horizon: int,
                 split: str = "train", scaler: SeriesScaler | None = None, batch_size: int = 128,
                 seed: int | None = None, windows_per_series: int | None = None,
                 series_id: bool = False):
        if split not in SPLITS:
            raise ConfigError(f"PanelWindows: split must be one of {SPLITS}, got {split!r}")
        if lookback < 1 or horizon < 1 or batch_size < 1:
            raise ConfigError(f"PanelWindows: lookback, horizon and batch_size must be >= 1, got "
                              f"{lookback}, {horizon}, {batch_size}")
        if borders is None and split != "predict":
            raise ConfigError(f"PanelWindows: the {split!r} split needs borders (split_borders)")
        self.panel = panel
        self.borders = np.asarray(borders if borders is not None else np.zeros((len(panel), 3)),
                                  dtype=np.int64)
        self.split, self.scaler, self.batch_size = split, scaler, batch_size
        self.layout = WindowLayout(
            lookback, horizon, panel.values.shape[1], tuple(panel.targets),
            0 if panel.future is None else panel.future.shape[1],
            0 if panel.static is None else panel.static.shape[1], series_id)
        self.first, self.count, self.stride = self._plan()
        self.shuffle = split == "train"
        if windows_per_series is not None and windows_per_series < 1:
            raise ConfigError(f"PanelWindows: windows_per_series must be >= 1, got {windows_per_series}")
        self.rounds = windows_per_series or max(1, int(np.median(self.count)))
        self.cumulative = np.concatenate([[0], np.cumsum(self.count)])  # (S + 1,) eval windows
        # seed=None still fixes a seed, drawn here, so that a run without one resumes exactly
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
        self._epoch = 0  # training passes finished
        self._position = 0  # batches of the current pass handed out
        self._orders: dict[tuple[int, int], np.ndarray] = {}  # (pass, round) -> series order

    # -- which windows ----------------------------------------------------------------------------
    def _plan(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(S,) first origin and number of windows per series, and the step between origins."""
        lookback, horizon = self.layout.lookback, self.layout.horizon
        b0, b1, b2 = self.borders.T
        if self.split == "train":
            first, count, stride, need = np.full(len(b0), lookback), b0 - horizon - lookback + 1, 1, \
                "a training part of at least lookback + horizon rows (keep what check_lengths keeps)"
        elif self.split == "val":
            first, count, stride, need = b0, b1 - b0 - horizon + 1, 1, "a validation part >= horizon"
        elif self.split == "test":
            size = b2 - b1
            if ((size % horizon) != 0).any():
                raise ConfigError(f"PanelWindows: the test part ({int(size.max())} steps) must be a "
                                  f"multiple of the horizon {horizon}")
            first, count, stride, need = b1, size // horizon, horizon, "a test part >= horizon"
        else:
            first, count, stride, need = self.panel.lengths() - self.panel.appended, \
                np.ones(len(b0), np.int64), 1, "appended future rows"
            if self.layout.future and self.panel.appended < horizon:
                raise ConfigError(f"PanelWindows: predicting with known-future covariates needs "
                                  f"{horizon} future rows per series; use Panel.extend(horizon, ...)")
        bad = (count < 1) | (first < lookback)
        if bad.any():
            i = int(np.argmax(bad))
            raise ConfigError(f"PanelWindows: series {self.panel.ids[i]!r} makes no {self.split} "
                              f"window with lookback {lookback} and horizon {horizon}: it needs {need}")
        return first.astype(np.int64), count.astype(np.int64), stride

    def __len__(self) -> int:
        return -(-self._windows_per_pass() // self.batch_size)

    def _windows_per_pass(self) -> int:
        return self.rounds * len(self.panel) if self.split == "train" else int(self.cumulative[-1])

    def __iter__(self) -> Iterator[Batch]:
        return self.batches(self.shuffle)

    def batches(self, shuffle: bool = False) -> Iterator[Batch]:
        """One pass: the next training pass (always drawn as the class docstring says; the
        ``shuffle`` of the WindowDataset protocol changes nothing), or all evaluation windows
        in order. An unfinished pass (or one put back by :meth:`load_state_dict`) continues
        with its next batch."""
        while self._position < len(self):
            b = self._position
            self._position += 1
            yield self.window(*self.batch_origins(self._epoch, b))
        self._position = 0
        self._epoch += int(self.split == "train")

    def batch_origins(self, epoch: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(B,) series and (B,) origins of batch ``b`` of pass ``epoch`` (eval splits: of every
        pass)."""
        visits = np.arange(b * self.batch_size, min((b + 1) * self.batch_size, self._windows_per_pass()))
        if self.split != "train":
            return self._listed(visits)
        rounds, slots = np.divmod(visits, len(self.panel))
        series = np.empty_like(visits)
        for r in np.unique(rounds):
            series[rounds == r] = self._order(epoch, int(r))[slots[rounds == r]]
        draws = np.random.default_rng([self.seed, epoch, b]).integers(0, self.count[series])
        return series, self.first[series] + draws

    def _listed(self, visits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) series and origins of the evaluation windows numbered ``visits`` (N,)."""
        series = np.searchsorted(self.cumulative, visits, side="right") - 1
        return series, self.first[series] + (visits - self.cumulative[series]) * self.stride

    def _order(self, epoch: int, r: int) -> np.ndarray:
        key = (epoch, r)
        if key not in self._orders:
            if len(self._orders) >= 2:  # a batch spans two rounds at most
                self._orders.pop(next(iter(self._orders)))
            self._orders[key] = np.random.default_rng([self.seed, epoch, r]).permutation(len(self.panel))
        return self._orders[key]

    def origins(self) -> np.ndarray:
        """(N, 2) (series index, row of the first forecast step in the series) of every window
        of an evaluation split, in order."""
        self._check_listable("origins")
        return np.stack(self._listed(np.arange(self._windows_per_pass())), axis=1)

    def targets(self) -> np.ndarray:
        """(N, H, C') float64 scaled targets of every window of an evaluation split, in order."""
        self._check_listable("targets")
        series, origins = self.origins().T
        return self._targets(series, origins)

    def _check_listable(self, what: str) -> None:
        if self.split == "train":
            raise ConfigError(f"PanelWindows.{what}: the training windows are drawn anew every pass; "
                              f"{what}() lists the windows of a 'val', 'test' or 'predict' split")

    # -- building a batch ----------------------------------------------------------------------------
    def window(self, series: np.ndarray, origins: np.ndarray) -> Batch:
        """The windows of ``series`` (B,) at ``origins`` (B,): x (B, steps, width) and
        y (B, H, C') float32."""
        lay, panel = self.layout, self.panel
        rows = panel.offsets[series] + origins  # (B,) first forecast row in the panel
        history = panel.values[rows[:, None] + np.arange(-lay.lookback, 0)]  # (B, L, C)
        if self.scaler is not None:
            history = self.scaler.transform(history, series)
        y = self._targets(series, origins) if self.split != "predict" else \
            np.full((len(series), lay.horizon, len(lay.targets)), np.nan)
        if not lay.packed:
            return history.astype(np.float32), y.astype(np.float32)
        x = np.zeros((len(series), lay.steps, lay.width), np.float32)
        x[:, :lay.lookback, :lay.channels] = history
        if lay.future:
            x[:, :, lay.future_columns] = panel.future[rows[:, None] + np.arange(-lay.lookback,
                                                                                 lay.horizon)]
        if lay.static:
            x[:, :, lay.static_columns] = panel.static[series][:, None, :]
        if lay.series_id:
            x[:, :, lay.id_column] = series[:, None]
        return x, y.astype(np.float32)

    def _targets(self, series: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """(B, H, C') float64 scaled targets."""
        rows = (self.panel.offsets[series] + origins)[:, None] + np.arange(self.layout.horizon)
        y = self.panel.values[rows][..., list(self.layout.targets)]
        return y if self.scaler is None else self.scaler.transform(y, series, self.layout.targets)

    # -- resuming -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Where the iteration is: the seed, the pass and how many of its batches went."""
        return {"seed": self.seed, "epoch": self._epoch, "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``: the next ``batches()`` resumes that pass."""
        self.seed, self._epoch = int(state["seed"]), int(state["epoch"])
        self._position, self._orders = int(state["position"]), {}

    def rebatched(self, batch_size: int) -> PanelWindows:
        """The same windows (and drawing) in batches of ``batch_size``, from the first pass."""
        if batch_size < 1:
            raise ConfigError(f"PanelWindows: batch_size must be >= 1, got {batch_size}")
        out = copy.copy(self)
        out.batch_size, out._epoch, out._position, out._orders = int(batch_size), 0, 0, {}
        return out
