"""Panels of many series in one long table: parsing, calendar, splits, scaling, lazy windows."""

import json

import numpy as np
import pandas as pd
import pytest

from rnnkit.data import (
    PanelWindows,
    SeriesScaler,
    WindowLayout,
    calendar_features,
    check_lengths,
    read_long,
    split_borders,
)
from rnnkit.errors import ConfigError, DataFormatError


def long_table(lengths=(6, 4, 5), starts=(0, 3, 1)):
    """Series k has y = 100 k + t at integer steps t = start .. start + length - 1."""
    rows = [(f"s{k}", t, 100.0 * k + t) for k, (n, s) in enumerate(zip(lengths, starts))
            for t in range(s, s + n)]
    return pd.DataFrame(rows, columns=["unique_id", "ds", "y"])


def write_csv(tmp_path, frame, name="panel.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


# -- parsing ------------------------------------------------------------------------------------------

def test_series_of_different_lengths_and_starts_are_stored_concatenated():
    frame = long_table().sort_values(["ds", "unique_id"])  # interleaved series are fine
    panel = read_long(frame)
    assert panel.ids == ["s0", "s2", "s1"]  # in order of first appearance: s2 starts before s1
    assert panel.offsets.tolist() == [0, 6, 11, 15]
    assert panel.lengths().tolist() == [6, 5, 4] and panel.length(2) == 4
    assert panel.times[panel.series(2)].tolist() == [3, 4, 5, 6]
    assert panel.values[panel.series(1), 0].tolist() == [201.0, 202.0, 203.0, 204.0, 205.0]
    assert panel.freq == 1 and panel.times.dtype == np.int64 and panel.columns == ["y"]


def test_ids_keep_first_appearance_order_and_sort_sorts_them():
    frame = long_table()
    frame["unique_id"] = frame["unique_id"].map({"s0": "b", "s1": "c", "s2": "a"})
    assert read_long(frame).ids == ["b", "c", "a"]
    assert read_long(frame, sort=True).ids == ["a", "b", "c"]


def test_timestamps_are_parsed_and_the_step_inferred():
    frame = pd.DataFrame({"unique_id": ["a"] * 3 + ["b"] * 2,
                          "ds": ["2021-01-01 00:00", "2021-01-01 01:00", "2021-01-01 02:00",
                                 "2021-01-01 05:00", "2021-01-01 06:00"],
                          "y": [1.0, 2, 3, 4, 5]})
    panel = read_long(frame)
    assert panel.times.dtype == np.dtype("datetime64[ns]")
    assert panel.times[3] == np.datetime64("2021-01-01T05:00")
    assert panel.freq == np.timedelta64(1, "h")


def test_several_targets_and_past_covariates_make_the_channels():
    frame = long_table()
    frame["y2"], frame["p"] = -frame["y"], 1.0
    panel = read_long(frame, target=["y", "y2"], past_covariates=["p"])
    assert panel.columns == ["y", "y2", "p"] and panel.targets == [0, 1]
    assert panel.values[0].tolist() == [0.0, -0.0, 1.0]


def test_a_gap_names_the_series_the_time_and_the_line(tmp_path):
    frame = long_table().drop(index=8)  # s1 loses t = 5; t = 6 comes on line 10 of the file
    with pytest.raises(DataFormatError, match=r"line 10: series 's1': 1 step\(s\) missing between "
                                              r"ds 4 and 6.*--fill"):
        read_long(write_csv(tmp_path, frame))


@pytest.mark.parametrize("fill, expected", [("ffill", [103.0, 104.0, 104.0, 104.0, 107.0]),
                                            ("zero", [103.0, 104.0, 0.0, 0.0, 107.0]),
                                            ("interpolate", [103.0, 104.0, 105.0, 106.0, 107.0])])
def test_fill_inserts_and_fills_the_missing_rows(fill, expected):
    frame = long_table(lengths=(6, 5, 5)).drop(index=[8, 9])  # s1 keeps t = 3, 4, 7
    frame["f"] = frame["y"] * 10
    panel = read_long(frame, fill=fill, future_covariates=["f"])
    rows = panel.series(1)
    assert panel.times[rows].tolist() == [3, 4, 5, 6, 7]
    assert panel.values[rows, 0].tolist() == expected
    assert panel.future[rows, 0].tolist() == [10 * v for v in expected]
    assert panel.offsets.tolist() == [0, 6, 11, 16]


def test_a_monthly_gap_is_filled_at_month_ends():
    frame = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2020-01-31", periods=5, freq="ME"),
                          "y": [1.0, 2, 3, 4, 5]}).drop(index=2)
    panel = read_long(frame, fill="interpolate")
    assert panel.freq == np.timedelta64(1, "M")
    assert panel.times[2] == np.datetime64("2020-03-31") and panel.values[2, 0] == 3.0


