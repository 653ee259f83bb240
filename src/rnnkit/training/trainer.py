"""The training loop: ``fit``, ``evaluate`` and ``predict`` for any compiled Model.

``Model.fit/evaluate/predict`` are thin calls into a ``Trainer``; nothing here knows about
recurrences (as minGPT's Trainer says of GPT). One loop serves every way of feeding data:

  feed      arrays cut into (shuffled) batches, an iterable of batches (``training/data.py``), or
            long series cut into TBPTT windows that carry the recurrent state (``tbptt.py``);
  step      ``model.train_step(batch)`` (``steps.py``), under the NaN guard (``guard.py``),
            with the model's precision, through the distribution strategy (``distributed.py``),
            denormals flushed (``denormals.py``);
  run       callbacks by event, checkpoints every N steps or epochs and exact resume
            (``checkpoint.py``), validation after each epoch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import numpy as np
import torch

from ..errors import ConfigError, ShapeError
from ..layers.base import top_layers
from . import callbacks as _callbacks
from . import checkpoint as _checkpoint
from . import data as _data
from . import denormals as _denormals
from . import distributed as _distributed
from . import guard as _guard
from . import tbptt as _tbptt


class Trainer:
    """Runs the loops of one model (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        self.flushing = False  # steps run with denormals flushed on this thread too (inside fit)

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, x=None, y=None, *, batch_size: int = 32, epochs: int = 1, verbose="auto",
            callbacks=None, validation_split: float = 0.0, validation_data=None,
            shuffle: bool = True, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, initial_epoch: int = 0, sample_weight=None,
            on_nan: str | None = "rollback", nan_lr_factor: float = 0.5, seed: int | None = None,
            checkpoint_dir=None, checkpoint_every: int | None = None, resume=None,
            strategy=None, tbptt=None) -> _callbacks.History:
        """``Model.fit``'s arguments (see there); returns the History."""
        model = self.model
        require_compiled(model, "fit")
        # torch's worker threads flushed for the whole fit, this thread only inside the steps:
        # Python code here (callbacks, messages) keeps IEEE floats (training/denormals.py)
        self.flushing = getattr(model, "flush_denormals", True)
        try:
            with _denormals.flush_denormals(self.flushing, calling_thread=False):
                model.distribute_strategy = _distributed.detect(strategy)
                check_positive("batch_size", batch_size)
                if epochs < 0:
                    raise ConfigError(f"fit: epochs must be >= 0, got {epochs}")
                if not 0.0 <= validation_split < 1.0:
                    raise ConfigError(f"fit: validation_split must be in [0, 1), got "
                                      f"{validation_split}")
                guard = _guard.NanGuard(model, on_nan, nan_lr_factor)
                if seed is not None:
                    _checkpoint.seed_everything(seed)
                train, val = self._feeds(x, y, sample_weight, batch_size, validation_split,
                                         validation_data, shuffle, steps_per_epoch,
                                         validation_steps, tbptt)
                run = _checkpoint.TrainingRun(model, train, _distributed.chief_only(
                    model.distribute_strategy, checkpoint_dir), checkpoint_every, resume)
                with _tbptt_scope(train, "carrying"):
                    return self._fit(train, val, run, guard, epochs, initial_epoch,
                                     steps_per_epoch, verbose, callbacks)
        finally:
            self.flushing = False

    def _fit(self, train, val, run, guard, epochs, initial_epoch, steps_per_epoch, verbose,
             callbacks) -> _callbacks.History:
        model = self.model
        strategy = model.distribute_strategy
        verbose = _distributed.chief_only(strategy, verbosity(verbose), 0)
        history = _callbacks.History()
        history.nan_events = guard.events
        cbs = callback_list(model, callbacks, history, verbose,
                            {"epochs": epochs, "steps": train.steps_per_epoch})
        model.stop_training = False
        cbs.call("on_train_begin", None)
        run.begin(cbs)
        logs: dict = {}
        first_epoch = run.first_epoch(initial_epoch)
        for epoch in range(first_epoch, epochs):
            model.reset_metrics()
            cbs.call("on_epoch_begin", epoch, None)
            epoch_logs = self._train_epoch(run, cbs, epoch, guard)
            if epoch_logs is None:
                if epoch == first_epoch:
                    raise ShapeError("fit: x yielded no batches (empty data)")
                _data.warn_ran_out(steps_per_epoch, epochs)
                break
            logs = _distributed.reduce_logs(strategy, epoch_logs)
            if val is not None:
                with _tbptt_scope(train, "paused"):  # validation runs whole sequences
                    val_logs = _distributed.reduce_logs(strategy, self._test(val, cbs))
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cbs.call("on_epoch_end", epoch, logs)
            run.end_epoch(epoch, cbs)
            if train.ran_out:
                _data.warn_ran_out(steps_per_epoch, epochs)
                break
            if model.stop_training:
                break
        cbs.call("on_train_end", logs)
        model.history = history
        return history

    def _train_epoch(self, run, cbs, epoch: int, guard) -> dict | None:
        """One epoch of train steps: ``run`` hands out the batches (a resumed epoch continues
        after its last step) and saves after them, ``guard`` wraps each train_step."""
        model = self.model
        model.train()
        logs = None
        for step, batch in run.batches(epoch, cbs):
            batch = to_device(model, batch)
            if batch[1] is None:
                raise ShapeError("fit: the data has no targets y")
            self.prepare(batch[0])
            cbs.call("on_train_batch_begin", step, None)
            with _denormals.steps_flushed(self.flushing):
                logs = guard.step(batch, epoch, step)
            cbs.call("on_train_batch_end", step, logs)
            run.after_step(epoch, step, cbs)
            if model.stop_training:
                break
        return logs

    def _feeds(self, x, y, sample_weight, batch_size, validation_split, validation_data,
               shuffle, steps_per_epoch, validation_steps, tbptt):
        """The training feed (batches, or TBPTT windows) and the validation stream, sharded under
        a strategy and checked up front."""
        strategy = self.model.distribute_strategy
        if validation_split and not _data.is_array_like(x):
            raise ConfigError("fit: validation_split needs array inputs; with a generator pass "
                              "validation_data instead")
        val = None
        if validation_split:
            train_arrays, val_arrays = _data.ArrayData(x, require_y(y, "fit"),
                                                       sample_weight).split(validation_split)
            train = _data.BatchStream(train_arrays, batch_size, shuffle, steps_per_epoch)
            val = _data.BatchStream(val_arrays, batch_size, False, validation_steps)
        else:
            train = stream(x, y, sample_weight, batch_size, shuffle, steps_per_epoch, True)
            if validation_data is not None:
                val = _validation_stream(validation_data, batch_size, validation_steps)
        check_whole_inputs(self.model, train, val)
        train, val = (_distributed.shard(strategy, s) for s in (train, val))
        if tbptt is None:
            return train, val
        if train.arrays is None or steps_per_epoch is not None:
            raise ConfigError("fit: tbptt cuts arrays x (B, T, I), y (B, T, O) into windows; it "
                              "takes neither a generator nor steps_per_epoch")
        k1, k2 = _tbptt.check_window(tbptt)
        windows = _tbptt.Windows(train.arrays, self.model, k1, k2)
        self.prepare(windows.example())
        _tbptt.check_sequence_output(self.model, windows.example())
        return windows, val

    # -- evaluate / predict ------------------------------------------------------------------------
    def evaluate(self, x=None, y=None, *, batch_size: int = 32, verbose="auto",
                 sample_weight=None, steps: int | None = None, callbacks=None,
                 return_dict: bool = False):
        """``Model.evaluate``'s arguments (see there)."""
        require_compiled(self.model, "evaluate")
        check_positive("batch_size", batch_size)
        feed = stream(x, y, sample_weight, batch_size, False, steps, needs_y=True)
        cbs = callback_list(self.model, callbacks, None, verbosity(verbose),
                            {"steps": feed.steps_per_epoch})
        logs = self._test(feed, cbs)
        if not logs:
            raise ShapeError("evaluate: x yielded no batches (empty data)")
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, *, batch_size: int = 32, verbose="auto", steps: int | None = None):
        """``Model.predict``'s arguments (see there): one numpy array."""
        check_positive("batch_size", batch_size)
        model = self.model
        feed = stream(x, None, None, batch_size, False, steps, needs_y=False)
        model.eval()
        outputs = []
        for batch in feed.epoch():
            batch = to_device(model, batch)
            model.build_from_batch(batch[0])
            outputs.append(model.predict_step(batch).cpu())
        if not outputs:
            raise ShapeError("predict: x yielded no batches (empty data)")
        return torch.cat(outputs).numpy()

    def _test(self, feed: _data.BatchStream, cbs) -> dict:
        model = self.model
        model.eval()
        model.reset_metrics()
        cbs.call("on_test_begin", None)
        logs: dict = {}
        for step, batch in enumerate(feed.epoch()):
            batch = to_device(model, batch)
            model.build_from_batch(batch[0])
            cbs.call("on_test_batch_begin", step, None)
            with _denormals.steps_flushed(self.flushing):
                logs = model.test_step(batch)
            cbs.call("on_test_batch_end", step, logs)
        cbs.call("on_test_end", logs)
        return logs

    # -- plumbing ----------------------------------------------------------------------------------
    def prepare(self, x) -> None:
        """Build the model from a first batch, then the torch optimizer over its parameters."""
        model = self.model
        if x is not None:
            model.build_from_batch(x.to(_data.device_of(model)))
        if not model.optimizer.built:
            model.optimizer.build(model.parameters())


