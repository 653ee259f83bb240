"""Truncated backpropagation through time for series longer than memory allows.

Dimension legend: B batch (parallel series), T time, I input features, O outputs per step.

TBPTT(k1, k2) (Williams & Peng): every k1 new steps, one optimizer update whose gradients reach
k2 steps back. It is not a loop of its own: ``Windows`` is a batch feed for ``fit`` that cuts
the series into windows and carries the recurrent state from one window to the next, so every
window is an ordinary batch of fit's loop, with its train step, NaN guard, precision, DDP,
callbacks, checkpoints and exact resume.

The recurrent layers are made stateful for the run: each carries its state from one window to
the next, detached, so the autograd graph, and the memory held for backward, spans at most k2
steps however long the series is. k2 must be a multiple of k1: a window re-runs the last k2 steps
from the state saved k2 steps earlier (k2 == k1, the common case, re-runs nothing); the steps
before the k1 new ones get sample weight 0, so the loss covers the new steps only.

``fit(x, y, tbptt=(k1, k2))`` takes x (B, T, I) and per-step targets y (B, T, O) for a compiled
model whose output is a sequence (B, t, O). The B series form one batch, in order (under DDP,
each process's share of them); every epoch runs them once from a zero state.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator

import torch
from torch import Tensor

from ..errors import ConfigError, ShapeError
from ..layers.recurrent import RNN
from . import data as _data


def check_window(tbptt) -> tuple[int, int]:
    """(k1, k2) from ``tbptt=k`` or ``tbptt=(k1, k2)``, checked."""
    k1, k2 = (tbptt, tbptt) if isinstance(tbptt, int) else tuple(tbptt)
    if min(k1, k2) < 1 or k2 % k1:
        raise ConfigError(f"tbptt=(k1, k2) needs positive integers with k2 a multiple of k1, "
                          f"got {tbptt!r}")
    return int(k1), int(k2)


def recurrent_layers(model) -> list:
    """The recurrent layers whose state TBPTT carries; a backward layer cannot be carried."""
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

    @contextlib.contextmanager
    def paused(self):
        """The layers as they were before the run (validation runs whole sequences), the carried
        states put back afterwards."""
        carried = self.snapshot()
        flags = [layer.stateful for layer in self.layers]
        for layer, flag in zip(self.layers, self.saved_flags):
            layer.stateful = flag
            layer.reset_states()
        try:
            yield
        finally:
            for layer, flag in zip(self.layers, flags):
                layer.stateful = flag
            self.restore(carried)


def check_series(x: Tensor, y: Tensor | None) -> None:
    if y is None or x.dim() != 3 or y.dim() != 3 or x.shape[:2] != y.shape[:2]:
        shape = None if y is None else tuple(y.shape)
        raise ShapeError(f"tbptt: expected x (B, T, I) and per-step targets y (B, T, O) sharing "
                         f"B and T, got x {tuple(x.shape)} and y {shape}")


def check_sequence_output(model, x: Tensor) -> None:
    """A ShapeError unless the model outputs a sequence (B, t, O) on x (one eval forward)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        model.train(was_training)
    if out.dim() != 3:
        raise ShapeError(f"tbptt: the model must output a sequence (B, t, O), got shape "
                         f"{tuple(out.shape)}; set return_sequences=True on the last "
                         "recurrent layer")


class Windows:
    """fit's batch feed under TBPTT(k1, k2): each epoch, the series of ``arrays`` (x (B, T, I),
    y (B, T, O), sample weights (B,) or (B, T)) as windows (x[:, begin:stop], y[:, begin:stop],
    weights with 0 before ``start``) that carry the recurrent state. A window must run through
    fit's train step before the next one is asked for: the state it leaves is the next one's start.
    ``with feed.carrying():`` around the run makes the recurrent layers stateful.
    """

    def __init__(self, arrays: _data.ArrayData, model, k1: int, k2: int):
        check_series(arrays.x, arrays.y)
        self.source, self.k1, self.k2 = arrays, k1, k2
        self.carried = CarriedState(recurrent_layers(model))
        self.model = model
        self.ran_out = False
        self._window = 0  # the next window of this pass
        self._back: deque | None = None  # carried states at the last k2 // k1 window starts
        self._pending = False
        self._passes = 0

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.source.x.shape[1] // self.k1)

    @property
    def arrays(self) -> _data.ArrayData:
        return self.source

    def carrying(self) -> CarriedState:
        return self.carried

    def paused(self):
        return self.carried.paused()

    def epoch(self, first_step: int = 0) -> Iterator[_data.Batch]:
        """This pass's windows (a resumed pass continues from its state; ``first_step`` is
        where it stands already)."""
        order = self.source.order(False, self._passes)
        series = self.source.take(order)
        if self._back is None:  # a fresh pass starts from a zero state
            self.carried.restore([None] * len(self.carried.layers))
            self._back = deque([self.carried.snapshot()], maxlen=self.k2 // self.k1)
            self._window = 0
        steps = series.x.shape[1]
        while self._window * self.k1 < steps:
            start = self._window * self.k1
            stop = min(start + self.k1, steps)
            begin = max(stop - self.k2, 0) if self.k2 > self.k1 else start
            self.carried.restore(self._back[0])  # the state at `begin`, detached
            self._window += 1
            self._pending = True  # the state this window leaves is not in _back yet
            yield self._cut(series, begin, start, stop)
            self._back.append(self.carried.snapshot())
            self._pending = False
        self._back, self._window = None, 0
        self._passes += 1

    @staticmethod
    def _cut(series: _data.ArrayData, begin: int, start: int, stop: int) -> _data.Batch:
        """Steps [begin, stop) of every series; only [start, stop) count in the loss."""
        counted = torch.zeros(series.n, stop - begin)  # (B, w)
        counted[:, start - begin:] = 1.0
        weight = series.sample_weight
        if weight is not None:
            weight = weight[:, begin:stop] if weight.dim() >= 2 else weight[:, None]
            counted = counted * weight.reshape(series.n, -1).to(counted.dtype)
        if start == begin and series.sample_weight is None:
            counted = None  # every step counts: no weights, as a plain batch
        return series.x[:, begin:stop], series.y[:, begin:stop], counted

    # -- resuming --------------------------------------------------------------------------------
    resumable = True

    def state_dict(self) -> dict:
        """The next window and the carried states it and the re-run windows start from."""
        back = None
        if self._back is not None:
            starts = deque(self._back, maxlen=self._back.maxlen)
            if self._pending:  # taken between a window's train step and the next window
                starts.append(self.carried.snapshot())
            back = [[None if s is None else list(s) for s in snapshot] for snapshot in starts]
        return {"window": self._window, "back": back, "passes": self._passes}

    def load_state_dict(self, state: dict) -> None:
        device = _data.device_of(self.model)
        self._window, self._passes, self._pending = state["window"], state["passes"], False
        self._back = None if state["back"] is None else deque(
            ([None if s is None else tuple(t.to(device) for t in s) for s in snapshot]
             for snapshot in state["back"]), maxlen=self.k2 // self.k1)

    def describe(self) -> dict:
        return {"series": self.source.n, "steps": int(self.source.x.shape[1]),
                "tbptt": [self.k1, self.k2]}

    def example(self) -> Tensor:
        return self.source.x[:1, :self.k1]


def fit_tbptt(model, x, y, tbptt, epochs: int = 1, verbose=0, callbacks=None):
    """The old entry point: ``model.fit(x, y, tbptt=tbptt, ...)``, which it now is."""
    return model.fit(x, y, tbptt=tbptt, epochs=epochs, verbose=verbose, callbacks=callbacks)


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
