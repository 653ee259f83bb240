"""The doctor: one test per check of the lecture's NaN checklist, the report formats, and that
diagnosing leaves the model exactly as it was."""

import json

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit import layers, regularizers
from rnnkit.data import Normalizer, WindowDataset
from rnnkit.diagnosis import Finding, Report, diagnose
from rnnkit.errors import ConfigError
from rnnkit.models import Sequential
from rnnkit.optimizers import SGD, Adam, RMSprop


def _series(n=64, t=6, f=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, t, f)).astype(np.float32)
    return x, x[:, -1, :1].copy()


def _model(loss="mse", optimizer="rmsprop", head=None, rnn=None):
    model = Sequential([rnn or layers.SimpleRNN(4), head or layers.Dense(1)])
    model.compile(optimizer=optimizer, loss=loss)
    return model


def _only(report: Report, check: str) -> Finding:
    found = [f for f in report.findings if f.check == check]
    assert len(found) == 1, str(report)
    return found[0]


def test_top_level_doctor_is_diagnose():
    assert rnnkit.doctor is diagnose


def test_healthy_setup_has_no_errors_or_warnings():
    x, y = _series()
    report = diagnose(_model(), x, y, probe_steps=2)
    assert [f for f in report.findings if f.severity != "info"] == [], str(report)
    assert {"non-finite-values", "activation-loss", "exploding-gradients"} <= set(report.passed)


def test_nan_and_inf_positions_match_numpy():
    x, y = _series()
    x[5, 2, 1] = np.nan
    x[9, 0, 0] = np.inf
    y[3, 0] = np.nan
    report = diagnose(_model(), x, y, probe_steps=2)
    found = [f for f in report.findings if f.check == "non-finite-values"]
    by_array = {f.where["array"]: f for f in found}
    assert by_array["x"].where["count"] == 2 and by_array["y"].where["count"] == 1
    expected = [dict(zip(("row", "step", "feature"), map(int, i)))
                for i in np.argwhere(~np.isfinite(x))]
    assert by_array["x"].where["positions"] == expected
    assert by_array["y"].where["positions"] == [{"row": 3, "feature": 0}]
    assert "1 NaN, 1 inf" in by_array["x"].message and by_array["x"].severity == "error"
    probe = _only(report, "gradient-probe")
    assert "did not run" in probe.message


def test_nan_in_table_rows_names_file_line_and_column():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(40, 2))
    table[7, 1] = np.nan
    lines = np.arange(40) + 3  # e.g. two header lines
    source = {"file": "w.csv", "lines": lines, "columns": ["p", "T"]}
    report = diagnose(_model(), table, table[:, :1] * 0 + 1, source=source, probe_steps=0)
    found = _only(report, "non-finite-values")
    assert found.where["positions"] == [{"row": 7, "feature": 1, "file": "w.csv", "line": 10,
                                         "column": "T"}]
    assert "w.csv: line 10, column 'T'" in found.message


def test_window_dataset_nan_rows_map_to_csv_lines():
    data = np.random.default_rng(2).normal(size=(80, 2))
    data[30, 0] = np.nan
    ds = WindowDataset(data, lookback=10, delay=1, end=60, batch_size=8)
    source = {"file": "s.csv", "row_offset": 2, "columns": ["a", "b"]}
    found = _only(diagnose(_model(), ds, source=source, probe_steps=0), "non-finite-values")
    assert found.where["positions"] == [{"row": 30, "feature": 0, "file": "s.csv", "line": 32,
                                         "column": "a"}]


def test_zero_steps_inside_sequences_but_not_padding():
    x, y = _series(n=8, t=10)
    x[1, :3] = 0.0  # leading padding: fine
    x[2, 7:] = 0.0  # trailing padding: fine
    x[4, 5] = 0.0  # a dropout in the middle
    report = diagnose(_model(), x, y, probe_steps=0)
    found = _only(report, "zero-rows")
    assert found.where["count"] == 1
    assert found.where["positions"] == [{"row": 4, "step": 5}]


def test_one_hot_targets_with_no_class():
    x, _ = _series(n=12)
    y = np.eye(3, dtype=np.float32)[np.arange(12) % 3]
    y[6] = 0
    model = _model("categorical_crossentropy", head=layers.Dense(3, activation="softmax"))
    found = _only(diagnose(model, x, y, probe_steps=0), "zero-rows")
    assert found.where["array"] == "y" and found.where["positions"] == [{"row": 6}]


