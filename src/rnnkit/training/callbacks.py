"""Callbacks keyed by Keras's event names, History, and the per-epoch progress bar.

``fit`` calls, in order: on_train_begin; per epoch on_epoch_begin, per batch
on_train_batch_begin/on_train_batch_end, then (with validation data) on_test_begin,
on_test_batch_begin/end, on_test_end, then on_epoch_end; finally on_train_end. ``evaluate`` calls
the test events. ``logs`` are dicts of floats: running means within an epoch, epoch means at its
end (``val_`` keys included). Setting ``model.stop_training = True`` ends ``fit`` after the
current batch.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import math
import os
import sys
import time
import warnings

from .. import optional
from ..errors import ConfigError, MissingDependencyError, NonFiniteError


class Callback:
    """Base class: override the events you need. ``self.model`` and ``self.params``
    (``epochs``, ``steps``, ``verbose``) are set before on_train_begin."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...


class CallbackList:
    """Dispatches each event to every callback, in order."""

    def __init__(self, callbacks, model=None, params: dict | None = None):
        self.callbacks: list[Callback] = list(callbacks or [])
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(dict(params or {}))

    def call(self, event: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(*args)


class History(Callback):
    """Records the epoch logs: ``history[key]`` is a list with one value per epoch."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


def _format_logs(logs: dict) -> str:
    return "".join(f" - {k}: {v:.4f}" if abs(v) >= 1e-3 or v == 0 else f" - {k}: {v:.4e}"
                   for k, v in logs.items())


def _format_time(seconds: float, steps: int) -> str:
    per_step = seconds / max(steps, 1)
    unit = f"{per_step * 1e3:.0f}ms/step" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us/step"
    return f"{seconds:.0f}s {unit}"


class ProgressBar(Callback):
    """Keras's text progress: ``Epoch 1/10`` then
    ``12/12 [==============================] - 1s 45ms/step - loss: 0.6931 - acc: 0.5100 - ...``.

    verbose=1 redraws the bar in place on a terminal (only the final line otherwise);
    verbose=2 prints one line per epoch without a bar. Writes to ``stream`` (default stdout).
    Also reports ``evaluate`` (test events outside fit).
    """

    def __init__(self, verbose: int = 1, stream=None, width: int = 30, interval: float = 0.05):
        super().__init__()
        self.verbose = verbose
        self.stream = stream
        self.width = width
        self.interval = interval
        self.in_fit = False
        self.target: int | None = None

    # -- fit -------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self.in_fit = True
        self.target = self.params.get("steps")

    def on_train_end(self, logs=None):
        self.in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._write(f"Epoch {epoch + 1}/{self.params.get('epochs')}\n")
        self._start()

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch + 1, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs or {})

    # -- evaluate --------------------------------------------------------------------------
    def on_test_begin(self, logs=None):
        if not self.in_fit:
            self.target = self.params.get("steps")
            self._start()

    def on_test_batch_end(self, batch, logs=None):
        if not self.in_fit:
            self._update(batch + 1, logs or {})

    def on_test_end(self, logs=None):
        if not self.in_fit:
            self._finish(logs or {})

    # -- drawing ---------------------------------------------------------------------------
    def _start(self) -> None:
        self.seen = 0
        self.t0 = self.last_draw = time.monotonic()
        self.dynamic = bool(getattr(self._stream(), "isatty", lambda: False)())

    def _update(self, seen: int, logs: dict) -> None:
        self.seen = seen
        now = time.monotonic()
        if self.verbose == 1 and self.dynamic and now - self.last_draw >= self.interval:
            self.last_draw = now
            eta = (now - self.t0) / seen * (self.target - seen) if self.target else None
            timing = f" - ETA: {eta:.0f}s" if eta is not None else ""
            self._write(f"\r{self._counter()} {self._bar()}{timing}{_format_logs(logs)}")

    def _finish(self, logs: dict) -> None:
        if self.target is None:  # an iterable of unknown length: now we know
            self.target = self.seen
        elapsed = _format_time(time.monotonic() - self.t0, self.seen)
        bar = f" {self._bar()}" if self.verbose == 1 else ""
        prefix = "\r" if self.dynamic and self.verbose == 1 else ""
        self._write(f"{prefix}{self._counter()}{bar} - {elapsed}{_format_logs(logs)}\n")

    def _counter(self) -> str:
        target = "Unknown" if self.target is None else str(self.target)
        return f"{self.seen:>{len(target)}}/{target}"

    def _bar(self) -> str:
        if not self.target:
            return "[" + "." * self.width + "]"
        done = min(int(self.width * self.seen / self.target), self.width)
        head = ">" if self.seen < self.target else "="
        return "[" + "=" * max(done - 1, 0) + (head if done else "") + \
            "." * (self.width - done) + "]"

    def _stream(self):
        return self.stream or sys.stdout

    def _write(self, text: str) -> None:
        stream = self._stream()
        stream.write(text)
        stream.flush()


ProgbarLogger = ProgressBar


# -- Keras's training callbacks ----------------------------------------------------------------
# Those with state across epochs have get_state()/set_state(): a training checkpoint stores it,
# so a resumed fit continues with the same patience counters and best values.

def _direction(mode: str, monitor: str, who: str) -> str:
    """'min' or 'max'; 'auto' is 'max' for accuracies and AUC, else 'min' (Keras's rule)."""
    if mode not in ("auto", "min", "max"):
        raise ConfigError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    return "max" if name in ("acc", "accuracy", "auc") or name.endswith(("_accuracy", "_acc")) \
        else "min"


def _monitored(logs, monitor: str, who: str) -> float | None:
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{who} is conditioned on metric {monitor!r} which is not available. "
                      f"Available metrics are: {', '.join(logs or {})}", UserWarning, stacklevel=3)
    return value


def _lr(model) -> float:
    return float(model.optimizer.learning_rate)


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or inf (Keras's TerminateOnNaN).

    With fit's NaN guard on (the default ``on_nan='rollback'``) bad batches are rolled back before
    callbacks see them; this callback matters with ``on_nan=None``.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class EarlyStopping(Callback):
    """Stop when ``monitor`` has stopped improving (Keras's EarlyStopping).

    Improvement means beating the best value by more than ``min_delta``; training stops once
    ``patience`` epochs in a row did not improve, counting from ``start_from_epoch``. With
    ``baseline`` the wait only resets on epochs that also beat the baseline. With
    ``restore_best_weights`` the model ends with the weights of the best epoch.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.direction = _direction(mode, monitor, "EarlyStopping")
        self.min_delta = abs(float(min_delta))
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        self.on_train_begin()

    def _improves(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        if self.direction == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: dict | None = None

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = _copy_state(self.model), epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = _copy_state(self.model)
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)

    def get_state(self) -> dict:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch, "best_weights": self.best_weights}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)


def _copy_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class ModelCheckpoint(Callback):
    """Save the model (a directory, ``model.save``) or its weights (a safetensors file,
    ``save_weights``) at the end of every epoch (Keras's ModelCheckpoint).

    ``filepath`` may hold ``{epoch}`` (1-based) and any log, e.g. ``"ckpt/{epoch:02d}-{val_loss:.3f}"``.
    With ``save_best_only`` only epochs that improve ``monitor`` are saved. Weights with NaN or
    inf are never saved: the epoch is skipped with a warning and the previous file stays.
    """

    def __init__(self, filepath, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        self.filepath = str(filepath)
        if self.filepath.endswith((".keras", ".h5")):
            raise ConfigError(f"ModelCheckpoint: {self.filepath!r}: rnnkit writes a model as a "
                              "directory (model.safetensors + config.json) and weights as a "
                              ".safetensors file, not Keras's .keras/.h5; give e.g. "
                              "'ckpt/epoch{epoch:02d}' or 'best.weights.safetensors'")
        if save_freq != "epoch":
            raise ConfigError(f"ModelCheckpoint: save_freq={save_freq!r} is not supported; it "
                              "saves once per epoch (fit(checkpoint_every=N) checkpoints steps)")
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.direction = _direction(mode, monitor, "ModelCheckpoint")
        self.best = initial_value_threshold

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if current is None or not math.isfinite(current) or not self._improves(current):
                return
            self.best = current
        self._save(epoch, logs)

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.direction == "min" else value > self.best

    def _save(self, epoch: int, logs: dict) -> None:
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as e:
            raise ConfigError(f"ModelCheckpoint: filepath {self.filepath!r} names {e} which is "
                              f"not in the logs; available: epoch, {', '.join(logs)}") from None
        try:
            if self.save_weights_only:
                self.model.save_weights(path)
            else:
                self.model.save(path)
        except NonFiniteError as e:
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1} not saved: {e}", RuntimeWarning,
                          stacklevel=3)
            return
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: saving model to {path}")

    def get_state(self) -> dict:
        return {"best": self.best}

    def set_state(self, state: dict) -> None:
        self.best = state["best"]


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved by
    ``min_delta`` for ``patience`` epochs, then wait ``cooldown`` epochs; never below ``min_lr``
    (Keras's ReduceLROnPlateau). Adds ``learning_rate`` to the epoch logs."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.direction = _direction(mode, monitor, "ReduceLROnPlateau")
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.cooldown_counter = 0
        self.best = math.inf if self.direction == "min" else -math.inf

    def _improves(self, value: float) -> bool:
        if self.direction == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = _lr(self.model)
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(current):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and _lr(self.model) > self.min_lr:
                new_lr = max(_lr(self.model) * self.factor, self.min_lr)
                self.model.optimizer.learning_rate = new_lr
                if self.verbose > 0:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                          f"{new_lr}.")
                self.cooldown_counter, self.wait = self.cooldown, 0

    def get_state(self) -> dict:
        return {"wait": self.wait, "cooldown_counter": self.cooldown_counter, "best": self.best}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch)`` or
    ``schedule(epoch, lr)`` (epoch 0-based; Keras's LearningRateScheduler). Adds
    ``learning_rate`` to the epoch logs."""

    def __init__(self, schedule, verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise ConfigError(f"LearningRateScheduler: schedule must be callable, got "
                              f"{type(schedule).__name__}")
        self.schedule, self.verbose = schedule, verbose
        params = inspect.signature(schedule).parameters.values()
        self.takes_lr = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                            for p in params) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)

    def on_epoch_begin(self, epoch, logs=None):
        lr = self.schedule(epoch, _lr(self.model)) if self.takes_lr else self.schedule(epoch)
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr):
            raise ConfigError(f"LearningRateScheduler: the schedule returned {lr!r} for epoch "
                              f"{epoch}; it must return a finite float")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _lr(self.model)


class CSVLogger(Callback):
    """Write the epoch logs to a CSV file: ``epoch,<keys in sorted order>`` then one row per
    epoch (Keras's CSVLogger). ``append=True`` continues an existing file (no second header).
    A resumed fit cuts the file back to what the checkpoint had seen, so no epoch is written twice.
    """

    def __init__(self, filename, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename, self.separator, self.append = str(filename), separator, append
        self.keys: list[str] | None = None
        self.file = None

    def on_train_begin(self, logs=None):
        exists = os.path.isfile(self.filename) and os.path.getsize(self.filename) > 0
        self.header_written = self.append and exists
        self.keys = None
        # The file is opened at the first epoch end, so that a resumed fit can first say how much
        # of it to keep (set_state).
        self.keep_bytes = None if self.append else 0

    def _open(self):
        if self.file is None:
            self.file = open(self.filename, "a", newline="", encoding="utf-8")
            if self.keep_bytes is not None:
                self.file.truncate(self.keep_bytes)
        return self.file

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
        writer = csv.writer(self._open(), delimiter=self.separator, lineterminator="\n")
        if not self.header_written:
            writer.writerow(["epoch", *self.keys])
            self.header_written = True
        writer.writerow([epoch, *(logs.get(k, "NA") for k in self.keys)])
        self.file.flush()

    def on_train_end(self, logs=None):
        if self.file is not None:
            self.file.close()
            self.file = None

    def get_state(self) -> dict:
        if self.file is not None:
            size = self.file.tell()
        elif self.keep_bytes is not None:
            size = self.keep_bytes
        else:
            size = os.path.getsize(self.filename) if os.path.isfile(self.filename) else 0
        return {"size": size, "keys": self.keys, "header_written": self.header_written}

    def set_state(self, state: dict) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.keep_bytes = state["size"]
        self.keys, self.header_written = state["keys"], state["header_written"]


class TensorBoard(Callback):
    """Write the epoch logs as TensorBoard scalars: ``log_dir/train`` and ``log_dir/validation``
    with tags ``epoch_<name>`` (Keras's layout). Needs the ``tensorboard`` package."""

    def __init__(self, log_dir="logs"):
        super().__init__()
        try:
            module = importlib.import_module("torch.utils.tensorboard")
        except ImportError:
            raise MissingDependencyError(
                "the TensorBoard callback needs the optional package 'tensorboard', which is "
                f"not installed: {optional.install_hint('tensorboard')}") from None
        self.log_dir = str(log_dir)
        self.writer_class = module.SummaryWriter
        self.writers: dict = {}

    def _writer(self, split: str):
        if split not in self.writers:
            self.writers[split] = self.writer_class(os.path.join(self.log_dir, split))
        return self.writers[split]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(split).add_scalar(f"epoch_{name}", value, epoch)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
        self.writers = {}
