"""The reference kernel: a plain autograd loop over ``cell.step``. The oracle for every other kernel."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ..cells import gates_reported
from .registry import ScanSpec, register


def lagged(hist: list[Tensor], lags: tuple[int, ...]) -> Tensor:
    """[h_{t-l} for l in lags] concatenated: (B, K·H). hist[k] holds h_{t-1-k}."""
    if lags == (1,):
        return hist[0]
    return torch.cat([hist[l - 1] for l in lags], dim=1)


class ReferenceKernel:
    name = "reference"
    rank = 100

    def supports(self, cell, spec: ScanSpec) -> tuple[bool, str]:
        return True, ""

    def run(self, cell, x, state, mask, recurrent_mask, observer=None):
        """``observer`` (engine.observe): told each step's state and the gates ``step`` reports."""
        with gates_reported() if observer is not None else contextlib.nullcontext() as gates:
            return self._loop(cell, x, state, mask, recurrent_mask, observer, gates)

    @staticmethod
    def _loop(cell, x, state, mask, recurrent_mask, observer, gates):
        xw = cell.project(x)  # (B, T, G·H)
        hist = [state[0]] * cell.lags[-1]
        outs = []
        for t in range(xw.shape[1]):
            h_lags = lagged(hist, cell.lags)  # (B, K·H)
            if recurrent_mask is not None:
                h_lags = h_lags * recurrent_mask
            y, new = cell.step(xw[:, t], state, h_lags)
            if observer is not None:
                observer.step(cell, new, dict(gates))
                gates.clear()
            new_hist = [new[0], *hist[:-1]]
            if mask is not None:
                m = mask[:, t, None]  # (B, 1)
                new = tuple(torch.where(m, n, s) for n, s in zip(new, state))
                new_hist = [torch.where(m, n, s) for n, s in zip(new_hist, hist)]
                y = torch.where(m, y, torch.zeros_like(y))
            state, hist = new, new_hist
            outs.append(y)
        return torch.stack(outs, dim=1), state


REFERENCE = register(ReferenceKernel())