def test_unnormalized_features_are_named():
    x, y = _series()
    x[..., 2] = x[..., 2] * 40 + 1000  # feature 2 only
    found = _only(diagnose(_model(), x, y, probe_steps=0), "unnormalized-features")
    assert found.where["features"] == [2]
    assert f"mean {x[..., 2].astype(np.float64).mean():.4g}" in found.message


def test_normalization_over_train_and_validation_is_a_leak():
    rng = np.random.default_rng(3)
    raw = np.concatenate([rng.normal(0, 1, (60, 2)), rng.normal(3, 2, (40, 2))])  # drifting
    y = np.zeros((100, 1), np.float32)
    leaked = (raw - raw.mean(0)) / raw.std(0)
    clean = (raw - raw[:60].mean(0)) / raw[:60].std(0)
    model = _model(rnn=layers.Dense(4))
    assert "normalization-leak" in diagnose(model, leaked, y, validation_split=0.4,
                                            probe_steps=0).checks()
    assert "normalization-leak" not in diagnose(model, clean, y, validation_split=0.4,
                                                probe_steps=0).checks()


def test_window_normalizer_fit_on_all_rows_is_a_leak():
    data = np.cumsum(np.random.default_rng(4).normal(size=(200, 2)), axis=0)  # a random walk
    leaked = Normalizer().fit(data)
    train = WindowDataset(data, lookback=8, delay=1, end=120, normalizer=leaked)
    found = _only(diagnose(_model(), train, probe_steps=0), "normalization-leak")
    assert found.where == {"normalizer_rows": [0, 200], "training_rows": [0, 121]}
    clean = Normalizer().fit(data, 0, 121)
    ok = WindowDataset(data, lookback=8, delay=1, end=120, normalizer=clean)
    assert "normalization-leak" in diagnose(_model(), ok, probe_steps=0).passed


@pytest.mark.parametrize("act,units,loss,labels,message", [
    ("sigmoid", 3, "categorical_crossentropy", "onehot3", "sigmoid outputs with categorical"),
    ("softmax", 1, "binary_crossentropy", "binary", "softmax over a single unit"),
    ("sigmoid", 1, "binary_crossentropy", "plusminus", "needs labels in {0, 1}"),
    ("softmax", 5, "sparse_categorical_crossentropy", "ids3", "labels use only 3"),
    ("linear", 1, "binary_crossentropy", "binary", "are not probabilities"),
    ("sigmoid", 1, "mse", "large", "cannot be reached"),
])
def test_activation_loss_mismatches(act, units, loss, labels, message):
    x, _ = _series(n=30)
    y = {"onehot3": np.eye(3)[np.arange(30) % 3], "binary": (np.arange(30) % 2)[:, None],
         "plusminus": np.where(np.arange(30) % 2, 1, -1)[:, None], "ids3": np.arange(30) % 3,
         "large": np.linspace(0, 5, 30)[:, None]}[labels].astype(np.float32)
    if loss.startswith("sparse"):
        y = y.astype(np.int64)
    model = _model(loss, head=layers.Dense(units, activation=act))
    found = [f for f in diagnose(model, x, y, probe_steps=0).findings
             if f.check == "activation-loss"]
    assert len(found) == 1 and message in found[0].message, found
    assert found[0].where["activation"] == act
    assert found[0].where["loss"] == rnnkit.losses.get(loss).name


def test_small_last_batch():
    x, y = _series(n=100)
    found = _only(diagnose(_model(), x, y, batch_size=32, probe_steps=0), "last-batch")
    assert found.where == {"samples": 100, "batch_size": 32, "last_batch": 4}
    assert "batch_size=25" in found.suggestion  # the divisor of 100 nearest 32
    assert "last-batch" in diagnose(_model(), x, y, batch_size=25, probe_steps=0).passed


def test_exploding_gradients_on_raw_data_with_relu_and_sgd():
    x, _ = _series(n=64, t=20)
    x = x * 50 + 1000
    y = x[:, -1, :1] - 1000
    model = _model(optimizer=SGD(0.01), rnn=layers.SimpleRNN(16, activation="relu"))
    found = _only(diagnose(model, x, y, probe_steps=5), "exploding-gradients")
    assert found.severity == "error" and "clipnorm=1.0" in found.suggestion
    assert "RMSprop or Adam" in found.suggestion
    assert found.where["norms"][0] > 1e3


def test_exploding_with_clipping_is_a_warning_that_names_it():
    x, _ = _series(n=64, t=20)
    x = x * 50 + 1000
    model = _model(optimizer=RMSprop(clipnorm=1.0), rnn=layers.SimpleRNN(16, activation="relu"))
    found = _only(diagnose(model, x, x[:, -1, :1], probe_steps=2), "exploding-gradients")
    assert found.severity == "warning" and "clipnorm=1.0" in found.message


