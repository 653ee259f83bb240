"""Keras 3 files into rnnkit: real Keras models (KERAS_BACKEND=torch, built in a subprocess so the
backend is set before keras is imported) saved as .keras / .weights.h5, loaded by rnnkit, and
predicting the same numbers."""

import importlib.util
import json
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from rnnkit import layers
from rnnkit.errors import ConfigError, DataFormatError, ShapeError
from rnnkit.interop import load_keras
from rnnkit.interop.keras_file import layer_from_config, model_from_config
from rnnkit.models import Sequential

# find_spec, not importorskip: importing keras here would fix its backend for the whole session
pytestmark = pytest.mark.skipif(importlib.util.find_spec("keras") is None
                                or importlib.util.find_spec("h5py") is None,
                                reason="the keras extra (keras, h5py) is not installed")

TOL = 1e-5  # float32, max abs difference

# Each model: (name, Keras layers after Input, input shape, kind of input)
_BUILD = textwrap.dedent("""
    import os, sys
    os.environ["KERAS_BACKEND"] = "torch"
    import numpy as np
    import keras
    from keras import layers as L

    out = sys.argv[1]
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, size=(4, 9))
    padded = ids.copy(); padded[0, 5:] = 0; padded[2, 3:] = 0  # post-padding, mask_zero
    series = rng.standard_normal((4, 9, 3)).astype("float32")

    def bias(model):  # random biases: Keras starts them at 0/1, which would hide layout bugs
        for w in model.weights:
            if w.path.endswith("bias"):
                w.assign(rng.standard_normal(tuple(w.shape)).astype("float32") * 0.5)

    models = {
        "simple": ((None,), "int32", ids, [L.Embedding(50, 8), L.SimpleRNN(6, activation="relu"),
                                           L.Dense(1, activation="sigmoid")]),
        "lstm_masked": ((None,), "int32", padded, [L.Embedding(50, 8, mask_zero=True), L.LSTM(6),
                                                   L.Dense(3, activation="softmax")]),
        "gru_both": ((None, 3), "float32", series, [L.GRU(5, return_sequences=True),
                                                    L.GRU(4, reset_after=False), L.Dense(2)]),
        "bidirectional": ((None, 3), "float32", series, [
            L.Bidirectional(L.LSTM(4, return_sequences=True)),
            L.Bidirectional(L.GRU(3), merge_mode="sum"), L.Dense(1)]),
        "stacked": ((None, 3), "float32", series, [
            L.SimpleRNN(5, return_sequences=True), L.LSTM(4, return_sequences=True),
            L.GRU(3, go_backwards=True), L.Dropout(0.3), L.Dense(2, activation="tanh")]),
    }
    for name, (shape, dtype, x, stack) in models.items():
        model = keras.Sequential([keras.Input(shape, dtype=dtype), *stack])
        bias(model)
        model.save(f"{out}/{name}.keras")
        model.save_weights(f"{out}/{name}.weights.h5")
        np.savez(f"{out}/{name}.npz", x=x, y=model.predict(x, verbose=0))
""")


def _npz(path) -> dict:
    with np.load(path) as f:  # closes the file (an open NpzFile warns when collected)
        return dict(f)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("keras")
    script = out / "build.py"
    script.write_text(_BUILD)
    subprocess.run([sys.executable, str(script), str(out)], check=True, timeout=180,
                   capture_output=True)
    return out


@pytest.mark.parametrize("name", ["simple", "lstm_masked", "gru_both", "bidirectional", "stacked"])
def test_keras_file_predicts_as_keras(saved, name):
    data = _npz(saved / f"{name}.npz")
    model = load_keras(saved / f"{name}.keras")
    got = model.predict(data["x"], verbose=0)
    assert got.shape == data["y"].shape
    assert np.abs(got - data["y"]).max() <= TOL


def test_weights_file_into_an_rnnkit_architecture(saved):
    data = _npz(saved / "bidirectional.npz")
    model = Sequential([layers.Bidirectional(layers.LSTM(4, return_sequences=True)),
                        layers.Bidirectional(layers.GRU(3), merge_mode="sum"), layers.Dense(1)])
    model.build((None, None, 3))
    before = model.predict(data["x"], verbose=0)
    assert load_keras(saved / "bidirectional.weights.h5", model=model) is model
    got = model.predict(data["x"], verbose=0)
    assert np.abs(got - data["y"]).max() <= TOL
    assert np.abs(before - data["y"]).max() > 1e-2  # the load changed the predictions


def test_weights_file_needs_an_architecture(saved):
    with pytest.raises(ConfigError, match=r"holds weights only; pass the architecture"):
        load_keras(saved / "simple.weights.h5")


def test_weights_file_with_a_mismatched_architecture(saved):
    model = Sequential([layers.LSTM(4), layers.Dense(1)])
    model.build((None, None, 3))
    with pytest.raises(DataFormatError, match=r"no weights left for layer .*lstm"):
        load_keras(saved / "gru_both.weights.h5", model=model)
    wrong_size = Sequential([layers.GRU(7, return_sequences=True), layers.GRU(4, reset_after=False),
                             layers.Dense(2)])
    wrong_size.build((None, None, 3))
    with pytest.raises(ShapeError, match=r"expected shape"):
        load_keras(saved / "gru_both.weights.h5", model=wrong_size)


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file"):
        load_keras(tmp_path / "missing.keras")
    other = tmp_path / "model.h5"
    other.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"ending in .keras or .weights.h5, got 'model.h5'"):
        load_keras(other)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match=r"not a Keras 3 .keras archive"):
        load_keras(broken)


def test_archive_without_weights_file(tmp_path):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps({"class_name": "Sequential"}))
    with pytest.raises(DataFormatError, match=r"model.weights.h5"):
        load_keras(path)


def test_unsupported_layers_and_models_are_named():
    with pytest.raises(ConfigError, match=r"layer 'conv' is a Keras Conv1D"):
        layer_from_config({"class_name": "Conv1D", "config": {"name": "conv"}})
    with pytest.raises(ConfigError, match=r"only Keras Sequential models .* 'Functional'"):
        model_from_config({"class_name": "Functional", "config": {}})
    stateful = {"class_name": "LSTM", "config": {"name": "l", "units": 2, "stateful": True}}
    with pytest.raises(ConfigError, match=r"'l' uses return_state or stateful"):
        layer_from_config(stateful)
