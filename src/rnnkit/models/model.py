"""Model: Keras's compile / fit / evaluate / predict on a torch.nn.Module.

Subclasses define ``forward(x)`` (or ``call_with_mask(x)`` to hand an output mask to the loss).
``fit`` loops over an overridable ``train_step(batch)``; nothing here knows about recurrences.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, NotBuiltError, ShapeError
from ..layers.base import auto_name, top_layers, training_mode
from ..training import callbacks as _callbacks
from ..training import losses as _losses
from ..training import metrics as _metrics
from ..training import optimizers as _optimizers
from ..training import precision as _precision
from ..training import steps as _steps
from ..training.trainer import Trainer
from . import persistence as _persistence

# The exporter: rnnkit.interop.export registers itself when it is imported (``import rnnkit``
# does). It traces layers and kernels and sits above models, so models cannot import it.
_EXPORTER: Callable | None = None


def register_exporter(exporter: Callable) -> None:
    """``Model.export(path, format=, example=)`` calls ``exporter(model, path, ...)``."""
    global _EXPORTER
    _EXPORTER = exporter


class Model(nn.Module):
    """A torch module with Keras's training API."""

    def __init__(self, name: str | None = None):
        super().__init__()
        self.training = False  # as its layers: a call is inference unless training=True
        self.name = name or auto_name(type(self).__name__)
        self.built = False
        self.optimizer: _optimizers.Optimizer | None = None
        self.loss: _losses.Loss | None = None
        self.compiled_metrics: list = []
        self.loss_weight = 1.0
        self.loss_tracker = _metrics.Mean("loss")
        self.stop_training = False
        self.history: _callbacks.History | None = None
        self.preprocessing: dict = {}  # JSON config of the input pipeline, saved with the model
        self.distribute_strategy = None  # set by fit: None, or the DDP strategy it runs under

    # -- forward -------------------------------------------------------------------------------
    def __call__(self, *args, training: bool | None = None, **kwargs):
        """Keras's ``model(x, training=...)``: the layers run in training (or inference) mode
        for this call; without it, the module's mode (eval until ``train()``; fit trains)."""
        if training is None or bool(training) == self.training:
            return super().__call__(*args, **kwargs)
        with training_mode(self, bool(training)):
            return super().__call__(*args, **kwargs)

    def call_with_mask(self, x: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The output and its mask (None when nothing is masked): the loss ignores masked steps.

        ``targets`` is given in training only, for layers that use teacher forcing.
        """
        return self(x), None

    def build_from_batch(self, x: Tensor) -> None:
        """Create the parameters from a first batch (one forward pass without side effects)."""
        if self.built:
            return
        was_training = self.training
        self.eval()
        with torch.no_grad():
            self(x[:1])
        self.train(was_training)
        self.built = True

    # -- compile -------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None,
                precision: str = "32", flush_denormals: bool = True) -> None:
        """Resolve the optimizer, loss and metrics by name; nothing is built yet.

        ``precision``: '32', 'bf16' (autocast, CPU and GPU) or 'fp16' (autocast with a gradient
        scaler, GPU only); see ``training/precision.py``. ``flush_denormals``: fit treats floats
        below 1.2e-38 as zero on every CPU thread while it runs, as TensorFlow and XLA do
        (``training/denormals.py``: the lecture's IMDB LSTM trains 3.7x faster on some CPUs)."""
        self.precision = _precision.Precision(precision)
        self.flush_denormals = bool(flush_denormals)
        self.optimizer = _optimizers.get(optimizer)
        self.loss = None if loss is None else _losses.get(loss)
        if isinstance(metrics, (str, _metrics.Metric)) or callable(metrics):
            metrics = [metrics]
        self.compiled_metrics = [_metrics.get(m, self.loss) for m in metrics or []]
        self.loss_weight = _single_loss_weight(loss_weights)

    @property
    def metrics(self) -> list:
        return [self.loss_tracker, *self.compiled_metrics]

    def reset_metrics(self) -> None:
        for m in self.metrics:
            m.reset_state()

    # -- one step ----------------------------------------------------------------------------
    def compute_loss(self, y: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None):
        """The compiled loss (mean over the entries that count) plus the layers' penalties."""
        if self.loss is None:
            raise ConfigError(f"{self.name}: no loss; call compile(optimizer, loss=...) first")
        return self.loss_weight * self.loss(y, y_pred, sample_weight) + self.regularization_loss()

    def compute_metrics(self, loss: Tensor, y, y_pred: Tensor, sample_weight, batch_size: int):
        """Update the running metrics and return them as logs."""
        self.loss_tracker.update_state(loss.detach(), batch_size)
        for m in self.compiled_metrics:
            m.update_state(y, y_pred, sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, batch) -> dict[str, float]:
        """One optimizer step on ``batch = (x, y, sample_weight)``; returns the running logs.
        fit runs it for every batch (and every TBPTT window); override it to change training."""
        return _steps.train_step(self, batch)

    def test_step(self, batch) -> dict[str, float]:
        return _steps.test_step(self, batch)

    def predict_step(self, batch) -> Tensor:
        return _steps.predict_step(self, batch)

    # -- loops (training/trainer.py) ------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size: int = 32, epochs: int = 1, verbose="auto",
            callbacks=None, validation_split: float = 0.0, validation_data=None,
            shuffle: bool = True, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, initial_epoch: int = 0,
            sample_weight=None, *, on_nan: str | None = "rollback", nan_lr_factor: float = 0.5,
            seed: int | None = None, checkpoint_dir=None, checkpoint_every: int | None = None,
            resume=None, strategy=None, tbptt=None) -> _callbacks.History:
        """Train for ``epochs`` epochs; x/y arrays, tensors or lists, or x an iterable of
        (x, y[, sample_weight]) batches. Returns the History (``history.history[key]``).

        ``on_nan`` (NaN guard, ``training/guard.py``): on a non-finite loss, gradient or weight,
        'rollback' (default) undoes the batch and multiplies the learning rate by
        ``nan_lr_factor``, 'stop' undoes it and stops, 'raise' undoes it and raises
        NonFiniteError, None does nothing (Keras). ``seed`` seeds Python, numpy and torch first.
        ``checkpoint_dir`` gets a training checkpoint every ``checkpoint_every`` optimizer steps
        (every epoch when None); ``resume=DIR`` continues from one exactly
        (``training/checkpoint.py``): arrays, TBPTT series and iterables with
        ``state_dict``/``load_state_dict`` (``training/data.py``) can. ``strategy='ddp'`` (or
        running under torchrun) trains data-parallel, ``batch_size`` per process
        (``training/distributed.py``). ``tbptt=(k1, k2)`` trains on long series x (B, T, I),
        y (B, T, O) with truncated BPTT, the B series one batch cut into windows
        (``training/tbptt.py``); everything above applies to it too.
        """
        return Trainer(self).fit(
            x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
            validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
            initial_epoch=initial_epoch, sample_weight=sample_weight, on_nan=on_nan,
            nan_lr_factor=nan_lr_factor, seed=seed, checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every, resume=resume, strategy=strategy, tbptt=tbptt)

    def fit_generator(self, generator, steps_per_epoch: int | None = None, epochs: int = 1,
                      verbose="auto", callbacks=None, validation_data=None,
                      validation_steps: int | None = None,
                      initial_epoch: int = 0) -> _callbacks.History:
        """Keras 2's name for ``fit(generator, ...)``."""
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs,
                        verbose=verbose, callbacks=callbacks, validation_data=validation_data,
                        validation_steps=validation_steps, initial_epoch=initial_epoch)

    def evaluate(self, x=None, y=None, batch_size: int = 32, verbose="auto", sample_weight=None,
                 steps: int | None = None, callbacks=None, return_dict: bool = False):
        """The loss, or [loss, *metrics] when compiled with metrics (a dict with return_dict)."""
        return Trainer(self).evaluate(x, y, batch_size=batch_size, verbose=verbose,
                                      sample_weight=sample_weight, steps=steps,
                                      callbacks=callbacks, return_dict=return_dict)

    def predict(self, x, batch_size: int = 32, verbose="auto", steps: int | None = None):
        """The outputs for x (arrays or an iterable of batches) as one numpy array."""
        return Trainer(self).predict(x, batch_size=batch_size, verbose=verbose, steps=steps)

    # -- export --------------------------------------------------------------------------------
    def export(self, path, format: str = "onnx", example=None):
        """Write the model for serving: 'onnx', 'torchscript' or 'torch.export'
        (see ``rnnkit.interop.export.export``); returns the path."""
        if _EXPORTER is None:
            raise ConfigError(f"{self.name}.export needs rnnkit.interop.export; import "
                              "rnnkit.interop first")
        return _EXPORTER(self, path, format=format, example=example)

    # -- saving (Keras's names; formats in persistence.py) -------------------------------------
    def get_config(self) -> dict:
        """The constructor arguments ``from_config`` rebuilds this model from; Sequential has
        one, a subclassed Model defines its own to be saved whole."""
        raise ConfigError(f"{self.name} ({type(self).__name__}): a subclassed Model needs "
                          "get_config() and from_config() to be saved with save(); or save the "
                          "weights only with save_weights() and rebuild the model in code")

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Model:
        return cls(**config)

    def save(self, directory, overwrite: bool = True):
        """Write the model to ``directory``: model.safetensors + config.json, atomically;
        ``rnnkit.models.load_model(directory)`` reads it back. Returns the path."""
        return _persistence.save_model(self, directory, overwrite)

    def save_weights(self, filepath, overwrite: bool = True):
        """Write ``state_dict()`` to one safetensors file, atomically. Returns the path."""
        return _persistence.save_weights(self, filepath, overwrite)

    def load_weights(self, filepath) -> None:
        """Read a ``save_weights`` file into this (built) model."""
        _persistence.load_weights(self, filepath)

    # -- weights -------------------------------------------------------------------------------
    def regularization_loss(self) -> Tensor | float:
        """The sum of the layers' weight penalties (Keras adds it to the training loss)."""
        return sum((layer.regularization_loss() for layer in top_layers(self)), 0.0)

    def get_weights(self) -> list[np.ndarray]:
        """Every layer's Keras weights, layer after layer."""
        return [w for layer in top_layers(self) for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        layers = list(top_layers(self))
        counts = [len(layer.get_weights()) for layer in layers]
        if len(weights) != sum(counts):
            raise ShapeError(f"{self.name}: set_weights expected {sum(counts)} arrays, "
                             f"got {len(weights)}")
        start = 0
        for layer, n in zip(layers, counts):
            layer.set_weights(weights[start:start + n])
            start += n

    def count_params(self) -> int:
        if not self.built:
            raise NotBuiltError(f"{self.name}: the model is not built yet; pass input_shape to "
                                "the first layer, call build(input_shape), or call the model "
                                "on data")
        return sum(layer.count_params() for layer in top_layers(self))


def _single_loss_weight(loss_weights) -> float:
    if loss_weights is None:
        return 1.0
    if isinstance(loss_weights, dict):
        loss_weights = list(loss_weights.values())
    if isinstance(loss_weights, (list, tuple)):
        if len(loss_weights) != 1:
            raise ConfigError(f"loss_weights: a single-output model takes one weight, got "
                              f"{loss_weights!r}")
        (loss_weights,) = loss_weights
    return float(loss_weights)