def test_vanishing_through_time_for_simple_rnn_on_long_sequences():
    x, y = _series(n=16, t=60)
    rnn = layers.SimpleRNN(8, recurrent_initializer=lambda w: torch.nn.init.orthogonal_(w, 0.3))
    found = _only(diagnose(_model(rnn=rnn), x, y, probe_steps=1), "vanishing-gradients")
    assert found.severity == "warning" and "use LSTM or GRU" in found.suggestion
    assert found.where["ratio_first_to_last"] < 1e-3 and found.where["steps"] == 60


def test_dropout_and_learning_rate_and_regularization():
    x, y = _series()
    model = Sequential([layers.LSTM(4, recurrent_dropout=0.6,
                                    kernel_regularizer=regularizers.l2(10.0)),
                        layers.Dropout(0.5), layers.Dense(1)])
    model.compile(optimizer=Adam(learning_rate=1.0), loss="mse")
    report = diagnose(model, x, y, probe_steps=1)
    dropout = [f.where for f in report.findings if f.check == "dropout"]
    assert dropout == [{"layer": model.layers[0].name, "recurrent_dropout": 0.6},
                       {"layer": model.layers[1].name, "rate": 0.5}]
    assert "far above" in _only(report, "learning-rate").message
    reg = _only(report, "regularization")
    penalty = 10.0 * model.layers[0].cell.weight_ih.detach().square().sum().item()
    assert reg.where["regularization_loss"] == pytest.approx(penalty, rel=1e-5)


def test_uncompiled_model_says_so_or_uses_given_loss():
    x, y = _series()
    model = Sequential([layers.SimpleRNN(4), layers.Dense(3, activation="sigmoid")])
    report = diagnose(model, x, np.eye(3)[np.arange(64) % 3], probe_steps=0)
    assert "not-compiled" in report.checks() and "activation-loss" not in report.passed
    report = diagnose(model, x, np.eye(3)[np.arange(64) % 3], loss="categorical_crossentropy",
                      probe_steps=1)
    assert "activation-loss" in report.checks()
    assert any("used RMSprop" in f.message for f in report.findings)
    assert model.optimizer is None


def test_diagnose_restores_weights_optimizer_state_grads_and_rng():
    x, y = _series()
    model = _model(rnn=layers.LSTM(4, dropout=0.2))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    opt_state = model.optimizer.torch_optimizer.state_dict()
    opt_before = {i: {k: v.clone() for k, v in s.items()} for i, s in opt_state["state"].items()}
    grads = [p.grad.clone() for p in model.parameters()]
    iterations = model.optimizer.iterations
    rng = torch.get_rng_state()
    diagnose(model, x, y, probe_steps=3)
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    after = model.optimizer.torch_optimizer.state_dict()["state"]
    assert all(torch.equal(after[i][k], v) for i, s in opt_before.items() for k, v in s.items())
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert model.optimizer.iterations == iterations
    assert torch.equal(torch.get_rng_state(), rng)


def test_report_text_and_json():
    x, y = _series()
    x[0, 0, 0] = np.nan
    report = diagnose(_model(), x, y, probe_steps=0)
    data = json.loads(report.to_json())
    assert list(data) == ["findings"]
    assert data["findings"][0] == {
        "check": "non-finite-values", "severity": "error",
        "message": report.findings[0].message, "suggestion": report.findings[0].suggestion,
        "where": {"array": "x", "count": 1, "kinds": {"NaN": 1, "inf": 0},
                  "positions": [{"row": 0, "step": 0, "feature": 0}]}}
    text = str(report)
    assert text.startswith("rnnkit doctor: 1 error, 0 warnings")
    assert "ERROR   [non-finite-values] x holds 1 non-finite values" in text
    assert report.errors == [report.findings[0]]


def test_finding_rejects_unknown_severity():
    with pytest.raises(ValueError, match="severity must be one of"):
        Finding("x", "fatal", "m", "s")


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"validation_split": 1.0}, r"validation_split must be in \[0, 1\), got 1.0"),
    ({"probe_steps": -1}, "probe_steps must be an integer >= 0, got -1"),
])
def test_bad_doctor_arguments(kwargs, message):
    x, y = _series()
    with pytest.raises(ConfigError, match=message):
        diagnose(_model(), x, y, **kwargs)


def test_x_and_y_of_different_lengths():
    x, y = _series()
    with pytest.raises(ConfigError, match="x has 64, y has 63"):
        diagnose(_model(), x, y[:-1])
