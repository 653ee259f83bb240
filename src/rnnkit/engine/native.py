"""The native kernel: torch's own fused RNN/LSTM/GRU ops (oneDNN on CPU, cuDNN on GPU).

Dimension legend: B batch, T time, I input features, H units, G gates.

It runs the standard configurations only — SimpleCell with tanh or relu, LSTMCell without
peepholes or coupling with sigmoid/tanh, GRUCell with reset_after=True and sigmoid/tanh, one lag,
no recurrent mask — and takes the cell's parameters as they are: rnnkit's layout is torch's.
rnnkit's LSTM and SimpleRNN have one bias; torch's second bias is passed as zeros.
A mask must be post-padding (packable): it becomes a packed sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .. import activations
from ..cells import GRUCell, LSTMCell, SimpleCell
from .registry import ScanSpec, register

_SIMPLE_MODES = {torch.tanh: "rnn_tanh", torch.relu: "rnn_relu"}


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
        if spec.has_recurrent_mask:
            return False, "torch's fused ops take no recurrent mask (recurrent dropout)"
        if spec.has_mask and not spec.mask_packable:
            return False, ("the mask is not post-padding with >= 1 real step per row, "
                           "so it cannot be a packed sequence")
        return True, ""

    def run(self, cell, x, state, mask, recurrent_mask):
        """x (B, T, I), state tuple of (B, H) -> ys (B, T, H), final state tuple of (B, H)."""
        weights, has_biases = _flat_weights(cell)
        hx = tuple(s.unsqueeze(0) for s in state)  # (1, B, H) each: torch's (layers, B, H)
        hx = hx if isinstance(cell, LSTMCell) else hx[0]
        train = torch.is_grad_enabled()
        if mask is None:
            ys, *final = _op(cell)(x, hx, weights, has_biases, 1, 0.0, train, False, True)
        else:
            ys, final = _run_packed(cell, x, hx, weights, has_biases, mask, train)
        return ys, tuple(f.squeeze(0) for f in final)


def _run_packed(cell, x, hx, weights, has_biases, mask, train):
    """The packed-sequence path: rows end at their own length; padding outputs zeros."""
    lengths = mask.sum(dim=1).cpu()  # (B,)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    order, back = packed.sorted_indices, packed.unsorted_indices
    hx = tuple(h[:, order] for h in hx) if isinstance(hx, tuple) else hx[:, order]
    ys, *final = _op(cell)(packed.data, packed.batch_sizes, hx, weights, has_biases, 1, 0.0,
                           train, False)
    out = packed._replace(data=ys)
    ys, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return ys, [f[:, back] for f in final]


NATIVE = register(NativeKernel())
