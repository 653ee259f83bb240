"""Weights between rnnkit's torch layout and Keras's array layout: the one place that converts.

Keras stores a kernel as (in, G·H) with GRU gates ordered z, r, h; rnnkit (torch) stores
weight_ih as (G·H, in) with GRU gates r, z, n. LSTM gates are i, f, c, o in both. A Keras GRU
with reset_after=True keeps its two biases as one (2, 3·H) array: input bias, recurrent bias.
Parameters Keras has no counterpart for (peepholes, lags beyond the first, feedback and output
weights, and any a user's Cell subclass adds) follow in a fixed order, transposed to the same
(in, out) convention.
"""

from __future__ import annotations

from operator import attrgetter

import numpy as np
import torch

from ..cells import FeedbackCell, GRUCell, LSTMCell
from ..errors import ShapeError

_GRU_TO_KERAS = (1, 0, 2)  # rnnkit (r, z, n) -> Keras (z, r, h); the permutation is its own inverse


def _permute_gates(t: torch.Tensor, cell) -> torch.Tensor:
    if not isinstance(cell, GRUCell):
        return t
    return torch.cat([t.chunk(3, dim=0)[i] for i in _GRU_TO_KERAS], dim=0)




def _extras(cell) -> list[str]:
    """Parameters after kernel, recurrent kernel and bias: the known ones in a fixed order,
    then any others a user's Cell subclass registered, in registration order."""
    known: list[str] = []
    if isinstance(cell, LSTMCell) and cell.peephole is not None:
        known = ["peep_prev", "peep_out"]
    elif isinstance(cell, FeedbackCell):
        known = [n for n in ("weight_oh", "weight_ho", "bias_o", "weight_io")
                 if getattr(cell, n) is not None]
    core = ("weight_ih", "weight_hh", "bias") + (("bias_hh",) if isinstance(cell, GRUCell) else ())
    others = [n for n, _ in cell.named_parameters() if n not in core and n not in known]
    return known + others


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def cell_to_keras(cell) -> list[np.ndarray]:
    """The cell's weights as Keras arrays: [kernel, recurrent_kernel, (bias), extras...]."""
    out = [_array(_permute_gates(cell.weight_ih, cell).t()),
           _array(_permute_gates(cell.weight_hh, cell).t())]
    if cell.bias is not None:
        bias = _permute_gates(cell.bias, cell)
        if isinstance(cell, GRUCell) and cell.bias_hh is not None:
            bias = torch.stack([bias, _permute_gates(cell.bias_hh, cell)])
        out.append(_array(bias))
    for name in _extras(cell):
        p = attrgetter(name)(cell)
        out.append(_array(p.t() if p.dim() == 2 else p))
    return out


def cell_from_keras(cell, arrays, where: str) -> None:
    """Load Keras arrays (as ``cell_to_keras`` gives them) into the cell, in place."""
    expected = cell_to_keras(cell)
    if len(arrays) != len(expected):
        raise ShapeError(f"{where}: expected {len(expected)} weight arrays "
                         f"{[e.shape for e in expected]}, got {len(arrays)}")
    for i, (a, e) in enumerate(zip(arrays, expected)):
        if np.shape(a) != e.shape:
            raise ShapeError(f"{where}: weight {i} expected shape {e.shape}, got {np.shape(a)}")
    it = iter(arrays)
    with torch.no_grad():
        _copy(cell.weight_ih, _permute_gates(_tensor(next(it)).t(), cell))
        _copy(cell.weight_hh, _permute_gates(_tensor(next(it)).t(), cell))
        if cell.bias is not None:
            bias = _tensor(next(it))
            if isinstance(cell, GRUCell) and cell.bias_hh is not None:
                _copy(cell.bias_hh, _permute_gates(bias[1], cell))
                bias = bias[0]
            _copy(cell.bias, _permute_gates(bias, cell))
        for name in _extras(cell):
            a = _tensor(next(it))
            _copy(attrgetter(name)(cell), a.t() if a.dim() == 2 else a)


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a))


def _copy(p: torch.Tensor, value: torch.Tensor) -> None:
    p.copy_(value.to(dtype=p.dtype, device=p.device))


def params_to_keras(params) -> list[np.ndarray]:
    """Parameters Keras has no layer for (a readout, a learned initial state, a convolution
    closing a stack) as arrays in Keras's convention: torch's layout with the axes reversed, so a
    (out, in) matrix becomes an (in, out) kernel and a vector stays as it is."""
    return [_array(p.permute(*reversed(range(p.dim())))) for p in params]


def params_from_keras(params, arrays, where: str, offset: int = 0) -> None:
    """Load ``params_to_keras``'s arrays into the parameters, in place. ``offset``: how many of
    the layer's arrays come before these (so a message counts as ``set_weights`` does)."""
    if len(arrays) != len(params):
        raise ShapeError(f"{where}: set_weights expected {offset + len(params)} arrays, got "
                         f"{offset + len(arrays)}")
    for i, (p, a) in enumerate(zip(params, arrays)):
        if np.shape(a) != tuple(reversed(p.shape)):
            raise ShapeError(f"{where}: weight {offset + i} expected shape "
                             f"{tuple(reversed(p.shape))}, got {np.shape(a)}")
    with torch.no_grad():
        for p, a in zip(params, arrays):
            a = _tensor(a)
            _copy(p, a.permute(*reversed(range(a.dim()))))
