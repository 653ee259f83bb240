"""model.save / load_model, save_weights / load_weights, layer configs, atomic writes."""

import json
import os

import numpy as np
import pytest
import torch

from rnnkit import layers, regularizers, storage
from rnnkit.errors import ChecksumError, ConfigError, DataFormatError, NotBuiltError
from rnnkit.models import Model, Sequential, load_model, persistence
from rnnkit.training.guard import NonFiniteError

# its own generator: the global RNG's state at import depends on which test files were collected
X = torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(0))


def architectures():
    return {
        "lstm": [layers.LSTM(5, peephole=True, return_sequences=True), layers.GRU(4),
                 layers.Dense(2, activation=torch.tanh,
                              kernel_regularizer=regularizers.l1_l2(0.01, 0.02))],
        "wrappers": [layers.Bidirectional(layers.GRU(3, reset_after=False, return_sequences=True),
                                          merge_mode="sum"),
                     layers.Stacked(layers.SimpleRNN(4, lags=(1, 2)), depth=2),
                     layers.Dense(1)],
        "dilated": [layers.DilatedRNN(layers.GRU(3), num_layers=2, final_conv=True,
                                      return_sequences=True),
                    layers.TimeDistributed(layers.Dense(2)), layers.BatchNormalization(),
                    layers.Conv1D(2, 3, padding="causal"), layers.GlobalAveragePooling1D()],
        "shallow": [layers.SimpleRNN(4, output_units=2, shortcut=True, activation="relu"),
                    layers.Dropout(0.1)],
    }


@pytest.mark.parametrize("name", sorted(architectures()))
def test_save_load_round_trip_gives_the_same_outputs(tmp_path, name):
    model = Sequential(architectures()[name])
    model.train()
    model(X)  # build, and move the BatchNormalization running statistics off their init
    model.eval()
    expected = model(X)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    loaded.eval()
    torch.testing.assert_close(loaded(X), expected, rtol=0, atol=0)
    assert [type(layer).__name__ for layer in loaded.layers] == \
        [type(layer).__name__ for layer in model.layers]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["format"] == "rnnkit" and config["format_version"] == 1
    assert config["torch_version"] == torch.__version__
    assert config["weights_sha256"] == persistence.sha256(
        (tmp_path / "m" / "model.safetensors").read_bytes())


def test_embedding_model_keeps_names_regularizers_and_preprocessing(tmp_path):
    model = Sequential([layers.Embedding(20, 4, mask_zero=True, name="emb"),
                        layers.LSTM(3, kernel_regularizer=regularizers.l2(0.5)),
                        layers.Dense(1, activation="sigmoid")])
    ids = torch.tensor([[1, 2, 0, 0], [3, 4, 5, 6]])
    model(ids)
    model.preprocessing = {"vectorizer": {"max_tokens": 20, "vocabulary": ["", "[UNK]", "a"]}}
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.layers[0].name == "emb" and loaded.layers[0].mask_zero
    assert loaded.preprocessing == model.preprocessing
    torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)
    torch.testing.assert_close(loaded.regularization_loss(), model.regularization_loss())


def test_layer_config_round_trip_is_json_and_stable():
    for layer in [layers.GRU(3, lags=(1, 4), dropout=0.1, kernel_initializer="he_normal"),
                  layers.LSTM(2, coupled=True, recurrent_activation=torch.sigmoid),
                  layers.Conv1D(3, 2, strides=2), layers.Embedding(5, 2)]:
        text = json.dumps(layer.get_config())
        again = type(layer).from_config(json.loads(text))
        assert json.dumps(again.get_config()) == text
    assert layers.LSTM(2, recurrent_activation=torch.sigmoid).get_config()[
        "recurrent_activation"] == "sigmoid"


