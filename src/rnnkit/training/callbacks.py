"""Callbacks keyed by Keras's event names, History, and the per-epoch progress bar.

``fit`` calls, in order: on_train_begin; per epoch on_epoch_begin, per batch
on_train_batch_begin/on_train_batch_end, then (with validation data) on_test_begin,
on_test_batch_begin/end, on_test_end, then on_epoch_end; finally on_train_end. ``evaluate`` calls
the test events. ``logs`` are dicts of floats: running means within an epoch, epoch means at its
end (``val_`` keys included). Setting ``model.stop_training = True`` ends ``fit`` after the
current batch.
"""

from __future__ import annotations

import sys
import time


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
