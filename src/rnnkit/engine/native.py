"""The native kernel: torch's own fused RNN/LSTM/GRU ops (oneDNN on CPU, cuDNN on GPU).

Dimension legend: B batch, T time, I input features, H units, G gates.

It runs the standard configurations only — SimpleCell with tanh or relu, LSTMCell without
peepholes or coupling with sigmoid/tanh, GRUCell with reset_after=True and sigmoid/tanh, one lag,
no recurrent mask — and takes the cell's parameters as they are: rnnkit's layout is torch's.
rnnkit's LSTM and SimpleRNN have one bias; torch's second bias is passed as zeros.
A mask must be post-padding (packable): it becomes a packed sequence, on GPU only (see
``PACKED_ON_CPU``, or ``engine.options(packed_on_cpu=...)``): on CPU masked scans go to the loop
kernels.

``run_layers`` runs several layers and/or both directions in one call (torch's ``num_layers``,
``bidirectional``): Bidirectional and Stacked take it where it computes what their layers would.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .. import activations
from ..cells import GRUCell, LSTMCell, SimpleCell
from . import context, cpu_features
from .registry import ScanSpec, register

_SIMPLE_MODES = {torch.tanh: "rnn_tanh", torch.relu: "rnn_relu"}
# Packed sequences on CPU: off, because torch's packed backward there costs O(T²) (each step's
# slice of the packed input back-propagates into a full-size zero tensor); the loop kernels run
# masks in O(T). Tests switch it on to check the packed path against the reference.
PACKED_ON_CPU = False


def _packed_on_cpu() -> bool:
    chosen = context.current().packed_on_cpu
    return PACKED_ON_CPU if chosen is None else chosen


def _lstm_reason(cell: LSTMCell) -> str:
    if cell.peephole is not None:
        return "torch has no fused LSTM with peephole connections"
    if cell.coupled:
        return "torch has no fused LSTM with a coupled input-forget gate"
    if cell.activation is not torch.tanh or cell.recurrent_activation is not torch.sigmoid:
        return "torch's fused LSTM needs activation='tanh', recurrent_activation='sigmoid'"
    return ""


def _gru_reason(cell: GRUCell) -> str:
    if not cell.reset_after:
        return "torch's fused GRU applies the reset gate after the matmul: needs reset_after=True"
    if cell.activation is not torch.tanh or cell.recurrent_activation is not torch.sigmoid:
        return "torch's fused GRU needs activation='tanh', recurrent_activation='sigmoid'"
    return ""


def _cell_reason(cell) -> str:
    if type(cell) is SimpleCell:
        if cell.activation not in _SIMPLE_MODES:
            name = activations.name_of(cell.activation)
            return f"torch's fused RNN has tanh and relu only, not {name!r}"
        return ""
    if type(cell) is LSTMCell:
        return _lstm_reason(cell)
    if type(cell) is GRUCell:
        return _gru_reason(cell)
    return f"torch has no fused op for {type(cell).__name__}"


def _cpu_reason(cell, spec: ScanSpec) -> str:
    """What this CPU lacks for the run: under autocast torch's LSTM calls oneDNN's LSTM in the
    autocast dtype, which needs the CPU's support (GRU and RNN do not call it)."""
    if spec.device.type != "cpu" or type(cell) is not LSTMCell:
        return ""
    low = cpu_features.autocast_dtype(spec.device)
    return "" if low in (None, torch.float32) else cpu_features.onednn_lstm_reason(low)


def _flat_weights(cell) -> tuple[list[Tensor], bool]:
    """[W_ih (G·H, I), W_hh (G·H, H), b_ih (G·H,), b_hh (G·H,)] in torch's order, and has_biases."""
    weights = [cell.weight_ih, cell.weight_hh]
    if cell.bias is None:
        return weights, False
    second = getattr(cell, "bias_hh", None)
    if second is None:
        second = torch.zeros_like(cell.bias)
    return [*weights, cell.bias, second], True


def _op(cell):
    if isinstance(cell, LSTMCell):
        return torch._VF.lstm
    if isinstance(cell, GRUCell):
        return torch._VF.gru
    return getattr(torch._VF, _SIMPLE_MODES[cell.activation])