def test_unserialisable_argument_names_layer_and_argument(tmp_path):
    model = Sequential([layers.SimpleRNN(3, activation=lambda x: x.clamp(-1, 1), name="odd")])
    model(X)
    with pytest.raises(ConfigError, match=r"odd \(SimpleRNN\): argument 'activation' = <lambda>"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_subclassed_model_needs_get_config_but_weights_save(tmp_path):
    class Net(Model):
        def __init__(self):
            super().__init__()
            self.rnn = layers.GRU(3)

        def forward(self, x):
            return self.rnn(x)

    net = Net()
    net(X)
    net.built = True
    with pytest.raises(ConfigError, match="subclassed Model needs get_config"):
        net.save(tmp_path / "m")
    net.save_weights(tmp_path / "w.safetensors")
    other = Net()
    other(X)
    other.built = True
    other.load_weights(tmp_path / "w.safetensors")
    torch.testing.assert_close(other(X), net(X), rtol=0, atol=0)


def test_custom_layer_class_loads_by_custom_objects(tmp_path):
    class Scale(layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    model = Sequential([layers.GRU(3), Scale(3.0)])
    model(X)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m", custom_objects={"Scale": Scale})
    assert loaded.layers[1].factor == 3.0
    torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)


def _saved(tmp_path):
    model = Sequential([layers.GRU(3), layers.Dense(1)])
    model(X)
    model.save(tmp_path / "m")
    return model, tmp_path / "m"


def test_nan_weights_are_never_saved_and_the_previous_checkpoint_stays(tmp_path):
    model, path = _saved(tmp_path)
    before = (path / "model.safetensors").read_bytes()
    with torch.no_grad():
        model.layers[1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"weight 'layers.1.bias' has 1 NaN/inf entries"):
        model.save(path)
    with pytest.raises(NonFiniteError, match="refusing to save"):
        model.save_weights(tmp_path / "w.safetensors")
    assert (path / "model.safetensors").read_bytes() == before


def test_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model, path = _saved(tmp_path)
    expected = model(X)
    with torch.no_grad():
        model.layers[1].bias.add_(1.0)
    real_write = storage._write_synced
    calls = []

    def crash_on_second_file(p, data):
        calls.append(p)
        if len(calls) == 2:
            raise OSError("disk full")
        real_write(p, data)

    monkeypatch.setattr(storage, "_write_synced", crash_on_second_file)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    torch.testing.assert_close(load_model(path)(X), expected, rtol=0, atol=0)
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temporary directory left behind


def test_crash_between_the_renames_is_recovered_from_the_backup(tmp_path, monkeypatch):
    model, path = _saved(tmp_path)
    expected = model(X)
    real_rename = os.rename
    calls = []

    def crash_on_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("power cut")
        real_rename(src, dst)

    monkeypatch.setattr(storage.os, "rename", crash_on_second_rename)
    with pytest.raises(OSError, match="power cut"):
        model.save(path)
    monkeypatch.undo()
    assert not path.exists() and (tmp_path / ".m.old").is_dir()
    torch.testing.assert_close(load_model(path)(X), expected, rtol=0, atol=0)


def test_bad_directories_give_clear_errors(tmp_path):
    model, path = _saved(tmp_path)
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:len(data) // 2])
    with pytest.raises(ChecksumError, match=r"model.safetensors: sha256 .* truncated or corrupted"):
        load_model(path)
    weights.write_bytes(data)
    config = json.loads((path / "config.json").read_text())
    for change, message in [({"format": "transformers"}, "not an rnnkit rnnkit file"),
                            ({"format_version": 7}, "unknown format_version 7"),
                            ({"rnnkit_version": "9.0.0"}, "written by rnnkit 9.0.0, another major")]:
        (path / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(DataFormatError, match=message):
            load_model(path)
    (path / "config.json").write_text('{"format": "rnn')
    with pytest.raises(DataFormatError, match="config.json: not valid JSON"):
        load_model(path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataFormatError, match=r"other: not an rnnkit model directory \(no config"):
        load_model(tmp_path / "other")
    with pytest.raises(ConfigError, match="not an rnnkit checkpoint directory.*refusing"):
        model.save(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(DataFormatError, match="no such model directory"):
        load_model(tmp_path / "missing")
    with pytest.raises(DataFormatError, match="a file; rnnkit saves models as directories"):
        load_model(tmp_path / "other" / "notes.txt")
    with pytest.raises(ConfigError, match="already exists; pass overwrite=True"):
        model.save(path, overwrite=False)
    with pytest.raises(NotBuiltError, match="build the model"):
        Sequential([layers.GRU(2)]).save(tmp_path / "unbuilt")


def test_weights_file_errors(tmp_path):
    model, _ = _saved(tmp_path)
    path = model.save_weights(tmp_path / "w.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:-4] + bytes(4))
    with pytest.raises(ChecksumError, match="tensors' sha256 does not match"):
        model.load_weights(path)
    path.write_bytes(data[:20])
    with pytest.raises(DataFormatError, match="not a readable safetensors weights file"):
        model.load_weights(path)
    small = Sequential([layers.GRU(2), layers.Dense(1)])
    small(X)
    path.write_bytes(data)
    with pytest.raises(DataFormatError, match=r"do not fit .*wrong shapes"):
        small.load_weights(path)


def test_keras_files_go_to_the_keras_loader(tmp_path):
    from rnnkit.interop import keras_file

    with pytest.raises(FileNotFoundError, match=r"load_keras: no such file: .*a\.keras"):
        load_model(tmp_path / "a.keras")  # registered by rnnkit.interop at import
    seen = []
    persistence.register_loader((".keras", ".weights.h5"),
                                lambda p: seen.append(str(p)) or "model")
    try:
        assert load_model(tmp_path / "a.keras") == "model"
        assert load_model(tmp_path / "b.weights.h5") == "model"
    finally:
        persistence.register_loader((".keras", ".weights.h5"), keras_file.load_keras)
    assert seen == [str(tmp_path / "a.keras"), str(tmp_path / "b.weights.h5")]


def test_preprocessing_must_be_json(tmp_path):
    model, _ = _saved(tmp_path)
    model.preprocessing = {"mean": np.zeros(3)}
    with pytest.raises(ConfigError, match="model.preprocessing must hold only JSON values"):
        model.save(tmp_path / "p")
