"""Seeing inside a recurrent layer: gradient through time, gate statistics, hidden states.

Dimension legend: B batch, T time, I input features, H units, G gates.

Everything here watches the layer's own forward pass through the engine
(``engine.options(observe=engine.Recorder(cell))``): the scan then runs the reference loop over
the cell's ``step`` and hands over each step's new state h_t, still in the autograd graph, and the
gate activations that same ``step`` computed. Nothing re-derives a cell's equations, and the
layer, its cell and its backend are left untouched.

Gradient through time. ‖∂L/∂h_t‖ must be the *total* derivative: the loss reaches h_t directly
(when the output sequence is used) and through h_{t+1}, h_{t+2}, ... The layer's returned hidden
sequence (B, T, H) is a ``torch.stack`` of the per-step states, so ``retain_grad`` on it would give
only the direct part (zero for t < T-1 when only the last state is used). The recorded h_t are the
steps' own outputs, so ``torch.autograd.grad(loss, [h_0, ..., h_{T-1}])`` gives the total
derivatives, as ``h_t.retain_grad()`` would, without leaving gradients on the parameters.

A gate value is saturated when it is within ``eps`` of 0 or 1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .. import engine
from ..cells import GRUCell, LSTMCell
from ..errors import ConfigError, ShapeError
from ..layers.recurrent import RNN
from ..training import losses as _losses
from ..training.data import to_tensor


def recurrent_layers(model: nn.Module) -> list[RNN]:
    """Every recurrent layer inside ``model`` (itself included), in module order."""
    return [m for m in model.modules() if isinstance(m, RNN)]


def pick_layer(model_or_layer: nn.Module, layer: RNN | None = None) -> RNN:
    """``layer`` if given, else the model itself when it is a recurrent layer, else its first."""
    if layer is not None:
        if not isinstance(layer, RNN):
            raise ConfigError(f"expected a recurrent layer (SimpleRNN, LSTM, GRU, RNN), "
                              f"got {type(layer).__name__}")
        return layer
    found = recurrent_layers(model_or_layer)
    if not found:
        raise ConfigError(f"{getattr(model_or_layer, 'name', type(model_or_layer).__name__)}: "
                          "holds no recurrent layer (SimpleRNN, LSTM, GRU, RNN)")
    return found[0]


def _as_input(x, what: str = "x") -> Tensor:
    return to_tensor(x, what)


def ensure_built(module: nn.Module, x: Tensor) -> None:
    """Build a lazily built model or layer with one forward pass on a sample of x (no grad)."""
    if all(layer.cell is not None for layer in recurrent_layers(module)):
        return
    was_training = module.training
    module.eval()
    with torch.no_grad():
        module(x[:1])
    module.train(was_training)


def _check_called(recorder: engine.Recorder, layer: RNN) -> engine.Recorder:
    if not recorder.hidden:
        raise ShapeError(f"{layer.name}: was not called by the forward pass")
    return recorder


def gradient_through_time(model_or_layer: nn.Module, x, y, loss=None,
                          layer: RNN | None = None) -> np.ndarray:
    """‖∂L/∂h_t‖ for t = 0..T-1 on the batch (x, y): (T,) float64, in time order.

    ``model_or_layer``: a Model (loss = ``loss``, else its compiled loss) or a recurrent layer
    (loss = ``loss``, default mean squared error against its output). ``layer`` picks the
    recurrent layer inside a model (default: the first). h_t is the layer's state after step t;
    the norm is taken over the whole batch and all units (L is the batch's mean loss). Runs in
    eval mode (no dropout) and leaves no gradients on the parameters.

    >>> norms = gradient_through_time(model, x[:32], y[:32])   # norms[0] tiny: vanishing
    """
    target = pick_layer(model_or_layer, layer)
    loss_fn = _resolve_loss(model_or_layer, loss)
    x = _as_input(x)
    ensure_built(model_or_layer, x)
    module = model_or_layer
    was_training = module.training
    module.eval()
    recorder = engine.Recorder(target.cell)
    try:
        with torch.enable_grad():
            with engine.options(observe=recorder):
                out, mask = _forward(module, x)
            hs = _check_called(recorder, target).hidden
            weight = None if mask is None else mask.float()
            batch_loss = loss_fn(_as_input(y, "y"), out, weight)
            grads = torch.autograd.grad(batch_loss, hs, allow_unused=True)
    finally:
        module.train(was_training)
    per_step = recorder.sequence([torch.zeros_like(h) if g is None else g
                                  for g, h in zip(grads, hs)])  # (B, T, H)
    return torch.linalg.vector_norm(per_step.double(), dim=(0, 2)).numpy()


def _forward(module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """The output and its loss mask (a Model's ``call_with_mask``; a layer's first output)."""
    if hasattr(module, "call_with_mask"):
        return module.call_with_mask(x)
    out = module(x)
    return (out[0] if isinstance(out, (list, tuple)) else out), None


def _resolve_loss(model_or_layer: nn.Module, loss) -> _losses.Loss:
    if loss is not None:
        return _losses.get(loss)
    compiled = getattr(model_or_layer, "loss", None)
    if isinstance(compiled, _losses.Loss):
        return compiled
    if isinstance(model_or_layer, RNN):
        return _losses.MeanSquaredError()
    raise ConfigError(f"{getattr(model_or_layer, 'name', 'model')}: no loss; compile the model "
                      "or pass loss=")


def layer_input(model: nn.Module, layer: nn.Module, x) -> Tensor:
    """The input (B, T, I) that ``layer`` receives when ``model`` runs on x (eval mode)."""
    x = _as_input(x)
    ensure_built(model, x)
    if model is layer:
        return x
    seen: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
        model.train(was_training)
    if not seen:
        raise ShapeError(f"{getattr(layer, 'name', 'layer')}: was not called by the model")
    return seen[0]


def hidden_states(layer: RNN, x, model: nn.Module | None = None) -> np.ndarray:
    """The hidden states h_t of ``layer``: (B, T, H) in time order (eval mode, no mask).

    x is the layer's input (B, T, I), or the model's input when ``model`` is given.
    """
    recorder = _run_observed(layer, layer_input(model or layer, layer, x))
    return recorder.sequence(recorder.hidden).numpy()


def _run_observed(layer: RNN, xin: Tensor) -> engine.Recorder:
    """The layer on its input (B, T, I) in eval mode without gradients, every step recorded;
    a stateful layer's carried state is left as it was."""
    was_training, carried = layer.training, layer.states
    recorder = engine.Recorder(layer.cell)
    layer.eval()
    try:
        with torch.no_grad(), engine.options(observe=recorder):
            layer(xin)
    finally:
        layer.train(was_training)
        layer.states = carried
    return _check_called(recorder, layer)


def gate_values(layer: RNN, x, model: nn.Module | None = None) -> dict[str, np.ndarray]:
    """Every gate's activation at every step: name -> (B, T, H), in time order.

    LSTM: i (input), f (forget), o (output); coupled LSTM: f, o; GRU: r (reset), z (update):
    what the cell's own ``step`` reports. x is the layer's input, or the model's input when
    ``model`` is given.
    """
    if not isinstance(layer.cell, (LSTMCell, GRUCell)):
        raise ConfigError(f"{layer.name} ({type(layer).__name__}): has no gates; gate statistics "
                          "need an LSTM or GRU layer")
    recorder = _run_observed(layer, layer_input(model or layer, layer, x))
    return {name: recorder.sequence(steps).numpy() for name, steps in recorder.gates.items()}


def gate_statistics(layer: RNN, x, model: nn.Module | None = None,
                    eps: float = 0.05) -> dict[str, dict[str, np.ndarray]]:
    """Per gate and step: ``mean`` (T,), ``saturated_low`` (T,) the fraction of values < eps,
    ``saturated_high`` (T,) the fraction > 1 - eps, ``saturated`` (T,) their sum.

    A forget gate saturated high carries the cell state (and its gradient) unchanged; saturated
    low, it erases it. x is the layer's input (B, T, I), or the model's when ``model`` is given.
    """
    if not 0.0 < eps < 0.5:
        raise ConfigError(f"gate_statistics: eps must be in (0, 0.5), got {eps}")
    stats = {}
    for name, g in gate_values(layer, x, model).items():
        low = (g < eps).mean(axis=(0, 2))
        high = (g > 1.0 - eps).mean(axis=(0, 2))
        stats[name] = {"mean": g.mean(axis=(0, 2)), "saturated_low": low,
                       "saturated_high": high, "saturated": low + high}
    return stats
