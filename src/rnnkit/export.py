"""Old home of the exporter; it lives in :mod:`rnnkit.interop.export` now."""

from .interop.export import FORMATS, export, onnx_max_abs_diff

__all__ = ["export", "onnx_max_abs_diff", "FORMATS"]
