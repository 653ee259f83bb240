"""engine.step: one time step of a cell, for online (streaming) use.

``step(cell, x_t, state)`` computes what ``scan`` computes at one step: x_t (B, I) and the state
after step t-1 -> y_t (B, H) and the state after step t, so stepping along a sequence gives the
whole-sequence run's outputs and final state. Masked rows (mask False) output zeros and carry
their state, as in ``scan``.

Kernels: ``auto`` runs torch's own cell op (``torch._VF.lstm_cell``, ``gru_cell``,
``rnn_tanh_cell``, ``rnn_relu_cell``: one call, the op ``torch.nn.LSTMCell`` and friends call) for
the cells native runs, and the cell's own step (``cell.project`` then ``cell.step``, the reference
kernel's body) for every other cell. A named backend runs ``scan`` on that kernel with T = 1, so
every kernel family steps. A cell with lags needs the last L states, which one state does not
hold: step refuses it (run such a cell with ``scan``). Inside ``engine.options`` the scope's
backend replaces the one given, and an observed scope (``observe=``) steps through ``scan``, so
the observer sees the step.

``stepper(cell)`` returns the step as a function bound to the cell, its checks and kernel choice
done once: for a streaming loop at batch 1, where a step's arithmetic costs about as much as the
Python around it. It holds the cell's parameter tensors, so it follows in-place updates of them
(an optimizer's) but not parameters replaced by new tensors: make a new stepper then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ..cells import GRUCell, LSTMCell
from ..errors import ConfigError, ShapeError
from . import context
from .native import NATIVE
from .registry import ScanSpec, select
from .scan import scan


class StepOutput(NamedTuple):
    output: Tensor  # (B, H)
    state: tuple[Tensor, ...]  # the state after this step
    kernel: str  # "native" (torch's cell op), "reference" (the cell's step) or the scan kernel


def step(cell, x_t: Tensor, state=None, mask: Tensor | None = None,
         backend: str | tuple[str, ...] = "auto") -> StepOutput:
    """One step of ``cell``: x_t (B, I), state tuple of (B, ·) or None for zeros, mask (B,) bool."""
    if x_t.dim() != 2:
        raise ShapeError(f"step: expected x_t of shape (B, I), got {tuple(x_t.shape)}")
    _check_lags(cell)
    batch = x_t.shape[0]
    state = cell.zero_state(batch, x_t) if state is None else tuple(state)
    if mask is not None and tuple(mask.shape) != (batch,):
        raise ShapeError(f"step: mask must be (B,) = ({batch},), got {tuple(mask.shape)}")
    backend = context.backend_for(backend)
    if backend == "auto" and context.current().observe is None:
        y, new, kernel = _auto_step(cell, x_t, state)
    else:
        out = scan(cell, x_t[:, None], state, backend=backend)
        y, new, kernel = out.outputs[:, 0], out.state, out.kernel
    if mask is not None:
        m = mask.to(torch.bool)[:, None]  # (B, 1)
        y = torch.where(m, y, torch.zeros_like(y))
        new = tuple(torch.where(m, n, s) for n, s in zip(new, state, strict=True))
    return StepOutput(y, tuple(new), kernel)


Stepper = Callable[[Tensor, "tuple[Tensor, ...] | None"], "tuple[Tensor, tuple[Tensor, ...]]"]


def stepper(cell, backend: str | tuple[str, ...] = "auto") -> Stepper:
    """``f(x_t, state) -> (y_t, state)``: ``step`` bound to ``cell`` (state None: zeros);
    ``f.kernel`` names what runs it."""
    _check_lags(cell)
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=cell.weight_ih.device,
                    dtype=cell.weight_ih.dtype, batch=1, steps=1)
    backend = context.backend_for(backend)  # the scope's, when bound inside engine.options
    observed = context.current().observe is not None
    if backend != "auto" or observed or not NATIVE.supports(cell, spec)[0]:
        def any_kernel(x_t, state=None):
            return tuple(step(cell, x_t, state, backend=backend)[:2])
        any_kernel.kernel = ("reference" if backend == "auto" or observed else
                             backend if isinstance(backend, str) else select(cell, spec, backend).name)
        return any_kernel
    w_ih, w_hh, b_ih, b_hh = cell.weight_ih, cell.weight_hh, cell.bias, getattr(cell, "bias_hh", None)
    zero_state = cell.zero_state
    if isinstance(cell, LSTMCell):
        lstm_cell = torch._VF.lstm_cell

        def lstm(x_t, state=None):
            h, c = lstm_cell(x_t, zero_state(x_t.shape[0], x_t) if state is None else state,
                             w_ih, w_hh, b_ih, b_hh)
            return h, (h, c)
        lstm.kernel = NATIVE.name
        return lstm
    op = (torch._VF.gru_cell if isinstance(cell, GRUCell) else
          torch._VF.rnn_tanh_cell if cell.activation is torch.tanh else torch._VF.rnn_relu_cell)

    def one_state(x_t, state=None):
        h = op(x_t, zero_state(x_t.shape[0], x_t)[0] if state is None else state[0],
               w_ih, w_hh, b_ih, b_hh)
        return h, (h,)
    one_state.kernel = NATIVE.name
    return one_state


def _check_lags(cell) -> None:
    if cell.lags != (1,):
        raise ConfigError(f"step: a cell with lags={cell.lags} needs its last {cell.lags[-1]} "
                          "states, which one state does not carry; run the sequence with scan")


def _auto_step(cell, x_t: Tensor, state) -> tuple[Tensor, tuple[Tensor, ...], str]:
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=x_t.device, dtype=x_t.dtype,
                    batch=x_t.shape[0], steps=1)
    if NATIVE.supports(cell, spec)[0]:
        return (*_native_step(cell, x_t, state), NATIVE.name)
    y, new = cell.step(cell.project(x_t), state, state[0])
    return y, tuple(new), "reference"


def _native_step(cell, x_t: Tensor, state) -> tuple[Tensor, tuple[Tensor, ...]]:
    """torch's cell op on the cell's own parameters (rnnkit's layout is torch's)."""
    b_hh = getattr(cell, "bias_hh", None)
    if isinstance(cell, LSTMCell):
        h, c = torch._VF.lstm_cell(x_t, state, cell.weight_ih, cell.weight_hh, cell.bias, b_hh)
        return h, (h, c)
    if isinstance(cell, GRUCell):
        h = torch._VF.gru_cell(x_t, state[0], cell.weight_ih, cell.weight_hh, cell.bias, b_hh)
        return h, (h,)
    op = torch._VF.rnn_tanh_cell if cell.activation is torch.tanh else torch._VF.rnn_relu_cell
    h = op(x_t, state[0], cell.weight_ih, cell.weight_hh, cell.bias, b_hh)
    return h, (h,)
