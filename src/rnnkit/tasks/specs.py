"""Recurrent layers from short spec strings, the cells of the whole lecture: ``gru:32``.

Grammar: ``[WRAPPER-]CELL:UNITS[xN]`` or ``WRAPPER:UNITS[xN]`` (the wrapper around a GRU).

  CELL     simple (SimpleRNN, tanh), lstm, lstm-peephole, lstm-coupled, gru (reset_after=True, as
           Keras 3 and cuDNN), gru-lecture (reset_after=False, the lecture's formula)
  WRAPPER  bidirectional (merge 'concat', 2·UNITS features), stacked (N layers, default 2),
           dilated (N levels with dilations 1, 2, 4, ..., 2^(N-1), default N = 4: 1, 2, 4, 8),
           segrnn (forecasting only: the segment-recurrent forecaster SegRNN around the cell,
           UNITS = d, the segment embedding's width too), esrnn (forecasting only: the seasonal
           dilated-RNN forecaster ESRNN around the cell, season = the segment, dilations 1 and 7
           segments: a day and a week at hourly data with segment 24)

Examples: ``simple:32``, ``lstm-peephole:32``, ``bidirectional-gru:32``, ``stacked-lstm:32x2``,
``dilated-gru:32`` (= ``dilated-gru:32x4``), ``segrnn:512`` (= ``segrnn-gru:512``),
``segrnn-lstm-peephole:128``, ``esrnn-lstm:64``.

:func:`forecaster` turns any spec into a forecasting layer (``rnnkit.layers.forecasting``):
``segrnn`` specs into :class:`SegRNN`, ``esrnn`` specs into :class:`ESRNN`, the others into
:class:`RecurrentForecaster`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import ConfigError
from ..layers import (
    ESRNN,
    GRU,
    LSTM,
    Bidirectional,
    DilatedRNN,
    Layer,
    RecurrentForecaster,
    SegRNN,
    SimpleRNN,
    Stacked,
)

CELLS = {
    "simple": lambda units, **kw: SimpleRNN(units, **kw),
    "lstm": lambda units, **kw: LSTM(units, **kw),
    "lstm-peephole": lambda units, **kw: LSTM(units, peephole=True, **kw),
    "lstm-coupled": lambda units, **kw: LSTM(units, coupled=True, **kw),
    "gru": lambda units, **kw: GRU(units, **kw),
    "gru-lecture": lambda units, **kw: GRU(units, reset_after=False, **kw),
}
WRAPPERS = ("bidirectional", "stacked", "dilated", "segrnn", "esrnn")
FORECASTERS = ("segrnn", "esrnn")  # wrappers that are whole forecasters, cutting the window into segments
DEFAULT_N = {"stacked": 2, "dilated": 4}
_SPEC = re.compile(r"(?P<kind>[a-z-]+):(?P<units>\d+)(?:x(?P<n>\d+))?")
GRAMMAR = ("[bidirectional-|stacked-|dilated-|segrnn-|esrnn-]CELL:UNITS[xN] with CELL one of "
           f"{', '.join(CELLS)} (e.g. gru:32, stacked-lstm:32x2, dilated-gru:32, segrnn:512, "
           "esrnn-lstm:64)")


def parse(spec: str) -> tuple[str | None, str, int, int | None]:
    """``"stacked-lstm:32x2"`` -> (wrapper "stacked", cell "lstm", units 32, n 2)."""
    match = _SPEC.fullmatch(spec.strip().lower()) if isinstance(spec, str) else None
    if match is None:
        raise ConfigError(f"model spec {spec!r}: expected {GRAMMAR}")
    kind, units, n = match["kind"], int(match["units"]), match["n"]
    wrapper = next((w for w in WRAPPERS if kind == w or kind.startswith(w + "-")), None)
    cell = kind if wrapper is None else (kind[len(wrapper) + 1:] or "gru")
    if cell not in CELLS:
        raise ConfigError(f"model spec {spec!r}: unknown cell {cell!r}; expected {GRAMMAR}")
    if units < 1:
        raise ConfigError(f"model spec {spec!r}: units must be >= 1")
    if n is not None and wrapper not in DEFAULT_N:
        raise ConfigError(f"model spec {spec!r}: 'x{n}' (layers) needs the stacked- or dilated- "
                          "wrapper")
    count = int(n) if n is not None else DEFAULT_N.get(wrapper)
    if count is not None and count < 1:
        raise ConfigError(f"model spec {spec!r}: the layer count must be >= 1")
    return wrapper, cell, units, count


def recurrent_layer(spec: str, return_sequences: bool = False) -> Layer:
    """The layer a spec names; (B, T, I) -> (B, H') or (B, T, H') with ``return_sequences``
    (H' = 2·UNITS for bidirectional, UNITS otherwise)."""
    wrapper, cell, units, count = parse(spec)
    if wrapper in FORECASTERS:
        raise ConfigError(f"model spec {spec!r}: {wrapper} is a forecaster (--task forecast); "
                          "other tasks take a recurrent layer (e.g. gru:32)")
    make = CELLS[cell]
    # return_sequences goes to the constructors, so the layers' saved configs (get_config) hold it
    if wrapper is None:
        return make(units, return_sequences=return_sequences)
    if wrapper == "bidirectional":
        return Bidirectional(make(units, return_sequences=return_sequences))
    if wrapper == "stacked":
        return Stacked(make(units, return_sequences=return_sequences), depth=count)
    return DilatedRNN(make(units), dilations=tuple(2 ** i for i in range(count)),
                      return_sequences=return_sequences)


def output_features(spec: str) -> int:
    """H', the feature size of the layer's output."""
    wrapper, _, units, _ = parse(spec)
    return 2 * units if wrapper == "bidirectional" else units


def is_segrnn(spec: str) -> bool:
    return parse(spec)[0] == "segrnn"


def takes_covariates(spec: str) -> bool:
    """Whether the forecaster of ``spec`` reads known-future, static and series-id covariates
    (SegRNN and the plain recurrent forecasters; not ESRNN)."""
    return parse(spec)[0] != "esrnn"


def cuts_segments(spec: str) -> bool:
    """Whether the spec's forecaster cuts the window into whole segments (segrnn, esrnn)."""
    return parse(spec)[0] in FORECASTERS


def forecaster(spec: str, horizon: int, targets: Sequence[int] | None = None, *,
               segment: int = 24, dropout: float = 0.0, normalization: str = "last",
               decoding: str = "parallel", channel_embedding: bool = True,
               quantiles: Sequence[float] | None = None, backend: str = "auto",
               covariates: dict | None = None) -> Layer:
    """The forecasting layer a spec names: windows (B, L, C) -> (B, H, C'[, Q]).

    ``segrnn[-CELL]:d`` is SegRNN around that cell (``segment``, ``decoding``,
    ``channel_embedding``, ``dropout`` before its output layer); any other spec is its recurrent
    layer followed by a Dense output (``RecurrentForecaster``, ``dropout`` before the Dense).
    Both subtract the window's last value (``normalization``) and start at the last-value
    forecast. ``esrnn[-CELL]:d`` is ESRNN around that cell, season = ``segment``, dilations
    (1, 7) segments, ``scale='level'`` (the pipeline's standardised windows may be negative),
    or ES-RNN's multiplicative ``scale='log'`` with ``normalization='log'`` (positive windows:
    a panel's ``--scaling mean``), ``dropout`` before its output layer; it starts at
    the seasonal naive forecast. ``backend`` picks SegRNN's and ESRNN's kernel (``auto``: the
    registry's choice). ``covariates``: the layout of windows that carry known-future, static
    and series-id columns (:class:`rnnkit.layers.covariates.Covariates`); SegRNN and the plain
    recurrent forecasters read them, ESRNN refuses them."""
    wrapper, cell, units, _ = parse(spec)
    if wrapper == "segrnn":
        return SegRNN(CELLS[cell](units, backend=backend), horizon, segment, targets=targets,
                      decoding=decoding, channel_embedding=channel_embedding, dropout=dropout,
                      normalization=normalization, quantiles=quantiles, covariates=covariates)
    if wrapper == "esrnn":
        if covariates is not None:
            raise ConfigError(f"{spec}: ESRNN reads the series' own history only; segrnn and the "
                              "plain recurrent forecasters take covariates")
        return ESRNN(CELLS[cell](units, backend=backend), horizon, segment, targets=targets,
                     scale="log" if normalization == "log" else "level", dropout=dropout,
                     quantiles=quantiles)
    return RecurrentForecaster(recurrent_layer(spec), horizon, targets=targets,
                               normalization=normalization, dropout=dropout, quantiles=quantiles,
                               covariates=covariates)
