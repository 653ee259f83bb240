"""rnnkit and other libraries: Keras files and weight layouts, torch.nn modules, export for
serving (ONNX, TorchScript, torch.export). Importing it registers the Keras file reader with
``rnnkit.models.load_model`` and the exporter with ``Model.export``."""

from ..layers.keras_weights import cell_from_keras, cell_to_keras
from .export import export
from .keras_file import load_keras
from .torch_nn import cell_state_dict, from_torch, load_cell_state_dict, to_torch

__all__ = ["cell_to_keras", "cell_from_keras", "to_torch", "from_torch", "cell_state_dict",
           "load_cell_state_dict", "load_keras", "export"]
