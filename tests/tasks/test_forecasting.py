"""Forecasting: the long-horizon protocol, the forecasting layers (last-value normalization,
SegRNN, NLinear, DLinear), quantiles and coverage, and the forecast task's metrics and errors."""

import csv
import json

import numpy as np
import pytest
import torch

from rnnkit import cli
from rnnkit.data.timeseries import WindowDataset, split_windows
from rnnkit.datasets import ett
from rnnkit.errors import ConfigError
from rnnkit.layers import (
    GRU,
    LSTM,
    DLinear,
    NLinear,
    RecurrentForecaster,
    SegmentEmbedding,
    SegRNN,
    WindowNormalization,
)
from rnnkit.layers.forecasting import moving_average
from rnnkit.losses import Pinball, get
from rnnkit.models import Sequential, load_model
from rnnkit.tasks import forecasting, specs

FAST = ["--epochs", "1", "--quiet", "--batch-size", "16"]


# -- the protocol -----------------------------------------------------------------------------
def test_row_count_split_gives_the_ett_borders_and_fractions_still_work():
    assert forecasting.split_rows(17420, [8640, 2880, 2880]) == (8640, 11520, 14400)
    assert forecasting.split_rows(100, [0.7, 0.1, 0.2]) == (70, 80, 100)
    with pytest.raises(ConfigError, match="add up to 14400, but the file has 14000 rows"):
        forecasting.split_rows(14000, [8640, 2880, 2880])
    with pytest.raises(ConfigError, match="three positive fractions"):
        forecasting.split_rows(100, [0.7, 2, 0.2])


def test_protocol_windows_borders_and_counts():
    """Row i holds i: every window tells which rows it read. Borders 60/80/100, L=8, H=3."""
    data = np.arange(100.0)[:, None] * np.ones((1, 2))
    train, val, test = split_windows(data, (60, 80, 100), lookback=8, horizon=3, target=[1])
    # every target row of a split lies inside it; val and test start L rows before the border
    assert [len(ds.anchors) for ds in (train, val, test)] == [60 - 8 - 3 + 1, 20 - 3 + 1,
                                                              20 - 3 + 1]
    x, y = test.window(test.anchors[:1])
    assert x[0, :, 0].tolist() == list(range(72, 80)) and y[0, :, 0].tolist() == [80, 81, 82]
    x, y = test.window(test.anchors[-1:])
    assert y[0, -1, 0] == 99  # the last row is scored
    targets = test.targets()[:, :, 0]
    for step in range(3):  # every test row is a target once per horizon step
        assert sorted(targets[:, step].tolist()) == list(range(80 + step, 100 - 2 + step))
    assert targets.min() >= 80 and train.targets().max() < 60 and val.targets().max() < 80
    assert sum(len(y) for _, y in test) == len(test.anchors)  # no batch dropped


def test_protocol_rejects_a_split_shorter_than_a_window():
    data = np.zeros((100, 1))
    with pytest.raises(ConfigError, match=r"the validation part has 10 rows, fewer than one "
                                          r"window needs: delay \+ horizon \(.*\) = 12"):
        split_windows(data, (80, 90, 100), lookback=8, horizon=12, target=[0])
    with pytest.raises(ConfigError, match=r"the training part has 15 rows, fewer than one "
                                          r"window needs: lookback \+ delay \+ horizon = 20"):
        split_windows(data, (15, 90, 100), lookback=8, horizon=12, target=[0])


def test_training_order_is_a_function_of_the_seed_and_epoch():
    data = np.arange(200.0)[:, None]
    a = split_windows(data, (120, 160, 200), 8, 4, [0], batch_size=16, seed=5)[0]
    b = split_windows(data, (120, 160, 200), 8, 4, [0], batch_size=16, seed=5)[0]
    first = [y for _, y in a]
    second = [y for _, y in a]
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    np.testing.assert_array_equal(np.concatenate(first)[:, 0, 0], b.epoch_order(0) + 0.0)
    np.testing.assert_array_equal(np.concatenate(second)[:, 0, 0], b.epoch_order(1) + 0.0)


@pytest.fixture(scope="module")
def ett_file(tmp_path_factory):
    """An ETTh-shaped file: 14,500 hourly rows, 7 columns; row i of column j holds i + j/10."""
    path = tmp_path_factory.mktemp("ett") / "ETTh1.csv"
    start = np.datetime64("2016-07-01T00:00:00")
    with open(path, "w") as f:
        f.write("date," + ",".join(ett.COLUMNS) + "\n")
        for i in range(14500):
            stamp = str(start + np.timedelta64(i, "h")).replace("T", " ")
            f.write(stamp + "," + ",".join(f"{i + j / 10:.1f}" for j in range(7)) + "\n")
    return path


