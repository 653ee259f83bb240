"""Weights between rnnkit recurrent layers and torch.nn.RNN / LSTM / GRU (one layer, one direction
or bidirectional). torch.nn keeps two biases (b_ih, b_hh); rnnkit's SimpleRNN and LSTM keep their
sum, GRU (reset_after=True) keeps both exactly as torch does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..cells import GRUCell, LSTMCell, SimpleCell
from ..errors import ConfigError


def _check_standard(cell, where: str) -> None:
    ok = cell.lags == (1,) and cell.bias is not None
    if isinstance(cell, LSTMCell):
        ok = ok and cell.peephole is None and not cell.coupled
    elif isinstance(cell, GRUCell):
        ok = ok and cell.reset_after
    elif not isinstance(cell, SimpleCell):
        ok = False
    if not ok:
        raise ConfigError(f"{where}: torch.nn has no counterpart for {cell!r}")


def _suffix(direction: int) -> str:
    return "_l0_reverse" if direction else "_l0"


def cell_state_dict(cell, direction: int = 0) -> dict[str, torch.Tensor]:
    """torch.nn's parameter names for one direction of layer 0."""
    s = _suffix(direction)
    b_hh = cell.bias_hh if isinstance(cell, GRUCell) else torch.zeros_like(cell.bias)
    return {f"weight_ih{s}": cell.weight_ih.detach().clone(),
            f"weight_hh{s}": cell.weight_hh.detach().clone(),
            f"bias_ih{s}": cell.bias.detach().clone(), f"bias_hh{s}": b_hh.detach().clone()}


def load_cell_state_dict(cell, state: dict, direction: int = 0, where: str = "cell") -> None:
    s = _suffix(direction)
    try:
        w_ih, w_hh = state[f"weight_ih{s}"], state[f"weight_hh{s}"]
        b_ih, b_hh = state[f"bias_ih{s}"], state[f"bias_hh{s}"]
    except KeyError as err:
        raise ConfigError(f"{where}: state dict has no {err.args[0]!r}; keys: {sorted(state)}") from None
    with torch.no_grad():
        for target, value in ((cell.weight_ih, w_ih), (cell.weight_hh, w_hh)):
            if target.shape != value.shape:
                raise ConfigError(f"{where}: expected {tuple(target.shape)}, got {tuple(value.shape)}")
            target.copy_(value)
        if isinstance(cell, GRUCell):
            cell.bias.copy_(b_ih)
            cell.bias_hh.copy_(b_hh)
        else:
            cell.bias.copy_(b_ih + b_hh)


def _layers(layer) -> list:
    from ..layers.wrappers import Bidirectional  # layers import interop: import late

    if isinstance(layer, Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


def to_torch(layer) -> nn.Module:
    """A torch.nn.RNN/LSTM/GRU (batch_first=True) with the built rnnkit layer's weights."""
    parts = _layers(layer)
    cell = parts[0].cell
    for part in parts:
        _check_standard(part.cell, layer.name)
    if isinstance(cell, LSTMCell):
        module = nn.LSTM
    elif isinstance(cell, GRUCell):
        module = nn.GRU
    else:
        module = nn.RNN
    kwargs = {}
    if module is nn.RNN:
        name = getattr(cell.activation, "__name__", "")
        if name not in ("tanh", "relu"):
            raise ConfigError(f"{layer.name}: torch.nn.RNN supports tanh or relu, not {name}")
        kwargs["nonlinearity"] = name
    twin = module(cell.input_size, cell.hidden_size, batch_first=True,
                  bidirectional=len(parts) == 2, dtype=cell.weight_ih.dtype, **kwargs)
    state = {}
    for direction, part in enumerate(parts):
        state.update(cell_state_dict(part.cell, direction))
    twin.load_state_dict(state)
    return twin


def from_torch(module: nn.Module, return_sequences: bool = False, **kwargs):
    """An rnnkit layer equal to a one-layer torch.nn.RNN/LSTM/GRU (batch_first or not)."""
    from ..layers import GRU, LSTM, Bidirectional, SimpleRNN

    if module.num_layers != 1:
        raise ConfigError(f"from_torch: convert one layer at a time; got num_layers={module.num_layers}")
    if isinstance(module, nn.LSTM):
        if module.proj_size:
            raise ConfigError("from_torch: LSTM with proj_size has no rnnkit counterpart")
        make = lambda: LSTM(module.hidden_size, return_sequences=return_sequences, **kwargs)  # noqa: E731
    elif isinstance(module, nn.GRU):
        make = lambda: GRU(module.hidden_size, return_sequences=return_sequences, **kwargs)  # noqa: E731
    elif isinstance(module, nn.RNN):
        act = "relu" if module.nonlinearity == "relu" else "tanh"
        make = lambda: SimpleRNN(module.hidden_size, activation=act,  # noqa: E731
                                 return_sequences=return_sequences, **kwargs)
    else:
        raise ConfigError(f"from_torch: expected torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
    if not module.bias:
        raise ConfigError("from_torch: modules without bias are not supported")
    layer = Bidirectional(make()) if module.bidirectional else make()
    dtype = next(module.parameters()).dtype
    layer.ensure_built((None, None, module.input_size))
    layer.to(dtype=dtype)
    state = module.state_dict()
    for direction, part in enumerate(_layers(layer)):
        load_cell_state_dict(part.cell, state, direction, layer.name)
    return layer
