"""Keras's callbacks: EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler,
CSVLogger, TerminateOnNaN, TensorBoard."""

import csv
import sys
import types

import numpy as np
import pytest
import torch

from helpers import Sqrt
from rnnkit import callbacks, layers
from rnnkit.errors import ConfigError, MissingDependencyError
from rnnkit.models import Sequential, load_model
from rnnkit.optimizers import SGD


def small_model(lr=0.01):
    model = Sequential([layers.SimpleRNN(3, input_shape=(4, 2)), layers.Dense(1)])
    model.compile(SGD(lr), "mse")
    return model


def data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4, 2)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


def drive(callback, model, values, key="val_loss", before_each=None):
    """Feed ``values`` as the epoch logs; returns the epoch at which training stopped (or None)."""
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    for epoch, value in enumerate(values):
        if before_each is not None:
            before_each(epoch)
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {key: value})
        if model.stop_training:
            callback.on_train_end()
            return epoch
    callback.on_train_end()
    return None


def test_early_stopping_patience_min_delta_and_mode():
    model = small_model()
    assert drive(callbacks.EarlyStopping(patience=2), model, [1.0, 0.9, 0.95, 0.96, 0.5]) == 3
    assert drive(callbacks.EarlyStopping(patience=0), model, [1.0, 0.9, 0.95]) == 2
    # 0.95 is not better than 1.0 by more than min_delta=0.1
    assert drive(callbacks.EarlyStopping(patience=1, min_delta=0.1), model, [1.0, 0.95]) == 1
    assert drive(callbacks.EarlyStopping(monitor="val_acc", patience=1), model,
                 [0.5, 0.6, 0.7, 0.65], key="val_acc") == 3
    # epochs before start_from_epoch do not count
    assert drive(callbacks.EarlyStopping(patience=1, start_from_epoch=3), model,
                 [1.0, 2.0, 3.0, 4.0, 5.0]) == 4
    # with a baseline, improving epochs that miss it keep counting (Keras 3: the stop itself
    # waits for an epoch that does not improve)
    assert drive(callbacks.EarlyStopping(patience=2, baseline=0.5), model,
                 [1.0, 0.9, 0.8, 0.85]) == 3
    assert drive(callbacks.EarlyStopping(patience=2), model, [1.0, 0.9, 0.8, 0.85]) is None


def test_early_stopping_restores_the_best_weights():
    model = small_model()
    bias = model.layers[1].bias

    def set_bias(epoch):
        with torch.no_grad():
            bias.fill_(float(epoch))

    es = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    assert drive(es, model, [3.0, 1.0, 2.0, 2.5], before_each=set_bias) == 3
    assert float(bias.detach()) == 1.0 and es.best_epoch == 1


def test_early_stopping_in_fit_stops_and_warns_on_missing_monitor():
    x, y = data()
    model = small_model()
    history = model.fit(x, y, epochs=20, verbose=0, validation_split=0.25,
                        callbacks=[callbacks.EarlyStopping(monitor="loss", min_delta=100.0,
                                                           patience=2)])
    assert len(history.history["loss"]) == 3
    with pytest.warns(UserWarning, match="'val_loss' which is not available"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.EarlyStopping()])


def test_reduce_lr_on_plateau_patience_cooldown_and_min_lr():
    model = small_model(lr=1.0)
    model.optimizer.build(model.parameters())
    rl = callbacks.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.2)
    lrs = []
    drive(rl, model, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
          before_each=lambda e: lrs.append(model.optimizer.learning_rate))
    # Keras's counting: the first flat epoch after a cut is in cooldown (wait reset to 0, then
    # counted), so after the first cut every second epoch cuts; never below min_lr
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2]
    assert model.optimizer.learning_rate == 0.2
    assert model.optimizer.torch_optimizer.param_groups[0]["lr"] == 0.2
    with pytest.raises(ConfigError, match="factor must be in"):
        callbacks.ReduceLROnPlateau(factor=1.5)