@pytest.mark.parametrize("setting, c_in, c_out", [("S", 1, 1), ("MS", 7, 1), ("M", 7, 7)])
def test_ett_windows_in_python_follow_the_protocol(ett_file, setting, c_in, c_out):
    splits = ett.load(ett_file)
    train, val, test = ett.windows(splits, lookback=96, horizon=24, setting=setting)
    assert [len(ds.anchors) for ds in (train, val, test)] == [8640 - 96 - 24 + 1, 2880 - 23,
                                                              2880 - 23]
    x, y = next(iter(test))
    assert x.shape == (32, 96, c_in) and y.shape == (32, 24, c_out)
    raw = splits.normalizer.inverse_transform(test.targets()[:, 0, -1], 6)
    assert raw[0] == pytest.approx(11520 + 0.6) and raw[-1] == pytest.approx(14400 - 24 + 0.6)


# -- the layers -------------------------------------------------------------------------------
CELL_SPECS = [f"segrnn-{cell}:8" for cell in specs.CELLS] + ["gru:8", "lstm-peephole:8",
                                                              "bidirectional-gru:4",
                                                              "dilated-simple:4x2"]


@pytest.mark.parametrize("spec", CELL_SPECS)
def test_an_untrained_forecaster_with_a_zero_head_is_the_last_value_exactly(spec):
    x = torch.randn(5, 48, 3)
    layer = specs.forecaster(spec, horizon=30, targets=[2, 0], segment=24, dropout=0.3)
    layer.eval()
    last = x[:, -1:, [2, 0]].expand(-1, 30, -1)
    assert torch.equal(layer(x), last)
    layer.train()  # dropout before a zero head changes nothing either
    assert torch.equal(layer(x), last)


@pytest.mark.parametrize("layer", [NLinear(7), SegRNN(GRU(8), 7, 4, decoding="recursive")])
def test_other_forecasters_start_at_the_last_value(layer):
    x = torch.randn(3, 16, 2)
    assert torch.equal(layer(x), x[:, -1:].expand(-1, 7, -1))


def test_segrnn_learns_and_its_gradients_reach_the_recurrent_cell():
    x = torch.randn(4, 48, 2)
    layer = SegRNN(LSTM(8, peephole=True), horizon=24, segment=12)
    loss = (layer(x) - torch.randn(4, 24, 2)).square().mean()
    loss.backward()
    head = layer.decoder.dense.weight.grad
    assert head is not None and head.abs().sum() > 0  # the zero head gets a gradient
    assert layer.recurrent.last_kernel == "compiled"  # the engine ran the lecture's cell


def test_segment_embedding_cuts_whole_segments_and_names_a_bad_segment():
    embed = SegmentEmbedding(segment=4, units=3)
    x = torch.arange(24.0).reshape(2, 12)
    out = embed(x)
    assert out.shape == (2, 3, 3)
    w, b = embed.dense.weight, embed.dense.bias
    expected = torch.relu(x[1, 4:8] @ w.T + b)  # segment 1 of series 1: steps 4..7
    torch.testing.assert_close(out[1, 1], expected)
    with pytest.raises(ConfigError, match="segment 5 does not divide the lookback 12"):
        SegmentEmbedding(segment=5, units=3)(x)
    with pytest.raises(ConfigError, match="segment 24 does not divide the lookback 100"):
        SegRNN(GRU(4), horizon=24, segment=24)(torch.randn(2, 100, 1))


def test_parallel_decoding_is_one_recurrent_step_per_segment_from_the_final_state():
    torch.manual_seed(1)
    layer = SegRNN(GRU(6), horizon=10, segment=4, head_initializer="glorot_uniform")
    x = torch.randn(2, 8, 3)
    out = layer(x)  # (2, 10, 3): m = 3 segments of 4, cut to 10
    series = (x - x[:, -1:]).transpose(1, 2).reshape(6, 8)
    gru = layer.recurrent
    _, h = gru(layer.embedding(series))
    for k in range(3):  # channel k, segment j: one step on [p_j, c_k] from h
        for j in range(3):
            e = torch.cat([layer.decoder.position[j], layer.decoder.channel[k]])
            _, h1 = gru(e.reshape(1, 1, 6).expand(2, 1, 6), initial_state=h[k::3])
            seg = layer.decoder.dense(h1)  # (2, 4)
            steps = slice(4 * j, min(4 * j + 4, 10))
            torch.testing.assert_close(out[:, steps, k],
                                       seg[:, :steps.stop - steps.start] + x[:, -1:, k])


