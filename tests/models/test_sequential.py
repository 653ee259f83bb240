"""Sequential: building, summary, masks, and Keras's compile / fit / evaluate / predict."""

import numpy as np
import pytest
import torch

from rnnkit import regularizers
from rnnkit.callbacks import Callback
from rnnkit.errors import ConfigError, NotBuiltError, ShapeError
from rnnkit.layers import (
    Conv1D,
    Dense,
    Dropout,
    Embedding,
    GlobalMaxPooling1D,
    Layer,
    TimeDistributed,
)
from rnnkit.models import Sequential
from rnnkit.optimizers import SGD, Adam


class RecordMask(Layer):
    """Identity that remembers the mask it was given."""

    supports_masking = True

    def forward(self, x, mask=None):
        self.seen_mask = mask
        return x


def _linear_task(n=256, features=3):
    x = np.random.randn(n, features).astype("float32")
    y = x @ np.array([[1.5], [-2.0], [0.5]], dtype="float32") + 0.3
    return x, y


def _regressor(**dense_kwargs):
    model = Sequential([Dense(1, input_shape=(3,), **dense_kwargs)])
    model.compile(optimizer=SGD(0.1), loss="mse")
    return model


# -- building and summary --------------------------------------------------------------------
def test_summary_before_build_says_how_to_build():
    model = Sequential([Embedding(100, 8), Dense(1)])
    with pytest.raises(NotBuiltError, match=r"pass input_shape.*call the model on data"):
        model.summary()
    with pytest.raises(NotBuiltError):
        model.count_params()


def test_summary_table_shapes_and_counts():
    model = Sequential([Embedding(10000, 32), Conv1D(32, 7, activation="relu"),
                        GlobalMaxPooling1D(), Dense(1, activation="sigmoid")], name="imdb")
    model.build((None, 500))
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0] == 'Model: "imdb"'
    for name, shape, params in [("embedding", "(None, 500, 32)", "320000"),
                                ("conv1", "(None, 494, 32)", "7200"),
                                ("global_max", "(None, 32)", "0"),
                                ("dense", "(None, 1)", "33")]:
        row = next(line for line in lines if line.startswith(f" {name}"))
        assert row.split()[-1] == params and shape in row
    assert "Total params: 327,233" in text and "Trainable params: 327,233" in text
    assert "Non-trainable params: 0" in text
    assert model.count_params() == 327_233


def test_input_shape_builds_at_add_and_time_stays_unknown():
    model = Sequential()
    model.add(Conv1D(4, 3, padding="causal", input_shape=(None, 2)))
    assert model.built and model.output_shape == (None, None, 4)
    model.add(Dense(3))
    assert model.output_shape == (None, None, 3)


def test_masks_thread_through_layers():
    recorder = RecordMask()
    model = Sequential([Embedding(10, 4, mask_zero=True), Dense(4), recorder])
    x = torch.tensor([[3, 4, 0, 0], [1, 0, 0, 0]])
    _, mask = model.call_with_mask(x)
    assert torch.equal(recorder.seen_mask, x != 0) and torch.equal(mask, x != 0)
    model.add(GlobalMaxPooling1D())
    assert model.call_with_mask(x)[1] is None


def test_add_rejects_plain_torch_modules():
    with pytest.raises(ConfigError, match=r"expected an rnnkit Layer, got Linear"):
        Sequential([torch.nn.Linear(2, 2)])


# -- fit / evaluate / predict -------------------------------------------------------------------
def test_fit_drives_a_regression_loss_down():
    x, y = _linear_task()
    model = Sequential([Dense(16, activation="tanh"), Dense(1)])
    model.compile(optimizer=Adam(0.05), loss="mse", metrics=["mae"])
    history = model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert list(history.history) == ["loss", "mae"] and history.epoch == list(range(30))
    assert history.history["loss"][0] > 1.0
    assert history.history["loss"][-1] < 0.01
    assert model.evaluate(x, y, verbose=0)[0] < 0.01


