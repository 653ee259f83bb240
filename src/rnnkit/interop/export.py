"""Export a trained model for Python-free serving: ONNX, TorchScript or a torch.export program.

Dimension legend: B batch, T time, I input features.

The model is traced on an example batch. Recurrent layers whose cell torch has a fused op for
(SimpleRNN tanh/relu, LSTM, GRU reset_after=True) run on the ``native`` kernel while tracing, which
ONNX maps to its own RNN/LSTM/GRU operators: batch and time stay dynamic, and a post-padding mask
(Embedding(mask_zero=True)) becomes ONNX's ``sequence_lens``. Every other cell, and a backward
(go_backwards / Bidirectional) layer under a mask, runs on the ``reference`` kernel, whose loop the
tracer unrolls: the file then takes the example's T only.

ONNX goes through torch's TorchScript-based exporter (``dynamo=False``): with torch 2.13 it works
offline, exports in under a second, and maps the fused ops and packed sequences; the dynamo
exporter also works for unmasked models but takes ~10 s and cannot trace a mask.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import engine, optional
from ..errors import ConfigError, NotBuiltError
from ..layers import RNN, Embedding
from ..models import model as model_module
from ..training import data

FORMATS = ("onnx", "torchscript", "torch.export")
DEFAULT_STEPS = 8
# Warnings the tracers raise about code they handle as we intend: shape checks read as constants,
# the legacy exporter's deprecation, ONNX's note on LSTM batch sizes (our initial state is built
# from the input's batch, so any batch runs).
_EXPECTED_WARNINGS = (
    (torch.jit.TracerWarning, ""),
    (DeprecationWarning, r"(?s).*(TorchScript-based ONNX export|torch\.jit\.|feature will be removed)"),
    (UserWarning, r"(?s).*Exporting a model to ONNX with a batch_size other than 1"),
)


def export(model, path, format: str = "onnx", example=None, opset: int = 17) -> Path:
    """Write ``model`` (built, trained) to ``path`` in ``format``; returns the path.

    format: 'onnx' (input "x", output "y"), 'torchscript' (``torch.jit.load``) or 'torch.export'
    (``torch.export.load``). example: an input batch (B, T[, I]) to trace with; by default
    random data of the model's input shape (token ids, some post-padded, for an Embedding).
    """
    if format not in FORMATS:
        raise ConfigError(f"export: format must be one of {FORMATS}, got {format!r}")
    if not getattr(model, "built", False):
        raise NotBuiltError(f"{model.name}: export needs a built model; train it, call "
                            "build(input_shape) or call it on data first")
    x = _example(model) if example is None else _as_input(example, model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with _expected_warnings(), torch.no_grad(), _traceable_kernels(model, x) as time_dynamic:
            _WRITERS[format](model, x, path, time_dynamic, opset)
    finally:
        model.train(was_training)
    return path


def onnx_max_abs_diff(model, path, x) -> float:
    """Run the .onnx file in onnxruntime on x and return max |onnx - rnnkit| over the outputs."""
    onnxruntime = optional.require("onnxruntime", "checking an ONNX file")
    x = _as_input(x, model)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    want = model.predict(x.numpy(), batch_size=len(x), verbose=0)
    return float(np.abs(got - want).max())


# -- the example batch -------------------------------------------------------------------------
def _first_layer(model):
    return next(model_module.top_layers(model), None)


def _example(model) -> Tensor:
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ConfigError(f"{model.name}: cannot tell the input shape; pass example=<a batch>")
    steps = shape[1] if len(shape) > 1 and shape[1] is not None else DEFAULT_STEPS
    first = _first_layer(model)
    if isinstance(first, Embedding):
        ids = torch.randint(1, first.input_dim, (2, steps))  # (B, T)
        if first.mask_zero and steps > 1:
            ids[1, steps // 2:] = 0  # post-padding: the traced graph must take the masked path
        return ids
    return torch.randn(2, steps, *shape[2:])  # (B, T, I)


def _as_input(example, model) -> Tensor:
    return data.to_tensor(example, "example").to(data.device_of(model))


# -- kernels the tracers can follow ------------------------------------------------------------
@contextlib.contextmanager
def _traceable_kernels(model, x: Tensor):
    """A scope in which every recurrent scan runs on ``native`` where it can, else ``reference``
    (``engine.options``); yields whether the time axis stays dynamic: on the example, every
    recurrent layer ran natively and undilated."""
    # a traced packed sequence is what keeps masks in the graph; the CPU training-speed reason
    # native declines masks for (an O(T²) backward) does not apply to a forward-only trace
    with engine.options(backend=("native", "reference"), packed_on_cpu=True):
        model(x)  # which kernels the example takes
        rnns = [m for m in model.modules() if isinstance(m, RNN)]
        yield all(layer.last_kernel == "native" and layer.dilation == 1 for layer in rnns)


@contextlib.contextmanager
def _expected_warnings():
    with warnings.catch_warnings():
        for category, message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


# -- writers -----------------------------------------------------------------------------------
def _write_onnx(model, x: Tensor, path: Path, time_dynamic: bool, opset: int) -> None:
    optional.require("onnx", "ONNX export")
    in_axes = {0: "batch", 1: "time"} if time_dynamic else {0: "batch"}
    out_rank = model(x).dim()
    out_axes = {0: "batch", 1: "time"} if time_dynamic and out_rank == 3 else {0: "batch"}
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": in_axes, "y": out_axes}, opset_version=opset,
                      dynamo=False)


def _write_torchscript(model, x: Tensor, path: Path, time_dynamic: bool, opset: int) -> None:
    # check_trace re-traces and compares graphs, which differ only in module name mangling
    traced = torch.jit.trace(model, (x,), check_trace=False)
    torch.jit.save(traced, str(path))


def _write_torch_export(model, x: Tensor, path: Path, time_dynamic: bool, opset: int) -> None:
    if any(isinstance(m, Embedding) and m.mask_zero for m in model.modules()):
        raise ConfigError(f"{model.name}: torch.export cannot trace masks from Embedding(mask_zero=True) "
                          "(which steps are real depends on the data); use format='onnx' or 'torchscript'")
    # torch's decomposition of the fused RNN ops loops over time, so T may specialise: AUTO
    # keeps it dynamic where the program allows and fixes it to the example's T otherwise
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim.AUTO}
    program = torch.export.export(model, (x,), dynamic_shapes=(dims,))
    torch.export.save(program, str(path))


_WRITERS = {"onnx": _write_onnx, "torchscript": _write_torchscript,
            "torch.export": _write_torch_export}
model_module.register_exporter(export)  # Model.export calls it

__all__ = ["export", "onnx_max_abs_diff", "FORMATS"]