@pytest.mark.parametrize("layer_fn", [
    lambda: SegRNN(GRU(6), horizon=8, segment=4, channel_embedding=False,
                   head_initializer="glorot_uniform"),
    lambda: SegRNN(LSTM(6), horizon=8, segment=4, channel_embedding=False,
                   decoding="recursive", head_initializer="glorot_uniform"),
    lambda: NLinear(8, kernel_initializer="glorot_uniform"),
    lambda: DLinear(8),
])
def test_channel_independence_permuting_channels_permutes_outputs(layer_fn):
    layer = layer_fn()
    x = torch.randn(3, 16, 4)
    perm = [2, 0, 3, 1]
    torch.testing.assert_close(layer(x[:, :, perm]), layer(x)[:, :, perm])


def test_revin_and_window_normalization_round_trip():
    x = torch.randn(4, 20, 3) * 5 + 2
    for mode in ("last", "revin", "none"):
        norm = WindowNormalization(mode)
        xn, stats = norm(x)
        torch.testing.assert_close(norm.denormalize(xn, stats, [0, 1, 2]), x)
    xn, _ = WindowNormalization("revin")(x)
    torch.testing.assert_close(xn.mean(dim=1), torch.zeros(4, 3), atol=1e-5, rtol=0)
    affine = WindowNormalization("revin", affine=True)
    xn, stats = affine(x)
    with torch.no_grad():
        affine.weight.fill_(2.0)
        affine.bias.fill_(0.5)
    xn, stats = affine(x)
    y = affine.denormalize(xn[:, :, [2]], stats, [2])
    torch.testing.assert_close(y, x[:, :, [2]], rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="normalization must be one of"):
        WindowNormalization("mean")


def test_dlinear_moving_average_repeats_the_ends():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 10.0]]).unsqueeze(-1)  # (1, 5, 1)
    trend = moving_average(x, 3)[0, :, 0]
    expected = [(1 + 1 + 2) / 3, 2, 3, (3 + 4 + 10) / 3, (4 + 10 + 10) / 3]
    torch.testing.assert_close(trend, torch.tensor(expected))
    layer = DLinear(4, kernel=3)
    out = layer(x)  # weights 1/L: both parts map to their mean, which sums to the window's
    torch.testing.assert_close(out[0, :, 0], torch.full((4,), x.mean()) + layer.trend.bias
                               + layer.seasonal.bias)


def test_forecaster_model_saves_and_loads(tmp_path):
    model = Sequential([SegRNN(LSTM(8), horizon=12, segment=6, targets=[1], quantiles=[0.1, 0.9],
                               head_initializer="glorot_uniform")])
    model.build((None, 24, 2))
    x = torch.randn(3, 24, 2)
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again(x).shape == (3, 12, 1, 2)
    torch.testing.assert_close(again(x), model(x))


# -- quantiles --------------------------------------------------------------------------------
def test_pinball_loss_against_a_hand_computation():
    y = torch.tensor([[1.0, 2.0]])  # (1, 2)
    pred = torch.tensor([[[0.0, 2.0], [3.0, 1.0]]])  # (1, 2, Q=2) for levels 0.1, 0.9
    # step 1: e = 1 - 0 = 1 -> 0.1·1 = 0.1; e = 1 - 2 = -1 -> (0.9-1)(-1) = 0.1
    # step 2: e = 2 - 3 = -1 -> (0.1-1)(-1) = 0.9; e = 2 - 1 = 1 -> 0.9
    loss = Pinball([0.1, 0.9])(y, pred)
    assert float(loss) == pytest.approx((0.1 + 0.1 + 0.9 + 0.9) / 4)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        Pinball([0.5, 1.0])
    assert isinstance(get(Pinball([0.5])), Pinball)


def test_quantile_scores_coverage_and_per_level_loss():
    truth = np.array([[[0.0]], [[1.0]], [[2.0]], [[5.0]]])  # (N=4, H=1, C'=1)
    pred = np.tile(np.array([0.5, 1.0, 3.0]), (4, 1, 1, 1))  # levels 0.1, 0.5, 0.9
    scores = forecasting.quantile_scores(pred, truth, [0.1, 0.5, 0.9])
    assert scores["coverage"] == {"lower": 0.1, "upper": 0.9, "nominal": pytest.approx(0.8),
                                  "empirical": 0.5}  # 1 and 2 lie in [0.5, 3]
    errors = truth[:, 0, 0] - 1.0
    assert scores["pinball"]["0.5"] == pytest.approx(np.mean(np.maximum(0.5 * errors,
                                                                        -0.5 * errors)))
    assert forecasting.point_index([0.1, 0.5, 0.9]) == 1


