"""What this CPU can run, as the kernels' ``supports`` ask it.

torch's fused LSTM on CPU under ``torch.autocast`` runs oneDNN's LSTM primitive in the autocast
dtype. oneDNN creates that primitive only where the CPU has the instructions for the dtype (bf16:
AVX-512; fp16: AVX512-FP16 or AMX), capped by ``ONEDNN_MAX_CPU_ISA``; elsewhere torch raises
"could not create a primitive descriptor for the LSTM forward propagation primitive" (an AVX2-only
CPU such as AMD Zen 3). Measured with torch 2.13 under ``ONEDNN_MAX_CPU_ISA=AVX2``: only the LSTM
fails; torch's GRU runs in float32 under autocast and its RNN in ATen's bf16 loop, and all three run
in plain bf16 and fp16 (weights in that dtype, no autocast), where ATen does not call oneDNN.

The answer comes from one tiny call of the very op (LSTM 1 -> 1, one step, forward and backward
under autocast), made once per dtype and process, catching exactly that error: torch's own flag
(``torch.ops.mkldnn._is_mkldnn_bf16_supported``) agrees for bf16, but it is private and there is
none for fp16.

``RNNKIT_CPU_DISABLE`` (comma-separated: ``bf16``, ``fp16``) treats a feature as absent, whatever
the CPU has: how the tests, and anyone curious, see what an AVX2-only CPU would run.
"""

from __future__ import annotations

import functools
import os

import torch

DISABLE_ENV = "RNNKIT_CPU_DISABLE"
_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_NEEDS = {"bf16": "AVX-512", "fp16": "AVX512-FP16 or AMX-FP16"}
_ONEDNN_ERROR = "could not create a primitive descriptor"


def disabled() -> set[str]:
    """The features ``RNNKIT_CPU_DISABLE`` switches off (read at every call)."""
    return {f.strip().lower() for f in os.environ.get(DISABLE_ENV, "").split(",") if f.strip()}


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype torch.autocast runs ops in on ``device`` now; None when autocast is off."""
    if device.type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device.type):
        return None
    return torch.get_autocast_dtype(device.type)


def onednn_lstm_reason(dtype: torch.dtype) -> str:
    """"" when torch's fused LSTM runs under CPU autocast to ``dtype`` on this CPU, else why not."""
    name = _NAMES.get(dtype, str(dtype))
    if name in disabled():
        return f"{DISABLE_ENV}={os.environ[DISABLE_ENV]!r} switches {name} off on this CPU"
    if not _onednn_lstm_runs(dtype):
        return (f"torch's fused LSTM under {name} autocast on CPU needs oneDNN's {name} support, "
                f"which this CPU lacks (it takes {_NEEDS.get(name, 'a newer CPU')}; "
                f"ONEDNN_MAX_CPU_ISA may cap it)")
    return ""


@functools.cache
def _onednn_lstm_runs(dtype: torch.dtype) -> bool:
    """One LSTM step (1 -> 1 unit), forward and backward, under CPU autocast to ``dtype``."""
    try:  # asked from predict (inference mode) too: the probe records its own small graph
        with torch.inference_mode(False), torch.enable_grad():
            weights = [torch.zeros(4, 1, requires_grad=True), torch.zeros(4, 1, requires_grad=True)]
            x, state = torch.zeros(1, 1, 1), (torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
            with torch.autocast("cpu", dtype=dtype):
                y, _, _ = torch.lstm(x, state, weights, False, 1, 0.0, True, False, False)
            y.float().sum().backward()
    except RuntimeError as exc:
        if _ONEDNN_ERROR not in str(exc):
            raise
        return False
    return True
