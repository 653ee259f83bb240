"""rnnkit.data.evaluation against numbers computed by hand (or with fractions, independently of
the module), and against the M4 Hourly figures the organisers published (when ../shared/data/m4
holds the competition's files; RNNKIT_SHARED_DATA points elsewhere)."""


import numpy as np
import pytest

from helpers import SHARED_DATA
from rnnkit.data.evaluation import (
    acf,
    mase,
    naive,
    naive2,
    owa,
    panel_scores,
    seasonal_indices,
    seasonal_naive,
    seasonality_test,
    smape,
)
from rnnkit.datasets import m4
from rnnkit.errors import ConfigError, ShapeError

SHARED = SHARED_DATA

# x = [2, 3, 7] four times, then [3, 4, 9]: seasonal at m = 3 (r_3 = 0.72636 > 0.52061)
SEASONAL = np.array([2, 3, 7] * 4 + [3, 4, 9], dtype=float)


def test_smape_per_series_in_percent():
    # 200/2 * (10/210 + 20/380) = 100 * (1/21 + 1/19)
    assert smape(np.array([100.0, 200.0]), np.array([110.0, 180.0])) == pytest.approx(
        10.025062656641603, rel=1e-12)
    rows = smape(np.array([[100.0, 200.0], [1.0, 1.0]]), np.array([[110.0, 180.0], [3.0, 1.0]]))
    np.testing.assert_allclose(rows, [10.025062656641603, 50.0], rtol=1e-12)  # 100 * (2/4 + 0)
    assert smape(np.array([0.0, 4.0]), np.array([0.0, 4.0])) == 0.0  # 0/0 counts as exact
    assert smape(np.array([1.0]), np.array([-1.0])) == 200.0  # the upper bound


def test_mase_scales_by_the_in_sample_seasonal_naive_error():
    insample = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 6.0])
    actual, forecast = np.array([7.0, 8.0]), np.array([6.0, 11.0])  # MAE 2
    # lag 2: |2-1|, |5-3|, |4-2|, |6-5| -> 1.5; lag 1: 2, 1, 3, 1, 2 -> 1.8
    assert mase(actual, forecast, insample, 2) == pytest.approx(2 / 1.5, rel=1e-12)
    assert mase(actual, forecast, insample, 1) == pytest.approx(2 / 1.8, rel=1e-12)
    # n <= m: no seasonal difference; falls back to lag 1 (|3 - 1| = 2)
    assert mase(actual, forecast, np.array([1.0, 3.0]), 4) == pytest.approx(1.0, rel=1e-12)
    # a constant history has scale 0: inf, or NaN for a perfect forecast (as M4's R code)
    assert mase(actual, forecast, np.full(5, 3.0), 1) == np.inf
    assert np.isnan(mase(actual, actual, np.full(5, 3.0), 1))
    with pytest.raises(ShapeError, match="at least 2 values"):
        mase(actual, forecast, np.array([1.0]), 1)


def test_naive_and_seasonal_naive():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_array_equal(naive(x, 3), [5.0, 5.0, 5.0])
    np.testing.assert_array_equal(seasonal_naive(x, 5, 2), [4.0, 5.0, 4.0, 5.0, 4.0])
    np.testing.assert_array_equal(seasonal_naive(x, 2, 1), [5.0, 5.0])
    with pytest.raises(ShapeError, match="fewer than one season of 6"):
        seasonal_naive(x, 2, 6)
    with pytest.raises(ConfigError, match="horizon h must be an integer >= 1, got 0"):
        naive(x, 0)


def test_acf_is_r_acf():
    # R: acf(1:4, plot=FALSE) gives 1.00 0.25 -0.30 -0.45
    np.testing.assert_allclose(acf(np.array([1.0, 2.0, 3.0, 4.0]), 3), [0.25, -0.30, -0.45],
                               rtol=1e-12)


def test_seasonality_test_hand_cases():
    # [1, 2, 6] x 4: r = (-11/28, -27/56, 3/4), limit 1.645 sqrt((1 + 2 (r1² + r2²)) / 12) = 0.63242
    assert seasonality_test(np.array([1.0, 2.0, 6.0] * 4), 3)
    # x 3: r_3 = 2/3 under the limit 0.71675 (too few values for the lag-1/2 correlations)
    assert not seasonality_test(np.array([1.0, 2.0, 6.0] * 3), 3)
    # alternating: r_2 = 2/3, but r_1 = -5/6 lifts the limit to 1.03798
    assert not seasonality_test(np.array([1.0, 3.0] * 3), 2)
    assert seasonality_test(SEASONAL, 3)


def test_seasonality_test_rules_for_short_and_degenerate_series():
    periodic = np.tile(np.sin(2 * np.pi * np.arange(24) / 24) + 2, 11)
    assert not seasonality_test(np.array([1.0, 2.0, 6.0] * 2 + [1.0, 2.0]), 3)  # n = 8 < 3m
    assert not seasonality_test(periodic[:240], 24)  # R's acf stops at lag floor(10 log10 240) = 23
    assert seasonality_test(periodic[:252], 24)  # floor(10 log10 252) = 24
    assert not seasonality_test(np.full(30, 5.0), 3)  # constant: r undefined
    assert not seasonality_test(SEASONAL, 1)


