"""engine.scan: the one entry that runs any cell along a sequence.

It does the wiring once for every cell and kernel — initial state, reverse, dilation
(a dilation-d recurrence is d interleaved ordinary recurrences: time-to-batch), masks — then
hands the plain forward recurrence to a kernel chosen by the registry.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import BackendError, ShapeError
from . import context, native
from .reference import REFERENCE
from .registry import ScanSpec, auto_order, select


class Wiring(NamedTuple):
    """How a scan laid out its steps: what turns processing order back into time order."""

    batch: int
    steps: int
    reverse: bool
    dilation: int


class ScanOutput(NamedTuple):
    outputs: Tensor  # (B, T, H), aligned with the input's time order even when reverse=True
    state: tuple[Tensor, ...]  # the state after the last step processed
    kernel: str  # which kernel ran


def scan(cell, x: Tensor, state=None, mask: Tensor | None = None, reverse: bool = False,
         dilation: int = 1, backend: str | tuple[str, ...] = "auto",
         recurrent_mask: Tensor | None = None, exclude: tuple[str, ...] = ()) -> ScanOutput:
    """Run ``cell`` over x (B, T, I).

    state: tuple of (B, size) tensors, or None for zeros. mask: (B, T) bool, True where the step
    is real; masked steps carry the state and output zeros. reverse: run from t = T-1 to 0.
    dilation: h_t depends on h_{t-d} (and on h_{t-d·l} for each lag l). recurrent_mask (B, K·H):
    multiplies the lagged states fed to the recurrent weights (recurrent dropout). backend: a
    kernel name, "auto", or names in order of preference; a scope's ``engine.options(backend=)``
    overrides it. exclude: kernels ``backend="auto"`` must not choose.
    """
    if x.dim() != 3:
        raise ShapeError(f"scan: expected x of shape (B, T, I), got {tuple(x.shape)}")
    batch, steps, _ = x.shape
    if state is None:
        state = cell.zero_state(batch, x)
    state = tuple(state)
    if mask is not None:
        mask = mask.to(torch.bool)
        if mask.shape != (batch, steps):
            raise ShapeError(
                f"scan: mask must be (B, T) = {(batch, steps)}, got {tuple(mask.shape)}"
            )
        if bool(mask.all()):
            mask = None
    if reverse:
        x = x.flip(1)
        mask = None if mask is None else mask.flip(1)
    last = None
    if dilation > 1:
        last = last_steps(mask, batch, steps, x.device)
        x, state, mask, recurrent_mask = to_interleaved(x, state, mask, recurrent_mask, dilation)
    observer = context.current().observe
    if observer is None:
        spec = ScanSpec(
            has_mask=mask is not None, has_recurrent_mask=recurrent_mask is not None,
            device=x.device, dtype=x.dtype, batch=x.shape[0], steps=x.shape[1],
            mask_packable=mask is not None and is_packable(mask),
            requires_grad=records_grad(cell, x, state),
        )
        kernel = select(cell, spec, context.backend_for(backend), exclude)
        ys, final = kernel.run(cell, x, state, mask, recurrent_mask)
    else:  # observed: the reference loop steps the cell in Python, where it can be watched
        kernel = REFERENCE
        observer.begin(cell, Wiring(batch, steps, reverse, dilation))
        ys, final = REFERENCE.run(cell, x, state, mask, recurrent_mask, observer)
    if dilation > 1:
        ys, final = from_interleaved(ys, final, last, batch, steps, dilation)
    if reverse:
        ys = ys.flip(1)
    return ScanOutput(ys, tuple(final), kernel.name)


class LayersOutput(NamedTuple):
    outputs: Tensor  # (B, T, D·H): the last layer's, in time order, forward features first
    states: list[tuple[Tensor, ...]]  # each cell's final state, in the order of the cells
    kernel: str  # which kernel ran


def scan_layers(cells, x: Tensor, states, mask: Tensor | None = None, bidirectional: bool = False,
                backend="auto", exclude=()) -> LayersOutput | None:
    """Run several layers, and/or both directions, in one kernel call; None when no kernel can
    (``scan_layers_reason`` says why): the caller then runs its layers one by one.

    cells: layer 0 forward, [layer 0 backward,] layer 1 forward, ...; alike, layer l > 0 taking
    the D·H features of layer l-1. states: each cell's initial state, a tuple of (B, H).
    x (B, T, I); mask None or (B, T) bool, post-padding: each row then ends, and its backward
    direction starts, at the row's own last real step. backend: one for all cells (a name or a
    tuple of names) or a list with one per cell (a scope's ``engine.options(backend=...)``
    overrides them); exclude: kernels ``auto`` must not choose, a tuple for all cells or a list
    with one per cell (a layer's ``use_cudnn=False`` excludes "native"). The one call is taken
    where the kernel ``scan`` would pick for each cell on its own is ``native`` (so grouping
    never changes which kernel runs: on CPU auto runs training on the compiled loop) and torch's
    fused op can run them together (``native.run_layers``).
    """
    mask, reason = _layers_plan(cells, x, states, mask, bidirectional, backend, exclude)
    if reason:
        return None
    ys, finals = native.run_layers(cells, x, states, mask, bidirectional=bidirectional)
    return LayersOutput(ys, finals, native.NATIVE.name)


def scan_layers_reason(cells, x: Tensor, mask: Tensor | None = None, backend="auto",
                       exclude=(), states=None, bidirectional: bool = False) -> str:
    """Why ``scan_layers`` cannot run ``cells`` in one call on x and mask; '' when it can.
    states None: zeros."""
    if states is None:
        states = [cell.zero_state(x.shape[0], x) for cell in cells]
    return _layers_plan(cells, x, states, mask, bidirectional, backend, exclude)[1]


def _per_cell(value, cells, kinds) -> list:
    """One value for every cell, or a list with one per cell."""
    return [value] * len(cells) if isinstance(value, kinds) else list(value)


def _layers_plan(cells, x: Tensor, states, mask: Tensor | None, bidirectional: bool, backend,
                 exclude) -> tuple[Tensor | None, str]:
    """(the mask for the one call (None: every step real), why it cannot run or '')."""
    if context.current().observe is not None:
        return mask, "the engine observes the steps, which the reference loop runs cell by cell"
    if mask is not None:
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[:2]):
            return mask, f"the mask must be (B, T) = {tuple(x.shape[:2])} bool"
        mask = None if bool(mask.all()) else mask
    spec = ScanSpec(has_mask=mask is not None, has_recurrent_mask=False, device=x.device,
                    dtype=x.dtype, batch=x.shape[0], steps=x.shape[1],
                    mask_packable=mask is not None and is_packable(mask))
    backends = _per_cell(backend, cells, (str, tuple))
    excludes = _per_cell(exclude, cells, tuple)
    directions = 2 if bidirectional else 1
    grad_in = x.requires_grad  # whether the current layer's input carries a gradient
    for i in range(0, len(cells), directions):
        layer = range(i, min(i + directions, len(cells)))
        records = [records_grad(cells[j], x, states[j], grad_in) for j in layer]
        for j, requires_grad in zip(layer, records):
            cell, chosen = cells[j], context.backend_for(backends[j])
            cell_spec = replace(spec, requires_grad=requires_grad)
            try:
                kernel = select(cell, cell_spec, chosen, excludes[j])
            except BackendError as e:
                return mask, str(e)
            if kernel is native.NATIVE:
                continue
            if chosen == "auto" and native.NATIVE.name in excludes[j]:
                return mask, (f"{type(cell).__name__} may not run on native (exclude="
                              f"{excludes[j]}: a layer's use_cudnn=False)")
            if chosen == "auto":
                return mask, (f"auto runs {type(cell).__name__} on {kernel.name}: "
                              f"{auto_order(cell, cell_spec)[1]}")
            return mask, f"{type(cell).__name__} runs on the {kernel.name} kernel, not native"
        grad_in = any(records)
    return mask, native.layers_reason(cells, spec)


def records_grad(cell, x: Tensor, state, x_requires_grad: bool | None = None) -> bool:
    """Whether autograd records this scan: grad mode on and an input, state or weight to train.
    x_requires_grad: whether x will carry a gradient, when x stands for an input not yet
    computed (a later layer's, in ``scan_layers``)."""
    if not torch.is_grad_enabled():
        return False
    grad_in = x.requires_grad if x_requires_grad is None else x_requires_grad
    return (grad_in or any(s.requires_grad for s in state)
            or any(p.requires_grad for p in cell.parameters()))


def is_packable(mask: Tensor) -> bool:
    """True when every row of mask (B, T) is real on steps 0..len-1 with len >= 1 (post-padding)."""
    return bool(mask[:, 0].all()) and not bool((mask[:, 1:] & ~mask[:, :-1]).any())


def last_steps(mask: Tensor | None, batch: int, steps: int, device) -> Tensor:
    """Index of the last real step of each sequence (0 where there is none): (B,)."""
    if mask is None:
        return torch.full((batch,), steps - 1, dtype=torch.long, device=device)
    t = torch.arange(steps, device=device).expand(batch, steps)
    return torch.where(mask, t, torch.zeros_like(t)).amax(dim=1)


def to_interleaved(x, state, mask, recurrent_mask, d: int):
    """(B, T, I) -> (B·d, ceil(T/d), I): row b·d + j holds steps j, j+d, j+2d, ... of sequence b."""
    batch, steps, feat = x.shape
    pad = (-steps) % d
    if pad:
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        real = torch.ones(batch, steps, dtype=torch.bool, device=x.device) if mask is None else mask
        mask = torch.cat([real, real.new_zeros(batch, pad)], dim=1)
    n = x.shape[1] // d
    x = x.reshape(batch, n, d, feat).transpose(1, 2).reshape(batch * d, n, feat)
    if mask is not None:
        mask = mask.reshape(batch, n, d).transpose(1, 2).reshape(batch * d, n)
    state = tuple(s.repeat_interleave(d, dim=0) for s in state)
    if recurrent_mask is not None:
        recurrent_mask = recurrent_mask.repeat_interleave(d, dim=0)
    return x, state, mask, recurrent_mask


def from_interleaved(ys, final, last, batch: int, steps: int, d: int):
    """Undo ``to_interleaved``; the final state is that of the sub-sequence with the last step."""
    ys = _deinterleave(ys, batch, steps, d)
    rows = torch.arange(batch, device=last.device)
    final = tuple(s.reshape(batch, d, s.shape[-1])[rows, last % d] for s in final)
    return ys, final


def _deinterleave(ys: Tensor, batch: int, steps: int, d: int) -> Tensor:
    """(B·d, n, ...) -> (B, T, ...): row b·d + j held steps j, j+d, j+2d, ... of sequence b."""
    n, rest = ys.shape[1], ys.shape[2:]
    return ys.reshape(batch, d, n, *rest).transpose(1, 2).reshape(batch, n * d, *rest)[:, :steps]


def to_time_order(per_step: Tensor, batch: int, steps: int, reverse: bool, dilation: int) -> Tensor:
    """Values a kernel produced per processed step, (T', B·d, ...), as (B, T, ...) in time order:
    undoes the dilation's interleaving and the reversal."""
    ys = per_step.transpose(0, 1)  # (B·d, T', ...)
    if dilation > 1:
        ys = _deinterleave(ys, batch, steps, dilation)
    return ys.flip(1) if reverse else ys