# -- the forecast task ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def series_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fc") / "s.csv"
    rng = np.random.default_rng(0)
    t = np.arange(400)
    a = np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(400)
    b = np.cos(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(400)
    with open(path, "w") as f:
        f.write("date,a,b,temp\n")
        for i in t:
            f.write(f"d{i},{a[i]:.4f},{b[i]:.4f},{3 * a[i] + 10:.4f}\n")
    return path


def _train(tmp_path, name, *args):
    out = tmp_path / name
    assert cli.main(["train", "--task", "forecast", "--out", str(out), *FAST, *args]) == 0
    return out, json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("setting, extra, targets", [
    ("S", ["--target", "temp", "--features", "temp"], ["temp"]),
    ("MS", ["--target", "temp"], ["temp"]),
    ("M", ["--target", "all"], ["a", "b", "temp"]),
    ("list", ["--target", "temp,a"], ["temp", "a"]),
])
def test_settings_metrics_shapes(series_file, tmp_path, setting, extra, targets):
    out, metrics = _train(tmp_path, setting, "--data", str(series_file), "--lookback", "24",
                          "--horizon", "6", "--model", "segrnn:8", "--segment", "12",
                          "--split", "240,80,80", *extra)
    assert set(metrics) == {"model", "baselines", "standardized", "targets"}
    assert set(metrics["standardized"]) == {"model", "baselines"}
    assert set(metrics["standardized"]["baselines"]) == set(forecasting.BASELINES)
    assert set(metrics["standardized"]["model"]) == {"mse", "mae"}
    assert list(metrics["targets"]) == targets
    maes = [metrics["targets"][t]["baselines"]["last_value"]["mae"] for t in targets]
    assert metrics["baselines"]["last_value"]["mae"] == pytest.approx(np.mean(maes))
    with open(tmp_path / "p.csv", "w"):
        pass
    assert cli.main(["predict", str(out), "--data", str(series_file), "--out",
                     str(tmp_path / "p.csv"), "--quiet"]) == 0
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", *targets] and len(rows) == 7


def test_last_value_in_units_and_the_standardized_scale_by_hand(series_file, tmp_path):
    _, metrics = _train(tmp_path, "lv", "--data", str(series_file), "--target", "temp",
                        "--lookback", "24", "--horizon", "2", "--model", "gru:4",
                        "--split", "240,80,80")
    temp = np.loadtxt(series_file, delimiter=",", skiprows=1, usecols=3)
    # test windows: targets rows 320..399 at both steps, the last value the row before the window end
    err = np.concatenate([temp[320 + k:399 + k] - temp[319:398] for k in range(2)])
    assert metrics["baselines"]["last_value"]["mae"] == pytest.approx(np.abs(err).mean())
    std = temp[:240].std()
    assert metrics["standardized"]["baselines"]["last_value"]["mse"] == pytest.approx(
        (err**2).mean() / std**2)


def test_quantiles_coverage_and_interval_plot(series_file, tmp_path):
    out, metrics = _train(tmp_path, "q", "--data", str(series_file), "--target", "temp",
                          "--lookback", "24", "--horizon", "6", "--model", "segrnn:8",
                          "--segment", "12", "--quantiles", "0.1,0.5,0.9", "--plot-step", "6",
                          "--epochs", "2", "--learning-rate", "0.01")
    q = metrics["quantiles"]
    assert q["levels"] == [0.1, 0.5, 0.9] and set(q["pinball"]) == {"0.1", "0.5", "0.9"}
    assert q["coverage"]["nominal"] == pytest.approx(0.8) and 0 <= q["coverage"]["empirical"] <= 1
    assert (out / "forecast.png").stat().st_size > 0
    assert cli.main(["predict", str(out), "--data", str(series_file), "--out",
                     str(tmp_path / "q.csv"), "--quiet"]) == 0
    with open(tmp_path / "q.csv") as f:
        header = next(csv.reader(f))
    assert header == ["step", "temp", "temp_q0.1", "temp_q0.5", "temp_q0.9"]


def test_the_cli_prints_the_best_baseline_and_says_when_the_model_loses(series_file, tmp_path,
                                                                        capsys):
    argv = ["train", "--task", "forecast", "--data", str(series_file), "--target", "temp",
            "--lookback", "24", "--horizon", "6", "--model", "gru:4", "--epochs", "0",
            "--out", str(tmp_path / "v")]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "test MSE (standardized): model" in text and "best baseline" in text
    metrics = json.loads((tmp_path / "v" / "metrics.json").read_text())
    std = metrics["standardized"]
    best = min(std["baselines"].values(), key=lambda m: m["mse"])["mse"]
    worse = 100 * (std["model"]["mse"] / best - 1)
    assert std["model"]["mse"] == pytest.approx(std["baselines"]["last_value"]["mse"])
    assert f"the model is {worse:.3g}% worse than" in text  # untrained: last value, beaten
    assert forecasting.verdict({"standardized": {"model": {"mse": 1.0}, "baselines": {
        "last_value": {"mse": 2.0}}}}) == ["test MSE (standardized): model 1.0000, best "
                                           "baseline last value 2.0000"]


def test_training_that_does_not_beat_the_untrained_model_on_validation_is_undone():
    data = np.random.default_rng(0).standard_normal((300, 1)).cumsum(axis=0)
    train, val, _ = split_windows(data, (200, 250, 300), 24, 4, [0], batch_size=16, seed=0)
    model = forecasting.compiled_forecaster(RecurrentForecaster(GRU(4), 4), "sgd")
    model.optimizer.learning_rate = 50.0  # wrecks the weights
    history = forecasting.fit_forecaster(model, train, val, epochs=1)
    assert history.kept_untrained
    x, _ = next(iter(val))
    np.testing.assert_array_equal(model.predict(x, verbose=0),
                                  np.repeat(x[:, -1:], 4, axis=1))


@pytest.mark.parametrize("args, message", [
    (["--target", "nope"], r"target \(--target\): column 'nope' is not a numeric column of .*s.csv"),
    (["--target", "temp", "--split", "300,60,40", "--lookback", "24", "--horizon", "48"],
     r"split: the test part has 40 rows, fewer than one window needs"),
    (["--target", "temp", "--lookback", "30", "--model", "segrnn:8"],
     r"segment \(--segment\): segrnn:8 cuts the window of 30 steps"),
    (["--target", "temp", "--quantiles", "0.1,1.5"],
     r"quantiles \(--quantiles\): quantiles must be increasing levels strictly between 0 and 1"),
    (["--target", "temp", "--plot-step", "9", "--horizon", "4"], r"plot_step \(--plot-step\)"),
])
def test_bad_input_names_the_option_and_writes_no_run_directory(series_file, tmp_path, capsys,
                                                                 args, message):
    out = tmp_path / "never"
    argv = ["train", "--task", "forecast", "--data", str(series_file), "--out", str(out), *FAST,
            *args]
    with pytest.raises(ConfigError, match=message):
        cli.run(argv)
    assert cli.main(argv) == 2
    assert "rnnkit: error:" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_segrnn_spec_is_for_forecasting_only():
    with pytest.raises(ConfigError, match="segrnn is a forecaster"):
        specs.recurrent_layer("segrnn:8")
    assert specs.parse("segrnn-lstm-peephole:16") == ("segrnn", "lstm-peephole", 16, None)
    layer = specs.forecaster("segrnn:16", 24)
    assert isinstance(layer, SegRNN) and isinstance(layer.recurrent, GRU)


def test_window_dataset_with_several_targets_and_baselines():
    data = 100.0 * np.arange(40)[:, None] + np.arange(3)
    ds = WindowDataset(data, lookback=4, delay=0, horizon=2, target=[2, 0], batch_size=8)
    x, y = next(iter(ds))
    assert y.shape == (8, 2, 2) and y[0].tolist() == [[402, 400], [502, 500]]
    from rnnkit.data import last_value, linear, seasonal_naive
    assert last_value(ds)[0].tolist() == [[302, 300], [302, 300]]
    assert seasonal_naive(ds, 1).shape == ds.targets().shape
    np.testing.assert_allclose(linear(ds, ds), ds.targets(), atol=1e-6)


def test_segrnn_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = Sequential([SegRNN(GRU(8), horizon=12, segment=6, head_initializer="glorot_uniform")])
    model.build((None, 24, 3))
    model.eval()
    model.export(tmp_path / "segrnn.onnx")
    x = np.random.default_rng(0).standard_normal((4, 24, 3)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "segrnn.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
