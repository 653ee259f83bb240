"""Point-forecast evaluation as the M4 competition does it: sMAPE, MASE, OWA and the benchmarks
they are measured against (Naive, seasonal Naive, Naive2).

Source: Makridakis, Spiliotis & Assimakopoulos, "The M4 Competition: 100,000 time series and 61
forecasting methods", International Journal of Forecasting 36 (2020) 54-74, and the organisers'
code in the repository Mcompetitions/M4-methods: ``Benchmarks and Evaluation.R`` (the statistical
benchmarks, Naive2 among them, and the evaluation) and ``ML_benchmarks.py``. Where the two scripts
differ the R one is followed, because the published Naive2 figures, and so every OWA, come from it
(``ML_benchmarks.py`` itself notes that its seasonality test leaves r_1 unsquared). The functions
here are our own code; the tests check them against hand computations and against the published
M4 Hourly Naive2 figures.

Legend: n in-sample length of one series, H horizon, S series of a panel, m the season (periods
per cycle: 24 for hourly data, 12 monthly, 4 quarterly, 1 for none).

Per series, with y the actual values and ŷ the forecast over the horizon (t = 1..H):

    sMAPE = 200/H · Σ_t |y_t - ŷ_t| / (|y_t| + |ŷ_t|)                              (percent)
    MASE  = (1/H · Σ_t |y_t - ŷ_t|) / (1/(n-m) · Σ_{t=m+1..n} |x_t - x_{t-m}|)      (x the in-sample)

and over a panel both are averaged over the series (M4 averages over series and steps, which is
the same for one horizon). OWA = ½ (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2), taken from the
panel averages, not per series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ConfigError, ShapeError

# the one-sided 90% point of the standard normal: M4's seasonality test
_TCRIT = 1.645
NAIVE2 = "Naive2"


def smape(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray | float:
    """Symmetric MAPE of each series, in percent: 200 · mean_t |y - ŷ| / (|y| + |ŷ|).

    ``actual`` and ``forecast``: (H,) or (S, H). Returns a float for (H,), an (S,) array for
    (S, H). A step where y and ŷ are both 0 counts as 0 (a perfect forecast; M4's R code gives
    NaN there, which no M4 series reaches since all its values are positive).
    """
    y, f = _pair(actual, forecast)
    denominator = np.abs(y) + np.abs(f)
    ratio = np.divide(np.abs(y - f), denominator, out=np.zeros_like(denominator),
                      where=denominator != 0)
    return _scalar_if_1d(200.0 * ratio.mean(axis=-1))


def mase(actual: np.ndarray, forecast: np.ndarray, insample: np.ndarray, season: int) -> float:
    """Mean absolute scaled error of one series: the forecast's MAE over the in-sample MAE of
    the seasonal naive forecast at lag ``season`` (M4's ``mase_cal``).

    ``actual``, ``forecast``: (H,); ``insample``: (n,). M4 scales Hourly at m = 24, Monthly 12,
    Quarterly 4, the others 1. A constant in-sample series has scale 0 and gives inf (or NaN
    for a perfect forecast), as in M4's code.

    A series with n <= ``season`` has no seasonal difference. M4's R code has no rule for it
    (its loop then runs backwards and returns NaN or garbage) and no M4 series is that short, so
    we fall back to lag 1 as GluonTS's ``calculate_seasonal_error`` does.
    """
    y, f = _pair(actual, forecast)
    if y.ndim != 1:
        raise ShapeError(f"mase: expected actual and forecast of shape (H,), got {y.shape}")
    return float(_scaled(np.mean(np.abs(y - f)), seasonal_scale(insample, season)))


def seasonal_scale(insample: np.ndarray, season: int) -> float:
    """MASE's denominator: mean_t |x_t - x_{t-m}| over t = m+1..n (lag 1 when n <= m, see
    :func:`mase`)."""
    x = _series(insample, "insample", at_least=2)
    lag = season if len(x) > _season(season) else 1
    return float(np.mean(np.abs(x[lag:] - x[:-lag])))


def _scaled(mae: np.ndarray | float, scale: np.ndarray | float) -> np.ndarray:
    """MAE / scale; a zero scale gives inf (NaN for a zero MAE), as M4's R code, silently."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(mae, scale)


def naive(insample: np.ndarray, h: int) -> np.ndarray:
    """The last value repeated: (h,)."""
    x = _series(insample, "insample")
    return np.full(_horizon(h), x[-1])