def _tbptt_scope(feed, name: str):
    """TBPTT windows' ``carrying()`` (the layers stateful for the run) or ``paused()``; nothing
    for other feeds."""
    return getattr(feed, name)() if isinstance(feed, _tbptt.Windows) else contextlib.nullcontext()


def stream(x, y, sample_weight, batch_size: int, shuffle: bool, steps: int | None,
           needs_y: bool) -> _data.BatchStream:
    """The batches of x (and y): arrays sliced, or an iterable of batches as it comes."""
    if _data.is_array_like(x):
        y = require_y(y, "fit/evaluate") if needs_y else None
        return _data.BatchStream(_data.ArrayData(x, y, sample_weight), batch_size, shuffle, steps)
    if y is not None:
        raise ConfigError("y must be None when x is a generator or iterable of batches "
                          "(the batches carry the targets)")
    if not isinstance(x, Iterable):
        raise ConfigError(f"x must be an array, tensor, list or an iterable of batches, "
                          f"got {type(x).__name__}")
    return _data.BatchStream(x, batch_size, False, steps)


def _validation_stream(validation_data, batch_size: int, steps: int | None) -> _data.BatchStream:
    if isinstance(validation_data, (tuple, list)) and 2 <= len(validation_data) <= 3 \
            and _data.is_array_like(validation_data[0]):
        return _data.BatchStream(_data.ArrayData(*validation_data, role="validation_data "),
                                 batch_size, False, steps)
    return _data.BatchStream(validation_data, batch_size, False, steps)


