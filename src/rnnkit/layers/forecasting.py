"""Forecasters as layers: a window (B, L, C) in, a forecast (B, H, C') out.

DESIGN.md's "forecasting is the same engine with a head around it", as SegRNN (Lin et al. 2023)
does it::

    window (B, L, C) ──WindowNormalization: minus the last value per channel (or RevIN)──▶
    ──channels as series, weights shared──▶ (B·C', L) ──SegmentEmbedding──▶ (B·C', n, d)
    ──recurrent layer (engine.scan, any lecture cell)──▶ final state (B·C', d)
    ──ParallelDecoder: the state and m position (+channel) embeddings, one step each──▶
    (B·C', m·w) ──reshape, plus the last value──▶ forecast (B, H, C')

Legend: B batch, L lookback, C input channels, C' target channels (``targets``), H horizon,
w segment length, n = L/w input segments, m = ⌈H/w⌉ output segments, d units, Q quantiles.

Every forecaster here takes the window's level out first and puts it back on its output, and its
output layer starts at zero (``head_initializer="zeros"``), so before training it forecasts the
last value exactly and training starts from that baseline. With ``quantiles`` the output has a
last axis of Q values per step (train with ``losses.Pinball(quantiles)``). NLinear and DLinear
(Zeng et al. 2023) are here too: the linear baselines of the literature, trained like any model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from .base import Layer, Shape
from .core import Dense, Dropout
from .covariates import CovariateEncoder, check_covariates, pad_rows
from .recurrent import GRU, LSTM, RNN, SimpleRNN
from .wrappers import clone_layer

NORMALIZATIONS = ("last", "revin", "none")


def target_channels(targets: Sequence[int] | None, channels: int, where: str) -> list[int]:
    """The target channel indices (all C channels when None), checked against C."""
    if targets is None:
        return list(range(channels))
    ids = [int(t) for t in targets]
    bad = [t for t in ids if not 0 <= t < channels]
    if not ids or bad or len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: targets must be distinct channel indices in [0, {channels}) "
                          f"of the input's {channels} channels, got {list(targets)}")
    return ids


def check_quantiles(quantiles: Sequence[float] | None, where: str) -> list[float] | None:
    """Quantile levels, each strictly between 0 and 1, increasing; None for point forecasts."""
    if quantiles is None:
        return None
    levels = [float(q) for q in quantiles]
    if not levels or any(not 0.0 < q < 1.0 for q in levels) or levels != sorted(set(levels)):
        raise ConfigError(f"{where}: quantiles must be increasing levels strictly between 0 and "
                          f"1, got {list(quantiles)}")
    return levels


def _window_shape(layer: Layer, shape: Shape) -> tuple[int, int]:
    """(L, C) of a (B, L, C) input shape; both must be known."""
    if len(shape) != 3 or shape[1] is None or shape[2] is None:
        raise ShapeError(f"{layer.name} ({type(layer).__name__}): expected windows (B, L, C) "
                         f"with known L and C, got shape {tuple(shape)}")
    return int(shape[1]), int(shape[2])


class WindowNormalization(Layer):
    """Takes each window's level out, per channel, and puts it back on the forecast.

    ``mode='last'``: x' = x - x_L (NLinear, SegRNN), forecast = y' + x_L: a model whose output
    layer gives zeros forecasts the last value. ``'revin'`` (Kim et al. 2022):
    x' = (x - mean_L(x)) / std_L(x) [· γ + β with ``affine``], undone on the forecast.
    ``'none'``: the identity. The statistics are not differentiated through (as in both papers).

    ``layer(x)`` -> (x' (B, L, C), stats); ``layer.denormalize(y, stats, channels)`` for a
    forecast y (B, H, C') or (B, H, C', Q) of the input channels ``channels`` (C' indices).
    """

    input_rank = 3

    def __init__(self, mode: str = "last", affine: bool = False, eps: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        if mode not in NORMALIZATIONS:
            raise ConfigError(f"{self.name}: normalization must be one of {NORMALIZATIONS}, "
                              f"got {mode!r}")
        if affine and mode != "revin":
            raise ConfigError(f"{self.name}: affine=True is RevIN's; it needs mode='revin'")
        self.mode, self.affine, self.eps = mode, bool(affine), float(eps)

    def build(self, input_shape: Shape) -> None:
        _, channels = _window_shape(self, input_shape)
        if self.affine:
            self.weight = nn.Parameter(torch.ones(channels))  # γ (C,)
            self.bias = nn.Parameter(torch.zeros(channels))  # β (C,)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if self.mode == "none":
            return x, (x.new_zeros(x.shape[0], 1, x.shape[2]), x.new_ones(x.shape[0], 1, x.shape[2]))
        if self.mode == "last":
            shift = x[:, -1:, :].detach()  # (B, 1, C)
            return x - shift, (shift, torch.ones_like(shift))
        shift = x.mean(dim=1, keepdim=True).detach()
        scale = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        out = (x - shift) / scale
        if self.affine:
            out = out * self.weight + self.bias
        return out, (shift, scale)

    def denormalize(self, y: Tensor, stats: tuple[Tensor, Tensor],
                    channels: Sequence[int]) -> Tensor:
        """y (B, H, C'[, Q]) in the normalized scale -> the series' scale."""
        shift, scale = (s[:, :, list(channels)] for s in stats)  # (B, 1, C')
        if self.affine:
            ids = list(channels)
            y = (y - _trailing(self.bias[ids], y)) / _trailing(self.weight[ids] + self.eps**2, y)
        return y * _trailing(scale, y) + _trailing(shift, y)


def _trailing(t: Tensor, like: Tensor) -> Tensor:
    """``t`` with trailing axes of size 1 added until it has ``like``'s rank (quantile axis)."""
    return t.reshape(*t.shape, *([1] * (like.dim() - t.dim())))


class SegmentEmbedding(Layer):
    """Cuts series (N, L) into n = L/w segments of w steps and embeds each with
    Linear(w→d) + ReLU: (N, L) -> (N, n, d). So a recurrent layer runs n steps instead of L."""

    input_rank = 2

    def __init__(self, segment: int, units: int, **kwargs):
        super().__init__(**kwargs)
        if int(segment) < 1 or int(units) < 1:
            raise ConfigError(f"{self.name}: segment and units must be >= 1, got {segment}, "
                              f"{units}")
        self.segment, self.units = int(segment), int(units)
        self.dense = Dense(self.units, activation="relu", name=f"{self.name}_dense")

    def build(self, input_shape: Shape) -> None:
        steps = input_shape[-1]
        if steps is None or steps % self.segment:
            raise ConfigError(f"{self.name}: segment {self.segment} does not divide the lookback "
                              f"{steps}: the window is cut into whole segments; choose a lookback "
                              f"that is a multiple of {self.segment} or another segment length")
        self.dense.ensure_built((None, steps // self.segment, self.segment))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], input_shape[1] // self.segment, self.units)

    def forward(self, x: Tensor) -> Tensor:
        segments = x.reshape(x.shape[0], -1, self.segment)  # (N, n, w)
        return self.dense(segments)  # (N, n, d)


def _check_cell_layer(layer, where: str) -> None:
    """SegRNN's recurrent layer: one SimpleRNN/LSTM/GRU that runs forwards from a given state."""
    if type(layer) not in (SimpleRNN, LSTM, GRU):
        raise ConfigError(f"{where}: recurrent must be a SimpleRNN, LSTM or GRU layer (any cell "
                          f"of the lecture), got {type(layer).__name__}")
    unsupported = [name for name, bad in (
        ("return_sequences", layer.return_sequences), ("go_backwards", layer.go_backwards),
        ("stateful", layer.stateful), ("dilation", layer.dilation != 1),
        ("output_units", layer.output_units is not None), ("lags", tuple(layer.lags) != (1,)))
        if bad]
    if unsupported:
        raise ConfigError(f"{where}: the recurrent layer is run from a state one step at a time "
                          f"when decoding; it cannot have {', '.join(unsupported)}")


class _SegmentHead(Layer):
    """Dropout, then Linear(d → w·Q): one output segment of w steps (Q values each) per state."""

    def __init__(self, horizon: int, segment: int, units: int, outputs: int = 1,
                 dropout: float = 0.0, head_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if int(horizon) < 1:
            raise ConfigError(f"{self.name}: horizon must be >= 1, got {horizon}")
        self.horizon, self.segment, self.units = int(horizon), int(segment), int(units)
        self.outputs = int(outputs)
        self.segments = math.ceil(self.horizon / self.segment)  # m
        self.dropout = Dropout(dropout, name=f"{self.name}_dropout")
        self.dense = Dense(self.segment * self.outputs, kernel_initializer=head_initializer,
                           name=f"{self.name}_dense")

    def build(self, input_shape: Shape) -> None:
        self.dense.ensure_built((None, self.units))

    def project(self, h: Tensor) -> Tensor:
        """(N', d) states -> (N', w, Q) segments."""
        return self.dense(self.dropout(h)).reshape(h.shape[0], self.segment, self.outputs)


class ParallelDecoder(_SegmentHead):
    """SegRNN's parallel multi-step forecasting (PMF): the m = ⌈H/w⌉ output segments at once.

    Segment j of channel k starts from the encoder's final state and takes one recurrent step
    on e_j = [p_j, c_k] (learned position embedding p_j, channel embedding c_k; with
    ``channel_embedding=False`` e_j = p_j of width d); the head maps each new state to its w
    steps. ``decoder(state, recurrent, channel_ids, batch)`` -> (N, H, Q), N = B·C'.
    """

    def __init__(self, horizon: int, segment: int, units: int, channels: int,
                 channel_embedding: bool = True, outputs: int = 1, dropout: float = 0.0,
                 head_initializer="zeros", **kwargs):
        super().__init__(horizon, segment, units, outputs, dropout, head_initializer, **kwargs)
        self.channels, self.channel_embedding = int(channels), bool(channel_embedding)

    def build(self, input_shape: Shape) -> None:
        super().build(input_shape)
        position = self.units // 2 if self.channel_embedding else self.units
        self.position = nn.Parameter(torch.randn(self.segments, position))  # (m, d_p)
        if self.channel_embedding:
            self.channel = nn.Parameter(torch.randn(self.channels, self.units - position))

    def inputs(self, channel_ids: Sequence[int]) -> Tensor:
        """(C', m, d): the decoder input e_j of every target channel and output segment."""
        count = len(channel_ids)
        position = self.position.unsqueeze(0).expand(count, -1, -1)  # (C', m, d_p)
        if not self.channel_embedding:
            return position
        channel = self.channel[list(channel_ids)].unsqueeze(1).expand(-1, self.segments, -1)
        return torch.cat([position, channel], dim=-1)

    def forward(self, state: tuple[Tensor, ...], recurrent: RNN, channel_ids: Sequence[int],
                batch: int, extra: Tensor | None = None) -> Tensor:
        """``extra`` (B, m, d): covariates of each output segment, added to every channel's e_j."""
        self.ensure_built((None, self.units))
        m, d = self.segments, self.units
        e = self.inputs(channel_ids).to(state[0].dtype)  # (C', m, d)
        e = e.unsqueeze(0).expand(batch, -1, -1, -1)  # (B, C', m, d)
        if extra is not None:
            e = e + extra.unsqueeze(1)
        e = e.reshape(-1, 1, d)  # (N·m, 1, d)
        start = tuple(s.repeat_interleave(m, dim=0) for s in state)  # (N·m, d) each
        h = recurrent(e, initial_state=start)[0]  # (N·m, d): one step from the final state
        y = self.project(h)  # (N·m, w, Q)
        return y.reshape(-1, m * self.segment, self.outputs)[:, :self.horizon]  # (N, H, Q)


class RecursiveDecoder(_SegmentHead):
    """Recurrent multi-step forecasting (RMF): the head maps the state to the next segment, which
    is embedded and fed back for one more recurrent step, m = ⌈H/w⌉ times (with quantiles the
    median, or the middle level, is fed back). ``decoder(state, recurrent, embedding)`` ->
    (N, H, Q).
    """

    def forward(self, state: tuple[Tensor, ...], recurrent: RNN,
                embedding: SegmentEmbedding) -> Tensor:
        self.ensure_built((None, self.units))
        segments = []
        for j in range(self.segments):
            y = self.project(state[0])  # (N, w, Q)
            segments.append(y)
            if j + 1 < self.segments:
                fed = y[:, :, self.outputs // 2]  # (N, w): the point forecast
                _, *state = recurrent(embedding(fed), initial_state=tuple(state))
        return torch.cat(segments, dim=1)[:, :self.horizon]  # (N, H, Q)


DECODINGS = ("parallel", "recursive")


class SegRNN(Layer):
    """The segment-recurrent forecaster (Lin et al. 2023): windows (B, L, C) -> (B, H, C'),
    or (B, H, C', Q) with ``quantiles``.

    Each target channel is its own series (weights shared; the channel embedding tells them
    apart): the window minus its last value (``normalization``), cut into L/w segments embedded
    by Linear(w→d) + ReLU, is read by ``recurrent`` — any SimpleRNN, LSTM or GRU layer of d units,
    through the engine —, and decoded from the final state in parallel (``decoding='parallel'``,
    PMF) or segment after segment (``'recursive'``, RMF). ``dropout`` acts before the output
    layer, which starts at zero (the untrained layer forecasts the last value).

    >>> layer = SegRNN(GRU(64), horizon=48, segment=24)
    >>> layer(torch.randn(8, 96, 7)).shape
    torch.Size([8, 48, 7])
    """

    input_rank = 3

    def __init__(self, recurrent: RNN, horizon: int, segment: int = 24,
                 targets: Sequence[int] | None = None, decoding: str = "parallel",
                 channel_embedding: bool = True, dropout: float = 0.0,
                 normalization: str = "last", quantiles: Sequence[float] | None = None,
                 head_initializer="zeros", covariates: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        _check_cell_layer(recurrent, self.name)
        self.covariates = check_covariates(self, covariates)
        if self.covariates is not None and decoding != "parallel":
            raise ConfigError(f"{self.name}: covariates enter the parallel decoder's per-segment "
                              f"inputs; decoding={decoding!r} takes none")
        if decoding not in DECODINGS:
            raise ConfigError(f"{self.name}: decoding must be one of {DECODINGS}, got "
                              f"{decoding!r}")
        if int(segment) < 1 or int(horizon) < 1:
            raise ConfigError(f"{self.name}: segment and horizon must be >= 1, got {segment}, "
                              f"{horizon}")
        self.horizon, self.segment, self.decoding = int(horizon), int(segment), decoding
        self.targets, self.channel_embedding = targets, bool(channel_embedding)
        self.quantiles = check_quantiles(quantiles, self.name)
        self.units = recurrent.units
        self.dropout_rate, self.head_initializer = float(dropout), head_initializer
        self.normalization = WindowNormalization(normalization, name=f"{self.name}_norm")
        self.embedding = SegmentEmbedding(self.segment, self.units, name=f"{self.name}_embed")
        self.recurrent = clone_layer(recurrent, recurrent.name, return_state=True)

    def build(self, input_shape: Shape) -> None:
        cov = self.covariates
        if cov is not None:
            cov.check(input_shape)
            input_shape = (input_shape[0], cov.lookback, cov.channels)
        steps, channels = _window_shape(self, input_shape)
        self.channel_ids = target_channels(self.targets, channels, self.name)
        if cov is not None:  # the history's segments and the horizon's: covariates of w rows
            self.past = CovariateEncoder(cov, self.segment, self.units, name=f"{self.name}_past")
            self.ahead = CovariateEncoder(cov, self.segment, self.units,
                                           name=f"{self.name}_ahead")
        self.normalization.ensure_built(input_shape)
        self.embedding.ensure_built((None, steps))
        self.recurrent.ensure_built((None, steps // self.segment, self.units))
        outputs = len(self.quantiles or [0])
        name = f"{self.name}_decoder"
        if self.decoding == "parallel":
            self.decoder = ParallelDecoder(self.horizon, self.segment, self.units, channels,
                                           self.channel_embedding, outputs, self.dropout_rate,
                                           self.head_initializer, name=name)
        else:
            self.decoder = RecursiveDecoder(self.horizon, self.segment, self.units, outputs,
                                            self.dropout_rate, self.head_initializer, name=name)
        self.decoder.ensure_built((None, self.units))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        out = (input_shape[0], self.horizon, len(self.channel_ids))
        return out if self.quantiles is None else (*out, len(self.quantiles))

    def forward(self, x: Tensor) -> Tensor:
        future = static = series_ids = None
        if self.covariates is not None:
            x, future, static, series_ids = self.covariates.split(x)
        batch, steps, _ = x.shape
        ids = self.channel_ids
        xn, stats = self.normalization(x)  # (B, L, C)
        series = xn[:, :, ids].transpose(1, 2).reshape(-1, steps)  # (B·C', L)
        inputs = self.embedding(series)  # (B·C', n, d)
        extra = None
        if self.covariates is not None:
            n, m, w = steps // self.segment, self.decoder.segments, self.segment
            past = self.past(None if future is None else future[:, :steps], static, series_ids, n)
            inputs = inputs + past.repeat_interleave(len(ids), dim=0)  # (B·C', n, d)
            ahead = None if future is None else pad_rows(future[:, steps:], m * w)
            extra = self.ahead(ahead, static, series_ids, m)  # (B, m, d)
        _, *state = self.recurrent(inputs)  # final state, (B·C', d) each
        if self.decoding == "parallel":
            y = self.decoder(tuple(state), self.recurrent, ids, batch, extra)
        else:
            y = self.decoder(tuple(state), self.recurrent, self.embedding)
        y = y.reshape(batch, len(ids), self.horizon, -1).transpose(1, 2)  # (B, H, C', Q)
        if self.quantiles is None:
            y = y[..., 0]
        return self.normalization.denormalize(y, stats, ids)


class RecurrentForecaster(Layer):
    """Any recurrent layer as a forecaster: windows (B, L, C) minus their last value (or
    RevIN) -> ``recurrent`` (B, H') -> Dropout -> Dense(H·C'·Q) -> (B, H, C'[, Q]) plus the last
    value. The Dense starts at zero, so the untrained forecaster is the last-value forecast."""

    input_rank = 3

    def __init__(self, recurrent: Layer, horizon: int, targets: Sequence[int] | None = None,
                 normalization: str = "last", dropout: float = 0.0,
                 quantiles: Sequence[float] | None = None, head_initializer="zeros",
                 covariates: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.covariates = check_covariates(self, covariates)
        if not isinstance(recurrent, Layer):
            raise ConfigError(f"{self.name}: recurrent must be an rnnkit layer, got "
                              f"{type(recurrent).__name__}")
        if int(horizon) < 1:
            raise ConfigError(f"{self.name}: horizon must be >= 1, got {horizon}")
        self.horizon, self.targets = int(horizon), targets
        self.quantiles = check_quantiles(quantiles, self.name)
        self.recurrent = recurrent
        self.normalization = WindowNormalization(normalization, name=f"{self.name}_norm")
        self.dropout = Dropout(dropout, name=f"{self.name}_dropout")
        self.head_initializer = head_initializer

    def build(self, input_shape: Shape) -> None:
        cov = self.covariates
        if cov is not None:  # the recurrent layer reads history, future and static columns
            cov.check(input_shape)
            input_shape = (input_shape[0], cov.lookback, cov.channels)
        _, channels = _window_shape(self, input_shape)
        self.channel_ids = target_channels(self.targets, channels, self.name)
        self.normalization.ensure_built(input_shape)
        read = input_shape if cov is None else \
            (input_shape[0], cov.lookback, cov.channels + cov.future + cov.static)
        self.recurrent.ensure_built(tuple(read))
        features = self.recurrent.compute_output_shape(tuple(read))
        if not isinstance(features, tuple) or len(features) != 2:
            raise ConfigError(f"{self.name}: the recurrent layer must return its last output "
                              f"(B, H'), not {features} (return_sequences/return_state off)")
        outputs = self.horizon * len(self.channel_ids) * len(self.quantiles or [0])
        self.head = Dense(outputs, kernel_initializer=self.head_initializer,
                          name=f"{self.name}_head")
        self.head.ensure_built(features)
        if cov is not None:  # the horizon's covariates, statics and id, added to the head's input
            self.ahead = CovariateEncoder(cov, cov.horizon, features[1],
                                           name=f"{self.name}_ahead")

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        out = (input_shape[0], self.horizon, len(self.channel_ids))
        return out if self.quantiles is None else (*out, len(self.quantiles))

    def forward(self, x: Tensor) -> Tensor:
        if self.covariates is None:
            xn, stats = self.normalization(x)
            h = self.recurrent(xn)  # (B, H')
        else:
            x, future, static, ids = self.covariates.split(x)
            xn, stats = self.normalization(x)  # (B, L, C)
            steps = x.shape[1]
            read = [xn] + ([] if future is None else [future[:, :steps]]) \
                + ([] if static is None else [static.unsqueeze(1).expand(-1, steps, -1)])
            h = self.recurrent(torch.cat(read, dim=-1))  # (B, H')
            ahead = None if future is None else future[:, steps:]
            h = h + self.ahead(ahead, static, ids, 1)[:, 0]
        y = self.head(self.dropout(h))  # (B, H·C'·Q)
        y = y.reshape(x.shape[0], self.horizon, len(self.channel_ids), -1)  # (B, H, C', Q)
        if self.quantiles is None:
            y = y[..., 0]
        return self.normalization.denormalize(y, stats, self.channel_ids)


class NLinear(Layer):
    """NLinear (Zeng et al. 2023): the window minus its last value, one Linear(L→H) shared by
    the channels, plus the last value. (B, L, C) -> (B, H, C'). Starts at the last value."""

    input_rank = 3

    def __init__(self, horizon: int, targets: Sequence[int] | None = None,
                 kernel_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.horizon, self.targets = int(horizon), targets
        self.normalization = WindowNormalization("last", name=f"{self.name}_norm")
        self.linear = Dense(self.horizon, kernel_initializer=kernel_initializer,
                            name=f"{self.name}_linear")

    def build(self, input_shape: Shape) -> None:
        steps, channels = _window_shape(self, input_shape)
        self.channel_ids = target_channels(self.targets, channels, self.name)
        self.normalization.ensure_built(input_shape)
        self.linear.ensure_built((None, len(self.channel_ids), steps))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.horizon, len(self.channel_ids))

    def forward(self, x: Tensor) -> Tensor:
        xn, stats = self.normalization(x)
        y = self.linear(xn[:, :, self.channel_ids].transpose(1, 2)).transpose(1, 2)  # (B, H, C')
        return self.normalization.denormalize(y, stats, self.channel_ids)


def moving_average(x: Tensor, kernel: int) -> Tensor:
    """The trend of (B, L, C): a moving average over ``kernel`` steps, the series repeated at
    both ends by (kernel-1)//2 steps (DLinear's series decomposition)."""
    pad = (kernel - 1) // 2
    padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], dim=1)
    return F.avg_pool1d(padded.transpose(1, 2), kernel, stride=1).transpose(1, 2)


class DLinear(Layer):
    """DLinear (Zeng et al. 2023): the window split into trend (moving average over ``kernel``
    = 25 steps) and remainder, one Linear(L→H) for each, summed; shared by the channels, weights
    starting at 1/L as in the paper's code. (B, L, C) -> (B, H, C')."""

    input_rank = 3

    def __init__(self, horizon: int, targets: Sequence[int] | None = None, kernel: int = 25,
                 **kwargs):
        super().__init__(**kwargs)
        if int(kernel) < 1 or int(kernel) % 2 == 0:
            raise ConfigError(f"{self.name}: kernel must be an odd number >= 1, got {kernel}")
        self.horizon, self.targets, self.kernel = int(horizon), targets, int(kernel)
        self.seasonal = Dense(self.horizon, name=f"{self.name}_seasonal")
        self.trend = Dense(self.horizon, name=f"{self.name}_trend")

    def build(self, input_shape: Shape) -> None:
        steps, channels = _window_shape(self, input_shape)
        self.channel_ids = target_channels(self.targets, channels, self.name)
        for dense in (self.seasonal, self.trend):
            dense.ensure_built((None, len(self.channel_ids), steps))
            with torch.no_grad():
                dense.weight.fill_(1.0 / steps)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.horizon, len(self.channel_ids))

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, self.channel_ids]
        trend = moving_average(x, self.kernel)
        y = self.seasonal((x - trend).transpose(1, 2)) + self.trend(trend.transpose(1, 2))
        return y.transpose(1, 2)  # (B, H, C')


class SeasonalNaive(Layer):
    """The seasonal naive forecast as a layer: step h repeats the value ``season`` steps before
    it, from the window's last ``season`` values. (B, L, C) -> (B, H, C'); no weights, so it
    saves, exports and competes in ``--model auto`` like any forecaster. Windows that carry
    covariates (``covariates``) are read for their history only."""

    input_rank = 3

    def __init__(self, horizon: int, season: int, targets: Sequence[int] | None = None,
                 covariates: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(horizon) < 1 or int(season) < 1:
            raise ConfigError(f"{self.name}: horizon and season must be >= 1, got {horizon}, "
                              f"{season}")
        self.horizon, self.season, self.targets = int(horizon), int(season), targets
        self.covariates = check_covariates(self, covariates)

    def build(self, input_shape: Shape) -> None:
        if self.covariates is not None:
            self.covariates.check(input_shape)
            input_shape = (input_shape[0], self.covariates.lookback, self.covariates.channels)
        steps, channels = _window_shape(self, input_shape)
        if steps < self.season:
            raise ConfigError(f"{self.name}: the window of {steps} steps is shorter than the "
                              f"season {self.season}")
        self.channel_ids = target_channels(self.targets, channels, self.name)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.horizon, len(self.channel_ids))

    def forward(self, x: Tensor) -> Tensor:
        if self.covariates is not None:
            x = self.covariates.split(x)[0]
        last = x[:, -self.season:, self.channel_ids]  # (B, m, C')
        reps = math.ceil(self.horizon / self.season)
        return last.repeat(1, reps, 1)[:, :self.horizon]


class MeanForecast(Layer):
    """The mean of several forecasters' outputs (an equal-weight ensemble): each takes the
    same window; (B, ...) -> the mean of their (B, H, C'[, Q])."""

    def __init__(self, members: Sequence[Layer], **kwargs):
        super().__init__(**kwargs)
        if not members:
            raise ConfigError(f"{self.name}: give at least one forecaster")
        self.members = nn.ModuleList(members)

    def build(self, input_shape: Shape) -> None:
        for member in self.members:
            member.ensure_built(tuple(input_shape))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return self.members[0].compute_output_shape(input_shape)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)
