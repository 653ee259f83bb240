"""Weight penalties with Keras names: l1, l2, l1_l2. Layers add them (``add_regularizer``); the
model adds their sum to the training loss."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..errors import ConfigError


@dataclass(frozen=True)
class L1L2:
    """penalty(w) = l1 · Σ|w| + l2 · Σw²  (Keras's definition: no factor 1/2)."""

    l1: float = 0.0
    l2: float = 0.0

    def __call__(self, w: Tensor) -> Tensor:
        out = w.new_zeros(())
        if self.l1:
            out = out + self.l1 * w.abs().sum()
        if self.l2:
            out = out + self.l2 * w.square().sum()
        return out


def l1(l1: float = 0.01) -> L1L2:
    return L1L2(l1=l1)


def l2(l2: float = 0.01) -> L1L2:
    return L1L2(l2=l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:
    return L1L2(l1=l1, l2=l2)


L1 = l1
L2 = l2


def get(reg, where: str = "regularizer"):
    if reg is None or callable(reg):
        return reg
    names = {"l1": l1, "l2": l2, "l1_l2": l1_l2}
    if isinstance(reg, str) and reg in names:
        return names[reg]()
    raise ConfigError(f"{where}: unknown regularizer {reg!r}; expected l1, l2, l1_l2 or a callable")
