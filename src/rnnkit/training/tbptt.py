"""Truncated backpropagation through time for series longer than memory allows.

Dimension legend: B batch (parallel series), T time, I input features, O outputs per step.

TBPTT(k1, k2) (Williams & Peng): every k1 new steps, one optimizer update whose gradients reach
k2 steps back. The recurrent layers are made stateful for the run: each carries its state from
one block to the next, detached, so the autograd graph — and the memory held for backward —
spans at most k2 steps however long the series is. k2 must be a multiple of k1: an update re-runs
the last k2 steps from the state saved k2 steps earlier (k2 == k1, the common case, re-runs
nothing); the loss covers the k1 new steps.

``fit_tbptt(model, x, y, k1, k2)`` takes x (B, T, I) and per-step targets y (B, T, O) from a
compiled model whose output is a sequence (B, t, O).
"""

from __future__ import annotations

import contextlib
from collections import deque

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from . import callbacks as _callbacks
from . import denormals as _denormals


def check_window(tbptt) -> tuple[int, int]:
    """(k1, k2) from ``tbptt=k`` or ``tbptt=(k1, k2)``, checked."""
    k1, k2 = (tbptt, tbptt) if isinstance(tbptt, int) else tuple(tbptt)
    if min(k1, k2) < 1 or k2 % k1:
        raise ConfigError(f"tbptt=(k1, k2) needs positive integers with k2 a multiple of k1, "
                          f"got {tbptt!r}")
    return int(k1), int(k2)


def recurrent_layers(model) -> list:
    """The recurrent layers whose state TBPTT carries; a backward layer cannot be carried."""
    from ..layers import RNN

    rnns = [m for m in model.modules() if isinstance(m, RNN)]
    for layer in rnns:
        if layer.go_backwards:
            raise ConfigError(f"tbptt: {layer.name} runs backwards (go_backwards or "
                              "Bidirectional); its state cannot be carried from block to block")
    if not rnns:
        raise ConfigError(f"tbptt: {model.name} has no recurrent layer to carry a state through")
    return rnns


class CarriedState:
    """Makes the recurrent layers stateful for a run, snapshots and restores their states."""

    def __init__(self, layers: list):
        self.layers = layers
        self.saved_flags = [layer.stateful for layer in layers]

    def __enter__(self) -> CarriedState:
        for layer in self.layers:
            layer.stateful = True
            layer.reset_states()
        return self

    def __exit__(self, *exc) -> None:
        for layer, flag in zip(self.layers, self.saved_flags):
            layer.stateful = flag
            layer.reset_states()

    def snapshot(self) -> list:
        return [layer.states for layer in self.layers]

    def restore(self, states: list) -> None:
        for layer, s in zip(self.layers, states):
            layer.states = s


def _check_series(model, x: Tensor, y: Tensor) -> None:
    if x.dim() != 3 or y.dim() != 3 or x.shape[:2] != y.shape[:2]:
        raise ShapeError(f"tbptt: expected x (B, T, I) and per-step targets y (B, T, O) sharing "
                         f"B and T, got x {tuple(x.shape)} and y {tuple(y.shape)}")


def train_series(model, x: Tensor, y: Tensor, k1: int, k2: int, cbs=None) -> dict:
    """One pass over the series (one epoch): an update every k1 steps; returns the epoch logs."""
    carried = CarriedState(recurrent_layers(model))
    model.reset_metrics()
    logs: dict = {}
    with carried:
        back = deque([carried.snapshot()], maxlen=k2 // k1)  # states at the last block starts
        for step, start in enumerate(range(0, x.shape[1], k1)):
            stop = min(start + k1, x.shape[1])
            begin = max(stop - k2, 0) if k2 > k1 else start
            carried.restore(back[0])  # the state at `begin`, detached
            if cbs is not None:
                cbs.call("on_train_batch_begin", step, None)
            with _denormals.steps_flushed(getattr(model, "_flushing_steps", False)):
                logs = _update(model, x[:, begin:stop], y[:, start:stop], stop - start)
            back.append(carried.snapshot())
            if cbs is not None:
                cbs.call("on_train_batch_end", step, logs)
    return logs


def _update(model, x: Tensor, y: Tensor, new: int) -> dict:
    """Forward the window x (B, w, I), loss on its last ``new`` steps, one optimizer step."""
    y_pred, mask = model.call_with_mask(x)
    if y_pred.dim() != 3:
        raise ShapeError(f"tbptt: the model must output a sequence (B, t, O), got shape "
                         f"{tuple(y_pred.shape)}; set return_sequences=True on the last "
                         "recurrent layer")
    y_pred = y_pred[:, -new:]
    weight = None if mask is None else mask[:, -new:].float()
    loss = model.compute_loss(y, y_pred, weight)
    model.optimizer.zero_grad()
    loss.backward()
    model.optimizer.step()
    return model.compute_metrics(loss, y, y_pred.detach(), weight, len(x))


def fit_tbptt(model, x, y, tbptt, epochs: int = 1, verbose=0, callbacks=None):
    """Train a compiled model on long series with TBPTT(k1, k2); returns the History.

    x (B, T, I) holds B parallel series, y (B, T, O) a target per step. Each epoch runs the
    series once from a zero state.
    """
    from . import data

    k1, k2 = check_window(tbptt)
    if getattr(model, "_strategy", None) is not None:
        raise ConfigError("tbptt: truncated BPTT runs in one process; it cannot be combined "
                          "with strategy='ddp' / torchrun")
    x, y = data.to_tensor(x, "x"), data.to_tensor(y, "y")
    _check_series(model, x, y)
    device = model._device()
    x, y = x.to(device), y.to(device)
    model._ensure_ready(x[:, :k1])
    history = _callbacks.History()
    cbs = model._callback_list(callbacks, history, verbose,
                               {"epochs": epochs, "steps": -(-x.shape[1] // k1)})
    model.stop_training = False
    model.train()
    cbs.call("on_train_begin", None)
    logs: dict = {}
    for epoch in range(epochs):
        cbs.call("on_epoch_begin", epoch, None)
        logs = train_series(model, x, y, k1, k2, cbs)
        cbs.call("on_epoch_end", epoch, logs)
        if model.stop_training:
            break
    cbs.call("on_train_end", logs)
    model.history = history
    return history


class SavedMemory:
    """Bytes autograd holds for backward (tensors saved by the forward), current and peak."""

    def __init__(self):
        self.current = self.peak = 0

    def _pack(self, t: Tensor):
        self.current += t.untyped_storage().nbytes()
        self.peak = max(self.peak, self.current)
        return _Held(t, self)

    @staticmethod
    def _unpack(held) -> Tensor:
        return held.tensor


class _Held:
    """A saved tensor that gives its bytes back to the meter when autograd frees it."""

    def __init__(self, tensor: Tensor, meter: SavedMemory):
        self.tensor, self.meter, self.nbytes = tensor, meter, tensor.untyped_storage().nbytes()

    def __del__(self):
        self.meter.current -= self.nbytes


@contextlib.contextmanager
def saved_memory():
    """``with saved_memory() as m: ...`` then ``m.peak``: the most bytes held for backward at
    once — the memory that full BPTT grows with T and TBPTT bounds by k2."""
    meter = SavedMemory()
    with torch.autograd.graph.saved_tensors_hooks(meter._pack, meter._unpack):
        yield meter
