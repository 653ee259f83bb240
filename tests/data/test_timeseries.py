"""Time-series windows, the lecture's generator, Normalizer, baselines and CSV -> .npy streaming."""

import itertools
import json

import numpy as np
import pytest

from rnnkit.data import (
    DataFormatError,
    Normalizer,
    WindowDataset,
    csv_to_npy,
    evaluate,
    generator,
    last_value,
    linear,
    seasonal_naive,
)
from rnnkit.errors import ConfigError


def series(n=30, f=3):
    """Row i, column j holds 100*i + j, so every value tells where it came from."""
    return 100.0 * np.arange(n)[:, None] + np.arange(f)


def lecture_generator(data, lookback, delay, min_index, max_index, shuffle=False,
                      batch_size=128, step=6):
    """The lecture's code, verbatim but for the Python 3 while loop."""
    if max_index is None:
        max_index = len(data) - delay - 1
    i = min_index + lookback
    while 1:
        if shuffle:
            rows = np.random.randint(min_index + lookback, max_index, size=batch_size)
        else:
            if i + batch_size >= max_index:
                i = min_index + lookback
            rows = np.arange(i, min(i + batch_size, max_index))
            i += len(rows)
        samples = np.zeros((len(rows), lookback // step, data.shape[-1]))
        targets = np.zeros((len(rows),))
        for j, _ in enumerate(rows):
            indices = range(rows[j] - lookback, rows[j], step)
            samples[j] = data[indices]
            targets[j] = data[rows[j] + delay][1]
        yield samples, targets


@pytest.mark.parametrize("shuffle", [False, True])
def test_generator_matches_the_lecture(shuffle):
    data = series()
    ours = generator(data, lookback=6, delay=2, min_index=1, max_index=20, shuffle=shuffle,
                     batch_size=4, step=2)
    reference = lecture_generator(data, 6, 2, 1, 20, shuffle, 4, 2)
    np.random.seed(3)
    theirs = [next(reference) for _ in range(7)]
    np.random.seed(3)
    for x_ref, y_ref in theirs:
        x, y = next(ours)
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)


def test_generator_first_batch_by_hand_and_wraps():
    gen = generator(series(), lookback=4, delay=1, min_index=0, max_index=10, batch_size=3,
                    step=2, target=2)
    x, y = next(gen)
    np.testing.assert_array_equal(x[0], [[0, 1, 2], [200, 201, 202]])
    np.testing.assert_array_equal(y, [502, 602, 702])
    next(gen)  # anchors 7, 8, 9
    assert next(gen)[1][0] == 502  # 10 + 3 >= 10: back to the first anchor


def test_window_dataset_windows_by_hand():
    ds = WindowDataset(series(), lookback=4, delay=2, start=3, end=12, step=2, target=1,
                       batch_size=4)
    assert len(ds) == 2 and ds.anchors.tolist() == [7, 8, 9, 10, 11]
    batches = list(ds)
    x, y = batches[0]
    assert x.dtype == np.float32 and x.shape == (4, 2, 3)
    np.testing.assert_array_equal(x[0], [[300, 301, 302], [500, 501, 502]])
    np.testing.assert_array_equal(y, [901, 1001, 1101, 1201])
    assert batches[1][0].shape == (1, 2, 3)


def test_window_dataset_multi_step_horizon_and_default_end():
    ds = WindowDataset(series(n=10), lookback=3, delay=1, horizon=3, target=0)
    # last anchor r needs row r + 1 + 2 <= 9
    assert ds.anchors.tolist() == [3, 4, 5, 6]
    np.testing.assert_array_equal(ds.targets()[0], [400, 500, 600])
    _, y = next(iter(ds))
    assert y.shape == (4, 3)


def test_window_dataset_shuffle_visits_every_window_once_per_epoch():
    ds = WindowDataset(series(n=40), lookback=2, delay=0, batch_size=5, shuffle=True, seed=0)
    epochs = [np.concatenate([y for _, y in ds]) for _ in range(2)]
    for ys in epochs:
        np.testing.assert_array_equal(np.sort(ys), ds.targets())
    assert not np.array_equal(epochs[0], epochs[1])


def test_window_dataset_applies_the_normalizer():
    data = series()
    norm = Normalizer().fit(data, 0, 15)
    ds = WindowDataset(data, lookback=2, delay=0, target=1, normalizer=norm)
    x, y = next(iter(ds))
    np.testing.assert_allclose(x[0, 0], (data[0] - data[:15].mean(0)) / data[:15].std(0),
                               rtol=1e-6)
    np.testing.assert_allclose(y[0], (data[2, 1] - 701.0) / data[:15, 1].std(), rtol=1e-6)


def test_window_range_errors():
    with pytest.raises(ConfigError, match="do not fit in a series of 30 rows"):
        WindowDataset(series(), lookback=2, delay=5, end=28)
    with pytest.raises(ConfigError, match="no window fits"):
        WindowDataset(series(), lookback=10, delay=0, start=15, end=20)


def test_normalizer_chunked_fit_equals_numpy_and_round_trips():
    rng = np.random.default_rng(0)
    data = rng.normal(5.0, 3.0, size=(1000, 4))
    norm = Normalizer().fit(data, 100, 700, chunk_rows=64)
    np.testing.assert_allclose(norm.mean, data[100:700].mean(0), rtol=1e-12)
    np.testing.assert_allclose(norm.std, data[100:700].std(0), rtol=1e-12)
    restored = Normalizer.from_config(json.loads(json.dumps(norm.to_config())))
    z = restored.transform(data)
    np.testing.assert_allclose(restored.inverse_transform(z), data, rtol=1e-12)
    np.testing.assert_allclose(restored.inverse_transform(z[:, 2], column=2), data[:, 2])


def test_normalizer_errors_name_row_and_column():
    data = series()
    data[7, 2] = np.nan
    with pytest.raises(DataFormatError, match="row 7, column 2: not a finite number"):
        Normalizer().fit(data, chunk_rows=4)
    with pytest.raises(DataFormatError, match="column 1 is constant"):
        Normalizer().fit(np.array([[1.0, 2.0], [3.0, 2.0]]))


def test_last_value_is_the_last_input_of_the_target_column():
    ds = WindowDataset(series(), lookback=6, delay=3, step=3, target=2, batch_size=7)
    x = np.concatenate([x for x, _ in ds])
    np.testing.assert_array_equal(last_value(ds), x[:, -1, 2])
    assert last_value(ds)[0] == 302 and ds.targets()[0] == 902


def test_seasonal_naive_is_exact_on_a_periodic_series():
    t = np.arange(200)
    data = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 24)], axis=1)
    ds = WindowDataset(data, lookback=24, delay=5, horizon=3, target=0, step=4)
    pred = seasonal_naive(ds, 24)
    assert pred.shape == (len(ds.anchors), 3)
    assert evaluate(pred, ds.targets())["mae"] < 1e-12
    assert evaluate(last_value(ds), ds.targets())["mae"] > 0.1


