"""Bad input, as a catalogue: each mistake through the Python API gives a clear error that says
where, and leaves nothing half done (no training step taken, no file written)."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnkit import layers
from rnnkit.data import csv_to_npy, read_table
from rnnkit.diagnosis import diagnose
from rnnkit.errors import ConfigError, DataFormatError, ShapeError
from rnnkit.models import Sequential

FAST = settings(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _model():
    model = Sequential([layers.SimpleRNN(3), layers.Dense(1)])
    model.compile("rmsprop", "mse")
    return model


def _embedding_model(input_dim=10):
    model = Sequential([layers.Embedding(input_dim, 4), layers.SimpleRNN(3), layers.Dense(1)])
    model.compile("rmsprop", "mse")
    return model


def _x(n=8, t=4, f=2):
    return np.random.rand(n, t, f).astype(np.float32)


def _y(n=8):
    return np.random.rand(n, 1).astype(np.float32)


def _fit_refuses(model, x, y, error, match, **kwargs):
    """fit raises ``error`` matching ``match`` before any optimizer step."""
    with pytest.raises(error, match=match):
        model.fit(x, y, verbose=0, **kwargs)
    assert model.optimizer.iterations == 0
    assert model.history is None


def _with(a, index, value):
    a = a.copy()
    a[index] = value
    return a


TABLE = [  # (case, x, y, fit kwargs, error, message)
    ("nan in x", _with(_x(), (5, 2, 1), np.nan), _y(), {}, DataFormatError,
     r"x: non-finite value nan at sample 5, step 2, feature 1 \(1 non-finite"),
    ("inf in y", _x(), _with(_y(), (3, 0), np.inf), {}, DataFormatError,
     r"y: non-finite value inf at sample 3, feature 0"),
    ("ragged lists", [[[0.1], [0.2]], [[0.3]]], [[1.0], [2.0]], {}, ShapeError,
     "x: cannot make an array of it .*pad sequences to one length first"),
    ("strings in x", [[["0.1", "abc"]]], [[1.0]], {}, DataFormatError,
     r"x: expected numbers, got 'abc' at index \[0, 0, 1\]"),
    ("strings in y", _x(2), ["1.5", "high"], {}, DataFormatError,
     r"y: expected numbers, got 'high' at index \[1\]"),
    ("x and y lengths", _x(8), _y(7), {}, ShapeError,
     "x and y must have the same number of samples: x has 8, y has 7"),
    ("empty data", np.zeros((0, 4, 2), np.float32), np.zeros((0, 1), np.float32), {}, ShapeError,
     r"x has no samples \(empty data\)"),
    ("batch_size 0", _x(), _y(), {"batch_size": 0}, ConfigError,
     "batch_size must be a positive integer, got 0"),
    ("batch_size -3", _x(), _y(), {"batch_size": -3}, ConfigError,
     "batch_size must be a positive integer, got -3"),
    ("validation_split 1", _x(), _y(), {"validation_split": 1.0}, ConfigError,
     r"validation_split must be in \[0, 1\), got 1.0"),
    ("validation_split < 0", _x(), _y(), {"validation_split": -0.1}, ConfigError,
     r"validation_split must be in \[0, 1\), got -0.1"),
    ("epochs < 0", _x(), _y(), {"epochs": -1}, ConfigError, "epochs must be >= 0, got -1"),
]


@pytest.mark.parametrize("case,x,y,kwargs,error,message", TABLE, ids=[row[0] for row in TABLE])
def test_fit_refuses_bad_input_before_training(case, x, y, kwargs, error, message):
    _fit_refuses(_model(), x, y, error, message, **kwargs)


@pytest.mark.parametrize("bad,shown", [(10, 10), (-1, -1), (99, 99)])
def test_token_ids_outside_the_vocabulary(bad, shown):
    x = np.random.randint(0, 10, size=(8, 5))
    x[0, 3] = bad  # in the first batch: refused before the first step
    _fit_refuses(_embedding_model(10), x, _y(), ShapeError,
                 rf"embedding.*\(Embedding\): token id {shown} is outside \[0, input_dim=10\)")


@pytest.mark.parametrize("where", ["train", "validation"])
def test_bad_token_id_in_a_late_batch_trains_nothing(where):
    x = np.random.randint(0, 10, size=(8, 5))
    x[-1, 0] = 10  # the last sample: the last training batch, or the validation split
    kwargs = {"batch_size": 2, "validation_split": 0.25 if where == "validation" else 0.0}
    _fit_refuses(_embedding_model(10), x, _y(), ShapeError, r"token id 10 is outside", **kwargs)


def test_float_token_ids_are_refused():
    with pytest.raises(ShapeError, match="expected integer token ids, got dtype torch.float32"):
        _embedding_model().predict(np.random.rand(2, 5), verbose=0)


def test_predict_and_evaluate_refuse_nan_inputs():
    model = _model()
    x = _with(_x(), (1, 3, 0), np.nan)
    with pytest.raises(DataFormatError, match="x: non-finite value nan at sample 1, step 3"):
        model.predict(x, verbose=0)
    with pytest.raises(DataFormatError, match="x: non-finite value nan at sample 1, step 3"):
        model.evaluate(x, _y(), verbose=0)


def test_validation_data_with_nan_is_refused_before_training():
    model = _model()
    _fit_refuses(model, _x(), _y(), DataFormatError,
                 "validation_data y: non-finite value nan at sample 0",
                 validation_data=(_x(2), np.full((2, 1), np.nan, np.float32)))


def _csv(tmp_path, text):
    path = tmp_path / "d.csv"
    path.write_text(text)
    return path


def test_target_column_that_does_not_exist(tmp_path):
    path = _csv(tmp_path, "a,b\n1,2\n3,4\n")
    with pytest.raises(DataFormatError, match=r"line 1 \(header\): missing column 'T \(degC\)'"):
        read_table(path, numeric=["a", "T (degC)"])
    out = tmp_path / "d.npy"
    with pytest.raises(DataFormatError, match="missing column 'c'"):
        csv_to_npy(path, out, numeric=["c"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]  # no partial output


def test_bad_cell_in_csv_leaves_no_partial_npy(tmp_path):
    path = _csv(tmp_path, "a,b\n1,2\n3,x\n")
    with pytest.raises(DataFormatError, match="line 3, column 'b': expected a number, got 'x'"):
        csv_to_npy(path, tmp_path / "d.npy", chunk_rows=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]


# -- properties ------------------------------------------------------------------------------------

@st.composite
def _array_with_bad_value(draw):
    shape = draw(st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 4)))
    index = tuple(draw(st.integers(0, s - 1)) for s in shape)
    value = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return _with(np.random.rand(*shape).astype(np.float32), index, value), index, value


@FAST
@given(_array_with_bad_value())
def test_fit_names_the_first_non_finite_position(case):
    x, index, value = case
    torch.manual_seed(0)
    _fit_refuses(_model(), x, _y(len(x)), DataFormatError,
                 rf"x: non-finite value {value} at sample {index[0]}, step {index[1]}, "
                 rf"feature {index[2]} \(1 non-finite values in total\)")


@FAST
@given(_array_with_bad_value())
def test_doctor_lists_the_same_position(case):
    x, index, _ = case
    report = diagnose(_model(), x, _y(len(x)), probe_steps=0)
    found = [f for f in report.findings if f.check == "non-finite-values"]
    assert [f.where["positions"] for f in found] == [
        [{"row": index[0], "step": index[1], "feature": index[2]}]]


@FAST
@given(st.integers(2, 50), st.lists(st.integers(-5, 60), min_size=1, max_size=12))
def test_embedding_names_the_offending_id(input_dim, ids):
    bad = [i for i in ids if i < 0 or i >= input_dim]
    layer = layers.Embedding(input_dim, 2)
    x = torch.tensor([ids])
    if not bad:
        assert layer(x).shape == (1, len(ids), 2)
        return
    shown = min(ids) if min(ids) < 0 else max(ids)
    with pytest.raises(ShapeError, match=rf"token id {shown} is outside \[0, input_dim={input_dim}\)"):
        layer(x)


@FAST
@given(st.one_of(st.integers(-100, 0), st.floats(-5, 0.99).filter(lambda v: v != int(v))))
def test_batch_size_must_be_a_positive_integer(batch_size):
    _fit_refuses(_model(), _x(), _y(), ConfigError,
                 rf"batch_size must be a positive integer, got {batch_size!r}", batch_size=batch_size)


@FAST
@given(st.one_of(st.floats(-10, -1e-9), st.floats(1.0, 10.0)))
def test_validation_split_outside_unit_interval(split):
    _fit_refuses(_model(), _x(), _y(), ConfigError, r"validation_split must be in \[0, 1\)",
                 validation_split=split)


@FAST
@given(st.integers(-1000, -1))
def test_negative_epochs(epochs):
    _fit_refuses(_model(), _x(), _y(), ConfigError, f"epochs must be >= 0, got {epochs}",
                 epochs=epochs)


@FAST
@given(st.integers(1, 12), st.integers(1, 12))
def test_x_and_y_lengths_must_agree(n_x, n_y):
    if n_x == n_y:
        return
    _fit_refuses(_model(), _x(n_x), _y(n_y), ShapeError,
                 f"x has {n_x}, y has {n_y}")
