"""The engine: ``scan`` runs a cell along a sequence through a kernel from the registry."""

from . import compiled, fused, gpu, native, parallel, reference  # noqa: F401  (each registers its kernel)
from .context import options
from .observe import Observer, Recorder
from .registry import BackendError, ScanSpec, explain, kernels, register, select
from .scan import LayersOutput, ScanOutput, Wiring, scan, scan_layers, scan_layers_reason
from .step import StepOutput, step, stepper

__all__ = ["scan", "ScanOutput", "scan_layers", "scan_layers_reason", "LayersOutput", "step",
           "stepper", "StepOutput", "options", "Observer", "Recorder", "Wiring", "ScanSpec",
           "register", "select", "kernels", "explain", "BackendError"]