def check_whole_inputs(model, *streams) -> None:
    """Checks the first layer can make on a whole array (e.g. an Embedding's token ids) run
    before the first step, so a bad value in a late batch leaves nothing half-trained."""
    first = next(top_layers(model), None)
    check = getattr(first, "check_inputs", None)
    for feed in streams:
        if check is not None and feed is not None and feed.arrays is not None:
            check(feed.arrays.x)


def callback_list(model, callbacks, history, verbose: int, params: dict):
    """The callbacks of one loop, with the History and a progress bar added where missing."""
    cbs = list(callbacks or [])
    if history is not None and not any(isinstance(c, _callbacks.History) for c in cbs):
        cbs.append(history)
    if verbose and not any(isinstance(c, _callbacks.ProgressBar) for c in cbs):
        cbs.append(_callbacks.ProgressBar(verbose))
    return _callbacks.CallbackList(cbs, model, {**params, "verbose": verbose})


def to_device(model, batch):
    device = _data.device_of(model)
    return tuple(None if t is None else t.to(device) for t in batch)


def require_compiled(model, what: str) -> None:
    if model.optimizer is None:
        raise ConfigError(f"{model.name}: call compile(optimizer, loss) before {what}()")


def require_y(y, what: str):
    if y is None:
        raise ConfigError(f"{what}: targets y are missing (x is an array, so y must be given)")
    return y


def check_positive(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def verbosity(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ConfigError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)
