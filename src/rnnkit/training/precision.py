"""Mixed precision: ``compile(..., precision='bf16' | 'fp16' | '32')``.

'bf16' runs the forward pass and the loss under ``torch.autocast(dtype=bfloat16)`` on CPU and
GPU; parameters, optimizer state and the update stay float32. 'fp16' does the same with float16
on a GPU only, with a ``torch.amp.GradScaler``: the loss is scaled before backward so small
gradients do not flush to zero, the gradients are unscaled before Keras's clipping, and a step
whose gradients overflowed is skipped (the scale then shrinks). '32' (default) is plain float32.

Kernels under autocast: ``native`` (torch's fused ops) and ``reference`` run in the low precision;
``parallel`` too (its products of transition matrices lose the most, see the tolerance table);
``fused`` and ``compiled`` upcast — their hand-written backward is single-dtype, so the recurrence
of such a layer runs in float32 while the rest of the model runs in the low precision.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ..errors import ConfigError

_ALIASES = {"32": "32", "float32": "32", "bf16": "bf16", "bfloat16": "bf16",
            "mixed_bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "mixed_float16": "fp16"}
_DTYPES = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# Max |low precision - float32| / max |float32| over outputs and over gradients, per dtype,
# as tests/training/test_precision.py checks for every kernel (B=4, T=20, H=8, seeded weights).
TOLERANCES = {"bf16": {"outputs": 2e-2, "gradients": 5e-2},
              "fp16": {"outputs": 5e-3, "gradients": 1e-2}}


class Precision:
    """How a model's train/test/predict steps run: autocast dtype and, for fp16, the scaler."""

    def __init__(self, precision: str = "32"):
        if precision not in _ALIASES:
            raise ConfigError(f"compile: precision must be one of '32', 'bf16', 'fp16' (or "
                              f"{sorted(set(_ALIASES) - {'32', 'bf16', 'fp16'})}), "
                              f"got {precision!r}")
        self.name = _ALIASES[precision]
        self.dtype = _DTYPES[self.name]
        self.scaler: torch.amp.GradScaler | None = None

    def _check_device(self, device: torch.device) -> None:
        if self.name == "fp16" and device.type != "cuda":
            raise ConfigError(f"precision='fp16' needs a GPU (float16 with a gradient scaler); "
                              f"the model is on {device.type}; use precision='bf16' on CPU")

    def autocast(self, device: torch.device):
        """The context the forward pass and the loss run in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        self._check_device(device)
        return torch.autocast(device.type, dtype=self.dtype)

    def backward_step(self, loss: Tensor, optimizer, before_update=None) -> None:
        """backward, then the optimizer's step (clipping included); fp16 through the scaler.
        ``before_update(loss)``, with the true gradients in place, may return False: no step."""
        if self.name != "fp16":
            loss.backward()
            if before_update is None or before_update(loss) is not False:
                optimizer.step()
            return
        if self.scaler is None:
            self.scaler = torch.amp.GradScaler(loss.device.type)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer.torch_optimizer)  # clip the true gradients, not scaled
        if before_update is not None and before_update(loss) is False:
            self.scaler.update()
            return
        optimizer.clip_gradients()
        self.scaler.step(optimizer.torch_optimizer)  # skipped when a gradient overflowed
        self.scaler.update()
        optimizer.iterations += 1


def of(model) -> Precision:
    """The model's precision ('32' when compile gave none)."""
    return getattr(model, "precision", None) or Precision("32")


def full(t: Tensor) -> Tensor:
    """A low-precision output back in float32 for the loss and metrics (as Keras does)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t
