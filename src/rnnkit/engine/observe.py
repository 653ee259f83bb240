"""Watching scans step by step: the engine's hook for diagnosis.

Inside ``engine.options(observe=observer)`` every scan runs the reference loop and calls
``observer.begin(cell, wiring)`` once, then ``observer.step(cell, state, gates)`` after each step
it processes: ``state`` is the tuple the cell's ``step`` returned (``state[0]`` = h_t, still in
the autograd graph), ``gates`` the activations that same ``step`` reported
(``cells.report_gates``: LSTM i, f, o; coupled LSTM f, o; GRU r, z; none for a simple cell).
Steps come in processing order: reversed for a backward scan, and for a dilation-d scan each step
holds the d interleaved sub-sequences side by side (B·d rows); ``Recorder.sequence`` undoes both.

Dimension legend: B batch, T time, H units, d dilation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .scan import Wiring, to_time_order


class Observer:
    """Base class; override what you need."""

    def begin(self, cell, wiring: Wiring) -> None:
        """A scan of ``cell`` starts."""

    def step(self, cell, state: tuple[Tensor, ...], gates: dict[str, Tensor]) -> None:
        """``cell`` computed one step (see the module docstring)."""


class Recorder(Observer):
    """Keeps every step of the scans of one cell: ``hidden`` (each h_t, live) and ``gates``
    (name -> each step's values), in processing order; ``sequence`` puts them in time order."""

    def __init__(self, cell):
        self.cell = cell
        self.wiring: Wiring | None = None
        self.hidden: list[Tensor] = []
        self.gates: dict[str, list[Tensor]] = {}

    def begin(self, cell, wiring: Wiring) -> None:
        if cell is self.cell:
            self.wiring = wiring

    def step(self, cell, state: tuple[Tensor, ...], gates: dict[str, Tensor]) -> None:
        if cell is not self.cell:
            return
        self.hidden.append(state[0])
        for name, value in gates.items():
            self.gates.setdefault(name, []).append(value)

    def sequence(self, per_step) -> Tensor:
        """Per-step values of the last scan, each (B·d, ...), as (B, T, ...) in time order."""
        stacked = per_step if isinstance(per_step, Tensor) else torch.stack(list(per_step))
        batch, steps, reverse, dilation = self.wiring
        return to_time_order(stacked, batch, steps, reverse, dilation)
