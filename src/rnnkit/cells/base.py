"""The cell contract: parameters and one step of the recurrence, nothing else.

Dimension legend: B batch, T time, I input features, H units, G gates, K lags.

A cell owns
  weight_ih (G·H, I)      the input weights A, applied to all t at once by ``project``;
  weight_hh (G·H, K·H)    the recurrent weights B¹..Bᴷ, one block per lag;
  bias      (G·H,)        or None;
and computes one step ``step(xw_t, state, h_lags) -> (y_t, new_state)`` where
  xw_t   (B, G·H)  the projected input of step t,
  state  tuple     the state after step t-1; ``state[0]`` is h_{t-1} (B, H),
  h_lags (B, K·H)  [h_{t-l} for l in lags] concatenated (the engine keeps that history).
Loops, masks, direction, dilation and the lag history belong to the engine.

A gated cell hands its gate activations to ``report_gates`` from inside ``step``; that costs
nothing unless the engine is observing the scan (``engine.options(observe=...)``), which is how
diagnosis reads gate values from the step that computed them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]
_GATES: ContextVar[dict | None] = ContextVar("rnnkit_reported_gates", default=None)


def report_gates(**gates: Tensor) -> None:
    """Called by a cell's ``step`` with its gate activations, each (B, H)."""
    sink = _GATES.get()
    if sink is not None:
        sink.update(gates)


@contextlib.contextmanager
def gates_reported() -> Iterator[dict[str, Tensor]]:
    """Within: the gates every ``step`` reports land in the yielded dict (the engine clears it)."""
    sink: dict[str, Tensor] = {}
    token = _GATES.set(sink)
    try:
        yield sink
    finally:
        _GATES.reset(token)


def normalize_lags(lags) -> tuple[int, ...]:
    lags = tuple(int(l) for l in (lags if isinstance(lags, (tuple, list)) else (lags,)))
    if not lags or min(lags) < 1 or len(set(lags)) != len(lags):
        raise ValueError(f"lags must be distinct integers >= 1, got {lags}")
    return tuple(sorted(lags))


class Cell(nn.Module):
    """Base class. Subclasses set ``gates`` and ``state_size`` and implement ``step``."""

    gates: int = 1
    state_count: int = 1  # number of tensors in the state tuple

    def __init__(self, input_size: int, hidden_size: int, lags=(1,), bias: bool = True):
        super().__init__()
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.lags = normalize_lags(lags)
        gh = self.gates * self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, self.input_size))
        self.weight_hh = nn.Parameter(torch.empty(gh, len(self.lags) * self.hidden_size))
        self.bias = nn.Parameter(torch.empty(gh)) if bias else None
        self.reset_parameters()

    # -- parameters ---------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """torch.nn's default: U(-1/sqrt(H), 1/sqrt(H)) for every parameter."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @property
    def num_lags(self) -> int:
        return len(self.lags)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,) * self.state_count

    def zero_state(self, batch: int, like: Tensor) -> State:
        return tuple(like.new_zeros(batch, n) for n in self.state_sizes())

    # -- computation --------------------------------------------------------------------
    def project(self, x: Tensor) -> Tensor:
        """A x_t + b for every t in one GEMM: (B, T, I) -> (B, T, G·H)."""
        return nn.functional.linear(x, self.weight_ih, self.bias)

    def recurrent(self, h_lags: Tensor) -> Tensor:
        """B¹h_{t-l1} + ... + Bᴷh_{t-lK}: (B, K·H) -> (B, G·H)."""
        return h_lags @ self.weight_hh.t()

    def step(self, xw_t: Tensor, state: State, h_lags: Tensor) -> tuple[Tensor, State]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        lags = "" if self.lags == (1,) else f", lags={self.lags}"
        return f"{self.input_size}, {self.hidden_size}{lags}"