def test_a_time_off_the_step_is_an_error():
    frame = pd.DataFrame({"unique_id": ["a"] * 4, "ds": [0, 2, 4, 5], "y": [1.0, 2, 3, 4]})
    with pytest.raises(DataFormatError, match="series 'a': ds 5 is not a whole number of the panel's step 2"):
        read_long(frame)


def test_a_duplicate_row_names_both_lines(tmp_path):
    frame = pd.concat([long_table(), long_table().iloc[[7]]])
    with pytest.raises(DataFormatError, match=r"line 17: series 's1', ds 4: a duplicate row "
                                              r"\(the same --id-col and --time-col as .*line 9\)"):
        read_long(write_csv(tmp_path, frame))


def test_unsorted_rows_are_an_error_unless_sort():
    frame = long_table()
    frame = frame.iloc[[0, 2, 1, *range(3, len(frame))]]
    with pytest.raises(DataFormatError, match=r"row 1: series 's0': ds 1 comes after 2 .*--sort"):
        read_long(frame)
    assert read_long(frame, sort=True).values[:6, 0].tolist() == [0.0, 1, 2, 3, 4, 5]


def test_an_id_with_one_row_is_read():
    frame = pd.concat([long_table(), pd.DataFrame({"unique_id": ["lone"], "ds": [9], "y": [1.0]})])
    panel = read_long(frame)
    assert panel.ids[-1] == "lone" and panel.length(3) == 1 and panel.freq == 1


@pytest.mark.parametrize("option, kwargs", [("--id-col", {"id_col": "series"}),
                                            ("--time-col", {"time_col": "date"}),
                                            ("--target", {"target": ["y", "z"]}),
                                            ("--future-covariates", {"future_covariates": ["f"]}),
                                            ("--static-covariates", {"static_covariates": ["g"]})])
def test_a_missing_column_names_the_option_and_lists_the_table(tmp_path, option, kwargs):
    with pytest.raises(ConfigError, match=rf"\({option}\); the table has \['unique_id', 'ds', 'y'\]"):
        read_long(write_csv(tmp_path, long_table()), **kwargs)


@pytest.mark.parametrize("cell, shown", [("abc", "'abc'"), ("", "nan"), ("inf", "inf")])
def test_a_cell_that_is_no_finite_number_is_named(tmp_path, cell, shown):
    path = tmp_path / "bad.csv"
    path.write_text("unique_id,ds,y\na,0,1.0\na,1,2.0\n\nb,0," + cell + "\n")
    with pytest.raises(DataFormatError, match=rf"line 5: series 'b', ds 0: column 'y' \(--target\) "
                                              rf"holds {shown}, not a finite number"):
        read_long(path)


def test_a_bad_time_cell_is_named():
    frame = pd.DataFrame({"unique_id": ["a", "a"], "ds": ["2021-01-01", "soon"], "y": [1.0, 2.0]},
                         index=[10, 11])
    with pytest.raises(DataFormatError, match="row 11: --time-col 'ds' holds 'soon'"):
        read_long(frame)


# -- statics ------------------------------------------------------------------------------------------

def test_statics_numeric_as_they_are_and_text_one_hot():
    frame = long_table()
    frame["size"] = frame["unique_id"].map({"s0": 1.5, "s1": 2.0, "s2": 1.5})
    frame["kind"] = frame["unique_id"].map({"s0": "shop", "s1": "farm", "s2": "shop"})
    panel = read_long(frame, static_covariates=["size", "kind"])
    assert panel.static_columns == ["size", "kind=farm", "kind=shop"]
    assert panel.static_categories == {"kind": ["farm", "shop"]}
    assert panel.static.tolist() == [[1.5, 0, 1], [2.0, 1, 0], [1.5, 0, 1]]
    assert panel.select([2, 1]).static.tolist() == [[1.5, 0, 1], [2.0, 1, 0]]