def test_learning_rate_scheduler_and_csv_logger(tmp_path):
    x, y = data()
    model = small_model(lr=0.1)
    log = tmp_path / "log.csv"
    history = model.fit(x, y, epochs=3, verbose=0, validation_split=0.25, callbacks=[
        callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1)),
        callbacks.CSVLogger(log)])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3], rel=1e-12)
    rows = list(csv.reader(log.read_text().splitlines()))
    assert rows[0] == ["epoch", "learning_rate", "loss", "val_loss"]
    assert [float(r[2]) for r in rows[1:]] == history.history["loss"]
    model.fit(x, y, epochs=1, verbose=0, callbacks=[
        callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5), callbacks.CSVLogger(log, append=True)])
    rows = list(csv.reader(log.read_text().splitlines()))
    assert len(rows) == 5 and rows[4][0] == "0" and rows[4][1] != rows[3][1]
    with pytest.raises(ConfigError, match="returned 'x' for epoch 0"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callbacks.LearningRateScheduler(lambda epoch: "x")])


def test_model_checkpoint_best_only_formats_names_and_loads(tmp_path):
    x, y = data()
    model = small_model()
    pattern = str(tmp_path / "ck-{epoch:02d}")
    mc = callbacks.ModelCheckpoint(pattern, monitor="val_loss", save_best_only=True)
    mc.set_model(model)
    for epoch, loss in enumerate([1.0, 2.0, 0.5]):
        mc.on_epoch_end(epoch, {"val_loss": loss})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck-01", "ck-03"]
    torch.testing.assert_close(load_model(tmp_path / "ck-03")(torch.as_tensor(x)),
                               model(torch.as_tensor(x)), rtol=0, atol=0)
    weights = callbacks.ModelCheckpoint(str(tmp_path / "w-{loss:.2f}.safetensors"),
                                        save_weights_only=True)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[weights])
    assert len(list(tmp_path.glob("w-*.safetensors"))) == 1
    with pytest.raises(ConfigError, match="names 'val_acc' which is not in the logs"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "{val_acc}"))])
    with pytest.raises(ConfigError, match="not Keras's .keras/.h5"):
        callbacks.ModelCheckpoint("best.keras")


def test_model_checkpoint_skips_nan_weights(tmp_path):
    model = small_model()
    with torch.no_grad():
        model.layers[1].bias.fill_(float("nan"))
    mc = callbacks.ModelCheckpoint(str(tmp_path / "m"))
    mc.set_model(model)
    with pytest.warns(RuntimeWarning, match="epoch 1 not saved: .*NaN"):
        mc.on_epoch_end(0, {"val_loss": 1.0})
    assert not (tmp_path / "m").exists()


def test_terminate_on_nan_without_the_guard(capsys):
    x, y = data()
    x = np.abs(x)
    x[5, 0, 0] = -1.0
    model = Sequential([Sqrt(input_shape=(4, 2)), layers.SimpleRNN(3), layers.Dense(1)])
    model.compile(SGD(0.01), "mse")
    history = model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, on_nan=None,
                        callbacks=[callbacks.TerminateOnNaN()])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    assert len(history.history["loss"]) == 1


def test_tensorboard_needs_the_package_and_writes_scalars(tmp_path, monkeypatch):
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match=r"pip install 'rnnkit\[tensorboard\]'"):
            callbacks.TensorBoard(tmp_path)
    written = []

    class Writer:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            written.append((self.log_dir, tag, value, step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard",
                        types.SimpleNamespace(SummaryWriter=Writer))
    x, y = data()
    history = small_model().fit(x, y, epochs=2, verbose=0, validation_split=0.25,
                                callbacks=[callbacks.TensorBoard(tmp_path)])
    assert (str(tmp_path / "validation"), "epoch_loss", history.history["val_loss"][1], 1) in written
    assert (str(tmp_path / "train"), "epoch_loss", history.history["loss"][0], 0) in written
