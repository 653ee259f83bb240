"""engine.scan: the one entry that runs any cell along a sequence.

It does the wiring once for every cell and kernel — initial state, reverse, dilation
(a dilation-d recurrence is d interleaved ordinary recurrences: time-to-batch), masks — then
hands the plain forward recurrence to a kernel chosen by the registry.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import ShapeError
from .registry import ScanSpec, select


class ScanOutput(NamedTuple):
    outputs: Tensor  # (B, T, H), aligned with the input's time order even when reverse=True
    state: tuple[Tensor, ...]  # the state after the last step processed
    kernel: str  # which kernel ran


def scan(cell, x: Tensor, state=None, mask: Tensor | None = None, reverse: bool = False,
         dilation: int = 1, backend: str = "auto",
         recurrent_mask: Tensor | None = None, exclude: tuple[str, ...] = ()) -> ScanOutput:
    """Run ``cell`` over x (B, T, I).

    state: tuple of (B, size) tensors, or None for zeros. mask: (B, T) bool, True where the step
    is real; masked steps carry the state and output zeros. reverse: run from t = T-1 to 0.
    dilation: h_t depends on h_{t-d} (and on h_{t-d·l} for each lag l). recurrent_mask (B, K·H):
    multiplies the lagged states fed to the recurrent weights (recurrent dropout). exclude:
    kernels ``backend="auto"`` must not choose.
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
    spec = ScanSpec(
        has_mask=mask is not None, has_recurrent_mask=recurrent_mask is not None,
        device=x.device, dtype=x.dtype, batch=x.shape[0], steps=x.shape[1],
        mask_packable=mask is not None and is_packable(mask),
        requires_grad=records_grad(cell, x, state),
    )
    kernel = select(cell, spec, backend, exclude)
    ys, final = kernel.run(cell, x, state, mask, recurrent_mask)
    if dilation > 1:
        ys, final = from_interleaved(ys, final, last, batch, steps, dilation)
    if reverse:
        ys = ys.flip(1)
    return ScanOutput(ys, tuple(final), kernel.name)


def records_grad(cell, x: Tensor, state) -> bool:
    """Whether autograd records this scan: grad mode on and an input, state or weight to train."""
    if not torch.is_grad_enabled():
        return False
    return (x.requires_grad or any(s.requires_grad for s in state)
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
    n, hid = ys.shape[1], ys.shape[2]
    ys = ys.reshape(batch, d, n, hid).transpose(1, 2).reshape(batch, n * d, hid)[:, :steps]
    rows = torch.arange(batch, device=last.device)
    final = tuple(s.reshape(batch, d, s.shape[-1])[rows, last % d] for s in final)
    return ys, final