def test_a_static_that_changes_within_a_series_is_an_error():
    frame = long_table()
    frame["kind"] = "shop"
    frame.loc[7, "kind"] = "farm"
    with pytest.raises(DataFormatError, match="row 7: series 's1': static covariate 'kind' "
                                              r"\(--static-covariates\) holds 'farm' here but 'shop'"):
        read_long(frame, static_covariates=["kind"])


# -- calendar -----------------------------------------------------------------------------------------

def test_calendar_features_match_hand_values():
    times = np.array(["2021-03-01T13:45"], dtype="datetime64[ns]")  # a Monday, ISO week 9
    names = ["hour", "dayofweek", "dayofmonth", "dayofyear", "month", "weekofyear", "minute"]
    got = calendar_features(times, names)
    want = [13 / 23, 0 / 6, 0 / 30, 59 / 365, 2 / 11, 8 / 52, 45 / 59]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0], np.array(want) - 0.5, atol=1e-7)


@pytest.mark.parametrize("freq, names", [("h", ["hour", "dayofweek"]),
                                         ("D", ["dayofweek", "dayofmonth", "dayofyear"]),
                                         ("W", ["weekofyear"]), ("MS", ["month"])])
def test_auto_calendar_picks_by_step(freq, names):
    frame = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2021-01-04", periods=5, freq=freq),
                          "y": 1.0})
    panel = read_long(frame, calendar="auto")
    assert panel.future_columns == [f"cal_{n}" for n in names]
    np.testing.assert_array_equal(panel.future, calendar_features(panel.times, names))


def test_integer_steps_have_no_calendar():
    assert calendar_features(np.arange(4), "auto").shape == (4, 0)
    with pytest.raises(ConfigError, match="integer steps"):
        calendar_features(np.arange(4), ["hour"])
    assert read_long(long_table(), calendar="auto").future is None


def test_extend_appends_future_rows_with_their_covariates_and_calendar():
    frame = pd.DataFrame({"unique_id": ["a"] * 3 + ["b"] * 2,
                          "ds": pd.to_datetime(["2021-01-01", "2021-01-02", "2021-01-03",
                                                "2021-01-02", "2021-01-03"]),
                          "y": [1.0, 2, 3, 4, 5], "price": [10.0, 20, 30, 40, 50]})
    panel = read_long(frame, future_covariates=["price"], calendar=["dayofmonth"])
    future = pd.DataFrame({"unique_id": ["b", "a", "b", "a"],
                           "ds": ["2021-01-04", "2021-01-04", "2021-01-05", "2021-01-05"],
                           "price": [7.0, 8.0, 9.0, 6.0]})
    out = panel.extend(2, future)
    assert out.offsets.tolist() == [0, 5, 9] and out.appended == 2
    assert out.future[:, 0].tolist() == [10.0, 20, 30, 8, 6, 40, 50, 7, 9]
    np.testing.assert_allclose(out.future[3:5, 1], [3 / 30 - 0.5, 4 / 30 - 0.5], atol=1e-7)
    assert np.isnan(out.values[3:5]).all() and not np.isnan(out.values[:3]).any()
    with pytest.raises(DataFormatError, match="series 'a', ds 2021-01-06.*no finite values"):
        panel.extend(3, future)


# -- splits -------------------------------------------------------------------------------------------

def test_split_borders_count_test_and_validation_from_the_end():
    panel = read_long(long_table(lengths=(10, 7, 12)))
    assert split_borders(panel, 2, 3).tolist() == [[5, 8, 10], [2, 5, 7], [7, 10, 12]]


def test_check_lengths_drops_series_too_short_to_train():
    panel = read_long(long_table(lengths=(10, 7, 12)))
    keep, dropped = check_lengths(panel, split_borders(panel, 2, 3), lookback=3, horizon=2)
    assert keep.tolist() == [0, 2] and dropped == ["s1"]


def test_check_lengths_refuses_too_short_series_and_impossible_panels():
    panel = read_long(long_table(lengths=(10, 7, 12)))
    borders = split_borders(panel, 2, 3)
    with pytest.raises(DataFormatError, match=r"--min-length 8: 1 series are shorter: 's1' \(7 rows\)"):
        check_lengths(panel, borders, 3, 2, min_length=8)
    with pytest.raises(DataFormatError, match=r"the longest, 's2', has 12 rows, 5 of them for validation "
                                              r"and test, leaving 7.*needs at least 15 rows"):
        check_lengths(panel, borders, lookback=8, horizon=2)