class NativeKernel:
    name = "native"
    rank = 10

    def supports(self, cell, spec: ScanSpec) -> tuple[bool, str]:
        reason = _cell_reason(cell)
        if reason:
            return False, reason
        if cell.lags != (1,):
            return False, f"torch's fused ops have one lag, not lags={cell.lags}"
        reason = _cpu_reason(cell, spec)
        if reason:
            return False, reason
        if spec.has_recurrent_mask:
            return False, "torch's fused ops take no recurrent mask (recurrent dropout)"
        if spec.has_mask and spec.device.type == "cpu" and not _packed_on_cpu():
            return False, ("on CPU torch's packed-sequence backward costs O(T²) (LSTM, B=64, H=32: "
                           "1.3 s at T=500 against 64 ms on the compiled kernel), so masks run "
                           "on the loop kernels")
        if spec.has_mask and not spec.mask_packable:
            return False, ("the mask is not post-padding with >= 1 real step per row, "
                           "so it cannot be a packed sequence")
        return True, ""

    def run(self, cell, x, state, mask, recurrent_mask):
        """x (B, T, I), state tuple of (B, H) -> ys (B, T, H), final state tuple of (B, H)."""
        ys, finals = run_layers([cell], x, [state], mask)
        return ys, finals[0]


def _signature(cell) -> tuple:
    """What cells sharing one fused call must agree on."""
    return (type(cell), cell.hidden_size, cell.activation, cell.bias is None,
            getattr(cell, "bias_hh", None) is None)


def layers_reason(cells, spec: ScanSpec) -> str:
    """Why torch's fused op cannot run ``cells`` in one call under ``spec``; '' when it can.
    Whether it should (the kernel auto would pick for each cell) is ``engine.scan_layers``'s
    question."""
    for cell in cells:
        ok, reason = NATIVE.supports(cell, spec)
        if not ok:
            return reason
    if any(_signature(cell) != _signature(cells[0]) for cell in cells[1:]):
        return "one native call needs cells of one type, size, activation and biases"
    return ""


def run_layers(cells, x: Tensor, states, mask: Tensor | None,
               bidirectional: bool = False) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
    """Several layers and/or both directions in one torch._VF call.

    cells: in torch's order, layer 0 forward, [layer 0 reverse,] layer 1 forward, ...; alike
    (``layers_reason``), layer l > 0 taking the D·H features of layer l-1. states: each cell's
    initial state, a tuple of (B, H). x (B, T, I); mask None or post-padding (B, T) bool: each
    row then ends, and its reverse direction starts, at the row's own last real step.
    Returns the last layer's ys (B, T, D·H) in time order, forward features first, zeros at
    padding, and each cell's final state tuple, in the order of ``cells``.
    """
    weights, has_biases = [], False
    for cell in cells:
        flat, has_biases = _flat_weights(cell)
        weights += flat  # per layer and direction: W_ih, W_hh[, b_ih, b_hh]
    hx = tuple(torch.stack(s) for s in zip(*states))  # (L·D, B, H) each: torch's layout
    hx = hx if isinstance(cells[0], LSTMCell) else hx[0]
    op = _op(cells[0])
    num_layers = len(cells) // (2 if bidirectional else 1)
    args = (weights, has_biases, num_layers, 0.0, torch.is_grad_enabled(), bidirectional)
    if mask is None:
        ys, *final = op(x, hx, *args, True)
    else:
        ys, final = _run_packed(op, x, hx, args, mask)
    return ys, list(zip(*(f.unbind(0) for f in final)))


def _run_packed(op, x, hx, args, mask):
    """The packed-sequence path: rows end at their own length; padding outputs zeros."""
    lengths = mask.sum(dim=1).cpu()  # (B,)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    order, back = packed.sorted_indices, packed.unsorted_indices
    hx = tuple(h[:, order] for h in hx) if isinstance(hx, tuple) else hx[:, order]
    ys, *final = op(packed.data, packed.batch_sizes, hx, *args)
    ys, _ = pad_packed_sequence(packed._replace(data=ys), batch_first=True, total_length=x.shape[1])
    return ys, [f[:, back] for f in final]


NATIVE = register(NativeKernel())
