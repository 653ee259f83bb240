"""Kernels and how one is chosen.

A kernel runs a cell forward along time, dilation and reverse already done by the engine:
``run(cell, x, state, mask, recurrent_mask) -> (outputs (B, T, H), final state)``.
``supports(cell, spec) -> (ok, reason)`` says whether it can; ``backend="auto"`` takes the
supporting kernel of lowest ``rank`` (fastest first); a named backend that cannot run raises
``BackendError`` with the reason — never a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ..errors import BackendError


@dataclass(frozen=True)
class ScanSpec:
    """What a kernel needs to know to say whether it can run a scan."""

    has_mask: bool
    has_recurrent_mask: bool
    device: torch.device
    dtype: torch.dtype
    batch: int
    steps: int
    # post-padding: each row's real steps are 0..len-1 with len >= 1, as a packed sequence needs
    mask_packable: bool = False


class Kernel(Protocol):
    name: str
    rank: int  # lower runs first under backend="auto"

    def supports(self, cell, spec: ScanSpec) -> tuple[bool, str]: ...

    def run(self, cell, x: Tensor, state, mask: Tensor | None,
            recurrent_mask: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]: ...


_KERNELS: dict[str, Kernel] = {}


def register(kernel: Kernel) -> Kernel:
    _KERNELS[kernel.name] = kernel
    return kernel


def kernels() -> dict[str, Kernel]:
    return dict(_KERNELS)


def select(cell, spec: ScanSpec, backend: str = "auto", exclude: tuple[str, ...] = ()) -> Kernel:
    """The kernel named by ``backend``, or under "auto" the fastest that supports the spec and
    is not in ``exclude`` (a layer's ``use_cudnn=False`` excludes "native")."""
    if backend != "auto":
        if backend not in _KERNELS:
            raise BackendError(
                f"unknown backend {backend!r}; available: {sorted(_KERNELS)} or 'auto'"
            )
        kernel = _KERNELS[backend]
        ok, reason = kernel.supports(cell, spec)
        if not ok:
            raise BackendError(f"backend {backend!r} cannot run {type(cell).__name__}: {reason}")
        return kernel
    for kernel in sorted(_KERNELS.values(), key=lambda k: k.rank):
        if kernel.name not in exclude and kernel.supports(cell, spec)[0]:
            return kernel
    raise BackendError(f"no kernel can run {type(cell).__name__} with {spec}")


def explain(cell, spec: ScanSpec) -> dict[str, str]:
    """Each kernel's verdict on a configuration: 'ok' or the reason it cannot run it."""
    out = {}
    for kernel in sorted(_KERNELS.values(), key=lambda k: k.rank):
        ok, reason = kernel.supports(cell, spec)
        out[kernel.name] = "ok" if ok else reason
    return out