# -- scaling ------------------------------------------------------------------------------------------

def test_series_scaler_uses_each_series_training_rows():
    frame = long_table(lengths=(6, 4))
    frame["c"] = 3.0  # constant: std 1
    panel = read_long(frame, past_covariates=["c"])
    borders = np.array([[4, 5, 6], [2, 3, 4]])
    scaler = SeriesScaler().fit(panel, borders)
    np.testing.assert_allclose(scaler.mean, [[1.5, 3.0], [103.5, 3.0]])
    np.testing.assert_allclose(scaler.std, [[np.sqrt(1.25), 1.0], [0.5, 1.0]])
    x = panel.values[[0, 6]][:, None, :]  # (B=2, 1, C)
    scaled = scaler.transform(x, np.array([0, 1]))
    np.testing.assert_allclose(scaled[:, 0], [[-1.5 / np.sqrt(1.25), 0.0], [-0.5 / 0.5, 0.0]])
    np.testing.assert_allclose(scaler.inverse(scaled, np.array([0, 1])), x)
    again = SeriesScaler.from_config(json.dumps(scaler.to_config()))
    np.testing.assert_array_equal(again.transform(x[..., :1], np.array([0, 1]), channels=[0]),
                                  scaled[..., :1])


# -- lazy windows ---------------------------------------------------------------------------------------

def hand_panel(statics=False, future=False):
    """Two series: s0 y = 0..9 (x2 = 1000 + t), s1 y = 100..107; future f = 10 * y."""
    frame = long_table(lengths=(10, 8), starts=(0, 0))
    frame["x2"] = 1000.0 + frame["ds"]
    frame["f"] = 10 * frame["y"]
    frame["g"] = frame["unique_id"].map({"s0": 5.0, "s1": 7.0})
    return read_long(frame, past_covariates=["x2"], future_covariates=["f"] if future else (),
                     static_covariates=["g"] if statics else ())


def test_unpacked_windows_are_the_history_and_the_targets():
    panel = hand_panel()
    borders = split_borders(panel, test_size=2, val_size=3)  # [[5, 8, 10], [3, 6, 8]]
    val = PanelWindows(panel, borders, lookback=2, horizon=2, split="val", batch_size=3)
    assert val.origins().tolist() == [[0, 5], [0, 6], [1, 3], [1, 4]] and len(val) == 2
    x, y = next(iter(val))
    assert x.shape == (3, 2, 2) and y.shape == (3, 2, 1) and x.dtype == np.float32
    assert x[2].tolist() == [[101.0, 1001.0], [102.0, 1002.0]]
    assert y[:, :, 0].tolist() == [[5.0, 6.0], [6.0, 7.0], [103.0, 104.0]]
    np.testing.assert_array_equal(val.targets()[:, :, 0], [[5, 6], [6, 7], [103, 104], [104, 105]])
    assert val.layout == WindowLayout(2, 2, 2, (0,))


def test_packed_windows_hold_future_statics_and_the_series_index():
    panel = hand_panel(statics=True, future=True)
    borders = split_borders(panel, test_size=2, val_size=0)
    test = PanelWindows(panel, borders, lookback=3, horizon=2, split="test", series_id=True)
    lay = test.layout
    assert (lay.steps, lay.width, lay.future_columns, lay.static_columns, lay.id_column) == \
        (5, 5, slice(2, 3), slice(3, 4), 4)
    x, y = next(iter(test))
    assert test.origins().tolist() == [[0, 8], [1, 6]]
    assert x[1].tolist() == [[103.0, 1003.0, 1030.0, 7.0, 1.0], [104.0, 1004.0, 1040.0, 7.0, 1.0],
                             [105.0, 1005.0, 1050.0, 7.0, 1.0], [0.0, 0.0, 1060.0, 7.0, 1.0],
                             [0.0, 0.0, 1070.0, 7.0, 1.0]]
    assert y[1, :, 0].tolist() == [106.0, 107.0]
    assert WindowLayout.from_config(json.loads(json.dumps(lay.to_config()))) == lay


