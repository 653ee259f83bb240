"""Seeing inside a recurrent layer: gradient through time, gate statistics, hidden states.

Dimension legend: B batch, T time, I input features, H units, G gates.

Gradient through time. ‖∂L/∂h_t‖ must be the *total* derivative: the loss reaches h_t directly
(when the output sequence is used) and through h_{t+1}, h_{t+2}, ... The layer's returned hidden
sequence (B, T, H) is a ``torch.stack`` of the per-step states, so ``retain_grad`` on it would give
only the direct part (zero for t < T-1 when only the last state is used). We therefore hook one
level deeper: for the duration of one forward pass the layer runs the reference kernel and its
cell's ``step`` is wrapped on the instance (the class is untouched) to keep each step's new
h_t; ``torch.autograd.grad(loss, [h_0, ..., h_{T-1}])`` then gives the total derivatives, as
``h_t.retain_grad()`` would, without leaving gradients on the parameters.

Gate statistics re-run the recurrence on the layer's input with the cell's own ``step`` carrying
the state, and compute the gate activations from the cell's parameters here (the cells stay
lecture equations and nothing else). A gate value is saturated when it is within ``eps`` of 0 or 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from ..cells import GRUCell, LSTMCell
from ..engine.reference import lagged
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


@contextlib.contextmanager
def _recording_steps(layer: RNN) -> Iterator[list[Tensor]]:
    """While active, each forward of ``layer`` runs the reference kernel and appends every step's
    new h_t (B', H) to the yielded list (B' = B·dilation)."""
    cell, backend = layer.cell, layer.backend
    original = cell.step
    hs: list[Tensor] = []

    def step(xw_t, state, h_lags):
        y, new = original(xw_t, state, h_lags)
        hs.append(new[0])
        return y, new

    cell.step = step  # instance attribute: shadows the class's step for this cell only
    layer.backend = "reference"
    try:
        yield hs
    finally:
        del cell.step
        layer.backend = backend


def _to_time_order(per_step: Tensor, layer: RNN, steps: int) -> Tensor:
    """(T', B', H) in processing order -> (T, B, H) in time order (undo dilation and reverse)."""
    d = layer.dilation
    if d > 1:
        n, bd, h = per_step.shape
        per_step = per_step.reshape(n, bd // d, d, h).permute(0, 2, 1, 3).reshape(n * d, bd // d, h)
        per_step = per_step[:steps]
    return per_step.flip(0) if layer.go_backwards else per_step


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
    try:
        with torch.enable_grad(), _recording_steps(target) as hs:
            out, mask = _forward(module, x)
            weight = None if mask is None else mask.float()
            batch_loss = loss_fn(_as_input(y, "y"), out, weight)
            if not hs:
                raise ShapeError(f"{target.name}: was not called by the forward pass")
            grads = torch.autograd.grad(batch_loss, hs, allow_unused=True)
    finally:
        module.train(was_training)
    per_step = torch.stack([torch.zeros_like(h) if g is None else g for g, h in zip(grads, hs)])
    steps = x.shape[1] if target.dilation == 1 else layer_input(module, target, x).shape[1]
    per_step = _to_time_order(per_step, target, steps)
    return torch.linalg.vector_norm(per_step.double(), dim=(1, 2)).numpy()


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
    xin = layer_input(model or layer, layer, x)
    was_training = layer.training
    layer.eval()
    try:
        with torch.no_grad(), _recording_steps(layer) as hs:
            layer(xin)
    finally:
        layer.train(was_training)
    return _to_time_order(torch.stack(hs), layer, xin.shape[1]).transpose(0, 1).numpy()


def lstm_gates(cell: LSTMCell, xw_t: Tensor, c_prev: Tensor, h_lags: Tensor) -> dict[str, Tensor]:
    """The LSTM's gates i, f, o (coupled: f, o) for one step, each (B, H), from its parameters."""
    hs, sig = cell.hidden_size, cell.recurrent_activation
    z = xw_t + h_lags @ cell.weight_hh.t()  # (B, G·H)
    names = ("f", "g", "o") if cell.coupled else ("i", "f", "g", "o")
    parts = dict(zip(names, z.split(hs, dim=1)))
    if cell.peephole is not None:
        prev = [n for n in names if n in ("i", "f")]
        peep = cell.peep(cell.peep_prev, c_prev).split(hs, dim=1)
        parts.update({n: parts[n] + p for n, p in zip(prev, peep)})
        act_g = cell.activation(parts["g"])
        gate_f = sig(parts["f"])
        gate_i = 1 - gate_f if cell.coupled else sig(parts["i"])
        c = gate_f * c_prev + gate_i * act_g
        parts["o"] = parts["o"] + cell.peep(cell.peep_out, c)
    gates = {n: sig(parts[n]) for n in names if n != "g"}
    return gates


def gru_gates(cell: GRUCell, xw_t: Tensor, h_lags: Tensor) -> dict[str, Tensor]:
    """The GRU's reset gate r and update gate z for one step, each (B, H)."""
    hs, sig = cell.hidden_size, cell.recurrent_activation
    gh = h_lags @ cell.weight_hh[: 2 * hs].t()  # (B, 2H): the r and z rows
    if cell.reset_after and cell.bias_hh is not None:
        gh = gh + cell.bias_hh[: 2 * hs]
    hr, hz = gh.split(hs, dim=1)
    xr, xz = xw_t[:, : hs], xw_t[:, hs: 2 * hs]
    return {"r": sig(xr + hr), "z": sig(xz + hz)}


def gate_values(layer: RNN, x, model: nn.Module | None = None) -> dict[str, np.ndarray]:
    """Every gate's activation at every step: name -> (B, T, H), in time order.

    LSTM: i (input), f (forget), o (output); coupled LSTM: f, o; GRU: r (reset), z (update).
    x is the layer's input, or the model's input when ``model`` is given.
    """
    cell = layer.cell
    if not isinstance(cell, (LSTMCell, GRUCell)):
        raise ConfigError(f"{layer.name} ({type(layer).__name__}): has no gates; gate statistics "
                          "need an LSTM or GRU layer")
    if layer.dilation != 1:
        raise ConfigError(f"{layer.name}: gate statistics need dilation=1, got {layer.dilation}")
    xin = layer_input(model or layer, layer, x)
    if layer.go_backwards:
        xin = xin.flip(1)
    per_step = _run_gates(layer, cell, xin)
    out = {}
    for name, steps in per_step.items():
        seq = torch.stack(steps, dim=1)  # (B, T, H)
        out[name] = (seq.flip(1) if layer.go_backwards else seq).numpy()
    return out


@torch.no_grad()
def _run_gates(layer: RNN, cell, x: Tensor) -> dict[str, list[Tensor]]:
    state = layer.start_state(x, None)
    xw = cell.project(x)  # (B, T, G·H)
    hist = [state[0]] * cell.lags[-1]
    per_step: dict[str, list[Tensor]] = {}
    for t in range(xw.shape[1]):
        h_lags = lagged(hist, cell.lags)  # (B, K·H)
        gates = lstm_gates(cell, xw[:, t], state[1], h_lags) if isinstance(cell, LSTMCell) \
            else gru_gates(cell, xw[:, t], h_lags)
        for name, g in gates.items():
            per_step.setdefault(name, []).append(g)
        _, state = cell.step(xw[:, t], state, h_lags)
        hist = [state[0], *hist[:-1]]
    return per_step


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