def seasonal_naive(insample: np.ndarray, h: int, season: int) -> np.ndarray:
    """The last full season repeated: ŷ_{n+j} = x_{n+j-m·ceil(j/m)}, (h,). Needs n >= m."""
    x = _series(insample, "insample")
    m = _season(season)
    if len(x) < m:
        raise ShapeError(f"seasonal_naive: the series has {len(x)} values, fewer than one "
                         f"season of {m}")
    return np.resize(x[len(x) - m:], _horizon(h))


def acf(insample: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations r_1..r_{max_lag} as R's ``acf`` computes them (M4's code calls
    it): r_k = Σ_{t=1..n-k} (x_t - x̄)(x_{t+k} - x̄) / Σ_t (x_t - x̄)², shape (max_lag,). NaN for a
    constant series."""
    x = _series(insample, "insample")
    centred = x - x.mean()
    denominator = float(centred @ centred)
    lags = range(1, max_lag + 1)
    numerators = np.array([centred[k:] @ centred[:-k] for k in lags])
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerators / denominator


def seasonality_test(insample: np.ndarray, season: int) -> bool:
    """M4's 90% autocorrelation test for seasonality at lag m (``SeasonalityTest`` in
    ``Benchmarks and Evaluation.R``):

        |r_m| > 1.645 · sqrt((1 + 2 · Σ_{k=1..m-1} r_k²) / n)

    with r_k from :func:`acf`. False (not seasonal) when m <= 1, when n < 3m (M4's rule for
    short series), when m exceeds the lags R's ``acf`` computes by default, min(floor(10·log10
    n), n - 1) (M4's code then reads NA and says not seasonal: an hourly series needs n >= 252),
    and for a constant series.
    """
    x = _series(insample, "insample")
    m, n = _season(season), len(x)
    if m <= 1 or n < 3 * m or min(math.floor(10 * math.log10(n)), n - 1) < m:
        return False
    r = acf(x, m)
    if not np.all(np.isfinite(r)):
        return False
    limit = _TCRIT * math.sqrt((1.0 + 2.0 * float(r[:-1] @ r[:-1])) / n)
    return bool(abs(r[-1]) > limit)


def seasonal_indices(insample: np.ndarray, season: int) -> np.ndarray:
    """Seasonal figure of a classical multiplicative decomposition, as R's
    ``decompose(type="multiplicative")`` computes it (M4's Naive2 uses it): (m,), mean 1.

    1. trend: the centred moving average, a 2×m MA for even m (weights ½, 1, ..., 1, ½ over
       m + 1 values, divided by m), a plain m-term MA for odd m; undefined at the ends;
    2. ratios x_t / trend_t;
    3. figure[i] = mean of the ratios at positions i, i + m, i + 2m, ... where defined;
    4. figure / mean(figure).

    Position 0 is the cycle position of the series' first value (R's ``ts`` starts the cycle
    there), so value t (0-based) has index ``figure[t % m]``. Needs n >= 2m, as ``decompose``.
    """
    x = _series(insample, "insample")
    m = _season(season)
    if m < 2 or len(x) < 2 * m:
        raise ShapeError(f"seasonal_indices: needs a season >= 2 and at least two seasons "
                         f"(n >= {2 * m}), got season {m} and n = {len(x)}")
    weights = np.full(m + 1, 1.0 / m) if m % 2 == 0 else np.full(m, 1.0 / m)
    if m % 2 == 0:
        weights[[0, -1]] = 0.5 / m
    half = len(weights) // 2
    trend = np.full(len(x), np.nan)
    trend[half:len(x) - half] = np.convolve(x, weights, mode="valid")
    ratios = x / trend
    padded = np.resize(np.nan, -(-len(x) // m) * m)
    padded[:len(x)] = ratios
    figure = np.nanmean(padded.reshape(-1, m), axis=0)
    return figure / figure.mean()


def naive2(insample: np.ndarray, h: int, season: int) -> np.ndarray:
    """M4's Naive2 benchmark: the naive forecast of the seasonally adjusted series,
    reseasonalised, (h,). When :func:`seasonality_test` says the series is seasonal at
    ``season``: s = :func:`seasonal_indices`, adjusted x_t / s[t % m], forecast
    ŷ_{n+j} = (x_n / s[(n-1) % m]) · s[(n+j-1) % m] for j = 1..h. Otherwise the plain naive
    forecast."""
    x = _series(insample, "insample")
    if not seasonality_test(x, season):
        return naive(x, h)
    s = seasonal_indices(x, season)
    n = len(x)
    level = x[-1] / s[(n - 1) % season]
    return level * s[(n + np.arange(_horizon(h))) % season]


def owa(smape_model: float, mase_model: float, smape_naive2: float, mase_naive2: float) -> float:
    """Overall weighted average: ½ (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2), from panel
    averages as M4 computes it (1 for Naive2 itself, below 1 is better)."""
    return 0.5 * (smape_model / smape_naive2 + mase_model / mase_naive2)


def panel_scores(actual: np.ndarray, forecasts: Mapping[str, np.ndarray],
                 insample: Sequence[np.ndarray], season: int,
                 ids: Sequence[str] | None = None) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Scores every forecast of a panel of S series of any lengths, as M4 does, with Naive2
    always among them.

    ``actual``: (S, H); ``forecasts``: name -> (S, H); ``insample``: S 1-d arrays (the
    history of each series, lengths free); ``season``: m of MASE and of Naive2's test. ``ids``:
    S names of the series (default "0".."S-1").

    Returns ``(rows, summary)``. ``rows``: one dict per series and forecast, Naive2 first,
    {"id", "model", "smape", "mase", "mae", "mse"}. ``summary``: {name: {"smape", "mase",
    "owa", "mae", "mse"}}, each the mean over the series, OWA from the means of sMAPE and MASE
    against Naive2's.
    """
    y = np.asarray(actual, dtype=np.float64)
    if y.ndim != 2:
        raise ShapeError(f"panel_scores: expected actual of shape (S, H), got {y.shape}")
    histories, names = _panel_inputs(y, forecasts, insample, ids)
    scale = np.array([seasonal_scale(x, season) for x in histories])  # (S,)
    predictions = {NAIVE2: np.stack([naive2(x, y.shape[1], season) for x in histories])}
    predictions.update({k: _panel_forecast(k, v, y.shape) for k, v in forecasts.items()})
    rows, summary = [], {}
    for model, f in predictions.items():
        error = y - f  # (S, H)
        per_series = {"smape": smape(y, f), "mase": _scaled(np.abs(error).mean(axis=1), scale),
                      "mae": np.abs(error).mean(axis=1), "mse": (error ** 2).mean(axis=1)}
        rows += [{"id": name, "model": model, **{k: float(v[i]) for k, v in per_series.items()}}
                 for i, name in enumerate(names)]
        summary[model] = {k: float(v.mean()) for k, v in per_series.items()}
    base = summary[NAIVE2]
    for scores in summary.values():
        scores["owa"] = owa(scores["smape"], scores["mase"], base["smape"], base["mase"])
    return rows, summary


def _panel_inputs(y: np.ndarray, forecasts: Mapping[str, np.ndarray],
                  insample: Sequence[np.ndarray], ids: Sequence[str] | None
                  ) -> tuple[list[np.ndarray], list[str]]:
    """The checked histories and series names of :func:`panel_scores`."""
    if NAIVE2 in forecasts:
        raise ConfigError(f"panel_scores: {NAIVE2!r} is computed here (the reference of OWA); "
                          "give your forecast another name")
    if len(insample) != y.shape[0]:
        raise ShapeError(f"panel_scores: {y.shape[0]} series in actual but {len(insample)} "
                         "in-sample series")
    names = [str(i) for i in range(y.shape[0])] if ids is None else [str(i) for i in ids]
    if len(names) != y.shape[0]:
        raise ShapeError(f"panel_scores: {len(names)} ids for {y.shape[0]} series")
    histories = [_series(x, f"insample of series {name}") for x, name in zip(insample, names)]
    return histories, names


def _panel_forecast(name: str, forecast: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    f = np.asarray(forecast, dtype=np.float64)
    if f.shape != shape:
        raise ShapeError(f"panel_scores: forecast {name!r} has shape {f.shape}, actual has "
                         f"{shape}")
    return f


def _pair(actual: np.ndarray, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if y.shape != f.shape or y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ShapeError(f"expected actual and forecast of one shape (H,) or (S, H) with H >= 1, "
                         f"got {y.shape} and {f.shape}")
    return y, f


def _series(x: np.ndarray, what: str, at_least: int = 1) -> np.ndarray:
    series = np.asarray(x, dtype=np.float64)
    if series.ndim != 1 or len(series) < at_least:
        raise ShapeError(f"{what}: expected a 1-d series of at least {at_least} values, got "
                         f"shape {series.shape}")
    return series


def _season(season: int) -> int:
    if isinstance(season, bool) or not isinstance(season, (int, np.integer)) or season < 1:
        raise ConfigError(f"season must be an integer >= 1, got {season!r}")
    return int(season)


def _horizon(h: int) -> int:
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
        raise ConfigError(f"the horizon h must be an integer >= 1, got {h!r}")
    return int(h)


def _scalar_if_1d(values: np.ndarray) -> np.ndarray | float:
    return float(values) if values.ndim == 0 else values