def test_future_rows_of_the_target_channels_are_zero_in_every_training_window():
    panel = hand_panel(statics=True)
    borders = split_borders(panel, 2, 0)
    scaler = SeriesScaler().fit(panel, borders)
    train = PanelWindows(panel, borders, 3, 2, scaler=scaler, batch_size=4, seed=1, windows_per_series=5)
    for x, _ in train:
        assert x.shape[1:] == (5, 3)
        assert not x[:, 3:, :2].any() and x[:, :3, :2].any()


def test_windows_are_scaled_per_series():
    panel = hand_panel()
    borders = split_borders(panel, 2, 3)
    scaler = SeriesScaler().fit(panel, borders)
    val = PanelWindows(panel, borders, 2, 2, "val", scaler=scaler)
    x, y = next(iter(val))
    raw = PanelWindows(panel, borders, 2, 2, "val")
    rx, ry = next(iter(raw))
    series = val.origins()[:, 0]
    np.testing.assert_allclose(x, scaler.transform(rx.astype(np.float64), series), rtol=1e-6)
    np.testing.assert_allclose(y, scaler.transform(ry.astype(np.float64), series, [0]), rtol=1e-6)


def test_rolling_test_origins_every_horizon_and_sizes_that_do_not_fit():
    panel = hand_panel()
    test = PanelWindows(panel, split_borders(panel, 4, 0), 2, 2, "test")
    assert test.origins().tolist() == [[0, 6], [0, 8], [1, 4], [1, 6]]
    with pytest.raises(ConfigError, match="multiple of the horizon 2"):
        PanelWindows(panel, split_borders(panel, 3, 0), 2, 2, "test")
    with pytest.raises(ConfigError, match="series 's0' makes no val window"):
        PanelWindows(panel, split_borders(panel, 2, 1), 2, 2, "val")


def test_training_windows_stay_inside_the_training_part():
    panel = hand_panel()
    borders = split_borders(panel, 2, 2)  # train ends 6 and 4
    train = PanelWindows(panel, borders, 2, 2, batch_size=7, seed=3, windows_per_series=20)
    for b in range(len(train)):
        series, origins = train.batch_origins(0, b)
        assert (origins >= 2).all() and (origins + 2 <= borders[series, 0]).all()
    seen = np.concatenate([train.batch_origins(0, b)[1][train.batch_origins(0, b)[0] == 0]
                           for b in range(len(train))])
    assert set(seen.tolist()) == {2, 3, 4}


def test_balanced_sampling_visits_every_series_once_per_round():
    frame = long_table(lengths=(60, 10, 30, 12, 20), starts=(0,) * 5)
    panel = read_long(frame)
    borders = split_borders(panel, 2, 0)
    train = PanelWindows(panel, borders, 3, 2, batch_size=3, seed=0)
    counts = [54, 4, 24, 6, 14]  # training windows per series: train rows - L - H + 1
    assert train.rounds == 14 and len(train) == 24  # the median count; 70 visits
    visits = np.concatenate([train.batch_origins(1, b)[0] for b in range(len(train))])
    assert (np.sort(visits.reshape(14, 5), axis=1) == np.arange(5)).all()
    orders = {tuple(r) for r in visits.reshape(14, 5)}
    assert len(orders) > 5  # each round its own order
    assert counts == train.count.tolist()


def test_resuming_mid_pass_gives_the_same_next_batches():
    panel = hand_panel(statics=True)
    borders = split_borders(panel, 2, 0)
    first = PanelWindows(panel, borders, 3, 2, batch_size=3, seed=11, windows_per_series=4)
    stream = iter(first)
    for _ in range(2):
        next(stream)
    state = json.loads(json.dumps(first.state_dict()))
    expected = list(stream) + list(first)  # the rest of this pass and the whole next one
    fresh = PanelWindows(panel, borders, 3, 2, batch_size=3, seed=0, windows_per_series=4)
    fresh.load_state_dict(state)
    got = list(fresh) + list(fresh)
    assert len(got) == len(expected) == len(first) - 2 + len(first)
    for (x1, y1), (x2, y2) in zip(expected, got):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert [b[0].tolist() for b in list(first)] != [b[0].tolist() for b in expected[len(first) - 2:]]


