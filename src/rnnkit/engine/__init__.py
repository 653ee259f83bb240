"""The engine: ``scan`` runs a cell along a sequence through a kernel from the registry."""

from . import compiled, fused, gpu, native, parallel, reference  # noqa: F401  (each registers its kernel)
from .registry import BackendError, ScanSpec, explain, kernels, register, select
from .scan import ScanOutput, scan
from .step import StepOutput, step, stepper

__all__ = ["scan", "ScanOutput", "step", "stepper", "StepOutput", "ScanSpec", "register", "select",
           "kernels", "explain",
           "BackendError"]