def test_seasonal_indices_even_and_odd_season():
    # m = 2: trend (¼, ½, ¼) MA; ratios 3/2.25, 2/3.25, 6/4.25, 3/5.25; figure normalised to mean 1
    np.testing.assert_allclose(seasonal_indices(np.array([1.0, 3.0, 2.0, 6.0, 3.0, 9.0]), 2),
                               [1377 / 2281, 3185 / 2281], rtol=1e-12)
    # m = 3: MA3 trend 3, 10/3, 4, 6; ratios by position: {1/2}, {2/3, 2/3}, {9/5} -> / (89/90)
    np.testing.assert_allclose(seasonal_indices(np.array([1.0, 2.0, 6.0, 2.0, 4.0, 12.0]), 3),
                               [45 / 89, 60 / 89, 162 / 89], rtol=1e-12)
    np.testing.assert_allclose(seasonal_indices(SEASONAL, 3),
                               [780 / 1457, 1092 / 1457, 2499 / 1457], rtol=1e-12)
    with pytest.raises(ShapeError, match="at least two seasons"):
        seasonal_indices(np.arange(1.0, 6.0), 3)


def test_naive2_reseasonalises_the_naive_forecast_of_the_adjusted_series():
    # level 9 / (2499/1457); steps at positions 0, 1, 2, 0 of the cycle
    np.testing.assert_allclose(naive2(SEASONAL, 4, 3), [2340 / 833, 468 / 119, 9.0, 2340 / 833],
                               rtol=1e-12)
    # not seasonal (r_3 = 0.45930 < 0.50479): the plain naive forecast
    not_seasonal = np.array([1.0, 2.0, 6.0] * 3 + [2.0, 4.0, 12.0])
    np.testing.assert_array_equal(naive2(not_seasonal, 2, 3), [12.0, 12.0])


def test_owa_from_panel_averages():
    assert owa(10.0, 1.0, 20.0, 2.0) == 0.5
    # ES-RNN on M4 Hourly: sMAPE 9.328, MASE 0.893 against Naive2's 18.383, 2.395 -> OWA 0.440
    assert round(owa(9.328, 0.893, 18.383, 2.395), 3) == 0.440


def test_panel_scores_on_series_of_different_lengths():
    insample = [np.array([1.0, 2.0, 3.0]), np.array([10.0, 8.0, 12.0, 10.0])]
    actual = np.array([[4.0, 5.0], [10.0, 12.0]])
    model = np.array([[4.0, 4.0], [11.0, 12.0]])
    rows, summary = panel_scores(actual, {"model": model}, insample, season=1, ids=["A", "B"])
    # scales (lag 1): A 1, B 8/3; Naive2 = naive at m = 1: A [3, 3], B [10, 10]
    expected_rows = [
        ("A", "Naive2", 100 * (1 / 7 + 2 / 8), 1.5, 1.5, 2.5),
        ("B", "Naive2", 100 * (2 / 22), 0.375, 1.0, 2.0),
        ("A", "model", 100 / 9, 0.5, 0.5, 0.5),
        ("B", "model", 100 / 21, 0.1875, 0.5, 0.5),
    ]
    assert [(r["id"], r["model"]) for r in rows] == [e[:2] for e in expected_rows]
    for row, (_, _, s, ms, ma, mse) in zip(rows, expected_rows):
        assert (row["smape"], row["mase"], row["mae"], row["mse"]) == pytest.approx(
            (s, ms, ma, mse), rel=1e-12)
    assert summary["Naive2"] == pytest.approx(
        {"smape": 7450 / 308, "mase": 0.9375, "mae": 1.25, "mse": 2.25, "owa": 1.0}, rel=1e-12)
    # OWA = ½ ((500/63) / (7450/308) + 0.34375 / 0.9375)
    assert summary["model"] == pytest.approx(
        {"smape": 500 / 63, "mase": 0.34375, "mae": 0.5, "mse": 0.5, "owa": 0.3473900}, rel=1e-6)


def test_panel_scores_rejects_bad_input():
    insample = [np.arange(1.0, 5.0)] * 2
    actual = np.ones((2, 3))
    with pytest.raises(ConfigError, match="'Naive2' is computed here"):
        panel_scores(actual, {"Naive2": actual}, insample, 1)
    with pytest.raises(ShapeError, match=r"forecast 'm' has shape \(2, 2\), actual has \(2, 3\)"):
        panel_scores(actual, {"m": np.ones((2, 2))}, insample, 1)
    with pytest.raises(ShapeError, match="2 series in actual but 1 in-sample"):
        panel_scores(actual, {}, insample[:1], 1)
    with pytest.raises(ShapeError, match="insample of series b"):
        panel_scores(actual, {}, [insample[0], np.ones((2, 2))], 1, ids=["a", "b"])
    with pytest.raises(ConfigError, match="season must be an integer >= 1, got 0"):
        panel_scores(actual, {}, insample, 0)


def test_m4_hourly_benchmarks_reproduce_the_published_figures():
    folder = SHARED / "m4"
    if not (folder / "Hourly-train.csv").exists():
        pytest.skip(f"real data absent: {folder}/Hourly-train.csv")
    data = m4.load(folder, "Hourly")
    h = data.horizon
    forecasts = {"Naive": np.stack([naive(x, h) for x in data.train]),
                 "sNaive": np.stack([seasonal_naive(x, h, data.season) for x in data.train])}
    _, summary = panel_scores(data.test, forecasts, data.train, data.season, data.ids)
    # Evaluation and Ranks.xlsx (M4-methods), sheet Point Forecasts-Frequency, column Hourly. Its
    # OWA is computed from the sMAPE and MASE rounded to 3 decimals, ours from the unrounded means
    published = {"Naive2": (18.383, 2.395, 1.0), "Naive": (43.003, 11.608, 3.59302),
                 "sNaive": (13.912, 1.193, 0.62745)}
    for name, (smape_, mase_, owa_) in published.items():
        got = summary[name]
        assert (round(got["smape"], 3), round(got["mase"], 3)) == (smape_, mase_)
        assert got["owa"] == pytest.approx(owa_, abs=2e-4)
