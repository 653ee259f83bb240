"""Covariates beside a forecasting window: the layout the panel windows pack them in, and the
encoder that turns them into an additive input of the forecasters (``layers/forecasting.py``).

Legend: B batch, L lookback, H horizon, C value channels, F known-future covariates, K static
columns, d units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from .base import Layer, Shape
from .core import Dense


class Covariates:
    """How a window packs covariates beside its history (the panel windows' layout)::

        x (B, L + H, C + F + K + E): rows < L hold the history of the C channels (rows >= L of them
        are zero, never the future); F known-future columns over all L + H rows; K static columns
        (constant per window); E = 1 column with the series index when ``series`` > 0.

    ``layout``: {"lookback": L, "horizon": H, "channels": C, "future": F, "static": K,
    "series": number of series for an id embedding (0: none)}. Without covariates a window is
    the plain (B, L, C) history and no layout is given.
    """

    KEYS = ("lookback", "horizon", "channels", "future", "static", "series")

    def __init__(self, layout: dict, where: str):
        missing = [k for k in self.KEYS if k not in layout]
        if missing:
            raise ConfigError(f"{where}: covariates layout lacks {missing}; expected {self.KEYS}")
        self.lookback, self.horizon, self.channels, self.future, self.static, self.series = (
            int(layout[k]) for k in self.KEYS)
        self.where = where

    @property
    def width(self) -> int:
        return self.channels + self.future + self.static + (1 if self.series else 0)

    def check(self, shape: Shape) -> None:
        want = (self.lookback + self.horizon, self.width)
        if len(shape) != 3 or tuple(shape[1:]) != want:
            raise ShapeError(f"{self.where}: expected windows with covariates of shape (B, "
                             f"{want[0]}, {want[1]}) (lookback + horizon rows; channels, future, "
                             f"static and id columns), got {tuple(shape)}")

    def split(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """x -> history (B, L, C), future (B, L+H, F), static (B, K), series ids (B,) int64;
        the absent parts are None."""
        c, f, k = self.channels, self.future, self.static
        history = x[:, :self.lookback, :c]
        future = x[:, :, c:c + f] if f else None
        static = x[:, 0, c + f:c + f + k] if k else None
        ids = x[:, 0, c + f + k].round().long() if self.series else None
        return history, future, static, ids


def check_covariates(layer: Layer, covariates: dict | None) -> Covariates | None:
    return None if covariates is None else Covariates(covariates, f"{layer.name} "
                                                      f"({type(layer).__name__})")


class CovariateEncoder(Layer):
    """Known-future covariates over a stretch of rows, the static covariates and the series id
    embedding, as one additive input of width d: [future (B, n, w·F), static (B, n, K),
    id embedding (B, n, d_id)] -> Linear -> (B, n, d). Zero-initialised, so covariates start
    with no effect and training decides how much they count."""

    def __init__(self, spec: Covariates, rows: int, units: int, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.rows, self.units = spec, int(rows), int(units)
        width = self.rows * spec.future + spec.static + (units if spec.series else 0)
        self.ids = nn.Embedding(spec.series, units) if spec.series else None
        self.dense = Dense(self.units, kernel_initializer="zeros", name=f"{self.name}_dense")
        self.dense.ensure_built((None, width))

    def forward(self, future: Tensor | None, static: Tensor | None, ids: Tensor | None,
                segments: int) -> Tensor:
        """future (B, segments·rows, F) -> (B, segments, d)."""
        batch = (future if future is not None else static if static is not None else ids).shape[0]
        parts = []
        if future is not None:
            parts.append(future.reshape(batch, segments, self.rows * self.spec.future))
        if static is not None:
            parts.append(static.unsqueeze(1).expand(-1, segments, -1))
        if ids is not None:
            parts.append(self.ids(ids).unsqueeze(1).expand(-1, segments, -1))
        return self.dense(torch.cat(parts, dim=-1))


def pad_rows(t: Tensor, rows: int) -> Tensor:
    """(B, R, F) padded with zero rows (or cut) to (B, rows, F)."""
    if t.shape[1] >= rows:
        return t[:, :rows]
    return F.pad(t, (0, 0, 0, rows - t.shape[1]))