def test_permuting_the_series_permutes_the_windows():
    panel = hand_panel(statics=True, future=True)
    order = [1, 0]
    permuted = panel.select(order)
    borders = split_borders(panel, 2, 3)
    a = PanelWindows(panel, borders, 2, 2, "val")
    b = PanelWindows(permuted, split_borders(permuted, 2, 3), 2, 2, "val")
    xa, ya = next(iter(a))
    xb, yb = next(iter(b))
    # a's windows: s0 at 5, 6 then s1 at 3, 4; b's: s1 first
    np.testing.assert_array_equal(xb, xa[[2, 3, 0, 1]])
    np.testing.assert_array_equal(yb, ya[[2, 3, 0, 1]])


def test_predict_windows_end_at_the_series_end_and_read_appended_future_rows():
    panel = hand_panel(future=True)
    future = pd.DataFrame({"unique_id": ["s0", "s0", "s1", "s1"], "ds": [10, 11, 8, 9],
                           "f": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ConfigError, match="Panel.extend"):
        PanelWindows(panel, None, 2, 2, "predict")
    pred = PanelWindows(panel.extend(2, future), None, 2, 2, "predict")
    x, y = next(iter(pred))
    assert pred.origins().tolist() == [[0, 10], [1, 8]] and np.isnan(y).all()
    assert x[0].tolist() == [[8.0, 1008.0, 80.0], [9.0, 1009.0, 90.0], [0, 0, 1.0], [0, 0, 2.0]]


def test_windows_hold_no_per_window_arrays():
    """Bookkeeping is O(S): nothing grows with the number of windows per series."""
    short, long = (read_long(long_table(lengths=(n, n), starts=(0, 0))) for n in (50, 5000))
    sizes = []
    for panel in (short, long):
        ds = PanelWindows(panel, split_borders(panel, 4, 4), 8, 4, batch_size=16, seed=0)
        next(iter(ds))
        sizes.append(sum(v.nbytes for v in vars(ds).values() if isinstance(v, np.ndarray)) +
                     sum(v.nbytes for v in ds._orders.values()))
    assert sizes[0] == sizes[1]


def test_model_fit_on_panel_windows_resumes_to_the_same_weights(tmp_path):
    """The trainer takes PanelWindows as it takes WindowDataset: a crash mid-pass and a resume
    end with the weights of an uninterrupted run."""
    import torch

    from rnnkit import callbacks
    from rnnkit.layers import NLinear
    from rnnkit.models import Sequential

    class Crash(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise KeyboardInterrupt

    frame = long_table(lengths=(40, 25, 30), starts=(0, 0, 0))
    frame["y"] = np.sin(frame["ds"] / 3.0) + frame["y"] / 100
    panel = read_long(frame)
    borders = split_borders(panel, 4, 4)
    scaler = SeriesScaler().fit(panel, borders)

    def run(**kwargs):
        torch.manual_seed(0)
        model = Sequential([NLinear(4)])
        model.compile("adam", "mse")
        model.build((None, 8, 1))
        data = PanelWindows(panel, borders, 8, 4, scaler=scaler, batch_size=5, seed=7)
        model.fit(data, epochs=2, verbose=0, seed=1, **kwargs)
        return [p.detach().clone() for p in model.parameters()]

    straight = run()
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint_dir=tmp_path / "ck", checkpoint_every=1, callbacks=[Crash()])
    resumed = run(resume=tmp_path / "ck")
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed))


def test_predict_without_future_covariates_needs_no_extend():
    panel = hand_panel(statics=True)
    pred = PanelWindows(panel, None, 2, 3, "predict", series_id=True)
    x, y = next(iter(pred))
    assert pred.origins().tolist() == [[0, 10], [1, 8]] and y.shape == (2, 3, 1)
    assert x[1].tolist() == [[106.0, 1006.0, 7.0, 1.0], [107.0, 1007.0, 7.0, 1.0]] + \
        [[0.0, 0.0, 7.0, 1.0]] * 3
    with pytest.raises(ConfigError, match=r"future covariates \['f'\] are needed"):
        hand_panel(future=True).extend(2)


def test_calendar_features_cover_filled_rows():
    frame = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2021-01-01", periods=6, freq="D"),
                          "y": [1.0, 2, 3, 4, 5, 6]}).drop(index=[2, 3])
    panel = read_long(frame, fill="ffill", calendar=["dayofmonth"])
    np.testing.assert_allclose(panel.future[:, 0], np.arange(6) / 30 - 0.5, atol=1e-7)
    assert panel.values[:, 0].tolist() == [1.0, 2.0, 2.0, 2.0, 5.0, 6.0]