def test_seasonal_naive_picks_the_latest_observed_season_by_hand():
    ds = WindowDataset(series(), lookback=4, delay=3, start=2, end=8, target=0)
    # anchor 6: last input row 5, target row 9; 9 - 5 = 4 -> one season of 4 back: row 5
    # season 3 -> 9 - 3*2 = row 3
    assert seasonal_naive(ds, 4)[0] == 500 and seasonal_naive(ds, 3)[0] == 300
    with pytest.raises(ConfigError, match="before the first row"):
        seasonal_naive(ds, 100)


def test_linear_recovers_an_exact_autoregression():
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    y = np.zeros(300)
    y[2:] = 0.5 * x[1:-1] - 0.25 * x[:-2] + 1.0  # y_t from the two previous x
    data = np.stack([x, y], axis=1)
    train = WindowDataset(data, lookback=2, delay=0, end=200, target=1, batch_size=32)
    test = WindowDataset(data, lookback=2, delay=0, start=200, target=1)
    pred = linear(train, test)
    np.testing.assert_allclose(pred, test.targets(), atol=1e-6)


def test_evaluate_by_hand():
    assert evaluate(np.array([1.0, 2.0, 5.0]), np.array([1.0, 4.0, 1.0])) == \
        {"mae": 2.0, "rmse": pytest.approx(np.sqrt(20 / 3))}


