"""Model: Keras's compile / fit / evaluate / predict on a torch.nn.Module.

Subclasses define ``forward(x)`` (or ``call_with_mask(x)`` to hand an output mask to the loss).
``fit`` loops over an overridable ``train_step(batch)``; nothing here knows about recurrences.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, NotBuiltError, ShapeError
from ..layers.base import Layer, auto_name, training_mode
from ..training import callbacks as _callbacks
from ..training import checkpoint as _checkpoint
from ..training import denormals as _denormals
from ..training import distributed as _distributed
from ..training import guard as _guard
from ..training import losses as _losses
from ..training import metrics as _metrics
from ..training import optimizers as _optimizers
from ..training import precision as _precision
from ..training import tbptt as _tbptt
from . import data as _data
from . import persistence as _persistence


def top_layers(module: nn.Module):
    """The rnnkit Layers directly under ``module`` (looking through plain containers)."""
    for child in module.children():
        if isinstance(child, Layer):
            yield child
        else:
            yield from top_layers(child)


class Model(nn.Module):
    """A torch module with Keras's training API."""

    _flushing_steps = False  # inside fit: steps run with denormals flushed on this thread too

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
        """One optimizer step on ``batch = (x, y, sample_weight)``; returns the running logs."""
        x, y, sample_weight = batch
        with _precision.of(self).autocast(x.device):
            y_pred, mask = _distributed.train_forward(self, x, y)
        y_pred = _precision.full(y_pred)
        weight = _combine_weights(sample_weight, mask)
        loss = self.compute_loss(y, y_pred, weight)
        self.optimizer.zero_grad()
        _precision.of(self).backward_step(loss, self.optimizer)
        return self.compute_metrics(loss, y, y_pred.detach(), weight, len(x))

    @torch.no_grad()
    def test_step(self, batch) -> dict[str, float]:
        x, y, sample_weight = batch
        with _precision.of(self).autocast(x.device):
            y_pred, mask = self.call_with_mask(x)
        y_pred = _precision.full(y_pred)
        weight = _combine_weights(sample_weight, mask)
        loss = self.compute_loss(y, y_pred, weight)
        return self.compute_metrics(loss, y, y_pred, weight, len(x))

    @torch.no_grad()
    def predict_step(self, batch) -> Tensor:
        with _precision.of(self).autocast(batch[0].device):
            return _precision.full(self(batch[0]))

    # -- loops ---------------------------------------------------------------------------------
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
        (``training/checkpoint.py``). ``strategy='ddp'`` (or running under torchrun) trains
        data-parallel, ``batch_size`` per process (``training/distributed.py``).
        ``tbptt=(k1, k2)`` trains on long series x (B, T, I), y (B, T, O) with truncated BPTT
        (``training/tbptt.py``).
        """
        self._require_compiled("fit")
        # torch's worker threads flushed for the whole fit, this thread only inside the steps:
        # Python code here (callbacks, messages) keeps IEEE floats (training/denormals.py)
        self._flushing_steps = self._flushing()
        try:
            with _denormals.flush_denormals(self._flushing_steps, calling_thread=False):
                return self._fit(x, y, batch_size, epochs, verbose, callbacks, validation_split,
                                 validation_data, shuffle, steps_per_epoch, validation_steps,
                                 initial_epoch, sample_weight, on_nan, nan_lr_factor, seed,
                                 checkpoint_dir, checkpoint_every, resume, strategy, tbptt)
        finally:
            self._flushing_steps = False

    def _flushing(self) -> bool:
        return getattr(self, "flush_denormals", True)

    def _fit(self, x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data,
             shuffle, steps_per_epoch, validation_steps, initial_epoch, sample_weight, on_nan,
             nan_lr_factor, seed, checkpoint_dir, checkpoint_every, resume, strategy, tbptt):
        self._strategy = _distributed.detect(strategy)
        if tbptt is not None:
            return _tbptt.fit_tbptt(self, x, y, tbptt, epochs, _verbosity(verbose), callbacks)
        _check_positive("batch_size", batch_size)
        if epochs < 0:
            raise ConfigError(f"fit: epochs must be >= 0, got {epochs}")
        if not 0.0 <= validation_split < 1.0:
            raise ConfigError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        guard = _guard.NanGuard(self, on_nan, nan_lr_factor)
        if seed is not None:
            _checkpoint.seed_everything(seed)
        train, val = self._fit_streams(x, y, sample_weight, batch_size, validation_split,
                                       validation_data, shuffle, steps_per_epoch,
                                       validation_steps)
        self._check_whole_inputs(train, val)
        train, val = (_distributed.shard(self._strategy, s) for s in (train, val))
        run = _checkpoint.TrainingRun(self, train, _distributed.chief_only(
            self._strategy, checkpoint_dir), checkpoint_every, resume)
        verbose = _distributed.chief_only(self._strategy, _verbosity(verbose), 0)
        history = _callbacks.History()
        history.nan_events = guard.events
        cbs = self._callback_list(callbacks, history, verbose,
                                  {"epochs": epochs, "steps": train.steps_per_epoch})
        self.stop_training = False
        cbs.call("on_train_begin", None)
        run.begin(cbs)
        logs: dict = {}
        first_epoch = run.first_epoch(initial_epoch)
        for epoch in range(first_epoch, epochs):
            self.reset_metrics()
            cbs.call("on_epoch_begin", epoch, None)
            epoch_logs = self._train_epoch(train, cbs, epoch, run, guard)
            if epoch_logs is None:
                if epoch == first_epoch:
                    raise ShapeError("fit: x yielded no batches (empty data)")
                _data.warn_ran_out(steps_per_epoch, epochs)
                break
            logs = _distributed.reduce_logs(self._strategy, epoch_logs)
            if val is not None:
                val_logs = _distributed.reduce_logs(self._strategy, self._run_test(val, cbs))
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cbs.call("on_epoch_end", epoch, logs)
            run.end_epoch(epoch, cbs)
            if train.ran_out:
                _data.warn_ran_out(steps_per_epoch, epochs)
                break
            if self.stop_training:
                break
        cbs.call("on_train_end", logs)
        self.history = history
        return history

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
        self._require_compiled("evaluate")
        _check_positive("batch_size", batch_size)
        stream = self._stream(x, y, sample_weight, batch_size, False, steps, needs_y=True)
        cbs = self._callback_list(callbacks, None, _verbosity(verbose),
                                  {"steps": stream.steps_per_epoch})
        logs = self._run_test(stream, cbs)
        if not logs:
            raise ShapeError("evaluate: x yielded no batches (empty data)")
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size: int = 32, verbose="auto", steps: int | None = None):
        """The outputs for x (arrays or an iterable of batches) as one numpy array."""
        _check_positive("batch_size", batch_size)
        stream = self._stream(x, None, None, batch_size, False, steps, needs_y=False)
        self.eval()
        outputs = []
        for batch in stream.epoch():
            batch = self._to_device(batch)
            self.build_from_batch(batch[0])
            outputs.append(self.predict_step(batch).cpu())
        if not outputs:
            raise ShapeError("predict: x yielded no batches (empty data)")
        return torch.cat(outputs).numpy()

    def _train_epoch(self, stream: _data.BatchStream, cbs, epoch: int = 0, run=None,
                     guard=None) -> dict | None:
        """One epoch of train steps; ``run`` (checkpoints) hands out the batches and saves
        after them, ``guard`` (NaN guard) wraps each train_step."""
        self.train()
        logs = None
        batches = enumerate(stream.epoch()) if run is None else run.batches(epoch, cbs)
        for step, batch in batches:
            batch = self._to_device(batch)
            if batch[1] is None:
                raise ShapeError("fit: the data has no targets y")
            self._ensure_ready(batch[0])
            cbs.call("on_train_batch_begin", step, None)
            with _denormals.steps_flushed(self._flushing_steps):
                logs = self.train_step(batch) if guard is None else guard.step(batch, epoch, step)
            cbs.call("on_train_batch_end", step, logs)
            if run is not None:
                run.after_step(epoch, step, cbs)
            if self.stop_training:
                break
        return logs

    def _run_test(self, stream: _data.BatchStream, cbs) -> dict:
        self.eval()
        self.reset_metrics()
        cbs.call("on_test_begin", None)
        logs: dict = {}
        for step, batch in enumerate(stream.epoch()):
            batch = self._to_device(batch)
            self.build_from_batch(batch[0])
            cbs.call("on_test_batch_begin", step, None)
            with _denormals.steps_flushed(self._flushing_steps):
                logs = self.test_step(batch)
            cbs.call("on_test_batch_end", step, logs)
        cbs.call("on_test_end", logs)
        return logs

    # -- plumbing ------------------------------------------------------------------------------
    def _check_whole_inputs(self, *streams) -> None:
        """Checks the first layer can make on a whole array (e.g. an Embedding's token ids) run
        before the first step, so a bad value in a late batch leaves nothing half-trained."""
        first = next(top_layers(self), None)
        check = getattr(first, "check_inputs", None)
        for stream in streams:
            if check is not None and stream is not None and isinstance(stream.source, _data.ArrayData):
                check(stream.source.x)

    def _ensure_ready(self, x: Tensor) -> None:
        """Build the model from the first batch, then the torch optimizer over its parameters."""
        self.build_from_batch(x)
        if not self.optimizer.built:
            self.optimizer.build(self.parameters())

    def _fit_streams(self, x, y, sample_weight, batch_size, validation_split, validation_data,
                     shuffle, steps_per_epoch, validation_steps):
        if validation_split and not _data.is_array_like(x):
            raise ConfigError("fit: validation_split needs array inputs; with a generator pass "
                              "validation_data instead")
        if validation_split:
            arrays = _data.ArrayData(x, _require_y(y, "fit"), sample_weight)
            train_part, val_part = arrays.split(validation_split)
            return (_data.BatchStream(train_part, batch_size, shuffle, steps_per_epoch),
                    _data.BatchStream(val_part, batch_size, False, validation_steps))
        train = self._stream(x, y, sample_weight, batch_size, shuffle, steps_per_epoch,
                             needs_y=True)
        if validation_data is None:
            return train, None
        if isinstance(validation_data, (tuple, list)) and 2 <= len(validation_data) <= 3 \
                and _data.is_array_like(validation_data[0]):
            val = _data.BatchStream(_data.ArrayData(*validation_data, role="validation_data "),
                                    batch_size, False, validation_steps)
        else:
            val = _data.BatchStream(validation_data, batch_size, False, validation_steps)
        return train, val

    def _stream(self, x, y, sample_weight, batch_size, shuffle, steps, needs_y):
        if _data.is_array_like(x):
            y = _require_y(y, "fit/evaluate") if needs_y else None
            return _data.BatchStream(_data.ArrayData(x, y, sample_weight), batch_size, shuffle,
                                     steps)
        if y is not None:
            raise ConfigError("y must be None when x is a generator or iterable of batches "
                              "(the batches carry the targets)")
        if not isinstance(x, Iterable):
            raise ConfigError(f"x must be an array, tensor, list or an iterable of batches, "
                              f"got {type(x).__name__}")
        return _data.BatchStream(x, batch_size, False, steps)

    def _callback_list(self, callbacks, history, verbose: int, params: dict):
        cbs = list(callbacks or [])
        if history is not None and not any(isinstance(c, _callbacks.History) for c in cbs):
            cbs.append(history)
        if verbose and not any(isinstance(c, _callbacks.ProgressBar) for c in cbs):
            cbs.append(_callbacks.ProgressBar(verbose))
        return _callbacks.CallbackList(cbs, self, {**params, "verbose": verbose})

    def _device(self) -> torch.device:
        p = next(self.parameters(), None)
        return torch.device("cpu") if p is None else p.device

    def _to_device(self, batch):
        device = self._device()
        return tuple(None if t is None else t.to(device) for t in batch)

    def _require_compiled(self, what: str) -> None:
        if self.optimizer is None:
            raise ConfigError(f"{self.name}: call compile(optimizer, loss) before {what}()")

    # -- export --------------------------------------------------------------------------------
    def export(self, path, format: str = "onnx", example=None):
        """Write the model for serving: 'onnx', 'torchscript' or 'torch.export'
        (see ``rnnkit.export.export``); returns the path."""
        from ..export import export  # export imports the layers, which import this module

        return export(self, path, format=format, example=example)

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


def _combine_weights(sample_weight: Tensor | None, mask: Tensor | None):
    if mask is None:
        return sample_weight
    mask = mask.float()
    if sample_weight is None:
        return mask
    return _losses.align_weight(sample_weight, mask) * mask


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


def _require_y(y, what: str):
    if y is None:
        raise ConfigError(f"{what}: targets y are missing (x is an array, so y must be given)")
    return y


def _check_positive(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _verbosity(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ConfigError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)
