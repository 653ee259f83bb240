"""A global seasonal forecaster in the spirit of Smyl's ES-RNN (M4 2018): windows in, H steps out.

ES-RNN normalises each series by an exponentially smoothed level and a seasonal profile, runs a
dilated LSTM stack on the normalised window and adds the network's output back in log space.
Here the same ideas act inside one window, so the layer is global (no per-series parameters)
and plugs into the windowed panel pipeline like SegRNN::

    window x (B, L, C) ──log (or standardise)──▶ z (N, L), N = B·C'
    ──level ℓ = mean of the last s values of z──▶ z - ℓ
    ──seasonal naive base: the last s values, repeated──▶ b (N, H)
    ──day segments: (N, L/s, s) ──Linear(s→d)+ReLU──▶ (N, L/s, d)
    ──DilatedRNN(cell, dilations) over the L/s segments (engine.scan, time-to-batch)──▶ h (N, d)
    ──Dropout, Linear(d→H·Q) (zeros at start), + Linear(L→H) skip on z - ℓ (zeros at start)──▶ r
    ──ŷ = exp(ℓ + b + r) (log) or σ·(ℓ + b + r) (level)──▶ forecast (B, H, C'[, Q])

Legend: B batch, L lookback, C input channels, C' target channels, N = B·C' series, s season
(segment length), d units, H horizon, Q quantiles. Before training both output layers give
zeros, so the untrained layer forecasts the seasonal naive forecast (the last season repeated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from .base import Layer, Shape
from .core import Dense, Dropout
from .forecasting import check_quantiles, target_channels
from .recurrent import GRU, LSTM, RNN, SimpleRNN
from .wrappers import DilatedRNN

SCALES = ("log", "level")


class ESRNN(Layer):
    """Seasonal dilated-RNN forecaster: windows (B, L, C) -> (B, H, C'), or (B, H, C', Q) with
    ``quantiles``.

    ``scale='log'`` (ES-RNN's multiplicative model; inputs must be positive, e.g. a series divided
    by its training mean): z = log x, and every value is read relative to the level
    ℓ = mean(z_{L-s+1..L}); the forecast is ŷ_t = exp(ℓ + z_{L-s+1+((t-1) mod s)} - ℓ + r_t), i.e.
    the seasonal naive forecast times exp(r_t). ``scale='level'`` (any real inputs, e.g.
    standardised ones): z = (x - ℓ) / σ with σ the window's standard deviation, ŷ = ℓ + σ·(...)
    — the additive model.

    The correction r (N, H·Q) = Dense(Dropout(h)) + Dense_skip(z - ℓ), where h is the last output of
    ``DilatedRNN(recurrent, dilations)`` run over the L/s segments of s steps, each embedded by
    Linear(s→d)+ReLU; dilations count segments (s=24: (1, 7) is a day and a week, ES-RNN's
    hourly (1, 4, 24, 168) hours at the resolution a day-segment allows). ``skip=False`` drops the
    linear path. Both output layers start at zero: the untrained layer is the seasonal naive.

    >>> layer = ESRNN(LSTM(32), horizon=48, season=24)
    >>> layer(torch.rand(8, 336, 1) + 0.5).shape
    torch.Size([8, 48, 1])
    """

    input_rank = 3

    def __init__(self, recurrent: RNN, horizon: int, season: int = 24,
                 dilations: Sequence[int] = (1, 7), targets: Sequence[int] | None = None,
                 scale: str = "log", skip: bool = True, dropout: float = 0.0,
                 quantiles: Sequence[float] | None = None, eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if type(recurrent) not in (SimpleRNN, LSTM, GRU):
            raise ConfigError(f"{self.name}: recurrent must be a SimpleRNN, LSTM or GRU layer, "
                              f"got {type(recurrent).__name__}")
        if int(horizon) < 1 or int(season) < 1:
            raise ConfigError(f"{self.name}: horizon and season must be >= 1, got {horizon}, "
                              f"{season}")
        if scale not in SCALES:
            raise ConfigError(f"{self.name}: scale must be one of {SCALES}, got {scale!r}")
        self.horizon, self.season, self.scale = int(horizon), int(season), scale
        self.targets, self.skip, self.eps = targets, bool(skip), float(eps)
        self.quantiles = check_quantiles(quantiles, self.name)
        self.outputs = len(self.quantiles or [0])
        self.units = recurrent.units
        self.embedding = Dense(self.units, activation="relu", name=f"{self.name}_embed")
        self.rnn = DilatedRNN(recurrent, dilations=dilations, name=f"{self.name}_rnn")
        self.dropout = Dropout(dropout, name=f"{self.name}_dropout")
        self.head = Dense(self.horizon * self.outputs, kernel_initializer="zeros",
                          name=f"{self.name}_head")
        self.linear = Dense(self.horizon * self.outputs, kernel_initializer="zeros",
                            name=f"{self.name}_skip") if self.skip else None

    def build(self, input_shape: Shape) -> None:
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[2] is None:
            raise ShapeError(f"{self.name} (ESRNN): expected windows (B, L, C) with known L and "
                             f"C, got shape {tuple(input_shape)}")
        steps, channels = int(input_shape[1]), int(input_shape[2])
        if steps % self.season:
            raise ConfigError(f"{self.name}: the lookback {steps} must be a multiple of the "
                              f"season {self.season} (the window is cut into whole seasons)")
        self.channel_ids = target_channels(self.targets, channels, self.name)
        segments = steps // self.season
        self.embedding.ensure_built((None, segments, self.season))
        self.rnn.ensure_built((None, segments, self.units))
        self.head.ensure_built((None, self.units))
        if self.linear is not None:
            self.linear.ensure_built((None, steps))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        out = (input_shape[0], self.horizon, len(self.channel_ids))
        return out if self.quantiles is None else (*out, self.outputs)

    def normalize(self, series: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """series (N, L) -> (z - ℓ (N, L), ℓ (N, 1), σ (N, 1)); statistics not differentiated."""
        if self.scale == "log":
            z = torch.log(series.clamp_min(self.eps))
            sigma = torch.ones_like(z[:, :1])
        else:
            sigma = torch.sqrt(series.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
            z = series / sigma
        level = z[:, -self.season:].mean(dim=1, keepdim=True).detach()  # (N, 1)
        return z - level, level, sigma

    def seasonal_base(self, zn: Tensor) -> Tensor:
        """(N, L) -> (N, H): the last season of the normalised window, repeated over H."""
        repeats = math.ceil(self.horizon / self.season)
        return zn[:, -self.season:].repeat(1, repeats)[:, :self.horizon]

    def correction(self, zn: Tensor) -> Tensor:
        """(N, L) -> r (N, H, Q): the network's correction to the seasonal naive forecast."""
        segments = self.embedding(zn.reshape(zn.shape[0], -1, self.season))  # (N, L/s, d)
        r = self.head(self.dropout(self.rnn(segments)))  # (N, H·Q)
        if self.linear is not None:
            r = r + self.linear(zn)
        return r.reshape(zn.shape[0], self.horizon, self.outputs)

    def forward(self, x: Tensor) -> Tensor:
        batch, steps, _ = x.shape
        ids = self.channel_ids
        series = x[:, :, ids].transpose(1, 2).reshape(-1, steps)  # (N, L)
        zn, level, sigma = self.normalize(series)
        y = (self.seasonal_base(zn) + level).unsqueeze(-1) + self.correction(zn)  # (N, H, Q)
        y = torch.exp(y) if self.scale == "log" else y * sigma.unsqueeze(-1)
        y = y.reshape(batch, len(ids), self.horizon, self.outputs).transpose(1, 2)  # (B, H, C', Q)
        return y[..., 0] if self.quantiles is None else y
