"""Kernels and how one is chosen.

A kernel runs a cell forward along time, dilation and reverse already done by the engine:
``run(cell, x, state, mask, recurrent_mask) -> (outputs (B, T, H), final state)``.
``supports(cell, spec) -> (ok, reason)`` says whether it can; ``backend="auto"`` takes the first
supporting kernel in ``auto_order`` — by ``rank`` (fastest first), with the measured CPU rule for
the standard cells below — and ``explain`` says why; a named backend that cannot run raises
``BackendError`` with the reason — never a silent fallback. A tuple of names (what
``engine.options(backend=...)`` may give) takes the first of them that supports the scan.
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
    # autograd will record the scan (training); False under torch.no_grad() or with nothing to train
    requires_grad: bool = True


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


def select(cell, spec: ScanSpec, backend: str | tuple[str, ...] = "auto",
           exclude: tuple[str, ...] = ()) -> Kernel:
    """The kernel named by ``backend``, or under "auto" the fastest that supports the spec and
    is not in ``exclude`` (a layer's ``use_cudnn=False`` excludes "native"); for a tuple of
    names, the first of them that can run it."""
    if isinstance(backend, tuple):
        return _first_supporting(cell, spec, backend, exclude)
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
    for name in auto_order(cell, spec)[0]:
        kernel = _KERNELS[name]
        if name not in exclude and kernel.supports(cell, spec)[0]:
            return kernel
    raise BackendError(f"no kernel can run {type(cell).__name__} with {spec}")


def _first_supporting(cell, spec: ScanSpec, names: tuple[str, ...],
                      exclude: tuple[str, ...]) -> Kernel:
    reasons = []
    for name in names:
        try:
            return select(cell, spec, name, exclude)
        except BackendError as e:
            reasons.append(str(e))
    raise BackendError(f"none of the backends {names} can run {type(cell).__name__}: "
                       + "; ".join(reasons))


# The dispatch rule. Kernels are tried by rank (native 10, parallel 20, gpu 25, compiled 30,
# fused 50, reference 100), with one exception measured on CPU: where both torch's fused op
# (native) and the compiled C++ loop run a standard cell (SimpleRNN tanh/relu, LSTM, GRU with
# reset_after), compiled goes first unless this table puts native first from a number of units
# on, for the cell family and for training (autograd records the run) or inference (it does
# not). benchmarks/bench_dispatch.py prints the grid behind it (B 1-128, H 16-512, T 50 and 500,
# masks) in docs/benchmarks.md: forward+backward, compiled was at or below native at every point
# for GRU and SimpleRNN and within noise or below for LSTM; forward only (H 32, 128, 512), for
# SimpleRNN and GRU native won at H=512 (B 1 and 16) and compiled below. LSTM inference: compiled's
# register tiles (up to compiled.TILE_MAX_UNITS = 128 units) beat oneDNN's LSTM at B 1, 16 and 128
# and H 16-128 (0.29-0.83x; B=16 H=128 1.02x), and its BLAS loop above them lost to it at H=256 for
# B 1 and 16 (3.1x, 1.35x; docs/benchmarks.md, "register tiles"), so LSTM inference goes native from
# TILE_MAX_UNITS + 1. On GPU the rank order stands (cuDNN first; not measured). None: compiled first
# at every H.
NATIVE_FROM_UNITS = {
    ("SimpleCell", "training"): None, ("SimpleCell", "inference"): 512,
    ("LSTMCell", "training"): None, ("LSTMCell", "inference"): 129,
    ("GRUCell", "training"): None, ("GRUCell", "inference"): 512,
}


def _by_rank() -> list[str]:
    return [k.name for k in sorted(_KERNELS.values(), key=lambda k: k.rank)]


def auto_order(cell, spec: ScanSpec) -> tuple[list[str], str]:
    """The kernels ``auto`` tries, first choice first, and the rule that ordered them."""
    order = _by_rank()
    if spec.device.type != "cpu" or "native" not in _KERNELS or "compiled" not in _KERNELS:
        return order, "by rank (fastest first): torch's fused op, parallel, gpu, compiled, fused"
    if not (_KERNELS["native"].supports(cell, spec)[0] and _KERNELS["compiled"].supports(cell, spec)[0]):
        return order, ("by rank (fastest first): of native and compiled only one runs this "
                       "configuration")
    mode = "training" if spec.requires_grad else "inference"
    family = type(cell).__name__
    units = NATIVE_FROM_UNITS.get((family, mode))
    hidden = cell.hidden_size
    if units is not None and hidden >= units:
        return order, (f"{family} {mode} on CPU at H={hidden}: torch's fused op (native) is the "
                       f"fastest from H={units} on (benchmarks/bench_dispatch.py)")
    order.remove("native")
    order.insert(order.index("compiled") + 1, "native")
    when = "at every H" if units is None else f"below H={units}"
    return order, (f"{family} {mode} on CPU at H={hidden}: the compiled C++ loop is faster than "
                   f"torch's fused op (native) {when} (benchmarks/bench_dispatch.py)")


def explain(cell, spec: ScanSpec) -> dict[str, str]:
    """Each kernel's verdict on a configuration, in the order ``auto`` tries them: "chosen: <why>"
    for the one auto takes, "can run it; <chosen> comes first" for the others that could, or the
    reason a kernel cannot run it."""
    order, why = auto_order(cell, spec)
    out, chosen = {}, None
    for name in order:
        ok, reason = _KERNELS[name].supports(cell, spec)
        if not ok:
            out[name] = reason
        elif chosen is None:
            chosen = name
            out[name] = f"chosen: {why}"
        else:
            out[name] = f"can run it; {chosen} comes first"
    return out