def test_evaluate_and_predict_agree_with_numpy():
    x = np.random.randn(50, 4).astype("float32")
    y = np.random.randint(0, 2, (50, 1))
    model = Sequential([Dense(1, activation="sigmoid")])
    model.compile("rmsprop", "binary_crossentropy", metrics=["acc"])
    loss, acc = model.evaluate(x, y, batch_size=16, verbose=0)
    p = model.predict(x, batch_size=7)
    assert p.shape == (50, 1) and p.dtype == np.float32
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    assert loss == pytest.approx(np.mean(-(y * np.log(pc) + (1 - y) * np.log(1 - pc))), rel=1e-5)
    assert acc == pytest.approx(np.mean((p > 0.5) == y))
    assert model.evaluate(x, y, verbose=0, return_dict=True).keys() == {"loss", "acc"}


def test_validation_split_takes_the_last_fraction():
    seen = {"train": [], "val": []}

    class Recorder(Sequential):
        def train_step(self, batch):
            seen["train"].append(batch[0][:, 0].long())
            return super().train_step(batch)

        def test_step(self, batch):
            seen["val"].append(batch[0][:, 0].long())
            return super().test_step(batch)

    x = np.stack([np.arange(10), np.ones(10)], axis=1).astype("float32")  # column 0: sample id
    model = Recorder([Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(x, np.zeros(10), batch_size=3, epochs=2, validation_split=0.2,
                        verbose=0)
    assert sorted(torch.cat(seen["train"]).tolist()) == sorted(list(range(8)) * 2)
    assert torch.cat(seen["val"]).tolist() == [8, 9, 8, 9]
    assert list(history.history) == ["loss", "val_loss"]


def test_history_keeps_the_metric_name_the_user_wrote():
    x = np.random.randn(40, 3).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    for name in ("acc", "accuracy"):
        model = Sequential([Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", metrics=[name])
        history = model.fit(x, y, epochs=3, initial_epoch=1, verbose=0,
                            validation_data=(x, y))
        assert list(history.history) == ["loss", name, "val_loss", f"val_{name}"]
        assert history.epoch == [1, 2] and model.history is history


def test_generator_fit_with_steps_and_validation_steps():
    x, y = _linear_task(64)
    drawn = {"train": 0, "val": 0}

    def batches(kind):
        while True:
            drawn[kind] += 1
            i = np.random.randint(0, 64, 16)
            yield x[i], y[i]

    model = _regressor()
    history = model.fit_generator(batches("train"), steps_per_epoch=5, epochs=3,
                                  validation_data=batches("val"), validation_steps=2, verbose=0)
    assert drawn == {"train": 15, "val": 6}
    assert list(history.history) == ["loss", "val_loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_finite_iterable_without_steps_runs_to_exhaustion():
    x, y = _linear_task(40)
    batches = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)]
    steps = []

    class CountSteps(Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)

    model = _regressor()
    model.fit(batches, epochs=2, callbacks=[CountSteps()], verbose=0)
    assert steps == [0, 1, 2, 3] * 2


def test_generator_that_runs_out_stops_training_with_a_warning():
    x, y = _linear_task(40)
    model = _regressor()
    one_pass = ((x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10))
    with pytest.warns(UserWarning, match="ran out of data"):
        history = model.fit(one_pass, epochs=3, verbose=0)
    assert history.epoch == [0]


def test_loss_includes_regularization_and_ignores_masked_steps():
    model = _regressor(kernel_regularizer=regularizers.l2(0.1))
    x, y = _linear_task(20)
    kernel, bias = model.get_weights()
    mse = np.mean((x @ kernel + bias - y) ** 2)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(mse + 0.1 * np.sum(kernel**2),
                                                            rel=1e-5)

    seq = Sequential([Embedding(10, 3, mask_zero=True), TimeDistributed(Dense(1))])
    seq.compile("sgd", "mse")
    ids = np.array([[1, 2, 0, 0], [3, 4, 5, 0]])
    targets = np.random.randn(2, 4, 1).astype("float32")
    out = seq.predict(ids)
    keep = ids != 0
    expected = np.mean(((out - targets)[..., 0])[keep] ** 2)
    assert seq.evaluate(ids, targets, verbose=0) == pytest.approx(expected, rel=1e-5)
    weights = np.array([1.0, 0.0])
    expected = np.mean(((out - targets)[0, :, 0])[keep[0]] ** 2)
    assert seq.evaluate(ids, targets, sample_weight=weights, verbose=0) == \
        pytest.approx(expected, rel=1e-5)


def test_train_mode_in_fit_and_eval_mode_in_predict():
    modes = []

    class Mode(Callback):
        def on_train_batch_end(self, batch, logs=None):
            modes.append(self.model.training)

    x, y = _linear_task(32)
    model = Sequential([Dense(8), Dropout(0.5), Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[Mode()])
    assert modes and all(modes)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))
    assert not model.training


def test_stop_training_from_a_callback():
    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    x, y = _linear_task(32)
    history = _regressor().fit(x, y, epochs=5, verbose=0, callbacks=[StopAfterFirstEpoch()])
    assert history.epoch == [0]


def test_integer_inputs_stay_integer_and_weights_round_trip():
    model = Sequential([Embedding(20, 4), GlobalMaxPooling1D(), Dense(2)])
    ids = np.random.randint(0, 20, (6, 5)).astype("int32")
    before = model.predict(ids)
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(20, 4), (4, 2), (2,)]
    other = Sequential([Embedding(20, 4), GlobalMaxPooling1D(), Dense(2)])
    other.build((None, 5))
    other.set_weights(weights)
    np.testing.assert_allclose(other.predict(ids.tolist()), before, rtol=1e-6)
    with pytest.raises(ShapeError, match="expected 3 arrays, got 2"):
        other.set_weights(weights[:2])


def test_verbose_fit_prints_keras_progress(capsys):
    x, y = _linear_task(64)
    _regressor().fit(x, y, epochs=2, batch_size=32, validation_split=0.5)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2"
    assert out[1].startswith("1/1 [==============================] - ")
    assert " - loss: " in out[1] and " - val_loss: " in out[1]


# -- errors ------------------------------------------------------------------------------------
def test_fit_errors_name_the_problem():
    x, y = _linear_task(10)
    model = Sequential([Dense(1, activation="sigmoid")])
    with pytest.raises(ConfigError, match=r"compile\(optimizer, loss\) before fit"):
        model.fit(x, y)
    model.compile("rmsprop", "binary_crossentropy")
    with pytest.raises(ShapeError, match=r"x has 10, y has 9"):
        model.fit(x, y[:9], verbose=0)
    with pytest.raises(ConfigError, match=r"validation_split must be in \[0, 1\), got 1.0"):
        model.fit(x, y, validation_split=1.0)
    with pytest.raises(ConfigError, match=r"batch_size must be a positive integer, got 0"):
        model.fit(x, y, batch_size=0)
    with pytest.raises(ConfigError, match=r"epochs must be >= 0, got -1"):
        model.fit(x, y, epochs=-1)
    with pytest.raises(ShapeError, match=r"empty data"):
        model.fit(x[:0], y[:0])
    with pytest.raises(ShapeError, match=r"binary_crossentropy: targets of shape \(10, 3\) do "
                                         r"not fit the model output of shape \(10, 1\)"):
        model.fit(x, np.zeros((10, 3)), batch_size=10, verbose=0)


def test_input_errors_come_from_the_layer_and_names_from_compile():
    model = Sequential([Conv1D(2, 3, name="conv"), GlobalMaxPooling1D(), Dense(1)])
    model.compile("adam", "mse")
    with pytest.raises(ShapeError, match=r"conv \(Conv1D\): expected input of rank 3"):
        model.fit(np.zeros((4, 5), "float32"), np.zeros(4), verbose=0)
    with pytest.raises(ConfigError, match=r"unknown optimizer 'adamx'"):
        model.compile("adamx", "mse")
    with pytest.raises(ConfigError, match=r"unknown loss 'mean_error'"):
        model.compile("adam", "mean_error")