def test_csv_to_npy_streams_and_matches(tmp_path):
    data = series(n=50, f=2)
    lines = ["when,a,b"] + [f"t{i},{r[0]},{r[1]}" for i, r in enumerate(data)]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    mm = csv_to_npy(tmp_path / "s.csv", tmp_path / "s.npy", text=("when",), chunk_rows=7)
    assert isinstance(mm, np.memmap) and mm.dtype == np.float32
    np.testing.assert_array_equal(mm, data)
    streamed = WindowDataset(mm, lookback=3, delay=1, target=1, batch_size=8)
    in_memory = WindowDataset(data, lookback=3, delay=1, target=1, batch_size=8)
    for (xs, ys), (xm, ym) in zip(streamed, in_memory):
        np.testing.assert_array_equal(xs, xm)
        np.testing.assert_array_equal(ys, ym)


def test_csv_to_npy_bad_cell_leaves_no_file(tmp_path):
    (tmp_path / "s.csv").write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(DataFormatError, match=r"s.csv: line 3, column 'b': expected a number"):
        csv_to_npy(tmp_path / "s.csv", tmp_path / "s.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]


def test_a_target_column_that_does_not_exist_is_refused_up_front():
    data = np.zeros((50, 2))
    with pytest.raises(ConfigError, match=r"WindowDataset: target column 5 does not exist; the data has 2"):
        WindowDataset(data, lookback=4, delay=1, target=5)
    with pytest.raises(ConfigError, match=r"generator: target column 2 does not exist"):
        next(generator(data, lookback=4, delay=1, min_index=0, max_index=None, target=2))


def test_window_dataset_says_where_it_is():
    """state_dict() mid-pass and between passes; a fresh copy given it continues with the very
    batches an uninterrupted iteration takes (JSON round trip of the state included)."""
    series = np.arange(200.0).reshape(100, 2)

    def fresh():
        return WindowDataset(series, lookback=4, delay=0, target=1, batch_size=8, shuffle=True,
                             seed=3)

    whole = fresh()
    uninterrupted = [y.tolist() for _ in range(3) for _, y in whole]  # three passes
    first = fresh()
    taken = [y.tolist() for _, y in itertools.islice(iter(first), 5)]  # 5 of 12 batches
    second = fresh()
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    taken += [y.tolist() for _ in range(3) for _, y in second][:len(uninterrupted) - 5]
    assert taken == uninterrupted
    between = fresh()
    list(between)
    third = fresh()
    third.load_state_dict(between.state_dict())
    assert [y.tolist() for _, y in third] == uninterrupted[12:24]


def test_window_dataset_without_a_seed_still_resumes_exactly():
    """seed=None: a fresh order every pass and every dataset, yet the state carries the seed
    drawn at construction, so a resumed copy takes the interrupted pass's remaining batches."""
    series = np.arange(200.0).reshape(100, 2)

    def fresh():
        return WindowDataset(series, lookback=4, delay=0, target=1, batch_size=8, shuffle=True)

    first = fresh()
    passes = [[y.tolist() for _, y in first] for _ in range(2)]
    assert passes[0] != passes[1]
    assert [y.tolist() for _, y in fresh()] != passes[0]
    again = fresh()
    again.load_state_dict({"seed": first.seed, "epoch": 0, "position": 0})
    head = [y.tolist() for _, y in itertools.islice(iter(again), 7)]
    resumed = fresh()
    resumed.load_state_dict(json.loads(json.dumps(again.state_dict())))
    assert head + [y.tolist() for _, y in resumed] == passes[0]
    assert [y.tolist() for _, y in resumed] == passes[1]
