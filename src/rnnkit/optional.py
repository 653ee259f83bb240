"""Optional packages: imported where a feature needs them, with one line saying how to install
them when they are missing (``pip install 'rnnkit[EXTRA]'``), never a traceback from deep inside.

The extras are pyproject.toml's: plots (matplotlib), export (onnx, onnxruntime, onnxscript), keras
(keras, h5py), tensorboard, gpu (triton).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

EXTRAS = {"matplotlib": "plots", "onnx": "export", "onnxruntime": "export",
          "onnxscript": "export", "keras": "keras", "h5py": "keras",
          "tensorboard": "tensorboard", "triton": "gpu"}


def install_hint(package: str) -> str:
    extra = EXTRAS.get(package)
    return f"pip install 'rnnkit[{extra}]'" if extra else f"pip install {package}"


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. "matplotlib.pyplot"), or raise MissingDependencyError saying
    that ``purpose`` needs its package and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        if err.name is not None and err.name.split(".")[0] != package:
            raise  # the package is there but broken: its own error says more
        raise MissingDependencyError(f"{purpose} needs the optional package {package!r}, which is "
                                     f"not installed: {install_hint(package)}") from None


def available(module: str) -> bool:
    """Whether ``module`` can be imported (imports it)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
